//! Reloading while the proxy runs, on SIGHUP and when the config or a secret
//! file changes: every setting that can change without dropping connections
//! (mode, sources, forwarded headers, verification options, tenants and keys,
//! the upstream, timeouts, connection limits) is applied at once by swapping
//! the [`Live`](crate::live::Live) state, and open tunnels verify again; the
//! others (listen addresses, the admin endpoints, the log format, PostgreSQL,
//! the auth listeners, the tunnel bounds) are named in a log line saying a
//! restart is needed.

use std::path::PathBuf;
use std::time::Duration;

use crate::config::{self, ConfigError, Settings, Watched};
use crate::live::Swap;

/// What a reload cannot apply: the settings read once at start-up.
#[derive(PartialEq)]
struct Fixed {
    listen: String,
    admin: config::Admin,
    health_path: String,
    metrics_path: Option<String>,
    log_format: config::LogFormat,
    postgres: Option<(zeroize::Zeroizing<String>, usize, bool)>,
    /// Whether the proxy listener runs (it does when an upstream is set).
    proxied: bool,
    authz: Option<crate::authz::AuthzSettings>,
    tunnels: (Option<Duration>, Option<Duration>),
}

impl Fixed {
    fn of(s: &Settings) -> Fixed {
        Fixed {
            listen: s.listen.clone(),
            admin: s.admin.clone(),
            health_path: s.health_path.clone(),
            metrics_path: s.metrics_path.clone(),
            log_format: s.log_format,
            postgres: s.postgres.as_ref().map(|pg| (pg.url.clone(), pg.max_connections, pg.listen_notify)),
            proxied: s.upstream.is_some(),
            authz: s.authz.clone(),
            tunnels: (s.tunnels.max_lifetime, s.tunnels.revalidate),
        }
    }

    /// The names of the settings that differ in `new`.
    fn changed(&self, new: &Fixed) -> Vec<&'static str> {
        let mut names = Vec::new();
        let mut check = |differs: bool, name| {
            if differs {
                names.push(name);
            }
        };
        check(self.listen != new.listen, "listen");
        check(self.admin.listen != new.admin.listen, "admin_listen");
        check(self.admin.ready_path != new.admin.ready_path, "ready_path");
        check(
            self.admin.metrics_on_public_listener != new.admin.metrics_on_public_listener,
            "metrics_on_public_listener",
        );
        check(self.health_path != new.health_path, "health_path (admin listener)");
        check(self.metrics_path != new.metrics_path, "metrics_path");
        check(self.log_format != new.log_format, "log_format");
        check(self.postgres != new.postgres, "postgres");
        check(self.proxied != new.proxied, "upstream (set or removed)");
        check(self.authz != new.authz, "authz");
        check(self.tunnels != new.tunnels, "tunnels");
        names
    }
}

/// Where the configuration is read from: the file and the command line's
/// overrides of `listen` and `upstream`, applied again by every reload.
pub struct Origin {
    pub path: PathBuf,
    pub listen: Option<String>,
    pub upstream: Option<String>,
}

impl Origin {
    /// Reads and checks the configuration, with the environment's overrides.
    pub fn load(&self) -> Result<Settings, ConfigError> {
        config::load(&self.path, std::env::vars(), self.listen.as_deref(), self.upstream.as_deref())
    }
}

/// Reloads the configuration into the live state, reading it as at start-up.
/// Made inside the runtime.
pub struct Reloader {
    watched: Watched,
    poll: Option<Duration>,
    origin: Origin,
    swap: Swap,
    fixed: Fixed,
    /// Installed when the reloader is made, before the proxy says it listens:
    /// a SIGHUP that arrives earlier would end the process.
    #[cfg(unix)]
    hup: Option<tokio::signal::unix::Signal>,
}

impl Reloader {
    /// A reloader of what `settings` (read from `origin`) configured, into `swap`.
    pub fn new(settings: Settings, origin: Origin, swap: Swap) -> Reloader {
        let fixed = Fixed::of(&settings);
        let (watched, poll) = (settings.watched, settings.reload_poll);
        Reloader {
            watched,
            poll,
            origin,
            swap,
            fixed,
            #[cfg(unix)]
            hup: tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok(),
        }
    }

    /// Reloads on SIGHUP and when a watched file changes, forever. A bad new
    /// configuration is refused with a log line; the old one keeps serving.
    pub async fn run(mut self) {
        #[cfg(unix)]
        let mut hup = self.hup.take();
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
        match self.origin.load() {
            Ok(new) => self.apply(reason, new),
            Err(error) => {
                // Remember the new modification times so a broken file is not retried in a loop.
                config::remember_times(&mut self.watched);
                tracing::error!(reason, %error, "reload refused; the previous configuration keeps serving");
            }
        }
    }

    /// Swaps in the new configuration; requests already running finish with the old one.
    fn apply(&mut self, reason: &str, new: Settings) {
        self.swap.install(&new);
        self.watched = new.watched.clone();
        self.poll = new.reload_poll;
        tracing::info!(reason, mode = %new.mode, tenants = new.tenant_count, keys = new.key_count, "reloaded the configuration");
        let restart = self.fixed.changed(&Fixed::of(&new));
        if !restart.is_empty() {
            let settings = restart.join(", ");
            tracing::warn!(%settings, "changed settings that apply only after a restart: {settings}");
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
