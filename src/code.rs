//! [`ErrorCode`]: the class of a failure, as answered to clients.
//!
//! Part of the core (an [`UnverifiedReason`](crate::identity::UnverifiedReason)
//! carries one), so it lives below everything that answers HTTP; the
//! rejection responses that use its tables are in [`layer`](crate::layer).

use std::fmt;

use http::{HeaderValue, StatusCode};

/// The stable, documented error codes sent in rejection bodies.
///
/// Codes name the class of failure only: they never echo the credential,
/// the identifier, the tenant or the secret. An unknown tenant answers what a
/// known tenant with a wrong key would: [`SignatureInvalid`](ErrorCode::SignatureInvalid)
/// for a well-formed credential, `credential_malformed` for a malformed one.
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
/// | `overloaded` | 503 | the layer's budget for buffered bodies is in use; retry later (the body was not read) |
/// | `misconfigured` | 500 | the tenant's keys break the key policy (e.g. a too-short secret, or a secret another tenant uses under another scheme) |
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
    /// `overloaded`
    Overloaded,
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
            pub(crate) fn json_body(self) -> &'static str {
                match self { $(ErrorCode::$variant => concat!("{\"error\":\"", $code, "\",\"message\":\"", $msg, "\"}"),)* }
            }
            // Header values checked at compile time (`from_static` at run
            // time checks every byte on every rejection).
            pub(crate) fn challenge(self) -> HeaderValue {
                match self {
                    $(ErrorCode::$variant => const {
                        HeaderValue::from_static(concat!("Identity realm=\"identity\", error=\"", $code, "\""))
                    },)*
                }
            }
            pub(crate) fn grpc_message(self) -> HeaderValue {
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
    Overloaded => "overloaded", SERVICE_UNAVAILABLE, 14, "Too many identity bodies are being read; retry later.";
    Misconfigured => "misconfigured", INTERNAL_SERVER_ERROR, 13, "Identity verification is misconfigured.";
    Internal => "internal_error", INTERNAL_SERVER_ERROR, 13, "Identity verification failed internally.";
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
