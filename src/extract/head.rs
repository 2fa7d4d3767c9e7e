//! The request head: what body sources, `bypass` predicates and responders
//! look at. Here rather than in `layer` because extraction needs it
//! (`Sources::body_filter`) and nothing below the layer may import it.

use http::header::CONTENT_TYPE;
use http::{HeaderMap, Method, Request, Uri, Version};

/// Whether a request is gRPC, by its content type.
pub(crate) fn is_grpc(headers: &HeaderMap) -> bool {
    headers.get(CONTENT_TYPE).is_some_and(super::content_type::is_grpc_type)
}

/// A predicate over a request's head (`bypass`, `body_filter`).
pub(crate) type RequestPredicate = std::sync::Arc<dyn Fn(&RequestHead<'_>) -> bool + Send + Sync>;

/// The parts of a request a predicate or a [`Responder`](crate::layer::Responder) may look at.
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub struct RequestHead<'a> {
    /// The method.
    pub method: &'a Method,
    /// The URI.
    pub uri: &'a Uri,
    /// The HTTP version.
    pub version: Version,
    /// The request headers (they may carry credentials: do not log them).
    pub headers: &'a HeaderMap,
}

impl<'a> RequestHead<'a> {
    pub(crate) fn of<B>(req: &'a Request<B>) -> RequestHead<'a> {
        RequestHead { method: req.method(), uri: req.uri(), version: req.version(), headers: req.headers() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn grpc_detection() {
        let mut h = HeaderMap::new();
        assert!(!is_grpc(&h));
        h.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc+proto"));
        assert!(is_grpc(&h));
        h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        assert!(!is_grpc(&h));
    }
}
