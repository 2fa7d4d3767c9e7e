//! Rejections: stable error codes and the replaceable [`Responder`].

use std::fmt;

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, Uri, Version};

/// The stable, documented error codes sent in rejection bodies.
///
/// Codes name the class of failure only: they never echo the credential,
/// the identifier, the tenant or the secret. An unknown tenant answers
/// [`SignatureInvalid`](ErrorCode::SignatureInvalid), like a bad signature.
///
/// | code | status | meaning |
/// | --- | --- | --- |
/// | `credential_missing` | 401 | no signature was sent and the mode requires one |
/// | `credential_malformed` | 401 | the signature, timestamp or an identifier is not in an acceptable form |
/// | `signature_invalid` | 401 | no valid key produces the signature (or the tenant is unknown) |
/// | `signature_expired` | 401 | the signature is older than the maximum age |
/// | `signature_not_yet_valid` | 401 | the signature is dated too far in the future |
/// | `conflicting_values` | 401 | a role was sent twice with different values |
/// | `token_lifetime_too_long` | 401 | a JWT's `exp - iat` exceeds the maximum lifetime |
/// | `claims_mismatch` | 401 | identity values sent beside a JWT differ from its claims |
/// | `body_too_large` | 413 | the body exceeds the body limit (nothing was forwarded) |
/// | `body_encoding_unsupported` | 415 | a `Content-Encoding` body where the identity is read from the body |
/// | `body_unreadable` | 400 | the body ended early or failed while being read |
/// | `provider_unavailable` | 503 | the secret provider failed; retry later |
/// | `misconfigured` | 500 | the tenant's keys break the key policy (e.g. a too-short secret) |
/// | `internal_error` | 500 | the secret provider panicked (the request is refused, the service keeps serving) |
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorCode {
    /// `credential_missing`
    CredentialMissing,
    /// `credential_malformed`
    CredentialMalformed,
    /// `signature_invalid`
    SignatureInvalid,
    /// `signature_expired`
    SignatureExpired,
    /// `signature_not_yet_valid`
    SignatureNotYetValid,
    /// `conflicting_values`
    ConflictingValues,
    /// `token_lifetime_too_long`
    TokenLifetimeTooLong,
    /// `claims_mismatch`
    ClaimsMismatch,
    /// `body_too_large`
    BodyTooLarge,
    /// `body_encoding_unsupported`
    BodyEncodingUnsupported,
    /// `body_unreadable`
    BodyUnreadable,
    /// `provider_unavailable`
    ProviderUnavailable,
    /// `misconfigured`
    Misconfigured,
    /// `internal_error`
    Internal,
}

macro_rules! codes {
    ($($variant:ident => $code:literal, $status:ident, $grpc:literal, $msg:literal;)*) => {
        impl ErrorCode {
            /// The code's string, as sent in the `error` field.
            pub fn as_str(self) -> &'static str {
                match self { $(ErrorCode::$variant => $code,)* }
            }
            /// The HTTP status answered.
            pub fn status(self) -> StatusCode {
                match self { $(ErrorCode::$variant => StatusCode::$status,)* }
            }
            /// The gRPC status code answered to gRPC requests.
            pub fn grpc_status(self) -> u8 {
                match self { $(ErrorCode::$variant => $grpc,)* }
            }
            /// A human-readable message (no request data).
            pub fn message(self) -> &'static str {
                match self { $(ErrorCode::$variant => $msg,)* }
            }
            fn json_body(self) -> &'static str {
                match self { $(ErrorCode::$variant => concat!("{\"error\":\"", $code, "\",\"message\":\"", $msg, "\"}"),)* }
            }
            // Header values checked at compile time (`from_static` at run
            // time checks every byte on every rejection).
            fn challenge(self) -> HeaderValue {
                match self {
                    $(ErrorCode::$variant => const {
                        HeaderValue::from_static(concat!("Identity realm=\"identity\", error=\"", $code, "\""))
                    },)*
                }
            }
            fn grpc_message(self) -> HeaderValue {
                match self { $(ErrorCode::$variant => const { HeaderValue::from_static($code) },)* }
            }
        }
    };
}

codes! {
    CredentialMissing => "credential_missing", UNAUTHORIZED, 16, "An identity signature is required.";
    CredentialMalformed => "credential_malformed", UNAUTHORIZED, 16, "The identity credential is malformed.";
    SignatureInvalid => "signature_invalid", UNAUTHORIZED, 16, "The identity signature is invalid.";
    SignatureExpired => "signature_expired", UNAUTHORIZED, 16, "The identity signature has expired.";
    SignatureNotYetValid => "signature_not_yet_valid", UNAUTHORIZED, 16, "The identity signature is dated in the future.";
    ConflictingValues => "conflicting_values", UNAUTHORIZED, 16, "The request carries conflicting identity values.";
    TokenLifetimeTooLong => "token_lifetime_too_long", UNAUTHORIZED, 16, "The identity token lives longer than allowed.";
    ClaimsMismatch => "claims_mismatch", UNAUTHORIZED, 16, "Identity values sent beside the token differ from its claims.";
    BodyTooLarge => "body_too_large", PAYLOAD_TOO_LARGE, 8, "The request body is too large.";
    BodyEncodingUnsupported => "body_encoding_unsupported", UNSUPPORTED_MEDIA_TYPE, 3, "Encoded request bodies cannot carry an identity.";
    BodyUnreadable => "body_unreadable", BAD_REQUEST, 3, "The request body could not be read.";
    ProviderUnavailable => "provider_unavailable", SERVICE_UNAVAILABLE, 14, "Identity verification is temporarily unavailable.";
    Misconfigured => "misconfigured", INTERNAL_SERVER_ERROR, 13, "Identity verification is misconfigured.";
    Internal => "internal_error", INTERNAL_SERVER_ERROR, 13, "Identity verification failed internally.";
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

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
    pub fn http_response(&self) -> Response<Bytes> {
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
    pub fn grpc_response(&self) -> Response<Bytes> {
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

/// Whether a request is gRPC, by its content type.
pub(crate) fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .is_some_and(|ct| ct.as_bytes().len() >= 16 && ct.as_bytes()[..16].eq_ignore_ascii_case(b"application/grpc"))
}

/// A predicate over a request's head (`bypass`, `body_filter`).
pub(crate) type RequestPredicate = std::sync::Arc<dyn Fn(&RequestHead<'_>) -> bool + Send + Sync>;

/// The parts of a rejected request a [`Responder`] may look at.
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

    pub(crate) fn of_parts(parts: &'a http::request::Parts) -> RequestHead<'a> {
        RequestHead { method: &parts.method, uri: &parts.uri, version: parts.version, headers: &parts.headers }
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
/// use tower_identity::{Rejection, RequestHead};
///
/// let responder = |rejection: &Rejection, _req: &RequestHead<'_>| {
///     let mut res = rejection.default_response();
///     if res.status() == StatusCode::UNAUTHORIZED && !rejection.is_grpc() {
///         *res.body_mut() = Bytes::from_static(b"{\"error\":\"identity_unverified\"}");
///     }
///     res
/// };
/// # let _: &dyn tower_identity::Responder = &responder;
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
