//! CORS without a browser: preflights in every mode with `pass_cors_preflight`
//! on and off, the header lists a `CorsLayer` is built from, and the
//! composition `CorsLayer` outside, `IdentityVerificationLayer` inside.

use std::sync::{Arc, Mutex};

use crate::examples::axum_example;
use crate::support::*;
use axum::Router;
use axum::routing::any;
use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use tower::ServiceExt;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_identity::layer::ForwardHeaders;
use tower_identity::provider::ProviderError;
use tower_identity::{
    Identifier, IdentityOutcome, IdentityVerificationLayer, Key, KeySet, Mode, Role, Secret, Sources, VerifiedIdentity,
    cors, sign,
};

const ORIGIN: &str = "https://shop.example";
const MODES: [Mode; 4] = [Mode::Off, Mode::ReportOnly, Mode::Optional, Mode::Required];

fn keys() -> KeySet {
    KeySet::single(Key::hmac(Identifier::UserId, Secret::text(SECRET).unwrap()))
}

fn layer(mode: Mode, pass: bool) -> IdentityVerificationLayer {
    IdentityVerificationLayer::new(keys()).mode(mode).pass_cors_preflight(pass)
}

/// A browser's preflight for a POST carrying the identity headers, plus `extra`.
fn preflight(extra: &[(&str, &str)]) -> Request<Full<Bytes>> {
    let mut b = Request::builder()
        .method(Method::OPTIONS)
        .uri("/chat")
        .header("origin", ORIGIN)
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "content-type,x-identity-signature,x-user-id");
    for (k, v) in extra {
        b = b.header(*k, *v);
    }
    b.body(Full::new(Bytes::new())).unwrap()
}

fn assert_passed_anonymous(answer: &Answer, rec: &Recorder, context: &str) {
    assert_eq!(answer.status, StatusCode::OK, "{context}: {}", answer.body);
    assert_eq!(answer.body, "inner", "{context}");
    assert_eq!(rec.calls(), 1, "{context}");
    assert_eq!(rec.last_outcome(), Some(IdentityOutcome::Anonymous), "{context}");
    assert!(rec.last_identity().is_none(), "{context}: a preflight never carries an identity");
}

#[tokio::test]
async fn preflight_passes_as_anonymous_in_every_mode_when_enabled() {
    for mode in MODES {
        let (answer, rec) = send(&layer(mode, true), preflight(&[])).await;
        assert_passed_anonymous(&answer, &rec, &format!("{mode:?}"));
    }
}

#[tokio::test]
async fn preflight_is_an_ordinary_request_when_disabled() {
    for mode in MODES {
        let (answer, rec) = send(&layer(mode, false), preflight(&[])).await;
        if mode == Mode::Required {
            assert_rejected(&answer, &rec, 401, "credential_missing", &[]);
        } else {
            assert_passed_anonymous(&answer, &rec, &format!("{mode:?}"));
        }
    }
}

#[tokio::test]
async fn a_preflight_with_credentials_is_never_verified() {
    let valid = sign::hmac(&Secret::text(SECRET).unwrap(), "42");
    let forged = sign::hmac(&Secret::text("some-other-secret-0123456789").unwrap(), "42");
    for mode in MODES {
        for sig in [&valid, &forged] {
            let (answer, rec) =
                send(&layer(mode, true), preflight(&[("x-user-id", "42"), ("x-identity-signature", sig)])).await;
            assert_passed_anonymous(&answer, &rec, &format!("{mode:?}"));
        }
    }
    // Disabled, a forged signature on a preflight is rejected like on any request.
    let (answer, rec) =
        send(&layer(Mode::Optional, false), preflight(&[("x-user-id", "42"), ("x-identity-signature", &forged)])).await;
    assert_rejected(&answer, &rec, 401, "signature_invalid", &[&forged]);
}

#[tokio::test]
async fn a_passed_preflight_forwards_anonymous_and_strips_spoofed_identity_headers() {
    let layer = layer(Mode::Required, true).forward_identity_headers(ForwardHeaders::default());
    let seen = Arc::new(Mutex::new(None));
    let record = seen.clone();
    let inner = tower::service_fn(move |req: Request<_>| {
        *record.lock().unwrap() = Some(req.headers().clone());
        async { Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(Bytes::from_static(b"inner")))) }
    });
    let svc = tower::ServiceBuilder::new().layer(layer).service(inner);
    let res = svc.oneshot(preflight(&[("x-verified-user-id", "admin"), ("x_verified_user_id", "admin")])).await;
    assert_eq!(res.unwrap().status(), StatusCode::OK);
    let headers = seen.lock().unwrap().take().expect("the inner service saw the preflight");
    assert_eq!(headers["x-identity-outcome"], "anonymous");
    assert!(!headers.contains_key("x-verified-user-id"));
    assert!(!headers.contains_key("x_verified_user_id"));
}

#[tokio::test]
async fn only_real_preflights_pass() {
    // OPTIONS without Access-Control-Request-Method, or without Origin, or
    // another method carrying both headers: verified as usual.
    let not_preflights = [
        Request::options("/chat").header("origin", ORIGIN),
        Request::options("/chat").header("access-control-request-method", "POST"),
        Request::post("/chat").header("origin", ORIGIN).header("access-control-request-method", "POST"),
    ];
    for b in not_preflights {
        let (answer, rec) = send(&layer(Mode::Required, true), b.body(Full::new(Bytes::new())).unwrap()).await;
        assert_rejected(&answer, &rec, 401, "credential_missing", &[]);
    }
}

#[test]
fn is_preflight() {
    let mut h = http::HeaderMap::new();
    assert!(!cors::is_preflight(&Method::OPTIONS, &h));
    h.insert("origin", ORIGIN.parse().unwrap());
    assert!(!cors::is_preflight(&Method::OPTIONS, &h));
    h.insert("access-control-request-method", "POST".parse().unwrap());
    assert!(cors::is_preflight(&Method::OPTIONS, &h));
    assert!(!cors::is_preflight(&Method::GET, &h));
}

#[test]
fn allow_headers_follow_the_sources() {
    let names = |s: &Sources| s.cors_allow_headers().iter().map(|n| n.as_str().to_owned()).collect::<Vec<_>>();
    assert_eq!(
        names(&Sources::new()),
        [
            "x-user-id",
            "x-user-email",
            "x-visitor-id",
            "x-identity-signature",
            "x-identity-timestamp",
            "x-identity-token",
            "content-type"
        ]
    );
    let custom = Sources::empty()
        .header(Role::Tenant, http::HeaderName::from_static("x-app-id"))
        .header(Role::UserId, http::HeaderName::from_static("x-uid"))
        .header(Role::Signature, http::HeaderName::from_static("x-uid-hmac"))
        .header(Role::Metadata, http::HeaderName::from_static("x-user-metadata"))
        .bearer();
    assert_eq!(names(&custom), ["x-app-id", "x-uid", "x-uid-hmac", "x-user-metadata", "authorization", "content-type"]);
    // Body and query sources need no header beyond content-type.
    let body = Sources::empty().json(Role::UserId, "/user_id").json(Role::Signature, "/user_hash");
    assert_eq!(names(&body), ["content-type"]);
    assert_eq!(cors::EXPOSE_HEADERS.map(|n| n.as_str().to_owned()), ["www-authenticate", "retry-after"]);
}

/// The documented composition: `CorsLayer` outside, the identity layer inside.
fn app(provider: impl tower_identity::SecretProvider, calls: Arc<Mutex<usize>>) -> Router {
    let sources = Sources::new();
    let cors_layer = CorsLayer::new()
        .allow_origin(AllowOrigin::list([ORIGIN.parse().unwrap()]))
        .allow_methods([Method::GET, Method::POST])
        .allow_headers(sources.cors_allow_headers())
        .expose_headers(cors::EXPOSE_HEADERS);
    let chat = move |identity: VerifiedIdentity| {
        *calls.lock().unwrap() += 1;
        async move { format!("hello {}", identity.id()) }
    };
    Router::new()
        .route("/chat", any(chat))
        .route_layer(IdentityVerificationLayer::new(provider).sources(sources))
        .layer(cors_layer)
}

async fn call(app: &Router, req: Request<axum::body::Body>) -> (http::response::Parts, String) {
    let res = app.clone().oneshot(req).await.unwrap();
    let (parts, body) = res.into_parts();
    (parts, String::from_utf8(body.collect().await.unwrap().to_bytes().to_vec()).unwrap())
}

fn browser(method: Method, origin: &str, headers: &[(&str, &str)]) -> Request<axum::body::Body> {
    let mut b = Request::builder().method(method).uri("/chat").header("origin", origin);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(axum::body::Body::empty()).unwrap()
}

#[tokio::test]
async fn cors_layer_outside_answers_preflights_and_decorates_rejections() {
    let calls = Arc::new(Mutex::new(0));
    let app = app(keys(), calls.clone());
    let acrm = ("access-control-request-method", "POST");
    let (parts, _) = call(&app, browser(Method::OPTIONS, ORIGIN, &[acrm])).await;
    assert_eq!(parts.status, StatusCode::OK);
    assert_eq!(parts.headers["access-control-allow-origin"], ORIGIN);
    let allowed = parts.headers["access-control-allow-headers"].to_str().unwrap();
    assert!(allowed.contains("x-identity-signature") && allowed.contains("content-type"), "{allowed}");

    let valid = sign::hmac(&Secret::text(SECRET).unwrap(), "42");
    let forged = sign::hmac(&Secret::text(SECRET).unwrap(), "41");
    let (parts, body) =
        call(&app, browser(Method::POST, ORIGIN, &[("x-user-id", "42"), ("x-identity-signature", &valid)])).await;
    assert_eq!((parts.status, body.as_str()), (StatusCode::OK, "hello 42"));
    assert_eq!(parts.headers["access-control-allow-origin"], ORIGIN);
    for headers in [vec![("x-user-id", "42"), ("x-identity-signature", forged.as_str())], vec![]] {
        let (parts, body) = call(&app, browser(Method::POST, ORIGIN, &headers)).await;
        assert_eq!(parts.status, StatusCode::UNAUTHORIZED, "{body}");
        assert_eq!(parts.headers["access-control-allow-origin"], ORIGIN);
        let exposed = parts.headers["access-control-expose-headers"].to_str().unwrap();
        assert!(exposed.contains("www-authenticate") && exposed.contains("retry-after"), "{exposed}");
    }
    // Another origin gets no CORS headers (the browser then refuses to read the answer).
    let (parts, _) = call(&app, browser(Method::OPTIONS, "https://evil.example", &[acrm])).await;
    assert!(!parts.headers.contains_key("access-control-allow-origin"));
    assert_eq!(*calls.lock().unwrap(), 1, "only the valid request reached the handler");
}

#[tokio::test]
async fn a_failing_provider_503_carries_cors_headers() {
    let failing = |_: Option<&str>| Err(ProviderError::new("down"));
    let calls = Arc::new(Mutex::new(0));
    let app = app(failing, calls.clone());
    let valid = sign::hmac(&Secret::text(SECRET).unwrap(), "42");
    let (parts, _) =
        call(&app, browser(Method::POST, ORIGIN, &[("x-user-id", "42"), ("x-identity-signature", &valid)])).await;
    assert_eq!(parts.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(parts.headers["access-control-allow-origin"], ORIGIN);
    assert!(parts.headers.contains_key("retry-after"));
    assert_eq!(*calls.lock().unwrap(), 0);
}

#[tokio::test]
async fn the_extractor_refuses_a_passed_preflight_with_credential_missing() {
    let hits = Arc::new(Mutex::new(0));
    let count = hits.clone();
    let app = Router::new()
        .route(
            "/chat",
            any(move |identity: VerifiedIdentity| {
                *count.lock().unwrap() += 1;
                async move { identity.id().to_owned() }
            }),
        )
        .route_layer(layer(Mode::Required, true))
        .route("/bare", axum::routing::get(|identity: VerifiedIdentity| async move { identity.id().to_owned() }));
    let preflight = browser(Method::OPTIONS, ORIGIN, &[("access-control-request-method", "POST")]);
    let (parts, body) = call(&app, preflight).await;
    assert_eq!(parts.status, StatusCode::UNAUTHORIZED);
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["error"], "credential_missing");
    assert_eq!(parts.headers["cache-control"], "no-store");
    assert_eq!(*hits.lock().unwrap(), 0, "the handler body never ran");
    // No layer at all: still the 500 naming the layer.
    let bare = Request::get("/bare").body(axum::body::Body::empty()).unwrap();
    let (parts, body) = call(&app, bare).await;
    assert_eq!(parts.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(body.contains("IdentityVerificationLayer"), "{body}");
}

#[tokio::test]
async fn the_axum_example_answers_preflights_on_every_route() {
    let app = axum_example::app();
    for path in ["/me", "/greeting", "/chat"] {
        let req = Request::options(path)
            .header("origin", ORIGIN)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "x-app-id,x-user-id,x-identity-signature,content-type")
            .body(axum::body::Body::empty())
            .unwrap();
        let (parts, _) = call(&app, req).await;
        assert_eq!(parts.status, StatusCode::OK, "{path}");
        assert_eq!(parts.headers["access-control-allow-origin"], "*", "{path}");
        let allowed = parts.headers["access-control-allow-headers"].to_str().unwrap();
        assert!(allowed.contains("x-app-id") && allowed.contains("x-identity-signature"), "{path}: {allowed}");
    }
    // A rejection is readable cross-origin.
    let req = Request::get("/me").header("origin", ORIGIN).body(axum::body::Body::empty()).unwrap();
    let (parts, body) = call(&app, req).await;
    assert_eq!(parts.status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(parts.headers["access-control-allow-origin"], "*");
    assert!(parts.headers["access-control-expose-headers"].to_str().unwrap().contains("www-authenticate"));
}
