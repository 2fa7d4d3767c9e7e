//! Browser widgets on another origin: what a CORS layer in front of
//! [`IdentityVerificationLayer`](crate::IdentityVerificationLayer) needs to know.
//!
//! A widget on `https://shop.example` calling `https://api.vendor.example`
//! with `x-user-id` and `x-identity-signature` makes the browser send a CORS
//! *preflight* first: an `OPTIONS` request with `Origin` and
//! `Access-Control-Request-Method`, and, by the Fetch standard, without any
//! credential. The way to serve browsers is a CORS layer (such as
//! `tower_http::cors::CorsLayer`) *outside* the identity layer: it answers
//! preflights before they reach the identity layer, and it adds the CORS
//! headers to every response, the identity layer's 401, 413, 415 and 503
//! included, so the widget can read `{"error": "signature_invalid"}`.
//!
//! [`Sources::cors_allow_headers`] lists the request headers the browser
//! must be allowed to send for the configured sources, and
//! [`EXPOSE_HEADERS`] the response headers a widget needs to read, so the
//! CORS layer is built from the same configuration and cannot drift:
//!
//! ```
//! use axum::{routing::post, Router};
//! use tower_http::cors::{AllowOrigin, CorsLayer};
//! use tower_identity::{cors, IdentityVerificationLayer, Identifier, Key, KeySet, Secret, Sources};
//!
//! let keys = KeySet::single(Key::hmac(Identifier::UserId, Secret::text("a-long-random-secret-from-the-vendor").unwrap()));
//! let sources = Sources::new();
//! let cors_layer = CorsLayer::new()
//!     .allow_origin(AllowOrigin::list(["https://shop.example".parse().unwrap()]))
//!     .allow_methods([http::Method::GET, http::Method::POST])
//!     .allow_headers(sources.cors_allow_headers())
//!     .expose_headers(cors::EXPOSE_HEADERS);
//! let app: Router = Router::new()
//!     .route("/chat", post(|| async { "hello" }))
//!     // Inside: runs only for matched routes, after CORS.
//!     .route_layer(IdentityVerificationLayer::new(keys).sources(sources))
//!     // Outside: answers preflights and decorates every response.
//!     .layer(cors_layer);
//! # let _ = app;
//! ```
//!
//! Where something *inside* the identity layer answers preflights instead,
//! [`IdentityVerificationLayer::pass_cors_preflight`](crate::IdentityVerificationLayer::pass_cors_preflight)
//! lets them through as anonymous.

use std::sync::atomic::{AtomicBool, Ordering};

use http::header::{
    ACCESS_CONTROL_REQUEST_METHOD, AUTHORIZATION, CONTENT_TYPE, HeaderName, ORIGIN, RETRY_AFTER, WWW_AUTHENTICATE,
};
use http::{HeaderMap, Method};

use crate::claim::Role;
use crate::extract::Sources;

/// The response headers a widget needs to read on a rejection:
/// `www-authenticate` (the challenge naming the error) and `retry-after`
/// (on 503). Pass them to `CorsLayer::expose_headers`.
pub const EXPOSE_HEADERS: [HeaderName; 2] = [WWW_AUTHENTICATE, RETRY_AFTER];

impl Sources {
    /// The request headers a browser must be allowed to send
    /// (`Access-Control-Allow-Headers`) for these sources: every configured
    /// header (tenant, identifiers, signature, timestamp, token, metadata),
    /// `authorization` when the token is read from `Authorization: Bearer`,
    /// and `content-type` (a JSON body is not a CORS-safelisted content
    /// type). Pass them to `CorsLayer::allow_headers`.
    pub fn cors_allow_headers(&self) -> Vec<HeaderName> {
        let configured = Role::ALL.iter().filter_map(|&role| self.header_name(role));
        let bearer = self.reads_bearer().then_some(&AUTHORIZATION);
        let mut names: Vec<HeaderName> = Vec::new();
        for name in configured.chain(bearer).chain([&CONTENT_TYPE]) {
            if !names.contains(name) {
                names.push(name.clone());
            }
        }
        names
    }
}

/// Whether a request is a CORS preflight: `OPTIONS` with both `Origin` and
/// `Access-Control-Request-Method`.
pub fn is_preflight(method: &Method, headers: &HeaderMap) -> bool {
    method == Method::OPTIONS && headers.contains_key(ORIGIN) && headers.contains_key(ACCESS_CONTROL_REQUEST_METHOD)
}

/// Set once the first rejected preflight was reported at `warn`.
static PREFLIGHT_WARNED: AtomicBool = AtomicBool::new(false);

/// Logs that the layer rejected a preflight: the browser will block the real
/// request, and the fix is a CORS layer outside. Warned once per process
/// (a client can send preflights at will), then at `debug`.
pub(crate) fn log_rejected_preflight(status: u16) {
    const HINT: &str = "identity: rejected a CORS preflight, so browsers will block the real request; put a CORS \
                        layer (tower_http::cors::CorsLayer) outside IdentityVerificationLayer, or enable \
                        pass_cors_preflight if the inner service answers preflights";
    if PREFLIGHT_WARNED.swap(true, Ordering::Relaxed) {
        tracing::debug!(status, "{HINT}");
    } else {
        tracing::warn!(status, "{HINT}");
    }
}
