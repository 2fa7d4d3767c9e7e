//! `IdentityVerificationLayer::keep_response_body`: the full layer, body
//! sources included, answering with the inner service's own response body
//! type. Each case goes through both layers built from one configuration and
//! must get the same answer, the same calls of the inner service and the
//! same request body there; then the layer in a real axum router.

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::routing::post;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use tower::{Layer, Service, ServiceExt};
use tower_identity::{IdentityVerificationLayer, Key, KeySet, Mode, Role, Sources, VerifiedIdentity, sign};

use crate::support::{Run, SECRET, Server, collect, fetch, secret};

/// What the inner service saw of one request: the identity and the body.
type Seen = (Option<String>, Bytes);

/// An inner service over any request body: counts its calls, records what it
/// saw and answers 200 "inner" in the response body type `R`.
fn inner<B, R>(
    calls: Arc<AtomicUsize>,
    seen: Arc<Mutex<Option<Seen>>>,
) -> impl Service<Request<B>, Response = Response<R>, Error = Infallible, Future = impl Send> + Clone
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: std::fmt::Debug,
    R: From<Bytes>,
{
    tower::service_fn(move |req: Request<B>| {
        let (calls, seen) = (calls.clone(), seen.clone());
        async move {
            calls.fetch_add(1, Ordering::SeqCst);
            let id = req.extensions().get::<VerifiedIdentity>().map(|i| i.id().to_owned());
            let body = req.into_body().collect().await.unwrap().to_bytes();
            *seen.lock().unwrap() = Some((id, body));
            Ok(Response::new(R::from(Bytes::from_static(b"inner"))))
        }
    })
}

/// A JSON POST of `body`.
fn post_json(body: &str) -> Request<Full<Bytes>> {
    Request::post("/").header("content-type", "application/json").body(Full::new(Bytes::from(body.to_owned()))).unwrap()
}

/// `body` through the full layer and through its `keep_response_body` twin.
async fn both(layer: &IdentityVerificationLayer, body: &str) -> (Run<Seen>, Run<Seen>) {
    let (calls, seen) = (Arc::new(AtomicUsize::new(0)), Arc::default());
    let full = layer.layer(inner::<_, Full<Bytes>>(calls.clone(), Arc::clone(&seen)));
    let full = Run::of(collect(full.oneshot(post_json(body)).await.unwrap()).await, &calls, &seen);

    let (calls, seen) = (Arc::new(AtomicUsize::new(0)), Arc::default());
    // The inner service answers `Full<Bytes>`, and so does the layer.
    let kept = layer.clone().keep_response_body().layer(inner::<_, Full<Bytes>>(calls.clone(), Arc::clone(&seen)));
    let res: Response<Full<Bytes>> = kept.oneshot(post_json(body)).await.unwrap();
    (full, Run::of(collect(res).await, &calls, &seen))
}

fn json_layer(mode: Mode) -> IdentityVerificationLayer {
    let sources = Sources::new().json(Role::UserId, "/user_id").json(Role::Signature, "/user_hash").body_limit(256);
    IdentityVerificationLayer::new(KeySet::single(Key::hmac(tower_identity::Identifier::UserId, secret())))
        .sources(sources)
        .mode(mode)
}

#[tokio::test]
async fn keep_response_body_answers_every_request_as_the_full_layer_does() {
    let sig = sign::hmac(&secret(), "42");
    let valid = format!(r#"{{"user_id":"42","user_hash":"{sig}","text":"hi"}}"#);
    let forged = format!(r#"{{"user_id":"43","user_hash":"{sig}"}}"#);
    let duplicate = format!(r#"{{"user_id":"42","user_id":"43","user_hash":"{sig}"}}"#);
    let over_limit = format!(r#"{{"user_id":"42","user_hash":"{sig}","pad":"{}"}}"#, "x".repeat(300));
    let cases = [
        ("valid", valid.as_str()),
        ("forged", &forged),
        ("missing", "{}"),
        ("malformed", r#"{"user_id":"#),
        ("duplicate key", &duplicate),
        ("over the limit", &over_limit),
    ];
    for mode in [Mode::Off, Mode::ReportOnly, Mode::Optional, Mode::Required] {
        let layer = json_layer(mode);
        for (name, body) in cases {
            let (full, kept) = both(&layer, body).await;
            assert_eq!(full, kept, "{mode:?}, {name}");
            if mode == Mode::Required {
                let expected = match name {
                    "valid" => StatusCode::OK,
                    "over the limit" => StatusCode::PAYLOAD_TOO_LARGE,
                    _ => StatusCode::UNAUTHORIZED,
                };
                assert_eq!(kept.status, expected, "{name}");
                assert_eq!(kept.calls, usize::from(name == "valid"), "{name}: only a verified request is served");
            }
        }
    }
    // The verified request reached the inner service with its identity and
    // its body byte for byte; a body over the limit is refused, or handed on
    // whole in report-only.
    let (_, kept) = both(&json_layer(Mode::Required), &valid).await;
    assert_eq!(kept.seen, Some((Some("42".to_owned()), Bytes::from(valid.clone()))));
    let (_, kept) = both(&json_layer(Mode::ReportOnly), &over_limit).await;
    assert_eq!((kept.status, kept.seen), (StatusCode::OK, Some((None, Bytes::from(over_limit)))));
}

#[tokio::test]
async fn keep_response_body_in_an_axum_router() {
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let echo = move |identity: VerifiedIdentity, body: Bytes| {
        counted.fetch_add(1, Ordering::SeqCst);
        async move { format!("{}:{}", identity.id(), body.len()) }
    };
    let layer = json_layer(Mode::Required).keep_response_body();
    let server = Server::axum(Router::new().route("/chat", post(echo)).route_layer(layer), calls.clone()).await;
    let send = |body: String| {
        let req = Request::post(format!("http://{}/chat", server.addr)).header("content-type", "application/json");
        fetch(req.body(Full::new(Bytes::from(body))).unwrap())
    };

    let body = format!(r#"{{"user_id":"7","user_hash":"{}"}}"#, sign::hmac(&secret(), "7"));
    let res = send(body.clone()).await;
    assert_eq!((res.status, res.body), (StatusCode::OK, format!("7:{}", body.len())));

    let forged = format!(r#"{{"user_id":"7","user_hash":"{}"}}"#, sign::hmac(&secret(), "8"));
    let res = send(forged).await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);
    assert_eq!(res.code(), "signature_invalid");
    assert_eq!(res.headers["content-type"], "application/json");
    assert!(!res.text().contains(SECRET));
    assert_eq!(calls.load(Ordering::SeqCst), 1, "only the verified request reached a handler");
}
