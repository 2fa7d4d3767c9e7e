//! The checks every gateway runs: valid, forged, missing, expired
//! timestamped and JWT credentials, from headers and from the query, for a
//! required, an optional and a report-only tenant, each request carrying
//! spoofed identity headers in every spelling.

use std::time::{SystemTime, UNIX_EPOCH};

use tower_identity::{Identifier, Key, Secret};

pub const HMAC: &str = "authz-hmac-secret-0123456789";
pub const TIMESTAMPED: &str = "authz-timestamped-secret-0123";
pub const JWT: &str = "authz-jwt-secret-0123456789ab";
pub const OPTIONAL: &str = "authz-optional-secret-012345";
pub const AUDIT: &str = "authz-audit-secret-0123456789";
pub const FORGED: &str = "not-the-secret-0123456789abcd";

/// The secret files the configuration names.
pub const SECRETS: [(&str, &str); 5] =
    [("hmac.txt", HMAC), ("ts.txt", TIMESTAMPED), ("jwt.txt", JWT), ("optional.txt", OPTIONAL), ("audit.txt", AUDIT)];

/// identity-proxy's configuration for the tests: the auth listeners, and an
/// upstream (`extra`) or none.
pub fn config(extra: &str) -> String {
    format!(
        r#"
mode = "required"
reload_poll_secs = 0
listen = "127.0.0.1:0"
{extra}

[authz]
listen = "127.0.0.1:0"
grpc_listen = "127.0.0.1:0"

[sources]
query_defaults = true
headers = {{ tenant = "x-tenant" }}
query = {{ tenant = "tenant" }}

[[tenants]]
[[tenants.keys]]
id = "hmac-1"
scheme = "hmac"
secret_file = "hmac.txt"
[[tenants.keys]]
id = "ts-1"
scheme = "timestamped_hmac"
secret_file = "ts.txt"
[[tenants.keys]]
id = "jwt-1"
scheme = "jwt"
secret_file = "jwt.txt"

[[tenants]]
id = "opt"
mode = "optional"
[[tenants.keys]]
id = "opt-1"
scheme = "hmac"
secret_file = "optional.txt"

[[tenants]]
id = "audit"
mode = "report-only"
[[tenants.keys]]
id = "audit-1"
scheme = "hmac"
secret_file = "audit.txt"
"#
    )
}

/// Client-sent identity headers, in the spellings an upstream might read as ours.
pub const SPOOFS: [&str; 9] = [
    "X-Verified-User-Id",
    "x_verified_user_id",
    "x.verified.user.id",
    "X-VERIFIED-EMAIL",
    "x-verified_tenant",
    "x-verified-key-id",
    "x-verified-visitor-id",
    "x-identity-outcome",
    "x_identity.outcome",
];

/// What the gateway must do with a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expect {
    /// Pass, the upstream seeing exactly these identity headers.
    Pass(Vec<(&'static str, String)>),
    /// 401 from the auth service; the upstream is not called.
    Reject,
}

/// One original request.
#[derive(Clone, Debug)]
pub struct Case {
    pub name: String,
    /// Path and query.
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub expect: Expect,
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

fn key(scheme: &str, secret: &str) -> Key {
    let secret = Secret::text(secret).unwrap();
    match scheme {
        "hmac" => Key::hmac(Identifier::UserId, secret),
        "timestamped" => Key::timestamped_hmac(Identifier::UserId, secret),
        _ => Key::jwt(secret),
    }
}

fn verified(user: &str, tenant: Option<&str>, key_id: &str) -> Expect {
    let mut h = vec![
        ("x-verified-user-id", user.to_owned()),
        ("x-verified-key-id", key_id.to_owned()),
        ("x-identity-outcome", "verified".to_owned()),
    ];
    if let Some(t) = tenant {
        h.push(("x-verified-tenant", t.to_owned()));
    }
    Expect::Pass(h)
}

fn outcome(value: &str) -> Expect {
    Expect::Pass(vec![("x-identity-outcome", value.to_owned())])
}

/// A credential: (signature role, value) or none.
struct Claim<'a> {
    tenant: Option<&'a str>,
    user: Option<&'a str>,
    /// `signature` or `token`, and its value.
    credential: Option<(&'a str, String)>,
}

/// The same claim sent in headers or in the query.
fn place(name: &str, n: usize, claim: &Claim<'_>, query: bool, expect: Expect) -> Case {
    let mut fields: Vec<(&str, String)> = Vec::new();
    if let Some(t) = claim.tenant {
        fields.push(("tenant", t.to_owned()));
    }
    if let Some(u) = claim.user {
        fields.push(("user_id", u.to_owned()));
    }
    if let Some((role, value)) = &claim.credential {
        fields.push((role, value.clone()));
    }
    let case = format!("{name}-{}-{n}", if query { "query" } else { "header" });
    let mut headers = vec![("x-case".to_owned(), case.clone())];
    headers.extend(SPOOFS.iter().map(|s| ((*s).to_owned(), "admin".to_owned())));
    let mut target = format!("/chat/{n}");
    if query {
        let q: Vec<String> = fields.iter().map(|(k, v)| format!("{k}={v}")).collect();
        target = format!("{target}?page=1&{}", q.join("&"));
    } else {
        target.push_str("?page=1");
        for (role, value) in fields {
            let header = match role {
                "tenant" => "x-tenant",
                "user_id" => "x-user-id",
                "signature" => "x-identity-signature",
                _ => "x-identity-token",
            };
            headers.push((header.to_owned(), value));
        }
    }
    Case { name: case, target, headers, expect }
}

/// The cases for user `u{n}` (so that concurrent runs can tell them apart).
pub fn cases(n: usize) -> Vec<Case> {
    let user = format!("u{n}");
    let u = Some(user.as_str());
    let now = now();
    let sig = |scheme: &str, secret: &str, at: u64| Some(("signature", key(scheme, secret).sign(&user, at)));
    let token = |secret: &str, at: u64| Some(("token", key("jwt", secret).with_id("jwt-1").sign(&user, at)));
    let table: Vec<(&str, Claim<'_>, Expect)> = vec![
        (
            "hmac-valid",
            Claim { tenant: None, user: u, credential: sig("hmac", HMAC, now) },
            verified(&user, None, "hmac-1"),
        ),
        ("hmac-forged", Claim { tenant: None, user: u, credential: sig("hmac", FORGED, now) }, Expect::Reject),
        ("missing", Claim { tenant: None, user: u, credential: None }, Expect::Reject),
        (
            "timestamped-valid",
            Claim { tenant: None, user: u, credential: sig("timestamped", TIMESTAMPED, now - 5) },
            verified(&user, None, "ts-1"),
        ),
        (
            "timestamped-expired",
            Claim { tenant: None, user: u, credential: sig("timestamped", TIMESTAMPED, now - 7200) },
            Expect::Reject,
        ),
        (
            "jwt-valid",
            Claim { tenant: None, user: None, credential: token(JWT, now - 5) },
            verified(&user, None, "jwt-1"),
        ),
        ("jwt-forged", Claim { tenant: None, user: None, credential: token(FORGED, now - 5) }, Expect::Reject),
        ("jwt-expired", Claim { tenant: None, user: None, credential: token(JWT, now - 3600) }, Expect::Reject),
        ("optional-anonymous", Claim { tenant: Some("opt"), user: None, credential: None }, outcome("anonymous")),
        (
            "optional-valid",
            Claim { tenant: Some("opt"), user: u, credential: sig("hmac", OPTIONAL, now) },
            verified(&user, Some("opt"), "opt-1"),
        ),
        (
            "optional-forged",
            Claim { tenant: Some("opt"), user: u, credential: sig("hmac", FORGED, now) },
            Expect::Reject,
        ),
        ("report-only-anonymous", Claim { tenant: Some("audit"), user: None, credential: None }, outcome("anonymous")),
        (
            "report-only-forged",
            Claim { tenant: Some("audit"), user: u, credential: sig("hmac", FORGED, now) },
            outcome("unverified"),
        ),
        (
            "report-only-valid",
            Claim { tenant: Some("audit"), user: u, credential: sig("hmac", AUDIT, now) },
            verified(&user, Some("audit"), "audit-1"),
        ),
    ];
    let mut out = Vec::new();
    for (name, claim, expect) in &table {
        for query in [false, true] {
            out.push(place(name, n, claim, query, expect.clone()));
        }
    }
    out
}

/// The identity headers as a sorted list, for comparing with [`Expect::Pass`].
pub fn expected(headers: &[(&'static str, String)]) -> std::collections::BTreeMap<String, Vec<String>> {
    headers.iter().map(|(k, v)| ((*k).to_owned(), vec![v.clone()])).collect()
}
