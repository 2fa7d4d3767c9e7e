//! Helpers shared by the integration tests in `tests/it/`, one per purpose:
//!
//! - `keys`: the fixed clock, the usual secrets and key sets;
//! - `http`: requests, collected answers, servers and clients on 127.0.0.1;
//! - `grpc`: a gRPC channel and health-check requests;
//! - `service`: the layer driven in process around a recording inner service;
//! - `data`: the sha256-checked test data files;
//! - `rng`: a deterministic xorshift generator;
//! - `load_cases`: the mixed valid/forged request cases of the load tests;
//! - `ws`: a WebSocket client (tokio-tungstenite) for the real-time channel tests;
//! - `chromium`, `page`: headless Chromium and the page that runs `fetch`
//!   cases for the browser tests (also used by identity-proxy's tests);
//! - `drive`: one request through a service by hand, with a no-op waker.
//!
//! `keys.rs`, `rng.rs`, `load_cases.rs`, `ws.rs` and `drive.rs` are self-contained, for test
//! binaries (and benches) of their own that include them with `#[path]`.
// Each helper serves some modules, which features may compile out.
#![allow(dead_code, unused_imports)]

pub mod chromium;
pub mod data;
mod grpc;
mod http;
mod keys;
pub mod load_cases;
pub mod page;
mod rng;
mod service;
pub mod ws;

pub use self::grpc::*;
pub use self::http::*;
pub use self::keys::*;
pub use self::rng::*;
pub use self::service::*;
