//! A layer that verifies from the request head only, handing the inner
//! service the request body type unchanged: [`HeadOnlyLayer`], built by
//! [`IdentityVerificationLayer::head_only`](super::IdentityVerificationLayer::head_only).
//!
//! [`IdentityVerification`](super::IdentityVerification) wraps every request
//! body in [`RequestBody`](super::RequestBody), since a body source may
//! buffer it, and every response body in
//! [`ResponseBody`](super::ResponseBody). A framework that keeps one body
//! type (axum's `Body`) then boxes both again, two allocations per request.
//! When the credentials are in headers, the query or the WebSocket
//! protocol, nothing needs the body: [`HeadOnlyVerification`] passes
//! `Request<B>` on as it came and answers `Response<ResBody>` of the inner
//! service's own body type (its rejections are made with
//! `ResBody::from(Bytes)`). Everything else (modes, tenants, providers,
//! metrics, forwarded headers, stripping, bypass, responders) is the same
//! code as the full layer's. axum's `Body`, `http_body_util::Full` and any
//! body with `From<Bytes>` qualify; tonic's body has no `From<Bytes>`, so
//! tonic servers keep the full layer.
//!
//! ```
//! use axum::{Router, routing::get};
//! use tower_identity::{IdentityVerificationLayer, Identifier, Key, KeySet, Secret};
//!
//! let keys = KeySet::single(Key::hmac(Identifier::UserId, Secret::text("a-long-random-secret-from-the-vendor").unwrap()));
//! let layer = IdentityVerificationLayer::new(keys).head_only().expect("no body sources");
//! let app: Router = Router::new().route("/messages", get(|| async { "ok" })).route_layer(layer);
//! # let _ = app;
//! ```

mod future;
mod service;

use std::fmt;
use std::sync::Arc;

use tower_layer::Layer;

pub use future::HeadOnlyFuture;
pub use service::HeadOnlyVerification;

use super::config::Config;

/// [`IdentityVerificationLayer`](super::IdentityVerificationLayer) for
/// configurations without body sources: its services hand the inner service
/// the request body unchanged and answer with the inner service's response
/// body type (see the [module docs](self)).
#[derive(Clone)]
#[must_use]
pub struct HeadOnlyLayer {
    config: Arc<Config>,
}

impl HeadOnlyLayer {
    /// Checked by [`IdentityVerificationLayer::head_only`](super::IdentityVerificationLayer::head_only).
    pub(crate) fn new(config: Arc<Config>) -> Result<Self, ReadsBody> {
        if config.sources.reads_body() { Err(ReadsBody) } else { Ok(HeadOnlyLayer { config }) }
    }
}

impl fmt::Debug for HeadOnlyLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HeadOnlyLayer").field("mode", &self.config.mode).finish_non_exhaustive()
    }
}

impl<S> Layer<S> for HeadOnlyLayer {
    type Service = HeadOnlyVerification<S>;

    fn layer(&self, inner: S) -> Self::Service {
        HeadOnlyVerification::new(inner, self.config.clone())
    }
}

/// [`IdentityVerificationLayer::head_only`](super::IdentityVerificationLayer::head_only)
/// was called on a layer whose sources read the body (JSON or form fields):
/// a head-only layer could not see them, so it is not built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadsBody;

impl fmt::Display for ReadsBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the sources read the request body (JSON or form fields); a head-only layer cannot")
    }
}

impl std::error::Error for ReadsBody {}
