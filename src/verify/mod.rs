//! The verification core: pure, synchronous and framework-free.
//!
//! `(claim, keys, now) -> Result<VerifiedIdentity, Failure>`. The layer uses
//! it; so can any other code:
//!
//! ```
//! use tower_identity::{verify::verify, claim::Claim, Identifier, Key, KeySet, Secret, verify::VerifyOptions};
//!
//! let keys = KeySet::single(Key::hmac(Identifier::UserId, Secret::text("SECRET_KEY").unwrap()));
//! let claim = Claim::new()
//!     .user_id("USER_ID")
//!     .signature("bfd6d64f93c2107b5a79f8e19cb1a64dcbbb9afc4361d3748c4a3a2e9bddc2a9");
//! let identity = verify(&claim, &keys, 1_767_225_600, &VerifyOptions::default()).unwrap();
//! assert_eq!(identity.user_id(), Some("USER_ID"));
//! ```

#[cfg(feature = "jwt")]
#[cfg_attr(docsrs, doc(cfg(feature = "jwt")))]
pub mod jwt;

#[cfg(feature = "jwt")]
mod flat_json;
mod hmac;
#[cfg(any(feature = "json", feature = "jwt"))]
pub(crate) mod strict_json;
mod unknown;

use std::fmt;

use crate::claim::{Claim, IdStr, Role};
pub use crate::code::ErrorCode;
use std::sync::Arc;

use crate::identity::{Extra, Seconds, Unsigned, VerifiedIdentity};
use crate::key::{Identifier, KeySet, Scheme};
#[cfg(feature = "jwt")]
pub use jwt::JwtOptions;
pub(crate) use unknown::{needs_time as unknown_needs_time, unknown_tenant};

/// The default cap on identifiers and tenant names, in bytes.
pub const DEFAULT_MAX_IDENTIFIER_LEN: usize = 256;

/// Limits applied during verification.
///
/// ```
/// use tower_identity::verify::VerifyOptions;
///
/// let options = VerifyOptions::default().max_age(600).max_identifier_len(128);
/// assert_eq!(options.get_max_age(), 600);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct VerifyOptions {
    max_age: u64,
    future_skew: u64,
    max_identifier_len: usize,
    #[cfg(feature = "jwt")]
    jwt: JwtOptions,
}

impl Default for VerifyOptions {
    fn default() -> Self {
        VerifyOptions {
            max_age: 3600,
            future_skew: 60,
            max_identifier_len: DEFAULT_MAX_IDENTIFIER_LEN,
            #[cfg(feature = "jwt")]
            jwt: JwtOptions::default(),
        }
    }
}

impl VerifyOptions {
    /// Oldest accepted timestamp, in seconds before now (timestamped HMAC).
    /// Default: 3600 (one hour).
    #[must_use]
    pub fn max_age(mut self, secs: u64) -> Self {
        self.max_age = secs;
        self
    }

    /// How far in the future a timestamp may be, in seconds (clock skew).
    /// Default: 60.
    #[must_use]
    pub fn future_skew(mut self, secs: u64) -> Self {
        self.future_skew = secs;
        self
    }

    /// Longest accepted identifier (user id, email, visitor id, and the
    /// identifiers signed into a token) and tenant name, in bytes. Default:
    /// 256. The layer applies it to tenant names at extraction: a longer one
    /// is refused before any lookup.
    #[must_use]
    pub fn max_identifier_len(mut self, len: usize) -> Self {
        self.max_identifier_len = len;
        self
    }

    /// JWT limits.
    #[cfg(feature = "jwt")]
    #[cfg_attr(docsrs, doc(cfg(feature = "jwt")))]
    #[must_use]
    pub fn jwt(mut self, jwt: JwtOptions) -> Self {
        self.jwt = jwt;
        self
    }

    /// The oldest accepted timestamp, in seconds before now.
    pub fn get_max_age(&self) -> u64 {
        self.max_age
    }

    /// The accepted clock skew for timestamps in the future, in seconds.
    pub fn get_future_skew(&self) -> u64 {
        self.future_skew
    }

    /// The longest accepted identifier, in bytes.
    pub fn get_max_identifier_len(&self) -> usize {
        self.max_identifier_len
    }

    /// The JWT limits.
    #[cfg(feature = "jwt")]
    #[cfg_attr(docsrs, doc(cfg(feature = "jwt")))]
    pub fn get_jwt(&self) -> &JwtOptions {
        &self.jwt
    }
}

/// Why a claim did not verify. Carries no request data, so it is safe to log.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Failure {
    /// No credential was sent.
    Missing,
    /// The credential or an identifier is not in an acceptable form.
    Malformed(Malformed),
    /// No currently valid key produces this signature (also: unknown tenant).
    Invalid,
    /// The signature is authentic but older than the maximum age.
    Expired,
    /// The signature is authentic but dated too far in the future.
    NotYetValid,
    /// The same role was given twice with different values.
    Conflict(Role),
    /// A token's lifetime exceeds the maximum.
    LifetimeTooLong,
    /// Identity values sent beside a token differ from its claims.
    ClaimsMismatch,
    /// The body that carries the identity is larger than the body limit.
    BodyTooLarge,
    /// The body that carries the identity has a `Content-Encoding`.
    BodyEncoded,
}

/// The ways a claim can be malformed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Malformed {
    /// The signature is not 64 hex characters (optionally followed by `-<unix_ts>`).
    Signature,
    /// The timestamp is not a canonical decimal number of at most 19 digits.
    Timestamp,
    /// The identifier the key signs was not sent.
    IdentifierMissing,
    /// An identifier is empty.
    EmptyIdentifier,
    /// An identifier is longer than the configured cap.
    IdentifierTooLong,
    /// An identifier contains control characters.
    IdentifierCharacters,
    /// An identifier or tenant name starts or ends with whitespace, which
    /// HTTP parsers (and many applications) trim: `"alice "` would reach an
    /// upstream as `alice`.
    Whitespace,
    /// A value is not valid UTF-8.
    NotUtf8,
    /// The token is not a well-formed compact HS256 JWT.
    Token,
    /// A body field for an identifier, signature or token is not a JSON string.
    NotAString,
    /// The body could not be parsed (invalid JSON, or a duplicate key).
    Body,
    /// Both a signature and a token were sent.
    SignatureAndToken,
}

impl Failure {
    /// The stable error code answered to the client.
    pub fn code(&self) -> ErrorCode {
        match self {
            Failure::Missing => ErrorCode::CredentialMissing,
            // A key of this tenant signs another identifier: answered like an
            // invalid signature, so a tenant's schemes cannot be probed.
            Failure::Malformed(Malformed::IdentifierMissing) => ErrorCode::SignatureInvalid,
            Failure::Malformed(_) => ErrorCode::CredentialMalformed,
            Failure::Invalid => ErrorCode::SignatureInvalid,
            Failure::Expired => ErrorCode::SignatureExpired,
            Failure::NotYetValid => ErrorCode::SignatureNotYetValid,
            Failure::Conflict(_) => ErrorCode::ConflictingValues,
            Failure::LifetimeTooLong => ErrorCode::TokenLifetimeTooLong,
            Failure::ClaimsMismatch => ErrorCode::ClaimsMismatch,
            Failure::BodyTooLarge => ErrorCode::BodyTooLarge,
            Failure::BodyEncoded => ErrorCode::BodyEncodingUnsupported,
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Malformed(m) => write!(f, "credential malformed: {m:?}"),
            Failure::Conflict(r) => write!(f, "conflicting values for {}", r.as_str()),
            other => f.write_str(other.code().as_str()),
        }
    }
}

impl std::error::Error for Failure {}

fn check_identifier(v: &IdStr, opts: &VerifyOptions) -> Result<(), Failure> {
    if v.as_bytes().is_empty() {
        return Err(Failure::Malformed(Malformed::EmptyIdentifier));
    }
    check_utf8(v.as_bytes(), opts.max_identifier_len)
}

/// The checks an identifier and a tenant name share: at most `max_len`
/// bytes, no control character, no leading or trailing whitespace. Exactly
/// the bytes received are signed and forwarded, so a value that two parsers
/// could read differently is refused rather than normalised. Works on the
/// bytes of text already known to be UTF-8 (an [`IdStr`] would be validated
/// again to be seen as `&str`).
pub(crate) fn check_utf8(utf8: &[u8], max_len: usize) -> Result<(), Failure> {
    if utf8.len() > max_len {
        return Err(Failure::Malformed(Malformed::IdentifierTooLong));
    }
    if has_control(utf8) {
        return Err(Failure::Malformed(Malformed::IdentifierCharacters));
    }
    if edge_is_whitespace(utf8) {
        return Err(Failure::Malformed(Malformed::Whitespace));
    }
    Ok(())
}

/// Whether valid UTF-8 text starts or ends with whitespace
/// (`char::is_whitespace`). ASCII edges are read directly; only a
/// multi-byte edge character is decoded.
fn edge_is_whitespace(utf8: &[u8]) -> bool {
    let (Some(&first), Some(&last)) = (utf8.first(), utf8.last()) else { return false };
    let ascii_space = |b: u8| char::from(b).is_whitespace();
    // An edge that does not decode (never the case for an `IdStr`) counts
    // as whitespace: refused, fail closed.
    let edge_space =
        |bytes: &[u8]| std::str::from_utf8(bytes).ok().and_then(|s| s.chars().next()).is_none_or(char::is_whitespace);
    let starts = if first.is_ascii() {
        ascii_space(first)
    } else {
        // A lead byte announces its length: 110x xxxx two, 1110 xxxx three, 1111 0xxx four.
        let len = first.leading_ones() as usize;
        edge_space(utf8.get(..len).unwrap_or(utf8))
    };
    let ends = if last.is_ascii() {
        ascii_space(last)
    } else {
        // The last character starts at the last byte that is not a continuation (10xx xxxx).
        let start = utf8.iter().rposition(|&b| b & 0xC0 != 0x80).unwrap_or(0);
        edge_space(&utf8[start..])
    };
    starts || ends
}

/// Whether valid UTF-8 text holds a control character (`char::is_control`:
/// U+0000–U+001F, U+007F–U+009F), on the bytes: C0 and DEL are single bytes,
/// C1 is `C2 80`–`C2 9F` (0xC2 is only ever a lead byte).
fn has_control(utf8: &[u8]) -> bool {
    // Printable ASCII, the usual case, in one vectorisable pass.
    if utf8.iter().all(|&b| (0x20..0x7F).contains(&b)) {
        return false;
    }
    utf8.iter().enumerate().any(|(i, &b)| {
        b < 0x20 || b == 0x7F || (b == 0xC2 && utf8.get(i + 1).is_some_and(|&n| (0x80..=0x9F).contains(&n)))
    })
}

/// Verifies `claim` against `keys` at time `now` (unix seconds).
///
/// For a signature, every currently valid key whose scheme matches the
/// signature's form is tried: a plain `<hex>` signature only against
/// [`Scheme::Hmac`] keys, a timestamped one only against
/// [`Scheme::TimestampedHmac`] keys. The tag is decoded to exactly 32 bytes
/// and compared in constant time. The signed bytes are the identifier exactly
/// as sent.
///
/// For a token (feature `jwt`), see [`jwt`]; identifier values sent
/// beside it must equal its claims ([`Failure::ClaimsMismatch`]).
pub fn verify(claim: &Claim, keys: &KeySet, now: u64, opts: &VerifyOptions) -> Result<VerifiedIdentity, Failure> {
    check(claim, keys, now, opts).map(|proof| proof.identity(&mut claim.clone_values()))
}

/// [`verify`] in two steps, for a caller that owns the claim (the layer):
/// `check` borrows it, then [`Proof::identity`] takes its values instead of
/// cloning them.
///
/// `now` is only read when a key has a validity window or a time-bound scheme
/// (timestamped HMAC, JWT) and its MAC matched: see [`KeySet::needs_time`].
pub(crate) fn check(claim: &Claim, keys: &KeySet, now: u64, opts: &VerifyOptions) -> Result<Proof, Failure> {
    for id in [&claim.user_id, &claim.email, &claim.visitor_id].into_iter().flatten() {
        check_identifier(id, opts)?;
    }
    match (claim.signature.as_ref(), claim.token.as_ref().map(IdStr::as_bytes)) {
        (None, None) => Err(Failure::Missing),
        (Some(_), Some(_)) => Err(Failure::Malformed(Malformed::SignatureAndToken)),
        (Some(sig), None) => hmac::verify(claim, sig.as_bytes(), keys, now, opts),
        #[cfg(feature = "jwt")]
        (None, Some(token)) => verify_jwt(claim, token, keys, now, opts),
        #[cfg(not(feature = "jwt"))]
        (None, Some(_)) => Err(Failure::Invalid),
    }
}

/// What a valid credential proved; turned into a [`VerifiedIdentity`] with
/// the claim's values once verification is over. Small (it is returned
/// through `check` on every request): a token's other identifiers and
/// claims are already in their shared [`Extra`].
pub(crate) enum Proof {
    /// An HMAC over the identifier `over`.
    Hmac {
        over: Identifier,
        scheme: Scheme,
        key_id: Option<Arc<str>>,
        signed_at: Option<u64>,
        valid_until: Option<u64>,
    },
    /// A JWT: the identifiers come from its claims.
    #[cfg(feature = "jwt")]
    Jwt {
        subject: Identifier,
        id: IdStr,
        key_id: Option<Arc<str>>,
        signed_at: Option<u64>,
        valid_until: u64,
        extra: Arc<Extra>,
    },
}

impl Proof {
    /// The scheme that verified.
    pub(crate) fn scheme(&self) -> Scheme {
        match self {
            Proof::Hmac { scheme, .. } => *scheme,
            #[cfg(feature = "jwt")]
            Proof::Jwt { .. } => Scheme::Jwt,
        }
    }

    /// The identity, made of the claim's values (taken, not cloned).
    pub(crate) fn identity(self, claim: &mut Claim) -> VerifiedIdentity {
        let tenant = claim.tenant.take();
        match self {
            Proof::Hmac { over, scheme, key_id, signed_at, valid_until } => {
                // Only the identifier the signature covers is proven; the
                // others (and metadata) are kept apart, shared only when sent.
                let id = claim.slot(over.role()).take().unwrap_or(IdStr::from_static(""));
                let unsigned = Unsigned {
                    user_id: claim.user_id.take(),
                    email: claim.email.take(),
                    visitor_id: claim.visitor_id.take(),
                    metadata: claim.metadata.take(),
                };
                let extra = if unsigned.is_empty() { None } else { Extra { unsigned, ..Extra::default() }.shared() };
                VerifiedIdentity {
                    subject: over,
                    scheme,
                    id,
                    tenant,
                    key_id,
                    signed_at: Seconds::new(signed_at),
                    valid_until: Seconds::new(valid_until),
                    extra,
                }
            }
            #[cfg(feature = "jwt")]
            Proof::Jwt { subject, id, key_id, signed_at, valid_until, mut extra } => {
                if let Some(metadata) = claim.metadata.take() {
                    // Made for this request by `verify_jwt`: not shared yet, so no copy.
                    Arc::make_mut(&mut extra).unsigned.metadata = Some(metadata);
                }
                VerifiedIdentity {
                    subject,
                    scheme: Scheme::Jwt,
                    id,
                    tenant,
                    key_id,
                    signed_at: Seconds::new(signed_at),
                    valid_until: Seconds::new(Some(valid_until)),
                    extra: Some(extra),
                }
            }
        }
    }
}

#[cfg(feature = "jwt")]
fn verify_jwt(claim: &Claim, token: &[u8], keys: &KeySet, now: u64, opts: &VerifyOptions) -> Result<Proof, Failure> {
    let verified = jwt::verify_token(token, keys, now, &opts.jwt)?;
    for id in [&verified.user_id, &verified.email, &verified.visitor_id].into_iter().flatten() {
        check_identifier(id, opts)?;
    }
    // Claim binding: every identifier sent beside the token must be signed into it.
    for which in [Identifier::UserId, Identifier::Email, Identifier::VisitorId] {
        if let Some(sent) = claim.identifier(which) {
            let signed = match which {
                Identifier::UserId => &verified.user_id,
                Identifier::Email => &verified.email,
                Identifier::VisitorId => &verified.visitor_id,
            };
            if signed.as_ref() != Some(sent) {
                return Err(Failure::ClaimsMismatch);
            }
        }
    }
    Ok(verified.into_proof())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_value(v: &str, max_len: usize) -> Result<(), Failure> {
        check_utf8(v.as_bytes(), max_len)
    }

    #[test]
    fn edge_whitespace_is_refused() {
        for bad in ["alice ", " alice", "alice\u{a0}", "\u{3000}alice", "\u{2003}", "a\u{2028}"] {
            assert_eq!(check_value(bad, 256), Err(Failure::Malformed(Malformed::Whitespace)), "{bad:?}");
        }
        assert_eq!(check_value("al ice", 256), Ok(()));
        assert_eq!(check_value("a\tb", 256), Err(Failure::Malformed(Malformed::IdentifierCharacters)));
        assert_eq!(check_value(&"a".repeat(257), 256), Err(Failure::Malformed(Malformed::IdentifierTooLong)));
        assert_eq!(check_value(&"a".repeat(256), 256), Ok(()));
    }

    /// A JWT signing an email and a user id, with unsigned metadata beside it:
    /// both identifiers proven (the email the subject), the metadata kept
    /// apart, and the identity's `Debug` naming what the accessors return.
    #[cfg(feature = "jwt")]
    #[test]
    fn a_token_proves_every_identifier_it_signs_and_keeps_metadata_apart() {
        use crate::key::Key;
        use crate::secret::Secret;
        let secret = Secret::text("jwt-secret-for-the-unit-test").unwrap();
        let now = 1_767_225_600;
        let token = crate::sign::jwt_token(&secret, "app", "jane@example.com", None, now, 600, [("sub", "u-7".into())]);
        let keys = KeySet::single(Key::jwt(secret));
        let claim = Claim::new().token(token.as_str()).metadata(r#"{"plan":"pro"}"#);
        let id = verify(&claim, &keys, now, &VerifyOptions::default()).unwrap();
        assert_eq!((id.subject(), id.id()), (Identifier::Email, "jane@example.com"));
        assert_eq!((id.email(), id.user_id(), id.visitor_id()), (Some("jane@example.com"), Some("u-7"), None));
        assert_eq!(id.unsigned().metadata(), Some(r#"{"plan":"pro"}"#));
        assert_eq!(id.unsigned().user_id(), None);
        assert!(id.claims().is_some());
        assert_eq!(id.valid_until(), Some(now + 600 + JwtOptions::default().get_leeway()));
        let debug = format!("{id:?}");
        assert!(
            debug.contains(r#"email: Some("jane@example.com")"#) && debug.contains(r#"user_id: Some("u-7")"#),
            "{debug}"
        );
    }

    #[test]
    fn edge_whitespace_is_found_on_the_bytes_as_on_the_chars() {
        let samples = (0u32..0x3100).chain([0xFEFF, 0x1F600, 0x10FFFF]).filter_map(char::from_u32);
        for c in samples {
            for text in [format!("{c}"), format!("a{c}"), format!("{c}a"), format!("é{c}é"), format!("{c}\u{85}")] {
                let expected = text.starts_with(char::is_whitespace) || text.ends_with(char::is_whitespace);
                assert_eq!(edge_is_whitespace(text.as_bytes()), expected, "{text:?}");
            }
        }
        assert!(!edge_is_whitespace(b""));
        // Not UTF-8 at an edge (an `IdStr` never is): refused.
        for bad in [&b"\x80abc"[..], b"abc\x80", b"a\xE3\x80", b"\xFF", b"a\xC2", b"\xE3\x80a"] {
            assert!(edge_is_whitespace(bad), "{bad:?}");
        }
    }

    #[test]
    fn control_characters_are_found_on_the_bytes_as_on_the_chars() {
        let samples = (0u32..0x800).chain([0x2028, 0x200B, 0xFEFF, 0x1F600]).filter_map(char::from_u32);
        for c in samples {
            for text in [format!("{c}"), format!("a{c}b"), format!("é{c}"), format!("{c}\u{85}")] {
                assert_eq!(has_control(text.as_bytes()), text.chars().any(char::is_control), "{text:?}");
            }
        }
    }
}
