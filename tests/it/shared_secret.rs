//! One secret, two schemes, two tenants: a plain HMAC over `bob-1999999999`
//! is the timestamped signature of `bob` at 1999999999, so a secret that one
//! tenant uses for plain HMAC and another for timestamped HMAC (or JWT) lets
//! the first tenant's signatures log users in at the second. `TenantMap`
//! refuses such a configuration.

use crate::support::*;
use bytes::Bytes;
use http_body_util::Full;
use tower_identity::provider::{LookupResult, TenantMapError};
use tower_identity::{Identifier, Key, KeySet, Secret, TenantMap, TenantPolicy, sign};

const TS: u64 = 1_999_999_999;

fn plain() -> KeySet {
    KeySet::single(Key::hmac(Identifier::UserId, secret()).with_id("plain-1"))
}

fn stamped() -> KeySet {
    KeySet::single(Key::timestamped_hmac(Identifier::UserId, secret()).with_id("stamped-1"))
}

/// Tenant "plain"'s backend signs the user id `bob-1999999999` (any user id
/// its users may choose); the signature is sent to tenant "stamped" as `bob`.
fn forged() -> http::Request<Full<Bytes>> {
    let sig = sign::hmac(&secret(), "bob-1999999999");
    get("/", &[("x-tenant", "stamped"), ("x-user-id", "bob"), ("x-identity-signature", &format!("{sig}-{TS}"))])
}

/// Both tenants, with no cross-tenant check (what a `TenantMap` prevents).
fn unchecked(tenant: Option<&str>) -> LookupResult {
    Ok(match tenant {
        Some("plain") => Some(plain().into()),
        Some("stamped") => Some(stamped().into()),
        _ => None,
    })
}

fn shared(err: TenantMapError) -> (tower_identity::provider::KeyUse, tower_identity::provider::KeyUse) {
    match err {
        TenantMapError::SecretSharedAcrossTenants { first, second } => (first, second),
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn unchecked_the_forgery_verifies() {
    // The attack is real: without the check, tenant "stamped" accepts it.
    let layer = tenant_layer(unchecked).clock(|| TS);
    let (answer, rec) = send(&layer, forged()).await;
    assert_eq!((answer.status.as_u16(), rec.calls()), (200, 1), "{}", answer.body);
    assert_eq!(rec.last_identity().unwrap().user_id(), Some("bob"));
}

#[tokio::test]
async fn a_tenant_map_refuses_one_secret_under_two_schemes_and_the_forgery_fails() {
    let mut map = TenantMap::new().tenant("plain", plain()).unwrap();
    let err = map.insert("stamped", stamped()).unwrap_err();
    let message = err.to_string();
    let (first, second) = shared(err.clone());
    assert_eq!((first.tenant.as_deref(), first.key_id.as_deref()), (Some("plain"), Some("plain-1")));
    assert_eq!((second.tenant.as_deref(), second.key_id.as_deref()), (Some("stamped"), Some("stamped-1")));
    assert!(message.contains(r#"tenant "plain" (key "plain-1")"#), "{message}");
    assert!(message.contains(r#"tenant "stamped" (key "stamped-1")"#), "{message}");
    assert!(!message.contains(SECRET) && !format!("{err:?}").contains(SECRET));
    // The refused tenant was not added; the map is as it was.
    assert_eq!(map.len(), 1);
    assert!(map.get(Some("stamped")).is_none());
    assert!(TenantMap::from_tenants([("plain", plain()), ("stamped", stamped())]).is_err());
    assert!(TenantMap::new().untenanted(stamped()).unwrap().tenant("plain", plain()).is_err());

    // The forged request meets the map that could be built: refused, the inner service never called.
    let layer = tenant_layer(map).clock(|| TS);
    let (answer, rec) = send(&layer, forged()).await;
    assert_rejected(&answer, &rec, 401, "signature_invalid", &[SECRET]);
}

#[test]
fn hmac_equivalent_secrets_and_other_encodings_are_the_same_secret() {
    let text = secret();
    let padded = Secret::from_bytes([SECRET.as_bytes(), b"\0"].concat()).unwrap();
    let hex = Secret::hex(&hex::encode(SECRET)).unwrap();
    for other in [text, padded, hex] {
        let map = TenantMap::new().tenant("plain", plain()).unwrap();
        let email = KeySet::single(Key::hmac(Identifier::Email, other));
        assert!(map.tenant("email", email).is_err(), "an HMAC over another identifier is another scheme");
    }
}

#[cfg(feature = "jwt")]
#[test]
fn hmac_and_jwt_tenants_may_not_share_a_secret() {
    let jwt = KeySet::single(Key::jwt(secret()).with_id("jwt-1"));
    let (first, second) = shared(TenantMap::new().tenant("jwt", jwt).unwrap().tenant("plain", plain()).unwrap_err());
    assert_eq!((first.scheme.as_str(), second.scheme.as_str()), ("jwt", "hmac"));
}

#[test]
fn what_stays_allowed() {
    // One secret, one scheme, several tenants (their identities are still told apart by the tenant).
    let map = TenantMap::new().tenant("a", plain()).unwrap().tenant("b", plain()).unwrap();
    // A tenant's own policy may change scheme when it is replaced.
    let mut map = map.tenant("a", TenantPolicy::new(plain())).unwrap();
    assert!(map.insert("b", stamped()).is_err(), "tenant a still uses the secret for plain HMAC");
    map.insert("a", stamped()).unwrap_err();
    let map = TenantMap::new().tenant("a", plain()).unwrap().tenant("a", stamped()).unwrap();
    assert_eq!(map.get(Some("a")).unwrap().keys().keys()[0].scheme(), stamped().keys()[0].scheme());
    // Distinct secrets never conflict.
    let other = Secret::text("another-secret-0123456789").unwrap();
    TenantMap::from_tenants([("a", plain()), ("b", KeySet::single(Key::timestamped_hmac(Identifier::UserId, other)))])
        .unwrap();
}
