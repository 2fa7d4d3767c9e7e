//! From the file's sections to checked [`Settings`]: one function per section,
//! each error naming the file and the key.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use tower_identity::layer::DEFAULT_MAX_BUFFERED_BODY_BYTES;
use tower_identity::verify::jwt::JwtOptions;
use tower_identity::{
    Identifier, Key, KeySet, Mode, Role, Scheme, Secret, Sources, TenantMap, TenantPolicy, layer::ForwardHeaders,
    provider::CacheOptions, secret::SecretEncoding, verify::VerifyOptions,
};

use crate::authz::AuthzSettings;
use crate::revocation::TunnelSettings;

use super::file::{FileConfig, KeySection, PostgresSection, SourcesSection, TenantSection, VerifySection};
use super::secrets::{mtime, read_secret_source};
use super::serving;
use super::{ConfigError, PostgresSettings, Settings, TenantKeys, Watched, err};

/// Checks `cfg` (read from `path`) and builds the settings; `listen` and
/// `upstream` are the command line's overrides.
pub fn build(
    cfg: FileConfig,
    path: &Path,
    listen: Option<&str>,
    upstream: Option<&str>,
) -> Result<Settings, ConfigError> {
    let (listen, upstream, authz) = endpoints(&cfg, path, listen, upstream)?;
    let mode = parse_mode(path, "mode", cfg.mode.as_deref().unwrap_or("required"))?;
    let (health_path, metrics_path) = local_paths(path, cfg.health_path.as_deref(), cfg.metrics_path.as_deref())?;
    let (options, min_secret_len) = verify_options(&cfg.verify);
    let sources = sources(path, &cfg.sources)?;
    let forward = forward_headers(path, &cfg.forward)?;
    let admin = serving::admin(path, &cfg, &listen)?;
    let log_format = serving::log_format(path, cfg.log_format.as_deref())?;
    let connections = serving::connections(path, &cfg.connections)?;
    let mut watched = vec![(path.to_owned(), mtime(path))];
    let postgres = tenant_source(&cfg, path, &mut watched)?;
    let tenants = tenants(path, &cfg.tenants, min_secret_len, &mut watched)?;
    let origins: Vec<_> = cfg.tenants.iter().map(|t| (t.id.as_deref(), t.allowed_origins.as_deref())).collect();
    let cors = crate::cors::Cors::build(path, cfg.cors.as_ref(), &origins, &sources)?;
    Ok(Settings {
        listen,
        upstream,
        upstream_protocol: cfg.upstream_protocol,
        mode,
        health_path,
        metrics_path,
        strip_credentials: cfg.strip_credentials,
        max_buffered_body_bytes: cfg.sources.max_buffered_body_bytes.unwrap_or(DEFAULT_MAX_BUFFERED_BODY_BYTES),
        upstream_timeout: Duration::from_secs(cfg.upstream_timeout_secs.unwrap_or(30)),
        header_read_timeout: Duration::from_secs(cfg.header_read_timeout_secs.unwrap_or(10).max(1)),
        body_read_timeout: seconds_or_off(cfg.body_read_timeout_secs, 30),
        reload_poll: seconds_or_off(cfg.reload_poll_secs, 2),
        shutdown_grace: Duration::from_secs(cfg.shutdown_grace_secs.unwrap_or(30)),
        admin,
        log_format,
        connections,
        options,
        min_secret_len,
        sources,
        forward,
        tenant_count: cfg.tenants.len(),
        key_count: tenants.keys.iter().map(|(_, _, set)| set.keys().len()).sum(),
        tenants: tenants.map,
        keys: tenants.keys,
        watched,
        postgres,
        tunnels: tunnels(&cfg),
        cors,
        authz,
    })
}

/// The proxy's listen address, its upstream and the auth listeners; the
/// upstream may be left out only when the auth listeners run.
fn endpoints(
    cfg: &FileConfig,
    path: &Path,
    listen: Option<&str>,
    upstream: Option<&str>,
) -> Result<(String, Option<http::Uri>, Option<AuthzSettings>), ConfigError> {
    let listen = listen_address(path, listen.or(cfg.listen.as_deref()))?;
    let upstream = match upstream.or(cfg.upstream.as_deref()) {
        None if cfg.authz.is_some() => None,
        text => Some(upstream_uri(path, text)?),
    };
    let authz = match &cfg.authz {
        // The proxy's own listener runs only with an upstream.
        Some(section) => Some(section.build(path, upstream.as_ref().and_then(|_| listen.parse().ok()))?),
        None => None,
    };
    Ok((listen, upstream, authz))
}

/// The `[tunnels]` bounds (0 turns one off).
fn tunnels(cfg: &FileConfig) -> TunnelSettings {
    TunnelSettings {
        max_lifetime: seconds_or_off(cfg.tunnels.max_connection_lifetime_secs, 86_400),
        revalidate: seconds_or_off(cfg.tunnels.revalidate_secs, 1),
    }
}

/// Where tenants come from: PostgreSQL (its settings) or the file's
/// `[[tenants]]` (`None`); exactly one of the two.
fn tenant_source(
    cfg: &FileConfig,
    path: &Path,
    watched: &mut Watched,
) -> Result<Option<PostgresSettings>, ConfigError> {
    match &cfg.postgres {
        Some(_) if !cfg.tenants.is_empty() => {
            Err(err(path, "postgres", "tenants come from PostgreSQL or from this file, not both"))
        }
        Some(pg) => Ok(Some(postgres(path, pg, watched)?)),
        None if cfg.tenants.is_empty() => {
            Err(err(path, "tenants", "at least one tenant with keys is required (or a [postgres] section)"))
        }
        None => Ok(None),
    }
}

/// A duration in seconds, `default` when unset; 0 turns it off.
fn seconds_or_off(value: Option<u64>, default: u64) -> Option<Duration> {
    match value.unwrap_or(default) {
        0 => None,
        n => Some(Duration::from_secs(n)),
    }
}

fn listen_address(path: &Path, listen: Option<&str>) -> Result<String, ConfigError> {
    let listen = listen.unwrap_or("127.0.0.1:8080").to_owned();
    listen
        .parse::<std::net::SocketAddr>()
        .map_err(|_| err(path, "listen", format!("{listen:?} is not an address such as 127.0.0.1:8080")))?;
    Ok(listen)
}

fn upstream_uri(path: &Path, upstream: Option<&str>) -> Result<http::Uri, ConfigError> {
    let text =
        upstream.ok_or_else(|| err(path, "upstream", "missing (it may be omitted only with an [authz] section)"))?;
    text.parse()
        .ok()
        .filter(|u: &http::Uri| u.scheme_str() == Some("http") && u.authority().is_some())
        // Credentials in the URL would be logged with it: refused, and not echoed.
        .filter(|u| !u.authority().is_some_and(|a| a.as_str().contains('@')))
        .ok_or_else(|| err(path, "upstream", "must be an http://host:port URL without credentials"))
}

/// The health check's path and the metrics' (`None`: not served).
fn local_paths(
    path: &Path,
    health: Option<&str>,
    metrics: Option<&str>,
) -> Result<(String, Option<String>), ConfigError> {
    let health = health.unwrap_or("/healthz").to_owned();
    if !health.starts_with('/') {
        return Err(err(path, "health_path", "must start with '/'"));
    }
    let metrics = match metrics {
        None => Some("/metrics".to_owned()),
        Some("") => None,
        Some(p) if p.starts_with('/') => Some(p.to_owned()),
        Some(_) => return Err(err(path, "metrics_path", "must start with '/' (or be empty to disable)")),
    };
    Ok((health, metrics))
}

/// The verification options and the minimum secret length.
fn verify_options(v: &VerifySection) -> (VerifyOptions, usize) {
    let defaults = VerifyOptions::default();
    let options = defaults
        .clone()
        .max_age(v.max_age_secs.unwrap_or(defaults.get_max_age()))
        .future_skew(v.future_skew_secs.unwrap_or(defaults.get_future_skew()))
        .max_identifier_len(v.max_identifier_len.unwrap_or(defaults.get_max_identifier_len()))
        .jwt(
            JwtOptions::default()
                .max_lifetime(v.jwt_max_lifetime_secs.unwrap_or(900))
                .leeway(v.jwt_leeway_secs.unwrap_or(0))
                .require_iat(v.jwt_require_iat),
        );
    (options, v.min_secret_len.unwrap_or(tower_identity::layer::DEFAULT_MIN_SECRET_LEN))
}

fn role(path: &Path, key: &str, name: &str) -> Result<Role, ConfigError> {
    Role::ALL.into_iter().find(|r| r.as_str() == name).ok_or_else(|| err(path, key, "unknown role"))
}

fn header_name(file: &Path, key: &str, name: &str) -> Result<http::HeaderName, ConfigError> {
    http::HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes())
        .map_err(|_| err(file, key, format!("{name:?} is not a valid header name")))
}

fn parse_mode(file: &Path, key: &str, value: &str) -> Result<Mode, ConfigError> {
    value.parse().map_err(|e: String| err(file, key, e))
}

fn sources(path: &Path, s: &SourcesSection) -> Result<Sources, ConfigError> {
    let mut sources = Sources::new();
    for (name, header) in &s.headers {
        let key = format!("sources.headers.{name}");
        let role = role(path, &key, name)?;
        sources = match header.as_str() {
            "" => sources.without_header(role),
            header => sources.header(role, header_name(path, &key, header)?),
        };
    }
    if s.query_defaults {
        sources = sources.query_defaults();
    }
    for (name, param) in &s.query {
        sources = sources.query(role(path, &format!("sources.query.{name}"), name)?, param.as_str());
    }
    if s.protocol_defaults {
        sources = sources.protocol_defaults();
    }
    for (name, prefix) in &s.protocol {
        sources = sources.protocol(role(path, &format!("sources.protocol.{name}"), name)?, prefix.as_str());
    }
    if s.bearer {
        sources = sources.bearer();
    }
    for (name, pointer) in &s.json {
        let key = format!("sources.json.{name}");
        sources = sources.try_json(role(path, &key, name)?, pointer).map_err(|e| err(path, &key, e))?;
    }
    for (name, field) in &s.form {
        sources = sources.form(role(path, &format!("sources.form.{name}"), name)?, field.as_str());
    }
    if let Some(limit) = s.body_limit {
        sources = sources.body_limit(limit);
    }
    Ok(sources)
}

fn forward_headers(path: &Path, names: &BTreeMap<String, String>) -> Result<ForwardHeaders, ConfigError> {
    let mut forward = ForwardHeaders::default();
    for (name, header) in names {
        let key = format!("forward.{name}");
        let value = header_name(path, &key, header)?;
        forward = match name.as_str() {
            "user_id" => forward.user_id(value),
            "email" => forward.email(value),
            "visitor_id" => forward.visitor_id(value),
            "tenant" => forward.tenant(value),
            "key_id" => forward.key_id(value),
            "outcome" => forward.outcome(value),
            _ => {
                let known = "unknown forwarded header (user_id, email, visitor_id, tenant, key_id, outcome)";
                return Err(err(path, &key, known));
            }
        };
    }
    Ok(forward)
}

fn postgres(path: &Path, pg: &PostgresSection, watched: &mut Watched) -> Result<PostgresSettings, ConfigError> {
    let url = read_secret_source(path, "postgres", ("url_env", &pg.url_env), ("url_file", &pg.url_file), watched)?;
    let url = zeroize::Zeroizing::new(url);
    // Reads the sslrootcert file too; the message never holds the URL (it may hold a password).
    let options = tower_identity::provider::postgres::ConnectOptions::from_url(&url)
        .map_err(|e| err(path, "postgres", format!("the connection URL cannot be used: {e}")))?;
    let defaults = CacheOptions::default();
    let secs = |value: Option<u64>, default: Duration| value.map_or(default, Duration::from_secs);
    let cache = defaults
        .clone()
        .ttl(secs(pg.cache_ttl_secs, defaults.ttl))
        .negative_ttl(secs(pg.negative_ttl_secs, defaults.negative_ttl))
        .lookup_timeout(secs(pg.lookup_timeout_secs, defaults.lookup_timeout))
        .serve_stale_for(pg.serve_stale_secs.map(Duration::from_secs));
    Ok(PostgresSettings {
        url,
        options,
        max_connections: pg.max_connections.unwrap_or(8),
        cache,
        listen_notify: pg.listen_notify.unwrap_or(true),
    })
}

/// The tenants of the file, as the provider's map and, per tenant, for the tools.
struct Tenants {
    map: TenantMap,
    keys: Vec<TenantKeys>,
}

fn tenants(
    path: &Path,
    sections: &[TenantSection],
    min_secret_len: usize,
    watched: &mut Watched,
) -> Result<Tenants, ConfigError> {
    let mut out = Tenants { map: TenantMap::new(), keys: Vec::new() };
    let mut seen_ids = BTreeSet::new();
    for tenant in sections {
        let tkey = tenant_name(tenant.id.as_deref());
        if !seen_ids.insert(tenant.id.clone()) {
            return Err(err(path, format!("{tkey}.id"), "duplicate tenant"));
        }
        let keys = tenant
            .keys
            .iter()
            .enumerate()
            .map(|(ki, k)| key(path, &key_name(&tkey, ki, k.id.as_deref()), k, min_secret_len, watched))
            .collect::<Result<Vec<Key>, ConfigError>>()?;
        if keys.is_empty() {
            return Err(err(path, format!("{tkey}.keys"), "a tenant needs at least one key"));
        }
        let mut set = KeySet::new(keys).map_err(|e| err(path, format!("{tkey}.keys"), e.to_string()))?;
        if let Some(aud) = &tenant.audience {
            set = set.with_audience(aud.as_str());
        }
        let mut policy = TenantPolicy::new(set.clone());
        if let Some(m) = &tenant.mode {
            policy = policy.with_mode(parse_mode(path, &format!("{tkey}.mode"), m)?);
        }
        out.keys.push((tenant.id.clone(), tenant.audience.clone(), set));
        // A secret shared with another tenant under another scheme: the
        // error names both tenants and keys by id, never the secret.
        out.map = match &tenant.id {
            Some(id) => out.map.tenant(id.as_str(), policy),
            None => out.map.untenanted(policy),
        }
        .map_err(|e| err(path, "tenants", e.to_string()))?;
    }
    Ok(out)
}

/// A tenant as errors name it: by its id (`tenants["app_acme"]`), or
/// `tenants[default]` for the tenant without one.
fn tenant_name(id: Option<&str>) -> String {
    id.map_or_else(|| "tenants[default]".to_owned(), |id| format!("tenants[{id:?}]"))
}

/// A key as errors name it: by its id (`keys["2026"]`), or by its place
/// among the tenant's keys (`keys[#2]`) when it has none.
fn key_name(tenant: &str, index: usize, id: Option<&str>) -> String {
    match id {
        Some(id) => format!("{tenant}.keys[{id:?}]"),
        None => format!("{tenant}.keys[#{}]", index + 1),
    }
}

/// One key: its secret read and checked against `min_secret_len`, its scheme
/// and identifier parsed.
fn key(
    path: &Path,
    kkey: &str,
    k: &KeySection,
    min_secret_len: usize,
    watched: &mut Watched,
) -> Result<Key, ConfigError> {
    let encoding: SecretEncoding = k
        .encoding
        .as_deref()
        .unwrap_or("utf8")
        .parse()
        .map_err(|e| err(path, format!("{kkey}.encoding"), format!("{e}")))?;
    let text = read_secret_source(path, kkey, ("secret_env", &k.secret_env), ("secret_file", &k.secret_file), watched)?;
    let text = zeroize::Zeroizing::new(text);
    let secret =
        Secret::decode(&text, encoding).map_err(|e| err(path, kkey, format!("the secret cannot be used: {e}")))?;
    if secret.len() < min_secret_len {
        let problem =
            format!("the secret is {} bytes, shorter than verify.min_secret_len ({min_secret_len})", secret.len());
        return Err(err(path, kkey, problem));
    }
    let over: Identifier = k
        .over
        .as_deref()
        .unwrap_or("user_id")
        .parse()
        .map_err(|e| err(path, format!("{kkey}.over"), format!("{e}")))?;
    let scheme: Scheme =
        k.scheme.parse().map_err(|e| err(path, format!("{kkey}.scheme"), format!("{:?}: {e}", k.scheme)))?;
    let mut key = Key::new(scheme.with_identifier(over), secret);
    if let Some(id) = &k.id {
        key = key.with_id(id.as_str());
    }
    if let Some(t) = k.not_before {
        key = key.not_before(t);
    }
    if let Some(t) = k.not_after {
        key = key.not_after(t);
    }
    Ok(key)
}
