//! axum extractors (feature `axum`, built on axum-core only).
//!
//! - [`VerifiedIdentity`]: the handler runs only for verified requests; an
//!   anonymous or unverified request (optional or report-only mode) gets the
//!   layer's 401 `credential_missing` answer.
//! - `Option<VerifiedIdentity>`: the handler serves anonymous and verified
//!   visitors alike.
//! - [`IdentityOutcome`]: what the layer decided.
//!
//! All three answer 500 naming the layer when `IdentityVerificationLayer`
//! is not installed on the route: a wiring mistake must not look like an
//! anonymous visitor.

use axum_core::extract::{FromRequestParts, OptionalFromRequestParts};
use axum_core::response::{IntoResponse, Response};
use http::request::Parts;

use crate::code::ErrorCode;
use crate::identity::{IdentityOutcome, VerifiedIdentity};
use crate::layer::Rejection;

/// Why an identity extractor refused a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum IdentityRejection {
    /// `IdentityVerificationLayer` did not run for this request (500).
    MissingLayer,
    /// The layer let the request through without a verified identity (401).
    NotVerified,
}

const MISSING_LAYER_BODY: &str =
    "{\"error\":\"missing_layer\",\"message\":\"IdentityVerificationLayer is not installed on this route.\"}";

impl IntoResponse for IdentityRejection {
    fn into_response(self) -> Response {
        match self {
            IdentityRejection::MissingLayer => {
                tracing::error!(
                    "identity: a handler asked for the identity but IdentityVerificationLayer is not installed on its route"
                );
                let mut res = Response::new(axum_core::body::Body::from(MISSING_LAYER_BODY));
                *res.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
                res.headers_mut()
                    .insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
                res
            }
            IdentityRejection::NotVerified => {
                Rejection::new(ErrorCode::CredentialMissing, false).http_response().map(axum_core::body::Body::from)
            }
        }
    }
}

impl std::fmt::Display for IdentityRejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            IdentityRejection::MissingLayer => "IdentityVerificationLayer is not installed on this route",
            IdentityRejection::NotVerified => "the request carries no verified identity",
        })
    }
}

impl std::error::Error for IdentityRejection {}

fn outcome(parts: &Parts) -> Result<IdentityOutcome, IdentityRejection> {
    IdentityOutcome::from_extensions(&parts.extensions).ok_or(IdentityRejection::MissingLayer)
}

impl<S: Send + Sync> FromRequestParts<S> for VerifiedIdentity {
    type Rejection = IdentityRejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        outcome(parts)?;
        parts.extensions.get::<VerifiedIdentity>().cloned().ok_or(IdentityRejection::NotVerified)
    }
}

impl<S: Send + Sync> OptionalFromRequestParts<S> for VerifiedIdentity {
    type Rejection = IdentityRejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Option<Self>, Self::Rejection> {
        outcome(parts)?;
        Ok(parts.extensions.get::<VerifiedIdentity>().cloned())
    }
}

impl<S: Send + Sync> FromRequestParts<S> for IdentityOutcome {
    type Rejection = IdentityRejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        outcome(parts)
    }
}
