//! What the layer costs per request, next to its peers and to the HMAC itself.
//!
//! `cargo bench --bench overhead` runs every case, then prints a table: each
//! case's mean, its overhead over its baseline, and the ratios the
//! performance targets are stated in (see `benches/README.md`).
//! `cargo bench --bench overhead --features cache` adds `layer/cache_hit`
//! (the `cache` feature is not a default one). Criterion's filter works as
//! usual (`-- 'jwt|json|bare'`); the table then marks the other cases "not run".
//!
//! # How a case is measured
//!
//! Each case is a service built once and a request prototype. Per iteration
//! criterion's `iter_batched` (`BatchSize::SmallInput`) builds a request by
//! cloning the prototype's method, URI, headers and body *outside* the timed
//! region; the timed region is `poll_ready` + `call` + polling the response
//! future to completion, the inner service dropping the request and the
//! bench dropping the response (as a server does once it is written) included. A
//! case's overhead is its mean minus its baseline's: the bare inner service
//! driven with the same request (`bare`, `bare/query`, `bare/tenant`,
//! `bare/bearer`, `bare/jwt`, `bare/json_1k`, `bare/json_64k`), or the bare
//! axum router for the axum cases, so that the cost of cloning and dropping
//! the request cancels out. Bodies are `Full<Bytes>` made from one shared
//! `Bytes` per case (a clone is a reference-count increment).
//!
//! `floor` is one pre-keyed HMAC-SHA256 verification; the `part/*` cases
//! time pieces of the header-HMAC path (the pure `verify`, the hex decoding,
//! the extension inserts) and the pure `verify` of a JWT, to show where the
//! time goes. The `peer/*` cases (and `axum/naive_layer`) are what an
//! application writes by hand instead (see `overhead/peers.rs`): a naive
//! tower layer, `from_fn` with a pre-keyed HMAC, a layer around
//! `jsonwebtoken`, a `from_fn` buffering a JSON body into a serde struct.
//! Every ratio is computed from cases of the same group and run.
//!
//! The JWT is minted at setup from the system clock (`iat` = now, `exp` =
//! now + 900 s, the longest lifetime the layer accepts), because the layer's
//! default clock and `jsonwebtoken` both check it against the real time: a
//! run (setup to the last JWT case) longer than 15 minutes would measure
//! rejections in `layer/jwt_bearer` and make `peer/jsonwebtoken_decode` panic.
//!
//! Every future here (the bare `service_fn`, the layer on the static-provider
//! path, on a warm `CachingProvider` and on a body that is all there, tower-http's
//! validation, axum's router and `from_fn`) is ready on its first poll, so
//! the bench polls them by hand with [`Waker::noop`] instead of `block_on` or
//! criterion's `to_async`: no scheduler, no park/unpark, no coop budget in the
//! measured time, only the services themselves. A current-thread tokio
//! runtime is entered all the same, so that code looking for a runtime
//! context would find one; a future that is not ready on its first poll
//! makes the bench panic rather than measure something else.
//!
//! # Adding a case
//!
//! One line in [`cases`]: `case(name, baseline, expected status, service, request prototype)`.
//! Ratios are one line in [`RATIOS`]; a row with an empty denominator shows
//! the numerator's overhead in ns (for targets stated in ns).

use std::convert::Infallible;
use std::fmt::Debug;
use std::future::{Ready, ready};
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::pin::pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::extract::Request as AxumRequest;
use axum::middleware::{Next, from_fn, from_fn_with_state};
use axum::response::Response as AxumResponse;
use axum::routing::get;
use bytes::Bytes;
use criterion::{BatchSize, Bencher, Criterion};
use hmac::{Hmac, KeyInit, Mac};
use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, Uri};
use http_body::Body as _;
use http_body_util::Full;
use sha2::Sha256;
use tower::{Layer, Service};
#[path = "../tests/support/drive.rs"]
mod drive;
#[path = "overhead/peers.rs"]
mod peers;
use drive::drive;
use peers::{JsonwebtokenLayer, NaiveLayer, prekeyed};
use tower_identity::layer::body::RequestBody;
use tower_identity::{
    Identifier, IdentityVerificationLayer, Key, KeySet, Role, Secret, Sources, TenantMap, claim::Claim, claim::IdStr,
    clock::Clock, clock::SystemClock, extract::DEFAULT_BODY_LIMIT, sign, verify::VerifyOptions, verify::verify,
};

const GROUP: &str = "overhead";
const SECRET: &str = "bench-secret-0123456789abcdef";
const USER: &str = "user-42";
const NOW: u64 = 1_767_225_600;
const BEARER: &str = "bench-bearer-token-0123456789";
const TENANT_HEADER: &str = "x-tenant-id";
const JWT_SECRET: &str = "bench-jwt-secret-0123456789abcdef";
/// The app id a JWT key set expects as `aud`.
const APP_ID: &str = "app_bench";
const EMAIL: &str = "jane@example.com";
/// The longest JWT lifetime the layer accepts by default (`JwtOptions::max_lifetime`).
const JWT_LIFETIME: u64 = 900;

/// `(label, numerator, denominator, target)`. A case with a baseline counts
/// for its overhead (mean minus the baseline's mean); a case without one
/// (`floor`, `part/*`, `peer/jsonwebtoken_decode`) for its mean. An empty
/// denominator makes the row the numerator's overhead itself, in ns. The
/// target is "at most" unless it starts with `>=`.
const RATIOS: &[(&str, &str, &str, &str)] = &[
    ("header_hmac / floor", "layer/header_hmac", "floor", "<= 2.0"),
    ("header_hmac / naive tower layer", "layer/header_hmac", "peer/naive_layer", "<= 1.0"),
    ("head_only / naive tower layer", "layer/head_only_hmac", "peer/naive_layer", "<= 1.0"),
    ("in axum: layer / naive layer", "axum/layer_header_hmac", "axum/naive_layer", "<= 1.0"),
    ("in axum: head_only / naive layer", "axum/head_only_hmac", "axum/naive_layer", "<= 1.0"),
    ("in axum: head_only / from_fn, pre-keyed", "axum/head_only_hmac", "peer/axum_from_fn_hmac", "<= 0.8"),
    ("header_hmac (tower) / axum from_fn, pre-keyed", "layer/header_hmac", "peer/axum_from_fn_hmac", "<= 0.8"),
    ("in axum: layer / from_fn, pre-keyed", "axum/layer_header_hmac", "peer/axum_from_fn_hmac", "<= 0.8"),
    ("jwt_bearer / jsonwebtoken layer", "layer/jwt_bearer", "peer/jsonwebtoken_layer", "<= 0.5"),
    ("jwt verify / jsonwebtoken decode", "part/jwt_verify", "peer/jsonwebtoken_decode", "<= 0.5"),
    ("in axum: json_1k / from_fn to_bytes + serde", "axum/layer_json_1k", "peer/axum_from_fn_json_1k", "<= 1.0"),
    (
        "in axum: keep_response_body json_1k / from_fn to_bytes + serde",
        "axum/keep_body_json_1k",
        "peer/axum_from_fn_json_1k",
        "<= 1.0",
    ),
    ("reject / accept", "layer/reject_invalid", "layer/header_hmac", "<= 1.0"),
    ("tenants_100000 / tenants_1", "layer/tenants_100000", "layer/tenants_1", "<= 1.0"),
    ("unknown tenant / known tenant, bad signature", "layer/tenant_unknown", "layer/tenant_known_bad", "<= 1.0"),
    ("json_1k overhead (ns)", "layer/json_1k", "", ""),
    ("json_64k overhead (ns)", "layer/json_64k", "", ""),
    ("cache_hit / tenants_1", "layer/cache_hit", "layer/tenants_1", ""),
];

fn cases() -> Vec<Case> {
    let secret = Secret::text(SECRET).unwrap();
    let sig = sign::hmac(&secret, USER);
    let hmac_keys = KeySet::single(Key::hmac(Identifier::UserId, secret.clone()));
    let ts_keys = KeySet::single(Key::timestamped_hmac(Identifier::UserId, secret.clone()));
    let hmac_layer = IdentityVerificationLayer::new(hmac_keys.clone());
    let header = |sig: &str| Proto::get("/", &[("x-user-id", USER), ("x-identity-signature", sig)]);
    let tenant =
        |t: &str| Proto::get("/", &[(TENANT_HEADER, t), ("x-user-id", USER), ("x-identity-signature", &tenant_sig(t))]);
    let tenant_sources = Sources::new().header(Role::Tenant, HeaderName::from_static(TENANT_HEADER));
    // A forged signature for a known tenant, and the same for a tenant of the
    // same name length that does not exist: the same answer, in the same time.
    let one_tenant = || IdentityVerificationLayer::new(tenants(1)).sources(tenant_sources.clone()).layer(bare());
    let forged = |t: &str| {
        Proto::get(
            "/",
            &[(TENANT_HEADER, t), ("x-user-id", USER), ("x-identity-signature", &flip_one_bit(&tenant_sig(t)))],
        )
    };
    let axum_proto = |p: Proto<Full<Bytes>>| p.with_body(axum::body::Body::empty);
    let axum_json = |body: &Bytes| {
        let shared = body.clone();
        Proto::post_json("/", body).with_body(move || axum::body::Body::from(shared.clone()))
    };
    let query = Proto::get(&format!("/?user_id={USER}&signature={sig}"), &[]);
    let bearer = Proto::get("/", &[("authorization", &format!("Bearer {BEARER}"))]);
    // A JWT minted now from the system clock: the layer's default clock and
    // jsonwebtoken both validate it for the next 15 minutes.
    let (jwt_secret, now) = (Secret::text(JWT_SECRET).unwrap(), SystemClock.now());
    let token = sign::jwt_token(&jwt_secret, APP_ID, EMAIL, None, now, JWT_LIFETIME, []);
    let jwt_keys = KeySet::single(Key::jwt(jwt_secret.clone())).with_audience(APP_ID);
    let jwt_bearer = Proto::get("/", &[("authorization", &format!("Bearer {token}"))]);
    // JSON bodies of exactly 1 KiB and 64 KiB (the default body limit, which
    // a body may reach: only a longer one is refused).
    let json_sources = Sources::new().json(Role::UserId, "/user_id").json(Role::Signature, "/user_hash");
    let (json_1k, json_64k) = (json_body(&sig, 1024), json_body(&sig, DEFAULT_BODY_LIMIT));
    let json_layer = hmac_layer.clone().sources(json_sources);
    assert_zero_copy(&json_layer, &json_64k);
    // Every case's baseline is the bare service driven with the same request
    // (same headers, same URI, same body), so cloning and dropping the request cancels out.
    #[allow(unused_mut)] // pushed to with feature `cache`
    let mut cases = vec![
        case("bare", None, 200, bare(), header(&sig)),
        case("bare/query", None, 200, bare(), query.clone()),
        case("bare/tenant", None, 200, bare(), tenant(&tenant_name(0))),
        case("bare/bearer", None, 200, bare(), bearer.clone()),
        case("bare/jwt", None, 200, bare(), jwt_bearer.clone()),
        case("bare/json_1k", None, 200, bare(), Proto::post_json("/", &json_1k)),
        case("bare/json_64k", None, 200, bare(), Proto::post_json("/", &json_64k)),
        case("layer/header_hmac", Some("bare"), 200, hmac_layer.layer(bare()), header(&sig)),
        case("layer/head_only_hmac", Some("bare"), 200, head_only(&hmac_layer).layer(bare()), header(&sig)),
        case(
            "layer/header_timestamped",
            Some("bare"),
            200,
            IdentityVerificationLayer::new(ts_keys).clock(|| NOW).layer(bare()),
            header(&sign::timestamped_hmac(&secret, USER, NOW - 5)),
        ),
        case(
            "layer/query_hmac",
            Some("bare/query"),
            200,
            hmac_layer.clone().sources(Sources::new().query_defaults()).layer(bare()),
            query,
        ),
        case(
            "layer/tenants_1",
            Some("bare/tenant"),
            200,
            IdentityVerificationLayer::new(tenants(1)).sources(tenant_sources.clone()).layer(bare()),
            tenant(&tenant_name(0)),
        ),
        case(
            "layer/tenants_100000",
            Some("bare/tenant"),
            200,
            IdentityVerificationLayer::new(tenants(100_000)).sources(tenant_sources.clone()).layer(bare()),
            tenant(&tenant_name(31_337)),
        ),
        case("layer/reject_invalid", Some("bare"), 401, hmac_layer.layer(bare()), header(&flip_one_bit(&sig))),
        case("layer/tenant_known_bad", Some("bare/tenant"), 401, one_tenant(), forged(&tenant_name(0))),
        case("layer/tenant_unknown", Some("bare/tenant"), 401, one_tenant(), forged(&tenant_name(999_999))),
        case(
            "layer/jwt_bearer",
            Some("bare/jwt"),
            200,
            IdentityVerificationLayer::new(jwt_keys.clone()).sources(Sources::new().bearer()).layer(bare()),
            jwt_bearer.clone(),
        ),
        case("layer/json_1k", Some("bare/json_1k"), 200, json_layer.layer(bare()), Proto::post_json("/", &json_1k)),
        case("layer/json_64k", Some("bare/json_64k"), 200, json_layer.layer(bare()), Proto::post_json("/", &json_64k)),
        case("peer/tower_http_bearer", Some("bare/bearer"), 200, bearer_layer().layer(bare()), bearer),
        case("peer/naive_layer", Some("bare"), 200, NaiveLayer::new(SECRET.as_bytes()).layer(bare()), header(&sig)),
        case(
            "peer/jsonwebtoken_layer",
            Some("bare/jwt"),
            200,
            JsonwebtokenLayer::new(jwt_secret.expose(), APP_ID).layer(bare()),
            jwt_bearer.clone(),
        ),
        // In an axum `Router`, each layer with `route_layer`, against the bare router.
        case("bare_axum", None, 200, axum_router(), axum_proto(header(&sig))),
        case("bare_axum/json_1k", None, 200, axum_router(), axum_json(&json_1k)),
        case(
            "axum/layer_header_hmac",
            Some("bare_axum"),
            200,
            axum_router().route_layer(IdentityVerificationLayer::new(hmac_keys.clone())),
            axum_proto(header(&sig)),
        ),
        case(
            "axum/head_only_hmac",
            Some("bare_axum"),
            200,
            axum_router().route_layer(head_only(&hmac_layer)),
            axum_proto(header(&sig)),
        ),
        case(
            "axum/naive_layer",
            Some("bare_axum"),
            200,
            axum_router().route_layer(NaiveLayer::new(SECRET.as_bytes())),
            axum_proto(header(&sig)),
        ),
        case(
            "peer/axum_from_fn_hmac",
            Some("bare_axum"),
            200,
            axum_router().route_layer(from_fn_with_state(prekeyed(SECRET.as_bytes()), peers::from_fn_hmac)),
            axum_proto(header(&sig)),
        ),
        case(
            "peer/axum_from_fn_noop",
            Some("bare_axum"),
            200,
            axum_router().route_layer(from_fn(noop)),
            axum_proto(header(&sig)),
        ),
        case(
            "axum/layer_json_1k",
            Some("bare_axum/json_1k"),
            200,
            axum_router().route_layer(json_layer.clone()),
            axum_json(&json_1k),
        ),
        case(
            "axum/keep_body_json_1k",
            Some("bare_axum/json_1k"),
            200,
            axum_router().route_layer(json_layer.clone().keep_response_body()),
            axum_json(&json_1k),
        ),
        case(
            "peer/axum_from_fn_json_1k",
            Some("bare_axum/json_1k"),
            200,
            axum_router().route_layer(from_fn_with_state(prekeyed(SECRET.as_bytes()), peers::from_fn_json)),
            axum_json(&json_1k),
        ),
        Case { name: "floor", baseline: None, bench: floor(&secret, &sig) },
        // Parts of the header-HMAC path, to see where the time goes.
        Case { name: "part/verify", baseline: None, bench: part_verify(&hmac_keys, &sig) },
        Case { name: "part/hex_decode", baseline: None, bench: part_hex_decode(&sig) },
        Case { name: "part/extensions", baseline: None, bench: part_extensions(&hmac_keys, &sig) },
        // The JWT path: our pure `verify` against the jsonwebtoken crate.
        Case { name: "part/jwt_verify", baseline: None, bench: part_jwt_verify(&jwt_keys, &token, now) },
        Case { name: "peer/jsonwebtoken_decode", baseline: None, bench: jsonwebtoken_decode(&jwt_secret, &token) },
    ];
    // A tenant's keys from an async source behind a warm `CachingProvider`: a synchronous hit.
    #[cfg(feature = "cache")]
    cases.push(case(
        "layer/cache_hit",
        Some("bare/tenant"),
        200,
        IdentityVerificationLayer::new(warm_cache(&tenant_name(0))).sources(tenant_sources).layer(bare()),
        tenant(&tenant_name(0)),
    ));
    cases
}

// ---------------------------------------------------------------- services

type BareFuture = Ready<Result<Response<Full<Bytes>>, Infallible>>;

fn bare_handler<B>(_req: Request<B>) -> BareFuture {
    ready(Ok(Response::new(Full::new(Bytes::new()))))
}

/// The bare inner service: an empty 200, whatever the request body type.
fn bare<B>() -> tower::util::ServiceFn<fn(Request<B>) -> BareFuture> {
    tower::service_fn(bare_handler::<B> as fn(Request<B>) -> BareFuture)
}

#[allow(deprecated)] // tower-http 0.6.7+ deprecates the bearer/basic validators as "too basic"
fn bearer_layer() -> tower_http::validate_request::ValidateRequestHeaderLayer<
    tower_http::auth::require_authorization::Bearer<Full<Bytes>>,
> {
    tower_http::validate_request::ValidateRequestHeaderLayer::bearer(BEARER)
}

/// An axum router with one route whose handler answers an empty 200.
/// `layer` with the inner service's body types kept (no body sources).
fn head_only(layer: &IdentityVerificationLayer) -> tower_identity::HeadOnlyLayer {
    layer.clone().head_only().expect("header sources only")
}

fn axum_router() -> Router {
    Router::new().route("/", get(|| async {}).post(|| async {}))
}

/// A `from_fn` middleware that does nothing: the cost of the mechanism.
async fn noop(req: AxumRequest, next: Next) -> AxumResponse {
    next.run(req).await
}

/// One pre-keyed HMAC-SHA256 verification of the identifier: the least any
/// verifier of this scheme has to do.
fn floor(secret: &Secret, sig: &str) -> Box<dyn FnMut(&mut Bencher<'_>)> {
    let mac = Hmac::<Sha256>::new_from_slice(secret.expose()).expect("any key length");
    let tag: [u8; 32] = hex::decode(sig).unwrap().try_into().unwrap();
    Box::new(move |b| {
        b.iter(|| {
            let mut mac = mac.clone();
            mac.update(black_box(USER.as_bytes()));
            mac.verify_slice(black_box(&tag)).is_ok()
        })
    })
}

/// A claim as the layer reads it from headers (values share the header bytes).
fn header_claim(sig: &str) -> Claim {
    let value = |v: &str| IdStr::from_header(&HeaderValue::from_str(v).unwrap()).unwrap();
    Claim::new().user_id(value(USER)).signature(value(sig))
}

/// The pure `verify` of the header-HMAC case: parse and hex-decode the
/// signature, check the identifier, one HMAC, build the `VerifiedIdentity`.
fn part_verify(keys: &KeySet, sig: &str) -> Box<dyn FnMut(&mut Bencher<'_>)> {
    let (keys, claim, opts) = (keys.clone(), header_claim(sig), VerifyOptions::default());
    Box::new(move |b| b.iter(|| verify(black_box(&claim), &keys, NOW, &opts).unwrap()))
}

/// Decoding the 64 hex characters of a signature into the 32-byte tag.
fn part_hex_decode(sig: &str) -> Box<dyn FnMut(&mut Bencher<'_>)> {
    let sig = sig.to_owned();
    Box::new(move |b| {
        b.iter(|| {
            let mut tag = [0u8; 32];
            hex::decode_to_slice(black_box(&sig), &mut tag).unwrap();
            tag
        })
    })
}

/// Inserting the identity into a request's (empty) extensions and dropping
/// it: what the accept path allocates (the map, its table, the boxed value;
/// a verified request carries no separate `IdentityOutcome`). The clone of
/// the identity (reference counts) is part of the measured time.
fn part_extensions(keys: &KeySet, sig: &str) -> Box<dyn FnMut(&mut Bencher<'_>)> {
    let identity = verify(&header_claim(sig), keys, NOW, &VerifyOptions::default()).unwrap();
    Box::new(move |b| {
        b.iter(|| {
            let mut ext = http::Extensions::new();
            ext.insert(black_box(&identity).clone());
            drop(black_box(ext));
        })
    })
}

/// A claim carrying a JWT as the layer reads it (the value shares the header's bytes).
fn token_claim(token: &str) -> Claim {
    Claim::new().token(IdStr::from_header(&HeaderValue::from_str(token).unwrap()).unwrap())
}

/// The pure `verify` of a JWT: the HS256 signature, the header and claims
/// parsed, `exp`, `iat`, lifetime and `aud` checked, the `VerifiedIdentity`
/// built with all signed claims. `now` is the minting time (fixed).
fn part_jwt_verify(keys: &KeySet, token: &str, now: u64) -> Box<dyn FnMut(&mut Bencher<'_>)> {
    let (keys, claim, opts) = (keys.clone(), token_claim(token), VerifyOptions::default());
    assert_eq!(verify(&claim, &keys, now, &opts).unwrap().email(), Some(EMAIL));
    Box::new(move |b| b.iter(|| verify(black_box(&claim), &keys, now, &opts).unwrap()))
}

/// The same token through the `jsonwebtoken` crate, outside any layer: HS256
/// only, audience checked, `exp` required and checked (against the system
/// clock, 60 s default leeway), the decoding key built once.
fn jsonwebtoken_decode(secret: &Secret, token: &str) -> Box<dyn FnMut(&mut Bencher<'_>)> {
    let peer = JsonwebtokenLayer::new(secret.expose(), APP_ID);
    let token = token.to_owned();
    assert_eq!(peer.decode(&token).expect("the token verifies").email, EMAIL);
    Box::new(move |b| b.iter(|| peer.decode(black_box(&token)).unwrap()))
}

/// A JSON body of exactly `len` bytes carrying the identity, padded with an
/// unsigned field.
fn json_body(sig: &str, len: usize) -> Bytes {
    let head = format!(r#"{{"user_id":"{USER}","user_hash":"{sig}","padding":""#);
    let tail = r#""}"#;
    let body = format!("{head}{}{tail}", "x".repeat(len - head.len() - tail.len()));
    assert_eq!(body.len(), len);
    Bytes::from(body)
}

/// Asserts (in the setup, untimed) that the layer hands a body that arrived
/// in one chunk to the inner service without copying it: an inner service
/// that reads the body finds exactly one data frame whose pointer and length
/// are those of the original `Bytes` (a copy would live elsewhere).
fn assert_zero_copy(layer: &IdentityVerificationLayer, body: &Bytes) {
    let original = (body.as_ptr() as usize, body.len());
    let seen = Rc::new(std::cell::Cell::new(None));
    let inner = {
        let seen = seen.clone();
        tower::service_fn(move |req: Request<RequestBody<Full<Bytes>>>| {
            let mut cx = Context::from_waker(Waker::noop());
            let mut body = pin!(req.into_body());
            let Poll::Ready(Some(Ok(frame))) = body.as_mut().poll_frame(&mut cx) else { panic!("no data frame") };
            let data = frame.into_data().unwrap_or_else(|_| panic!("not a data frame"));
            assert!(matches!(body.as_mut().poll_frame(&mut cx), Poll::Ready(None)), "more than one frame");
            seen.set(Some((data.as_ptr() as usize, data.len())));
            ready(Ok::<_, Infallible>(Response::new(Full::new(Bytes::new()))))
        })
    };
    let res = drive(&mut layer.layer(inner), Proto::post_json("/", body).build());
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(seen.get(), Some(original), "the layer copied a one-chunk body of {} bytes", body.len());
}

/// A `CachingProvider` around an async source (what a database provider
/// looks like), warmed for `tenant`: the layer's lookup is then a
/// synchronous cache hit. The TTL is longer than any bench run.
#[cfg(feature = "cache")]
fn warm_cache(tenant: &str) -> impl tower_identity::SecretProvider {
    use tower_identity::{
        SecretProvider, TenantPolicy, provider::CacheOptions, provider::CachingProvider, provider::Lookup,
        provider::from_async_fn,
    };
    let source = from_async_fn(|tenant: Option<String>| async move {
        Ok(tenant.map(|t| TenantPolicy::new(KeySet::single(Key::hmac(Identifier::UserId, tenant_secret(&t))))))
    });
    let cache = CachingProvider::new(source, CacheOptions::default().ttl(Duration::from_secs(24 * 3600)));
    let Lookup::Pending(miss) = cache.lookup(Some(tenant)) else { panic!("a cold cache misses") };
    // The source answers at once, so the miss completes on its first poll.
    match pin!(miss).poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(Ok(Some(_))) => {}
        Poll::Ready(other) => panic!("warming the cache: {other:?}"),
        Poll::Pending => panic!("warming the cache: the lookup is not ready on its first poll"),
    }
    assert!(matches!(cache.lookup(Some(tenant)), Lookup::Ready(Ok(Some(_)))), "a warm cache answers synchronously");
    cache
}

fn tenant_name(i: usize) -> String {
    format!("tenant-{i:06}")
}

fn tenant_secret(tenant: &str) -> Secret {
    Secret::text(&format!("{tenant}-secret-0123456789abcdef")).unwrap()
}

fn tenant_sig(tenant: &str) -> String {
    sign::hmac(&tenant_secret(tenant), USER)
}

/// `n` tenants, each with its own secret.
fn tenants(n: usize) -> TenantMap {
    TenantMap::from_tenants((0..n).map(|i| {
        let t = tenant_name(i);
        let keys = KeySet::single(Key::hmac(Identifier::UserId, tenant_secret(&t)));
        (t, keys)
    }))
    .expect("one secret per tenant")
}

fn flip_one_bit(sig: &str) -> String {
    let mut tag = hex::decode(sig).unwrap();
    tag[17] ^= 0x08;
    hex::encode(tag)
}

// ---------------------------------------------------------------- harness

/// A request prototype: each iteration clones its method, URI and headers,
/// and makes its body.
#[derive(Clone)]
struct Proto<B> {
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Rc<dyn Fn() -> B>,
}

impl Proto<Full<Bytes>> {
    fn get(uri: &str, headers: &[(&str, &str)]) -> Self {
        let mut map = HeaderMap::new();
        for (k, v) in headers {
            // `from_str` copies into a `Bytes`; its first clone (in the
            // untimed setup) turns it into a shared buffer, so clones in the
            // timed region are a reference-count increment, as with hyper's
            // header values (slices of one read buffer).
            map.append(HeaderName::from_bytes(k.as_bytes()).unwrap(), HeaderValue::from_str(v).unwrap());
        }
        Proto {
            method: Method::GET,
            uri: uri.parse().unwrap(),
            headers: map,
            body: Rc::new(|| Full::new(Bytes::new())),
        }
    }

    /// A JSON POST whose body is a clone of `body` (a reference-count
    /// increment once the setup's first clone has made the buffer shared).
    fn post_json(uri: &str, body: &Bytes) -> Self {
        let len = body.len().to_string();
        let mut proto =
            Proto::get(uri, &[(CONTENT_TYPE.as_str(), "application/json"), (CONTENT_LENGTH.as_str(), &len)]);
        let body = body.clone();
        proto.method = Method::POST;
        proto.body = Rc::new(move || Full::new(body.clone()));
        proto
    }
}

impl<B> Proto<B> {
    fn with_body<C>(self, body: impl Fn() -> C + 'static) -> Proto<C> {
        Proto { method: self.method, uri: self.uri, headers: self.headers, body: Rc::new(body) }
    }

    fn build(&self) -> Request<B> {
        let mut req = Request::new((self.body)());
        *req.method_mut() = self.method.clone();
        *req.uri_mut() = self.uri.clone();
        *req.headers_mut() = self.headers.clone();
        req
    }
}

struct Case {
    name: &'static str,
    baseline: Option<&'static str>,
    bench: Box<dyn FnMut(&mut Bencher<'_>)>,
}

fn case<S, B, RB>(name: &'static str, baseline: Option<&'static str>, status: u16, mut svc: S, proto: Proto<B>) -> Case
where
    S: Service<Request<B>, Response = Response<RB>> + 'static,
    S::Error: Debug,
    B: 'static,
    RB: 'static,
{
    let got = drive(&mut svc, proto.build()).status();
    assert_eq!(got.as_u16(), status, "{name}: unexpected status");
    let bench = Box::new(move |b: &mut Bencher<'_>| {
        // The response is dropped inside the timed region, as a server drops
        // it once written: criterion would otherwise keep a batch of them
        // alive, and a response that allocates (a rejection's headers) would
        // pay for fresh pages instead of reused memory.
        b.iter_batched(|| proto.build(), |req| drive(&mut svc, req).status(), BatchSize::SmallInput)
    });
    Case { name, baseline, bench }
}

// ---------------------------------------------------------------- report

/// Criterion's mean for a case, if criterion wrote it during this run.
struct Estimate {
    mean: f64,
    lower: f64,
    upper: f64,
}

fn criterion_dir() -> Option<PathBuf> {
    if let Some(home) = std::env::var_os("CRITERION_HOME") {
        return Some(PathBuf::from(home));
    }
    if let Some(target) = std::env::var_os("CARGO_TARGET_DIR") {
        return Some(PathBuf::from(target).join("criterion"));
    }
    // <target>/release/deps/overhead-<hash>: look upwards for criterion/.
    let exe = std::env::current_exe().ok()?;
    exe.ancestors().map(|a| a.join("criterion")).find(|d| d.join(GROUP).is_dir())
}

/// Reads every `<group>/<case>/new/{benchmark,estimates}.json` written since `since`.
fn read_estimates(dir: &Path, since: SystemTime) -> Vec<(String, Estimate)> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir.join(GROUP)) else { return out };
    for entry in entries.flatten() {
        let new = entry.path().join("new");
        let fresh = std::fs::metadata(new.join("estimates.json"))
            .and_then(|m| m.modified())
            .is_ok_and(|t| t + Duration::from_secs(1) >= since);
        if !fresh {
            continue;
        }
        let read =
            |f: &str| -> Option<serde_json::Value> { serde_json::from_slice(&std::fs::read(new.join(f)).ok()?).ok() };
        let (Some(bench), Some(est)) = (read("benchmark.json"), read("estimates.json")) else { continue };
        let Some(id) = bench["function_id"].as_str() else { continue };
        let mean = &est["mean"];
        let f = |v: &serde_json::Value| v.as_f64().unwrap_or(f64::NAN);
        out.push((
            id.to_owned(),
            Estimate {
                mean: f(&mean["point_estimate"]),
                lower: f(&mean["confidence_interval"]["lower_bound"]),
                upper: f(&mean["confidence_interval"]["upper_bound"]),
            },
        ));
    }
    out
}

fn report(cases: &[(&'static str, Option<&'static str>)], since: SystemTime) {
    let Some(dir) = criterion_dir() else {
        println!("\n(no criterion output directory found; no summary table)");
        return;
    };
    let estimates = read_estimates(&dir, since);
    let mean = |name: &str| estimates.iter().find(|(n, _)| n == name).map(|(_, e)| e);
    if cases.iter().all(|(n, _)| mean(n).is_none()) {
        println!("\n(no estimates written by this run, e.g. test mode or a filter; no summary table)");
        return;
    }
    let overhead = |name: &str| -> Option<f64> {
        let (_, baseline) = cases.iter().find(|(n, _)| *n == name)?;
        let m = mean(name)?.mean;
        match baseline {
            Some(b) => Some(m - mean(b)?.mean),
            None => Some(m),
        }
    };
    println!("\n{GROUP}: means from {}", dir.join(GROUP).display());
    println!("| case | mean (ns) | 95% CI of mean (ns) | baseline | overhead (ns) |");
    println!("| --- | ---: | ---: | --- | ---: |");
    for (name, baseline) in cases {
        let Some(e) = mean(name) else {
            println!("| {name} | not run | | | |");
            continue;
        };
        let (base, over) = match baseline {
            Some(b) => (*b, overhead(name).map_or("-".to_owned(), |o| format!("{o:.1}"))),
            None => ("-", "-".to_owned()),
        };
        println!("| {name} | {:.1} | {:.1} – {:.1} | {base} | {over} |", e.mean, e.lower, e.upper);
    }
    println!("\n| ratio of overheads (no baseline: the mean; no denominator: ns) | value | target | met |");
    println!("| --- | ---: | --- | --- |");
    for (label, num, den, target) in RATIOS {
        let value = if den.is_empty() { overhead(num) } else { overhead(num).zip(overhead(den)).map(|(n, d)| n / d) };
        let (value, met) = match value {
            Some(v) => {
                let met = match target.split_once(' ') {
                    Some(("<=", t)) => t.parse::<f64>().map_or("", |t| if v <= t { "yes" } else { "NO" }),
                    Some((">=", t)) => t.parse::<f64>().map_or("", |t| if v >= t { "yes" } else { "NO" }),
                    _ => "",
                };
                (if den.is_empty() { format!("{v:.1}") } else { format!("{v:.2}") }, met)
            }
            None => ("-".to_owned(), ""),
        };
        println!("| {label} | {value} | {target} | {met} |");
    }
}

fn main() {
    let started = SystemTime::now();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let _guard = rt.enter();

    let mut criterion = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    let cases = cases();
    let names: Vec<_> = cases.iter().map(|c| (c.name, c.baseline)).collect();
    let mut group = criterion.benchmark_group(GROUP);
    for mut c in cases {
        group.bench_function(c.name, |b| (c.bench)(b));
    }
    group.finish();
    criterion.final_summary();
    report(&names, started);
}
