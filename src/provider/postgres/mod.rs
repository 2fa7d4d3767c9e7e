//! [`PostgresProvider`]: tenants and keys in PostgreSQL (feature `postgres`).
//!
//! The schema is [`MIGRATION`] (`migrations/001_identity.sql`):
//! `identity_tenants (tenant_id, mode, audience)` and
//! `identity_keys (tenant_id, key_id, scheme, over, secret, secret_encoding,
//! not_before, not_after)`. Rotation is a row insert and a `not_after`
//! update; revocation is a `not_after` update (or a delete). Put the provider
//! behind [`CachingProvider`] ([`PostgresProvider::cached`]) and, for
//! immediate revocation, [`listen_for_changes`] (`LISTEN identity_keys`).
//!
//! Connections use TLS as the URL's `sslmode` asks ([`ConnectOptions`]). A
//! tenant whose secret another tenant uses under another scheme is answered
//! `misconfigured` ([`TenantPolicy::misconfigured`]), both tenants named in
//! the log.

mod shared;
mod tls;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio_postgres::Row;
use zeroize::Zeroizing;

use super::cache::{CacheOptions, CachingProvider};
use crate::key::{Identifier, Key, KeySet};
use crate::mode::Mode;
use crate::provider::{Lookup, LookupResult, ProviderError, SecretProvider, TenantPolicy};
use crate::secret::{Secret, SecretEncoding};
pub use tls::{ConnectOptions, SslMode};

/// The schema: run it once (or with [`PostgresProvider::migrate`]).
pub const MIGRATION: &str = include_str!("../../../migrations/001_identity.sql");

/// The tenant id stored for requests that name no tenant.
pub const UNTENANTED: &str = "";

const QUERY: &str = "SELECT t.mode, t.audience, k.key_id, k.scheme, k.over, k.secret, k.secret_encoding, \
     EXTRACT(EPOCH FROM k.not_before)::BIGINT, EXTRACT(EPOCH FROM k.not_after)::BIGINT \
     FROM identity_tenants t LEFT JOIN identity_keys k ON k.tenant_id = t.tenant_id \
     WHERE t.tenant_id = $1 ORDER BY k.key_id";

/// Looks tenants up in PostgreSQL through a connection pool.
#[derive(Clone)]
pub struct PostgresProvider {
    pool: deadpool_postgres::Pool,
    queries: Arc<AtomicU64>,
    shared: Arc<shared::SharedSecrets>,
}

impl std::fmt::Debug for PostgresProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresProvider").field("queries", &self.queries()).finish_non_exhaustive()
    }
}

fn db_error(message: &'static str) -> impl FnOnce(tokio_postgres::Error) -> ProviderError {
    move |e| ProviderError::with_source(message, e)
}

impl PostgresProvider {
    /// A provider over an existing pool.
    pub fn new(pool: deadpool_postgres::Pool) -> PostgresProvider {
        PostgresProvider { pool, queries: Arc::default(), shared: Arc::default() }
    }

    /// A provider with a pool of at most `max_connections` connections to
    /// `url` (`postgres://user@host:port/db?sslmode=verify-full&sslrootcert=ca.pem`,
    /// see [`ConnectOptions`]). Connections are opened lazily.
    pub fn connect(url: &str, max_connections: usize) -> Result<PostgresProvider, ProviderError> {
        PostgresProvider::connect_with(ConnectOptions::from_url(url)?, max_connections)
    }

    /// Like [`connect`](Self::connect), with options parsed beforehand.
    pub fn connect_with(options: ConnectOptions, max_connections: usize) -> Result<PostgresProvider, ProviderError> {
        let manager = deadpool_postgres::Manager::from_config(
            options.config,
            options.tls,
            deadpool_postgres::ManagerConfig { recycling_method: deadpool_postgres::RecyclingMethod::Fast },
        );
        let pool = deadpool_postgres::Pool::builder(manager)
            .max_size(max_connections.max(1))
            .wait_timeout(Some(Duration::from_secs(5)))
            .create_timeout(Some(Duration::from_secs(5)))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .build()
            .map_err(|e| ProviderError::with_source("cannot build the connection pool", e))?;
        Ok(PostgresProvider::new(pool))
    }

    /// Creates the tables and triggers if they do not exist.
    pub async fn migrate(&self) -> Result<(), ProviderError> {
        let client = self.client().await?;
        client.batch_execute(MIGRATION).await.map_err(db_error("the migration failed"))
    }

    /// How many lookup queries ran (for tests and metrics).
    pub fn queries(&self) -> u64 {
        self.queries.load(Ordering::Relaxed)
    }

    /// This provider behind a cache.
    pub fn cached(self, options: CacheOptions) -> CachingProvider<PostgresProvider> {
        CachingProvider::new(self, options)
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, ProviderError> {
        self.pool.get().await.map_err(|e| ProviderError::with_source("no database connection", e))
    }

    async fn fetch(self, tenant: Option<String>) -> LookupResult {
        let client = self.client().await?;
        self.queries.fetch_add(1, Ordering::Relaxed);
        let tenant = tenant.unwrap_or_default();
        let rows = client.query(QUERY, &[&tenant]).await.map_err(db_error("the key lookup failed"))?;
        let Some(first) = rows.first() else {
            return Ok(None);
        };
        let mode: Option<String> = first.get(0);
        let audience: Option<String> = first.get(1);
        let mut keys = Vec::new();
        for row in &rows {
            keys.extend(key_from_row(row, 2, &tenant)?);
        }
        let mut set = KeySet::new(keys).map_err(|e| ProviderError::new(format!("tenant {tenant:?}: {e}")))?;
        let name = (tenant != UNTENANTED).then_some(tenant.as_str());
        if let Some(conflict) = self.shared.conflict(&client, name, &set).await? {
            tracing::error!(%conflict, "identity: refusing a tenant whose secret another tenant uses under another scheme");
            return Ok(Some(TenantPolicy::misconfigured()));
        }
        if let Some(audience) = audience {
            set = set.with_audience(audience);
        }
        let mut policy = TenantPolicy::new(set);
        if let Some(mode) = mode {
            policy = policy.with_mode(mode.parse::<Mode>().map_err(ProviderError::new)?);
        }
        Ok(Some(policy))
    }
}

/// The key in the columns of `row` from `at` on (`key_id, scheme, over,
/// secret, secret_encoding, not_before, not_after`); `None` for a tenant
/// without keys (the left join's empty row).
fn key_from_row(row: &Row, at: usize, tenant: &str) -> Result<Option<Key>, ProviderError> {
    let Some(key_id) = row.get::<_, Option<String>>(at) else { return Ok(None) };
    let bad = |what: &str| ProviderError::new(format!("tenant {tenant:?}, key {key_id:?}: {what}"));
    let scheme: String = row.get(at + 1);
    let over: String = row.get(at + 2);
    let secret = Zeroizing::new(row.get::<_, String>(at + 3));
    let encoding: SecretEncoding = row.get::<_, String>(at + 4).parse().map_err(|_| bad("unknown secret_encoding"))?;
    let secret = Secret::decode(&secret, encoding).map_err(|e| bad(&e.to_string()))?;
    let over: Identifier = over.parse().map_err(|_| bad("unknown over"))?;
    let scheme: crate::key::Scheme = scheme.parse().map_err(|_| bad("unknown scheme"))?;
    let mut key = Key::new(scheme.with_identifier(over), secret).with_id(key_id.as_str());
    if let Some(t) = row.get::<_, Option<i64>>(at + 5) {
        key = key.not_before(t.max(0) as u64);
    }
    if let Some(t) = row.get::<_, Option<i64>>(at + 6) {
        key = key.not_after(t.max(0) as u64);
    }
    Ok(Some(key))
}

impl SecretProvider for PostgresProvider {
    fn lookup(&self, tenant: Option<&str>) -> Lookup {
        Lookup::Pending(Box::pin(self.clone().fetch(tenant.map(str::to_owned))))
    }
}

/// Drops a tenant's cached keys as soon as the database says they changed
/// (`LISTEN identity_keys`; the migration's triggers send the notifications).
///
/// Runs until the task is aborted, reconnecting after errors; after every
/// (re)connection the whole cache is dropped, since notifications may have
/// been missed meanwhile.
pub fn listen_for_changes<P: SecretProvider>(url: &str, cache: CachingProvider<P>) -> tokio::task::JoinHandle<()> {
    let options = ConnectOptions::from_url(url);
    tokio::spawn(async move {
        let options = match options {
            Ok(options) => options,
            Err(error) => {
                tracing::error!(%error, "identity: cannot listen for key changes");
                return;
            }
        };
        loop {
            if let Err(error) = listen_once(&options, &cache).await {
                tracing::warn!(%error, "identity: LISTEN connection lost; reconnecting");
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    })
}

async fn listen_once<P: SecretProvider>(
    options: &ConnectOptions,
    cache: &CachingProvider<P>,
) -> Result<(), tokio_postgres::Error> {
    let (client, mut connection) = options.config.connect(options.tls.clone()).await?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let pump = tokio::spawn(async move {
        while let Some(message) = std::future::poll_fn(|cx| connection.poll_message(cx)).await {
            match message {
                Ok(tokio_postgres::AsyncMessage::Notification(n)) => {
                    if tx.send(n.payload().to_owned()).is_err() {
                        break;
                    }
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
    });
    client.batch_execute("LISTEN identity_keys").await?;
    cache.invalidate_all();
    tracing::debug!("identity: listening for key changes");
    while let Some(tenant) = rx.recv().await {
        cache.invalidate(if tenant == UNTENANTED { None } else { Some(&tenant) });
    }
    pump.abort();
    drop(client);
    Ok(())
}
