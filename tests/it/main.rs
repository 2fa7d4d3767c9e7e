//! The library's integration tests, as one test binary: one module per area,
//! sharing the helpers in `tests/support/`.
//!
//! Modules that need a crate feature are compiled only with it. The tests of
//! all modules run in one process, so none may install process-wide state
//! (a global tracing subscriber, a global metrics recorder, environment
//! variables) that another test could observe.

#[path = "../support/mod.rs"]
mod support;

mod attacks;
mod body;
#[cfg(feature = "cache")]
mod cache;
mod examples;
#[cfg(feature = "cache")]
mod faults;
mod frameworks;
mod jwt;
mod layer;
mod log_hygiene;
#[cfg(feature = "metrics")]
mod observability;
#[cfg(feature = "postgres")]
mod postgres;
mod properties;
mod signing_snippets;
mod vectors;
