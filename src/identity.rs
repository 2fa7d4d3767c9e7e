//! What handlers see: [`VerifiedIdentity`] (with the [`SignedClaims`] of a
//! JWT and the [`Unsigned`] values sent beside a credential) and, for every
//! request the layer lets through, its [`IdentityOutcome`].

#[cfg(feature = "jwt")]
use std::fmt;
use std::sync::Arc;

#[cfg(feature = "jwt")]
use serde_json::{Map, Value};

pub use crate::claim::IdStr;
use crate::code::ErrorCode;
use crate::key::{Identifier, Scheme};

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
}

/// An identity proven by a valid signature, inserted into the request
/// extensions by the layer once the verdict is in.
///
/// Cheap to clone (reference-counted fields). Only the identifier the
/// signature covers is exposed as proven; values sent beside it are in
/// [`unsigned`](Self::unsigned).
#[derive(Clone, PartialEq, Eq)]
pub struct VerifiedIdentity {
    pub(crate) subject: Identifier,
    pub(crate) scheme: Scheme,
    /// The subject's value.
    pub(crate) id: IdStr,
    pub(crate) tenant: Option<IdStr>,
    pub(crate) key_id: Option<Arc<str>>,
    pub(crate) signed_at: Seconds,
    pub(crate) valid_until: Seconds,
    /// What most identities do not carry, behind one reference count: the
    /// identity stays two cache lines, which the layer moves and boxes into
    /// the extensions on every verified request without a `memcpy` call.
    pub(crate) extra: Option<Arc<Extra>>,
}

impl std::fmt::Debug for VerifiedIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut d = f.debug_struct("VerifiedIdentity");
        d.field("subject", &self.subject)
            .field("user_id", &self.user_id())
            .field("email", &self.email())
            .field("visitor_id", &self.visitor_id())
            .field("scheme", &self.scheme)
            .field("tenant", &self.tenant())
            .field("key_id", &self.key_id())
            .field("signed_at", &self.signed_at())
            .field("valid_until", &self.valid_until());
        #[cfg(feature = "jwt")]
        d.field("claims", &self.claims());
        d.field("unsigned", self.unsigned()).finish()
    }
}

/// The rarer parts of a [`VerifiedIdentity`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Extra {
    /// Identifiers proven besides the subject (a JWT that signs several).
    pub(crate) user_id: Option<IdStr>,
    pub(crate) email: Option<IdStr>,
    pub(crate) visitor_id: Option<IdStr>,
    #[cfg(feature = "jwt")]
    pub(crate) claims: Option<SignedClaims>,
    pub(crate) unsigned: Unsigned,
}

impl Extra {
    /// `None` when there is nothing to keep, so that the common identity allocates nothing for it.
    pub(crate) fn shared(self) -> Option<Arc<Extra>> {
        (self != Extra::default()).then(|| Arc::new(self))
    }
}

/// A time in unix seconds, or none, in 8 bytes: `u64::MAX` (a second no
/// credential can name: timestamps have at most 19 digits) stands for none.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct Seconds(u64);

impl Seconds {
    /// `secs` (a computed bound at `u64::MAX`, reachable only by saturating
    /// additions, reads as one second earlier, still centuries away).
    pub(crate) fn new(secs: Option<u64>) -> Seconds {
        Seconds(secs.map_or(u64::MAX, |s| s.min(u64::MAX - 1)))
    }

    pub(crate) fn get(self) -> Option<u64> {
        (self.0 != u64::MAX).then_some(self.0)
    }
}

impl std::fmt::Debug for Seconds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.get().fmt(f)
    }
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
        &self.id
    }

    /// The value of `which`, when proven: the subject's, or another signed
    /// into the same token.
    pub(crate) fn proven_str(&self, which: Identifier) -> Option<&IdStr> {
        if self.subject == which {
            return Some(&self.id);
        }
        let extra = self.extra.as_deref()?;
        match which {
            Identifier::UserId => extra.user_id.as_ref(),
            Identifier::Email => extra.email.as_ref(),
            Identifier::VisitorId => extra.visitor_id.as_ref(),
        }
    }

    fn proven(&self, which: Identifier) -> Option<&str> {
        self.proven_str(which).map(IdStr::as_str)
    }

    /// The user id, when proven (HMAC over the user id, or a JWT's `sub`/`user_id`).
    pub fn user_id(&self) -> Option<&str> {
        self.proven(Identifier::UserId)
    }

    /// The email, when proven (HMAC over the email, or a JWT's `email`).
    pub fn email(&self) -> Option<&str> {
        self.proven(Identifier::Email)
    }

    /// The anonymous visitor id, when proven.
    pub fn visitor_id(&self) -> Option<&str> {
        self.proven(Identifier::VisitorId)
    }

    /// All claims of a verified JWT (`name`, `account_id`, …); `None` for HMAC schemes.
    #[cfg(feature = "jwt")]
    #[cfg_attr(docsrs, doc(cfg(feature = "jwt")))]
    pub fn claims(&self) -> Option<&SignedClaims> {
        self.extra.as_deref()?.claims.as_ref()
    }

    /// The scheme that verified.
    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    /// The tenant the request named (app, agent, organisation, channel), if
    /// any, and whose policy verified it. With a tenant-agnostic provider
    /// (one static [`KeySet`](crate::key::KeySet)) this is only what the client sent.
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
        self.signed_at.get()
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
        self.valid_until.get()
    }

    /// Identifier values sent beside the credential that it does not cover.
    pub fn unsigned(&self) -> &Unsigned {
        static NONE: Unsigned = Unsigned { user_id: None, email: None, visitor_id: None, metadata: None };
        self.extra.as_deref().map_or(&NONE, |extra| &extra.unsigned)
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
    /// The mode is [`Mode::Off`](crate::mode::Mode::Off): no check was made.
    VerificationOff,
    /// Report-only mode: the request would have been rejected with this code.
    WouldReject(ErrorCode),
}

/// The claims a verified token carries, all of them, kept apart from
/// unsigned metadata.
///
/// Verification reads only the claims it checks, in one pass over the
/// payload; the full claim set is parsed on first use (once per request, and
/// only by handlers that ask).
#[cfg(feature = "jwt")]
#[cfg_attr(docsrs, doc(cfg(feature = "jwt")))]
#[derive(Clone)]
pub struct SignedClaims {
    /// The decoded payload, already checked to be a JSON object without duplicate keys.
    payload: bytes::Bytes,
    parsed: std::sync::OnceLock<Map<String, Value>>,
}

#[cfg(feature = "jwt")]
impl PartialEq for SignedClaims {
    fn eq(&self, other: &Self) -> bool {
        self.payload == other.payload
    }
}
#[cfg(feature = "jwt")]
impl Eq for SignedClaims {}

#[cfg(feature = "jwt")]
impl SignedClaims {
    pub(crate) fn new(payload: bytes::Bytes) -> SignedClaims {
        SignedClaims { payload, parsed: std::sync::OnceLock::new() }
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

#[cfg(feature = "jwt")]
impl fmt::Debug for SignedClaims {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.map().iter()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_keep_every_time_but_the_sentinel() {
        assert_eq!(Seconds::new(None).get(), None);
        for t in [0, 1, 1_767_225_600, u64::MAX - 1] {
            assert_eq!(Seconds::new(Some(t)).get(), Some(t));
        }
        // A bound saturated to u64::MAX is still a bound, not "none".
        assert_eq!(Seconds::new(Some(u64::MAX)).get(), Some(u64::MAX - 1));
    }
}
