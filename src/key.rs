//! Keys and key sets: secrets bound to one scheme, with ids and validity
//! windows for rotation.

use std::fmt;
use std::sync::Arc;

use hmac::{Hmac, KeyInit};
use sha2::Sha256;

use crate::claim::{Claim, IdStr, Role};
use crate::secret::Secret;

pub(crate) type HmacSha256 = Hmac<Sha256>;

/// Which identifier a signature covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Identifier {
    /// The customer's user id.
    UserId,
    /// The user's email address.
    Email,
    /// An anonymous visitor id.
    VisitorId,
}

impl Identifier {
    /// The claim role that carries this identifier.
    pub(crate) fn role(self) -> Role {
        match self {
            Identifier::UserId => Role::UserId,
            Identifier::Email => Role::Email,
            Identifier::VisitorId => Role::VisitorId,
        }
    }

    /// `user_id`, `email` or `visitor_id`.
    pub fn as_str(self) -> &'static str {
        match self {
            Identifier::UserId => "user_id",
            Identifier::Email => "email",
            Identifier::VisitorId => "visitor_id",
        }
    }
}

impl Claim {
    /// The value of an identifier.
    pub fn identifier(&self, which: Identifier) -> Option<&IdStr> {
        match which {
            Identifier::UserId => self.user_id.as_ref(),
            Identifier::Email => self.email.as_ref(),
            Identifier::VisitorId => self.visitor_id.as_ref(),
        }
    }
}

impl fmt::Display for Identifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A verification scheme. A key is bound to exactly one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Scheme {
    /// HMAC-SHA256 over the identifier as sent; the signature is 64 hex
    /// characters (either case).
    Hmac {
        /// The identifier signed.
        over: Identifier,
    },
    /// HMAC-SHA256 over `{identifier}-{unix_ts}`; the signature is sent as
    /// `<64 hex>-<unix_ts>` or as 64 hex with the timestamp in its own
    /// field.
    TimestampedHmac {
        /// The identifier signed.
        over: Identifier,
    },
    /// An HS256 JWT; the secret is used exactly as given.
    #[cfg(feature = "jwt")]
    #[cfg_attr(docsrs, doc(cfg(feature = "jwt")))]
    Jwt,
}

impl Scheme {
    /// A short stable name: `hmac`, `timestamped_hmac` or `jwt`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Scheme::Hmac { .. } => "hmac",
            Scheme::TimestampedHmac { .. } => "timestamped_hmac",
            #[cfg(feature = "jwt")]
            Scheme::Jwt => "jwt",
        }
    }

    /// The identifier an HMAC scheme signs (`None` for JWT, whose claims name it).
    pub fn identifier(&self) -> Option<Identifier> {
        match *self {
            Scheme::Hmac { over } | Scheme::TimestampedHmac { over } => Some(over),
            #[cfg(feature = "jwt")]
            Scheme::Jwt => None,
        }
    }
}

/// A secret bound to one scheme, with an optional id and validity window.
///
/// `Debug` never prints the secret.
#[derive(Clone)]
pub struct Key {
    pub(crate) id: Option<Arc<str>>,
    pub(crate) scheme: Scheme,
    pub(crate) secret: Secret,
    pub(crate) not_before: Option<u64>,
    pub(crate) not_after: Option<u64>,
    /// The HMAC state keyed once with the secret (zeroized on drop); cloned per verification.
    pub(crate) mac: HmacSha256,
}

impl Key {
    /// A key for `scheme`.
    pub fn new(scheme: Scheme, secret: Secret) -> Key {
        let mac = HmacSha256::new_from_slice(secret.expose()).expect("HMAC accepts keys of any length");
        Key { id: None, scheme, secret, not_before: None, not_after: None, mac }
    }

    /// A key for HMAC-SHA256 over an identifier.
    pub fn hmac(over: Identifier, secret: Secret) -> Key {
        Key::new(Scheme::Hmac { over }, secret)
    }

    /// A key for timestamped HMAC-SHA256 over `{identifier}-{unix_ts}`.
    pub fn timestamped_hmac(over: Identifier, secret: Secret) -> Key {
        Key::new(Scheme::TimestampedHmac { over }, secret)
    }

    /// A key for HS256 JWTs. Build the secret with [`Secret::text`] to use
    /// it exactly as displayed (a JWT secret is not hex-decoded).
    #[cfg(feature = "jwt")]
    #[cfg_attr(docsrs, doc(cfg(feature = "jwt")))]
    pub fn jwt(secret: Secret) -> Key {
        Key::new(Scheme::Jwt, secret)
    }

    /// Names the key; the id is reported with every identity it verifies.
    #[must_use]
    pub fn with_id(mut self, id: impl Into<Arc<str>>) -> Key {
        self.id = Some(id.into());
        self
    }

    /// The key verifies from this unix time on (inclusive).
    #[must_use]
    pub fn not_before(mut self, unix_secs: u64) -> Key {
        self.not_before = Some(unix_secs);
        self
    }

    /// The key stops verifying at this unix time (exclusive).
    #[must_use]
    pub fn not_after(mut self, unix_secs: u64) -> Key {
        self.not_after = Some(unix_secs);
        self
    }

    /// The key's id.
    pub fn id(&self) -> Option<&str> {
        self.id.as_deref()
    }

    /// The key's scheme.
    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    /// The secret (for signing; never log it).
    pub fn secret(&self) -> &Secret {
        &self.secret
    }

    /// A digest of the HMAC key this key computes with, keyed by that key:
    /// equal for keys HMAC treats as one (it pads short keys with zeros and
    /// hashes long ones, so `S` and `S\0`, or a long key and its SHA-256,
    /// are one key). Used to refuse one secret serving two schemes, in one
    /// key set or across tenants.
    pub(crate) fn fingerprint(&self) -> Fingerprint {
        use hmac::Mac;
        const PROBE: &[u8] = b"tower-identity key equivalence probe";
        let mut mac = self.mac.clone();
        mac.update(PROBE);
        Fingerprint(mac.finalize().into_bytes().into())
    }

    /// Whether checking this key reads the time: a validity window, a timestamp or a token lifetime.
    fn needs_time(&self) -> bool {
        self.not_before.is_some() || self.not_after.is_some() || !matches!(self.scheme, Scheme::Hmac { .. })
    }

    /// Whether the key is inside its validity window at `now` (unix seconds).
    pub fn is_valid_at(&self, now: u64) -> bool {
        self.not_before.is_none_or(|nb| now >= nb) && self.not_after.is_none_or(|na| now < na)
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Key")
            .field("id", &self.id)
            .field("scheme", &self.scheme)
            .field("secret", &self.secret)
            .field("not_before", &self.not_before)
            .field("not_after", &self.not_after)
            .finish()
    }
}

/// A key's [`Key::fingerprint`]. Compared in constant time; its `Debug`
/// shows nothing of it.
#[derive(Clone, Copy, Eq)]
pub(crate) struct Fingerprint([u8; 32]);

impl std::hash::Hash for Fingerprint {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.hash(state);
    }
}

impl PartialEq for Fingerprint {
    fn eq(&self, other: &Self) -> bool {
        use subtle::ConstantTimeEq;
        bool::from(self.0.ct_eq(&other.0))
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Fingerprint([REDACTED])")
    }
}

/// Why a key set was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeySetError {
    /// Two keys carry the same id.
    DuplicateKeyId(String),
    /// The same secret is used by two different schemes. This would let a
    /// signature made for one scheme verify under the other (a plain HMAC
    /// over `bob-1999999999` is the timestamped signature of `bob`).
    SecretSharedAcrossSchemes {
        /// The first key's scheme.
        first: Scheme,
        /// The second key's scheme.
        second: Scheme,
    },
}

impl fmt::Display for KeySetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeySetError::DuplicateKeyId(id) => write!(f, "two keys have the id {id:?}"),
            KeySetError::SecretSharedAcrossSchemes { first, second } => write!(
                f,
                "the same secret is used for two schemes ({first:?} and {second:?}); \
                 a key must be bound to one scheme"
            ),
        }
    }
}

impl std::error::Error for KeySetError {}

/// The keys of one tenant: several for rotation, any currently valid one verifies.
///
/// Cheap to clone (one reference count).
#[derive(Clone, Debug)]
pub struct KeySet(Arc<KeySetInner>);

#[derive(Clone, Debug)]
struct KeySetInner {
    keys: Box<[Key]>,
    shortest_secret: usize,
    /// Whether verifying against this set reads the clock (see [`KeySet::needs_time`]).
    needs_time: bool,
    audience: Option<Arc<str>>,
}

impl KeySet {
    /// A key set, checked: key ids are unique and no secret serves two schemes.
    pub fn new(keys: impl IntoIterator<Item = Key>) -> Result<KeySet, KeySetError> {
        let keys: Box<[Key]> = keys.into_iter().collect();
        for (i, a) in keys.iter().enumerate() {
            for b in &keys[i + 1..] {
                if let (Some(x), Some(y)) = (&a.id, &b.id)
                    && x == y
                {
                    return Err(KeySetError::DuplicateKeyId(x.to_string()));
                }
                if a.scheme != b.scheme && a.fingerprint() == b.fingerprint() {
                    return Err(KeySetError::SecretSharedAcrossSchemes { first: a.scheme, second: b.scheme });
                }
            }
        }
        let shortest_secret = keys.iter().map(|k| k.secret.len()).min().unwrap_or(usize::MAX);
        let needs_time = keys.iter().any(Key::needs_time);
        Ok(KeySet(Arc::new(KeySetInner { keys, shortest_secret, needs_time, audience: None })))
    }

    /// A key set without keys (nothing verifies against it).
    pub(crate) fn empty() -> KeySet {
        KeySet(Arc::new(KeySetInner {
            keys: Box::new([]),
            shortest_secret: usize::MAX,
            needs_time: false,
            audience: None,
        }))
    }

    /// A key set of one key.
    pub fn single(key: Key) -> KeySet {
        let shortest_secret = key.secret.len();
        let needs_time = key.needs_time();
        KeySet(Arc::new(KeySetInner { keys: Box::new([key]), shortest_secret, needs_time, audience: None }))
    }

    /// Requires JWTs to carry this audience (`aud`): the tenant's app id.
    #[must_use]
    pub fn with_audience(mut self, audience: impl Into<Arc<str>>) -> KeySet {
        Arc::make_mut(&mut self.0).audience = Some(audience.into());
        self
    }

    /// The audience JWTs must carry, if any.
    pub fn audience(&self) -> Option<&str> {
        self.0.audience.as_deref()
    }

    /// The keys, in the order given.
    pub fn keys(&self) -> &[Key] {
        &self.0.keys
    }

    /// Whether verification against this set depends on the time: a key has
    /// a validity window, or checks a timestamp or a token's lifetime. The
    /// layer reads its clock only for such sets (plain HMAC keys without a
    /// window never look at it).
    pub fn needs_time(&self) -> bool {
        self.0.needs_time
    }

    /// The length in bytes of the shortest secret (`usize::MAX` when empty).
    pub fn shortest_secret(&self) -> usize {
        self.0.shortest_secret
    }

    /// A key by id.
    pub fn get(&self, id: &str) -> Option<&Key> {
        self.0.keys.iter().find(|k| k.id.as_deref() == Some(id))
    }
}

impl FromIterator<Key> for Result<KeySet, KeySetError> {
    fn from_iter<T: IntoIterator<Item = Key>>(iter: T) -> Self {
        KeySet::new(iter)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(s: &str) -> Secret {
        Secret::text(s).unwrap()
    }

    #[test]
    fn same_secret_for_two_schemes_is_refused() {
        let err = KeySet::new([
            Key::hmac(Identifier::UserId, secret("shared-secret-0123456789")),
            Key::timestamped_hmac(Identifier::UserId, secret("shared-secret-0123456789")),
        ])
        .unwrap_err();
        assert!(matches!(err, KeySetError::SecretSharedAcrossSchemes { .. }));
        assert!(!err.to_string().contains("shared-secret"));
        // HMAC-equivalent secrets (zero padding) count as the same secret.
        assert!(
            KeySet::new([
                Key::hmac(Identifier::UserId, secret("shared-secret-0123456789")),
                Key::timestamped_hmac(Identifier::UserId, secret("shared-secret-0123456789\0")),
            ])
            .is_err()
        );
        // Same secret over two identifiers is two schemes, too.
        assert!(
            KeySet::new([
                Key::hmac(Identifier::UserId, secret("shared-secret-0123456789")),
                Key::hmac(Identifier::Email, secret("shared-secret-0123456789")),
            ])
            .is_err()
        );
    }

    #[test]
    fn duplicate_ids_are_refused() {
        let err = KeySet::new([
            Key::hmac(Identifier::UserId, secret("aaaaaaaaaaaaaaaa")).with_id("k"),
            Key::hmac(Identifier::UserId, secret("bbbbbbbbbbbbbbbb")).with_id("k"),
        ])
        .unwrap_err();
        assert_eq!(err, KeySetError::DuplicateKeyId("k".into()));
    }

    #[test]
    fn validity_window() {
        let k = Key::hmac(Identifier::UserId, secret("aaaaaaaaaaaaaaaa")).not_before(10).not_after(20);
        assert!(!k.is_valid_at(9));
        assert!(k.is_valid_at(10));
        assert!(k.is_valid_at(19));
        assert!(!k.is_valid_at(20));
        assert!(!format!("{k:?}").contains("aaaa"));
    }
}

/// The error of parsing an [`Identifier`] or a [`Scheme`] from its name: the
/// text is none of the names. It does not repeat the text, which may be a
/// value put in the wrong place (a secret, say).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseNameError {
    expected: &'static str,
}

impl fmt::Display for ParseNameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "expected {}", self.expected)
    }
}

impl std::error::Error for ParseNameError {}

impl std::str::FromStr for Identifier {
    type Err = ParseNameError;

    /// Parses `user_id`, `email` or `visitor_id` (the names of [`Identifier::as_str`]).
    fn from_str(s: &str) -> Result<Identifier, ParseNameError> {
        [Identifier::UserId, Identifier::Email, Identifier::VisitorId]
            .into_iter()
            .find(|i| i.as_str() == s)
            .ok_or(ParseNameError { expected: "user_id, email or visitor_id" })
    }
}

impl std::str::FromStr for Scheme {
    type Err = ParseNameError;

    /// Parses `hmac`, `timestamped_hmac` or `jwt` (the names of
    /// [`Scheme::as_str`]; `jwt` only with the `jwt` feature). The HMAC schemes
    /// sign the user id; [`Scheme::with_identifier`] binds them to another
    /// identifier.
    fn from_str(s: &str) -> Result<Scheme, ParseNameError> {
        let over = Identifier::UserId;
        match s {
            "hmac" => Ok(Scheme::Hmac { over }),
            "timestamped_hmac" => Ok(Scheme::TimestampedHmac { over }),
            #[cfg(feature = "jwt")]
            "jwt" => Ok(Scheme::Jwt),
            #[cfg(feature = "jwt")]
            _ => Err(ParseNameError { expected: "hmac, timestamped_hmac or jwt" }),
            #[cfg(not(feature = "jwt"))]
            _ => Err(ParseNameError { expected: "hmac or timestamped_hmac (jwt needs the jwt feature)" }),
        }
    }
}

impl Scheme {
    /// The same scheme over `over`: an HMAC scheme signs that identifier; a
    /// JWT names its identifiers in its claims and is returned unchanged.
    pub fn with_identifier(self, over: Identifier) -> Scheme {
        match self {
            Scheme::Hmac { .. } => Scheme::Hmac { over },
            Scheme::TimestampedHmac { .. } => Scheme::TimestampedHmac { over },
            #[cfg(feature = "jwt")]
            Scheme::Jwt => Scheme::Jwt,
        }
    }
}

#[cfg(test)]
mod from_str_tests {
    use super::{Identifier, Scheme};

    #[test]
    fn names_parse_back() {
        for i in [Identifier::UserId, Identifier::Email, Identifier::VisitorId] {
            assert_eq!(i.as_str().parse::<Identifier>(), Ok(i));
            let hmac = Scheme::Hmac { over: Identifier::UserId }.with_identifier(i);
            assert_eq!(hmac, Scheme::Hmac { over: i });
            assert_eq!(hmac.as_str().parse::<Scheme>().map(|s| s.with_identifier(i)), Ok(hmac));
            let ts = Scheme::TimestampedHmac { over: i };
            assert_eq!(ts.as_str().parse::<Scheme>().map(|s| s.with_identifier(i)), Ok(ts));
        }
        #[cfg(feature = "jwt")]
        assert_eq!("jwt".parse::<Scheme>().map(|s| s.with_identifier(Identifier::Email)), Ok(Scheme::Jwt));
        for bad in ["", "User_id", "user-id", " email", "hunter2"] {
            let e = bad.parse::<Identifier>().unwrap_err().to_string();
            assert_eq!(e, "expected user_id, email or visitor_id");
        }
        for bad in ["", "HMAC", "hs256", "hunter2"] {
            let e = bad.parse::<Scheme>().unwrap_err().to_string();
            assert!(e.starts_with("expected hmac") && !e.contains("hunter2"), "{e}");
        }
    }
}
