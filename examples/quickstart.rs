//! Quickstart: an axum server on 127.0.0.1:3000 behind `IdentityVerificationLayer`.
//!
//! ```sh
//! cargo run --example quickstart
//! ```
//!
//! It prints two curl commands: one with a valid signature (200) and one
//! with a forged one (401). Set `ADDR` to listen elsewhere.

use axum::{Router, routing::get};
use tower_identity::{Identifier, IdentityVerificationLayer, Key, KeySet, Secret, VerifiedIdentity, sign};

/// In production this comes from an environment variable or a secret store,
/// and only your backend knows it.
const DEMO_SECRET: &str = "demo-secret-do-not-use-in-production";

async fn me(identity: VerifiedIdentity) -> String {
    format!("Hello, verified user {}!\n", identity.id())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let secret = Secret::text(DEMO_SECRET)?;
    let keys = KeySet::single(Key::hmac(Identifier::UserId, secret.clone()));

    let app = Router::new().route("/me", get(me)).route_layer(IdentityVerificationLayer::new(keys));

    let addr = std::env::var("ADDR").unwrap_or_else(|_| "127.0.0.1:3000".into());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    let addr = listener.local_addr()?;

    // What the customer's backend computes and hands to the browser:
    let valid = sign::hmac(&secret, "user-42");
    // What an attacker tries: user 41's real signature, claiming to be user 42.
    let forged = sign::hmac(&secret, "user-41");

    println!("listening on http://{addr}");
    println!();
    println!("# valid signature (200):");
    println!("curl -i -H 'x-user-id: user-42' -H 'x-identity-signature: {valid}' http://{addr}/me");
    println!();
    println!("# forged signature (401):");
    println!("curl -i -H 'x-user-id: user-42' -H 'x-identity-signature: {forged}' http://{addr}/me");

    axum::serve(listener, app).await?;
    Ok(())
}
