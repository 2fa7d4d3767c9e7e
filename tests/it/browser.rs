//! A real browser (headless Chromium) calling across origins: a page served
//! from one 127.0.0.1 origin fetches, on another, an axum app with
//! `CorsLayer` + `IdentityVerificationLayer`, the quickstart example, and the
//! widget example (and, with the `proxy` feature, `identity-proxy` with
//! `[cors]`). The page writes what it could read into its DOM, which
//! Chromium prints (`--dump-dom`).
//!
//! When `CI` is set and Chromium cannot start, these tests fail; otherwise
//! they skip with a printed reason.

#[path = "../../examples/quickstart.rs"]
mod quickstart_example;
#[path = "../../examples/widget.rs"]
mod widget_example;

use std::sync::{Arc, Mutex};

use crate::support::chromium::{Chromium, text_of};
use crate::support::page::*;
use axum::Router;
use axum::routing::{get, post};
use http::{HeaderValue, Method};
use serde_json::json;
use tower::util::MapRequestLayer;
use tower_http::cors::CorsLayer;
use tower_identity::{
    Identifier, IdentityVerificationLayer, Key, KeySet, Role, Secret, Sources, VerifiedIdentity, cors, sign,
};

const SECRET: &str = "browser-test-secret-0123456789";

/// The requests (`METHOD path`) a layer saw; cloned into a `MapRequestLayer`.
#[derive(Clone, Default)]
pub struct Seen(Arc<Mutex<Vec<String>>>);

impl Seen {
    fn layer<B>(&self) -> MapRequestLayer<impl Fn(http::Request<B>) -> http::Request<B> + Clone + use<B>> {
        let seen = self.clone();
        MapRequestLayer::new(move |req: http::Request<B>| {
            seen.0.lock().unwrap().push(format!("{} {}", req.method(), req.uri().path()));
            req
        })
    }

    pub fn take(&self) -> Vec<String> {
        std::mem::take(&mut self.0.lock().unwrap())
    }
}

/// The app under test: `CorsLayer` allowing `site` outside, the identity
/// layer inside (headers, or the JSON body on `/chat`), and `inner`
/// counting what got past it and `outer` what arrived at all.
fn api(site: &str, inner: &Seen, outer: &Seen) -> Router {
    let sources = Sources::new()
        .json(Role::UserId, "/user_id")
        .json(Role::Signature, "/user_hash")
        .json(Role::Metadata, "/user_metadata");
    let cors_layer = CorsLayer::new()
        .allow_origin(HeaderValue::from_str(site).unwrap())
        .allow_methods([Method::GET, Method::POST])
        .allow_headers(sources.cors_allow_headers())
        .expose_headers(cors::EXPOSE_HEADERS);
    let keys = KeySet::single(Key::hmac(Identifier::UserId, Secret::text(SECRET).unwrap()));
    Router::new()
        .route("/me", get(|id: VerifiedIdentity| async move { format!("hello {}", id.id()) }))
        .route("/chat", post(|id: VerifiedIdentity| async move { format!("chat with {}", id.id()) }))
        .route_layer(inner.layer())
        .route_layer(IdentityVerificationLayer::new(keys).sources(sources))
        .layer(cors_layer)
        .layer(outer.layer())
}

#[tokio::test]
async fn axum_app_behind_cors_layer() {
    let Some(browser) = Chromium::require() else { return };
    let secret = Secret::text(SECRET).unwrap();
    let (valid, forged) = (sign::hmac(&secret, "42"), sign::hmac(&secret, "41"));
    let (api_listener, api_origin) = bind().await;
    let cases = identity_cases(&api_origin, "", &valid, &forged);
    let (_site, site) = runner_site(&cases).await;
    let (_stranger, stranger) = runner_site(&cases).await;
    let (inner, outer) = (Seen::default(), Seen::default());
    let _api = serve(api_listener, api(&site, &inner, &outer));

    let results = run_page(&browser, &site).await;
    assert_read(&results, "valid", 200, None);
    assert_eq!(results["valid"]["body"], "hello 42");
    assert_read(&results, "forged", 401, Some("signature_invalid"));
    assert_read(&results, "none", 401, Some("credential_missing"));
    assert_read(&results, "json", 200, None);
    assert_eq!(results["json"]["body"], "chat with 42");
    assert_read(&results, "json_forged", 401, Some("signature_invalid"));
    assert_eq!(inner.take(), ["GET /me", "POST /chat"], "only the two valid requests got past the layer");
    let arrived = outer.take();
    assert!(arrived.contains(&"OPTIONS /me".to_owned()), "the browser sent preflights: {arrived:?}");

    // The same page on an origin that is not allowed reads nothing.
    let results = run_page(&browser, &stranger).await;
    for name in ["valid", "forged", "none", "json", "json_forged"] {
        assert_blocked(&results, name);
    }
    assert_eq!(inner.take(), Vec::<String>::new(), "nothing from the stranger got past the layer");
}

#[tokio::test]
async fn quickstart_serves_browsers() {
    let Some(browser) = Chromium::require() else { return };
    let secret = Secret::text(quickstart_example::DEMO_SECRET).unwrap();
    let (valid, forged) = (sign::hmac(&secret, "user-42"), sign::hmac(&secret, "user-41"));
    let (listener, api) = bind().await;
    let me = format!("{api}/me");
    let cases = json!([
        case("valid", "GET", &me, json!({ "x-user-id": "user-42", "x-identity-signature": valid }), None),
        case("forged", "GET", &me, json!({ "x-user-id": "user-42", "x-identity-signature": forged }), None),
    ]);
    let (_site, site) = runner_site(&cases).await;
    // Any origin by default.
    let server = serve(listener, quickstart_example::app(secret.clone(), None));
    let results = run_page(&browser, &site).await;
    assert_read(&results, "valid", 200, None);
    assert_eq!(results["valid"]["body"], "Hello, verified user user-42!\n");
    assert_read(&results, "forged", 401, Some("signature_invalid"));
    drop(server);

    // ALLOWED_ORIGINS: the listed origin reads the answers, another does not.
    let (listener, api) = bind().await;
    let me = format!("{api}/me");
    let cases =
        json!([case("valid", "GET", &me, json!({ "x-user-id": "user-42", "x-identity-signature": valid }), None)]);
    let (_site, site) = runner_site(&cases).await;
    let (_other, other) = runner_site(&cases).await;
    let _server = serve(listener, quickstart_example::app(secret, Some(&format!("https://shop.example, {site}"))));
    assert_read(&run_page(&browser, &site).await, "valid", 200, None);
    assert_blocked(&run_page(&browser, &other).await, "valid");
}

#[tokio::test]
async fn widget_example_tells_the_story() {
    let Some(browser) = Chromium::require() else { return };
    let (site_listener, site) = bind().await;
    let (api_listener, api) = bind().await;
    let _site = serve(site_listener, widget_example::site(&api));
    let _api = serve(api_listener, widget_example::api(&site));

    let dom = browser.dump_dom(&format!("{site}/#auto")).await;
    let reply = text_of(&dom, "reply");
    assert!(reply.starts_with("Vendor (200): Hi Alice! You are verified as user-42."), "{reply}");
    let attack = text_of(&dom, "attack");
    assert!(attack.starts_with("Refused: 401 signature_invalid"), "{attack}");

    let png = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("widget.png");
    browser.screenshot(&format!("{site}/#auto"), &png, "1200,700").await;
    eprintln!("widget screenshot: {}", png.display());
}
