//! Quickstart: an axum server on 127.0.0.1:3000 behind `IdentityVerificationLayer`.
//!
//! ```sh
//! cargo run --example quickstart
//! ```
//!
//! It prints two curl commands: one with a valid signature (200) and one
//! with a forged one (401). Set `ADDR` to listen elsewhere.
//!
//! Browsers on other origins may call it too (a chat widget on a customer's
//! page is always cross-origin): a `CorsLayer` outside the identity layer
//! answers the preflights and lets the page read every answer, 401s
//! included. Any origin is allowed by default (a demo); set
//! `ALLOWED_ORIGINS=https://shop.example,http://localhost:8080` to allow only
//! those.
#![allow(dead_code)] // `main` is unused when tests/it/browser.rs includes this file.

use axum::{Router, routing::get};
use http::HeaderValue;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_identity::{
    Identifier, IdentityVerificationLayer, Key, KeySet, Secret, Sources, VerifiedIdentity, cors, sign,
};

/// In production this comes from an environment variable or a secret store,
/// and only your backend knows it.
pub const DEMO_SECRET: &str = "demo-secret-do-not-use-in-production";

async fn me(identity: VerifiedIdentity) -> String {
    format!("Hello, verified user {}!\n", identity.id())
}

/// `CorsLayer` for `allowed_origins` (comma-separated), or for any origin.
pub fn cors_layer(sources: &Sources, allowed_origins: Option<&str>) -> CorsLayer {
    let origins = match allowed_origins {
        Some(list) => AllowOrigin::list(list.split(',').map(str::trim).filter(|o| !o.is_empty()).map(|o| {
            HeaderValue::from_str(o).unwrap_or_else(|_| panic!("ALLOWED_ORIGINS holds an invalid origin: {o:?}"))
        })),
        None => AllowOrigin::any(),
    };
    CorsLayer::new()
        .allow_origin(origins)
        .allow_methods([http::Method::GET])
        // The headers the layer reads, from the same sources: they cannot drift.
        .allow_headers(sources.cors_allow_headers())
        // So a widget can read the challenge of a 401 and the Retry-After of a 503.
        .expose_headers(cors::EXPOSE_HEADERS)
}

/// The app: the identity layer on the route (`route_layer`), CORS around
/// everything (`layer`), so preflights never reach the identity layer.
pub fn app(secret: Secret, allowed_origins: Option<&str>) -> Router {
    let keys = KeySet::single(Key::hmac(Identifier::UserId, secret));
    let sources = Sources::new();
    Router::new()
        .route("/me", get(me))
        .route_layer(IdentityVerificationLayer::new(keys).sources(sources.clone()))
        .layer(cors_layer(&sources, allowed_origins))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let secret = Secret::text(DEMO_SECRET)?;
    let allowed_origins = std::env::var("ALLOWED_ORIGINS").ok();
    let app = app(secret.clone(), allowed_origins.as_deref());

    let addr = std::env::var("ADDR").unwrap_or_else(|_| "127.0.0.1:3000".into());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    let addr = listener.local_addr()?;

    // What the customer's backend computes and hands to the browser:
    let valid = sign::hmac(&secret, "user-42");
    // What an attacker tries: user 41's real signature, claiming to be user 42.
    let forged = sign::hmac(&secret, "user-41");

    println!("listening on http://{addr}");
    match &allowed_origins {
        Some(list) => println!("CORS: browsers on these origins may call it: {list}"),
        None => println!("CORS: browsers on ANY origin may call it (a demo; set ALLOWED_ORIGINS to restrict)"),
    }
    println!();
    println!("# valid signature (200):");
    println!("curl -i -H 'x-user-id: user-42' -H 'x-identity-signature: {valid}' http://{addr}/me");
    println!();
    println!("# forged signature (401):");
    println!("curl -i -H 'x-user-id: user-42' -H 'x-identity-signature: {forged}' http://{addr}/me");

    axum::serve(listener, app).await?;
    Ok(())
}
