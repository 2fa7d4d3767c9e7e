//! `identity-proxy check`: verifies a signature or token with the tenant's
//! keys and, when it fails, explains the likely mistake.

use base64::Engine as _;
use tower_identity::{
    Key, KeySet, Scheme, Secret, claim::Claim, sign, verify::Failure, verify::VerifyOptions, verify::verify,
};

use super::{Ids, describe, tenant_keys};
use crate::config::Settings;

/// What was checked, against which keys.
struct Given<'a> {
    keys: &'a KeySet,
    audience: Option<&'a str>,
    ids: &'a Ids,
    now: u64,
    options: &'a VerifyOptions,
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
    let mut w = |line: String| writeln!(out, "{line}").map_err(|e| e.to_string());
    let failure = match verify(&claim(ids, signature, token), keys, now, &settings.options) {
        Ok(id) => {
            let key = id.key_id().map_or("a key without id".into(), |k| format!("key {k:?}"));
            w(format!("valid: {key} verified {}={}", id.subject(), id.id()))?;
            return Ok(true);
        }
        Err(f) => f,
    };
    // The code, and the detail when the failure has more to say than its code.
    let (code, detail) = (failure.code().as_str(), failure.to_string());
    w(if detail == code { format!("invalid: {code}") } else { format!("invalid: {code} ({detail})") })?;
    w(format!("keys tried for {}:", tenant.map_or("the default tenant".into(), |t| format!("tenant {t:?}"))))?;
    for key in keys.keys() {
        let window = if key.is_valid_at(now) { "valid now" } else { "outside its validity window" };
        w(format!("  {} - {window}", describe(key)))?;
    }
    let given = Given { keys, audience, ids, now, options: &settings.options };
    let mut hints = Vec::new();
    if let Some(sig) = signature {
        for key in keys.keys() {
            signature_hints(&given, key, sig, &mut hints);
        }
    }
    if let Some(token) = token {
        token_hints(&given, token, &failure, &mut hints);
    }
    hints.dedup();
    for hint in hints {
        w(format!("hint: {hint}"))?;
    }
    Ok(false)
}

fn claim(ids: &Ids, signature: Option<&str>, token: Option<&str>) -> Claim {
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
    claim
}

fn matches_with(secret: &Secret, message: &str, hex_tag: &str) -> bool {
    sign::hmac(secret, message).eq_ignore_ascii_case(hex_tag)
}

/// Why `sig` may have failed with `key`: the other signature form, another
/// identifier, the secret's encoding, its age.
fn signature_hints(given: &Given<'_>, key: &Key, sig: &str, hints: &mut Vec<String>) {
    let Some(over) = key.scheme().identifier() else { return };
    let (tag, ts) = match sig.split_once('-') {
        Some((t, ts)) => (t, Some(ts)),
        None => (sig, None),
    };
    let message = |value: &str| match ts {
        Some(ts) => format!("{value}-{ts}"),
        None => value.to_owned(),
    };
    let timestamped = matches!(key.scheme(), Scheme::TimestampedHmac { .. });
    if ts.is_some() != timestamped {
        let form = if ts.is_some() { "a timestamped signature" } else { "a plain signature" };
        hints.push(format!("the signature is {form} but {} expects the other form", describe(key)));
    }
    for (which, value) in given.ids.all() {
        if which != over && matches_with(key.secret(), &message(value), tag) {
            hints
                .push(format!("the signature is over the {which} ({value:?}), but {} signs the {over}", describe(key)));
        }
    }
    let Some(value) = given.ids.get(over) else {
        hints.push(format!("{} signs the {over}, which was not given", describe(key)));
        return;
    };
    let message = message(value);
    encoding_hints(key, &message, tag, hints);
    if let (Some(ts), true) = (ts.and_then(|t| t.parse::<u64>().ok()), timestamped)
        && matches_with(key.secret(), &message, tag)
    {
        age_hint(given, ts, hints);
    }
}

/// Whether `tag` verifies with the key's secret decoded otherwise.
fn encoding_hints(key: &Key, message: &str, tag: &str, hints: &mut Vec<String>) {
    let text = key.secret().expose();
    if let Ok(as_text) = std::str::from_utf8(text) {
        if let Ok(decoded) = Secret::hex(as_text)
            && matches_with(&decoded, message, tag)
        {
            hints.push(format!(
                "the signature verifies with the secret hex-decoded: set encoding = \"hex\" for {}",
                describe(key)
            ));
        }
        if let Ok(decoded) = Secret::base64(as_text)
            && matches_with(&decoded, message, tag)
        {
            hints.push(format!(
                "the signature verifies with the secret base64-decoded: set encoding = \"base64\" for {}",
                describe(key)
            ));
        }
    }
    if let Ok(as_hex_text) = Secret::text(&hex::encode(text))
        && matches_with(&as_hex_text, message, tag)
    {
        hints.push(format!(
            "the signature was made with the hex string of the secret used as text: set encoding = \"utf8\" for {}",
            describe(key)
        ));
    }
}

/// A genuine timestamped signature made at `ts`: expired, or from the future.
fn age_hint(given: &Given<'_>, ts: u64, hints: &mut Vec<String>) {
    let (now, max_age) = (given.now, given.options.get_max_age());
    if now > ts + max_age {
        hints.push(format!(
            "the signature is genuine but expired by {} seconds (max age {max_age} s)",
            now - ts - max_age
        ));
    } else if ts > now + given.options.get_future_skew() {
        hints.push(format!(
            "the signature is dated {} seconds in the future: check the signing server's clock",
            ts - now
        ));
    }
}

/// Why `token` may have failed: its claims (expiry, lifetime, audience,
/// email), or a tenant without a JWT key.
fn token_hints(given: &Given<'_>, token: &str, failure: &Failure, hints: &mut Vec<String>) {
    let payload = token.split('.').nth(1).and_then(|p| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(p).ok());
    let claims: Option<serde_json::Map<String, serde_json::Value>> =
        payload.and_then(|p| serde_json::from_slice(&p).ok());
    match claims {
        None => hints.push("the token's payload is not a JSON object".into()),
        Some(c) => claim_hints(given, &c, hints),
    }
    if matches!(failure, Failure::Invalid) && !given.keys.keys().iter().any(|k| matches!(k.scheme(), Scheme::Jwt)) {
        hints.push("this tenant has no jwt key".into());
    }
}

fn claim_hints(given: &Given<'_>, c: &serde_json::Map<String, serde_json::Value>, hints: &mut Vec<String>) {
    let (exp, iat) = (c.get("exp").and_then(|v| v.as_u64()), c.get("iat").and_then(|v| v.as_u64()));
    if let Some(exp) = exp
        && given.now >= exp
    {
        hints.push(format!("the token expired {} seconds ago", given.now - exp));
    }
    let max_lifetime = given.options.get_jwt().get_max_lifetime();
    if let (Some(exp), Some(iat)) = (exp, iat)
        && exp.saturating_sub(iat) > max_lifetime
    {
        hints.push(format!("the token lives {} seconds; the maximum is {max_lifetime}", exp - iat));
    }
    if let Some(expected) = given.audience {
        match c.get("aud") {
            Some(aud) if aud.as_str() == Some(expected) => {}
            Some(aud) => hints.push(format!("the token's aud is {aud}, the tenant expects {expected:?}")),
            None => hints.push(format!("the token has no aud; the tenant expects {expected:?}")),
        }
    }
    if let Some(email) = &given.ids.email
        && c.get("email").and_then(|v| v.as_str()) != Some(email)
    {
        hints.push("the email given beside the token differs from its email claim".into());
    }
}
