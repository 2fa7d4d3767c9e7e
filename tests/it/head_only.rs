//! `IdentityVerificationLayer::head_only`: the same verification as the full
//! layer, with the inner service's body types kept. Each case goes through
//! both layers built from one configuration and must get the same answer,
//! the same identity and the same calls of the inner service; then the
//! head-only layer in a real axum router and a real hyper server.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body as AxumBody;
use axum::routing::{get, post};
use bytes::Bytes;
use http::{HeaderName, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use tower::{Layer, Service, ServiceExt};
use tower_identity::layer::ReadsBody;
use tower_identity::provider::{LookupResult, from_async_fn};
use tower_identity::{
    IdentityOutcome, IdentityVerificationLayer, Key, KeySet, Mode, Role, Sources, TenantPolicy, VerifiedIdentity, sign,
};

use crate::support::{Run, SECRET, Server, collect, get as get_request, secret, serve_hyper, signed_headers};

/// What the inner service saw of one request: its identity extensions, its
/// URI and its headers (name, value, flagged sensitive), sorted.
type Seen = (Option<IdentityOutcome>, Option<(String, Option<String>)>, String, Vec<(String, String, bool)>);

/// An inner service over any request body: counts its calls, records what it
/// saw and answers 200 "inner" in the response body type `R`.
fn inner<B, R: From<Bytes>>(
    calls: Arc<AtomicUsize>,
    seen: Arc<std::sync::Mutex<Option<Seen>>>,
) -> impl Service<Request<B>, Response = Response<R>, Error = Infallible, Future = impl Send> + Clone {
    tower::service_fn(move |req: Request<B>| {
        calls.fetch_add(1, Ordering::SeqCst);
        let identity = req.extensions().get::<VerifiedIdentity>();
        let mut headers: Vec<(String, String, bool)> = req
            .headers()
            .iter()
            .map(|(k, v)| (k.as_str().to_owned(), String::from_utf8_lossy(v.as_bytes()).into_owned(), v.is_sensitive()))
            .collect();
        headers.sort();
        *seen.lock().unwrap() = Some((
            IdentityOutcome::from_extensions(req.extensions()),
            identity.map(|i| (i.id().to_owned(), i.tenant().map(str::to_owned))),
            req.uri().to_string(),
            headers,
        ));
        async { Ok(Response::new(R::from(Bytes::from_static(b"inner")))) }
    })
}

/// `req` through the full layer and through its head-only twin.
async fn both(layer: &IdentityVerificationLayer, req: impl Fn() -> Request<Full<Bytes>>) -> (Run<Seen>, Run<Seen>) {
    let (calls, seen) = (Arc::new(AtomicUsize::new(0)), Arc::default());
    let full = layer.layer(inner::<_, Full<Bytes>>(calls.clone(), Arc::clone(&seen)));
    let full = Run::of(collect(full.oneshot(req()).await.unwrap()).await, &calls, &seen);

    let (calls, seen) = (Arc::new(AtomicUsize::new(0)), Arc::default());
    let head_only = layer.clone().head_only().expect("no body sources");
    // The inner service takes `Request<Full<Bytes>>` itself: the body type is unchanged.
    let svc = head_only.layer(inner::<Full<Bytes>, Full<Bytes>>(calls.clone(), Arc::clone(&seen)));
    let head = Run::of(collect(svc.oneshot(req()).await.unwrap()).await, &calls, &seen);
    (full, head)
}

fn keys() -> KeySet {
    KeySet::single(Key::hmac(tower_identity::Identifier::UserId, secret()).with_id("k1"))
}

fn tenant_sources() -> Sources {
    Sources::new().header(Role::Tenant, HeaderName::from_static("x-tenant"))
}

/// A provider that answers after a delay (the `Resolving` state), knows
/// tenant `acme`, fails for `down` and panics for `boom`.
fn slow_provider() -> impl tower_identity::SecretProvider {
    from_async_fn(|tenant: Option<String>| async move {
        tokio::time::sleep(Duration::from_millis(5)).await;
        let answer: LookupResult = match tenant.as_deref() {
            Some("acme") => Ok(Some(TenantPolicy::new(keys()))),
            Some("down") => Err(tower_identity::provider::ProviderError::new("the tenant database is down")),
            Some("boom") => panic!("a provider bug"),
            _ => Ok(None),
        };
        answer
    })
}

#[tokio::test]
async fn head_only_answers_every_request_as_the_full_layer_does() {
    let signed = signed_headers(SECRET, "42");
    let valid: Vec<(&str, &str)> = signed.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let forged = [("x-user-id", "42"), ("x-identity-signature", &"0".repeat(64) as &str)];
    let malformed = [("x-user-id", "42"), ("x-identity-signature", "zz")];
    let with_tenant = |tenant: &'static str, headers: &[(&'static str, &str)]| {
        let mut h: Vec<(String, String)> = headers.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        h.push(("x-tenant".into(), tenant.into()));
        h
    };

    let static_cases: [(&str, Vec<(&str, &str)>); 4] =
        [("valid", valid.clone()), ("forged", forged.to_vec()), ("malformed", malformed.to_vec()), ("missing", vec![])];
    for mode in [Mode::Off, Mode::ReportOnly, Mode::Optional, Mode::Required] {
        let layer = IdentityVerificationLayer::new(keys()).mode(mode);
        for (name, headers) in &static_cases {
            let (full, head) = both(&layer, || get_request("/", headers)).await;
            assert_eq!(full, head, "{mode:?}, {name}");
        }
    }
    // The verified case reached the inner service with the identity; the
    // forged one did not reach it in `Required`.
    let layer = IdentityVerificationLayer::new(keys());
    let (_, head) = both(&layer, || get_request("/", &valid)).await;
    assert_eq!((head.status, head.calls), (StatusCode::OK, 1));
    assert_eq!(head.seen.unwrap().1, Some(("42".to_owned(), None)));
    let (_, head) = both(&layer, || get_request("/", &forged)).await;
    assert_eq!((head.status, head.calls, head.body.contains("signature_invalid")), (StatusCode::UNAUTHORIZED, 0, true));

    // A provider that waits: known, unknown, failing and panicking tenants,
    // and a tenant name too long to look up.
    let layer = IdentityVerificationLayer::new(slow_provider()).sources(tenant_sources());
    let long = "t".repeat(300);
    let long: &'static str = Box::leak(long.into_boxed_str());
    let expectations = [
        ("acme", StatusCode::OK, 1),
        ("unknown", StatusCode::UNAUTHORIZED, 0),
        ("down", StatusCode::SERVICE_UNAVAILABLE, 0),
        ("boom", StatusCode::INTERNAL_SERVER_ERROR, 0),
        (long, StatusCode::UNAUTHORIZED, 0),
    ];
    for (tenant, status, calls) in expectations {
        let headers = with_tenant(tenant, &valid);
        let req = || {
            let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            get_request("/", &h)
        };
        let (full, head) = both(&layer, req).await;
        assert_eq!(full, head, "tenant {:.20}", tenant);
        assert_eq!((head.status, head.calls), (status, calls), "tenant {:.20}: {}", tenant, head.body);
    }
    let (_, head) = both(&layer, || get_request("/", &[("x-tenant", "acme"), valid[0], valid[1]])).await;
    assert_eq!(head.seen.unwrap().1, Some(("42".to_owned(), Some("acme".to_owned()))));

    // Bypass and CORS preflights pass unverified, with forwarded identity
    // headers stripped, as in the full layer.
    let layer = IdentityVerificationLayer::new(keys())
        .bypass(|head| head.uri.path() == "/health")
        .pass_cors_preflight(true)
        .forward_identity_headers(tower_identity::layer::ForwardHeaders::default());
    let preflight = || {
        Request::options("/chat")
            .header("origin", "https://shop.example")
            .header("access-control-request-method", "POST")
            .header("x-verified-user-id", "admin")
            .body(Full::new(Bytes::new()))
            .unwrap()
    };
    let (full, head) = both(&layer, preflight).await;
    assert_eq!(full, head);
    let seen = head.seen.unwrap();
    assert_eq!((head.calls, seen.0), (1, Some(IdentityOutcome::Anonymous)));
    assert_eq!(header(&seen.3, "x-verified-user-id"), None, "a client-sent identity header passed a preflight");
    assert_eq!(header(&seen.3, "x-identity-outcome"), Some("anonymous"));
    let (full, head) = both(&layer, || get_request("/health", &[("x-verified-user-id", "admin")])).await;
    assert_eq!(full, head);
    assert_eq!((head.status, head.calls), (StatusCode::OK, 1));
    assert_eq!(header(&head.seen.unwrap().3, "x-verified-user-id"), None, "a client-sent identity header was bypassed");
}

/// The value of header `name` the inner service saw, if any.
fn header<'a>(seen: &'a [(String, String, bool)], name: &str) -> Option<&'a str> {
    seen.iter().find(|(n, _, _)| n == name).map(|(_, v, _)| v.as_str())
}

/// Forwarded identity headers, stripped credentials (headers and query),
/// sensitive flags, JWT bearer tokens and gRPC rejections: the same in both.
#[tokio::test]
async fn head_only_forwards_and_strips_as_the_full_layer_does() {
    let forward = tower_identity::layer::ForwardHeaders::default;
    let sources = Sources::new().query_defaults();
    let layer = IdentityVerificationLayer::new(keys()).forward_identity_headers(forward());
    let stripping = layer.clone().strip_credentials(true).sources(sources.clone());
    let sig = sign::hmac(&secret(), "42");
    let spoofed = [("x-user-id", "42"), ("x-identity-signature", sig.as_str()), ("x-verified-user-id", "admin")];
    let query = format!("/chat?room=5&user_id=42&signature={sig}");

    for (name, layer) in [("marking", &layer), ("stripping", &stripping)] {
        let (full, head) = both(layer, || get_request("/chat", &spoofed)).await;
        assert_eq!(full, head, "{name}: headers");
        let seen = head.seen.unwrap();
        assert_eq!(header(&seen.3, "x-verified-user-id"), Some("42"), "{name}");
        let signature = seen.3.iter().find(|(n, _, _)| n == "x-identity-signature");
        match name {
            "marking" => assert!(signature.is_some_and(|(_, _, sensitive)| *sensitive), "{name}: {signature:?}"),
            _ => assert_eq!(signature, None, "{name}: the signature reached the inner service"),
        }
    }
    let (full, head) = both(&stripping, || get_request(&query, &[])).await;
    assert_eq!(full, head, "query");
    assert_eq!(head.seen.unwrap().2, "/chat?room=5", "the query's credentials are stripped");

    // gRPC: the rejection is a gRPC status in both.
    let grpc = || {
        Request::post("/chat.Chat/Send")
            .header("content-type", "application/grpc")
            .header("x-user-id", "42")
            .header("x-identity-signature", "0".repeat(64))
            .body(Full::new(Bytes::new()))
            .unwrap()
    };
    let (full, head) = both(&layer, grpc).await;
    assert_eq!(full, head, "gRPC");
    assert_eq!((head.status, head.calls), (StatusCode::OK, 0));
    assert!(head.headers.iter().any(|(k, v)| k == "grpc-status" && v == "16"), "{:?}", head.headers);

    // An HS256 bearer token, valid and then signed with another secret.
    let jwt_secret = tower_identity::Secret::text("head-only-jwt-secret-0123456789").unwrap();
    let jwt = IdentityVerificationLayer::new(KeySet::single(Key::jwt(jwt_secret.clone())).with_audience("app"))
        .sources(Sources::new().bearer());
    let now = tower_identity::clock::Clock::now(&tower_identity::clock::SystemClock);
    let token = sign::jwt_token(&jwt_secret, "app", "jane@example.com", None, now, 300, []);
    let other = tower_identity::Secret::text("another-jwt-secret-0123456789ab").unwrap();
    let forged = sign::jwt_token(&other, "app", "jane@example.com", None, now, 300, []);
    for (token, status, calls) in [(&token, StatusCode::OK, 1), (&forged, StatusCode::UNAUTHORIZED, 0)] {
        let bearer = format!("Bearer {token}");
        let (full, head) = both(&jwt, || get_request("/", &[("authorization", &bearer)])).await;
        assert_eq!(full, head, "JWT");
        assert_eq!((head.status, head.calls), (status, calls), "JWT: {}", head.body);
    }
}

#[test]
fn head_only_refuses_a_configuration_that_reads_the_body() {
    let layer = IdentityVerificationLayer::new(keys()).sources(Sources::new().json(Role::UserId, "/user_id"));
    let err = layer.head_only().unwrap_err();
    assert_eq!(err, ReadsBody);
    assert!(err.to_string().contains("read the request body"), "{err}");
    let form = IdentityVerificationLayer::new(keys()).sources(Sources::new().form(Role::UserId, "user_id"));
    assert!(form.head_only().is_err());
    let query = IdentityVerificationLayer::new(keys()).sources(Sources::new().query_defaults().bearer());
    assert!(query.head_only().is_ok());
}

#[tokio::test]
async fn head_only_in_an_axum_router_keeps_the_body_streaming() {
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let echo = move |identity: VerifiedIdentity, body: Bytes| {
        counted.fetch_add(1, Ordering::SeqCst);
        async move { format!("{}:{}", identity.id(), body.len()) }
    };
    let layer = IdentityVerificationLayer::new(keys()).head_only().unwrap();
    let app = Router::new()
        .route("/echo", post(echo))
        .route("/me", get(|i: VerifiedIdentity| async move { i.id().to_owned() }));
    let server = Server::axum(app.route_layer(layer), calls.clone()).await;
    let addr = server.addr;

    let signed = signed_headers(SECRET, "7");
    let mut req = Request::post(format!("http://{addr}/echo"));
    for (k, v) in &signed {
        req = req.header(*k, v.as_str());
    }
    let res = crate::support::fetch(req.body(Full::new(Bytes::from(vec![b'x'; 100_000]))).unwrap()).await;
    assert_eq!((res.status, res.body.as_str()), (StatusCode::OK, "7:100000"));

    let forged = [("x-user-id", "7"), ("x-identity-signature", &sign::hmac(&crate::support::secret(), "8") as &str)];
    let res = crate::support::fetch(get_request(&format!("http://{addr}/me"), &forged)).await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);
    assert_eq!(res.code(), "signature_invalid");
    assert_eq!(res.headers["content-type"], "application/json");
    assert_eq!(calls.load(Ordering::SeqCst), 1, "only the verified request reached a handler");
    drop(server);
}

#[tokio::test]
async fn head_only_in_a_hyper_server_hands_on_incoming() {
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let layer = IdentityVerificationLayer::new(keys()).head_only().unwrap();
    // The inner service takes hyper's own `Incoming` and answers `Full`.
    let svc = layer.layer(tower::service_fn(move |req: Request<hyper::body::Incoming>| {
        counted.fetch_add(1, Ordering::SeqCst);
        async move {
            let user = req.extensions().get::<VerifiedIdentity>().map(|i| i.id().to_owned()).unwrap_or_default();
            let len = req.into_body().collect().await.map(|b| b.to_bytes().len()).unwrap_or_default();
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(format!("{user}:{len}")))))
        }
    }));
    let (server, addr) = serve_hyper(svc).await;
    let signed = signed_headers(SECRET, "9");
    let mut req = Request::post(format!("http://{addr}/"));
    for (k, v) in &signed {
        req = req.header(*k, v.as_str());
    }
    let res = crate::support::fetch(req.body(Full::new(Bytes::from(vec![b'y'; 70_000]))).unwrap()).await;
    assert_eq!((res.status, res.body.as_str()), (StatusCode::OK, "9:70000"));
    let res = crate::support::fetch(get_request(&format!("http://{addr}/"), &[("x-user-id", "9")])).await;
    assert_eq!((res.status, res.code().as_str()), (StatusCode::UNAUTHORIZED, "credential_missing"));
    assert_eq!(calls.load(Ordering::SeqCst), 1, "the rejected request never reached the inner service");
    drop(server);
}

/// axum's own body type passes through the head-only layer unboxed: the
/// handler's body and the router's response are `axum::body::Body`.
#[tokio::test]
async fn head_only_over_an_axum_body_service() {
    let (calls, seen) = (Arc::new(AtomicUsize::new(0)), Arc::default());
    let layer = IdentityVerificationLayer::new(keys()).head_only().unwrap();
    let svc = layer.layer(inner::<AxumBody, AxumBody>(calls.clone(), Arc::clone(&seen)));
    let signed = signed_headers(SECRET, "5");
    let mut req = Request::get("/");
    for (k, v) in &signed {
        req = req.header(*k, v.as_str());
    }
    let res: Response<AxumBody> = svc.clone().oneshot(req.body(AxumBody::empty()).unwrap()).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let res = svc.oneshot(Request::get("/").body(AxumBody::empty()).unwrap()).await.unwrap();
    let answer = collect(res).await;
    assert_eq!((answer.status, answer.code().as_str()), (StatusCode::UNAUTHORIZED, "credential_missing"));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}
