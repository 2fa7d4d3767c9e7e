//! Rejections: the response for an [`ErrorCode`] and the replaceable [`Responder`].

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{HeaderMap, HeaderName, HeaderValue, Response, StatusCode};

use crate::code::ErrorCode;
use crate::extract::RequestHead;

/// A request the layer refuses. The inner service is not called.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rejection {
    code: ErrorCode,
    grpc: bool,
}

const GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");
const GRPC_MESSAGE: HeaderName = HeaderName::from_static("grpc-message");
const NO_STORE: HeaderValue = HeaderValue::from_static("no-store");
const APPLICATION_JSON: HeaderValue = HeaderValue::from_static("application/json");
const APPLICATION_GRPC: HeaderValue = HeaderValue::from_static("application/grpc");
const RETRY_AFTER_SECS: HeaderValue = HeaderValue::from_static("5");

impl Rejection {
    pub(crate) fn new(code: ErrorCode, grpc: bool) -> Rejection {
        Rejection { code, grpc }
    }

    /// The error code.
    pub fn code(&self) -> ErrorCode {
        self.code
    }

    /// Whether the request is a gRPC request (`content-type: application/grpc…`).
    pub fn is_grpc(&self) -> bool {
        self.grpc
    }

    /// The built-in response: the gRPC one for gRPC requests, the HTTP one otherwise.
    pub fn default_response(&self) -> Response<Bytes> {
        if self.grpc { self.grpc_response() } else { self.http_response() }
    }

    /// The HTTP response: the code's status, a JSON body
    /// `{"error": "<code>", "message": "<text>"}`, `Cache-Control: no-store`,
    /// a `WWW-Authenticate` challenge on 401 and `Retry-After` on 503.
    pub(crate) fn http_response(&self) -> Response<Bytes> {
        let mut res = Response::new(Bytes::from_static(self.code.json_body().as_bytes()));
        *res.status_mut() = self.code.status();
        // Sized for the three headers: a default map would allocate room for six.
        *res.headers_mut() = HeaderMap::with_capacity(3);
        let h = res.headers_mut();
        h.insert(CONTENT_TYPE, APPLICATION_JSON);
        h.insert(CACHE_CONTROL, NO_STORE);
        match self.code.status() {
            StatusCode::UNAUTHORIZED => {
                h.insert(WWW_AUTHENTICATE, self.code.challenge());
            }
            StatusCode::SERVICE_UNAVAILABLE => {
                h.insert(RETRY_AFTER, RETRY_AFTER_SECS);
            }
            _ => {}
        }
        res
    }

    /// The gRPC response: trailers-only (HTTP 200, `grpc-status` and a generic
    /// `grpc-message` in the headers, empty body).
    pub(crate) fn grpc_response(&self) -> Response<Bytes> {
        let mut res = Response::new(Bytes::new());
        *res.headers_mut() = HeaderMap::with_capacity(4);
        let h = res.headers_mut();
        h.insert(CONTENT_TYPE, APPLICATION_GRPC);
        h.insert(GRPC_STATUS, HeaderValue::from(u16::from(self.code.grpc_status())));
        h.insert(GRPC_MESSAGE, self.code.grpc_message());
        h.insert(CACHE_CONTROL, NO_STORE);
        res
    }
}

/// Builds the response for a rejected request. Replace the default to change
/// the body format, add headers, or redirect browsers to a sign-in page.
///
/// Implemented for closures `Fn(&Rejection, &RequestHead<'_>) -> Response<Bytes>`.
///
/// ```
/// use bytes::Bytes;
/// use http::{Response, StatusCode};
/// use tower_identity::{layer::Rejection, extract::RequestHead};
///
/// let responder = |rejection: &Rejection, _req: &RequestHead<'_>| {
///     let mut res = rejection.default_response();
///     if res.status() == StatusCode::UNAUTHORIZED && !rejection.is_grpc() {
///         *res.body_mut() = Bytes::from_static(b"{\"error\":\"identity_unverified\"}");
///     }
///     res
/// };
/// # let _: &dyn tower_identity::layer::Responder = &responder;
/// ```
pub trait Responder: Send + Sync + 'static {
    /// The response for `rejection`.
    fn respond(&self, rejection: &Rejection, request: &RequestHead<'_>) -> Response<Bytes>;
}

/// The built-in responder: [`Rejection::default_response`].
#[derive(Clone, Copy, Debug, Default)]
pub struct DefaultResponder;

impl Responder for DefaultResponder {
    fn respond(&self, rejection: &Rejection, _request: &RequestHead<'_>) -> Response<Bytes> {
        rejection.default_response()
    }
}

impl<F> Responder for F
where
    F: Fn(&Rejection, &RequestHead<'_>) -> Response<Bytes> + Send + Sync + 'static,
{
    fn respond(&self, rejection: &Rejection, request: &RequestHead<'_>) -> Response<Bytes> {
        self(rejection, request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_json_with_code_and_message() {
        for code in [
            ErrorCode::CredentialMissing,
            ErrorCode::CredentialMalformed,
            ErrorCode::SignatureInvalid,
            ErrorCode::SignatureExpired,
            ErrorCode::SignatureNotYetValid,
            ErrorCode::ConflictingValues,
            ErrorCode::TokenLifetimeTooLong,
            ErrorCode::ClaimsMismatch,
            ErrorCode::BodyTooLarge,
            ErrorCode::BodyEncodingUnsupported,
            ErrorCode::BodyUnreadable,
            ErrorCode::ProviderUnavailable,
            ErrorCode::Overloaded,
            ErrorCode::Misconfigured,
            ErrorCode::Internal,
        ] {
            let res = Rejection::new(code, false).http_response();
            assert_eq!(res.status(), code.status());
            let body = std::str::from_utf8(res.body()).unwrap();
            assert_eq!(body, format!("{{\"error\":\"{}\",\"message\":\"{}\"}}", code.as_str(), code.message()));
            let grpc = Rejection::new(code, true).grpc_response();
            assert_eq!(grpc.status(), StatusCode::OK);
            assert_eq!(grpc.headers()["grpc-status"], code.grpc_status().to_string().as_str());
        }
    }
}
