//! The signing side, every minting path in one place: what a Rust backend
//! runs to produce the signatures and tokens the layer verifies. HMAC output
//! is byte-for-byte what the vendors' Node.js, Python, Go and Ruby snippets
//! produce (lowercase hex); tokens are compact HS256 JWTs.
//!
//! ```
//! use tower_identity::{sign, Secret};
//!
//! let secret = Secret::text("a6c93e058a4ab236449bd321002352483a85138489d2ee4fb2eaa4cfd3ab2ba8").unwrap();
//! assert_eq!(
//!     sign::timestamped_hmac(&secret, "id-c5c178f6", 1741761604),
//!     "6a403a1fcfcc866b8917e6e208a553004c54c73846bc4f3f686757e2a5ad588e-1741761604",
//! );
//! ```

#[cfg(feature = "jwt")]
use base64::Engine as _;
#[cfg(feature = "jwt")]
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{KeyInit, Mac};
#[cfg(feature = "jwt")]
use serde_json::Value;

use crate::key::{HmacSha256, Key, Scheme};
use crate::secret::Secret;

fn keyed(secret: &Secret) -> HmacSha256 {
    HmacSha256::new_from_slice(secret.expose()).expect("HMAC accepts keys of any length")
}

fn tag_hex(mac: HmacSha256) -> String {
    hex::encode(mac.finalize().into_bytes())
}

/// HMAC-SHA256 of `identifier` under `secret`, as 64 lowercase hex characters.
pub fn hmac(secret: &Secret, identifier: &str) -> String {
    let mut mac = keyed(secret);
    mac.update(identifier.as_bytes());
    tag_hex(mac)
}

/// The timestamped signature `<hex>-<unix_ts>`, where `<hex>` is the
/// HMAC-SHA256 of `{identifier}-{unix_ts}`.
pub fn timestamped_hmac(secret: &Secret, identifier: &str, unix_ts: u64) -> String {
    let ts = unix_ts.to_string();
    let mut mac = keyed(secret);
    mac.update(identifier.as_bytes());
    mac.update(b"-");
    mac.update(ts.as_bytes());
    format!("{}-{ts}", tag_hex(mac))
}

impl Key {
    /// Signs `identifier` with this key in its scheme; `now` (unix seconds)
    /// is used by timestamped schemes. For a JWT key this mints a token with
    /// `sub` = `identifier`, `iat` = `now`, `exp` = `now + 600` and the key's
    /// id as `kid` (use [`jwt`] or [`jwt_token`] for more claims).
    pub fn sign(&self, identifier: &str, now: u64) -> String {
        match self.scheme {
            Scheme::Hmac { .. } => hmac(&self.secret, identifier),
            Scheme::TimestampedHmac { .. } => timestamped_hmac(&self.secret, identifier, now),
            #[cfg(feature = "jwt")]
            Scheme::Jwt => {
                let mut claims = serde_json::Map::new();
                claims.insert("sub".into(), identifier.into());
                claims.insert("iat".into(), now.into());
                claims.insert("exp".into(), now.saturating_add(600).into());
                jwt(&self.secret, self.id.as_deref(), &claims)
            }
        }
    }
}

/// Mints an HS256 token with `claims` (a JSON object) and an optional `kid`.
///
/// The caller sets `exp` (and `iat`); [`jwt_token`] does it for you.
#[cfg(feature = "jwt")]
#[cfg_attr(docsrs, doc(cfg(feature = "jwt")))]
pub fn jwt(secret: &Secret, kid: Option<&str>, claims: &serde_json::Map<String, Value>) -> String {
    let mut header = serde_json::Map::new();
    header.insert("alg".into(), "HS256".into());
    header.insert("typ".into(), "JWT".into());
    if let Some(kid) = kid {
        header.insert("kid".into(), kid.into());
    }
    let h64 = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header).expect("a JSON map serializes"));
    let p64 = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).expect("a JSON map serializes"));
    let signing_input = format!("{h64}.{p64}");
    let mut mac = keyed(secret);
    mac.update(signing_input.as_bytes());
    let s64 = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    format!("{signing_input}.{s64}")
}

/// Mints the short-lived token a chat widget's backend hands its page:
/// `email`, optional `name`, `aud` (the app id), `iat` = `now` and
/// `exp` = `now + lifetime_secs`, plus any `extra` claims (`account_id`,
/// `sub`, …).
///
/// ```
/// use tower_identity::{sign, Secret};
///
/// let secret = Secret::text("jwt-secret-shown-once-in-the-dashboard").unwrap();
/// let token = sign::jwt_token(&secret, "app_3b1d9e", "jane@example.com", Some("Jane Doe"), 1_767_225_600, 600, []);
/// assert_eq!(token.split('.').count(), 3);
/// ```
#[cfg(feature = "jwt")]
#[cfg_attr(docsrs, doc(cfg(feature = "jwt")))]
pub fn jwt_token<'a>(
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
    jwt(secret, None, &claims)
}
