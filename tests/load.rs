//! Load through the layer in an axum server, on 127.0.0.1: a mixed load
//! (valid HMAC and JWT, mutated credentials, none, wrong tenants; JSON bodies
//! of random sizes sent in random chunks; see `support/load_cases.rs`) gets
//! no wrong verdict, no identity crossing between requests, no altered body,
//! no panic. The same load through `identity-proxy`, slow clients and memory
//! are tested in identity-proxy/tests/it/load.rs.
//!
//! `TOWER_IDENTITY_LOAD_REQUESTS` sets the number of requests (default 100,000).
//!
//! A test binary of its own (not a module of `tests/it/`): it counts panics
//! process-wide, and other modules' tests panic on purpose (faulty providers).

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::routing::post;
use bytes::Bytes;
use http::{HeaderMap, HeaderName};
use support::load_cases::{
    ACME_HMAC, ACME_JWT, GLOBEX_HMAC, SERIAL, ServerSide, assert_clean, drive, echo, requests, text,
};
use tower_identity::{Identifier, IdentityVerificationLayer, Key, KeySet, Role, Sources, TenantMap, VerifiedIdentity};

/// Counts panics anywhere in this process (the axum server runs in it).
static PANICS: AtomicUsize = AtomicUsize::new(0);

fn count_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            PANICS.fetch_add(1, Ordering::SeqCst);
            previous(info);
        }));
    });
}

fn tenants() -> TenantMap {
    let acme = KeySet::new([
        Key::hmac(Identifier::UserId, text(ACME_HMAC)).with_id("acme-hmac"),
        Key::jwt(text(ACME_JWT)).with_id("acme-jwt"),
    ])
    .unwrap()
    .with_audience("acme");
    TenantMap::from_tenants([
        ("acme", acme),
        ("globex", KeySet::single(Key::hmac(Identifier::UserId, text(GLOBEX_HMAC)))),
    ])
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_load_through_the_layer_in_axum() {
    let _serial = SERIAL.lock().await;
    count_panics();
    let panics_before = PANICS.load(Ordering::SeqCst);
    let server = ServerSide::default();
    let seen = server.clone();
    let handler = move |identity: VerifiedIdentity, headers: HeaderMap, body: Bytes| {
        let seen = seen.clone();
        async move {
            seen.saw(&headers);
            echo(&headers, identity.id(), identity.tenant().unwrap_or("-"), &body)
        }
    };
    let sources = Sources::new()
        .header(Role::Tenant, HeaderName::from_static("x-app-id"))
        .bearer()
        .json(Role::UserId, "/user_id")
        .json(Role::Signature, "/user_hash");
    let app = Router::new()
        .route("/echo", post(handler))
        .route_layer(IdentityVerificationLayer::new(tenants()).sources(sources));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let task = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let total = requests();
    let (tally, elapsed) = drive(addr, total).await;
    tally.print("layer in axum", elapsed);
    let panics = PANICS.load(Ordering::SeqCst) - panics_before;
    println!("layer in axum: {panics} panics");
    assert!(!task.is_finished(), "the server is still running");
    assert_eq!(panics, 0, "no panic while serving");
    assert_clean("layer in axum", &tally, &server, total);
    // Still healthy: new connections get the right verdicts.
    let (after, _) = drive(addr, 50).await;
    assert_eq!(after.failures(), 0, "the server still answers correctly");
    task.abort();
}
