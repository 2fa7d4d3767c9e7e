//! The tower layer: [`IdentityVerificationLayer`] builds
//! [`IdentityVerification`] services.
//!
//! For each request the service
//!
//! 1. lets [`bypass`](IdentityVerificationLayer::bypass)ed requests through
//!    (credentials still guarded);
//! 2. extracts the claim ([`crate::extract`]), buffering the body only when a
//!    body source applies (`collect`);
//! 3. asks the [`SecretProvider`](crate::provider::SecretProvider) for the
//!    tenant's policy, at once or in the [`ResponseFuture`];
//! 4. verifies ([`mod@crate::verify`]) and decides one verdict by the mode
//!    (`verdict`), which is recorded (metrics, tracing) and applied: the
//!    identity into the extensions and, for proxies, [`ForwardHeaders`];
//!    or a [`Rejection`] built by the [`Responder`], without calling the
//!    inner service.
//!
//! The inner service receives `Request<`[`RequestBody<B>`](RequestBody)`>`
//! and the layer answers `Response<`[`ResponseBody<B>`](ResponseBody)`>`.
//! Without body sources, [`IdentityVerificationLayer::head_only`] builds a
//! [`HeadOnlyLayer`] instead, whose services keep the inner service's body
//! types ([`head_only`]); with them,
//! [`IdentityVerificationLayer::keep_response_body`] builds a
//! [`KeepResponseBodyLayer`], whose services keep the response body type
//! ([`keep_body`]).

pub mod body;
mod builder;
mod collect;
mod config;
mod forward;
mod future;
pub mod head_only;
pub mod keep_body;
mod reject;
mod service;
mod verdict;

pub use body::{RequestBody, ResponseBody};
pub use builder::{DEFAULT_MIN_SECRET_LEN, IdentityVerificationLayer};
pub use collect::DEFAULT_MAX_BUFFERED_BODY_BYTES;
pub use forward::{ForwardHeaders, remove_hop_by_hop};
pub use future::ResponseFuture;
pub use head_only::{HeadOnlyLayer, HeadOnlyVerification, ReadsBody};
pub use keep_body::{KeepResponseBody, KeepResponseBodyFuture, KeepResponseBodyLayer};
pub use reject::{DefaultResponder, Rejection, Responder};
pub use service::IdentityVerification;

pub use crate::code::ErrorCode;
pub use crate::extract::RequestHead;
