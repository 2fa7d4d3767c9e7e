//! Strict HS256 JWT verification (feature `jwt`); tokens are minted by
//! [`sign::jwt`](crate::sign::jwt).
//!
//! Built on the crate's own HMAC-SHA256 instead of a general JWT library: the
//! only algorithm is HS256, so there is no algorithm negotiation to get
//! wrong, the signature is checked before the payload is parsed, and
//! verification is one HMAC plus two small JSON parses.
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

use std::sync::Arc;

use base64_simd::{Out, URL_SAFE_NO_PAD};
use bytes::Bytes;
use hmac::Mac;

use super::strict_json::{Fields, Scalar};
use super::{Failure, Malformed, Proof};
use crate::claim::IdStr;
pub use crate::identity::SignedClaims;
use crate::identity::{Extra, Unsigned};
use crate::key::{Identifier, Key, KeySet, Scheme};

/// JWT limits.
///
/// ```
/// use tower_identity::verify::JwtOptions;
///
/// let options = JwtOptions::default().max_lifetime(300).require_iat(true);
/// assert_eq!(options.get_max_lifetime(), 300);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct JwtOptions {
    max_token_len: usize,
    max_lifetime: u64,
    leeway: u64,
    require_iat: bool,
}

impl Default for JwtOptions {
    fn default() -> Self {
        JwtOptions { max_token_len: 8192, max_lifetime: 900, leeway: 0, require_iat: false }
    }
}

impl JwtOptions {
    /// Longest accepted token, in bytes, checked before decoding. Default 8192.
    #[must_use]
    pub fn max_token_len(mut self, len: usize) -> Self {
        self.max_token_len = len;
        self
    }

    /// Longest accepted lifetime in seconds (`exp - iat`, or `exp - now`
    /// when the token has no `iat`). Default 900 (15 minutes).
    #[must_use]
    pub fn max_lifetime(mut self, secs: u64) -> Self {
        self.max_lifetime = secs;
        self
    }

    /// Clock leeway in seconds for `exp`, `nbf` and `iat`. Default 0.
    #[must_use]
    pub fn leeway(mut self, secs: u64) -> Self {
        self.leeway = secs;
        self
    }

    /// Refuse tokens without `iat`. Default `false`: npm `jsonwebtoken` with
    /// `noTimestamp` and other signers omit it, and the lifetime bound then
    /// applies from now.
    #[must_use]
    pub fn require_iat(mut self, require: bool) -> Self {
        self.require_iat = require;
        self
    }

    /// The longest accepted token, in bytes.
    pub fn get_max_token_len(&self) -> usize {
        self.max_token_len
    }

    /// The longest accepted lifetime, in seconds.
    pub fn get_max_lifetime(&self) -> u64 {
        self.max_lifetime
    }

    /// The clock leeway, in seconds.
    pub fn get_leeway(&self) -> u64 {
        self.leeway
    }

    /// Whether tokens without `iat` are refused.
    pub fn get_require_iat(&self) -> bool {
        self.require_iat
    }
}

/// Strict base64url: the URL-safe alphabet, no padding, a length that is not
/// 1 mod 4, and the unused bits of the last character zero (one encoding per
/// byte string, RFC 7515 §2 and RFC 4648 §3.5).
fn b64(part: &[u8]) -> Result<Vec<u8>, Failure> {
    URL_SAFE_NO_PAD.decode_to_vec(part).map_err(|_| Failure::Malformed(Malformed::Token))
}

/// [`b64`] into `out`, which must have room for the decoded bytes.
fn b64_into<'o>(part: &[u8], out: &'o mut [u8]) -> Result<&'o [u8], Failure> {
    let malformed = Failure::Malformed(Malformed::Token);
    let len = URL_SAFE_NO_PAD.decoded_length(part).map_err(|_| malformed)?;
    let out = out.get_mut(..len).ok_or(malformed)?;
    URL_SAFE_NO_PAD.decode(part, Out::from_slice(out)).map(|decoded| &*decoded).map_err(|_| malformed)
}

/// The slots of the header fields the verifier reads.
mod header {
    pub(super) const ALG: usize = 0;
    pub(super) const TYP: usize = 1;
    pub(super) const KID: usize = 2;
    /// Refused: the verifier understands no extension, and keys never come
    /// from the token.
    pub(super) const REFUSED: [usize; 5] = [3, 4, 5, 6, 7];

    pub(super) fn slot(name: &str) -> Option<usize> {
        Some(match name {
            "alg" => ALG,
            "typ" => TYP,
            "kid" => KID,
            "crit" => REFUSED[0],
            "jwk" => REFUSED[1],
            "jku" => REFUSED[2],
            "x5u" => REFUSED[3],
            "x5c" => REFUSED[4],
            _ => return None,
        })
    }
}

/// The slots of the payload claims the verifier reads.
mod claim {
    pub(super) const EXP: usize = 0;
    pub(super) const IAT: usize = 1;
    pub(super) const NBF: usize = 2;
    pub(super) const AUD: usize = 3;
    pub(super) const SUB: usize = 4;
    pub(super) const USER_ID: usize = 5;
    pub(super) const EMAIL: usize = 6;
    pub(super) const VISITOR_ID: usize = 7;

    pub(super) fn slot(name: &str) -> Option<usize> {
        Some(match name {
            "exp" => EXP,
            "iat" => IAT,
            "nbf" => NBF,
            "aud" => AUD,
            "sub" => SUB,
            "user_id" => USER_ID,
            "email" => EMAIL,
            "visitor_id" => VISITOR_ID,
            _ => return None,
        })
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
    /// When the token stops verifying: `exp` (plus the leeway), or the key's
    /// `not_after` when that comes first.
    pub(crate) valid_until: u64,
    pub(crate) claims: SignedClaims,
}

/// Verifies the signature of a compact HS256 JWS against the JWT keys of
/// `keys` that are valid at `now`, and returns the key that matched and the
/// decoded payload. Checks the header (`alg`, `crit`, `typ`, `kid`, …) and
/// the encoding, but no claims: use it for tokens whose payload is not a
/// claim set.
///
/// ```
/// use tower_identity::verify::jwt::{self, JwtOptions};
/// use tower_identity::{sign, Key, KeySet, Secret};
///
/// let secret = Secret::text("jwt-secret-shown-once-in-the-dashboard").unwrap();
/// let token = sign::jwt_token(&secret, "app_1", "jane@example.com", None, 1_767_225_600, 600, []);
/// let keys = KeySet::single(Key::jwt(secret));
/// let (_key, payload) = jwt::verify_jws(&token, &keys, 1_767_225_600, &JwtOptions::default()).unwrap();
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
    let (h64, p64, s64) = split_jws(token).ok_or(malformed)?;
    if h64.is_empty() || p64.is_empty() || s64.is_empty() {
        return Err(malformed);
    }
    // A header is a few dozen bytes: decoded on the stack unless unusually long.
    let mut stack = [0u8; 384];
    let heap;
    let header_json: &[u8] = if h64.len() <= 512 {
        b64_into(h64, &mut stack)?
    } else {
        heap = b64(h64)?;
        &heap
    };
    let mut header = Fields::<8>::new(header::slot);
    header.read(header_json)?;
    if header.get(header::ALG).and_then(Scalar::as_str) != Some("HS256") {
        return Err(Failure::Invalid);
    }
    if header::REFUSED.iter().any(|&slot| header.get(slot).is_some()) {
        return Err(Failure::Invalid);
    }
    if let Some(typ) = header.get(header::TYP)
        && !typ.as_str().is_some_and(|t| t.eq_ignore_ascii_case("JWT"))
    {
        return Err(Failure::Invalid);
    }
    let kid = header.string(header::KID)?;
    // 43 base64url characters are exactly 32 bytes; decoded in place, no allocation.
    let mut tag = [0u8; 32];
    if s64.len() != 43 || b64_into(s64, &mut tag)?.len() != 32 {
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

/// The three dot-separated parts of a compact JWS, found with `memchr`
/// (word at a time, where a byte-by-byte split of a token of a few hundred
/// bytes costs more than decoding its header); `None` unless exactly three.
fn split_jws(token: &[u8]) -> Option<(&[u8], &[u8], &[u8])> {
    let (h64, rest) = token.split_at(memchr::memchr(b'.', token)?);
    let rest = &rest[1..];
    let (p64, rest) = rest.split_at(memchr::memchr(b'.', rest)?);
    let s64 = &rest[1..];
    memchr::memchr(b'.', s64).is_none().then_some((h64, p64, s64))
}

/// Verifies an HS256 token against the JWT keys of `keys`.
pub(crate) fn verify_token(token: &[u8], keys: &KeySet, now: u64, opts: &JwtOptions) -> Result<VerifiedToken, Failure> {
    let malformed = Failure::Malformed(Malformed::Token);
    let (key, payload) = verify_jws_bytes(token, keys, now, opts)?;
    // Authentic from here on: check the claims.
    let payload = Bytes::from(payload);
    let mut claims = Fields::<8>::new(claim::slot);
    claims.read(&payload)?;
    let exp = claims.numeric(claim::EXP)?.ok_or(malformed)?;
    let iat = claims.numeric(claim::IAT)?;
    let nbf = claims.numeric(claim::NBF)?;
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
        let ok = match claims.get(claim::AUD) {
            Some(Scalar::Str(a) | Scalar::OneStrList(a)) => **a == *expected,
            _ => false,
        };
        if !ok {
            return Err(Failure::Invalid);
        }
    }
    let user_id = match claims.string(claim::SUB)? {
        Some(sub) => Some(sub),
        None => claims.string(claim::USER_ID)?,
    };
    let (user_id, email, visitor_id) = (
        user_id.map(|v| IdStr::shared_in(&payload, v)),
        claims.string(claim::EMAIL)?.map(|v| IdStr::shared_in(&payload, v)),
        claims.string(claim::VISITOR_ID)?.map(|v| IdStr::shared_in(&payload, v)),
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
        claims: SignedClaims::new(payload),
    })
}

impl VerifiedToken {
    /// The proof: the primary identifier (the email, else the user id, else
    /// the visitor id) as the subject, the others and the claims shared.
    pub(crate) fn into_proof(self) -> Proof {
        let VerifiedToken { key_id, mut user_id, mut email, mut visitor_id, issued_at, valid_until, claims } = self;
        let (subject, id) = if let Some(id) = email.take() {
            (Identifier::Email, id)
        } else if let Some(id) = user_id.take() {
            (Identifier::UserId, id)
        } else {
            // `verify_token` refuses a token that signs no identifier.
            (Identifier::VisitorId, visitor_id.take().unwrap_or(IdStr::from_static("")))
        };
        let extra = Extra { user_id, email, visitor_id, claims: Some(claims), unsigned: Unsigned::default() };
        Proof::Jwt { subject, id, key_id, signed_at: issued_at, valid_until, extra: Arc::new(extra) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_jws_has_exactly_three_parts() {
        assert_eq!(split_jws(b"a.b.c"), Some((&b"a"[..], &b"b"[..], &b"c"[..])));
        assert_eq!(split_jws(b"..",), Some((&b""[..], &b""[..], &b""[..])));
        for bad in [&b""[..], b"abc", b"a.b", b"a.b.c.d", b"a.b.c."] {
            assert_eq!(split_jws(bad), None, "{:?}", std::str::from_utf8(bad));
        }
    }
    use crate::verify::strict_json::MAX_KEYS;

    #[test]
    fn base64url_is_strict() {
        let decode = |part: &str| {
            let mut out = [0u8; 16];
            let on_stack = b64_into(part.as_bytes(), &mut out).map(<[u8]>::to_vec);
            assert_eq!(on_stack, b64(part.as_bytes()), "{part:?}");
            on_stack.ok()
        };
        assert_eq!(decode("QQ"), Some(b"A".to_vec()));
        assert_eq!(decode("QUI"), Some(b"AB".to_vec()));
        assert_eq!(decode("QUJD"), Some(b"ABC".to_vec()));
        assert_eq!(decode("-_-_"), Some(vec![0xfb, 0xff, 0xbf]));
        assert_eq!(decode(""), Some(vec![]));
        for bad in [
            // The unused bits of the last character set: another spelling of the same bytes.
            "QR", "QT", "QUJ", "QUK", "QUJDQR",
            // Padding, a length of 1 mod 4, the standard alphabet, anything else.
            "QQ==", "QUI=", "QQ=", "Q", "QUJDQ", "+/+/", "QU+D", "QU/D", "QUJ\n", " QUJD", "QUJD ", "QU.D", "QU\0D",
        ] {
            assert_eq!(decode(bad), None, "{bad:?}");
        }
        // Longer than the SIMD blocks: the tail is checked as strictly.
        let long = "QUJD".repeat(20);
        assert!(b64(format!("{long}QQ").as_bytes()).is_ok());
        assert!(b64(format!("{long}QR").as_bytes()).is_err());
        assert!(b64(format!("{long}Q").as_bytes()).is_err());
        assert!(b64(format!("{long}QQ==").as_bytes()).is_err());
        let mut out = [0u8; 2];
        assert!(b64_into(b"QUJD", &mut out).is_err(), "no room: refused, not truncated");
    }

    #[test]
    fn strict_object_refuses_duplicates() {
        let read = |json: &[u8]| Fields::<8>::parse(claim::slot, json).map(|_| ());
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
        let f = Fields::<8>::parse(claim::slot, json).unwrap();
        assert_eq!(f.numeric(claim::EXP), Ok(Some(17)));
        assert!(f.numeric(claim::IAT).is_err() && f.numeric(claim::NBF).is_err());
        assert!(matches!(f.get(claim::AUD), Some(Scalar::OneStrList(a)) if a == "app"));
        assert_eq!(f.string(claim::EMAIL), Ok(Some("a@b")));
        assert_eq!(f.string(claim::SUB), Ok(Some("x")));
        assert!(f.string(claim::USER_ID).is_err());
        assert_eq!(f.string(claim::VISITOR_ID), Ok(None));
        let zero = Fields::<8>::parse(claim::slot, br#"{"exp":-0}"#).unwrap();
        assert!(zero.numeric(claim::EXP).is_err(), "-0 is a float to serde_json, as it was to its Value");
        let two = Fields::<8>::parse(claim::slot, br#"{"aud":["a","b"]}"#).unwrap();
        assert!(matches!(two.get(claim::AUD), Some(Scalar::Other)));
    }
}
