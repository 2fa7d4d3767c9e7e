//! Real-time channels in the library: the layer in front of an axum
//! `WebSocketUpgrade` handler, credentials from the query and from
//! `Sec-WebSocket-Protocol`, `VerifiedIdentity::valid_until`, and
//! `examples/axum_websocket.rs` driven by a real WebSocket client over 127.0.0.1.

#[path = "../../examples/axum_websocket.rs"]
mod ws_example;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::support::Server;
use crate::support::ws::*;
use axum::extract::ws::WebSocketUpgrade;
use axum::routing::get;
use futures_util::StreamExt;
use tokio_tungstenite::tungstenite::Message;
use tower_identity::claim::Claim;
use tower_identity::verify::{VerifyOptions, verify};
use tower_identity::{Identifier, IdentityVerificationLayer, Key, KeySet, Secret, Sources, VerifiedIdentity, sign};

async fn serve(app: axum::Router) -> Server {
    Server::axum(app, Arc::default()).await
}

#[tokio::test]
async fn the_layer_guards_a_websocket_upgrade_handler() {
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = calls.clone();
    let handler = move |identity: VerifiedIdentity, ws: WebSocketUpgrade| {
        seen.fetch_add(1, Ordering::SeqCst);
        async move {
            ws.on_upgrade(move |mut socket| async move {
                let hello = format!("hello {}", identity.id());
                let _ = socket.send(axum::extract::ws::Message::Text(hello.into())).await;
            })
        }
    };
    let keys = KeySet::single(Key::hmac(Identifier::UserId, Secret::text(ws_example::SECRET).unwrap()));
    let layer = IdentityVerificationLayer::new(keys).sources(Sources::new().query_defaults().protocol_defaults());
    let server = serve(axum::Router::new().route("/ws", get(handler)).layer(layer)).await;
    let sig = sign::hmac(&Secret::text(ws_example::SECRET).unwrap(), "u7");
    let base = format!("ws://{}/ws", server.addr);

    // The upgrade extension passes through the layer: the handler upgrades.
    let (mut ws, _) = connect(&format!("{base}?user_id=u7&signature={sig}"), None).await.unwrap();
    match ws.next().await {
        Some(Ok(Message::Text(t))) => assert_eq!(t.as_str(), "hello u7"),
        other => panic!("expected the greeting, got {other:?}"),
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);

    // Forged, missing, or offered twice: 401 before any upgrade, handler never called.
    let forged = sign::hmac(&Secret::text("another-secret-0123456789").unwrap(), "u7");
    assert_eq!(status(connect(&format!("{base}?user_id=u7&signature={forged}"), None).await), 401);
    assert_eq!(status(connect(&format!("{base}?user_id=u7"), None).await), 401);
    let twice = format!("identity.signature.{sig}, identity.signature.{forged}");
    assert_eq!(status(connect(&format!("{base}?user_id=u7"), Some(&twice)).await), 401);
    assert_eq!(calls.load(Ordering::SeqCst), 1, "no rejected upgrade reached the handler");
}

#[tokio::test]
async fn the_example_echoes_for_a_token_in_the_query_or_the_protocol() {
    let server = serve(ws_example::app(ws_example::keys())).await;
    let base = format!("ws://{}/ws", server.addr);
    let token = ws_example::token("user-42", 60);

    let (mut ws, chosen) = connect(&format!("{base}?token={token}"), None).await.unwrap();
    assert_eq!(chosen, None);
    assert_eq!(echo(&mut ws, "hi").await, "user-42: hi");
    ws.close(None).await.unwrap();

    // As a protocol entry beside the bare marker: the handler selects the
    // marker, and never sees the credential as a protocol.
    let offered = format!("identity.token.{token}, {}", Sources::PROTOCOL_MARKER);
    let (mut ws, chosen) = connect(&base, Some(&offered)).await.unwrap();
    assert_eq!(chosen.as_deref(), Some(Sources::PROTOCOL_MARKER));
    assert_eq!(echo(&mut ws, "there").await, "user-42: there");

    let forged = token.replace('.', "x.");
    assert_eq!(status(connect(&format!("{base}?token={forged}"), None).await), 401);
    assert_eq!(status(connect(&base, Some(Sources::PROTOCOL_MARKER)).await), 401);
}

#[tokio::test]
async fn the_example_closes_the_socket_when_the_token_expires() {
    let server = serve(ws_example::app(ws_example::keys())).await;
    let exp = unix_now() + 3;
    let token = ws_example::token("user-9", exp - unix_now());
    let (mut ws, _) = connect(&format!("ws://{}/ws?token={token}", server.addr), None).await.unwrap();
    assert_eq!(echo(&mut ws, "before").await, "user-9: before");
    assert_closed_1008(&mut ws, exp, exp + 1).await;
}

/// What the inner service received: its target and its `Sec-WebSocket-Protocol`.
async fn passed_on(strip: bool, uri: &str, protocols: &str) -> (String, Option<String>) {
    use tower::ServiceExt;
    let seen = Arc::new(std::sync::Mutex::new(None));
    let rec = seen.clone();
    let inner = tower::service_fn(move |req: http::Request<tower_identity::layer::body::RequestBody<String>>| {
        let protocols = req.headers().get("sec-websocket-protocol").map(|v| v.to_str().unwrap().to_owned());
        *rec.lock().unwrap() = Some((req.uri().to_string(), protocols));
        async { Ok::<_, std::convert::Infallible>(http::Response::new(String::new())) }
    });
    let keys = KeySet::single(Key::hmac(Identifier::UserId, Secret::text(ws_example::SECRET).unwrap()));
    let layer = IdentityVerificationLayer::new(keys)
        .sources(Sources::new().query_defaults().protocol_defaults())
        .strip_credentials(strip);
    let req = http::Request::get(uri).header("sec-websocket-protocol", protocols).body(String::new()).unwrap();
    let res = tower::Layer::layer(&layer, inner).oneshot(req).await.unwrap();
    assert_eq!(res.status(), 200);
    seen.lock().unwrap().take().expect("the inner service was called")
}

#[tokio::test]
async fn credentials_are_removed_from_what_the_handler_sees() {
    let sig = sign::hmac(&Secret::text(ws_example::SECRET).unwrap(), "u1");
    let protocols = format!("chat, identity.signature.{sig}");
    // Protocol entries go in every case; query credentials with strip_credentials.
    let (target, offered) = passed_on(false, "/ws?user_id=u1&room=2", &protocols).await;
    assert_eq!((target.as_str(), offered.as_deref()), ("/ws?user_id=u1&room=2", Some("chat")));
    let (target, offered) = passed_on(true, "/ws?user_id=u1&room=2", &protocols).await;
    assert_eq!((target.as_str(), offered.as_deref()), ("/ws?room=2", Some("chat")));
    let (target, _) = passed_on(true, &format!("/ws?signature={sig}&user_id=u1"), "chat").await;
    assert_eq!(target, "/ws");
}

#[test]
fn valid_until_comes_from_exp_max_age_and_not_after() {
    let secret = || Secret::text(ws_example::SECRET).unwrap();
    let now = 1_800_000_000;
    let opts = VerifyOptions::default();

    // A plain HMAC has no time bound, unless its key has one.
    let sig = sign::hmac(&secret(), "u1");
    let claim = Claim::new().user_id("u1").signature(sig.as_str());
    let plain = KeySet::single(Key::hmac(Identifier::UserId, secret()));
    assert_eq!(verify(&claim, &plain, now, &opts).unwrap().valid_until(), None);
    let bounded = KeySet::single(Key::hmac(Identifier::UserId, secret()).not_after(now + 50));
    assert_eq!(verify(&claim, &bounded, now, &opts).unwrap().valid_until(), Some(now + 50));

    // Timestamped: the first second past max_age, or the key's not_after first.
    let ts = now - 10;
    let claim = Claim::new().user_id("u1").signature(sign::timestamped_hmac(&secret(), "u1", ts).as_str());
    let keys = KeySet::single(Key::timestamped_hmac(Identifier::UserId, secret()));
    let until = ts + opts.get_max_age() + 1;
    let identity = verify(&claim, &keys, now, &opts).unwrap();
    assert_eq!(identity.valid_until(), Some(until));
    assert!(verify(&claim, &keys, until - 1, &opts).is_ok() && verify(&claim, &keys, until, &opts).is_err());
    let keys = KeySet::single(Key::timestamped_hmac(Identifier::UserId, secret()).not_after(now + 5));
    assert_eq!(verify(&claim, &keys, now, &opts).unwrap().valid_until(), Some(now + 5));

    // JWT: exp, or the key's not_after first.
    let claims = serde_json::json!({ "sub": "u1", "iat": now, "exp": now + 300 });
    let token = tower_identity::sign::jwt(&secret(), None, claims.as_object().unwrap());
    let claim = Claim::new().token(token.as_str());
    let keys = KeySet::single(Key::jwt(secret()));
    assert_eq!(verify(&claim, &keys, now, &opts).unwrap().valid_until(), Some(now + 300));
    assert!(verify(&claim, &keys, now + 299, &opts).is_ok() && verify(&claim, &keys, now + 300, &opts).is_err());
    let keys = KeySet::single(Key::jwt(secret()).not_after(now + 100));
    assert_eq!(verify(&claim, &keys, now, &opts).unwrap().valid_until(), Some(now + 100));
}
