//! axum: per-route enforcement modes, two tenants, and an identity sent in a
//! JSON body.
//!
//! ```sh
//! cargo run --example axum          # listens on 127.0.0.1:3001 (set ADDR to change)
//! ```
//!
//! It prints curl commands with valid signatures for every route:
//!
//! - `GET /me`: `VerifiedIdentity` extractor, `Mode::Required` (401 without a
//!   valid signature);
//! - `GET /greeting`: `Option<VerifiedIdentity>`, `Mode::Optional` (anonymous
//!   visitors welcome, forged signatures still 401);
//! - `POST /chat`: the identity travels inside the JSON body
//!   (`{"user_id", "user_hash", "user_metadata", …}`), and the handler still
//!   parses the whole body with `axum::Json<T>`;
//! - `GET /health`: no layer at all.
//!
//! A `CorsLayer` around all routes lets browser widgets on any origin call
//! them (preflights never reach the identity layers).
//!
//! Keys come from a `TenantMap`: the request names its tenant in the
//! `x-app-id` header, and each tenant has its own secret and scheme.
//!
//! `tests/it/examples.rs` drives this app over 127.0.0.1.
#![allow(dead_code)] // `main` is unused when tests/it/examples.rs includes this file.

use axum::routing::{get, post};
use axum::{Json, Router};
use http::{HeaderName, Method};
use serde::Deserialize;
use serde_json::{Value, json};
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_identity::{
    Identifier, IdentityVerificationLayer, Key, KeySet, Mode, Role, Secret, Sources, TenantMap, VerifiedIdentity, cors,
    sign,
};

/// Tenant "app_acme" signs user ids with a text secret.
pub const ACME: &str = "app_acme";
/// Acme's demo secret. In production secrets come from your secret store.
pub const ACME_SECRET: &str = "acme-demo-secret-do-not-use-in-production";
/// Tenant "app_globex" signs emails with a hex secret.
pub const GLOBEX: &str = "app_globex";
/// Globex's demo secret (hex, as its vendor dashboard shows it).
pub const GLOBEX_SECRET_HEX: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

/// What Acme's backend computes for a user and hands to the browser.
pub fn acme_signature(user_id: &str) -> String {
    sign::hmac(&Secret::text(ACME_SECRET).expect("valid secret"), user_id)
}

/// What Globex's backend computes for an email.
pub fn globex_signature(email: &str) -> String {
    sign::hmac(&Secret::hex(GLOBEX_SECRET_HEX).expect("valid hex secret"), email)
}

fn tenants() -> TenantMap {
    let acme = Key::hmac(Identifier::UserId, Secret::text(ACME_SECRET).expect("valid secret")).with_id("acme-2026");
    let globex = Key::hmac(Identifier::Email, Secret::hex(GLOBEX_SECRET_HEX).expect("valid hex secret"));
    TenantMap::from_tenants([(ACME, KeySet::single(acme)), (GLOBEX, KeySet::single(globex))])
        .expect("no secret serves two schemes")
}

/// The app. One layer value, cloned per route group with its own mode or sources.
pub fn app() -> Router {
    let headers = Sources::new().header(Role::Tenant, HeaderName::from_static("x-app-id"));
    let body = headers
        .clone()
        .json(Role::UserId, "/user_id")
        .json(Role::Signature, "/user_hash")
        .json(Role::Metadata, "/user_metadata");
    let layer = IdentityVerificationLayer::new(tenants()).sources(headers);
    // Widgets call from the customer's page, another origin: CORS outside
    // every identity layer answers their preflights and lets them read every
    // answer, 401s included. Any origin here (a demo); list yours in production.
    let cors_layer = CorsLayer::new()
        .allow_origin(AllowOrigin::any())
        .allow_methods([Method::GET, Method::POST])
        .allow_headers(body.cors_allow_headers())
        .expose_headers(cors::EXPOSE_HEADERS);

    Router::new()
        // `route_layer` only wraps the routes added before it.
        .route("/me", get(me))
        .route_layer(layer.clone()) // Mode::Required is the default
        .merge(Router::new().route("/greeting", get(greeting)).route_layer(layer.clone().mode(Mode::Optional)))
        .merge(Router::new().route("/chat", post(chat)).route_layer(layer.sources(body)))
        .route("/health", get(|| async { "ok" }))
        .layer(cors_layer)
}

/// Runs only for verified requests.
async fn me(identity: VerifiedIdentity) -> Json<Value> {
    Json(json!({
        "id": identity.id(),
        "subject": identity.subject().as_str(),
        "tenant": identity.tenant(),
        "key_id": identity.key_id(),
    }))
}

/// Serves anonymous and verified visitors alike.
async fn greeting(identity: Option<VerifiedIdentity>) -> String {
    match identity {
        Some(identity) => format!("Hello, {}!\n", identity.id()),
        None => "Hello, stranger!\n".to_owned(),
    }
}

/// The rest of the chat message; serde ignores the identity fields.
#[derive(Deserialize)]
struct ChatMessage {
    text: String,
}

/// The layer read the identity from the body; `Json<T>` still sees every byte.
async fn chat(identity: VerifiedIdentity, Json(message): Json<ChatMessage>) -> Json<Value> {
    // Unsigned metadata is what the browser claims, not what the signature proves.
    let metadata: Value = identity.unsigned().metadata().and_then(|m| serde_json::from_str(m).ok()).unwrap_or_default();
    Json(json!({ "from": identity.id(), "text": message.text, "metadata": metadata }))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::var("ADDR").unwrap_or_else(|_| "127.0.0.1:3001".into());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    let url = format!("http://{}", listener.local_addr()?);

    let acme = acme_signature("user-42");
    let globex = globex_signature("jane@globex.example");
    let forged = acme_signature("user-41");
    println!("listening on {url}\n");
    println!("# verified (200), tenant acme, HMAC over the user id:");
    println!("curl -i -H 'x-app-id: {ACME}' -H 'x-user-id: user-42' -H 'x-identity-signature: {acme}' {url}/me\n");
    println!("# verified (200), tenant globex, HMAC over the email:");
    println!(
        "curl -i -H 'x-app-id: {GLOBEX}' -H 'x-user-email: jane@globex.example' -H 'x-identity-signature: {globex}' {url}/me\n"
    );
    println!("# forged: user 41's signature claiming user 42 (401):");
    println!("curl -i -H 'x-app-id: {ACME}' -H 'x-user-id: user-42' -H 'x-identity-signature: {forged}' {url}/me\n");
    println!("# optional mode: anonymous (200), then verified (200):");
    println!("curl -i {url}/greeting");
    println!(
        "curl -i -H 'x-app-id: {ACME}' -H 'x-user-id: user-42' -H 'x-identity-signature: {acme}' {url}/greeting\n"
    );
    println!("# identity in the JSON body (200):");
    println!(
        "curl -i -H 'x-app-id: {ACME}' -H 'content-type: application/json' \\\n  -d '{{\"user_id\":\"user-42\",\"user_hash\":\"{acme}\",\"user_metadata\":{{\"plan\":\"pro\"}},\"text\":\"hi\"}}' {url}/chat"
    );

    axum::serve(listener, app()).await?;
    Ok(())
}
