//! Drives one case 10,000 times, for counting instructions with callgrind,
//! which this project's noisy VMs do not disturb (criterion's times there
//! move by ±30 % between runs; instruction counts do not move at all):
//!
//! ```sh
//! cargo bench --bench instructions --no-run   # prints the executable's path
//! valgrind --tool=callgrind target/release/deps/instructions-<hash> layer
//! ```
//!
//! Cases: `bare`, `layer`, `head_only` and `naive` (the header-HMAC request;
//! `head_only` is the layer with the body types kept, `naive` the
//! hand-written layer of `overhead/peers.rs`); the same in an axum router
//! with `route_layer`: `bare_axum`, `axum_layer`, `axum_head_only`,
//! `axum_naive`, `axum_from_fn` (`from_fn` with a pre-keyed HMAC); `bare_jwt`, `jwt` and
//! `jsonwebtoken` (an HS256 bearer token; `jsonwebtoken` is the layer around
//! that crate); `bare_axum_json`, `axum_json` and `axum_from_fn_json` (a
//! 1 KiB JSON body carrying `/user_id` and `/user_hash`, built like the
//! overhead bench's, in an axum router: the layer with JSON sources, the same
//! with `keep_response_body` as `axum_keep_body_json`, and the `from_fn` peer
//! doing `to_bytes` + a serde struct + verify). Every case builds its requests the same way, so the
//! difference between two totals is the services' own work. Under valgrind
//! SHA-256 runs in software (no SHA-NI), which inflates the HMAC's share;
//! `callgrind_annotate` shows it apart (`sha2::sha256::soft::compress`).
//! Without a case the program does nothing, so `cargo bench` passes over it.

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::hint::black_box;

use bytes::Bytes;
use http::header::AUTHORIZATION;
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response};
use http_body_util::Full;
use tower::{Layer, Service};
#[path = "../tests/support/drive.rs"]
mod drive;
#[path = "overhead/peers.rs"]
#[allow(dead_code)] // `from_fn_hmac` is the overhead bench's
mod peers;
use tower_identity::{Identifier, IdentityVerificationLayer, Key, KeySet, Role, Secret, Sources, clock::Clock, sign};

const REQUESTS: usize = 10_000;
const SECRET: &str = "bench-secret-0123456789abcdef";
const JWT_SECRET: &str = "bench-jwt-secret-0123456789abcdef";
const APP_ID: &str = "app_bench";

type BareFuture = Ready<Result<Response<Full<Bytes>>, Infallible>>;

/// The inner service: an empty 200, whatever the request body type.
fn bare<B>() -> tower::util::ServiceFn<fn(Request<B>) -> BareFuture> {
    fn answer<B>(_req: Request<B>) -> BareFuture {
        ready(Ok(Response::new(Full::new(Bytes::new()))))
    }
    tower::service_fn(answer::<B> as fn(Request<B>) -> BareFuture)
}

/// Drives `svc` with `REQUESTS` requests carrying `headers` (values cloned
/// from shared buffers, as hyper's are), each answered 200.
fn run<S, RB>(svc: S, headers: &HeaderMap)
where
    S: Service<Request<Full<Bytes>>, Response = Response<RB>>,
    S::Error: std::fmt::Debug,
{
    run_with(svc, headers, || Full::new(Bytes::new()));
}

/// [`run`] with request bodies made by `body` (axum routers take their own).
fn run_with<S, B, RB>(mut svc: S, headers: &HeaderMap, body: fn() -> B)
where
    S: Service<Request<B>, Response = Response<RB>>,
    S::Error: std::fmt::Debug,
{
    for _ in 0..REQUESTS {
        let mut req = Request::new(body());
        *req.headers_mut() = headers.clone();
        assert_eq!(black_box(drive::drive(&mut svc, req)).status(), 200);
    }
}

/// A router with one route answering an empty 200 to GET and POST.
fn router() -> axum::Router {
    axum::Router::new().route("/", axum::routing::get(|| async {}).post(|| async {}))
}

/// A JSON body of exactly 1 KiB carrying the identity, padded with an
/// unsigned field (the overhead bench's `json_body`).
fn json_body(sig: &str) -> Bytes {
    const LEN: usize = 1024;
    let head = format!(r#"{{"user_id":"user-42","user_hash":"{sig}","padding":""#);
    let tail = r#""}"#;
    let body = format!("{head}{}{tail}", "x".repeat(LEN - head.len() - tail.len()));
    assert_eq!(body.len(), LEN);
    Bytes::from(body)
}

/// Drives an axum router with `REQUESTS` JSON POSTs of `body` (a reference
/// count per request: the buffer is shared, as a received body's is).
fn run_json(mut router: axum::Router, body: &Bytes) {
    let headers = headers(&[
        (http::header::CONTENT_TYPE, "application/json".into()),
        (http::header::CONTENT_LENGTH, body.len().to_string()),
    ]);
    for _ in 0..REQUESTS {
        let mut req = Request::new(axum::body::Body::from(body.clone()));
        *req.method_mut() = http::Method::POST;
        *req.headers_mut() = headers.clone();
        assert_eq!(black_box(drive::drive(&mut router, req)).status(), 200);
    }
}

fn headers(pairs: &[(HeaderName, String)]) -> HeaderMap {
    let map: HeaderMap = pairs.iter().map(|(k, v)| (k.clone(), HeaderValue::from_str(v).unwrap())).collect();
    // The first clone makes every value's buffer shared: later clones are reference counts.
    let _ = map.clone();
    map
}

fn main() {
    let Some(case) = std::env::args().skip(1).find(|a| !a.starts_with('-')) else { return };
    let secret = Secret::text(SECRET).unwrap();
    let hmac = headers(&[
        (HeaderName::from_static("x-user-id"), "user-42".into()),
        (HeaderName::from_static("x-identity-signature"), sign::hmac(&secret, "user-42")),
    ]);
    let jwt_secret = Secret::text(JWT_SECRET).unwrap();
    let token = sign::jwt_token(
        &jwt_secret,
        APP_ID,
        "jane@example.com",
        None,
        tower_identity::clock::SystemClock.now(),
        900,
        [],
    );
    let jwt = headers(&[(AUTHORIZATION, format!("Bearer {token}"))]);
    let jwt_layer = IdentityVerificationLayer::new(KeySet::single(Key::jwt(jwt_secret.clone())).with_audience(APP_ID))
        .sources(Sources::new().bearer());
    let json = json_body(&sign::hmac(&secret, "user-42"));
    let hmac_layer = IdentityVerificationLayer::new(KeySet::single(Key::hmac(Identifier::UserId, secret)));
    let head_only = || hmac_layer.clone().head_only().expect("header sources only");
    let axum = |router: axum::Router| run_with(router, &hmac, axum::body::Body::empty);
    let json_layer =
        hmac_layer.clone().sources(Sources::new().json(Role::UserId, "/user_id").json(Role::Signature, "/user_hash"));
    let from_fn_json = axum::middleware::from_fn_with_state(peers::prekeyed(SECRET.as_bytes()), peers::from_fn_json);
    match case.as_str() {
        "bare" => run(bare(), &hmac),
        "layer" => run(hmac_layer.layer(bare()), &hmac),
        "head_only" => run(head_only().layer(bare()), &hmac),
        "naive" => run(peers::NaiveLayer::new(SECRET.as_bytes()).layer(bare()), &hmac),
        "bare_axum" => axum(router()),
        "axum_layer" => axum(router().route_layer(hmac_layer.clone())),
        "axum_head_only" => axum(router().route_layer(head_only())),
        "axum_naive" => axum(router().route_layer(peers::NaiveLayer::new(SECRET.as_bytes()))),
        "axum_from_fn" => axum(router().route_layer(axum::middleware::from_fn_with_state(
            peers::prekeyed(SECRET.as_bytes()),
            peers::from_fn_hmac,
        ))),
        "bare_jwt" => run(bare(), &jwt),
        "jwt" => run(jwt_layer.layer(bare()), &jwt),
        "jsonwebtoken" => run(peers::JsonwebtokenLayer::new(jwt_secret.expose(), APP_ID).layer(bare()), &jwt),
        "bare_axum_json" => run_json(router(), &json),
        "axum_json" => run_json(router().route_layer(json_layer), &json),
        "axum_keep_body_json" => run_json(router().route_layer(json_layer.keep_response_body()), &json),
        "axum_from_fn_json" => run_json(router().route_layer(from_fn_json), &json),
        other => panic!(
            "unknown case {other:?}: bare, layer, head_only, naive, bare_axum, axum_layer, axum_head_only, \
             axum_naive, axum_from_fn, bare_jwt, jwt, jsonwebtoken, bare_axum_json, axum_json, \
             axum_keep_body_json, axum_from_fn_json"
        ),
    }
}
