//! How the proxy serves: the admin listener, the log format and the
//! deadlines and limits of client connections.

use std::path::Path;
use std::time::Duration;

use super::file::{ConnectionsSection, FileConfig};
use super::{ConfigError, err};

/// The log format: human-readable lines, or one JSON object per line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// Deadlines and limits of client connections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connections {
    /// A connection with no request in flight for this long is closed (`None`: never).
    pub idle_timeout: Option<Duration>,
    /// A connection this old is asked to close (HTTP/2 `GOAWAY`) once its
    /// requests finish (`None`: no maximum).
    pub max_age: Option<Duration>,
    /// HTTP/2 pings to a silent client (`None`: no pings).
    pub keep_alive_interval: Option<Duration>,
    /// A ping unanswered for this long closes the connection.
    pub keep_alive_timeout: Duration,
    /// Streams one HTTP/2 connection may have open at once.
    pub max_concurrent_streams: u32,
}

/// The admin listener: `/metrics` and the readiness check, off the public port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admin {
    /// Where it listens (`None`: no admin listener).
    pub listen: Option<String>,
    pub ready_path: String,
    /// Also serve `/metrics` on the client-facing listener.
    pub metrics_on_public_listener: bool,
}

/// The admin listener, checked: an address of its own, a path starting with '/'.
pub fn admin(path: &Path, cfg: &FileConfig, listen: &str) -> Result<Admin, ConfigError> {
    let admin_listen = match cfg.admin_listen.as_deref() {
        None | Some("") => None,
        Some(addr) => {
            addr.parse::<std::net::SocketAddr>()
                .map_err(|_| err(path, "admin_listen", format!("{addr:?} is not an address such as 127.0.0.1:9090")))?;
            if addr == listen && !addr.ends_with(":0") {
                let problem = "must differ from listen (metrics_on_public_listener = true serves /metrics there)";
                return Err(err(path, "admin_listen", problem));
            }
            Some(addr.to_owned())
        }
    };
    let ready_path = cfg.ready_path.clone().unwrap_or_else(|| "/readyz".to_owned());
    if !ready_path.starts_with('/') {
        return Err(err(path, "ready_path", "must start with '/'"));
    }
    Ok(Admin { listen: admin_listen, ready_path, metrics_on_public_listener: cfg.metrics_on_public_listener })
}

/// `text` (default) or `json`.
pub fn log_format(path: &Path, value: Option<&str>) -> Result<LogFormat, ConfigError> {
    match value.unwrap_or("text") {
        "text" => Ok(LogFormat::Text),
        "json" => Ok(LogFormat::Json),
        _ => Err(err(path, "log_format", "must be \"text\" or \"json\"")),
    }
}

/// The `[connections]` section with its defaults; 0 turns a deadline off.
pub fn connections(path: &Path, c: &ConnectionsSection) -> Result<Connections, ConfigError> {
    let off = |value: Option<u64>, default: u64| match value.unwrap_or(default) {
        0 => None,
        n => Some(Duration::from_secs(n)),
    };
    let max_concurrent_streams = c.http2_max_concurrent_streams.unwrap_or(100);
    if max_concurrent_streams == 0 {
        return Err(err(path, "connections.http2_max_concurrent_streams", "must be at least 1"));
    }
    Ok(Connections {
        idle_timeout: off(c.idle_timeout_secs, 60),
        max_age: off(c.max_age_secs, 3600),
        keep_alive_interval: off(c.http2_keep_alive_interval_secs, 20),
        keep_alive_timeout: Duration::from_secs(c.http2_keep_alive_timeout_secs.unwrap_or(10).max(1)),
        max_concurrent_streams,
    })
}
