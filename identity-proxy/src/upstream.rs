//! The forwarding client: verified requests go to the upstream with the
//! hop-by-hop headers removed and the client's address in `x-forwarded-for`;
//! its failures become the proxy's own JSON answers.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use http::header::{CONTENT_TYPE, Entry, HeaderName, HeaderValue};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderMap, Request, Response, StatusCode, Uri};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Either, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tower::Service;
use tower_identity::layer::body::RequestBody;
use tower_identity::layer::remove_hop_by_hop;

use crate::config::UpstreamProtocol;
use crate::timed_body::{BodyTimedOut, TimedBody};

/// The error of a [`ProxyBody`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body of every answer: the upstream's, streamed as hyper hands it over
/// (no allocation per response), or any other (the proxy's own answers, an
/// event stream that ends with its credential).
pub type ProxyBody = Either<Incoming, BoxBody<Bytes, BoxError>>;

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// A small JSON answer of the proxy's own: `{"error": code, "message": message}`.
pub fn json_error(status: StatusCode, code: &str, message: &str) -> Response<ProxyBody> {
    let body = format!("{{\"error\":\"{code}\",\"message\":\"{message}\"}}");
    let mut res = Response::new(boxed(Full::new(Bytes::from(body)).map_err(|never: Infallible| match never {})));
    *res.status_mut() = status;
    res.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    res
}

/// The answer when the request body missed its deadline.
pub fn request_timeout() -> Response<ProxyBody> {
    json_error(StatusCode::REQUEST_TIMEOUT, "request_timeout", "The request body was not received in time.")
}

/// The answer to a request whose body has a transfer coding other than
/// `chunked`: it cannot be forwarded as received.
pub fn not_implemented() -> Response<ProxyBody> {
    json_error(
        StatusCode::NOT_IMPLEMENTED,
        "transfer_coding_unsupported",
        "Only the chunked transfer coding is supported.",
    )
}

/// Whether `Transfer-Encoding` names a coding other than `chunked`.
pub fn unsupported_transfer_coding(headers: &HeaderMap) -> bool {
    headers
        .get_all(http::header::TRANSFER_ENCODING)
        .iter()
        .flat_map(|value| value.as_bytes().split(|&b| b == b','))
        .any(|coding| !coding.trim_ascii().eq_ignore_ascii_case(b"chunked"))
}

/// The client's address as `x-forwarded-for` names it, made once per
/// connection.
#[derive(Clone)]
pub struct ForwardedFor(HeaderValue);

impl ForwardedFor {
    pub fn new(peer: SocketAddr) -> ForwardedFor {
        ForwardedFor(HeaderValue::from_str(&peer.ip().to_string()).expect("an IP address is a valid header value"))
    }
}

/// Prepares a client's request headers for forwarding: removes the hop-by-hop
/// headers and appends the client's address to `x-forwarded-for` (to its
/// first value, which replaces any other). Runs before the identity layer,
/// so that a client cannot name the forwarded identity headers in
/// `Connection` and have them removed after verification.
pub fn prepare(headers: &mut HeaderMap, peer: &ForwardedFor) {
    remove_hop_by_hop(headers);
    match headers.entry(X_FORWARDED_FOR) {
        Entry::Vacant(entry) => {
            entry.insert(peer.0.clone());
        }
        Entry::Occupied(mut entry) => {
            // A prior value that is not visible ASCII is dropped, not extended.
            let value = match entry.get().to_str() {
                Ok(prior) => appended(prior.as_bytes(), peer.0.as_bytes()),
                Err(_) => peer.0.clone(),
            };
            entry.insert(value);
        }
    }
}

/// `prior, peer`.
fn appended(prior: &[u8], peer: &[u8]) -> HeaderValue {
    let mut value = BytesMut::with_capacity(prior.len() + 2 + peer.len());
    value.put_slice(prior);
    value.put_slice(b", ");
    value.put_slice(peer);
    HeaderValue::from_maybe_shared(value.freeze()).expect("visible ASCII, a comma and a space")
}

/// The body of a request sent upstream, boxed: the client moves each request
/// many times on its way to the connection, and a pointer moves cheaper than
/// the identity layer's body around the timed body.
type Sent = Pin<Box<RequestBody<TimedBody>>>;

/// Forwards requests to the upstream. Cloned for every request (the
/// identity layer over it is), hence shared.
#[derive(Clone)]
pub struct Upstream(Arc<Target>);

struct Target {
    client: Client<HttpConnector, Sent>,
    /// Where every request goes, checked when the configuration was read.
    authority: Authority,
    timeout: Duration,
}

impl Upstream {
    /// A pooled client for `uri` (checked by the configuration to be an
    /// `http` URL with an authority), speaking `protocol`, with `timeout` for
    /// connecting and for the whole exchange.
    pub fn new(uri: &Uri, protocol: UpstreamProtocol, timeout: Duration) -> Upstream {
        let mut builder = Client::builder(TokioExecutor::new());
        builder.timer(TokioTimer::new()).pool_timer(TokioTimer::new());
        if protocol == UpstreamProtocol::H2c {
            builder.http2_only(true);
        }
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(timeout));
        let authority = uri.authority().expect("checked").clone();
        Upstream(Arc::new(Target { client: builder.build(connector), authority, timeout }))
    }
}

impl Target {
    /// The client's request target, at the upstream: its path and query kept
    /// as they are (`/` when it has none, as in `CONNECT`).
    fn uri(&self, target: Uri) -> Uri {
        let mut parts = target.into_parts();
        parts.scheme = Some(Scheme::HTTP);
        parts.authority = Some(self.authority.clone());
        parts.path_and_query.get_or_insert(PathAndQuery::from_static("/"));
        Uri::from_parts(parts).expect("a scheme, an authority and a path make a URI")
    }
}

/// Boxes one of the proxy's own bodies as a [`ProxyBody`].
pub fn boxed<B>(body: B) -> ProxyBody
where
    B: http_body::Body<Data = Bytes> + Send + Sync + 'static,
    B::Error: Into<BoxError>,
{
    Either::Right(body.map_err(Into::into).boxed())
}

/// The answer to the client for the upstream's result.
fn answer(
    result: Result<Result<Response<Incoming>, hyper_util::client::legacy::Error>, tokio::time::error::Elapsed>,
    timed_out: Option<&BodyTimedOut>,
    timeout: Duration,
) -> Response<ProxyBody> {
    match result {
        Ok(Ok(mut res)) => {
            remove_hop_by_hop(res.headers_mut());
            res.map(Either::Left)
        }
        Ok(Err(_)) if timed_out.is_some_and(BodyTimedOut::get) => {
            tracing::debug!("the request body was not received in time; answering 408");
            request_timeout()
        }
        Ok(Err(error)) => {
            tracing::warn!(%error, "upstream request failed");
            json_error(StatusCode::BAD_GATEWAY, "upstream_unavailable", "The upstream service is unavailable.")
        }
        Err(_) => {
            tracing::warn!(timeout_secs = timeout.as_secs(), "upstream timed out");
            json_error(StatusCode::GATEWAY_TIMEOUT, "upstream_timeout", "The upstream service timed out.")
        }
    }
}

impl Service<Request<RequestBody<TimedBody>>> for Upstream {
    type Response = Response<ProxyBody>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<ProxyBody>, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut req: Request<RequestBody<TimedBody>>) -> Self::Future {
        let target = &*self.0;
        // Only a request with a body still to come has a deadline on it.
        let timed_out = req.extensions().get::<BodyTimedOut>().cloned();
        let carry = crate::tunnel::carried(&req);
        *req.uri_mut() = target.uri(std::mem::take(req.uri_mut()));
        *req.version_mut() = http::Version::HTTP_11;
        let timeout = target.timeout;
        let sent = tokio::time::timeout(timeout, target.client.request(req.map(Box::pin)));
        Box::pin(async move {
            let mut res = answer(sent.await, timed_out.as_ref(), timeout);
            if let Some(carry) = carry {
                carry(res.extensions_mut());
            }
            Ok(res)
        })
    }
}
