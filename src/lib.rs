#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]
//! # tower-identity
//!
//! Tower middleware that proves who a request claims to be before it reaches
//! your service.
//!
//! Chat widgets and in-app SDKs tell a backend "this visitor is user 42"
//! from browser JavaScript, which anyone can edit. The fix used across the
//! industry: the customer's server signs the identifier with a secret
//! (HMAC-SHA256), the browser forwards the signature, and the receiving
//! server checks it. [`IdentityVerificationLayer`] does that check:
//!
//! 1. **extract** the claim (tenant, identifiers, signature) from headers or
//!    query parameters ([`Sources`]);
//! 2. **resolve** the tenant's keys from a [`SecretProvider`];
//! 3. **verify** in constant time with the pure [`verify::verify`](verify::verify()) function;
//! 4. **decide** by [`Mode`]: insert the [`VerifiedIdentity`] (or, for a
//!    request let through unverified, its [`IdentityOutcome`]) into the
//!    request extensions, or answer 401 (a gRPC status for gRPC requests)
//!    without calling the inner service.
//!
//! ```
//! use axum::{routing::get, Router};
//! use tower_identity::{IdentityVerificationLayer, Identifier, Key, KeySet, Secret, VerifiedIdentity};
//!
//! async fn me(identity: VerifiedIdentity) -> String {
//!     format!("hello, {}", identity.id())
//! }
//!
//! let secret = Secret::text("a-long-random-secret-from-the-vendor").unwrap();
//! let keys = KeySet::single(Key::hmac(Identifier::UserId, secret));
//! let app: Router = Router::new()
//!     .route("/me", get(me))
//!     .route_layer(IdentityVerificationLayer::new(keys));
//! # let _ = app;
//! ```
//!
//! A client then sends `x-user-id: 42` and `x-identity-signature: <hex of
//! HMAC-SHA256(secret, "42")>`; see [`sign`] for the signing side. When no
//! identity is read from request bodies,
//! [`head_only()`](IdentityVerificationLayer::head_only) gives the same
//! verification with the inner service's body types kept (axum then boxes no
//! body again): `.route_layer(IdentityVerificationLayer::new(keys).head_only()?)`.
//!
//! ## Schemes
//!
//! | scheme | signed message | signature |
//! | --- | --- | --- |
//! | [`Scheme::Hmac`] | the user id, email or visitor id, as sent | 64 hex characters (either case) |
//! | [`Scheme::TimestampedHmac`] | `{identifier}-{unix_ts}` | `<64 hex>-<unix_ts>`, within [`verify::VerifyOptions::max_age`] |
//!
//! Secrets are UTF-8 text (default), hex or base64 ([`secret::SecretEncoding`]). A
//! key is bound to one scheme, and a [`KeySet`] refuses a secret shared by
//! two schemes. Key sets hold several keys for rotation; the matching key's
//! id is reported in [`VerifiedIdentity::key_id`].
//!
//! ## Modes
//!
//! See [`Mode`]: `Off`, `ReportOnly`, `Optional` (validate if present) and
//! `Required` (the default). Tenants may override the layer's mode through
//! their [`TenantPolicy`].
//!
//! ## Rejections
//!
//! 401 with `{"error": "<code>", "message": "<text>"}`, a `WWW-Authenticate`
//! challenge and `Cache-Control: no-store`; codes are listed on
//! [`layer::ErrorCode`]. A failing provider gets 503 with `Retry-After`, never a
//! pass. gRPC requests get a trailers-only response with `grpc-status` 16
//! (or 14). Replace the [`layer::Responder`] to change the format.
//!
//! ## Browser widgets (CORS)
//!
//! A widget calls the API from another origin, so browsers send a CORS
//! preflight first and read only answers that carry the CORS headers. Put
//! `tower_http::cors::CorsLayer` outside the identity layer, built from
//! [`Sources::cors_allow_headers`] and [`cors::EXPOSE_HEADERS`]; see the
//! [`cors`] module for a compiling example and for
//! [`IdentityVerificationLayer::pass_cors_preflight`].
//!
//! ## Features
//!
//! - `axum` (default): `VerifiedIdentity`, `Option<VerifiedIdentity>` and
//!   `IdentityOutcome` as axum extractors.
//! - `base64` (default): base64-encoded secrets.
//! - `jwt` (default): HS256 JWT verification ([`verify::jwt`]) and minting ([`sign`]).
//! - `json` (default): identities in JSON request bodies.
//! - `cache`: [`provider::CachingProvider`] (moka, tokio).
//! - `metrics`: counters and histograms through the `metrics` facade ([`metrics`]).
//! - `postgres`: [`provider::postgres::PostgresProvider`] (tokio-postgres, deadpool) with LISTEN/NOTIFY invalidation.
//! - `tonic`: `NamedService` for [`IdentityVerification`], to wrap a single
//!   tonic service: `Server::builder().add_service(layer.layer(svc))`.
//!
//! ## Modules, in pipeline order
//!
//! [`claim`] (what a request claims) → [`key`] and [`secret`] → [`identity`]
//! (what handlers see) → [`mod@verify`] (the pure core) and [`sign`] (its
//! mirror); then [`extract`] (claims from a request), [`provider`] (keys per
//! tenant) and [`layer`] (the tower layer); [`axum`], [`metrics`], [`clock`]
//! beside them. See `ARCHITECTURE.md`.

#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
pub mod axum;
pub mod claim;
pub mod clock;
mod code;
pub mod cors;
pub mod extract;
pub mod identity;
pub mod key;
pub mod layer;
pub mod metrics;
mod mode;
pub mod provider;
pub mod secret;
pub mod sign;
pub mod verify;

// The root holds what most users name: the layer and its service, what
// handlers read, modes, keys and providers. Everything else is reached
// through its module (`layer::ForwardHeaders`, `verify::verify`,
// `provider::CachingProvider`, ...).
pub use claim::Role;
pub use extract::Sources;
pub use identity::{IdentityOutcome, VerifiedIdentity};
pub use key::{Identifier, Key, KeySet, Scheme};
pub use layer::{HeadOnlyLayer, IdentityVerification, IdentityVerificationLayer, KeepResponseBodyLayer};
pub use mode::Mode;
pub use provider::{SecretProvider, TenantMap, TenantPolicy};
pub use secret::Secret;

#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
