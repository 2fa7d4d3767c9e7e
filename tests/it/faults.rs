//! Failing secret providers behind a real axum server on 127.0.0.1.
//!
//! - a provider that errors is answered 503 (`Retry-After`), never a pass,
//!   without waiting for the lookup timeout;
//! - a provider that never answers is answered 503 (`Retry-After`) when the
//!   lookup timeout fires, never a pass;
//! - a provider that panics (in `lookup()` itself, or in its lookup future,
//!   or behind `CachingProvider`) is answered 500 `internal_error`: never a
//!   pass, never a dead connection;
//! - after each fault the server keeps serving: requests already in flight on
//!   other connections finish, and the next request is verified normally;
//! - 1,000 concurrent first requests for one tenant make one lookup at the source.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::get;
use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use tower_identity::{
    Identifier, Key, KeySet, SecretProvider, TenantPolicy, VerifiedIdentity, provider::CacheOptions,
    provider::CachingProvider, provider::Lookup, provider::LookupResult, provider::ProviderError, sign,
};

use crate::support::{Server, client, client_h2, secret, tenant_layer};

/// Short, so a hanging provider's requests are answered quickly; far below
/// the client's hang guard ([`GUARD`]), so a 503 within the guard from a
/// provider that never answers can only come from this timeout.
const LOOKUP_TIMEOUT: Duration = Duration::from_millis(300);
/// How long a request may take before the test calls it hung: generous, so
/// a loaded machine never trips it. Not a latency bound (timings belong in
/// the benches).
const GUARD: Duration = Duration::from_secs(10);

fn policy() -> TenantPolicy {
    TenantPolicy::new(KeySet::single(Key::hmac(Identifier::UserId, secret())))
}

/// What the provider does on its next lookups.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
enum Fault {
    /// Answers the tenant's keys.
    Healthy,
    /// Returns an error.
    Error,
    /// Never answers.
    Hang,
    /// Panics inside `lookup()` (only for the synchronous flavour).
    PanicInLookup,
    /// Returns a future that panics when polled (only for the asynchronous flavour).
    PanicInFuture,
}

/// A provider whose behaviour is switched at run time, counting lookups.
/// `sync` providers answer `Lookup::Ready` (like a closure or a `TenantMap`);
/// the others answer `Lookup::Pending` (like `from_async_fn` or a database).
#[derive(Clone)]
struct Switch {
    fault: Arc<AtomicU8>,
    lookups: Arc<AtomicUsize>,
    sync: bool,
}

impl Switch {
    fn new(sync: bool) -> Switch {
        Switch { fault: Arc::new(AtomicU8::new(Fault::Healthy as u8)), lookups: Arc::default(), sync }
    }

    fn set(&self, fault: Fault) {
        self.fault.store(fault as u8, Ordering::SeqCst);
    }

    fn get(&self) -> Fault {
        match self.fault.load(Ordering::SeqCst) {
            0 => Fault::Healthy,
            1 => Fault::Error,
            2 => Fault::Hang,
            3 => Fault::PanicInLookup,
            _ => Fault::PanicInFuture,
        }
    }
}

fn answer(tenant: Option<&str>) -> LookupResult {
    Ok(tenant.is_some_and(|t| t.starts_with("t-")).then(policy))
}

impl SecretProvider for Switch {
    fn lookup(&self, tenant: Option<&str>) -> Lookup {
        self.lookups.fetch_add(1, Ordering::SeqCst);
        let fault = self.get();
        if self.sync {
            return match fault {
                Fault::Healthy => Lookup::Ready(answer(tenant)),
                Fault::Error => Lookup::Ready(Err(ProviderError::new("connection refused"))),
                Fault::PanicInLookup => panic!("test: the secret provider panics in lookup()"),
                other => unreachable!("{other:?} is for asynchronous providers"),
            };
        }
        let tenant = tenant.map(str::to_owned);
        Lookup::Pending(Box::pin(async move {
            tokio::time::sleep(Duration::from_millis(5)).await;
            match fault {
                Fault::Healthy => answer(tenant.as_deref()),
                Fault::Error => Err(ProviderError::new("connection refused")),
                Fault::Hang => std::future::pending().await,
                Fault::PanicInFuture => panic!("test: the secret provider's lookup future panics"),
                Fault::PanicInLookup => unreachable!("for synchronous providers"),
            }
        }))
    }
}

/// An axum app behind the layer: `/me` echoes the verified id and the request
/// id, `/slow` does the same after 500 ms.
async fn server(provider: impl SecretProvider) -> Server {
    let calls = Arc::new(AtomicUsize::new(0));
    let echo = |delay: u64, calls: Arc<AtomicUsize>| {
        move |identity: VerifiedIdentity, headers: HeaderMap| async move {
            calls.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(delay)).await;
            let rid = headers.get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
            format!("{} {rid}", identity.id())
        }
    };
    let app = Router::new()
        .route("/me", get(echo(0, calls.clone())))
        .route("/slow", get(echo(500, calls.clone())))
        .route_layer(tenant_layer(provider));
    Server::axum(app, calls).await
}

type TestClient = Client<HttpConnector, Empty<Bytes>>;

/// The outcome of one request: the status and body, or the client's error
/// (e.g. the connection closed without a response).
#[derive(Debug)]
struct Reply {
    status: Option<StatusCode>,
    retry_after: Option<String>,
    body: String,
}

impl Reply {
    fn code(&self) -> String {
        serde_json::from_str::<serde_json::Value>(&self.body)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_owned))
            .unwrap_or_default()
    }
}

/// A GET of `path` as user `user` of `tenant`, with a valid signature.
async fn call(client: &TestClient, addr: SocketAddr, path: &str, tenant: &str, user: &str) -> Reply {
    let req = Request::get(format!("http://{addr}{path}"))
        .header("x-tenant", tenant)
        .header("x-user-id", user)
        .header("x-identity-signature", sign::hmac(&secret(), user))
        .header("x-request-id", format!("rid-{user}"))
        .body(Empty::new())
        .unwrap();
    let result = tokio::time::timeout(GUARD, async {
        let res = client.request(req).await?;
        let (parts, body) = res.into_parts();
        let body = body.collect().await?.to_bytes();
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>((parts, body))
    })
    .await;
    match result {
        Ok(Ok((parts, body))) => Reply {
            status: Some(parts.status),
            retry_after: parts.headers.get("retry-after").map(|v| v.to_str().unwrap().to_owned()),
            body: String::from_utf8_lossy(&body).into_owned(),
        },
        Ok(Err(error)) => Reply { status: None, retry_after: None, body: format!("client error: {error:?}") },
        Err(_) => Reply { status: None, retry_after: None, body: format!("no answer within {GUARD:?}") },
    }
}

/// The server still works: a new connection and the pooled client both get a
/// verified answer.
async fn assert_still_serving(s: &Server, pooled: &TestClient, ctx: &str) {
    for (which, c) in [("new client", &client()), ("pooled client", pooled)] {
        let r = call(c, s.addr, "/me", "t-next", "after").await;
        assert_eq!(r.status, Some(StatusCode::OK), "{ctx}: the next request ({which}) must work: {r:?}");
        assert_eq!(r.body, "after rid-after", "{ctx}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_errors_answer_503_at_once_and_the_server_keeps_serving() {
    let sync = Switch::new(true);
    let asynchronous = Switch::new(false);
    let cached_source = Switch::new(false);
    // A lookup timeout far past the hang guard: an error answered within the
    // guard was answered without waiting for the timeout.
    let cached = CachingProvider::new(cached_source.clone(), CacheOptions::default().lookup_timeout(GUARD * 6));
    let cases: [(&str, Server, &Switch); 3] = [
        ("synchronous provider", server(sync.clone()).await, &sync),
        ("asynchronous provider", server(asynchronous.clone()).await, &asynchronous),
        ("CachingProvider", server(cached).await, &cached_source),
    ];
    let c = client();
    for (name, s, switch) in &cases {
        assert_eq!(call(&c, s.addr, "/me", "t-warm", "warm").await.status, Some(StatusCode::OK), "{name}");
        switch.set(Fault::Error);
        for i in 0..20 {
            let r = call(&c, s.addr, "/me", &format!("t-{i}"), &format!("u{i}")).await;
            assert_eq!(r.status, Some(StatusCode::SERVICE_UNAVAILABLE), "{name}: {r:?}");
            assert_eq!(r.code(), "provider_unavailable", "{name}");
            assert_eq!(r.retry_after.as_deref(), Some("5"), "{name}");
            assert!(!r.body.contains("connection refused"), "{name}: the provider's message is not echoed");
        }
        assert_eq!(s.calls.load(Ordering::SeqCst), 1, "{name}: a provider error is never a pass");
        switch.set(Fault::Healthy);
        assert_still_serving(s, &c, name).await;
        println!("{name}: 20 errors answered 503, {} lookups", switch.lookups.load(Ordering::SeqCst));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_provider_is_answered_503_by_the_lookup_timeout() {
    let source = Switch::new(false);
    let s = server(CachingProvider::new(source.clone(), CacheOptions::default().lookup_timeout(LOOKUP_TIMEOUT))).await;
    let c = client();
    source.set(Fault::Hang);
    // 50 concurrent requests over 10 tenants: the provider never answers, so
    // only the lookup timeout can answer them (within the client's guard);
    // the requests that joined a lookup already in flight share its timeout.
    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let c = c.clone();
            let addr = s.addr;
            tokio::spawn(async move { call(&c, addr, "/me", &format!("t-{}", i % 10), &format!("u{i}")).await })
        })
        .collect();
    for t in tasks {
        let r = t.await.unwrap();
        assert_eq!(r.status, Some(StatusCode::SERVICE_UNAVAILABLE), "{r:?}");
        assert_eq!(r.code(), "provider_unavailable");
        assert_eq!(r.retry_after.as_deref(), Some("5"));
    }
    assert_eq!(s.calls.load(Ordering::SeqCst), 0, "a hanging provider is never a pass");
    let lookups = source.lookups.load(Ordering::SeqCst);
    println!("50 requests to a hanging provider: all 503, {lookups} lookups at the source");
    assert!(lookups <= 50);
    source.set(Fault::Healthy);
    assert_still_serving(&s, &c, "after the hang").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_provider_is_answered_500_and_the_server_keeps_serving() {
    let sync = Switch::new(true);
    let asynchronous = Switch::new(false);
    let cached_source = Switch::new(false);
    let cached = CachingProvider::new(cached_source.clone(), CacheOptions::default().lookup_timeout(LOOKUP_TIMEOUT));
    let cases = [
        ("panic in lookup()", server(sync.clone()).await, sync.clone(), Fault::PanicInLookup),
        ("panic in the lookup future", server(asynchronous.clone()).await, asynchronous.clone(), Fault::PanicInFuture),
        ("panic behind CachingProvider", server(cached).await, cached_source.clone(), Fault::PanicInFuture),
    ];
    let c = client();
    let mut failures = Vec::new();
    for (name, s, switch, fault) in &cases {
        assert_eq!(call(&c, s.addr, "/me", "t-warm", "warm").await.status, Some(StatusCode::OK), "{name}");
        // A request in flight on another connection while the provider panics.
        let in_flight = {
            let addr = s.addr;
            tokio::spawn(async move { call(&client(), addr, "/slow", "t-warm", "inflight").await })
        };
        tokio::time::sleep(Duration::from_millis(100)).await;
        switch.set(*fault);
        let r = call(&c, s.addr, "/me", "t-panic", "victim").await;
        switch.set(Fault::Healthy);
        println!("{name}: {:?} {}", r.status, r.body);
        if r.status != Some(StatusCode::INTERNAL_SERVER_ERROR) || r.code() != "internal_error" {
            failures.push(format!("{name}: expected 500 internal_error, got {:?}: {}", r.status, r.body));
        }
        let other = in_flight.await.unwrap();
        assert_eq!(other.status, Some(StatusCode::OK), "{name}: a request on another connection is unaffected");
        assert_eq!(s.calls.load(Ordering::SeqCst), 2, "{name}: a panicking provider is never a pass");
        assert_still_serving(s, &c, name).await;
    }
    assert!(
        failures.is_empty(),
        "a provider panic must be answered 500 (internal_error) on its own connection:\n{}",
        failures.join("\n")
    );
}

/// Counts the lookups that miss the cache (the layer calls `lookup()` once per request).
struct CountMisses<P> {
    inner: P,
    misses: Arc<AtomicUsize>,
}

impl<P: SecretProvider> SecretProvider for CountMisses<P> {
    fn lookup(&self, tenant: Option<&str>) -> Lookup {
        let lookup = self.inner.lookup(tenant);
        if matches!(lookup, Lookup::Pending(_)) {
            self.misses.fetch_add(1, Ordering::SeqCst);
        }
        lookup
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_first_requests_make_one_lookup() {
    const N: usize = 1000;
    let misses = Arc::new(AtomicUsize::new(0));
    let lookups = Arc::new(AtomicUsize::new(0));
    // The source answers only once all N requests have missed the cache (or
    // after 20 s), so every one of them is a concurrent first request.
    let source = {
        let (misses, lookups) = (misses.clone(), lookups.clone());
        tower_identity::provider::from_async_fn(move |tenant: Option<String>| {
            let (misses, lookups) = (misses.clone(), lookups.clone());
            async move {
                lookups.fetch_add(1, Ordering::SeqCst);
                let started = Instant::now();
                while misses.load(Ordering::SeqCst) < N && started.elapsed() < Duration::from_secs(20) {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                answer(tenant.as_deref())
            }
        })
    };
    let cached = CachingProvider::new(source, CacheOptions::default().lookup_timeout(Duration::from_secs(30)));
    let s = server(CountMisses { inner: cached, misses: misses.clone() }).await;
    // Over HTTP/2, 100 streams on each of 10 connections: all N requests are
    // in flight at once with 20 file descriptors, whatever `ulimit -n` is.
    let clients: Vec<TestClient> = (0..10).map(|_| client_h2()).collect();
    let started = Instant::now();
    let tasks: Vec<_> = (0..N)
        .map(|i| {
            let c = clients[i % clients.len()].clone();
            let addr = s.addr;
            tokio::spawn(async move { (i, call(&c, addr, "/me", "t-acme", &format!("u{i}")).await) })
        })
        .collect();
    for t in tasks {
        let (i, r) = t.await.unwrap();
        assert_eq!(r.status, Some(StatusCode::OK), "{r:?}");
        assert_eq!(r.body, format!("u{i} rid-u{i}"), "each request sees its own identity");
    }
    let (misses, lookups) = (misses.load(Ordering::SeqCst), lookups.load(Ordering::SeqCst));
    println!(
        "{N} concurrent first requests for one tenant: {misses} cache misses, {lookups} lookup(s) at the source, {:?}",
        started.elapsed()
    );
    assert_eq!(misses, N, "every request was a first request");
    assert_eq!(lookups, 1, "concurrent misses are coalesced into one lookup");
    assert_eq!(s.calls.load(Ordering::SeqCst), N);
}
