//! One check of a request that a gateway describes, through the identity
//! layer itself: the description becomes a bodiless request, the layer
//! extracts, resolves, verifies and decides exactly as in reverse-proxy mode,
//! and an inner service that never proxies turns what the layer forwarded
//! into the verdict.

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE, TRANSFER_ENCODING};
use http::uri::PathAndQuery;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Empty};
use tower::{Service, ServiceExt};
use tower_identity::layer::ForwardHeaders;
use tower_identity::layer::body::RequestBody;
use tower_identity::{IdentityVerification, IdentityVerificationLayer};

use crate::live::Current;

/// The original request as the gateway describes it: its method, its target
/// (path and query) and the client's headers. Gateways send no body, so body
/// sources never apply to a check.
pub struct Described {
    pub method: Method,
    pub uri: Uri,
    pub headers: HeaderMap,
}

/// The original request's target, when it is in origin form (`/path?query`,
/// as a gateway describes it): an absolute URI, an empty or relative target,
/// or one that is not a valid path does not describe a request and is
/// refused, never checked.
pub fn origin_form(target: &[u8]) -> Option<Uri> {
    if !target.starts_with(b"/") {
        return None;
    }
    PathAndQuery::try_from(target).ok().map(Uri::from)
}

/// The layer's answer to one described request.
pub enum Verdict {
    /// The request may pass.
    Pass {
        /// The identity headers for the upstream (`x-verified-*`,
        /// `x-identity-outcome`), as the layer forwards them.
        set: HeaderMap,
        /// The client's headers the layer removed and that are not replaced
        /// by `set`: every other spelling of the identity headers, and the
        /// credentials when `strip_credentials` is on.
        removed: Vec<HeaderName>,
    },
    /// The layer's rejection (401, 503 with `Retry-After`, ...), as it would
    /// answer it in reverse-proxy mode.
    Reject(Response<Bytes>),
}

/// The identity layer over an inner service that never proxies: what one
/// check runs. Part of the [`Live`](crate::live::Live) state, so a reload
/// replaces it with the rest of the configuration.
#[derive(Clone)]
pub struct Checks {
    svc: IdentityVerification<Echo>,
}

impl Checks {
    /// The checks of `layer`, which must forward identity headers named by `forward`.
    pub fn new(layer: &IdentityVerificationLayer, forward: ForwardHeaders) -> Checks {
        let layer = layer.clone().forward_identity_headers(forward.clone());
        Checks { svc: tower::Layer::layer(&layer, Echo { forward }) }
    }
}

/// Checks described requests with the proxy's current identity layer (the
/// one a reload installed last).
#[derive(Clone)]
pub struct Checker {
    current: Current,
}

impl Checker {
    /// A checker that reads the checks of each request from `current`.
    pub fn new(current: Current) -> Checker {
        Checker { current }
    }

    /// Runs the layer on the described request.
    pub async fn check(&self, described: Described) -> Verdict {
        let req = request(described);
        let sent: Vec<HeaderName> = req.headers().keys().cloned().collect();
        let svc = self.current.load().checks.svc.clone();
        let Ok(res) = svc.oneshot(req).await;
        let (mut parts, body) = res.into_parts();
        let Some(Forwarded(forwarded)) = parts.extensions.remove::<Forwarded>() else {
            // Only `Echo` adds `Forwarded`: anything else is the layer's own answer.
            let Ok(body) = body.collect().await.map(|b| b.to_bytes());
            return Verdict::Reject(Response::from_parts(parts, body));
        };
        let set = parts.headers;
        let removed = sent.into_iter().filter(|n| !forwarded.contains_key(n) && !set.contains_key(n)).collect();
        Verdict::Pass { set, removed }
    }
}

/// The bodiless request the layer checks. Headers that describe a body are
/// dropped: a configured body source is absent, and a client's
/// `content-type: application/grpc` cannot turn a rejection into a gRPC
/// trailers-only answer with HTTP status 200, which a gateway would read as a pass.
fn request(described: Described) -> Request<Empty<Bytes>> {
    let mut req = Request::new(Empty::new());
    *req.method_mut() = described.method;
    *req.uri_mut() = described.uri;
    *req.headers_mut() = described.headers;
    for name in [CONTENT_TYPE, CONTENT_LENGTH, CONTENT_ENCODING, TRANSFER_ENCODING] {
        req.headers_mut().remove(name);
    }
    req
}

/// The answer to a check that does not describe its original request:
/// `400` with a JSON body, never a pass.
pub fn bad_request(message: &'static str) -> Response<Bytes> {
    let body = format!("{{\"error\":\"bad_request\",\"message\":\"{message}\"}}");
    let mut res = Response::new(Bytes::from(body));
    *res.status_mut() = StatusCode::BAD_REQUEST;
    res.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    res.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

/// The headers the layer forwarded, after its strip; set by [`Echo`] only.
#[derive(Clone)]
struct Forwarded(HeaderMap);

/// The inner service of a check: it never proxies. It answers 200 with the
/// identity headers the layer forwarded, and records every header the layer
/// let through.
#[derive(Clone)]
struct Echo {
    forward: ForwardHeaders,
}

impl Service<Request<RequestBody<Empty<Bytes>>>> for Echo {
    type Response = Response<Empty<Bytes>>;
    type Error = Infallible;
    type Future = Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<RequestBody<Empty<Bytes>>>) -> Self::Future {
        let mut res = Response::new(Empty::new());
        for name in self.forward.names() {
            if let Some(value) = req.headers().get(name) {
                res.headers_mut().insert(name.clone(), value.clone());
            }
        }
        let (parts, _) = req.into_parts();
        res.extensions_mut().insert(Forwarded(parts.headers));
        ready(Ok(res))
    }
}
