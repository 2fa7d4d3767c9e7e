//! The verification core: pure, synchronous and framework-free.
//!
//! `(claim, keys, now) -> Result<VerifiedIdentity, Failure>`. The layer uses
//! it; so can any other code:
//!
//! ```
//! use tower_identity::{verify, Claim, Identifier, Key, KeySet, Secret, VerifyOptions};
//!
//! let keys = KeySet::single(Key::hmac(Identifier::UserId, Secret::text("SECRET_KEY").unwrap()));
//! let claim = Claim::new()
//!     .user_id("USER_ID")
//!     .signature("bfd6d64f93c2107b5a79f8e19cb1a64dcbbb9afc4361d3748c4a3a2e9bddc2a9");
//! let identity = verify(&claim, &keys, 1_767_225_600, &VerifyOptions::default()).unwrap();
//! assert_eq!(identity.user_id(), Some("USER_ID"));
//! ```

use std::fmt;

use hmac::Mac;

use crate::identity::{IdStr, Unsigned, VerifiedIdentity};
use crate::key::{Identifier, KeySet, Scheme};
use crate::reject::ErrorCode;

/// The length of an HMAC-SHA256 tag in hex.
const TAG_HEX_LEN: usize = 64;
/// Longest accepted decimal timestamp (fits in `u64`).
const MAX_TS_DIGITS: usize = 19;

/// The roles a value can play in a claim.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Role {
    /// The tenant key (app, agent, organisation or channel id).
    Tenant,
    /// The user id.
    UserId,
    /// The email.
    Email,
    /// The anonymous visitor id.
    VisitorId,
    /// The HMAC signature (`<hex>` or `<hex>-<unix_ts>`).
    Signature,
    /// The signing time, when sent apart from the signature.
    Timestamp,
    /// An HS256 JWT.
    Token,
    /// Unsigned metadata (e.g. `user_metadata`), carried to the handler.
    Metadata,
}

impl Role {
    /// All roles.
    pub const ALL: [Role; 8] = [
        Role::Tenant,
        Role::UserId,
        Role::Email,
        Role::VisitorId,
        Role::Signature,
        Role::Timestamp,
        Role::Token,
        Role::Metadata,
    ];

    /// A stable name: `tenant`, `user_id`, `email`, `visitor_id`, `signature`, `timestamp`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Tenant => "tenant",
            Role::UserId => "user_id",
            Role::Email => "email",
            Role::VisitorId => "visitor_id",
            Role::Signature => "signature",
            Role::Timestamp => "timestamp",
            Role::Token => "token",
            Role::Metadata => "metadata",
        }
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

/// What a request claims: a tenant, identifiers and a credential.
///
/// `Debug` redacts the credential.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Claim {
    /// The tenant key.
    pub tenant: Option<IdStr>,
    /// The asserted user id.
    pub user_id: Option<IdStr>,
    /// The asserted email.
    pub email: Option<IdStr>,
    /// The asserted anonymous visitor id.
    pub visitor_id: Option<IdStr>,
    /// The HMAC signature, `<hex>` or `<hex>-<unix_ts>`.
    pub signature: Option<IdStr>,
    /// The signing time, when sent apart from the signature.
    pub timestamp: Option<IdStr>,
    /// An HS256 JWT.
    pub token: Option<IdStr>,
    /// Unsigned metadata: raw JSON text from a JSON body, or a plain string.
    pub metadata: Option<IdStr>,
}

impl Claim {
    /// An empty claim.
    pub fn new() -> Claim {
        Claim::default()
    }
    /// Sets the tenant.
    pub fn tenant(mut self, v: impl Into<IdStr>) -> Claim {
        self.tenant = Some(v.into());
        self
    }
    /// Sets the user id.
    pub fn user_id(mut self, v: impl Into<IdStr>) -> Claim {
        self.user_id = Some(v.into());
        self
    }
    /// Sets the email.
    pub fn email(mut self, v: impl Into<IdStr>) -> Claim {
        self.email = Some(v.into());
        self
    }
    /// Sets the visitor id.
    pub fn visitor_id(mut self, v: impl Into<IdStr>) -> Claim {
        self.visitor_id = Some(v.into());
        self
    }
    /// Sets the signature.
    pub fn signature(mut self, v: impl Into<IdStr>) -> Claim {
        self.signature = Some(v.into());
        self
    }
    /// Sets the separate timestamp.
    pub fn timestamp(mut self, v: impl Into<IdStr>) -> Claim {
        self.timestamp = Some(v.into());
        self
    }

    /// Sets the token.
    pub fn token(mut self, v: impl Into<IdStr>) -> Claim {
        self.token = Some(v.into());
        self
    }
    /// Sets the unsigned metadata.
    pub fn metadata(mut self, v: impl Into<IdStr>) -> Claim {
        self.metadata = Some(v.into());
        self
    }

    /// Whether the claim carries a credential (a signature or a token).
    pub fn has_credential(&self) -> bool {
        self.signature.is_some() || self.token.is_some()
    }

    /// The value of an identifier.
    pub fn identifier(&self, which: Identifier) -> Option<&IdStr> {
        match which {
            Identifier::UserId => self.user_id.as_ref(),
            Identifier::Email => self.email.as_ref(),
            Identifier::VisitorId => self.visitor_id.as_ref(),
        }
    }

    pub(crate) fn slot(&mut self, role: Role) -> &mut Option<IdStr> {
        match role {
            Role::Tenant => &mut self.tenant,
            Role::UserId => &mut self.user_id,
            Role::Email => &mut self.email,
            Role::VisitorId => &mut self.visitor_id,
            Role::Signature => &mut self.signature,
            Role::Timestamp => &mut self.timestamp,
            Role::Token => &mut self.token,
            Role::Metadata => &mut self.metadata,
        }
    }
}

impl fmt::Debug for Claim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Claim")
            .field("tenant", &self.tenant)
            .field("user_id", &self.user_id)
            .field("email", &self.email)
            .field("visitor_id", &self.visitor_id)
            .field("signature", &self.signature.as_ref().map(|_| "[REDACTED]"))
            .field("timestamp", &self.timestamp)
            .field("token", &self.token.as_ref().map(|_| "[REDACTED]"))
            .field("metadata", &self.metadata)
            .finish()
    }
}

/// Limits applied during verification.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifyOptions {
    /// Oldest accepted timestamp, in seconds before now (timestamped HMAC).
    /// Default: 3600 (one hour).
    pub max_age: u64,
    /// How far in the future a timestamp may be, in seconds (clock skew).
    /// Default: 60.
    pub future_skew: u64,
    /// Longest accepted identifier, in bytes. Default: 256.
    pub max_identifier_len: usize,
    /// JWT limits.
    #[cfg(feature = "jwt")]
    pub jwt: crate::jwt::JwtOptions,
}

impl Default for VerifyOptions {
    fn default() -> Self {
        VerifyOptions {
            max_age: 3600,
            future_skew: 60,
            max_identifier_len: 256,
            #[cfg(feature = "jwt")]
            jwt: crate::jwt::JwtOptions::default(),
        }
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

/// A parsed signature: the 32-byte tag and, for timestamped signatures, the
/// timestamp text exactly as sent (it is part of the signed message).
struct ParsedSignature<'a> {
    tag: [u8; 32],
    timestamp: Option<(&'a [u8], u64)>,
}

/// The value of each hex digit (either case); `0xFF` for any other byte.
const HEX_VALUE: [u8; 256] = {
    let mut table = [0xFF; 256];
    let mut i = 0;
    while i < 10 {
        table[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        table[b'a' as usize + i] = 10 + i as u8;
        table[b'A' as usize + i] = 10 + i as u8;
        i += 1;
    }
    table
};

/// Decodes exactly 64 hex characters into the 32-byte tag. A table lookup per
/// digit (the `hex` crate's decoder took 81 ns here, this one about 24 ns);
/// the tag is attacker-supplied, not secret, so its decoding need not be
/// constant-time: the comparison with the expected MAC is.
fn parse_tag(digits: &[u8]) -> Result<[u8; 32], Failure> {
    if digits.len() != TAG_HEX_LEN {
        return Err(Failure::Malformed(Malformed::Signature));
    }
    let mut tag = [0u8; 32];
    let mut invalid = 0u8;
    for (byte, pair) in tag.iter_mut().zip(digits.chunks_exact(2)) {
        let (hi, lo) = (HEX_VALUE[usize::from(pair[0])], HEX_VALUE[usize::from(pair[1])]);
        invalid |= hi | lo;
        *byte = (hi << 4) | (lo & 0x0F);
    }
    if invalid & 0xF0 != 0 {
        return Err(Failure::Malformed(Malformed::Signature));
    }
    Ok(tag)
}

/// Parses a unix timestamp: ASCII digits only, no sign, no leading zero, at
/// most 19 digits.
fn parse_timestamp(b: &[u8]) -> Result<u64, Failure> {
    if b.is_empty() || b.len() > MAX_TS_DIGITS || !b.iter().all(u8::is_ascii_digit) || (b.len() > 1 && b[0] == b'0') {
        return Err(Failure::Malformed(Malformed::Timestamp));
    }
    // At most 19 digits: below u64::MAX, no overflow.
    Ok(b.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0')))
}

/// Parses `<hex>` or `<hex>-<unix_ts>` (or `<hex>` with a separate timestamp).
/// Works on the bytes: the signature is ASCII or malformed, and skipping a
/// UTF-8 check here saves re-validating what extraction validated.
fn parse_signature<'a>(sig: &'a [u8], separate_ts: Option<&'a [u8]>) -> Result<ParsedSignature<'a>, Failure> {
    if let Some(ts) = separate_ts {
        return Ok(ParsedSignature { tag: parse_tag(sig)?, timestamp: Some((ts, parse_timestamp(ts)?)) });
    }
    if sig.len() == TAG_HEX_LEN {
        return Ok(ParsedSignature { tag: parse_tag(sig)?, timestamp: None });
    }
    match sig.split_at_checked(TAG_HEX_LEN) {
        Some((hex_tag, rest)) if rest.first() == Some(&b'-') => {
            let ts = &rest[1..];
            Ok(ParsedSignature { tag: parse_tag(hex_tag)?, timestamp: Some((ts, parse_timestamp(ts)?)) })
        }
        _ => Err(Failure::Malformed(Malformed::Signature)),
    }
}

fn check_identifier(v: &IdStr, opts: &VerifyOptions) -> Result<(), Failure> {
    let v = v.as_bytes();
    if v.is_empty() {
        return Err(Failure::Malformed(Malformed::EmptyIdentifier));
    }
    if v.len() > opts.max_identifier_len {
        return Err(Failure::Malformed(Malformed::IdentifierTooLong));
    }
    if has_control(v) {
        return Err(Failure::Malformed(Malformed::IdentifierCharacters));
    }
    Ok(())
}

/// Whether valid UTF-8 text holds a control character (`char::is_control`:
/// U+0000–U+001F, U+007F–U+009F), on the bytes: C0 and DEL are single bytes,
/// C1 is `C2 80`–`C2 9F` (0xC2 is only ever a lead byte).
fn has_control(utf8: &[u8]) -> bool {
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
/// For a token (feature `jwt`), see [`crate::jwt`]; identifier values sent
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
        (Some(sig), None) => verify_signature(claim, sig.as_bytes(), keys, now, opts),
        #[cfg(feature = "jwt")]
        (None, Some(token)) => verify_jwt(claim, token, keys, now, opts),
        #[cfg(not(feature = "jwt"))]
        (None, Some(_)) => Err(Failure::Invalid),
    }
}

impl Claim {
    /// A copy of the values an identity may keep (not the credential).
    fn clone_values(&self) -> Claim {
        Claim {
            tenant: self.tenant.clone(),
            user_id: self.user_id.clone(),
            email: self.email.clone(),
            visitor_id: self.visitor_id.clone(),
            metadata: self.metadata.clone(),
            ..Claim::default()
        }
    }
}

/// What a valid credential proved; turned into a [`VerifiedIdentity`] with
/// the claim's values once verification is over.
pub(crate) enum Proof {
    /// An HMAC over the identifier `over`.
    Hmac {
        over: Identifier,
        scheme: Scheme,
        key_id: Option<std::sync::Arc<str>>,
        signed_at: Option<u64>,
        valid_until: Option<u64>,
    },
    /// A JWT: the identifiers come from its claims.
    #[cfg(feature = "jwt")]
    Jwt(crate::jwt::VerifiedToken),
}

impl Proof {
    /// The scheme that verified.
    pub(crate) fn scheme(&self) -> Scheme {
        match self {
            Proof::Hmac { scheme, .. } => *scheme,
            #[cfg(feature = "jwt")]
            Proof::Jwt(_) => Scheme::Jwt,
        }
    }

    /// The identity, made of the claim's values (taken, not cloned).
    pub(crate) fn identity(self, claim: &mut Claim) -> VerifiedIdentity {
        let tenant = claim.tenant.take();
        match self {
            Proof::Hmac { over, scheme, key_id, signed_at, valid_until } => {
                // Only the identifier the signature covers is proven; the
                // others (and metadata) are kept apart, boxed only when sent.
                let proven = claim.slot(over.role()).take();
                let unsigned = Unsigned {
                    user_id: claim.user_id.take(),
                    email: claim.email.take(),
                    visitor_id: claim.visitor_id.take(),
                    metadata: claim.metadata.take(),
                };
                let (user_id, email, visitor_id) = match over {
                    Identifier::UserId => (proven, None, None),
                    Identifier::Email => (None, proven, None),
                    Identifier::VisitorId => (None, None, proven),
                };
                VerifiedIdentity {
                    subject: over,
                    user_id,
                    email,
                    visitor_id,
                    scheme,
                    tenant,
                    key_id,
                    signed_at,
                    valid_until,
                    #[cfg(feature = "jwt")]
                    claims: None,
                    unsigned: unsigned.boxed(),
                }
            }
            #[cfg(feature = "jwt")]
            Proof::Jwt(verified) => VerifiedIdentity {
                subject: verified.subject(),
                user_id: verified.user_id,
                email: verified.email,
                visitor_id: verified.visitor_id,
                scheme: Scheme::Jwt,
                tenant,
                key_id: verified.key_id,
                signed_at: verified.issued_at,
                valid_until: Some(verified.valid_until),
                claims: Some(verified.claims),
                unsigned: Unsigned { metadata: claim.metadata.take(), ..Unsigned::default() }.boxed(),
            },
        }
    }
}

fn verify_signature(
    claim: &Claim,
    sig: &[u8],
    keys: &KeySet,
    now: u64,
    opts: &VerifyOptions,
) -> Result<Proof, Failure> {
    let parsed = parse_signature(sig, claim.timestamp.as_ref().map(IdStr::as_bytes))?;
    let mut identifier_missing = false;
    for key in keys.keys() {
        if !key.is_valid_at(now) {
            continue;
        }
        let over = match (key.scheme, parsed.timestamp) {
            (Scheme::Hmac { over }, None) | (Scheme::TimestampedHmac { over }, Some(_)) => over,
            _ => continue,
        };
        let Some(value) = claim.identifier(over) else {
            identifier_missing = true;
            continue;
        };
        let mut mac = key.mac.clone();
        mac.update(value.as_bytes());
        if let Some((ts_text, _)) = parsed.timestamp {
            mac.update(b"-");
            mac.update(ts_text);
        }
        if mac.verify_slice(&parsed.tag).is_err() {
            continue;
        }
        let signed_at = parsed.timestamp.map(|(_, ts)| ts);
        if let Some(ts) = signed_at {
            if ts > now && ts - now > opts.future_skew {
                return Err(Failure::NotYetValid);
            }
            if now > ts && now - ts > opts.max_age {
                return Err(Failure::Expired);
            }
        }
        // The first second at which `verify` would refuse it: past `max_age`, or the key's `not_after`.
        let aged_out = signed_at.map(|ts| ts.saturating_add(opts.max_age).saturating_add(1));
        let valid_until = match (aged_out, key.not_after) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        return Ok(Proof::Hmac { over, scheme: key.scheme, key_id: key.id.clone(), signed_at, valid_until });
    }
    Err(if identifier_missing { Failure::Malformed(Malformed::IdentifierMissing) } else { Failure::Invalid })
}

#[cfg(feature = "jwt")]
fn verify_jwt(claim: &Claim, token: &[u8], keys: &KeySet, now: u64, opts: &VerifyOptions) -> Result<Proof, Failure> {
    let verified = crate::jwt::verify_token(token, keys, now, &opts.jwt)?;
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
    Ok(Proof::Jwt(verified))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_decoding_matches_the_hex_crate() {
        let samples =
            ["00".repeat(32), "ff".repeat(32), "FF".repeat(32), "0123456789abcdefABCDEF".repeat(3)[..64].to_owned()];
        for s in &samples {
            assert_eq!(parse_tag(s.as_bytes()).unwrap().to_vec(), hex::decode(s).unwrap());
        }
        for bad in [
            "g".repeat(64),
            format!("{}{}", "0".repeat(63), " "),
            format!("{}/", "0".repeat(63)),
            format!("{}:", "0".repeat(63)),
        ] {
            assert!(parse_tag(bad.as_bytes()).is_err(), "{bad:?}");
        }
        // Every byte value in every position: accepted exactly when it is a hex digit.
        for pos in [0, 1, 62, 63] {
            for b in 0u8..=255 {
                let mut s = vec![b'a'; 64];
                s[pos] = b;
                let Ok(s) = String::from_utf8(s) else { continue };
                assert_eq!(parse_tag(s.as_bytes()).is_ok(), b.is_ascii_hexdigit(), "byte {b:#x} at {pos}");
            }
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

    #[test]
    fn timestamp_parsing_is_canonical() {
        let parse_timestamp = |s: &str| parse_timestamp(s.as_bytes());
        assert_eq!(parse_timestamp("1741761604"), Ok(1741761604));
        assert_eq!(parse_timestamp("0"), Ok(0));
        for bad in [
            "",
            "01741761604",
            "+1741761604",
            " 1741761604",
            "1741761604 ",
            "1.7e9",
            "-5",
            "17417616040000000000",
            "١٧",
        ] {
            assert!(parse_timestamp(bad).is_err(), "{bad:?}");
        }
        assert_eq!(parse_timestamp("9999999999999999999"), Ok(9_999_999_999_999_999_999));
    }
}
