//! The configuration file's shape, as serde reads it: every section and key,
//! unknown keys refused.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

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
    /// Where `/metrics` and the readiness check are served (unset: not served).
    pub admin_listen: Option<String>,
    pub ready_path: Option<String>,
    /// Also serve `/metrics` on the client-facing listener (default false).
    #[serde(default)]
    pub metrics_on_public_listener: bool,
    /// `text` (default) or `json` (one JSON object per line).
    pub log_format: Option<String>,
    #[serde(default)]
    pub connections: ConnectionsSection,
    #[serde(default)]
    pub verify: VerifySection,
    #[serde(default)]
    pub sources: SourcesSection,
    #[serde(default)]
    pub forward: BTreeMap<String, String>,
    #[serde(default)]
    pub tenants: Vec<TenantSection>,
    pub postgres: Option<PostgresSection>,
    pub cors: Option<crate::cors::CorsSection>,
    pub authz: Option<crate::authz::AuthzSection>,
    #[serde(default)]
    pub tunnels: TunnelSection,
}

/// WebSocket tunnels and event streams.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct TunnelSection {
    /// Upper bound on any tunnel or event stream (default one day; 0: none).
    pub max_connection_lifetime_secs: Option<u64>,
    /// How often open connections verify their credential again when
    /// tenants live in PostgreSQL (default 1; 0: only on reloads).
    pub revalidate_secs: Option<u64>,
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

/// Deadlines and limits of client connections.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ConnectionsSection {
    pub idle_timeout_secs: Option<u64>,
    pub max_age_secs: Option<u64>,
    pub http2_keep_alive_interval_secs: Option<u64>,
    pub http2_keep_alive_timeout_secs: Option<u64>,
    pub http2_max_concurrent_streams: Option<u32>,
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
    /// Bytes of bodies buffered at once for identity extraction, across
    /// every connection (default: the layer's, 32 MiB).
    pub max_buffered_body_bytes: Option<usize>,
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
    /// Origins that may call for this tenant, replacing `[cors]`'s list
    /// (for requests naming the tenant in the URL).
    pub allowed_origins: Option<Vec<String>>,
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
