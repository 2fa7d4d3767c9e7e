//! The signing side: what a Rust backend runs to produce the signatures the
//! layer verifies. The output is byte-for-byte what the vendors' Node.js,
//! Python, Go and Ruby snippets produce (lowercase hex).
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

use hmac::{KeyInit, Mac};

use crate::key::{HmacSha256, Key, Scheme};
use crate::secret::Secret;

fn tag_hex(mac: HmacSha256) -> String {
    hex::encode(mac.finalize().into_bytes())
}

/// HMAC-SHA256 of `identifier` under `secret`, as 64 lowercase hex characters.
pub fn hmac(secret: &Secret, identifier: &str) -> String {
    let mut mac = HmacSha256::new_from_slice(secret.expose()).expect("HMAC accepts keys of any length");
    mac.update(identifier.as_bytes());
    tag_hex(mac)
}

/// The timestamped signature `<hex>-<unix_ts>`, where `<hex>` is the
/// HMAC-SHA256 of `{identifier}-{unix_ts}` (seed 000's format).
pub fn timestamped_hmac(secret: &Secret, identifier: &str, unix_ts: u64) -> String {
    let ts = unix_ts.to_string();
    let mut mac = HmacSha256::new_from_slice(secret.expose()).expect("HMAC accepts keys of any length");
    mac.update(identifier.as_bytes());
    mac.update(b"-");
    mac.update(ts.as_bytes());
    format!("{}-{ts}", tag_hex(mac))
}

impl Key {
    /// Signs `identifier` with this key in its scheme; `now` (unix seconds)
    /// is used by timestamped schemes. For a JWT key this mints a token with
    /// `sub` = `identifier`, `iat` = `now`, `exp` = `now + 600` and the key's
    /// id as `kid` (use [`crate::jwt::token`] for more claims).
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
                crate::jwt::encode(&self.secret, self.id.as_deref(), &claims)
            }
        }
    }
}
