//! The sidecar's integration tests, in one binary: the real `identity-proxy`
//! between real clients and upstreams on 127.0.0.1.
//!
//! The load cases and the generator are shared with the library's load test
//! (tests/load.rs): they live in the repository's tests/support/.

#[allow(dead_code)]
#[path = "../../../tests/support/load_cases.rs"]
mod load_cases;
#[path = "../../../tests/support/rng.rs"]
mod rng;
#[allow(dead_code)]
#[path = "../../../tests/support/ws.rs"]
mod ws;
// Headless Chromium and the fetch-cases page, shared with the library's browser tests.
#[allow(dead_code)]
#[path = "../../../tests/support/chromium.rs"]
mod chromium;
#[allow(dead_code)]
#[path = "../../../tests/support/page.rs"]
mod page;

mod authz;
mod connections;
mod cors;
mod load;
mod operations;
mod process;
mod proxy;
mod readme;
mod realtime;
mod realtime_browser;
