//! What handlers see: [`VerifiedIdentity`], [`IdentityOutcome`], and the
//! cheap identifier string [`IdStr`].

use std::fmt;
use std::sync::Arc;

use http::HeaderValue;

use crate::key::{Identifier, Scheme};
use crate::reject::ErrorCode;

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
    Bytes(bytes::Bytes),
    Shared(Arc<str>),
    Static(&'static str),
}

impl IdStr {
    /// An identifier from a header value, or `None` when its bytes are not UTF-8.
    pub fn from_header(value: &HeaderValue) -> Option<IdStr> {
        std::str::from_utf8(value.as_bytes()).ok()?;
        Some(IdStr(Repr::Header(value.clone())))
    }

    /// An identifier sharing the bytes of a buffer (e.g. a slice of a request
    /// body), or `None` when they are not UTF-8.
    pub fn from_utf8_bytes(bytes: bytes::Bytes) -> Option<IdStr> {
        std::str::from_utf8(&bytes).ok()?;
        Some(IdStr(Repr::Bytes(bytes)))
    }

    /// `s` as a slice of `base` when it points into it (no copy), else a copy.
    #[cfg(any(feature = "json", feature = "jwt"))]
    pub(crate) fn shared_in(base: &bytes::Bytes, s: &str) -> IdStr {
        let start = (s.as_ptr() as usize).wrapping_sub(base.as_ptr() as usize);
        match start.checked_add(s.len()) {
            Some(end) if end <= base.len() && base.get(start..end) == Some(s.as_bytes()) => {
                IdStr::from_utf8_bytes(base.slice(start..end)).unwrap_or_else(|| IdStr::from(s))
            }
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

/// Identifier values a client sent that no signature covers.
///
/// Kept apart from what was proven: display them, never authorise on them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Unsigned {
    pub(crate) user_id: Option<IdStr>,
    pub(crate) email: Option<IdStr>,
    pub(crate) visitor_id: Option<IdStr>,
    pub(crate) metadata: Option<IdStr>,
}

impl Unsigned {
    /// An unsigned user id sent beside the credential.
    pub fn user_id(&self) -> Option<&str> {
        self.user_id.as_deref()
    }
    /// An unsigned email sent beside the credential.
    pub fn email(&self) -> Option<&str> {
        self.email.as_deref()
    }
    /// An unsigned visitor id sent beside the credential.
    pub fn visitor_id(&self) -> Option<&str> {
        self.visitor_id.as_deref()
    }
    /// Unsigned metadata (`user_metadata`, `metadata`): the raw JSON text of
    /// the field for JSON bodies, or the plain value for form, header and
    /// query sources. Parse it yourself; never authorise on it.
    pub fn metadata(&self) -> Option<&str> {
        self.metadata.as_deref()
    }

    /// Whether nothing unsigned was sent.
    pub fn is_empty(&self) -> bool {
        self.user_id.is_none() && self.email.is_none() && self.visitor_id.is_none() && self.metadata.is_none()
    }

    /// `None` when empty, so that an identity without unsigned values allocates nothing for them.
    pub(crate) fn boxed(self) -> Option<Box<Unsigned>> {
        (!self.is_empty()).then(|| Box::new(self))
    }
}

/// An identity proven by a valid signature, inserted into the request
/// extensions by the layer once the verdict is in.
///
/// Cheap to clone (reference-counted fields). Only the identifier the
/// signature covers is exposed as proven; values sent beside it are in
/// [`unsigned`](Self::unsigned).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedIdentity {
    pub(crate) subject: Identifier,
    pub(crate) user_id: Option<IdStr>,
    pub(crate) email: Option<IdStr>,
    pub(crate) visitor_id: Option<IdStr>,
    pub(crate) scheme: Scheme,
    pub(crate) tenant: Option<IdStr>,
    pub(crate) key_id: Option<Arc<str>>,
    pub(crate) signed_at: Option<u64>,
    pub(crate) valid_until: Option<u64>,
    #[cfg(feature = "jwt")]
    pub(crate) claims: Option<Arc<crate::jwt::SignedClaims>>,
    /// Boxed, and only when something unsigned was sent: usually nothing is,
    /// and a smaller identity is cheaper to move and to box into the extensions.
    pub(crate) unsigned: Option<Box<Unsigned>>,
}

impl VerifiedIdentity {
    /// The primary proven identifier: the one an HMAC signs, or for a JWT
    /// its `email`, else its user id (`sub`), else its `visitor_id`.
    pub fn subject(&self) -> Identifier {
        self.subject
    }

    /// The primary proven identifier's value.
    pub fn id(&self) -> &str {
        self.id_str().as_str()
    }

    /// The primary proven identifier as a cheap shared string.
    pub fn id_str(&self) -> &IdStr {
        let value = match self.subject {
            Identifier::UserId => &self.user_id,
            Identifier::Email => &self.email,
            Identifier::VisitorId => &self.visitor_id,
        };
        static EMPTY: IdStr = IdStr::from_static("");
        // The subject's value is always set by construction.
        value.as_ref().unwrap_or(&EMPTY)
    }

    /// The user id, when proven (HMAC over the user id, or a JWT's `sub`/`user_id`).
    pub fn user_id(&self) -> Option<&str> {
        self.user_id.as_deref()
    }

    /// The email, when proven (HMAC over the email, or a JWT's `email`).
    pub fn email(&self) -> Option<&str> {
        self.email.as_deref()
    }

    /// The anonymous visitor id, when proven.
    pub fn visitor_id(&self) -> Option<&str> {
        self.visitor_id.as_deref()
    }

    /// All claims of a verified JWT (`name`, `account_id`, …); `None` for HMAC schemes.
    #[cfg(feature = "jwt")]
    pub fn claims(&self) -> Option<&crate::jwt::SignedClaims> {
        self.claims.as_deref()
    }

    /// The scheme that verified.
    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    /// The tenant the request named (app, agent, organisation, channel), if
    /// any, and whose policy verified it. With a tenant-agnostic provider
    /// (one static [`KeySet`](crate::KeySet)) this is only what the client sent.
    pub fn tenant(&self) -> Option<&str> {
        self.tenant.as_deref()
    }

    /// The id of the key that matched, if the key has one: watch it to know
    /// when an old key is no longer used.
    pub fn key_id(&self) -> Option<&str> {
        self.key_id.as_deref()
    }

    /// When the credential was signed (unix seconds): the timestamp of a
    /// timestamped HMAC, or a JWT's `iat`.
    pub fn signed_at(&self) -> Option<u64> {
        self.signed_at
    }

    /// When the credential stops being valid (unix seconds): the first
    /// second at which verifying it again would fail, from a JWT's `exp`
    /// (plus the configured leeway), a timestamped signature's age passing
    /// `max_age`, and the matching key's `not_after`, whichever comes first.
    /// `None` for a credential without time bounds (a plain HMAC signature
    /// with a key that has no `not_after`), which is valid until its key is
    /// removed.
    ///
    /// A request is over in moments; a WebSocket or a server-sent events
    /// stream is not. Close long-lived connections at this time (and when
    /// your keys change), so that no connection outlives its credential.
    pub fn valid_until(&self) -> Option<u64> {
        self.valid_until
    }

    /// Identifier values sent beside the credential that it does not cover.
    pub fn unsigned(&self) -> &Unsigned {
        static NONE: Unsigned = Unsigned { user_id: None, email: None, visitor_id: None, metadata: None };
        self.unsigned.as_deref().unwrap_or(&NONE)
    }
}

/// What the layer decided for a request it let through.
///
/// Read it with [`IdentityOutcome::from_extensions`] (or the axum extractor):
/// the layer stores a [`VerifiedIdentity`] for a verified request and an
/// `IdentityOutcome` for every other request it lets through, so that the
/// common path inserts one value into the extensions, not two.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum IdentityOutcome {
    /// A credential verified; a [`VerifiedIdentity`] is in the extensions.
    Verified,
    /// No credential was sent (allowed by the mode).
    Anonymous,
    /// A credential was sent but is not trusted; see the reason.
    Unverified(UnverifiedReason),
}

impl IdentityOutcome {
    /// The label used in logs, metrics and forwarded headers:
    /// `verified`, `anonymous` or `unverified`.
    pub fn as_str(&self) -> &'static str {
        match self {
            IdentityOutcome::Verified => "verified",
            IdentityOutcome::Anonymous => "anonymous",
            IdentityOutcome::Unverified(_) => "unverified",
        }
    }

    /// Whether the outcome is [`IdentityOutcome::Verified`].
    pub fn is_verified(&self) -> bool {
        matches!(self, IdentityOutcome::Verified)
    }

    /// What the layer decided for the request carrying these extensions:
    /// `Verified` when they hold a [`VerifiedIdentity`], otherwise the
    /// outcome the layer stored; `None` when the layer did not run.
    ///
    /// ```
    /// use tower_identity::IdentityOutcome;
    ///
    /// # fn handler(req: http::Request<()>) {
    /// match IdentityOutcome::from_extensions(req.extensions()) {
    ///     Some(IdentityOutcome::Verified) => { /* req.extensions().get::<VerifiedIdentity>() is set */ }
    ///     Some(_) => { /* anonymous, or unverified in report-only / off mode */ }
    ///     None => { /* IdentityVerificationLayer is not installed on this route */ }
    /// }
    /// # }
    /// ```
    pub fn from_extensions(extensions: &http::Extensions) -> Option<IdentityOutcome> {
        if extensions.get::<VerifiedIdentity>().is_some() {
            return Some(IdentityOutcome::Verified);
        }
        extensions.get::<IdentityOutcome>().copied()
    }
}

/// Why a request passed without a verified identity although it carried a credential.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum UnverifiedReason {
    /// The mode is [`Mode::Off`](crate::Mode::Off): no check was made.
    VerificationOff,
    /// Report-only mode: the request would have been rejected with this code.
    WouldReject(ErrorCode),
}
