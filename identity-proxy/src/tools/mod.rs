//! `identity-proxy sign` and `identity-proxy check`: helpers for the people
//! wiring a backend to the proxy. They never print a secret.

use base64::Engine as _;
use tower_identity::{Claim, Failure, Identifier, Key, KeySet, Scheme, Secret, VerifyOptions, jwt, sign, verify};

use crate::config::Settings;

/// The identifier values given on the command line.
#[derive(Debug, Default, Clone)]
pub struct Ids {
    pub user_id: Option<String>,
    pub email: Option<String>,
    pub visitor_id: Option<String>,
}

impl Ids {
    fn get(&self, which: Identifier) -> Option<&str> {
        match which {
            Identifier::UserId => self.user_id.as_deref(),
            Identifier::Email => self.email.as_deref(),
            Identifier::VisitorId => self.visitor_id.as_deref(),
        }
    }

    fn all(&self) -> impl Iterator<Item = (Identifier, &str)> {
        [Identifier::UserId, Identifier::Email, Identifier::VisitorId]
            .into_iter()
            .filter_map(|i| self.get(i).map(|v| (i, v)))
    }
}

fn tenant_keys<'a>(settings: &'a Settings, tenant: Option<&str>) -> Result<(&'a KeySet, Option<&'a str>), String> {
    if settings.postgres.is_some() {
        return Err("sign and check use the tenants of the configuration file; these tenants live in PostgreSQL".into());
    }
    settings
        .keys
        .iter()
        .find(|(id, _, _)| id.as_deref() == tenant)
        .map(|(_, aud, set)| (set, aud.as_deref()))
        .ok_or_else(|| match tenant {
            Some(t) => format!("no tenant {t:?} in the configuration"),
            None => "no tenant without an id in the configuration: pass --tenant".to_owned(),
        })
}

fn describe(key: &Key) -> String {
    let id = key.id().map_or_else(|| "(no id)".to_owned(), |id| format!("{id:?}"));
    match key.scheme() {
        Scheme::Jwt => format!("key {id} (jwt)"),
        s => format!("key {id} ({} over {})", s.name(), s.identifier().map_or("?", |i| i.as_str())),
    }
}

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
            Ok(jwt::encode(key.secret(), key.id(), &claims))
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

/// Checks a signature or token and explains the verdict. Returns whether it verified.
pub fn check_cmd(
    settings: &Settings,
    tenant: Option<&str>,
    ids: &Ids,
    signature: Option<&str>,
    token: Option<&str>,
    now: u64,
    out: &mut impl std::io::Write,
) -> Result<bool, String> {
    let (keys, audience) = tenant_keys(settings, tenant)?;
    let mut claim = Claim::new();
    if let Some(v) = &ids.user_id {
        claim = claim.user_id(v.as_str());
    }
    if let Some(v) = &ids.email {
        claim = claim.email(v.as_str());
    }
    if let Some(v) = &ids.visitor_id {
        claim = claim.visitor_id(v.as_str());
    }
    if let Some(s) = signature {
        claim = claim.signature(s);
    }
    if let Some(t) = token {
        claim = claim.token(t);
    }
    let w = |out: &mut dyn std::io::Write, line: String| writeln!(out, "{line}").map_err(|e| e.to_string());
    let result = verify(&claim, keys, now, &settings.options);
    match &result {
        Ok(id) => {
            w(
                out,
                format!(
                    "valid: {} verified {}={}",
                    id.key_id().map_or("a key without id".into(), |k| format!("key {k:?}")),
                    id.subject(),
                    id.id()
                ),
            )?;
            return Ok(true);
        }
        Err(f) => w(out, format!("invalid: {} ({f})", f.code()))?,
    }
    w(out, format!("keys tried for tenant {}:", tenant.map_or("(none)".into(), |t| format!("{t:?}"))))?;
    for key in keys.keys() {
        let window = if key.is_valid_at(now) { "valid now" } else { "outside its validity window" };
        w(out, format!("  {} - {window}", describe(key)))?;
    }
    for hint in hints(keys, audience, ids, signature, token, now, &settings.options, result.err()) {
        w(out, format!("hint: {hint}"))?;
    }
    Ok(false)
}

fn matches_with(secret: &Secret, message: &str, hex_tag: &str) -> bool {
    sign::hmac(secret, message).eq_ignore_ascii_case(hex_tag)
}

#[allow(clippy::too_many_arguments)]
fn hints(
    keys: &KeySet,
    audience: Option<&str>,
    ids: &Ids,
    signature: Option<&str>,
    token: Option<&str>,
    now: u64,
    options: &VerifyOptions,
    failure: Option<Failure>,
) -> Vec<String> {
    let mut hints = Vec::new();
    if let Some(sig) = signature {
        let (tag, ts) = match sig.split_once('-') {
            Some((t, ts)) => (t, Some(ts)),
            None => (sig, None),
        };
        for key in keys.keys() {
            let Some(over) = key.scheme().identifier() else { continue };
            let timestamped = matches!(key.scheme(), Scheme::TimestampedHmac { .. });
            let message = |value: &str| match ts {
                Some(ts) => format!("{value}-{ts}"),
                None => value.to_owned(),
            };
            if ts.is_some() != timestamped {
                let form = if ts.is_some() { "a timestamped signature" } else { "a plain signature" };
                hints.push(format!("the signature is {form} but {} expects the other form", describe(key)));
            }
            // The other identifier.
            for (which, value) in ids.all() {
                if which != over && matches_with(key.secret(), &message(value), tag) {
                    hints.push(format!(
                        "the signature is over the {which} ({value:?}), but {} signs the {over}",
                        describe(key)
                    ));
                }
            }
            let Some(value) = ids.get(over) else {
                hints.push(format!("{} signs the {over}, which was not given", describe(key)));
                continue;
            };
            // The secret's encoding.
            let text = key.secret().expose();
            if let Ok(as_text) = std::str::from_utf8(text) {
                if let Ok(decoded) = Secret::hex(as_text)
                    && matches_with(&decoded, &message(value), tag)
                {
                    hints.push(format!(
                        "the signature verifies with the secret hex-decoded: set encoding = \"hex\" for {}",
                        describe(key)
                    ));
                }
                if let Ok(decoded) = Secret::base64(as_text)
                    && matches_with(&decoded, &message(value), tag)
                {
                    hints.push(format!(
                        "the signature verifies with the secret base64-decoded: set encoding = \"base64\" for {}",
                        describe(key)
                    ));
                }
            }
            let hex_form = hex::encode(text);
            if let Ok(as_hex_text) = Secret::text(&hex_form)
                && matches_with(&as_hex_text, &message(value), tag)
            {
                hints.push(format!("the signature was made with the hex string of the secret used as text: set encoding = \"utf8\" for {}", describe(key)));
            }
            // Expiry.
            if let (Some(ts), true) = (ts.and_then(|t| t.parse::<u64>().ok()), timestamped)
                && matches_with(key.secret(), &message(value), tag)
            {
                if now > ts + options.max_age {
                    hints.push(format!(
                        "the signature is genuine but expired by {} seconds (max age {} s)",
                        now - ts - options.max_age,
                        options.max_age
                    ));
                } else if ts > now + options.future_skew {
                    hints.push(format!(
                        "the signature is dated {} seconds in the future: check the signing server's clock",
                        ts - now
                    ));
                }
            }
        }
    }
    if let Some(token) = token {
        let payload =
            token.split('.').nth(1).and_then(|p| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(p).ok());
        let claims: Option<serde_json::Map<String, serde_json::Value>> =
            payload.and_then(|p| serde_json::from_slice(&p).ok());
        match claims {
            None => hints.push("the token's payload is not a JSON object".into()),
            Some(c) => {
                if let Some(exp) = c.get("exp").and_then(|v| v.as_u64())
                    && now >= exp
                {
                    hints.push(format!("the token expired {} seconds ago", now - exp));
                }
                if let (Some(exp), Some(iat)) =
                    (c.get("exp").and_then(|v| v.as_u64()), c.get("iat").and_then(|v| v.as_u64()))
                    && exp.saturating_sub(iat) > options.jwt.max_lifetime
                {
                    hints.push(format!(
                        "the token lives {} seconds; the maximum is {}",
                        exp - iat,
                        options.jwt.max_lifetime
                    ));
                }
                if let Some(expected) = audience {
                    match c.get("aud") {
                        Some(aud) if aud.as_str() == Some(expected) => {}
                        Some(aud) => hints.push(format!("the token's aud is {aud}, the tenant expects {expected:?}")),
                        None => hints.push(format!("the token has no aud; the tenant expects {expected:?}")),
                    }
                }
                if let Some(email) = &ids.email
                    && c.get("email").and_then(|v| v.as_str()) != Some(email)
                {
                    hints.push("the email given beside the token differs from its email claim".into());
                }
            }
        }
        if matches!(failure, Some(Failure::Invalid)) && !keys.keys().iter().any(|k| matches!(k.scheme(), Scheme::Jwt)) {
            hints.push("this tenant has no jwt key".into());
        }
    }
    hints.dedup();
    hints
}
