//! The layer's behaviour through a real tower stack: modes, bad signatures,
//! rotation, timestamps, providers, sources and rejections.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use crate::support::*;
use http::HeaderName;
use tower_identity::{
    Identifier, IdentityOutcome, IdentityVerificationLayer, Key, KeySet, Mode, Role, Scheme, Secret, Sources,
    TenantMap, TenantPolicy, identity::UnverifiedReason, layer::ErrorCode, provider::ProviderError,
    provider::from_async_fn, sign,
};

const MAX_AGE: u64 = 600;

fn ts_layer(mode: Mode) -> IdentityVerificationLayer {
    IdentityVerificationLayer::new(KeySet::single(Key::timestamped_hmac(Identifier::UserId, secret()).with_id("k1")))
        .mode(mode)
        .clock(|| NOW)
        .max_age(Duration::from_secs(MAX_AGE))
}

fn plain_layer(mode: Mode) -> IdentityVerificationLayer {
    IdentityVerificationLayer::new(KeySet::single(Key::hmac(Identifier::UserId, secret()))).mode(mode).clock(|| NOW)
}

#[derive(Clone, Copy, Debug)]
enum Case {
    NoCredential,
    Valid,
    Invalid,
    Expired,
}

fn request(case: Case) -> http::Request<http_body_util::Full<bytes::Bytes>> {
    let sig = match case {
        Case::NoCredential => return get("/", &[("x-user-id", "user-42")]),
        Case::Valid => sign::timestamped_hmac(&secret(), "user-42", NOW - 5),
        Case::Invalid => sign::timestamped_hmac(&Secret::text("another-secret-0123456789").unwrap(), "user-42", NOW),
        Case::Expired => sign::timestamped_hmac(&secret(), "user-42", NOW - MAX_AGE - 1),
    };
    get("/", &[("x-user-id", "user-42"), ("x-identity-signature", &sig)])
}

#[tokio::test]
async fn mode_table() {
    use Case::*;
    use IdentityOutcome::*;
    // (mode, case) -> Ok(outcome) for a pass, Err(code) for a rejection.
    let table: Vec<(Mode, Case, Result<IdentityOutcome, &str>)> = vec![
        (Mode::Off, NoCredential, Ok(Anonymous)),
        (Mode::Off, Valid, Ok(Unverified(UnverifiedReason::VerificationOff))),
        (Mode::Off, Invalid, Ok(Unverified(UnverifiedReason::VerificationOff))),
        (Mode::Off, Expired, Ok(Unverified(UnverifiedReason::VerificationOff))),
        (Mode::ReportOnly, NoCredential, Ok(Anonymous)),
        (Mode::ReportOnly, Valid, Ok(Verified)),
        (Mode::ReportOnly, Invalid, Ok(Unverified(UnverifiedReason::WouldReject(ErrorCode::SignatureInvalid)))),
        (Mode::ReportOnly, Expired, Ok(Unverified(UnverifiedReason::WouldReject(ErrorCode::SignatureExpired)))),
        (Mode::Optional, NoCredential, Ok(Anonymous)),
        (Mode::Optional, Valid, Ok(Verified)),
        (Mode::Optional, Invalid, Err("signature_invalid")),
        (Mode::Optional, Expired, Err("signature_expired")),
        (Mode::Required, NoCredential, Err("credential_missing")),
        (Mode::Required, Valid, Ok(Verified)),
        (Mode::Required, Invalid, Err("signature_invalid")),
        (Mode::Required, Expired, Err("signature_expired")),
    ];
    for (mode, case, expected) in table {
        // Once as the layer's mode, once as a tenant override of an opposite layer mode.
        let tenant_layer = IdentityVerificationLayer::new(
            TenantMap::new()
                .untenanted(
                    TenantPolicy::new(KeySet::single(
                        Key::timestamped_hmac(Identifier::UserId, secret()).with_id("k1"),
                    ))
                    .with_mode(mode),
                )
                .unwrap(),
        )
        .mode(if mode == Mode::Off { Mode::Required } else { Mode::Off })
        .clock(|| NOW)
        .max_age(Duration::from_secs(MAX_AGE));
        for layer in [ts_layer(mode), tenant_layer] {
            let (answer, rec) = send(&layer, request(case)).await;
            let ctx = format!("{mode:?} × {case:?}");
            match expected {
                Ok(outcome) => {
                    assert_eq!(answer.status, 200, "{ctx}: {}", answer.body);
                    assert_eq!(answer.body, "inner", "{ctx}");
                    assert_eq!(rec.calls(), 1, "{ctx}");
                    assert_eq!(rec.last_outcome(), Some(outcome), "{ctx}");
                    let identity = rec.last_identity();
                    assert_eq!(identity.is_some(), outcome == Verified, "{ctx}");
                    if let Some(identity) = identity {
                        assert_eq!(identity.user_id(), Some("user-42"));
                        assert_eq!(identity.key_id(), Some("k1"));
                        assert_eq!(identity.signed_at(), Some(NOW - 5));
                        assert_eq!(identity.scheme(), Scheme::TimestampedHmac { over: Identifier::UserId });
                    }
                }
                Err(code) => assert_rejected(&answer, &rec, 401, code, &["user-42", SECRET]),
            }
        }
    }
}

#[tokio::test]
async fn bad_signatures_are_rejected() {
    let layer = plain_layer(Mode::Required);
    let good = sign::hmac(&secret(), "user-42");
    let mut cases: Vec<(String, &str)> = vec![(String::new(), "credential_malformed")];
    for len in 1..64 {
        cases.push((good[..len].to_owned(), "credential_malformed"));
    }
    for extra in 1..=70 {
        cases.push((format!("{good}{}", "a".repeat(extra)), "credential_malformed"));
    }
    for trailing in [" ", "-", "=", "==", "\t", "0", "-x", "%00", "\u{e9}"] {
        cases.push((format!("{good}{trailing}"), "credential_malformed"));
    }
    cases.push((format!("0x{}", &good[..62]), "credential_malformed"));
    cases.push((good.replace('a', "g").replacen('0', "z", 1), "credential_malformed"));
    cases.push((format!("{} {}", &good[..32], &good[33..]), "credential_malformed"));
    cases.push(("0".repeat(64), "signature_invalid"));
    cases.push((sign::hmac(&secret(), "user-43"), "signature_invalid"));
    // Every single-bit flip of the valid tag.
    let tag = hex::decode(&good).unwrap();
    for bit in 0..256 {
        let mut flipped = tag.clone();
        flipped[bit / 8] ^= 1 << (bit % 8);
        cases.push((hex::encode(flipped), "signature_invalid"));
    }
    for (sig, code) in &cases {
        let Ok(value) = http::HeaderValue::from_str(sig) else {
            continue;
        };
        let mut req = get("/", &[("x-user-id", "user-42")]);
        req.headers_mut().insert("x-identity-signature", value);
        let (answer, rec) = send(&layer, req).await;
        assert_rejected(&answer, &rec, 401, code, &[SECRET, "user-42"]);
        if sig.len() >= 8 {
            assert!(!answer.body.contains(&sig[..8]), "the body echoes the signature");
        }
    }
    // Upper-case hex verifies (same bytes).
    for sig in [good.to_uppercase(), good.clone()] {
        let (answer, rec) = send(&layer, get("/", &[("x-user-id", "user-42"), ("x-identity-signature", &sig)])).await;
        assert_eq!(answer.status, 200);
        assert_eq!(rec.last_identity().unwrap().user_id(), Some("user-42"));
    }
}

#[tokio::test]
async fn rotation_reports_the_matching_key_and_drops_removed_keys() {
    let old = Secret::text("old-secret-0123456789abcdef").unwrap();
    let new = Secret::text("new-secret-0123456789abcdef").unwrap();
    let both = KeySet::new([
        Key::hmac(Identifier::UserId, old.clone()).with_id("2025"),
        Key::hmac(Identifier::UserId, new.clone()).with_id("2026"),
    ])
    .unwrap();
    // A provider whose key set an operator swaps at run time.
    let current = Arc::new(RwLock::new(both));
    let provider = {
        let current = current.clone();
        move |_tenant: Option<&str>| Ok(Some(TenantPolicy::new(current.read().unwrap().clone())))
    };
    let layer = IdentityVerificationLayer::new(provider).clock(|| NOW);
    let req = |s: &Secret| get("/", &[("x-user-id", "u1"), ("x-identity-signature", &sign::hmac(s, "u1"))]);

    let (a, rec) = send(&layer, req(&old)).await;
    assert_eq!(a.status, 200);
    assert_eq!(rec.last_identity().unwrap().key_id(), Some("2025"));
    let (a, rec) = send(&layer, req(&new)).await;
    assert_eq!(a.status, 200);
    assert_eq!(rec.last_identity().unwrap().key_id(), Some("2026"));

    *current.write().unwrap() = KeySet::single(Key::hmac(Identifier::UserId, new.clone()).with_id("2026"));
    let (a, rec) = send(&layer, req(&old)).await;
    assert_rejected(&a, &rec, 401, "signature_invalid", &["u1"]);
    let (a, rec) = send(&layer, req(&new)).await;
    assert_eq!(a.status, 200);
    assert_eq!(rec.last_identity().unwrap().key_id(), Some("2026"));

    // Validity windows: a key past its not_after no longer verifies.
    let windowed = KeySet::new([
        Key::hmac(Identifier::UserId, old.clone()).with_id("2025").not_after(NOW),
        Key::hmac(Identifier::UserId, new.clone()).with_id("2026").not_before(NOW),
    ])
    .unwrap();
    let layer = IdentityVerificationLayer::new(windowed).clock(|| NOW);
    let (a, rec) = send(&layer, req(&old)).await;
    assert_rejected(&a, &rec, 401, "signature_invalid", &["u1"]);
    let (a, _) = send(&layer, req(&new)).await;
    assert_eq!(a.status, 200);
}

#[tokio::test]
async fn timestamp_window() {
    let layer = ts_layer(Mode::Required).future_skew(Duration::from_secs(30));
    let at = |ts: u64| {
        get(
            "/",
            &[("x-user-id", "user-42"), ("x-identity-signature", &sign::timestamped_hmac(&secret(), "user-42", ts))],
        )
    };
    let (a, _) = send(&layer, at(NOW - MAX_AGE)).await;
    assert_eq!(a.status, 200, "exactly at the max age is accepted");
    let (a, rec) = send(&layer, at(NOW - MAX_AGE - 1)).await;
    assert_rejected(&a, &rec, 401, "signature_expired", &[]);
    let (a, _) = send(&layer, at(NOW + 30)).await;
    assert_eq!(a.status, 200, "within the skew is accepted");
    let (a, rec) = send(&layer, at(NOW + 31)).await;
    assert_rejected(&a, &rec, 401, "signature_not_yet_valid", &[]);

    // The timestamp may also travel in its own header.
    let sig = sign::timestamped_hmac(&secret(), "user-42", NOW);
    let (hex_part, ts) = sig.split_once('-').unwrap();
    let (a, rec) = send(
        &layer,
        get("/", &[("x-user-id", "user-42"), ("x-identity-signature", hex_part), ("x-identity-timestamp", ts)]),
    )
    .await;
    assert_eq!(a.status, 200);
    assert_eq!(rec.last_identity().unwrap().signed_at(), Some(NOW));

    // Non-canonical timestamps are malformed.
    for bad in ["0".to_owned() + ts, format!("+{ts}"), "1.7e9".into(), "-1".into(), "1".repeat(20), String::new()] {
        let (a, rec) =
            send(&layer, get("/", &[("x-user-id", "user-42"), ("x-identity-signature", &format!("{hex_part}-{bad}"))]))
                .await;
        assert_rejected(&a, &rec, 401, "credential_malformed", &[]);
    }
}

#[tokio::test]
async fn plain_signature_over_id_dash_ts_is_not_a_timestamped_signature() {
    // The forgery DESIGN.md warns about: HMAC("bob-1999999999") == timestamped sig of "bob".
    // With a key bound to one scheme it cannot happen; a key set mixing the
    // schemes on one secret is refused at construction.
    let forged = sign::hmac(&secret(), &format!("bob-{NOW}"));
    let layer = ts_layer(Mode::Required);
    let (a, _) =
        send(&layer, get("/", &[("x-user-id", "bob"), ("x-identity-signature", &format!("{forged}-{NOW}"))])).await;
    assert_eq!(a.status, 200, "this is what a timestamped key legitimately accepts");
    // A plain-HMAC key never accepts the timestamped form...
    let layer = plain_layer(Mode::Required);
    let (a, rec) =
        send(&layer, get("/", &[("x-user-id", "bob"), ("x-identity-signature", &format!("{forged}-{NOW}"))])).await;
    assert_rejected(&a, &rec, 401, "signature_invalid", &["bob"]);
    // ...and one secret cannot back both schemes.
    assert!(
        KeySet::new([Key::hmac(Identifier::UserId, secret()), Key::timestamped_hmac(Identifier::UserId, secret())])
            .is_err()
    );
}

#[tokio::test]
async fn identifiers_are_bound_to_the_key() {
    // An email-signing key does not verify a user id with the same text.
    let layer = IdentityVerificationLayer::new(KeySet::single(Key::hmac(Identifier::Email, secret())));
    let sig = sign::hmac(&secret(), "jane@example.com");
    let (a, rec) = send(&layer, get("/", &[("x-user-id", "jane@example.com"), ("x-identity-signature", &sig)])).await;
    // Answered like an invalid signature: which identifier a tenant signs is not revealed.
    assert_rejected(&a, &rec, 401, "signature_invalid", &["jane@example.com"]);
    let (a, rec) = send(
        &layer,
        get("/", &[("x-user-email", "jane@example.com"), ("x-user-id", "7"), ("x-identity-signature", &sig)]),
    )
    .await;
    assert_eq!(a.status, 200);
    let id = rec.last_identity().unwrap();
    assert_eq!(id.email(), Some("jane@example.com"));
    assert_eq!(id.user_id(), None, "an unsigned user id is not proven");
    assert_eq!(id.unsigned().user_id(), Some("7"));
}

#[tokio::test]
async fn identifier_limits() {
    let layer = plain_layer(Mode::Required).max_identifier_len(16);
    let long = "x".repeat(17);
    let (a, rec) =
        send(&layer, get("/", &[("x-user-id", &long), ("x-identity-signature", &sign::hmac(&secret(), &long))])).await;
    assert_rejected(&a, &rec, 401, "credential_malformed", &[]);
    let (a, rec) =
        send(&layer, get("/", &[("x-user-id", ""), ("x-identity-signature", &sign::hmac(&secret(), ""))])).await;
    assert_rejected(&a, &rec, 401, "credential_malformed", &[]);
    // Tabs are legal in header values but not in identifiers.
    let id = "a\tb";
    let (a, rec) =
        send(&layer, get("/", &[("x-user-id", id), ("x-identity-signature", &sign::hmac(&secret(), id))])).await;
    assert_rejected(&a, &rec, 401, "credential_malformed", &[]);
    // UTF-8 identifiers are signed and verified as raw bytes, without normalisation.
    let composed = "usér";
    let decomposed = "use\u{301}r";
    let mut req = get("/", &[("x-identity-signature", &sign::hmac(&secret(), composed))]);
    req.headers_mut().insert("x-user-id", http::HeaderValue::from_bytes(composed.as_bytes()).unwrap());
    let (a, rec) = send(&layer, req).await;
    assert_eq!(a.status, 200);
    assert_eq!(rec.last_identity().unwrap().user_id(), Some(composed));
    let mut req = get("/", &[("x-identity-signature", &sign::hmac(&secret(), composed))]);
    req.headers_mut().insert("x-user-id", http::HeaderValue::from_bytes(decomposed.as_bytes()).unwrap());
    let (a, rec) = send(&layer, req).await;
    assert_rejected(&a, &rec, 401, "signature_invalid", &[]);
    // Non-UTF-8 header bytes.
    let mut req = get("/", &[("x-identity-signature", &sign::hmac(&secret(), "x"))]);
    req.headers_mut().insert("x-user-id", http::HeaderValue::from_bytes(b"\xff\xfe").unwrap());
    let (a, rec) = send(&layer, req).await;
    assert_rejected(&a, &rec, 401, "credential_malformed", &[]);
}

#[tokio::test]
async fn conflicts_are_rejected() {
    let layer = plain_layer(Mode::Optional).sources(Sources::new().query_defaults());
    let sig = sign::hmac(&secret(), "u1");
    // Repeated header.
    let mut req = get("/", &[("x-identity-signature", &sig)]);
    req.headers_mut().append("x-user-id", "u1".parse().unwrap());
    req.headers_mut().append("x-user-id", "u2".parse().unwrap());
    let (a, rec) = send(&layer, req).await;
    assert_rejected(&a, &rec, 401, "conflicting_values", &["u1", "u2"]);
    // Repeated query parameter.
    let (a, rec) = send(&layer, get(&format!("/?user_id=u1&user_id=u1&signature={sig}"), &[])).await;
    assert_rejected(&a, &rec, 401, "conflicting_values", &["u1"]);
    // Header and query disagree, even without a credential in optional mode.
    let (a, rec) = send(&layer, get("/?user_id=u2", &[("x-user-id", "u1")])).await;
    assert_rejected(&a, &rec, 401, "conflicting_values", &["u1", "u2"]);
    // Header and query agree: fine.
    let (a, rec) = send(&layer, get("/?user_id=u1", &[("x-user-id", "u1"), ("x-identity-signature", &sig)])).await;
    assert_eq!(a.status, 200);
    assert_eq!(rec.last_identity().unwrap().user_id(), Some("u1"));
}

#[tokio::test]
async fn signed_links_in_query_parameters() {
    // Seed 004: `?user_id=…&signature=…`
    let secret = Secret::text("env-secret-123").unwrap();
    let layer = IdentityVerificationLayer::new(KeySet::single(Key::hmac(Identifier::UserId, secret)))
        .min_secret_len(8)
        .sources(Sources::new().query_defaults());
    let (a, rec) = send(
        &layer,
        get(
            "/survey?user_id=customer_8812&signature=61cef0ffddd44e3c86458b6bcd04ec5083a402e0dc5f5660f491433cd54ed961",
            &[],
        ),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(rec.last_identity().unwrap().user_id(), Some("customer_8812"));
    // Percent-encoded identifiers are decoded before verification.
    let email_secret = Secret::text("email-secret-0123456789").unwrap();
    let layer = IdentityVerificationLayer::new(KeySet::single(Key::hmac(Identifier::Email, email_secret.clone())))
        .sources(Sources::new().query_defaults());
    let sig = sign::hmac(&email_secret, "Upper.Case+tag@Example.COM");
    let (a, rec) = send(&layer, get(&format!("/?email=Upper.Case%2Btag%40Example.COM&signature={sig}"), &[])).await;
    assert_eq!(a.status, 200);
    assert_eq!(rec.last_identity().unwrap().email(), Some("Upper.Case+tag@Example.COM"));
}

#[tokio::test]
async fn tenants() {
    let acme = Secret::text("acme-secret-0123456789").unwrap();
    let globex = Secret::text("globex-secret-0123456789").unwrap();
    let tenants = TenantMap::new()
        .tenant("acme", KeySet::single(Key::hmac(Identifier::UserId, acme.clone())))
        .and_then(|m| {
            m.tenant(
                "globex",
                TenantPolicy::new(KeySet::single(Key::hmac(Identifier::UserId, globex.clone())))
                    .with_mode(Mode::Optional),
            )
        })
        .unwrap();
    let layer = IdentityVerificationLayer::new(tenants)
        .sources(Sources::new().header(Role::Tenant, HeaderName::from_static("x-app-id")));
    let req = |tenant: &str, s: &Secret| {
        get("/", &[("x-app-id", tenant), ("x-user-id", "u1"), ("x-identity-signature", &sign::hmac(s, "u1"))])
    };
    let (a, rec) = send(&layer, req("acme", &acme)).await;
    assert_eq!(a.status, 200);
    assert_eq!(rec.last_identity().unwrap().tenant(), Some("acme"));
    // A tenant's signature does not verify for another tenant.
    let (cross, rec) = send(&layer, req("acme", &globex)).await;
    assert_rejected(&cross, &rec, 401, "signature_invalid", &["acme", "u1"]);
    // An unknown tenant looks exactly like an invalid signature.
    let (unknown, rec) = send(&layer, req("initech", &acme)).await;
    assert_rejected(&unknown, &rec, 401, "signature_invalid", &["initech", "u1"]);
    assert_eq!(unknown.body, cross.body);
    assert_eq!(unknown.headers, cross.headers);
    // Per-tenant mode: globex is optional, acme (layer default) required.
    let (a, rec) = send(&layer, get("/", &[("x-app-id", "globex")])).await;
    assert_eq!(a.status, 200);
    assert_eq!(rec.last_outcome(), Some(IdentityOutcome::Anonymous));
    let (a, rec) = send(&layer, get("/", &[("x-app-id", "acme")])).await;
    assert_rejected(&a, &rec, 401, "credential_missing", &["acme"]);
    // Repeated tenant header: rejected before any lookup.
    let mut r = req("acme", &acme);
    r.headers_mut().append("x-app-id", "globex".parse().unwrap());
    let (a, rec) = send(&layer, r).await;
    assert_rejected(&a, &rec, 401, "conflicting_values", &["acme", "globex"]);
}

#[tokio::test]
async fn provider_failures_fail_closed() {
    for mode in [Mode::Off, Mode::ReportOnly, Mode::Optional, Mode::Required] {
        let layer =
            IdentityVerificationLayer::new(|_: Option<&str>| Err(ProviderError::new("database down"))).mode(mode);
        let (a, rec) = send(&layer, get("/", &[("x-user-id", "u1"), ("x-identity-signature", &"a".repeat(64))])).await;
        assert_eq!(a.status, 503, "{mode:?}");
        assert_eq!(a.code(), "provider_unavailable");
        assert_eq!(a.headers["retry-after"], "5");
        assert_eq!(rec.calls(), 0);
        assert!(!a.body.contains("database"), "provider messages are logged, not answered");
    }
}

#[tokio::test]
async fn async_provider() {
    let lookups = Arc::new(AtomicUsize::new(0));
    let provider = {
        let lookups = lookups.clone();
        from_async_fn(move |tenant: Option<String>| {
            let lookups = lookups.clone();
            async move {
                lookups.fetch_add(1, Ordering::SeqCst);
                tokio::task::yield_now().await;
                Ok(match tenant.as_deref() {
                    Some("acme") => Some(TenantPolicy::new(KeySet::single(Key::hmac(Identifier::UserId, secret())))),
                    Some("down") => return Err(ProviderError::new("timeout")),
                    _ => None,
                })
            }
        })
    };
    let layer = IdentityVerificationLayer::new(provider)
        .sources(Sources::new().header(Role::Tenant, HeaderName::from_static("x-tenant")));
    let sig = sign::hmac(&secret(), "u1");
    let (a, rec) =
        send(&layer, get("/", &[("x-tenant", "acme"), ("x-user-id", "u1"), ("x-identity-signature", &sig)])).await;
    assert_eq!(a.status, 200);
    assert_eq!(rec.last_identity().unwrap().user_id(), Some("u1"));
    let (a, rec) =
        send(&layer, get("/", &[("x-tenant", "nope"), ("x-user-id", "u1"), ("x-identity-signature", &sig)])).await;
    assert_rejected(&a, &rec, 401, "signature_invalid", &["nope"]);
    let (a, rec) =
        send(&layer, get("/", &[("x-tenant", "down"), ("x-user-id", "u1"), ("x-identity-signature", &sig)])).await;
    assert_eq!((a.status.as_u16(), rec.calls()), (503, 0));
    assert_eq!(lookups.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn short_secrets_are_never_used() {
    let short = Secret::text("short").unwrap();
    let layer = IdentityVerificationLayer::new(KeySet::single(Key::hmac(Identifier::UserId, short.clone())));
    let (a, rec) =
        send(&layer, get("/", &[("x-user-id", "u1"), ("x-identity-signature", &sign::hmac(&short, "u1"))])).await;
    assert_eq!(a.status, 500);
    assert_eq!(a.code(), "misconfigured");
    assert_eq!(rec.calls(), 0);
    // Lowering the policy on purpose allows it.
    let (a, _) = send(
        &layer.clone().min_secret_len(5),
        get("/", &[("x-user-id", "u1"), ("x-identity-signature", &sign::hmac(&short, "u1"))]),
    )
    .await;
    assert_eq!(a.status, 200);
}

#[tokio::test]
async fn grpc_requests_get_grpc_statuses() {
    let layer = plain_layer(Mode::Required);
    let mut req = get("/grpc.health.v1.Health/Check", &[("content-type", "application/grpc")]);
    *req.method_mut() = http::Method::POST;
    let (a, rec) = send(&layer, req).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.headers["grpc-status"], "16");
    assert_eq!(a.headers["content-type"], "application/grpc");
    assert!(a.body.is_empty(), "trailers-only");
    assert_eq!(rec.calls(), 0);

    let layer = IdentityVerificationLayer::new(|_: Option<&str>| Err(ProviderError::new("down")));
    let (a, rec) = send(&layer, get("/", &[("content-type", "application/grpc+proto")])).await;
    assert_eq!(a.headers["grpc-status"], "14");
    assert_eq!(rec.calls(), 0);
}

#[tokio::test]
async fn custom_responder() {
    let layer = plain_layer(Mode::Required).responder(
        |rejection: &tower_identity::layer::Rejection, req: &tower_identity::extract::RequestHead<'_>| {
            let mut res = http::Response::new(bytes::Bytes::from(format!(
                "{{\"error\":\"identity_unverified\",\"path\":\"{}\"}}",
                req.uri.path()
            )));
            *res.status_mut() = rejection.code().status();
            res.headers_mut().insert("content-type", "application/json".parse().unwrap());
            res.headers_mut().insert("cache-control", "no-store".parse().unwrap());
            res
        },
    );
    let (a, rec) = send(&layer, get("/chat", &[])).await;
    assert_eq!(a.status, 401);
    assert_eq!(a.body, "{\"error\":\"identity_unverified\",\"path\":\"/chat\"}");
    assert_eq!(rec.calls(), 0);
}

#[tokio::test]
async fn secrets_never_appear_in_debug_output() {
    let layer = plain_layer(Mode::Required);
    let dbg = format!("{layer:?} {:?} {:?}", KeySet::single(Key::hmac(Identifier::UserId, secret())), secret());
    assert!(!dbg.contains(SECRET), "{dbg}");
    let claim = tower_identity::claim::Claim::new().user_id("u1").signature(sign::hmac(&secret(), "u1"));
    let dbg = format!("{claim:?}");
    assert!(!dbg.contains(&sign::hmac(&secret(), "u1")), "{dbg}");
}

#[tokio::test]
async fn credential_headers_are_marked_sensitive_and_query_decoding_is_strict() {
    let layer = plain_layer(Mode::Required).sources(Sources::new().query_defaults());
    let sig = sign::hmac(&secret(), "u1");
    let svc = tower::ServiceBuilder::new().layer(layer.clone()).service(tower::service_fn(
        |req: http::Request<tower_identity::layer::body::RequestBody<http_body_util::Full<bytes::Bytes>>>| async move {
            let h = req.headers();
            assert!(h["x-identity-signature"].is_sensitive());
            assert!(!h["authorization"].is_sensitive(), "not an identity source here: left alone");
            assert!(!h["x-user-id"].is_sensitive());
            Ok::<_, std::convert::Infallible>(http::Response::new(http_body_util::Full::new(bytes::Bytes::new())))
        },
    ));
    let req = get("/", &[("x-user-id", "u1"), ("x-identity-signature", &sig), ("authorization", "Bearer app-session")]);
    let res = tower::ServiceExt::oneshot(svc, req).await.unwrap();
    assert_eq!(res.status(), 200);

    // %FF and %FE are different bytes: neither may be read as U+FFFD.
    for bad in ["%FF", "%FE", "a%C3"] {
        let (a, rec) =
            send(&layer, get(&format!("/?user_id={bad}&signature={}", sign::hmac(&secret(), "\u{fffd}")), &[])).await;
        assert_rejected(&a, &rec, 401, "credential_malformed", &[]);
    }
    // '+' is a space in query strings.
    let sig = sign::hmac(&secret(), "a b");
    let (a, rec) = send(&layer, get(&format!("/?user_id=a+b&signature={sig}"), &[])).await;
    assert_eq!(a.status, 200);
    assert_eq!(rec.last_identity().unwrap().user_id(), Some("a b"));
}

#[tokio::test]
async fn forwarded_identity_headers_cannot_be_spoofed_in_any_mode() {
    use std::sync::Mutex;
    let spoofs = [
        "x-verified-user-id",
        "x_verified_user_id",
        "x.verified.user.id",
        "X-Verified_Email",
        "x-identity-outcome",
        "x_verified_tenant",
        "x-verified-key.id",
    ];
    for mode in [Mode::Off, Mode::ReportOnly, Mode::Optional, Mode::Required] {
        for valid in [true, false] {
            let seen: Arc<Mutex<Option<http::HeaderMap>>> = Arc::default();
            let layer = plain_layer(mode)
                .forward_identity_headers(tower_identity::layer::ForwardHeaders::default())
                .strip_credentials(true);
            let svc = tower::ServiceBuilder::new().layer(layer).service(tower::service_fn({
                let seen = seen.clone();
                move |req: http::Request<
                    tower_identity::layer::body::RequestBody<http_body_util::Full<bytes::Bytes>>,
                >| {
                    *seen.lock().unwrap() = Some(req.headers().clone());
                    async {
                        Ok::<_, std::convert::Infallible>(http::Response::new(http_body_util::Full::new(
                            bytes::Bytes::new(),
                        )))
                    }
                }
            }));
            let sig = if valid { sign::hmac(&secret(), "u1") } else { "0".repeat(64) };
            let mut req = get("/", &[("x-user-id", "u1"), ("x-identity-signature", &sig)]);
            for name in spoofs {
                req.headers_mut().append(
                    HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes()).unwrap(),
                    "admin".parse().unwrap(),
                );
            }
            let res = tower::ServiceExt::oneshot(svc, req).await.unwrap();
            let ctx = format!("{mode:?} valid={valid}");
            let Some(h) = seen.lock().unwrap().take() else {
                assert_eq!(res.status(), 401, "{ctx}");
                continue;
            };
            for (name, value) in &h {
                assert_ne!(value, "admin", "{ctx}: spoofed {name} reached the upstream");
            }
            assert_eq!(h.get_all("x-identity-outcome").iter().count(), 1, "{ctx}");
            assert!(h.get("x-identity-signature").is_none(), "{ctx}: credential stripped");
            let outcome = h["x-identity-outcome"].to_str().unwrap();
            if valid && mode != Mode::Off {
                assert_eq!(outcome, "verified", "{ctx}");
                assert_eq!(h.get_all("x-verified-user-id").iter().collect::<Vec<_>>(), ["u1"], "{ctx}");
            } else {
                assert_ne!(outcome, "verified", "{ctx}");
                assert!(h.get("x-verified-user-id").is_none(), "{ctx}");
            }
        }
    }
}

#[tokio::test]
async fn bypassed_requests_skip_verification_but_not_header_stripping() {
    let layer = plain_layer(Mode::Required)
        .forward_identity_headers(tower_identity::layer::ForwardHeaders::default())
        .bypass(|req| req.uri.path() == "/healthz");
    let (a, rec) = send(&layer, get("/healthz", &[("x_verified_user_id", "admin")])).await;
    assert_eq!(a.status, 200);
    assert_eq!(rec.calls(), 1);
    assert_eq!(rec.last_outcome(), None, "no verdict was made");
    let (a, rec) = send(&layer, get("/other", &[])).await;
    assert_rejected(&a, &rec, 401, "credential_missing", &[]);
}

#[tokio::test]
async fn a_panicking_provider_is_refused_with_500_and_the_layer_keeps_serving() {
    let calls = Arc::new(AtomicUsize::new(0));
    let sync_calls = calls.clone();
    let sync_panics = IdentityVerificationLayer::new(move |_: Option<&str>| {
        if sync_calls.fetch_add(1, Ordering::SeqCst) == 0 {
            panic!("provider bug");
        }
        Ok(Some(TenantPolicy::new(KeySet::single(Key::hmac(Identifier::UserId, secret())))))
    });
    let async_panics = IdentityVerificationLayer::new(from_async_fn(|_: Option<String>| async {
        tokio::task::yield_now().await;
        panic!("provider bug");
    }));
    let sig = sign::hmac(&secret(), "u1");
    for layer in [&sync_panics, &async_panics] {
        let (a, rec) = send(layer, get("/", &[("x-user-id", "u1"), ("x-identity-signature", &sig)])).await;
        assert_eq!((a.status.as_u16(), rec.calls()), (500, 0));
        assert_eq!(a.code(), "internal_error");
    }
    // The same layer serves the next request.
    let (a, rec) = send(&sync_panics, get("/", &[("x-user-id", "u1"), ("x-identity-signature", &sig)])).await;
    assert_eq!((a.status.as_u16(), rec.calls()), (200, 1));
}

/// The extensions of the request an inner service saw: the raw `IdentityOutcome`
/// entry, what `IdentityOutcome::from_extensions` makes of them, and the identity.
type RawSeen = (Option<IdentityOutcome>, Option<IdentityOutcome>, Option<String>);

async fn raw_extensions<S, B>(mut svc: S, req: http::Request<http_body_util::Full<bytes::Bytes>>) -> RawSeen
where
    S: tower::Service<http::Request<http_body_util::Full<bytes::Bytes>>, Response = http::Response<B>>,
    S::Error: std::fmt::Debug,
{
    use tower::ServiceExt;
    let res = svc.ready().await.unwrap().call(req).await.unwrap();
    assert_eq!(res.status(), 200);
    let seen = res.extensions().get::<Arc<RwLock<Option<RawSeen>>>>().unwrap().read().unwrap().clone();
    seen.expect("the inner service ran")
}

/// An inner service that copies what it saw into a response extension.
fn spy<B>() -> impl tower::Service<
    http::Request<B>,
    Response = http::Response<http_body_util::Empty<bytes::Bytes>>,
    Error = std::convert::Infallible,
    Future = impl Send,
> + Clone {
    tower::service_fn(|req: http::Request<B>| {
        let ext = req.extensions();
        let seen: RawSeen = (
            ext.get::<IdentityOutcome>().copied(),
            IdentityOutcome::from_extensions(ext),
            ext.get::<tower_identity::VerifiedIdentity>().map(|id| id.id().to_owned()),
        );
        let mut res = http::Response::new(http_body_util::Empty::new());
        res.extensions_mut().insert(Arc::new(RwLock::new(Some(seen))));
        std::future::ready(Ok(res))
    })
}

#[tokio::test]
async fn a_verified_request_carries_its_identity_and_the_outcome_is_implied() {
    use tower::Layer;
    let signed = || signed(SECRET, "user-42");
    // Verified: one extension value (the identity); the outcome reads as Verified.
    let svc = plain_layer(Mode::Required).layer(spy());
    assert_eq!(
        raw_extensions(svc, signed()).await,
        (None, Some(IdentityOutcome::Verified), Some("user-42".to_owned()))
    );
    // Anonymous: the outcome is stored, no identity.
    let svc = plain_layer(Mode::Optional).layer(spy());
    let anonymous = get("/", &[("x-user-id", "user-42")]);
    assert_eq!(
        raw_extensions(svc, anonymous).await,
        (Some(IdentityOutcome::Anonymous), Some(IdentityOutcome::Anonymous), None)
    );
    // Without the layer, nothing.
    assert_eq!(raw_extensions(spy(), signed()).await, (None, None, None));

    // Two layers: the inner one's verdict replaces the outer one's, both ways.
    let verified_then_off = plain_layer(Mode::Required).layer(plain_layer(Mode::Off).layer(spy()));
    let off = IdentityOutcome::Unverified(UnverifiedReason::VerificationOff);
    assert_eq!(raw_extensions(verified_then_off, signed()).await, (Some(off), Some(off), None));
    let off_then_verified = plain_layer(Mode::Off).layer(plain_layer(Mode::Required).layer(spy()));
    assert_eq!(
        raw_extensions(off_then_verified, signed()).await,
        (None, Some(IdentityOutcome::Verified), Some("user-42".to_owned()))
    );
}

#[tokio::test]
async fn the_clock_is_read_only_when_the_keys_look_at_the_time() {
    let reads = Arc::new(AtomicUsize::new(0));
    let clock = {
        let reads = reads.clone();
        move || {
            reads.fetch_add(1, Ordering::SeqCst);
            NOW
        }
    };
    let count = |keys: KeySet, req: http::Request<http_body_util::Full<bytes::Bytes>>| {
        let (reads, layer) = (reads.clone(), IdentityVerificationLayer::new(keys).clock(clock.clone()));
        async move {
            reads.store(0, Ordering::SeqCst);
            let (a, rec) = send(&layer, req).await;
            assert_eq!((a.status.as_u16(), rec.calls()), (200, 1));
            reads.load(Ordering::SeqCst)
        }
    };
    // Plain HMAC keys without a validity window: no system call for the time.
    assert_eq!(count(KeySet::single(Key::hmac(Identifier::UserId, secret())), signed(SECRET, "user-42")).await, 0);
    // A window, a timestamp or a token needs it.
    let windowed = KeySet::single(Key::hmac(Identifier::UserId, secret()).not_after(NOW + 1));
    assert_eq!(count(windowed, signed(SECRET, "user-42")).await, 1);
    let stamped = KeySet::single(Key::timestamped_hmac(Identifier::UserId, secret()));
    let sig = sign::timestamped_hmac(&secret(), "user-42", NOW - 5);
    let req = get("/", &[("x-user-id", "user-42"), ("x-identity-signature", &sig)]);
    assert_eq!(count(stamped, req).await, 1);
    // The set as a whole decides: a plain key beside a windowed one still reads the clock.
    let mixed = KeySet::new([
        Key::hmac(Identifier::UserId, secret()).with_id("a"),
        Key::hmac(Identifier::UserId, Secret::text("other-secret-0123456789abcdef").unwrap())
            .with_id("b")
            .not_before(NOW + 10),
    ])
    .unwrap();
    assert!(mixed.needs_time());
    assert_eq!(count(mixed, signed(SECRET, "user-42")).await, 1);
}

/// A request whose tenant is ambiguous (repeated, disagreeing between header
/// and query, or not UTF-8) is refused before any lookup, so no tenant's mode
/// applies: refused in every mode, the layer's or a tenant's, and as a gRPC
/// status for gRPC requests. The inner service is never called.
#[tokio::test]
async fn an_ambiguous_tenant_is_refused_in_every_mode() {
    let acme = KeySet::single(Key::hmac(Identifier::UserId, secret()));
    let sig = sign::hmac(&secret(), "u1");
    let cases: Vec<(&str, http::Request<http_body_util::Full<bytes::Bytes>>, &str)> = vec![
        (
            "repeated header",
            {
                let mut r = get("/", &[("x-app-id", "acme"), ("x-user-id", "u1"), ("x-identity-signature", &sig)]);
                r.headers_mut().append("x-app-id", "acme".parse().unwrap());
                r
            },
            "conflicting_values",
        ),
        (
            "header and query disagree",
            get("/?app=globex", &[("x-app-id", "acme"), ("x-user-id", "u1"), ("x-identity-signature", &sig)]),
            "conflicting_values",
        ),
        (
            "repeated query parameter",
            get("/?app=acme&app=acme", &[("x-user-id", "u1"), ("x-identity-signature", &sig)]),
            "conflicting_values",
        ),
        (
            "non-UTF-8 header",
            {
                let mut r = get("/", &[("x-user-id", "u1"), ("x-identity-signature", &sig)]);
                r.headers_mut().insert("x-app-id", http::HeaderValue::from_bytes(b"ac\xffme").unwrap());
                r
            },
            "credential_malformed",
        ),
    ];
    for mode in [Mode::Off, Mode::ReportOnly, Mode::Optional, Mode::Required] {
        let tenants = TenantMap::new().tenant("acme", TenantPolicy::new(acme.clone()).with_mode(mode)).unwrap();
        let sources =
            Sources::new().header(Role::Tenant, HeaderName::from_static("x-app-id")).query(Role::Tenant, "app");
        let layer = IdentityVerificationLayer::new(tenants).mode(mode).sources(sources);
        for (name, req, code) in &cases {
            let clone = || {
                let mut r = get(&req.uri().to_string(), &[]);
                *r.headers_mut() = req.headers().clone();
                r
            };
            let (a, rec) = send(&layer, clone()).await;
            assert_rejected(&a, &rec, 401, code, &["acme", "u1"]);
            let mut grpc = clone();
            grpc.headers_mut().insert("content-type", "application/grpc".parse().unwrap());
            let (a, rec) = send(&layer, grpc).await;
            assert_eq!(
                (a.status.as_u16(), a.headers["grpc-status"].to_str().unwrap()),
                (200, "16"),
                "{name} in {mode:?}"
            );
            assert_eq!(rec.calls(), 0, "{name} in {mode:?}");
        }
    }
}

/// A bad tenant is refused alike from every source: not UTF-8 (a header, a
/// percent-encoded query parameter or form field) or ambiguous (a repeated
/// form field, a duplicate JSON key). Off and report-only let bad
/// credentials through, but not a request whose tenant cannot be read: the
/// inner service is never called.
#[tokio::test]
async fn a_bad_tenant_is_refused_alike_from_every_source() {
    let acme = KeySet::single(Key::hmac(Identifier::UserId, secret()));
    let sig = sign::hmac(&secret(), "u1");
    let post = |content_type: &str, body: &'static str| {
        let mut r = get("/", &[("content-type", content_type), ("x-user-id", "u1"), ("x-identity-signature", &sig)]);
        *r.method_mut() = http::Method::POST;
        *r.body_mut() = http_body_util::Full::new(bytes::Bytes::from_static(body.as_bytes()));
        r
    };
    let form = "application/x-www-form-urlencoded";
    let cases: Vec<(&str, http::Request<http_body_util::Full<bytes::Bytes>>, &str)> = vec![
        (
            "non-UTF-8 header",
            {
                let mut r = get("/", &[("x-user-id", "u1"), ("x-identity-signature", &sig)]);
                r.headers_mut().insert("x-app-id", http::HeaderValue::from_bytes(b"ac\xffme").unwrap());
                r
            },
            "credential_malformed",
        ),
        (
            "non-UTF-8 query parameter",
            get("/?app=ac%FFme", &[("x-user-id", "u1"), ("x-identity-signature", &sig)]),
            "credential_malformed",
        ),
        ("non-UTF-8 form field", post(form, "app=ac%FFme"), "credential_malformed"),
        ("repeated form field", post(form, "app=acme&app=acme"), "conflicting_values"),
        ("duplicate JSON key", post("application/json", r#"{"app":"acme","app":"acme"}"#), "conflicting_values"),
        (
            "JSON and header disagree",
            {
                let mut r = post("application/json", r#"{"app":"globex"}"#);
                r.headers_mut().insert("x-app-id", "acme".parse().unwrap());
                r
            },
            "conflicting_values",
        ),
    ];
    let sources = Sources::new()
        .header(Role::Tenant, HeaderName::from_static("x-app-id"))
        .query(Role::Tenant, "app")
        .form(Role::Tenant, "app")
        .json(Role::Tenant, "/app");
    for mode in [Mode::Off, Mode::ReportOnly] {
        let tenants = TenantMap::new().tenant("acme", TenantPolicy::new(acme.clone()).with_mode(mode)).unwrap();
        let layer = IdentityVerificationLayer::new(tenants).mode(mode).sources(sources.clone());
        for (name, req, code) in &cases {
            let mut copy = get(&req.uri().to_string(), &[]);
            *copy.method_mut() = req.method().clone();
            *copy.headers_mut() = req.headers().clone();
            *copy.body_mut() = req.body().clone();
            let (a, rec) = send(&layer, copy).await;
            assert_rejected(&a, &rec, 401, code, &["acme", "u1"]);
            assert_eq!(rec.calls(), 0, "{name} in {mode:?}");
        }
    }
}

/// Misconfiguration and provider panics answer gRPC status 13 to gRPC requests,
/// without calling the inner service.
#[tokio::test]
async fn internal_failures_are_grpc_status_13_for_grpc_requests() {
    let short =
        IdentityVerificationLayer::new(KeySet::single(Key::hmac(Identifier::UserId, Secret::text("short").unwrap())));
    let panics = IdentityVerificationLayer::new(|_: Option<&str>| -> tower_identity::provider::LookupResult {
        panic!("provider bug")
    });
    let sig = sign::hmac(&secret(), "u1");
    for layer in [&short, &panics] {
        let req =
            get("/", &[("content-type", "application/grpc"), ("x-user-id", "u1"), ("x-identity-signature", &sig)]);
        let (a, rec) = send(layer, req).await;
        assert_eq!((a.status.as_u16(), a.headers["grpc-status"].to_str().unwrap()), (200, "13"));
        assert_eq!(rec.calls(), 0);
    }
}

/// A bypassed request is not verified, but its credentials are guarded as on
/// any other request: flagged sensitive, or removed with `strip_credentials`.
#[tokio::test]
async fn bypassed_requests_keep_credentials_guarded() {
    use tower::{Layer, ServiceExt};
    let seen = Arc::new(std::sync::Mutex::new(None::<http::HeaderMap>));
    let inner = {
        let seen = seen.clone();
        tower::service_fn(
            move |req: http::Request<tower_identity::layer::body::RequestBody<http_body_util::Full<bytes::Bytes>>>| {
                *seen.lock().unwrap() = Some(req.headers().clone());
                std::future::ready(Ok::<_, std::convert::Infallible>(http::Response::new(http_body_util::Empty::<
                    bytes::Bytes,
                >::new())))
            },
        )
    };
    let sig = sign::hmac(&secret(), "u1");
    let req = || get("/healthz", &[("x-user-id", "u1"), ("x-identity-signature", &sig), ("x-identity-timestamp", "1")]);
    for strip in [false, true] {
        let layer = plain_layer(Mode::Required).strip_credentials(strip).bypass(|req| req.uri.path() == "/healthz");
        let res = layer.layer(inner.clone()).oneshot(req()).await.unwrap();
        assert_eq!(res.status(), 200);
        let h = seen.lock().unwrap().take().expect("the inner service ran");
        if strip {
            assert!(
                ["x-user-id", "x-identity-signature", "x-identity-timestamp"].iter().all(|n| !h.contains_key(*n)),
                "{h:?}"
            );
        } else {
            assert!(h["x-identity-signature"].is_sensitive());
            assert!(!h["x-user-id"].is_sensitive());
        }
    }
}

/// A provider that refuses a tenant's keys (`TenantPolicy::misconfigured`,
/// as the PostgreSQL provider answers a secret shared across schemes) gets
/// 500 `misconfigured` in every enforcing mode, and the inner service is not
/// called, whatever credential the request carries.
#[tokio::test]
async fn a_misconfigured_tenant_is_refused_in_every_enforcing_mode() {
    let misconfigured =
        |_: Option<&str>| -> tower_identity::provider::LookupResult { Ok(Some(TenantPolicy::misconfigured())) };
    for mode in [Mode::ReportOnly, Mode::Optional, Mode::Required] {
        let layer = tenant_layer(misconfigured).mode(mode);
        let (answer, rec) = send(&layer, tenant_request("acme", SECRET)).await;
        assert_rejected(&answer, &rec, 500, "misconfigured", &[SECRET]);
    }
}

/// Identity state that arrived with the request (from an outer layer, or
/// code in front of this one) never survives it: a verified request carries
/// its own identity and no outcome; a passed anonymous request its outcome
/// and no identity.
#[tokio::test]
async fn identity_state_that_arrived_with_the_request_is_replaced() {
    use http_body_util::Full;
    use tower::{Layer, ServiceExt};
    use tower_identity::{VerifiedIdentity, layer::body::RequestBody};
    type Found = (Option<String>, Option<IdentityOutcome>);

    let keys = KeySet::single(Key::hmac(Identifier::UserId, secret()));
    let layer = IdentityVerificationLayer::new(keys).mode(Mode::Optional);
    let (_, rec) = send(&layer, signed(SECRET, "mallory")).await;
    let mallory = rec.last_identity().expect("mallory verified");
    // What the inner service finds in the extensions, read directly.
    let found = |mut req: http::Request<Full<bytes::Bytes>>, outcome: IdentityOutcome| {
        req.extensions_mut().insert(mallory.clone());
        req.extensions_mut().insert(outcome);
        let found = Arc::new(std::sync::Mutex::new(None::<Found>));
        let seen = found.clone();
        let inner = tower::service_fn(move |req: http::Request<RequestBody<Full<bytes::Bytes>>>| {
            let ext = req.extensions();
            *seen.lock().unwrap() =
                Some((ext.get::<VerifiedIdentity>().map(|i| i.id().to_owned()), ext.get::<IdentityOutcome>().copied()));
            async { Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(bytes::Bytes::new()))) }
        });
        let svc = layer.layer(inner);
        async move {
            let res = svc.oneshot(req).await.unwrap();
            assert_eq!(res.status(), http::StatusCode::OK);
            found.lock().unwrap().take().expect("the inner service was called")
        }
    };

    assert_eq!(found(signed(SECRET, "42"), IdentityOutcome::Anonymous).await, (Some("42".to_owned()), None));
    assert_eq!(found(get("/", &[]), IdentityOutcome::Verified).await, (None, Some(IdentityOutcome::Anonymous)));
}
