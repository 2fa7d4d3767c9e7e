//! Hardening against unauthenticated input: tenant names capped and checked
//! at extraction, identifiers with edge whitespace refused from every source,
//! and `strip_credentials` leaving the upstream nothing to replay.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{HeaderName, Method, Request};
use http_body_util::{BodyExt, Full};
use tower::ServiceExt;
use tower_identity::Mode;
use tower_identity::claim::Role;
use tower_identity::extract::Sources;
use tower_identity::key::{Identifier, Key, KeySet};
use tower_identity::layer::IdentityVerificationLayer;
use tower_identity::layer::body::RequestBody;
use tower_identity::provider::{LookupResult, TenantPolicy};
use tower_identity::secret::Secret;
use tower_identity::sign;

use crate::support::*;

const MODES: [Mode; 4] = [Mode::Off, Mode::ReportOnly, Mode::Optional, Mode::Required];
const FORM: &str = "application/x-www-form-urlencoded";

/// Every source a tenant can come from.
fn tenant_sources() -> Sources {
    Sources::new()
        .header(Role::Tenant, HeaderName::from_static("x-app-id"))
        .query(Role::Tenant, "app")
        .form(Role::Tenant, "app")
        .json(Role::Tenant, "/app")
}

/// A POST with a body of `content_type`, signed for "u1" in headers.
fn post(content_type: &str, body: String, headers: &[(&str, &str)]) -> Request<Full<Bytes>> {
    let mut r = get("/", headers);
    r.headers_mut().insert("content-type", content_type.parse().unwrap());
    *r.method_mut() = Method::POST;
    *r.body_mut() = Full::new(Bytes::from(body));
    r
}

/// The same tenant value sent from each source.
fn from_every_source(tenant: &str) -> Vec<(&'static str, Request<Full<Bytes>>)> {
    let [(user, id), (signature, sig)] = signed_headers(SECRET, "u1");
    let signed = [(user, id.as_str()), (signature, sig.as_str())];
    let json = serde_json::json!({ "app": tenant }).to_string();
    let encoded: String = url_encode(tenant);
    let mut cases = vec![
        ("query", get(&format!("/?app={encoded}"), &signed)),
        ("form", post(FORM, format!("app={encoded}"), &signed)),
        ("json", post("application/json", json, &signed)),
    ];
    // Control characters cannot be sent in a header at all.
    if let Ok(value) = http::HeaderValue::from_bytes(tenant.as_bytes()) {
        let mut header = get("/", &signed);
        header.headers_mut().insert("x-app-id", value);
        cases.push(("header", header));
    }
    cases
}

fn url_encode(s: &str) -> String {
    s.bytes().map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") }).collect()
}

/// A provider that knows "acme" and counts its lookups.
fn counting_provider(mode: Mode) -> (impl Fn(Option<&str>) -> LookupResult + Send + Sync + 'static, Arc<AtomicUsize>) {
    let lookups = Arc::new(AtomicUsize::new(0));
    let counter = lookups.clone();
    let acme = TenantPolicy::new(KeySet::single(Key::hmac(Identifier::UserId, secret()))).with_mode(mode);
    let provider = move |tenant: Option<&str>| {
        counter.fetch_add(1, Ordering::SeqCst);
        Ok((tenant == Some("acme")).then(|| acme.clone()))
    };
    (provider, lookups)
}

/// Tenant names longer than the identifier cap, or with edge whitespace or
/// control characters, are refused from every source, in every mode, before
/// the provider is asked; the inner service is never called.
#[tokio::test]
async fn long_or_ambiguous_tenant_names_are_refused_before_lookup() {
    let long = "a".repeat(257);
    let bad = [long.as_str(), "acme ", " acme", "acme\u{a0}", "ac\u{1}me"];
    for mode in MODES {
        let (provider, lookups) = counting_provider(mode);
        let layer = IdentityVerificationLayer::new(provider).mode(mode).sources(tenant_sources());
        for tenant in bad {
            for (source, req) in from_every_source(tenant) {
                let (a, rec) = send(&layer, req).await;
                assert_rejected(&a, &rec, 401, "credential_malformed", &[tenant.trim()]);
                assert_eq!(lookups.load(Ordering::SeqCst), 0, "{source} {tenant:?} in {mode:?} was looked up");
            }
        }
        // The cap is exact (a 256-byte name is looked up), and "acme" from every source still verifies.
        for (_, req) in from_every_source(&"a".repeat(256)) {
            send(&layer, req).await;
        }
        assert_eq!(lookups.load(Ordering::SeqCst), 4, "{mode:?}");
        for (source, req) in from_every_source("acme") {
            let (a, rec) = send(&layer, req).await;
            assert_eq!((a.status.as_u16(), rec.calls()), (200, 1), "{source} in {mode:?}: {}", a.body);
        }
    }
}

/// The cap on tenant names is the identifier cap, configurable on the layer.
#[tokio::test]
async fn the_tenant_cap_follows_max_identifier_len() {
    let (provider, lookups) = counting_provider(Mode::Required);
    let layer = IdentityVerificationLayer::new(provider).sources(tenant_sources()).max_identifier_len(4);
    for (_, req) in from_every_source("acmee") {
        let (a, rec) = send(&layer, req).await;
        assert_rejected(&a, &rec, 401, "credential_malformed", &[]);
    }
    assert_eq!(lookups.load(Ordering::SeqCst), 0);
    for (source, req) in from_every_source("acme") {
        let (a, rec) = send(&layer, req).await;
        assert_eq!((a.status.as_u16(), rec.calls()), (200, 1), "{source}: {}", a.body);
    }
}

/// An identifier with leading or trailing whitespace is refused even when
/// its signature is authentic, from every source (headers, query, form, JSON,
/// and the claims of a token): upstream, `"victim "` would read as `victim`.
#[tokio::test]
async fn identifiers_with_edge_whitespace_are_refused_from_every_source() {
    let jwt_secret = Secret::text("hardening-jwt-secret-0123456789").unwrap();
    let keys = KeySet::new([Key::hmac(Identifier::UserId, secret()), Key::jwt(jwt_secret.clone())]).unwrap();
    let sources = Sources::new()
        .query_defaults()
        .form(Role::UserId, "user_id")
        .form(Role::Signature, "signature")
        .json(Role::UserId, "/user_id")
        .json(Role::Signature, "/signature");
    for victim in ["victim ", " victim", "victim\t", "\u{3000}victim", "victim\u{a0}"] {
        let sig = sign::hmac(&secret(), victim);
        let form = format!("user_id={}&signature={sig}", url_encode(victim));
        let json = serde_json::json!({ "user_id": victim, "signature": sig }).to_string();
        let token = sign::jwt_token(&jwt_secret, "app", "v@example.com", None, NOW, 600, [("sub", victim.into())]);
        let mut header = get("/", &[("x-identity-signature", &sig)]);
        header.headers_mut().insert("x-user-id", http::HeaderValue::from_bytes(victim.as_bytes()).unwrap());
        let cases = [
            ("header", header),
            ("query", get(&format!("/?{form}"), &[])),
            ("form", post(FORM, form.clone(), &[])),
            ("json", post("application/json", json, &[])),
            ("token", get("/", &[("x-identity-token", &token)])),
        ];
        for mode in [Mode::Optional, Mode::Required] {
            let layer = IdentityVerificationLayer::new(keys.clone()).mode(mode).clock(|| NOW).sources(sources.clone());
            for (source, req) in &cases {
                let (a, rec) = send(&layer, copy(req)).await;
                assert_rejected(&a, &rec, 401, "credential_malformed", &[victim]);
                println!("{source} {victim:?} {mode:?}: refused");
            }
        }
    }
}

/// A copy of a request with a `Full` body.
fn copy(req: &Request<Full<Bytes>>) -> Request<Full<Bytes>> {
    let mut r = get(&req.uri().to_string(), &[]);
    *r.method_mut() = req.method().clone();
    *r.headers_mut() = req.headers().clone();
    *r.body_mut() = req.body().clone();
    r
}

/// What the upstream received: URI, headers and body bytes.
type Forwarded = Arc<Mutex<Option<(http::Uri, http::HeaderMap, Bytes)>>>;

async fn forward(layer: &IdentityVerificationLayer, req: Request<Full<Bytes>>) -> (u16, Forwarded) {
    let seen: Forwarded = Arc::default();
    let svc = tower::ServiceBuilder::new().layer(layer.clone()).service(tower::service_fn({
        let seen = seen.clone();
        move |req: Request<RequestBody<Full<Bytes>>>| {
            let seen = seen.clone();
            async move {
                let (parts, body) = req.into_parts();
                let bytes = body.collect().await.unwrap().to_bytes();
                *seen.lock().unwrap() = Some((parts.uri, parts.headers, bytes));
                Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(Bytes::new())))
            }
        }
    }));
    let res = svc.oneshot(req).await.unwrap();
    (res.status().as_u16(), seen)
}

/// With `strip_credentials`, the upstream sees neither the credential nor the
/// claimed identifiers: their query parameters are removed (the rest of the
/// query kept as sent, in order) and their headers in every spelling; body
/// fields stay, the body forwarded byte for byte.
#[tokio::test]
async fn strip_credentials_removes_query_parameters_and_every_header_spelling() {
    let sig = sign::hmac(&secret(), "u1");
    let sources = Sources::new().query_defaults().form(Role::UserId, "user_id").form(Role::Signature, "signature");
    for mode in MODES {
        let layer = IdentityVerificationLayer::new(KeySet::single(Key::hmac(Identifier::UserId, secret())))
            .mode(mode)
            .clock(|| NOW)
            .sources(sources.clone())
            .strip_credentials(true)
            .bypass(|req| req.uri.path() == "/healthz");
        // A verified request, and a bypassed one carrying every credential parameter.
        let verified = format!("a=1&user_id=u1&x=%20y&sig%6Eature={sig}&&email=e&b=2");
        let every = format!("a=1&user_id=u1&x=%20y&sig%6Eature={sig}&&timestamp=9&token=t&email=e&visitor_id=v&b=2");
        for (path, query) in [("/chat", verified), ("/healthz", every)] {
            let mut req = get(&format!("{path}?{query}"), &[]);
            for name in
                ["x_identity_signature", "x.identity.token", "x_user_id", "X_Identity.Timestamp", "x.user.email"]
            {
                req.headers_mut().insert(HeaderName::from_bytes(name.as_bytes()).unwrap(), "spoof".parse().unwrap());
            }
            req.headers_mut().insert("x-other", "kept".parse().unwrap());
            let (_, seen) = forward(&layer, req).await;
            let (uri, headers, _) = seen.lock().unwrap().take().expect("forwarded");
            assert_eq!(uri.to_string(), format!("{path}?a=1&x=%20y&&b=2"), "{mode:?}");
            assert_eq!(headers.len(), 1, "{mode:?} {path}: {headers:?}");
            assert_eq!(headers["x-other"], "kept");
        }
        // Only credentials: the query goes altogether.
        let (status, seen) = forward(&layer, get(&format!("/p?user_id=u1&signature={sig}"), &[])).await;
        assert_eq!(status, 200);
        assert_eq!(seen.lock().unwrap().take().expect("forwarded").0.to_string(), "/p");
        // A body carrying the identity is forwarded as sent.
        let body = format!("user_id=u1&signature={sig}&note=hi");
        let (status, seen) = forward(&layer, post(FORM, body.clone(), &[])).await;
        assert_eq!(status, 200);
        assert_eq!(seen.lock().unwrap().take().expect("forwarded").2, body.as_bytes(), "{mode:?}");
    }
    // Without strip_credentials the URI is untouched.
    let layer = IdentityVerificationLayer::new(KeySet::single(Key::hmac(Identifier::UserId, secret())))
        .sources(Sources::new().query_defaults());
    let uri = format!("/p?user_id=u1&signature={sig}");
    let (_, seen) = forward(&layer, get(&uri, &[])).await;
    assert_eq!(seen.lock().unwrap().take().expect("forwarded").0.to_string(), uri);
}
