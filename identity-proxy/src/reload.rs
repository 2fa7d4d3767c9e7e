//! Where the keys come from and how they change while the proxy runs: the
//! file's tenants, reloaded on SIGHUP and when the config or a secret file
//! changes, or PostgreSQL, cached and invalidated by LISTEN/NOTIFY.

use std::path::PathBuf;
use std::time::Duration;

use tower_identity::provider::postgres::{PostgresProvider, listen_for_changes};
use tower_identity::{IdentityVerificationLayer, TenantMap, provider::HotSwap};

use crate::config::{self, PostgresSettings, Settings, Watched};
use crate::routes;

/// The identity layer over the configured provider: PostgreSQL when the
/// settings name it, else `tenants` (the file's, replaced by each reload).
pub fn identity_layer(settings: &Settings, tenants: HotSwap<TenantMap>) -> std::io::Result<IdentityVerificationLayer> {
    let Some(pg) = &settings.postgres else { return Ok(routes::layer(settings, tenants)) };
    Ok(routes::layer(settings, postgres(pg)?))
}

fn postgres(pg: &PostgresSettings) -> std::io::Result<tower_identity::provider::CachingProvider<PostgresProvider>> {
    let db =
        PostgresProvider::connect(&pg.url, pg.max_connections).map_err(|e| std::io::Error::other(e.to_string()))?;
    let cached = db.cached(pg.cache.clone());
    if pg.listen_notify {
        listen_for_changes(&pg.url, cached.clone());
    }
    tracing::info!(
        ttl_secs = pg.cache.ttl.as_secs(),
        listen_notify = pg.listen_notify,
        "tenants and keys from PostgreSQL"
    );
    Ok(cached)
}

/// Reloads the file's keys and tenants into `provider`, reading the
/// configuration as at start-up (same path, same command-line overrides).
pub struct Reloader {
    pub watched: Watched,
    pub poll: Option<Duration>,
    pub config_path: PathBuf,
    pub listen: Option<String>,
    pub upstream: Option<String>,
    pub provider: HotSwap<TenantMap>,
    /// Bumped after every reload: open tunnels verify their credential again.
    pub reloaded: tokio::sync::watch::Sender<u64>,
}

impl Reloader {
    /// Reloads on SIGHUP and when a watched file changes, forever. A bad new
    /// configuration is refused with a log line; the old one keeps serving.
    pub async fn run(mut self) {
        #[cfg(unix)]
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        loop {
            #[cfg(unix)]
            let hangup = hangup(hup.as_mut());
            #[cfg(not(unix))]
            let hangup = std::future::pending::<()>();
            let reason = tokio::select! {
                () = hangup => "SIGHUP",
                () = file_change(&self.watched, self.poll) => "file change",
            };
            self.reload(reason);
        }
    }

    fn reload(&mut self, reason: &str) {
        let loaded =
            config::load(&self.config_path, std::env::vars(), self.listen.as_deref(), self.upstream.as_deref());
        match loaded {
            Ok(new) => {
                self.provider.store(new.tenants);
                self.reloaded.send_modify(|generation| *generation += 1);
                self.watched = new.watched;
                tracing::info!(reason, tenants = new.tenant_count, keys = new.key_count, "reloaded keys and tenants");
            }
            Err(error) => {
                // Remember the new modification times so a broken file is not retried in a loop.
                for (path, time) in &mut self.watched {
                    *time = std::fs::metadata(&*path).and_then(|m| m.modified()).ok();
                }
                tracing::error!(reason, %error, "reload refused; the previous configuration keeps serving");
            }
        }
    }
}

/// The next SIGHUP (never, when the signal could not be installed).
#[cfg(unix)]
async fn hangup(signal: Option<&mut tokio::signal::unix::Signal>) {
    match signal {
        Some(s) => {
            s.recv().await;
        }
        None => std::future::pending().await,
    }
}

/// The next change of a watched file, polled every `poll` (never, without polling).
async fn file_change(watched: &Watched, poll: Option<Duration>) {
    let Some(poll) = poll else { return std::future::pending().await };
    loop {
        tokio::time::sleep(poll).await;
        if config::changed(watched) {
            return;
        }
    }
}
