//! `CachingProvider`: coalescing, TTLs, negative caching, timeouts, stale
//! serving, invalidation, and revocation seen by several layer instances.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use crate::support::*;
use tower::ServiceExt;
use tower_identity::{
    Identifier, Key, KeySet, Secret, SecretProvider, TenantPolicy, provider::CacheOptions, provider::CachingProvider,
    provider::Lookup, provider::ProviderError, provider::from_async_fn,
};

/// A "database": tenants with their secrets, a lookup counter, a delay, and switches to fail or hang.
#[derive(Clone, Default)]
struct Db {
    tenants: Arc<RwLock<Vec<(String, String)>>>,
    lookups: Arc<AtomicUsize>,
    down: Arc<AtomicBool>,
    hang: Arc<AtomicBool>,
}

impl Db {
    fn with(tenant: &str, s: &str) -> Db {
        let db = Db::default();
        db.tenants.write().unwrap().push((tenant.into(), s.into()));
        db
    }

    fn provider(&self) -> impl tower_identity::SecretProvider {
        let db = self.clone();
        from_async_fn(move |tenant: Option<String>| {
            let db = db.clone();
            async move {
                db.lookups.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(20)).await;
                if db.hang.load(Ordering::SeqCst) {
                    std::future::pending::<()>().await;
                }
                if db.down.load(Ordering::SeqCst) {
                    return Err(ProviderError::new("connection refused"));
                }
                let tenants = db.tenants.read().unwrap();
                Ok(tenants.iter().find(|(t, _)| Some(t) == tenant.as_ref()).map(|(_, s)| {
                    TenantPolicy::new(KeySet::single(Key::hmac(Identifier::UserId, Secret::text(s).unwrap())))
                }))
            }
        })
    }

    fn lookups(&self) -> usize {
        self.lookups.load(Ordering::SeqCst)
    }
}

const ACME: &str = "acme-secret-0123456789abc";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_first_requests_make_one_lookup() {
    let db = Db::with("acme", ACME);
    let cache = CachingProvider::new(db.provider(), CacheOptions::default());
    let rec = Recorder::default();
    let svc = tower::ServiceBuilder::new().layer(tenant_layer(cache)).service(rec.service());
    let tasks: Vec<_> = (0..1000).map(|_| tokio::spawn(svc.clone().oneshot(tenant_request("acme", ACME)))).collect();
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap().status(), 200);
    }
    println!("1000 concurrent first requests: {} lookup(s)", db.lookups());
    assert_eq!(db.lookups(), 1);
    assert_eq!(rec.calls(), 1000);
}

#[tokio::test]
async fn ttl_and_negative_caching() {
    let db = Db::with("acme", ACME);
    let opts = CacheOptions::default().ttl(Duration::from_millis(300)).negative_ttl(Duration::from_millis(100));
    let l = tenant_layer(CachingProvider::new(db.provider(), opts));
    for _ in 0..5 {
        assert_eq!(send(&l, tenant_request("acme", ACME)).await.0.status, 200);
    }
    assert_eq!(db.lookups(), 1, "hits are served from the cache");
    for _ in 0..5 {
        let (a, rec) = send(&l, tenant_request("nobody", ACME)).await;
        assert_rejected(&a, &rec, 401, "signature_invalid", &["nobody"]);
    }
    assert_eq!(db.lookups(), 2, "an unknown tenant is looked up once, then remembered");
    tokio::time::sleep(Duration::from_millis(150)).await;
    let _ = send(&l, tenant_request("nobody", ACME)).await;
    assert_eq!(db.lookups(), 3, "the negative entry expired first");
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(send(&l, tenant_request("acme", ACME)).await.0.status, 200);
    assert_eq!(db.lookups(), 4, "the positive entry expired after its TTL");
}

// On a paused tokio clock: time moves only when every task waits on a timer,
// so the time a request takes is decided by the timers alone, not by the
// machine's load.
#[tokio::test(start_paused = true)]
async fn a_hanging_provider_times_out_with_503_and_recovers() {
    let db = Db::with("acme", ACME);
    db.hang.store(true, Ordering::SeqCst);
    let timeout = Duration::from_secs(3);
    let l = tenant_layer(CachingProvider::new(db.provider(), CacheOptions::default().lookup_timeout(timeout)));
    let started = tokio::time::Instant::now();
    let (a, rec) = send(&l, tenant_request("acme", ACME)).await;
    let waited = started.elapsed();
    assert_eq!((a.status.as_u16(), rec.calls()), (503, 0));
    assert_eq!(a.headers["retry-after"], "5");
    // The configured timeout answered it, not a default or a later timer.
    assert_eq!(waited, timeout, "the 503 came when the lookup timeout fired");
    db.hang.store(false, Ordering::SeqCst);
    assert_eq!(send(&l, tenant_request("acme", ACME)).await.0.status, 200, "the next request works");
}

#[tokio::test]
async fn errors_fail_closed_unless_stale_serving_is_allowed() {
    let db = Db::with("acme", ACME);
    let opts = CacheOptions::default().ttl(Duration::from_millis(100));
    let strict = tenant_layer(CachingProvider::new(db.provider(), opts.clone()));
    let lenient =
        tenant_layer(CachingProvider::new(db.provider(), opts.serve_stale_for(Some(Duration::from_secs(30)))));
    for l in [&strict, &lenient] {
        assert_eq!(send(l, tenant_request("acme", ACME)).await.0.status, 200);
    }
    db.down.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(150)).await;
    let (a, rec) = send(&strict, tenant_request("acme", ACME)).await;
    assert_eq!((a.status.as_u16(), rec.calls()), (503, 0));
    assert!(!a.body.contains("connection refused"));
    let (a, _) = send(&lenient, tenant_request("acme", ACME)).await;
    assert_eq!(a.status, 200, "the last good keys are served while the source is down");
    // A tenant never seen before still fails closed.
    let (a, _) = send(&lenient, tenant_request("globex", ACME)).await;
    assert_eq!(a.status, 503);
    db.down.store(false, Ordering::SeqCst);
    assert_eq!(send(&strict, tenant_request("acme", ACME)).await.0.status, 200, "recovered");
}

#[tokio::test]
async fn revocation_is_seen_by_every_instance_within_the_ttl_or_at_once_on_invalidation() {
    let db = Db::with("acme", ACME);
    let opts = CacheOptions::default().ttl(Duration::from_millis(200));
    let a = CachingProvider::new(db.provider(), opts.clone());
    let b = CachingProvider::new(db.provider(), opts);
    let (la, lb) = (tenant_layer(a.clone()), tenant_layer(b.clone()));
    assert_eq!(send(&la, tenant_request("acme", ACME)).await.0.status, 200);
    assert_eq!(send(&lb, tenant_request("acme", ACME)).await.0.status, 200);
    // Rotate at the source: the old secret is revoked.
    let rotated = "acme-rotated-0123456789abc";
    *db.tenants.write().unwrap() = vec![("acme".into(), rotated.into())];
    // Instance A is told at once (e.g. LISTEN/NOTIFY); B learns within its TTL.
    a.invalidate(Some("acme"));
    assert_eq!(send(&la, tenant_request("acme", ACME)).await.0.status, 401);
    assert_eq!(send(&la, tenant_request("acme", rotated)).await.0.status, 200);
    assert_eq!(send(&lb, tenant_request("acme", ACME)).await.0.status, 200, "B still serves its cached keys");
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(send(&lb, tenant_request("acme", ACME)).await.0.status, 401, "B refuses the revoked key after the TTL");
    assert_eq!(send(&lb, tenant_request("acme", rotated)).await.0.status, 200);
    b.invalidate_all();
    assert_eq!(send(&lb, tenant_request("acme", rotated)).await.0.status, 200);
}

fn nobody(_: Option<&str>) -> tower_identity::provider::LookupResult {
    Ok(None)
}

#[tokio::test]
async fn unknown_long_tenant_names_stay_within_the_byte_bound() {
    let max_bytes = 1024 * 1024;
    let options = CacheOptions::default().max_bytes(max_bytes).negative_ttl(Duration::from_secs(600));
    let provider = CachingProvider::new(nobody, options);
    // 2,000 unknown tenants with 8 KiB names: 16 MiB of names sent.
    for i in 0..2000 {
        let name = format!("{i:08}-{}", "x".repeat(8192));
        let Lookup::Pending(lookup) = provider.lookup(Some(&name)) else { panic!("a miss") };
        assert!(lookup.await.unwrap().is_none());
    }
    let held = provider.cached_bytes();
    println!("2000 unknown 8 KiB tenant names: the cache holds {held} bytes (bound {max_bytes})");
    assert!(held <= max_bytes, "{held} > {max_bytes}");
    assert!(held > max_bytes / 2, "the negative cache is in use: {held}");
}

#[tokio::test]
async fn the_byte_bound_also_bounds_the_number_of_tenants() {
    let options = CacheOptions::default().max_tenants(100).max_bytes(1024 * 1024);
    let provider = CachingProvider::new(nobody, options);
    for i in 0..1000 {
        let Lookup::Pending(lookup) = provider.lookup(Some(&format!("t{i}"))) else { panic!("a miss") };
        assert!(lookup.await.unwrap().is_none());
    }
    // Every entry weighs at least max_bytes / max_tenants.
    assert!(provider.cached_bytes() <= 1024 * 1024);
    let hits = (0..1000).filter(|i| matches!(provider.lookup(Some(&format!("t{i}"))), Lookup::Ready(_))).count();
    assert!((1..=100).contains(&hits), "{hits} tenants cached, at most 100");
}
