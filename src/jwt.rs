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
//! selects the key; duplicate JSON keys refused, and objects of more than 64
//! keys besides the checked ones; `exp` required (a
//! non-negative integer); `iat` optional unless required by
//! [`JwtOptions::require_iat`], never in the future; the lifetime `exp - iat`
//! (or `exp - now` without `iat`) at most [`JwtOptions::max_lifetime`]; `nbf`
//! honoured; `aud` checked when the key set has an audience (a string, or an
//! array of exactly one string).

use std::borrow::Cow;
use std::fmt;
use std::sync::{Arc, OnceLock};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use hmac::{KeyInit, Mac};
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use crate::identity::IdStr;
use crate::json_key::JsonKey;
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
///
/// Verification reads only the claims it checks, in one pass over the
/// payload; the full claim set is parsed on first use (once per request, and
/// only by handlers that ask).
#[derive(Clone)]
pub struct SignedClaims {
    /// The decoded payload, already checked to be a JSON object without duplicate keys.
    payload: Bytes,
    parsed: OnceLock<Map<String, Value>>,
}

impl PartialEq for SignedClaims {
    fn eq(&self, other: &Self) -> bool {
        self.payload == other.payload
    }
}
impl Eq for SignedClaims {}

impl SignedClaims {
    fn new(payload: Bytes) -> SignedClaims {
        SignedClaims { payload, parsed: OnceLock::new() }
    }

    fn map(&self) -> &Map<String, Value> {
        // Checked during verification: a JSON object, so this cannot fail.
        self.parsed.get_or_init(|| serde_json::from_slice(&self.payload).unwrap_or_default())
    }

    /// A claim by name.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.map().get(name)
    }

    /// A string claim by name.
    pub fn get_str(&self, name: &str) -> Option<&str> {
        self.get(name).and_then(Value::as_str)
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
        self.map().iter().map(|(k, v)| (k.as_str(), v))
    }
}

impl fmt::Debug for SignedClaims {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.map().iter()).finish()
    }
}

/// A JSON value as the verifier needs it: a string (borrowed from the
/// decoded bytes when it has no escapes), a non-negative integer, an array of
/// exactly one string (`aud`), or anything else, checked but not kept.
enum Scalar<'de> {
    Str(Cow<'de, str>),
    U64(u64),
    OneStrList(Cow<'de, str>),
    Other,
}

impl<'de> Scalar<'de> {
    fn as_str(&self) -> Option<&str> {
        match self {
            Scalar::Str(s) => Some(s),
            _ => None,
        }
    }
}

/// Visits a JSON value strictly: duplicate object keys are refused at every
/// level. `keep` decides whether strings and integers are kept (`Scalar`) or
/// only checked (`Scalar::Other`).
struct Strict {
    keep: bool,
}

impl<'de> DeserializeSeed<'de> for Strict {
    type Value = Scalar<'de>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Scalar<'de>, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Strict {
    type Value = Scalar<'de>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<Scalar<'de>, E> {
        Ok(Scalar::Other)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Scalar<'de>, E> {
        // serde_json calls this for negative integers only.
        Ok(Scalar::Other)
    }
    fn visit_u64<E>(self, v: u64) -> Result<Scalar<'de>, E> {
        Ok(if self.keep { Scalar::U64(v) } else { Scalar::Other })
    }
    fn visit_f64<E>(self, _: f64) -> Result<Scalar<'de>, E> {
        Ok(Scalar::Other)
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Scalar<'de>, E> {
        Ok(if self.keep { Scalar::Str(Cow::Borrowed(v)) } else { Scalar::Other })
    }
    fn visit_str<E>(self, v: &str) -> Result<Scalar<'de>, E> {
        Ok(if self.keep { Scalar::Str(Cow::Owned(v.to_owned())) } else { Scalar::Other })
    }
    fn visit_unit<E>(self) -> Result<Scalar<'de>, E> {
        Ok(Scalar::Other)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Scalar<'de>, A::Error> {
        let mut items = 0;
        let mut only = None;
        while let Some(item) = seq.next_element_seed(Strict { keep: self.keep && items == 0 })? {
            items += 1;
            only = Some(item);
        }
        Ok(match only {
            Some(Scalar::Str(s)) if items == 1 => Scalar::OneStrList(s),
            _ => Scalar::Other,
        })
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Scalar<'de>, A::Error> {
        let mut seen: Vec<Cow<'de, str>> = Vec::new();
        while let Some(JsonKey(key)) = map.next_key()? {
            if seen.contains(&key) {
                return Err(de::Error::custom("duplicate key"));
            }
            if seen.len() == MAX_KEYS {
                return Err(de::Error::custom("too many keys"));
            }
            map.next_value_seed(Strict { keep: false })?;
            seen.push(key);
        }
        Ok(Scalar::Other)
    }
}

/// Most keys one JSON object in a token may have besides the ones the
/// verifier reads. The duplicate check compares each key with the ones before
/// it, and a header is parsed before its MAC is checked: a bound keeps a
/// forged token of `max_token_len` bytes from costing quadratic time.
const MAX_KEYS: usize = 64;

/// One pass over a JSON object (the header or the payload), keeping the
/// values of the `N` names the verifier reads and checking the rest: no
/// duplicate key at any level, valid JSON, nothing after the object.
struct Fields<'de, const N: usize> {
    /// The slot of a name the verifier reads (a `match`: no string compare loop).
    index: fn(&str) -> Option<usize>,
    values: [Option<Scalar<'de>>; N],
}

impl<'de, const N: usize> Fields<'de, N> {
    fn new(index: fn(&str) -> Option<usize>) -> Self {
        Fields { index, values: [const { None }; N] }
    }

    /// Reads `json` into these (empty) fields, in place: the fields are a
    /// few hundred bytes, not worth returning by value.
    fn read(&mut self, json: &'de [u8]) -> Result<(), Failure> {
        let mut de = serde_json::Deserializer::from_slice(json);
        self.deserialize(&mut de).and_then(|()| de.end()).map_err(|_| Failure::Malformed(Malformed::Token))
    }

    #[cfg(test)]
    fn parse(index: fn(&str) -> Option<usize>, json: &'de [u8]) -> Result<Self, Failure> {
        let mut fields = Fields::new(index);
        fields.read(json).map(|()| fields)
    }

    fn get(&self, name: &str) -> Option<&Scalar<'de>> {
        self.values.get((self.index)(name)?)?.as_ref()
    }

    /// A non-negative integer claim; any other type is malformed.
    fn numeric(&self, name: &str) -> Result<Option<u64>, Failure> {
        match self.get(name) {
            None => Ok(None),
            Some(Scalar::U64(v)) => Ok(Some(*v)),
            Some(_) => Err(Failure::Malformed(Malformed::Token)),
        }
    }

    /// A string claim; any other type is malformed.
    fn string(&self, name: &str) -> Result<Option<&str>, Failure> {
        match self.get(name) {
            None => Ok(None),
            Some(Scalar::Str(s)) => Ok(Some(s)),
            Some(_) => Err(Failure::Malformed(Malformed::Token)),
        }
    }
}

impl<'de, const N: usize> DeserializeSeed<'de> for &mut Fields<'de, N> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de, const N: usize> Visitor<'de> for &mut Fields<'de, N> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        // Keys the verifier does not read, for the duplicate check.
        let mut others: Vec<Cow<'de, str>> = Vec::new();
        while let Some(JsonKey(key)) = map.next_key()? {
            match (self.index)(&key).filter(|&i| i < N) {
                Some(i) => {
                    if self.values[i].is_some() {
                        return Err(de::Error::custom("duplicate key"));
                    }
                    self.values[i] = Some(map.next_value_seed(Strict { keep: true })?);
                }
                None => {
                    if others.contains(&key) {
                        return Err(de::Error::custom("duplicate key"));
                    }
                    if others.len() == MAX_KEYS {
                        return Err(de::Error::custom("too many keys"));
                    }
                    map.next_value_seed(Strict { keep: false })?;
                    others.push(key);
                }
            }
        }
        Ok(())
    }
}

fn b64(part: &[u8]) -> Result<Vec<u8>, Failure> {
    URL_SAFE_NO_PAD.decode(part).map_err(|_| Failure::Malformed(Malformed::Token))
}

/// The header fields the verifier reads.
fn header_field(name: &str) -> Option<usize> {
    Some(match name {
        "alg" => 0,
        "typ" => 1,
        "kid" => 2,
        "crit" => 3,
        "jwk" => 4,
        "jku" => 5,
        "x5u" => 6,
        "x5c" => 7,
        _ => return None,
    })
}

/// The payload claims the verifier reads.
fn payload_field(name: &str) -> Option<usize> {
    Some(match name {
        "exp" => 0,
        "iat" => 1,
        "nbf" => 2,
        "aud" => 3,
        "sub" => 4,
        "user_id" => 5,
        "email" => 6,
        "visitor_id" => 7,
        _ => return None,
    })
}

/// What a verified token proves.
pub(crate) struct VerifiedToken {
    /// The id of the key that verified (not the key: that would copy the secret).
    pub(crate) key_id: Option<Arc<str>>,
    pub(crate) user_id: Option<IdStr>,
    pub(crate) email: Option<IdStr>,
    pub(crate) visitor_id: Option<IdStr>,
    pub(crate) issued_at: Option<u64>,
    /// When the token stops verifying: `exp` (plus the leeway), or the key's
    /// `not_after` when that comes first.
    pub(crate) valid_until: u64,
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
    verify_jws_bytes(token.as_bytes(), keys, now, opts)
}

/// [`verify_jws`] on the token's bytes: a compact JWS is ASCII, so the layer
/// skips a UTF-8 check of the whole token.
fn verify_jws_bytes<'k>(
    token: &[u8],
    keys: &'k KeySet,
    now: u64,
    opts: &JwtOptions,
) -> Result<(&'k Key, Vec<u8>), Failure> {
    let malformed = Failure::Malformed(Malformed::Token);
    if token.is_empty() || token.len() > opts.max_token_len {
        return Err(malformed);
    }
    let mut parts = token.split(|&b| b == b'.');
    let (Some(h64), Some(p64), Some(s64), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(malformed);
    };
    if h64.is_empty() || p64.is_empty() || s64.is_empty() {
        return Err(malformed);
    }
    // A header is a few dozen bytes: decoded on the stack unless unusually long.
    let mut stack = [0u8; 384];
    let heap;
    let header_json: &[u8] = if h64.len() <= 512 {
        let len = URL_SAFE_NO_PAD.decode_slice(h64, &mut stack).map_err(|_| malformed)?;
        &stack[..len]
    } else {
        heap = b64(h64)?;
        &heap
    };
    let mut header = Fields::<8>::new(header_field);
    header.read(header_json)?;
    if header.get("alg").and_then(Scalar::as_str) != Some("HS256") {
        return Err(Failure::Invalid);
    }
    if ["crit", "jwk", "jku", "x5u", "x5c"].iter().any(|k| header.get(k).is_some()) {
        return Err(Failure::Invalid);
    }
    if let Some(typ) = header.get("typ")
        && !typ.as_str().is_some_and(|t| t.eq_ignore_ascii_case("JWT"))
    {
        return Err(Failure::Invalid);
    }
    let kid = header.string("kid")?;
    // 43 base64url characters are exactly 32 bytes; decoded in place, no allocation.
    let mut tag = [0u8; 32];
    if s64.len() != 43 || URL_SAFE_NO_PAD.decode_slice(s64, &mut tag) != Ok(32) {
        return Err(malformed);
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
            mac.update(signed);
            mac.verify_slice(&tag).is_ok()
        })
        .ok_or(Failure::Invalid)?;
    Ok((key, payload))
}

/// Verifies an HS256 token against the JWT keys of `keys`.
pub(crate) fn verify_token(token: &[u8], keys: &KeySet, now: u64, opts: &JwtOptions) -> Result<VerifiedToken, Failure> {
    let malformed = Failure::Malformed(Malformed::Token);
    let (key, payload) = verify_jws_bytes(token, keys, now, opts)?;
    // Authentic from here on: check the claims.
    let payload = Bytes::from(payload);
    let mut claims = Fields::<8>::new(payload_field);
    claims.read(&payload)?;
    let exp = claims.numeric("exp")?.ok_or(malformed)?;
    let iat = claims.numeric("iat")?;
    let nbf = claims.numeric("nbf")?;
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
            Some(Scalar::Str(a) | Scalar::OneStrList(a)) => **a == *expected,
            _ => false,
        };
        if !ok {
            return Err(Failure::Invalid);
        }
    }
    let user_id = match claims.string("sub")? {
        Some(sub) => Some(sub),
        None => claims.string("user_id")?,
    };
    let (user_id, email, visitor_id) = (
        user_id.map(|v| IdStr::shared_in(&payload, v)),
        claims.string("email")?.map(|v| IdStr::shared_in(&payload, v)),
        claims.string("visitor_id")?.map(|v| IdStr::shared_in(&payload, v)),
    );
    drop(claims);
    if user_id.is_none() && email.is_none() && visitor_id.is_none() {
        return Err(Failure::Malformed(Malformed::IdentifierMissing));
    }
    Ok(VerifiedToken {
        key_id: key.id.clone(),
        user_id,
        email,
        visitor_id,
        issued_at: iat,
        valid_until: key
            .not_after
            .map_or(exp.saturating_add(opts.leeway), |na| na.min(exp.saturating_add(opts.leeway))),
        claims: Arc::new(SignedClaims::new(payload)),
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
        let read = |json: &[u8]| Fields::<8>::parse(payload_field, json).map(|_| ());
        assert!(read(br#"{"a":1,"a":1}"#).is_err());
        assert!(read(br#"{"exp":1,"exp":1}"#).is_err());
        assert!(read(br#"{"exp":1,"\u0065xp":1}"#).is_err());
        assert!(read(br#"{"a":{"b":1,"b":2}}"#).is_err());
        assert!(read(br#"{"a":[{"b":1,"b":2}]}"#).is_err());
        assert!(read(br#"{"aud":{"b":1,"b":2}}"#).is_err());
        assert!(read(br#"{"a":1,"b":[{"c":1}]}"#).is_ok());
        assert!(read(b"[1]").is_err());
        assert!(read(br#"{"a":1} x"#).is_err());
        // At most MAX_KEYS keys besides the read ones, at every level.
        let object = |n: usize| format!("{{{}}}", (0..n).map(|i| format!("\"k{i}\":1")).collect::<Vec<_>>().join(","));
        assert!(read(object(MAX_KEYS).as_bytes()).is_ok());
        assert!(read(format!(r#"{{"exp":1,"iat":1,"x":{}}}"#, object(MAX_KEYS)).as_bytes()).is_ok());
        assert!(read(object(MAX_KEYS + 1).as_bytes()).is_err());
        assert!(read(format!(r#"{{"x":{}}}"#, object(MAX_KEYS + 1)).as_bytes()).is_err());
    }

    #[test]
    fn fields_keep_what_the_verifier_reads() {
        let json = br#"{"exp":17,"iat":-1,"aud":["app"],"email":"a\u0040b","sub":"x","nbf":1.5,"user_id":null}"#;
        let f = Fields::<8>::parse(payload_field, json).unwrap();
        assert_eq!(f.numeric("exp"), Ok(Some(17)));
        assert!(f.numeric("iat").is_err() && f.numeric("nbf").is_err());
        assert!(matches!(f.get("aud"), Some(Scalar::OneStrList(a)) if a == "app"));
        assert_eq!(f.string("email"), Ok(Some("a@b")));
        assert_eq!(f.string("sub"), Ok(Some("x")));
        assert!(f.string("user_id").is_err());
        assert_eq!(f.string("visitor_id"), Ok(None));
        let zero = Fields::<8>::parse(payload_field, br#"{"exp":-0}"#).unwrap();
        assert!(zero.numeric("exp").is_err(), "-0 is a float to serde_json, as it was to its Value");
        let two = Fields::<8>::parse(payload_field, br#"{"aud":["a","b"]}"#).unwrap();
        assert!(matches!(two.get("aud"), Some(Scalar::Other)));
    }
}
