//! What a reload replaces at once: the identity layer (over the upstream,
//! in the auth checks and in the re-verification of open tunnels), the
//! public routes, CORS and the connection settings, swapped atomically so
//! that a request sees either the old configuration or the new one, never a mix.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::sync::watch;
use tower_identity::provider::postgres::{PostgresProvider, listen_for_changes};
use tower_identity::provider::{CachingProvider, HotSwap};
use tower_identity::{IdentityVerificationLayer, SecretProvider, TenantMap};

use crate::authz::Checks;
use crate::config::{PostgresSettings, Settings};
use crate::connection::Deadlines;
use crate::cors::Cors;
use crate::routes::{self, Routes, Verified};
use crate::upstream::Upstream;

/// The current configuration, replaced whole by each reload.
pub type Current = Arc<ArcSwap<Live>>;

/// Everything a request or a new connection reads from the configuration.
pub struct Live {
    /// The identity layer; open tunnels verify again with the current one.
    pub layer: IdentityVerificationLayer,
    /// The layer over the upstream (`None` when only `[authz]` is configured).
    pub svc: Option<Verified>,
    /// What the auth listeners run for each check.
    pub checks: Checks,
    pub routes: Routes,
    /// The `[cors]` answers around every public request.
    pub cors: Option<Arc<Cors>>,
    /// How new connections are served (HTTP/1 and HTTP/2 settings).
    pub builder: auto::Builder<TokioExecutor>,
    pub deadlines: Deadlines,
}

impl Live {
    /// The live state for `settings` around `provider`; `metrics` is the
    /// process's recorder, when `/metrics` is served.
    pub fn new(settings: &Settings, provider: &Provider, metrics: Option<PrometheusHandle>) -> Live {
        let c = &settings.connections;
        let mut builder = auto::Builder::new(TokioExecutor::new());
        // The header read timeout is the connection's (`connection::drive`).
        builder.http1().header_read_timeout(None);
        builder
            .http2()
            .timer(TokioTimer::new())
            .keep_alive_interval(c.keep_alive_interval)
            .keep_alive_timeout(c.keep_alive_timeout)
            .max_concurrent_streams(c.max_concurrent_streams);
        let deadlines = Deadlines {
            request_head: settings.header_read_timeout,
            idle: c.idle_timeout,
            max_age: c.max_age,
            grace: settings.shutdown_grace,
        };
        let layer = provider.layer(settings);
        let svc = settings.upstream.as_ref().map(|uri| {
            tower::Layer::layer(&layer, Upstream::new(uri, settings.upstream_protocol, settings.upstream_timeout))
        });
        Live {
            checks: Checks::new(&layer, settings.forward.clone()),
            layer,
            svc,
            routes: Routes::new(settings, metrics),
            cors: settings.cors.clone(),
            builder,
            deadlines,
        }
    }
}

/// What installs a new configuration: the provider it keeps, the live
/// state it replaces, the process's metrics recorder, and the signal that
/// makes open tunnels verify again.
pub struct Swap {
    pub provider: Provider,
    pub current: Current,
    pub metrics: Option<PrometheusHandle>,
    /// Bumped after every swap.
    pub reloaded: watch::Sender<u64>,
}

impl Swap {
    /// Gives the provider the new tenants, then swaps in the new live state;
    /// requests already running finish with the old one, and open tunnels
    /// verify again with the new one.
    pub fn install(&self, settings: &Settings) {
        self.provider.store(settings);
        self.current.store(Arc::new(Live::new(settings, &self.provider, self.metrics.clone())));
        self.reloaded.send_modify(|generation| *generation += 1);
    }
}

/// Where the keys come from: the file's tenants (replaced by each reload), or
/// PostgreSQL, cached (kept across reloads; its settings need a restart).
#[derive(Clone)]
pub enum Provider {
    File(HotSwap<TenantMap>),
    Postgres { cached: CachingProvider<PostgresProvider>, db: PostgresProvider },
}

impl Provider {
    /// The provider the settings name.
    pub fn new(settings: &Settings) -> std::io::Result<Provider> {
        match &settings.postgres {
            None => Ok(Provider::File(HotSwap::new(settings.tenants.clone()))),
            Some(pg) => postgres(pg),
        }
    }

    /// Takes the file's new tenants (PostgreSQL's come from the database).
    pub fn store(&self, settings: &Settings) {
        if let Provider::File(tenants) = self {
            tenants.store(settings.tenants.clone());
        }
    }

    /// The identity layer of `settings` over this provider.
    pub fn layer(&self, settings: &Settings) -> IdentityVerificationLayer {
        match self {
            Provider::File(tenants) => routes::layer(settings, tenants.clone()),
            Provider::Postgres { cached, .. } => routes::layer(settings, cached.clone()),
        }
    }

    /// Whether the provider can serve: PostgreSQL answers a lookup (past the
    /// cache) within `timeout`. The file's tenants always can.
    pub async fn ready(&self, timeout: Duration) -> bool {
        let Provider::Postgres { db, .. } = self else { return true };
        let answer = match db.lookup(None) {
            tower_identity::provider::Lookup::Ready(result) => result,
            tower_identity::provider::Lookup::Pending(future) => match tokio::time::timeout(timeout, future).await {
                Ok(result) => result,
                Err(_) => return false,
            },
            _ => return false,
        };
        answer.is_ok()
    }
}

fn postgres(pg: &PostgresSettings) -> std::io::Result<Provider> {
    let db = PostgresProvider::connect_with(pg.options.clone(), pg.max_connections)
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    let cached = db.clone().cached(pg.cache.clone());
    if pg.listen_notify {
        listen_for_changes(&pg.url, cached.clone());
    }
    tracing::info!(
        ttl_secs = pg.cache.ttl.as_secs(),
        listen_notify = pg.listen_notify,
        "tenants and keys from PostgreSQL"
    );
    Ok(Provider::Postgres { cached, db })
}
