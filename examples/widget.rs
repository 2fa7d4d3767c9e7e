//! A chat widget on a customer's site calling a vendor's API on another
//! origin, the way every widget this crate serves does.
//!
//! ```sh
//! cargo run --example widget    # then open http://127.0.0.1:3000
//! ```
//!
//! - The **customer site** (`http://127.0.0.1:3000`, set `SITE_ADDR` to
//!   change) serves one page for its logged-in demo user. Its backend signs
//!   the user's id with the secret the vendor gave it
//!   (`user_hash = HMAC-SHA256(secret, user_id)`) and puts the id and the hash
//!   into the page, as a vendor's "identity verification" guide asks.
//! - The **vendor API** (`http://127.0.0.1:3001`, set `API_ADDR` to change)
//!   takes chat messages at `POST /chat` as JSON
//!   (`{"user_id", "user_hash", "user_metadata", "message"}`) behind
//!   `CorsLayer` (only the site's origin may call it) and
//!   `IdentityVerificationLayer` in required mode.
//!
//! The page sends a message as the logged-in user (the API answers with the
//! verified id), and its "Impersonate" button does what an attacker in the
//! browser console would: claim another user id with the same hash. The API
//! answers 401 `signature_invalid`, and the CORS headers let the page read
//! and show it. Open `http://127.0.0.1:3000/#auto` to run both at once.
//!
//! `tests/it/browser.rs` drives this example in headless Chromium.
#![allow(dead_code)] // `main` is unused when tests/it/browser.rs includes this file.

use axum::response::Html;
use axum::routing::{get, post};
use axum::{Json, Router};
use http::{HeaderValue, Method};
use serde::Deserialize;
use serde_json::{Value, json};
use tower_http::cors::CorsLayer;
use tower_identity::{
    Identifier, IdentityVerificationLayer, Key, KeySet, Role, Secret, Sources, VerifiedIdentity, cors, sign,
};

/// The secret the vendor shows the customer once. Only the customer's
/// backend and the vendor know it; in production it lives in a secret store.
pub const SECRET: &str = "widget-demo-secret-do-not-use-in-production";

/// The customer site's logged-in demo user.
pub const USER_ID: &str = "user-42";
/// Who the impersonation button claims to be.
pub const VICTIM_ID: &str = "user-1";

const PAGE: &str = include_str!("widget/index.html");

fn secret() -> Secret {
    Secret::text(SECRET).expect("a valid demo secret")
}

/// The customer site: one page, with the user's signed identity rendered in
/// by the backend. `api` is the vendor API's origin.
pub fn site(api: &str) -> Router {
    let user_hash = sign::hmac(&secret(), USER_ID);
    let identify = json!({
        "api": api,
        "user_id": USER_ID,
        "user_hash": user_hash,
        "user_metadata": { "name": "Alice", "plan": "pro" },
        "victim_id": VICTIM_ID,
    });
    let page = PAGE.replace("__IDENTIFY__", &identify.to_string());
    Router::new().route("/", get(move || async move { Html(page) }))
}

/// What the widget posts (the identity fields are read by the layer; the
/// handler parses the whole body as usual).
#[derive(Deserialize)]
struct Message {
    message: String,
}

async fn chat(identity: VerifiedIdentity, Json(msg): Json<Message>) -> Json<Value> {
    // Unsigned metadata is what the browser says, not what the signature proves.
    let metadata: Value = identity.unsigned().metadata().and_then(|m| serde_json::from_str(m).ok()).unwrap_or_default();
    let name = metadata["name"].as_str().unwrap_or("there");
    Json(json!({
        "verified_user_id": identity.id(),
        "reply": format!("Hi {name}! You are verified as {}. You said: {}", identity.id(), msg.message),
    }))
}

/// The vendor API: `CorsLayer` outside (only `site_origin` may call it),
/// the identity layer inside, both built from the same sources.
pub fn api(site_origin: &str) -> Router {
    let sources = Sources::empty()
        .json(Role::UserId, "/user_id")
        .json(Role::Signature, "/user_hash")
        .json(Role::Metadata, "/user_metadata");
    let cors_layer = CorsLayer::new()
        .allow_origin(HeaderValue::from_str(site_origin).expect("an origin is a valid header value"))
        .allow_methods([Method::POST])
        .allow_headers(sources.cors_allow_headers())
        .expose_headers(cors::EXPOSE_HEADERS);
    let keys = KeySet::single(Key::hmac(Identifier::UserId, secret()));
    Router::new()
        .route("/chat", post(chat))
        .route_layer(IdentityVerificationLayer::new(keys).sources(sources))
        .layer(cors_layer)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let site_addr = std::env::var("SITE_ADDR").unwrap_or_else(|_| "127.0.0.1:3000".into());
    let api_addr = std::env::var("API_ADDR").unwrap_or_else(|_| "127.0.0.1:3001".into());
    let site_listener = tokio::net::TcpListener::bind(&site_addr).await?;
    let api_listener = tokio::net::TcpListener::bind(&api_addr).await?;
    let (site_origin, api_origin) =
        (format!("http://{}", site_listener.local_addr()?), format!("http://{}", api_listener.local_addr()?));
    println!("customer site: {site_origin}  (open it in a browser; {site_origin}/#auto runs both flows)");
    println!("vendor API:    {api_origin}/chat  (CORS: only {site_origin})");
    let site = axum::serve(site_listener, site(&api_origin));
    let api = axum::serve(api_listener, api(&site_origin));
    tokio::try_join!(async { site.await }, async { api.await })?;
    Ok(())
}
