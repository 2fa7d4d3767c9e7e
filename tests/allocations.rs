//! Heap allocations per request: what the layer adds over the bare inner
//! service, counted by a global allocator.
//!
//! The services are driven by hand (no runtime): every future on these paths
//! is ready on its first poll, so one poll with [`Waker::noop`] completes it.
//! Only `poll_ready` + `call` + that poll are counted; the request is built
//! before, and the response dropped after, the counted region. Counters are
//! thread-local, so the test harness's other threads do not disturb them.
//!
//! `cargo test --test allocations -- --nocapture` prints the breakdown.
//!
//! These budgets are for the default feature set. With the `metrics` feature
//! each verdict builds its label strings (tenant, key id), which allocates by
//! design, so this file is compiled out then; `.ci/run` runs it with the
//! default features as well.
#![cfg(not(feature = "metrics"))]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::convert::Infallible;
use std::fmt::Debug;
use std::future::{Ready, ready};

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Request, Response};
use http_body_util::Full;
use tower::{Layer, Service};
#[path = "support/drive.rs"]
mod drive;
#[path = "support/keys.rs"]
mod keys;

use drive::drive;

use keys::secret;
use tower_identity::{
    Identifier, IdentityVerificationLayer, Key, KeySet, Role, Secret, Sources, TenantMap, VerifiedIdentity, sign,
};

/// Allocations the layer may add over the bare service on the header-HMAC
/// accept path: what inserting the identity needs, nothing more. Measured:
/// the `http::Extensions` map (a `Box` around a `HashMap`, then the hash
/// table on first insert) and the `Box` of the inserted `VerifiedIdentity`
/// (a verified request carries no separate `IdentityOutcome`).
const ACCEPT_BUDGET: usize = 3;
/// Allocations on the reject path (the inner service is not called): the
/// rejection's `HeaderMap` (index table and entry vector).
const REJECT_BUDGET: usize = 2;
/// Accept path with a tenant looked up in a `TenantMap`: same as `ACCEPT_BUDGET`.
const TENANT_BUDGET: usize = 3;
/// Accept path with the claim in a JSON body that arrives in one chunk:
/// `ACCEPT_BUDGET` plus the box of the buffering state (claim, request head,
/// budget share) and the box that pins the body while it is read. The chunk
/// is kept as is (no list of chunks, no copy) and the identifiers are slices
/// of it.
const JSON_BUDGET: usize = 5;
/// Accept path with the claim read from query parameters: `ACCEPT_BUDGET` plus
/// one per parameter read: the decoded value's `Arc<str>` (a query string is
/// percent-encoded, so it cannot be shared as is).
const QUERY_BUDGET: usize = 5;

// ------------------------------------------------------------ the counter

const MAX_LOGGED: usize = 16;

/// Per-thread allocation log. No destructor, `const`-initialised: using it
/// from inside the allocator never allocates or registers a destructor.
struct Log {
    on: Cell<bool>,
    count: Cell<usize>,
    sizes: [Cell<usize>; MAX_LOGGED],
}

thread_local! {
    static LOG: Log = const {
        Log { on: Cell::new(false), count: Cell::new(0), sizes: [const { Cell::new(0) }; MAX_LOGGED] }
    };
}

struct Counting;

fn record(size: usize) {
    let _ = LOG.try_with(|log| {
        if log.on.get() {
            let n = log.count.get();
            if n < MAX_LOGGED {
                log.sizes[n].set(size);
            }
            log.count.set(n + 1);
        }
    });
}

// SAFETY: forwards every call to `System` unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        record(layout.size());
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        record(layout.size());
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        record(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// The allocations (their sizes in bytes) made on this thread while `f` runs.
fn counted<T>(f: impl FnOnce() -> T) -> (T, Vec<usize>) {
    LOG.with(|log| {
        log.count.set(0);
        log.on.set(true);
    });
    let out = f();
    let (n, logged) = LOG.with(|log| {
        log.on.set(false);
        let n = log.count.get();
        (n, std::array::from_fn::<usize, MAX_LOGGED, _>(|i| log.sizes[i].get()))
    });
    let mut sizes = logged[..n.min(MAX_LOGGED)].to_vec();
    sizes.extend(std::iter::repeat_n(0, n.saturating_sub(MAX_LOGGED)));
    (out, sizes)
}

// ------------------------------------------------------------ services and requests

const USER: &str = "user-42";

type BareFuture = Ready<Result<Response<Full<Bytes>>, Infallible>>;

fn bare_handler<B>(_req: Request<B>) -> BareFuture {
    ready(Ok(Response::new(Full::new(Bytes::new()))))
}

/// The bare inner service: an empty 200.
fn bare<B>() -> tower::util::ServiceFn<fn(Request<B>) -> BareFuture> {
    tower::service_fn(bare_handler::<B> as fn(Request<B>) -> BareFuture)
}

/// A GET request whose header values are slices of one shared buffer, as
/// hyper hands them out (it parses the head in a single read buffer and
/// gives each value a reference-counted slice of it). Cloning such a value,
/// which the layer does to keep identifiers without copying, is a
/// reference-count increment. `HeaderValue::from_static` would be
/// allocation-free too, but `HeaderValue::from_str` copies into a
/// *promotable* `Bytes` whose first clone allocates a shared header: an
/// allocation hyper never causes, so it would overstate the layer's count.
fn request(uri: &str, headers: &[(&str, &str)]) -> Request<Full<Bytes>> {
    let buf = Bytes::from(headers.iter().map(|(_, v)| *v).collect::<String>());
    let _promote = buf.clone(); // make `buf` shared now, outside any counted region
    let mut req = Request::get(uri).body(Full::new(Bytes::new())).unwrap();
    let mut at = 0;
    for (name, value) in headers {
        let slice = buf.slice(at..at + value.len());
        at += value.len();
        req.headers_mut()
            .append(HeaderName::from_bytes(name.as_bytes()).unwrap(), HeaderValue::from_maybe_shared(slice).unwrap());
    }
    req
}

fn signed(sig: &str) -> Request<Full<Bytes>> {
    request("/", &[("x-user-id", USER), ("x-identity-signature", sig)])
}

/// Allocations for one request through `svc`, after one warm-up request
/// (first calls may register tracing callsites and the like).
fn per_request<S, B, RB>(svc: &mut S, make: impl Fn() -> Request<B>, status: u16) -> Vec<usize>
where
    S: Service<Request<B>, Response = Response<RB>>,
    S::Error: Debug,
{
    assert_eq!(drive(svc, make()).status().as_u16(), status);
    let req = make();
    let (res, sizes) = counted(|| drive(svc, req));
    assert_eq!(res.status().as_u16(), status);
    drop(res);
    sizes
}

/// Names for the allocation sizes seen on the accept path, found by
/// allocating the same things here.
fn accept_labels() -> Vec<(usize, &'static str)> {
    #[derive(Clone)]
    struct Probe(#[allow(dead_code)] [u8; 3]);
    let mut ext = http::Extensions::new();
    let ((), sizes) = counted(|| {
        ext.insert(Probe([0; 3]));
    });
    // `Extensions::insert` boxes the value, then boxes a map on first use,
    // and the map allocates its table.
    let mut other = sizes.iter().copied().filter(|&s| s != size_of::<Probe>());
    let (map, table) = (other.next().unwrap_or(0), other.next().unwrap_or(0));
    assert_eq!(sizes.len(), 3, "http::Extensions allocates differently than expected: {sizes:?}");
    vec![
        (map, "Box around the http::Extensions map (first insert)"),
        (table, "hash table of the http::Extensions map"),
        (size_of::<VerifiedIdentity>(), "Box<VerifiedIdentity> (extensions value)"),
    ]
}

/// Names for the allocation sizes of a rejection response.
fn reject_labels() -> Vec<(usize, &'static str)> {
    // The rejection's map is sized for its three headers.
    let (headers, sizes) = counted(|| {
        let mut headers = http::HeaderMap::with_capacity(3);
        headers.insert(http::header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        headers
    });
    drop(headers);
    assert_eq!(sizes.len(), 2, "http::HeaderMap allocates differently than expected: {sizes:?}");
    vec![(sizes[0], "HeaderMap index table (rejection headers)"), (sizes[1], "HeaderMap entries (rejection headers)")]
}

/// Names for the allocations of a query value read into an `IdStr`.
fn query_labels(values: &[&str]) -> Vec<(usize, &'static str)> {
    let mut labels = accept_labels();
    for v in values {
        labels.push(((16 + v.len()).next_multiple_of(8), "Arc<str>: the decoded query value's IdStr"));
    }
    labels
}

fn show(title: &str, bare: &[usize], layer: &[usize], labels: &[(usize, &str)]) -> usize {
    println!("{title}: bare service {} allocation(s), with the layer {}", bare.len(), layer.len());
    for &size in layer {
        let what = labels.iter().find(|(s, _)| *s == size).map_or("?", |(_, w)| w);
        println!("    {size:>5} B  {what}");
    }
    layer.len().saturating_sub(bare.len())
}

// ------------------------------------------------------------ tests

fn hmac_layer() -> IdentityVerificationLayer {
    IdentityVerificationLayer::new(KeySet::single(Key::hmac(Identifier::UserId, secret())))
}

fn bare_count() -> Vec<usize> {
    per_request(&mut bare(), || signed(&sign::hmac(&secret(), USER)), 200)
}

#[test]
fn bare_service_allocates_nothing() {
    let bare = bare_count();
    println!("bare service: {} allocation(s) {bare:?}", bare.len());
    assert!(bare.is_empty(), "{bare:?}");
}

#[test]
fn header_hmac_accept_path() {
    let sig = sign::hmac(&secret(), USER);
    let layer = per_request(&mut hmac_layer().layer(bare()), || signed(&sig), 200);
    let added = show("header HMAC, accept", &bare_count(), &layer, &accept_labels());
    println!("    => the layer adds {added} allocation(s) (budget {ACCEPT_BUDGET})");
    assert!(added <= ACCEPT_BUDGET, "the accept path allocates {added} times, budget {ACCEPT_BUDGET}: {layer:?}");
}

#[test]
fn header_hmac_reject_path() {
    let mut sig = sign::hmac(&secret(), USER).into_bytes();
    sig[0] = if sig[0] == b'0' { b'1' } else { b'0' };
    let sig = String::from_utf8(sig).unwrap();
    let layer = per_request(&mut hmac_layer().layer(bare()), || signed(&sig), 401);
    let added = show("header HMAC, reject (401, inner not called)", &bare_count(), &layer, &reject_labels());
    println!("    => {} allocation(s) (budget {REJECT_BUDGET})", layer.len());
    assert!(added <= REJECT_BUDGET, "the reject path allocates {added} times, budget {REJECT_BUDGET}: {layer:?}");
}

#[test]
fn tenant_map_accept_path() {
    let tenants = TenantMap::from_tenants((0..1000).map(|i| {
        let s = Secret::text(&format!("tenant-{i:04}-secret-0123456789")).unwrap();
        (format!("tenant-{i:04}"), KeySet::single(Key::hmac(Identifier::UserId, s)))
    }))
    .unwrap();
    let sig = sign::hmac(&Secret::text("tenant-0420-secret-0123456789").unwrap(), USER);
    let layer = IdentityVerificationLayer::new(tenants)
        .sources(Sources::new().header(Role::Tenant, HeaderName::from_static("x-tenant-id")));
    let make = || request("/", &[("x-tenant-id", "tenant-0420"), ("x-user-id", USER), ("x-identity-signature", &sig)]);
    let counts = per_request(&mut layer.layer(bare()), make, 200);
    let added = show("TenantMap (1000 tenants), accept", &bare_count(), &counts, &accept_labels());
    println!("    => the layer adds {added} allocation(s) (budget {TENANT_BUDGET})");
    assert!(added <= TENANT_BUDGET, "{counts:?}");
}

#[test]
fn query_hmac_accept_path() {
    let sig = sign::hmac(&secret(), USER);
    let uri = format!("/?user_id={USER}&signature={sig}");
    let layer = hmac_layer().sources(Sources::new().query_defaults());
    let counts = per_request(&mut layer.layer(bare()), || request(&uri, &[]), 200);
    // Each parameter read costs two: `Cow::into_owned` makes a `String`, then
    // `IdStr::from(String)` copies it into an `Arc<str>`.
    let added = show("query HMAC, accept", &bare_count(), &counts, &query_labels(&[USER, &sig]));
    println!("    => the layer adds {added} allocation(s) (budget {QUERY_BUDGET})");
    assert!(added <= QUERY_BUDGET, "{counts:?}");
}

/// In an axum router, `head_only` keeps axum's body types: the router boxes
/// neither body again, so the layer adds no more than the identity's
/// allocations over a layer that does nothing (`route_layer` itself
/// allocates per request), two fewer than the full layer's wrapped bodies.
#[test]
fn axum_router_head_only_accept_path() {
    use axum::routing::get;
    let sig = sign::hmac(&secret(), USER);
    let router = || axum::Router::new().route("/", get(|| async {}));
    let make = || signed(&sig).map(axum::body::Body::new);
    let noop = tower::util::MapRequestLayer::new(|req: Request<axum::body::Body>| req);
    let noop = per_request(&mut router().route_layer(noop), make, 200);
    let full = per_request(&mut router().route_layer(hmac_layer()), make, 200);
    let head_only = hmac_layer().head_only().expect("header sources only");
    let head_only = per_request(&mut router().route_layer(head_only), make, 200);
    let full_added = show("axum router, full layer, accept", &noop, &full, &accept_labels());
    let added = show("axum router, head_only, accept", &noop, &head_only, &accept_labels());
    println!("    => over a no-op route_layer: head_only adds {added} allocation(s), the full layer {full_added}");
    assert!(added <= ACCEPT_BUDGET, "head_only in axum allocates {added} times, budget {ACCEPT_BUDGET}: {head_only:?}");
    assert_eq!(full_added, added + 2, "the full layer's two wrapped bodies, boxed again by axum");
}

#[test]
fn json_body_accept_path() {
    let sig = sign::hmac(&secret(), USER);
    let body = Bytes::from(format!(r#"{{"user_id":"{USER}","user_hash":"{sig}","padding":"{}"}}"#, "x".repeat(900)));
    let _promote = body.clone(); // shared now, as a received body's buffer is
    let make = || {
        let mut req = request("/", &[("content-type", "application/json")]);
        *req.method_mut() = http::Method::POST;
        *req.body_mut() = Full::new(body.clone());
        req
    };
    let sources = Sources::new().json(Role::UserId, "/user_id").json(Role::Signature, "/user_hash");
    let counts = per_request(&mut hmac_layer().sources(sources).layer(bare()), make, 200);
    // The pinned body (a `Full<Bytes>`) is as large as the extensions map's
    // box; the buffering state is private, and the one allocation of its size.
    let mut labels = accept_labels();
    for (size, what) in &mut labels {
        if *size == size_of::<Full<Bytes>>() {
            *what = "Box around the http::Extensions map, or the Box pinning the request body";
        }
    }
    labels
        .extend(counts.iter().filter(|&&s| s > 512).map(|&s| (s, "Box of the buffering state (claim, request head)")));
    let added = show("JSON body HMAC, accept", &bare_count(), &counts, &labels);
    println!("    => the layer adds {added} allocation(s) (budget {JSON_BUDGET})");
    assert!(added <= JSON_BUDGET, "{counts:?}");
}
