//! The sidecar's configuration: a TOML file, overridable from the
//! environment, with secrets read only from environment variables or files.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::Deserialize;
use tower_identity::jwt::JwtOptions;
use tower_identity::{
    ForwardHeaders, Identifier, Key, KeySet, Mode, Role, Secret, SecretEncoding, Sources, TenantMap, TenantPolicy,
    VerifyOptions,
};

/// Prefix of the environment variables that override configuration keys:
/// `IDENTITY_PROXY_MODE=optional`, `IDENTITY_PROXY_SOURCES__BODY_LIMIT=8192`.
pub const ENV_PREFIX: &str = "IDENTITY_PROXY_";

/// A configuration problem: the file, the key and what is wrong.
#[derive(Debug)]
pub struct ConfigError {
    pub file: PathBuf,
    pub key: String,
    pub problem: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}: {}", self.file.display(), self.problem)
        } else {
            write!(f, "{}: {}: {}", self.file.display(), self.key, self.problem)
        }
    }
}

impl std::error::Error for ConfigError {}

#[derive(Debug, Deserialize, Default, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum UpstreamProtocol {
    #[default]
    Http1,
    H2c,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub listen: Option<String>,
    pub upstream: Option<String>,
    #[serde(default)]
    pub upstream_protocol: UpstreamProtocol,
    pub mode: Option<String>,
    pub health_path: Option<String>,
    pub metrics_path: Option<String>,
    #[serde(default)]
    pub strip_credentials: bool,
    pub upstream_timeout_secs: Option<u64>,
    pub header_read_timeout_secs: Option<u64>,
    /// The whole request body must arrive within this many seconds of its
    /// headers (0: no deadline).
    pub body_read_timeout_secs: Option<u64>,
    pub reload_poll_secs: Option<u64>,
    pub shutdown_grace_secs: Option<u64>,
    #[serde(default)]
    pub verify: VerifySection,
    #[serde(default)]
    pub sources: SourcesSection,
    #[serde(default)]
    pub forward: BTreeMap<String, String>,
    #[serde(default)]
    pub tenants: Vec<TenantSection>,
    pub postgres: Option<PostgresSection>,
    #[serde(default)]
    pub tunnels: crate::revocation::TunnelSection,
}

/// Tenants and keys in PostgreSQL instead of this file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresSection {
    /// The environment variable holding the connection URL (it may carry a password).
    pub url_env: Option<String>,
    /// Or a file holding it.
    pub url_file: Option<PathBuf>,
    pub max_connections: Option<usize>,
    pub cache_ttl_secs: Option<u64>,
    pub negative_ttl_secs: Option<u64>,
    pub lookup_timeout_secs: Option<u64>,
    pub serve_stale_secs: Option<u64>,
    /// Drop cached keys at once on `NOTIFY identity_keys` (default true).
    pub listen_notify: Option<bool>,
}

/// The PostgreSQL provider settings, checked.
pub struct PostgresSettings {
    pub url: zeroize::Zeroizing<String>,
    pub max_connections: usize,
    pub cache: tower_identity::CacheOptions,
    pub listen_notify: bool,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct VerifySection {
    pub max_age_secs: Option<u64>,
    pub future_skew_secs: Option<u64>,
    pub max_identifier_len: Option<usize>,
    pub min_secret_len: Option<usize>,
    pub jwt_max_lifetime_secs: Option<u64>,
    pub jwt_leeway_secs: Option<u64>,
    #[serde(default)]
    pub jwt_require_iat: bool,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct SourcesSection {
    /// Role name -> header name; an empty name turns the header off.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Role name -> query parameter.
    #[serde(default)]
    pub query: BTreeMap<String, String>,
    #[serde(default)]
    pub query_defaults: bool,
    /// Role name -> `Sec-WebSocket-Protocol` entry prefix.
    #[serde(default)]
    pub protocol: BTreeMap<String, String>,
    /// `identity.token.`, `identity.signature.`, `identity.timestamp.` entries.
    #[serde(default)]
    pub protocol_defaults: bool,
    #[serde(default)]
    pub bearer: bool,
    /// Role name -> JSON pointer.
    #[serde(default)]
    pub json: BTreeMap<String, String>,
    /// Role name -> form field.
    #[serde(default)]
    pub form: BTreeMap<String, String>,
    pub body_limit: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantSection {
    /// The tenant key; omit it for the policy of requests that name no tenant.
    pub id: Option<String>,
    pub mode: Option<String>,
    pub audience: Option<String>,
    #[serde(default)]
    pub keys: Vec<KeySection>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeySection {
    pub id: Option<String>,
    pub scheme: String,
    pub over: Option<String>,
    pub secret_env: Option<String>,
    pub secret_file: Option<PathBuf>,
    pub encoding: Option<String>,
    pub not_before: Option<u64>,
    pub not_after: Option<u64>,
}

/// Everything the proxy needs, built and checked.
pub struct Settings {
    pub listen: String,
    pub upstream: http::Uri,
    pub upstream_protocol: UpstreamProtocol,
    pub mode: Mode,
    pub health_path: String,
    /// Where Prometheus metrics are served (`None`: not served).
    pub metrics_path: Option<String>,
    pub strip_credentials: bool,
    pub upstream_timeout: Duration,
    pub header_read_timeout: Duration,
    /// Deadline for the whole request body, from the end of its headers (`None`: no deadline).
    pub body_read_timeout: Option<Duration>,
    pub reload_poll: Option<Duration>,
    pub shutdown_grace: Duration,
    pub options: VerifyOptions,
    pub min_secret_len: usize,
    pub sources: Sources,
    pub forward: ForwardHeaders,
    pub tenants: TenantMap,
    /// Per tenant and key, for the `sign` and `check` tools.
    pub keys: Vec<(Option<String>, Option<String>, KeySet)>,
    /// The config file and every secret file, with their modification times.
    pub watched: Vec<(PathBuf, Option<SystemTime>)>,
    pub tenant_count: usize,
    pub key_count: usize,
    /// Set when tenants live in PostgreSQL.
    pub postgres: Option<PostgresSettings>,
    /// WebSocket tunnels and event streams.
    pub tunnels: crate::revocation::TunnelSettings,
}

fn err(file: &Path, key: impl Into<String>, problem: impl Into<String>) -> ConfigError {
    ConfigError { file: file.to_owned(), key: key.into(), problem: problem.into() }
}

/// Parses a TOML scalar from an environment variable's text.
fn env_value(text: &str) -> toml::Value {
    if let Ok(i) = text.parse::<i64>() {
        return toml::Value::Integer(i);
    }
    match text {
        "true" => toml::Value::Boolean(true),
        "false" => toml::Value::Boolean(false),
        _ => toml::Value::String(text.to_owned()),
    }
}

/// The keys the environment may override (tenants and their secrets are not among them).
const OVERRIDABLE: [&str; 17] = [
    "postgres",
    "metrics_path",
    "listen",
    "upstream",
    "upstream_protocol",
    "mode",
    "health_path",
    "strip_credentials",
    "upstream_timeout_secs",
    "header_read_timeout_secs",
    "body_read_timeout_secs",
    "reload_poll_secs",
    "shutdown_grace_secs",
    "verify",
    "sources",
    "forward",
    "tunnels",
];

/// Applies `IDENTITY_PROXY_A__B=value` overrides (`a.b = value`) for the
/// configuration's own keys; other variables with the prefix are ignored.
fn apply_env(
    table: &mut toml::Table,
    vars: impl Iterator<Item = (String, String)>,
    file: &Path,
) -> Result<(), ConfigError> {
    for (name, value) in vars {
        let Some(rest) = name.strip_prefix(ENV_PREFIX) else { continue };
        let path: Vec<String> = rest.split("__").map(str::to_ascii_lowercase).collect();
        if !OVERRIDABLE.contains(&path[0].as_str()) {
            continue;
        }
        if path.iter().any(|p| p.starts_with("secret")) {
            return Err(err(file, &name, "secrets are read from secret_env or secret_file only"));
        }
        let mut t = &mut *table;
        for part in &path[..path.len() - 1] {
            t = match t.entry(part.clone()).or_insert_with(|| toml::Value::Table(toml::Table::new())) {
                toml::Value::Table(inner) => inner,
                _ => return Err(err(file, &name, format!("{part} is not a table"))),
            };
        }
        let key = &path[path.len() - 1];
        // A value for a whole section (`IDENTITY_PROXY_POSTGRES=postgres://…`) is a mistake whose
        // type error would quote the value, which may hold a password: refuse it by name only.
        if t.get(key).is_some_and(toml::Value::is_table) || (t.get(key).is_none() && SECTIONS.contains(&key.as_str())) {
            return Err(err(file, &name, format!("names the [{key}] section; set its keys with {name}__<key>")));
        }
        t.insert(key.clone(), env_value(&value));
    }
    Ok(())
}

/// A secret (or a URL holding one) from exactly one of an environment
/// variable and a file (relative to the config file, and watched for changes).
/// The variable's name is echoed in an error only when it looks like one: a
/// misplaced secret must not end up on stderr or in the log.
fn read_secret_source(
    path: &Path,
    key: &str,
    (env_key, env): (&str, &Option<String>),
    (file_key, file): (&str, &Option<PathBuf>),
    watched: &mut Vec<(PathBuf, Option<SystemTime>)>,
) -> Result<String, ConfigError> {
    match (env, file) {
        (Some(var), None) => std::env::var(var).map_err(|_| {
            let named = !var.is_empty() && var.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
            let problem = if named {
                format!("environment variable {var} is not set")
            } else {
                "must name an environment variable (letters, digits and _), not hold the value".to_owned()
            };
            err(path, format!("{key}.{env_key}"), problem)
        }),
        (None, Some(file)) => {
            let file =
                if file.is_relative() { path.parent().unwrap_or(Path::new(".")).join(file) } else { file.clone() };
            let text = read_secret_file(path, &format!("{key}.{file_key}"), &file)?;
            watched.push((file.clone(), mtime(&file)));
            Ok(text)
        }
        _ => Err(err(path, key, format!("set exactly one of {env_key} and {file_key}"))),
    }
}

/// The sections the environment may set keys of.
const SECTIONS: [&str; 3] = ["postgres", "verify", "sources"];

/// A configuration error message without the quoted values it may echo: a
/// value set through the environment may be a secret put in the wrong place.
fn without_values(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    for (i, part) in message.split('"').enumerate() {
        if i > 0 {
            out.push('"');
        }
        out.push_str(if i % 2 == 1 { "…" } else { part });
    }
    out
}

fn role(name: &str) -> Option<Role> {
    Role::ALL.into_iter().find(|r| r.as_str() == name)
}

fn identifier(name: &str) -> Option<Identifier> {
    [Identifier::UserId, Identifier::Email, Identifier::VisitorId].into_iter().find(|i| i.as_str() == name)
}

fn header_name(file: &Path, key: &str, name: &str) -> Result<http::HeaderName, ConfigError> {
    http::HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes())
        .map_err(|_| err(file, key, format!("{name:?} is not a valid header name")))
}

fn parse_mode(file: &Path, key: &str, value: &str) -> Result<Mode, ConfigError> {
    value.parse().map_err(|e: String| err(file, key, e))
}

fn mtime(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// Reads a secret file: its bytes, without one trailing newline.
fn read_secret_file(file: &Path, key: &str, path: &Path) -> Result<String, ConfigError> {
    let text =
        std::fs::read_to_string(path).map_err(|e| err(file, key, format!("cannot read {}: {e}", path.display())))?;
    let text = text.strip_suffix('\n').map(|t| t.strip_suffix('\r').unwrap_or(t)).unwrap_or(&text);
    Ok(text.to_owned())
}

/// Loads and checks the configuration file, with environment overrides and
/// command-line overrides for `listen` and `upstream`.
pub fn load(
    path: &Path,
    env: impl Iterator<Item = (String, String)>,
    listen: Option<&str>,
    upstream: Option<&str>,
) -> Result<Settings, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| err(path, "", format!("cannot read the file: {e}")))?;
    // Parse once for errors that point at the line and key...
    toml::from_str::<FileConfig>(&text).map_err(|e| {
        let problem = e.message().to_owned();
        let key = e.span().map(|s| {
            let line = text[..s.start].lines().count().max(1);
            format!("line {line}")
        });
        err(path, key.unwrap_or_default(), problem)
    })?;
    // ...then again with the environment applied.
    let mut table: toml::Table = toml::from_str(&text).map_err(|e| err(path, "", e.message().to_owned()))?;
    apply_env(&mut table, env, path)?;
    let cfg: FileConfig =
        table.try_into().map_err(|e: toml::de::Error| err(path, "environment", without_values(e.message())))?;
    build(cfg, path, listen, upstream)
}

fn build(cfg: FileConfig, path: &Path, listen: Option<&str>, upstream: Option<&str>) -> Result<Settings, ConfigError> {
    let listen = listen.map(str::to_owned).or(cfg.listen).unwrap_or_else(|| "127.0.0.1:8080".to_owned());
    listen
        .parse::<std::net::SocketAddr>()
        .map_err(|_| err(path, "listen", format!("{listen:?} is not an address such as 127.0.0.1:8080")))?;
    let upstream_text = upstream.map(str::to_owned).or(cfg.upstream).ok_or_else(|| err(path, "upstream", "missing"))?;
    let upstream: http::Uri = upstream_text
        .parse()
        .ok()
        .filter(|u: &http::Uri| u.scheme_str() == Some("http") && u.authority().is_some())
        .ok_or_else(|| err(path, "upstream", format!("{upstream_text:?} is not an http:// URL")))?;
    let mode = parse_mode(path, "mode", cfg.mode.as_deref().unwrap_or("required"))?;
    let health_path = cfg.health_path.unwrap_or_else(|| "/healthz".to_owned());
    if !health_path.starts_with('/') {
        return Err(err(path, "health_path", "must start with '/'"));
    }
    let metrics_path = match cfg.metrics_path.as_deref() {
        None => Some("/metrics".to_owned()),
        Some("") => None,
        Some(p) if p.starts_with('/') => Some(p.to_owned()),
        Some(_) => return Err(err(path, "metrics_path", "must start with '/' (or be empty to disable)")),
    };

    let mut options = VerifyOptions::default();
    let v = &cfg.verify;
    options.max_age = v.max_age_secs.unwrap_or(options.max_age);
    options.future_skew = v.future_skew_secs.unwrap_or(options.future_skew);
    options.max_identifier_len = v.max_identifier_len.unwrap_or(options.max_identifier_len);
    options.jwt = JwtOptions {
        max_lifetime: v.jwt_max_lifetime_secs.unwrap_or(900),
        leeway: v.jwt_leeway_secs.unwrap_or(0),
        require_iat: v.jwt_require_iat,
        ..JwtOptions::default()
    };
    let min_secret_len = v.min_secret_len.unwrap_or(tower_identity::DEFAULT_MIN_SECRET_LEN);

    let s = &cfg.sources;
    let mut sources = Sources::new();
    for (name, header) in &s.headers {
        let key = format!("sources.headers.{name}");
        let role = role(name).ok_or_else(|| err(path, &key, "unknown role"))?;
        sources = if header.is_empty() {
            sources.without_header(role)
        } else {
            sources.header(role, header_name(path, &key, header)?)
        };
    }
    if s.query_defaults {
        sources = sources.query_defaults();
    }
    for (name, param) in &s.query {
        let role = role(name).ok_or_else(|| err(path, format!("sources.query.{name}"), "unknown role"))?;
        sources = sources.query(role, param.as_str());
    }
    if s.protocol_defaults {
        sources = sources.protocol_defaults();
    }
    for (name, prefix) in &s.protocol {
        let role = role(name).ok_or_else(|| err(path, format!("sources.protocol.{name}"), "unknown role"))?;
        sources = sources.protocol(role, prefix.as_str());
    }
    if s.bearer {
        sources = sources.bearer();
    }
    for (name, pointer) in &s.json {
        let key = format!("sources.json.{name}");
        let role = role(name).ok_or_else(|| err(path, &key, "unknown role"))?;
        sources = sources.try_json(role, pointer).map_err(|e| err(path, &key, e))?;
    }
    for (name, field) in &s.form {
        let role = role(name).ok_or_else(|| err(path, format!("sources.form.{name}"), "unknown role"))?;
        sources = sources.form(role, field.as_str());
    }
    if let Some(limit) = s.body_limit {
        sources = sources.body_limit(limit);
    }

    let mut forward = ForwardHeaders::default();
    for (name, header) in &cfg.forward {
        let key = format!("forward.{name}");
        let value = header_name(path, &key, header)?;
        match name.as_str() {
            "user_id" => forward.user_id = value,
            "email" => forward.email = value,
            "visitor_id" => forward.visitor_id = value,
            "tenant" => forward.tenant = value,
            "key_id" => forward.key_id = value,
            "outcome" => forward.outcome = value,
            _ => {
                return Err(err(
                    path,
                    &key,
                    "unknown forwarded header (user_id, email, visitor_id, tenant, key_id, outcome)",
                ));
            }
        }
    }

    let mut watched = vec![(path.to_owned(), mtime(path))];
    let mut tenants = TenantMap::new();
    let mut keys_out = Vec::new();
    let mut key_count = 0;
    let postgres = match &cfg.postgres {
        None => None,
        Some(pg) => {
            if !cfg.tenants.is_empty() {
                return Err(err(path, "postgres", "tenants come from PostgreSQL or from this file, not both"));
            }
            let url = read_secret_source(
                path,
                "postgres",
                ("url_env", &pg.url_env),
                ("url_file", &pg.url_file),
                &mut watched,
            )?;
            let url = zeroize::Zeroizing::new(url);
            url.parse::<tokio_postgres::Config>()
                .map_err(|_| err(path, "postgres", "the connection URL is not valid"))?;
            let defaults = tower_identity::CacheOptions::default();
            Some(PostgresSettings {
                url,
                max_connections: pg.max_connections.unwrap_or(8),
                cache: defaults
                    .clone()
                    .ttl(pg.cache_ttl_secs.map_or(defaults.ttl, Duration::from_secs))
                    .negative_ttl(pg.negative_ttl_secs.map_or(defaults.negative_ttl, Duration::from_secs))
                    .lookup_timeout(pg.lookup_timeout_secs.map_or(defaults.lookup_timeout, Duration::from_secs))
                    .serve_stale_for(pg.serve_stale_secs.map(Duration::from_secs)),
                listen_notify: pg.listen_notify.unwrap_or(true),
            })
        }
    };
    if cfg.tenants.is_empty() && postgres.is_none() {
        return Err(err(path, "tenants", "at least one tenant with keys is required (or a [postgres] section)"));
    }
    let mut seen_ids = std::collections::BTreeSet::new();
    for (ti, tenant) in cfg.tenants.iter().enumerate() {
        let tkey = format!("tenants[{ti}]");
        if !seen_ids.insert(tenant.id.clone()) {
            return Err(err(path, format!("{tkey}.id"), "duplicate tenant"));
        }
        let mut keys = Vec::new();
        for (ki, k) in tenant.keys.iter().enumerate() {
            let kkey = format!("{tkey}.keys[{ki}]");
            let encoding: SecretEncoding = k
                .encoding
                .as_deref()
                .unwrap_or("utf8")
                .parse()
                .map_err(|e| err(path, format!("{kkey}.encoding"), format!("{e}")))?;
            let secret_text = read_secret_source(
                path,
                &kkey,
                ("secret_env", &k.secret_env),
                ("secret_file", &k.secret_file),
                &mut watched,
            )?;
            let secret = Secret::decode(&secret_text, encoding)
                .map_err(|e| err(path, &kkey, format!("the secret cannot be used: {e}")))?;
            drop(zeroize::Zeroizing::new(secret_text));
            if secret.len() < min_secret_len {
                return Err(err(
                    path,
                    &kkey,
                    format!(
                        "the secret is {} bytes, shorter than verify.min_secret_len ({min_secret_len})",
                        secret.len()
                    ),
                ));
            }
            let over = k.over.as_deref().unwrap_or("user_id");
            let over = identifier(over)
                .ok_or_else(|| err(path, format!("{kkey}.over"), "expected user_id, email or visitor_id"))?;
            let mut key = match k.scheme.as_str() {
                "hmac" => Key::hmac(over, secret),
                "timestamped_hmac" => Key::timestamped_hmac(over, secret),
                "jwt" => Key::jwt(secret),
                other => {
                    return Err(err(
                        path,
                        format!("{kkey}.scheme"),
                        format!("{other:?}: expected hmac, timestamped_hmac or jwt"),
                    ));
                }
            };
            if let Some(id) = &k.id {
                key = key.with_id(id.as_str());
            }
            if let Some(t) = k.not_before {
                key = key.not_before(t);
            }
            if let Some(t) = k.not_after {
                key = key.not_after(t);
            }
            keys.push(key);
        }
        if keys.is_empty() {
            return Err(err(path, format!("{tkey}.keys"), "a tenant needs at least one key"));
        }
        key_count += keys.len();
        let mut set = KeySet::new(keys).map_err(|e| err(path, format!("{tkey}.keys"), e.to_string()))?;
        if let Some(aud) = &tenant.audience {
            set = set.with_audience(aud.as_str());
        }
        let mut policy = TenantPolicy::new(set.clone());
        if let Some(m) = &tenant.mode {
            policy = policy.with_mode(parse_mode(path, &format!("{tkey}.mode"), m)?);
        }
        keys_out.push((tenant.id.clone(), tenant.audience.clone(), set));
        tenants = match &tenant.id {
            Some(id) => tenants.tenant(id.as_str(), policy),
            None => tenants.untenanted(policy),
        };
    }

    Ok(Settings {
        listen,
        upstream,
        upstream_protocol: cfg.upstream_protocol,
        mode,
        health_path,
        metrics_path,
        strip_credentials: cfg.strip_credentials,
        upstream_timeout: Duration::from_secs(cfg.upstream_timeout_secs.unwrap_or(30)),
        header_read_timeout: Duration::from_secs(cfg.header_read_timeout_secs.unwrap_or(10).max(1)),
        body_read_timeout: match cfg.body_read_timeout_secs.unwrap_or(30) {
            0 => None,
            n => Some(Duration::from_secs(n)),
        },
        reload_poll: match cfg.reload_poll_secs.unwrap_or(2) {
            0 => None,
            n => Some(Duration::from_secs(n)),
        },
        shutdown_grace: Duration::from_secs(cfg.shutdown_grace_secs.unwrap_or(30)),
        options,
        min_secret_len,
        sources,
        forward,
        tenants,
        keys: keys_out,
        watched,
        tenant_count: cfg.tenants.len(),
        key_count,
        postgres,
        tunnels: (&cfg.tunnels).into(),
    })
}

/// Whether any watched file changed since it was read.
pub fn changed(watched: &[(PathBuf, Option<SystemTime>)]) -> bool {
    watched.iter().any(|(p, t)| mtime(p) != *t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_overrides_nest() {
        let mut t: toml::Table = toml::from_str("mode = 'required'\n[sources]\nbearer = false").unwrap();
        let vars = [
            ("IDENTITY_PROXY_MODE".to_owned(), "optional".to_owned()),
            ("IDENTITY_PROXY_SOURCES__BODY_LIMIT".to_owned(), "1024".to_owned()),
            ("IDENTITY_PROXY_SOURCES__BEARER".to_owned(), "true".to_owned()),
            ("OTHER".to_owned(), "x".to_owned()),
        ];
        apply_env(&mut t, vars.into_iter(), Path::new("f.toml")).unwrap();
        assert_eq!(t["mode"].as_str(), Some("optional"));
        assert_eq!(t["sources"]["body_limit"].as_integer(), Some(1024));
        assert_eq!(t["sources"]["bearer"].as_bool(), Some(true));
        let ignored = [
            ("IDENTITY_PROXY_DEMO_SECRET".to_owned(), "x".to_owned()),
            ("IDENTITY_PROXY_CONFIG".to_owned(), "f".to_owned()),
        ];
        apply_env(&mut t, ignored.into_iter(), Path::new("f.toml")).unwrap();
        assert!(!t.contains_key("demo_secret") && !t.contains_key("config"));
        let bad = [("IDENTITY_PROXY_SOURCES__SECRET".to_owned(), "x".to_owned())];
        assert!(apply_env(&mut t, bad.into_iter(), Path::new("f.toml")).is_err());
        // A whole section set to a value (a URL with a password, say) is refused without echoing it.
        for section in ["POSTGRES", "VERIFY", "SOURCES"] {
            let name = format!("IDENTITY_PROXY_{section}");
            let url = [(name.clone(), "postgres://u:hunter2@db/x".to_owned())];
            let e = apply_env(&mut t, url.into_iter(), Path::new("f.toml")).unwrap_err().to_string();
            assert!(e.contains(&name) && !e.contains("hunter2"), "{e}");
        }
    }

    #[test]
    fn misplaced_secrets_are_not_echoed() {
        let mut watched = Vec::new();
        let url = Some("postgres://u:hunter2@db/x".to_owned());
        let e =
            read_secret_source(Path::new("f.toml"), "postgres", ("url_env", &url), ("url_file", &None), &mut watched)
                .unwrap_err()
                .to_string();
        assert!(e.contains("postgres.url_env") && !e.contains("hunter2"), "{e}");
        let var = Some("TOWER_IDENTITY_SURELY_UNSET_VAR".to_owned());
        let e =
            read_secret_source(Path::new("f.toml"), "k", ("secret_env", &var), ("secret_file", &None), &mut watched)
                .unwrap_err()
                .to_string();
        assert!(e.contains("TOWER_IDENTITY_SURELY_UNSET_VAR"), "a variable's name is shown: {e}");
        assert_eq!(
            without_values(r#"invalid type: string "postgres://u:hunter2@db", expected a map"#),
            r#"invalid type: string "…", expected a map"#
        );
    }
}
