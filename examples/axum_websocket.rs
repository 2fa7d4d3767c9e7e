//! axum: a WebSocket chat channel behind the identity layer, closed by the
//! handler when the credential stops being valid.
//!
//! ```sh
//! cargo run --example axum_websocket   # listens on 127.0.0.1:3002 (set ADDR to change)
//! ```
//!
//! A browser cannot set headers on `new WebSocket(url, protocols)`, so the
//! credential travels in the query (`/ws?token=<jwt>`) or as a
//! `Sec-WebSocket-Protocol` entry (`identity.token.<jwt>`, beside the bare
//! `identity` protocol, which the handler selects). The layer verifies the
//! upgrade request like any other: a forged or missing token gets 401 and the
//! handler never runs. The handler echoes text messages prefixed with the
//! proven user id, and closes the socket with code 1008 (policy violation)
//! at [`VerifiedIdentity::valid_until`]: a socket never outlives its token.
//!
//! `tests/websocket.rs` drives this app over 127.0.0.1.
#![allow(dead_code)] // `main` is unused when tests/websocket.rs includes this file.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade, close_code};
use axum::response::Response;
use axum::routing::get;
use tower_identity::{IdentityVerificationLayer, Key, KeySet, Secret, Sources, VerifiedIdentity};

/// The demo JWT secret. In production it comes from your secret store.
pub const SECRET: &str = "websocket-demo-secret-do-not-use-in-production";

/// The app: `GET /ws` upgrades to a WebSocket for a verified user.
pub fn app(keys: KeySet) -> Router {
    let sources = Sources::new().query_defaults().protocol_defaults();
    Router::new().route("/ws", get(upgrade)).layer(IdentityVerificationLayer::new(keys).sources(sources))
}

/// The demo key set: one HS256 key.
pub fn keys() -> KeySet {
    KeySet::single(Key::jwt(Secret::text(SECRET).expect("a valid secret")))
}

async fn upgrade(identity: VerifiedIdentity, ws: WebSocketUpgrade) -> Response {
    // Browsers fail a handshake that offered protocols and got none back: a
    // client that sent only its credential entry also offers `identity`.
    ws.protocols([Sources::PROTOCOL_MARKER]).on_upgrade(move |socket| chat(socket, identity))
}

/// How long until `unix_secs`, from now.
fn until(unix_secs: u64) -> Duration {
    (UNIX_EPOCH + Duration::from_secs(unix_secs)).duration_since(SystemTime::now()).unwrap_or_default()
}

async fn chat(mut socket: WebSocket, identity: VerifiedIdentity) {
    let expiry = async {
        match identity.valid_until() {
            Some(at) => tokio::time::sleep(until(at)).await,
            // A credential without time bounds: only key removal ends it, and
            // this app's keys never change while it runs.
            None => std::future::pending().await,
        }
    };
    let mut expiry = std::pin::pin!(expiry);
    loop {
        tokio::select! {
            message = socket.recv() => match message {
                Some(Ok(Message::Text(text))) => {
                    let reply = format!("{}: {}", identity.id(), text.as_str());
                    if socket.send(Message::Text(reply.into())).await.is_err() {
                        return;
                    }
                }
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return,
                Some(Ok(_)) => {}
            },
            () = &mut expiry => {
                let frame = CloseFrame { code: close_code::POLICY, reason: "credential expired".into() };
                let _ = socket.send(Message::Close(Some(frame))).await;
                return;
            }
        }
    }
}

/// A token for `user_id`, valid for `lifetime` seconds from now (the
/// signing side: your backend mints it and hands it to the widget).
pub fn token(user_id: &str, lifetime: u64) -> String {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    let claims = serde_json::json!({ "sub": user_id, "iat": now, "exp": now + lifetime });
    let claims = claims.as_object().expect("an object");
    tower_identity::sign::jwt(&Secret::text(SECRET).expect("a valid secret"), None, claims)
}

#[tokio::main]
async fn main() {
    let addr = std::env::var("ADDR").unwrap_or_else(|_| "127.0.0.1:3002".into());
    let listener = tokio::net::TcpListener::bind(&addr).await.expect("bind");
    let token = token("user-42", 60);
    println!("listening on ws://{addr}/ws");
    println!("try: websocat 'ws://{addr}/ws?token={token}'   (the socket closes with 1008 in 60 s)");
    axum::serve(listener, app(keys())).await.expect("serve");
}
