//! `identity-proxy sign`: a valid signature or token, made like a backend would.

use tower_identity::{Scheme, sign};

use super::{Ids, describe, tenant_keys};
use crate::config::Settings;

/// Prints a signature or token for `ids` with the tenant's first currently
/// valid key (or the key named `key_id`).
pub fn sign_cmd(
    settings: &Settings,
    tenant: Option<&str>,
    key_id: Option<&str>,
    ids: &Ids,
    name: Option<&str>,
    now: u64,
    lifetime: u64,
) -> Result<String, String> {
    let (keys, audience) = tenant_keys(settings, tenant)?;
    let key = match key_id {
        Some(k) => keys.get(k).ok_or_else(|| format!("no key {k:?} for this tenant"))?,
        None => keys.keys().iter().find(|k| k.is_valid_at(now)).ok_or("no key of this tenant is valid now")?,
    };
    match key.scheme() {
        Scheme::Jwt => {
            let email = ids.email.as_deref().ok_or("a jwt key signs an --email")?;
            let mut extra = Vec::new();
            if let Some(u) = &ids.user_id {
                extra.push(("sub", serde_json::Value::from(u.as_str())));
            }
            let mut claims = serde_json::Map::new();
            claims.insert("email".into(), email.into());
            if let Some(n) = name {
                claims.insert("name".into(), n.into());
            }
            if let Some(a) = audience {
                claims.insert("aud".into(), a.into());
            }
            claims.insert("iat".into(), now.into());
            claims.insert("exp".into(), (now + lifetime).into());
            for (k, v) in extra {
                claims.insert(k.into(), v);
            }
            Ok(sign::jwt(key.secret(), key.id(), &claims))
        }
        scheme => {
            let over = scheme.identifier().expect("hmac schemes sign an identifier");
            let value = ids.get(over).ok_or_else(|| {
                format!("{} signs the {over}: pass --{}", describe(key), over.as_str().replace('_', "-"))
            })?;
            Ok(key.sign(value, now))
        }
    }
}
