//! The forwarding client: verified requests go to the upstream with the
//! hop-by-hop headers removed and the client's address in `x-forwarded-for`;
//! its failures become the proxy's own JSON answers.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderName, HeaderValue};
use http::{HeaderMap, Request, Response, StatusCode, Uri};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tower::Service;
use tower_identity::layer::body::RequestBody;
use tower_identity::layer::remove_hop_by_hop;

use crate::config::UpstreamProtocol;
use crate::timed_body::{BodyTimedOut, TimedBody};

/// The body of every answer: the upstream's, streamed, or the proxy's own.
pub type ProxyBody = BoxBody<Bytes, hyper::Error>;

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// A small JSON answer of the proxy's own: `{"error": code, "message": message}`.
pub fn json_error(status: StatusCode, code: &str, message: &str) -> Response<ProxyBody> {
    let body = format!("{{\"error\":\"{code}\",\"message\":\"{message}\"}}");
    let mut res = Response::new(Full::new(Bytes::from(body)).map_err(|never: Infallible| match never {}).boxed());
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

/// Prepares a client's request headers for forwarding: removes the hop-by-hop
/// headers and appends `peer` to `x-forwarded-for`. Runs before the identity
/// layer, so that a client cannot name the forwarded identity headers in
/// `Connection` and have them removed after verification.
pub fn prepare(headers: &mut HeaderMap, peer: SocketAddr) {
    remove_hop_by_hop(headers);
    let forwarded_for = match headers.get(X_FORWARDED_FOR).and_then(|v| v.to_str().ok()) {
        Some(prior) => format!("{prior}, {}", peer.ip()),
        None => peer.ip().to_string(),
    };
    if let Ok(v) = HeaderValue::from_str(&forwarded_for) {
        headers.insert(X_FORWARDED_FOR, v);
    }
}

/// Forwards requests to the upstream.
#[derive(Clone)]
pub struct Upstream {
    client: Client<HttpConnector, RequestBody<TimedBody>>,
    authority: http::uri::Authority,
    timeout: Duration,
}

impl Upstream {
    /// A pooled client for `uri` (checked by the configuration to have an
    /// authority), speaking `protocol`, with `timeout` for connecting and for
    /// the whole exchange.
    pub fn new(uri: &Uri, protocol: UpstreamProtocol, timeout: Duration) -> Upstream {
        let mut builder = Client::builder(TokioExecutor::new());
        builder.timer(TokioTimer::new()).pool_timer(TokioTimer::new());
        if protocol == UpstreamProtocol::H2c {
            builder.http2_only(true);
        }
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(timeout));
        Upstream { client: builder.build(connector), authority: uri.authority().expect("checked").clone(), timeout }
    }
}

/// The answer to the client for the upstream's result.
fn answer(
    result: Result<
        Result<Response<hyper::body::Incoming>, hyper_util::client::legacy::Error>,
        tokio::time::error::Elapsed,
    >,
    timed_out: &BodyTimedOut,
    timeout: Duration,
) -> Response<ProxyBody> {
    match result {
        Ok(Ok(mut res)) => {
            remove_hop_by_hop(res.headers_mut());
            res.map(BodyExt::boxed)
        }
        Ok(Err(_)) if timed_out.get() => {
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
        let timed_out = req.extensions().get::<BodyTimedOut>().cloned().unwrap_or_default();
        let carry = crate::tunnel::carried(&req);
        let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
        let uri = Uri::builder().scheme("http").authority(self.authority.clone()).path_and_query(path).build();
        let client = self.client.clone();
        let timeout = self.timeout;
        Box::pin(async move {
            let Ok(uri) = uri else {
                return Ok(json_error(StatusCode::BAD_REQUEST, "bad_request", "The request target is invalid."));
            };
            *req.uri_mut() = uri;
            *req.version_mut() = http::Version::HTTP_11;
            let mut res = answer(tokio::time::timeout(timeout, client.request(req)).await, &timed_out, timeout);
            if let Some(carry) = carry {
                carry(res.extensions_mut());
            }
            Ok(res)
        })
    }
}
