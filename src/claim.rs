//! What a request claims: the [`Role`]s a value can play, the [`Claim`]
//! assembled from them, and the cheap identifier string [`IdStr`].
//!
//! Plain data, no cryptography. Extraction fills a claim, verification
//! reads it. (The only HTTP type here is `HeaderValue`, so that an
//! identifier read from a header shares its bytes.)

use std::fmt;
use std::sync::Arc;

use http::HeaderValue;

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
    #[must_use]
    pub fn tenant(mut self, v: impl Into<IdStr>) -> Claim {
        self.tenant = Some(v.into());
        self
    }
    /// Sets the user id.
    #[must_use]
    pub fn user_id(mut self, v: impl Into<IdStr>) -> Claim {
        self.user_id = Some(v.into());
        self
    }
    /// Sets the email.
    #[must_use]
    pub fn email(mut self, v: impl Into<IdStr>) -> Claim {
        self.email = Some(v.into());
        self
    }
    /// Sets the visitor id.
    #[must_use]
    pub fn visitor_id(mut self, v: impl Into<IdStr>) -> Claim {
        self.visitor_id = Some(v.into());
        self
    }
    /// Sets the signature.
    #[must_use]
    pub fn signature(mut self, v: impl Into<IdStr>) -> Claim {
        self.signature = Some(v.into());
        self
    }
    /// Sets the separate timestamp.
    #[must_use]
    pub fn timestamp(mut self, v: impl Into<IdStr>) -> Claim {
        self.timestamp = Some(v.into());
        self
    }

    /// Sets the token.
    #[must_use]
    pub fn token(mut self, v: impl Into<IdStr>) -> Claim {
        self.token = Some(v.into());
        self
    }
    /// Sets the unsigned metadata.
    #[must_use]
    pub fn metadata(mut self, v: impl Into<IdStr>) -> Claim {
        self.metadata = Some(v.into());
        self
    }

    /// Whether the claim carries a credential (a signature or a token).
    pub(crate) fn has_credential(&self) -> bool {
        self.signature.is_some() || self.token.is_some()
    }

    /// A copy of the values an identity may keep (not the credential).
    pub(crate) fn clone_values(&self) -> Claim {
        Claim {
            tenant: self.tenant.clone(),
            user_id: self.user_id.clone(),
            email: self.email.clone(),
            visitor_id: self.visitor_id.clone(),
            metadata: self.metadata.clone(),
            ..Claim::default()
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

/// An identifier string (user id, email, visitor id, tenant) as received.
///
/// Cheap to clone: a value taken from a request header shares the header's
/// bytes (no copy, no allocation); other values share one `Arc<str>`. The
/// bytes are exactly the ones the client sent and, once verified, the ones
/// the signature covers: no trimming, case folding or Unicode normalisation.
/// Always valid UTF-8.
#[derive(Clone)]
pub struct IdStr(Repr);

#[derive(Clone)]
enum Repr {
    Header(HeaderValue),
    // Slices of a buffered body or a token: only the body and JWT readers make them.
    #[cfg_attr(not(any(feature = "json", feature = "jwt")), allow(dead_code))]
    Bytes(bytes::Bytes),
    Shared(Arc<str>),
    Static(&'static str),
}

impl IdStr {
    /// An identifier from a header value, or `None` when its bytes are not UTF-8.
    pub fn from_header(value: &HeaderValue) -> Option<IdStr> {
        // Header values are nearly always ASCII, which is checked faster than UTF-8.
        if !value.as_bytes().is_ascii() {
            std::str::from_utf8(value.as_bytes()).ok()?;
        }
        Some(IdStr(Repr::Header(value.clone())))
    }

    /// `s` as a slice of `base` when it points into it (no copy), else a copy.
    /// When `s` lies within `base`'s memory, those bytes are `s` (both are
    /// borrowed, so neither can change): already UTF-8, shared without a
    /// second check or a comparison.
    #[cfg(any(feature = "json", feature = "jwt"))]
    pub(crate) fn shared_in(base: &bytes::Bytes, s: &str) -> IdStr {
        let start = (s.as_ptr() as usize).wrapping_sub(base.as_ptr() as usize);
        match start.checked_add(s.len()) {
            Some(end) if end <= base.len() => IdStr(Repr::Bytes(base.slice(start..end))),
            _ => IdStr::from(s),
        }
    }

    /// An identifier from a static string.
    pub const fn from_static(s: &'static str) -> IdStr {
        IdStr(Repr::Static(s))
    }

    /// The identifier's bytes (UTF-8), without re-checking them.
    pub fn as_bytes(&self) -> &[u8] {
        match &self.0 {
            Repr::Header(v) => v.as_bytes(),
            Repr::Bytes(b) => b,
            Repr::Shared(s) => s.as_bytes(),
            Repr::Static(s) => s.as_bytes(),
        }
    }

    /// The identifier as a header value, sharing its bytes where it can (a
    /// value read from a header, or a slice of a body or token, is not
    /// copied); `None` when its bytes cannot be a header value.
    pub(crate) fn to_header_value(&self) -> Option<HeaderValue> {
        let mut value = match &self.0 {
            Repr::Header(v) => v.clone(),
            Repr::Bytes(b) => HeaderValue::from_maybe_shared(b.clone()).ok()?,
            Repr::Shared(s) => HeaderValue::from_str(s).ok()?,
            Repr::Static(s) => HeaderValue::from_str(s).ok()?,
        };
        // An identifier proves nothing by itself: never hidden from logs.
        value.set_sensitive(false);
        Some(value)
    }

    /// The identifier as a string slice.
    pub fn as_str(&self) -> &str {
        match &self.0 {
            // Checked to be UTF-8 when built; the fallback cannot be reached.
            Repr::Header(v) => std::str::from_utf8(v.as_bytes()).unwrap_or_default(),
            Repr::Bytes(b) => std::str::from_utf8(b).unwrap_or_default(),
            Repr::Shared(s) => s,
            Repr::Static(s) => s,
        }
    }
}

impl std::ops::Deref for IdStr {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for IdStr {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl From<&str> for IdStr {
    fn from(s: &str) -> Self {
        IdStr(Repr::Shared(Arc::from(s)))
    }
}

impl From<String> for IdStr {
    fn from(s: String) -> Self {
        IdStr(Repr::Shared(Arc::from(s)))
    }
}

impl From<Arc<str>> for IdStr {
    fn from(s: Arc<str>) -> Self {
        IdStr(Repr::Shared(s))
    }
}

impl PartialEq for IdStr {
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}
impl Eq for IdStr {}

impl PartialEq<str> for IdStr {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for IdStr {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl std::hash::Hash for IdStr {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state)
    }
}

impl fmt::Debug for IdStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for IdStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(all(test, any(feature = "json", feature = "jwt")))]
mod tests {
    use super::*;

    /// A string inside the buffer is shared (same bytes, no copy); one
    /// elsewhere is copied; both read as the string.
    #[test]
    fn shared_in_shares_only_slices_of_its_buffer() {
        let base = bytes::Bytes::from_static("{\"user_id\":\"jane-ü\"}".as_bytes());
        let inside = std::str::from_utf8(&base[12..19]).unwrap();
        let shared = IdStr::shared_in(&base, inside);
        assert_eq!(shared, "jane-ü");
        assert_eq!(shared.as_bytes().as_ptr(), inside.as_ptr());
        assert!(matches!(shared.0, Repr::Bytes(_)));

        let elsewhere = String::from("jane-ü");
        let copied = IdStr::shared_in(&base, &elsewhere);
        assert_eq!(copied, "jane-ü");
        assert!(matches!(copied.0, Repr::Shared(_)));
        // A string that starts inside the buffer but runs past its end is copied too.
        let straddling = IdStr::shared_in(&base.slice(..15), inside);
        assert_eq!(straddling, "jane-ü");
        assert!(matches!(straddling.0, Repr::Shared(_)));
    }
}
