//! The sidecar's configuration: a TOML file ([`file`](mod@file)), overridable
//! from the environment ([`env`](mod@env)), with secrets read only from
//! environment variables or files ([`secrets`](mod@secrets)), checked and built
//! into [`Settings`] ([`build`](mod@build)).

mod build;
mod env;
mod file;
mod secrets;
mod serving;

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use tower_identity::{
    KeySet, Mode, Sources, TenantMap, layer::ForwardHeaders, provider::CacheOptions, verify::VerifyOptions,
};

use file::FileConfig;
pub use file::UpstreamProtocol;
pub use serving::{Admin, Connections, LogFormat};

/// The config file and every secret file, with their modification times when read.
pub type Watched = Vec<(PathBuf, Option<SystemTime>)>;

/// A tenant of the file (its id, its JWT audience) and its keys, for the
/// `sign` and `check` tools.
pub type TenantKeys = (Option<String>, Option<String>, KeySet);

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

/// Everything the proxy needs, built and checked.
pub struct Settings {
    pub listen: String,
    /// `None` when only the auth listeners run (an `[authz]` section and no upstream).
    pub upstream: Option<http::Uri>,
    pub upstream_protocol: UpstreamProtocol,
    pub mode: Mode,
    pub health_path: String,
    /// Where Prometheus metrics are served (`None`: not served).
    pub metrics_path: Option<String>,
    pub strip_credentials: bool,
    /// The layer's budget of body bytes buffered at once (`[sources] max_buffered_body_bytes`).
    pub max_buffered_body_bytes: usize,
    pub upstream_timeout: Duration,
    pub header_read_timeout: Duration,
    /// Deadline for the whole request body, from the end of its headers (`None`: no deadline).
    pub body_read_timeout: Option<Duration>,
    pub reload_poll: Option<Duration>,
    pub shutdown_grace: Duration,
    /// The admin listener (`/metrics`, readiness).
    pub admin: Admin,
    pub log_format: LogFormat,
    /// Deadlines and limits of client connections.
    pub connections: Connections,
    pub options: VerifyOptions,
    pub min_secret_len: usize,
    pub sources: Sources,
    pub forward: ForwardHeaders,
    pub tenants: TenantMap,
    /// Per tenant and key, for the `sign` and `check` tools.
    pub keys: Vec<TenantKeys>,
    /// The config file and every secret file, with their modification times.
    pub watched: Watched,
    pub tenant_count: usize,
    pub key_count: usize,
    /// Set when tenants live in PostgreSQL.
    pub postgres: Option<PostgresSettings>,
    /// WebSocket tunnels and event streams.
    pub tunnels: crate::revocation::TunnelSettings,
    /// Set with a `[cors]` section.
    pub cors: Option<std::sync::Arc<crate::cors::Cors>>,
    /// The auth listeners (`[authz]`).
    pub authz: Option<crate::authz::AuthzSettings>,
}

/// The PostgreSQL provider settings, checked.
pub struct PostgresSettings {
    /// Kept to tell a changed URL on reload, and for `LISTEN`.
    pub url: zeroize::Zeroizing<String>,
    /// The URL's connection settings, parsed (and its `sslrootcert` read) once.
    pub options: tower_identity::provider::postgres::ConnectOptions,
    pub max_connections: usize,
    pub cache: CacheOptions,
    pub listen_notify: bool,
}

pub(crate) fn err(file: &Path, key: impl Into<String>, problem: impl Into<String>) -> ConfigError {
    ConfigError { file: file.to_owned(), key: key.into(), problem: problem.into() }
}

/// Loads and checks the configuration file, with environment overrides and
/// command-line overrides for `listen` and `upstream`.
pub fn load(
    path: &Path,
    vars: impl Iterator<Item = (String, String)>,
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
    env::apply_env(&mut table, vars, path)?;
    let cfg: FileConfig =
        table.try_into().map_err(|e: toml::de::Error| err(path, "environment", env::without_values(e.message())))?;
    build::build(cfg, path, listen, upstream)
}

/// Whether any watched file changed since it was read.
pub fn changed(watched: &[(PathBuf, Option<SystemTime>)]) -> bool {
    watched.iter().any(|(p, t)| secrets::mtime(p) != *t)
}

/// Takes the watched files' current modification times as the ones read, so
/// that [`changed`] is false until they change again.
pub fn remember_times(watched: &mut Watched) {
    for (path, time) in watched {
        *time = secrets::mtime(path);
    }
}
