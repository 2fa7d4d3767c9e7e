//! The library's integration tests, as one test binary: one module per area,
//! sharing the helpers in `tests/support/`.
//!
//! Modules that need a crate feature are compiled only with it. The tests of
//! all modules run in one process, so none may install process-wide state
//! (a global tracing subscriber, a global metrics recorder, environment
//! variables) that another test could observe.

#[path = "../support/mod.rs"]
mod support;

#[cfg(feature = "jwt")]
mod attacks;
#[cfg(all(feature = "axum", feature = "json"))]
mod body;
#[cfg(all(feature = "axum", feature = "json"))]
mod browser;
#[cfg(feature = "json")]
mod budget;
#[cfg(feature = "cache")]
mod cache;
#[cfg(all(feature = "axum", feature = "json"))]
mod cors;
#[cfg(all(feature = "axum", feature = "json"))]
mod examples;
#[cfg(feature = "cache")]
mod faults;
#[cfg(feature = "axum")]
mod frameworks;
#[cfg(all(feature = "json", feature = "jwt"))]
mod hardening;
#[cfg(feature = "axum")]
mod head_only;
#[cfg(feature = "jwt")]
mod jwt;
#[cfg(all(feature = "axum", feature = "json"))]
mod keep_body;
mod layer;
#[cfg(feature = "jwt")]
mod log_hygiene;
#[cfg(all(feature = "metrics", feature = "jwt"))]
mod observability;
#[cfg(all(feature = "metrics", feature = "jwt"))]
mod oracle;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "jwt")]
mod properties;
mod shared_secret;
#[cfg(feature = "jwt")]
mod signing_snippets;
mod vectors;
#[cfg(all(feature = "axum", feature = "jwt"))]
mod websocket;
