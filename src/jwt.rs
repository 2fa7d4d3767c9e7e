//! Strict HS256 JWT verification and signing (feature `jwt`).
//!
//! Built on the crate's own HMAC-SHA256 instead of a general JWT library: the
//! only algorithm is HS256, so there is no algorithm negotiation to get
//! wrong, the signature is checked before the payload is parsed, and the
//! verification costs one HMAC plus two small JSON parses.
//!
//! Rules: compact serialization only; strict base64url without padding
//! (canonical trailing bits); header `alg` exactly `HS256`; `crit`, `jwk`,
//! `jku`, `x5u`, `x5c` refused; `typ`, when present, `JWT`; an optional `kid`
//! selects the key; duplicate JSON keys refused; `exp` required (a
//! non-negative integer); `iat` optional unless required by
//! [`JwtOptions::require_iat`], never in the future; the lifetime `exp - iat`
//! (or `exp - now` without `iat`) at most [`JwtOptions::max_lifetime`]; `nbf`
//! honoured; `aud` checked when the key set has an audience (a string, or an
//! array of exactly one string).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{KeyInit, Mac};
use serde::de::{self, Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::Value;

use crate::identity::IdStr;
use crate::key::{HmacSha256, Identifier, Key, KeySet, Scheme};
use crate::secret::Secret;
use crate::verify::{Failure, Malformed};

/// JWT limits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JwtOptions {
    /// Longest accepted token, in bytes, checked before decoding. Default 8192.
    pub max_token_len: usize,
    /// Longest accepted lifetime in seconds (`exp - iat`, or `exp - now`
    /// when the token has no `iat`). Default 900 (15 minutes).
    pub max_lifetime: u64,
    /// Clock leeway in seconds for `exp`, `nbf` and `iat`. Default 0.
    pub leeway: u64,
    /// Refuse tokens without `iat`. Default `false`: npm `jsonwebtoken` with
    /// `noTimestamp` and other signers omit it, and the lifetime bound then
    /// applies from now.
    pub require_iat: bool,
}

impl Default for JwtOptions {
    fn default() -> Self {
        JwtOptions { max_token_len: 8192, max_lifetime: 900, leeway: 0, require_iat: false }
    }
}

/// The claims a verified token carries, all of them, kept apart from
/// unsigned metadata.
#[derive(Clone, PartialEq, Eq)]
pub struct SignedClaims(BTreeMap<String, Value>);

impl SignedClaims {
    /// A claim by name.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.0.get(name)
    }

    /// A string claim by name.
    pub fn get_str(&self, name: &str) -> Option<&str> {
        self.0.get(name).and_then(Value::as_str)
    }

    /// `name`
    pub fn name(&self) -> Option<&str> {
        self.get_str("name")
    }

    /// `account_id`
    pub fn account_id(&self) -> Option<&str> {
        self.get_str("account_id")
    }

    /// `account_external_id`
    pub fn account_external_id(&self) -> Option<&str> {
        self.get_str("account_external_id")
    }

    /// `contact_id`
    pub fn contact_id(&self) -> Option<&str> {
        self.get_str("contact_id")
    }

    /// `contact_external_id`
    pub fn contact_external_id(&self) -> Option<&str> {
        self.get_str("contact_external_id")
    }

    /// All claims.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v))
    }
}

impl fmt::Debug for SignedClaims {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.0.iter()).finish()
    }
}

/// A JSON object that refuses duplicate keys (at this level and below).
struct StrictObject(BTreeMap<String, Value>);

struct StrictValue(Value);

impl<'de> Deserialize<'de> for StrictObject {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match StrictValue::deserialize(d)?.0 {
            Value::Object(m) => Ok(StrictObject(m.into_iter().collect())),
            _ => Err(de::Error::custom("expected a JSON object")),
        }
    }
}

impl<'de> Deserialize<'de> for StrictValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = StrictValue;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_bool<E>(self, v: bool) -> Result<StrictValue, E> {
                Ok(StrictValue(Value::Bool(v)))
            }
            fn visit_i64<E>(self, v: i64) -> Result<StrictValue, E> {
                Ok(StrictValue(v.into()))
            }
            fn visit_u64<E>(self, v: u64) -> Result<StrictValue, E> {
                Ok(StrictValue(v.into()))
            }
            fn visit_f64<E>(self, v: f64) -> Result<StrictValue, E> {
                Ok(StrictValue(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number)))
            }
            fn visit_str<E>(self, v: &str) -> Result<StrictValue, E> {
                Ok(StrictValue(Value::String(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<StrictValue, E> {
                Ok(StrictValue(Value::String(v)))
            }
            fn visit_unit<E>(self) -> Result<StrictValue, E> {
                Ok(StrictValue(Value::Null))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<StrictValue, A::Error> {
                let mut out = Vec::new();
                while let Some(StrictValue(v)) = seq.next_element()? {
                    out.push(v);
                }
                Ok(StrictValue(Value::Array(out)))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<StrictValue, A::Error> {
                let mut out = serde_json::Map::new();
                while let Some(k) = map.next_key::<String>()? {
                    let StrictValue(v) = map.next_value()?;
                    if out.insert(k, v).is_some() {
                        return Err(de::Error::custom("duplicate key"));
                    }
                }
                Ok(StrictValue(Value::Object(out)))
            }
        }
        d.deserialize_any(V)
    }
}

fn b64(part: &str) -> Result<Vec<u8>, Failure> {
    URL_SAFE_NO_PAD.decode(part).map_err(|_| Failure::Malformed(Malformed::Token))
}

fn object(bytes: &[u8]) -> Result<BTreeMap<String, Value>, Failure> {
    serde_json::from_slice::<StrictObject>(bytes).map(|o| o.0).map_err(|_| Failure::Malformed(Malformed::Token))
}

fn numeric(claims: &BTreeMap<String, Value>, name: &str) -> Result<Option<u64>, Failure> {
    match claims.get(name) {
        None => Ok(None),
        Some(v) => v.as_u64().map(Some).ok_or(Failure::Malformed(Malformed::Token)),
    }
}

fn string_claim(claims: &BTreeMap<String, Value>, name: &str) -> Result<Option<IdStr>, Failure> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(IdStr::from(s.as_str()))),
        Some(_) => Err(Failure::Malformed(Malformed::Token)),
    }
}

/// What a verified token proves.
pub(crate) struct VerifiedToken {
    /// The id of the key that verified (not the key: that would copy the secret).
    pub(crate) key_id: Option<Arc<str>>,
    pub(crate) user_id: Option<IdStr>,
    pub(crate) email: Option<IdStr>,
    pub(crate) visitor_id: Option<IdStr>,
    pub(crate) issued_at: Option<u64>,
    pub(crate) claims: Arc<SignedClaims>,
}

/// Verifies the signature of a compact HS256 JWS against the JWT keys of
/// `keys` that are valid at `now`, and returns the key that matched and the
/// decoded payload. Checks the header (`alg`, `crit`, `typ`, `kid`, …) and
/// the encoding, but no claims: use it for tokens whose payload is not a
/// claim set.
///
/// ```
/// use tower_identity::{jwt, Key, KeySet, Secret};
///
/// let secret = Secret::text("jwt-secret-shown-once-in-the-dashboard").unwrap();
/// let token = jwt::token(&secret, "app_1", "jane@example.com", None, 1_767_225_600, 600, []);
/// let keys = KeySet::single(Key::jwt(secret));
/// let (_key, payload) = jwt::verify_jws(&token, &keys, 1_767_225_600, &jwt::JwtOptions::default()).unwrap();
/// assert!(payload.starts_with(b"{"));
/// ```
pub fn verify_jws<'k>(
    token: &str,
    keys: &'k KeySet,
    now: u64,
    opts: &JwtOptions,
) -> Result<(&'k Key, Vec<u8>), Failure> {
    let malformed = Failure::Malformed(Malformed::Token);
    if token.is_empty() || token.len() > opts.max_token_len {
        return Err(malformed);
    }
    let mut parts = token.split('.');
    let (Some(h64), Some(p64), Some(s64), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(malformed);
    };
    if h64.is_empty() || p64.is_empty() || s64.is_empty() {
        return Err(malformed);
    }
    let header = object(&b64(h64)?)?;
    if header.get("alg").and_then(Value::as_str) != Some("HS256") {
        return Err(Failure::Invalid);
    }
    if ["crit", "jwk", "jku", "x5u", "x5c"].iter().any(|k| header.contains_key(*k)) {
        return Err(Failure::Invalid);
    }
    if let Some(typ) = header.get("typ")
        && !typ.as_str().is_some_and(|t| t.eq_ignore_ascii_case("JWT"))
    {
        return Err(Failure::Invalid);
    }
    let kid = match header.get("kid") {
        None => None,
        Some(Value::String(k)) => Some(k.as_str()),
        Some(_) => return Err(malformed),
    };
    let mut tag = [0u8; 32];
    match b64(s64) {
        Ok(sig) if sig.len() == 32 => tag.copy_from_slice(&sig),
        _ => return Err(malformed),
    }
    let payload = b64(p64)?;
    let signed = &token[..h64.len() + 1 + p64.len()];
    let key = keys
        .keys()
        .iter()
        .filter(|k| matches!(k.scheme, Scheme::Jwt) && k.is_valid_at(now))
        .filter(|k| kid.is_none_or(|kid| k.id.as_deref() == Some(kid)))
        .find(|k| {
            let mut mac = k.mac.clone();
            mac.update(signed.as_bytes());
            mac.verify_slice(&tag).is_ok()
        })
        .ok_or(Failure::Invalid)?;
    Ok((key, payload))
}

/// Verifies an HS256 token against the JWT keys of `keys`.
pub(crate) fn verify_token(token: &str, keys: &KeySet, now: u64, opts: &JwtOptions) -> Result<VerifiedToken, Failure> {
    let malformed = Failure::Malformed(Malformed::Token);
    let (key, payload) = verify_jws(token, keys, now, opts)?;
    // Authentic from here on: check the claims.
    let claims = object(&payload)?;
    let exp = numeric(&claims, "exp")?.ok_or(malformed)?;
    let iat = numeric(&claims, "iat")?;
    let nbf = numeric(&claims, "nbf")?;
    if opts.require_iat && iat.is_none() {
        return Err(malformed);
    }
    if let Some(iat) = iat {
        if iat > now.saturating_add(opts.leeway) {
            return Err(Failure::NotYetValid);
        }
        if exp < iat {
            return Err(Failure::Invalid);
        }
    }
    if now >= exp.saturating_add(opts.leeway) {
        return Err(Failure::Expired);
    }
    let lifetime = exp - iat.unwrap_or(now).min(exp);
    if lifetime > opts.max_lifetime {
        return Err(Failure::LifetimeTooLong);
    }
    if nbf.is_some_and(|nbf| nbf > now.saturating_add(opts.leeway)) {
        return Err(Failure::NotYetValid);
    }
    if let Some(expected) = keys.audience() {
        let ok = match claims.get("aud") {
            Some(Value::String(a)) => a == expected,
            Some(Value::Array(list)) => list.len() == 1 && list[0].as_str() == Some(expected),
            _ => false,
        };
        if !ok {
            return Err(Failure::Invalid);
        }
    }
    let user_id = match string_claim(&claims, "sub")? {
        Some(sub) => Some(sub),
        None => string_claim(&claims, "user_id")?,
    };
    let email = string_claim(&claims, "email")?;
    let visitor_id = string_claim(&claims, "visitor_id")?;
    if user_id.is_none() && email.is_none() && visitor_id.is_none() {
        return Err(Failure::Malformed(Malformed::IdentifierMissing));
    }
    Ok(VerifiedToken {
        key_id: key.id.clone(),
        user_id,
        email,
        visitor_id,
        issued_at: iat,
        claims: Arc::new(SignedClaims(claims)),
    })
}

impl VerifiedToken {
    /// The primary identifier: the email (seed 002), else the user id, else the visitor id.
    pub(crate) fn subject(&self) -> Identifier {
        if self.email.is_some() {
            Identifier::Email
        } else if self.user_id.is_some() {
            Identifier::UserId
        } else {
            Identifier::VisitorId
        }
    }
}

/// Mints an HS256 token with `claims` (a JSON object) and an optional `kid`.
///
/// The caller sets `exp` (and `iat`); [`token`] does it for you.
pub fn encode(secret: &Secret, kid: Option<&str>, claims: &serde_json::Map<String, Value>) -> String {
    let mut header = serde_json::Map::new();
    header.insert("alg".into(), "HS256".into());
    header.insert("typ".into(), "JWT".into());
    if let Some(kid) = kid {
        header.insert("kid".into(), kid.into());
    }
    let h64 = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header).expect("a JSON map serializes"));
    let p64 = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).expect("a JSON map serializes"));
    let signing_input = format!("{h64}.{p64}");
    let mut mac = HmacSha256::new_from_slice(secret.expose()).expect("HMAC accepts keys of any length");
    mac.update(signing_input.as_bytes());
    let s64 = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    format!("{signing_input}.{s64}")
}

/// Mints the short-lived token seed 002 describes: `email`, optional `name`,
/// `aud` (the app id), `iat` = `now` and `exp` = `now + lifetime_secs`, plus
/// any `extra` claims (`account_id`, `sub`, …).
///
/// ```
/// use tower_identity::{jwt, Secret};
///
/// let secret = Secret::text("jwt-secret-shown-once-in-the-dashboard").unwrap();
/// let token = jwt::token(&secret, "app_3b1d9e", "jane@example.com", Some("Jane Doe"), 1_767_225_600, 600, []);
/// assert_eq!(token.split('.').count(), 3);
/// ```
pub fn token<'a>(
    secret: &Secret,
    app_id: &str,
    email: &str,
    name: Option<&str>,
    now: u64,
    lifetime_secs: u64,
    extra: impl IntoIterator<Item = (&'a str, Value)>,
) -> String {
    let mut claims = serde_json::Map::new();
    claims.insert("email".into(), email.into());
    if let Some(name) = name {
        claims.insert("name".into(), name.into());
    }
    claims.insert("aud".into(), app_id.into());
    claims.insert("iat".into(), now.into());
    claims.insert("exp".into(), now.saturating_add(lifetime_secs).into());
    for (k, v) in extra {
        claims.insert(k.into(), v);
    }
    encode(secret, None, &claims)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strict_object_refuses_duplicates() {
        assert!(object(br#"{"a":1,"a":1}"#).is_err());
        assert!(object(br#"{"a":{"b":1,"b":2}}"#).is_err());
        assert!(object(br#"{"a":1,"b":[{"c":1}]}"#).is_ok());
        assert!(object(b"[1]").is_err());
    }
}
