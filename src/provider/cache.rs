//! [`CachingProvider`]: keeps slow providers (databases, vaults) off the
//! request path (feature `cache`).

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use moka::Expiry;
use tokio::sync::OnceCell;

use crate::provider::{Lookup, LookupResult, ProviderError, SecretProvider, TenantPolicy};

/// How [`CachingProvider`] caches.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct CacheOptions {
    /// How long a known tenant's policy is served from the cache. Default 60 s.
    /// A key revoked at the source stops verifying within this time (or at
    /// once after [`CachingProvider::invalidate`]).
    pub ttl: Duration,
    /// How long an unknown tenant is remembered as unknown. Default 5 s.
    pub negative_ttl: Duration,
    /// Most tenants kept (known and unknown together). Default 100,000.
    pub max_tenants: u64,
    /// Most bytes the cached tenants may hold, counted as each tenant
    /// name's length plus a fixed per-entry overhead. Default 64 MiB. This
    /// bounds the negative cache whatever names clients send: a flood of
    /// long unknown tenant names evicts older entries instead of growing
    /// memory.
    pub max_bytes: u64,
    /// A lookup taking longer fails (503). Default 2 s.
    pub lookup_timeout: Duration,
    /// When the source fails, keep serving the last good policy for this
    /// long past its expiry instead of failing. Default `None` (fail closed).
    pub serve_stale_for: Option<Duration>,
}

impl Default for CacheOptions {
    fn default() -> Self {
        CacheOptions {
            ttl: Duration::from_secs(60),
            negative_ttl: Duration::from_secs(5),
            max_tenants: 100_000,
            max_bytes: 64 * 1024 * 1024,
            lookup_timeout: Duration::from_secs(2),
            serve_stale_for: None,
        }
    }
}

impl CacheOptions {
    /// Sets [`ttl`](Self::ttl).
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }
    /// Sets [`negative_ttl`](Self::negative_ttl).
    pub fn negative_ttl(mut self, ttl: Duration) -> Self {
        self.negative_ttl = ttl;
        self
    }
    /// Sets [`max_tenants`](Self::max_tenants).
    pub fn max_tenants(mut self, n: u64) -> Self {
        self.max_tenants = n;
        self
    }
    /// Sets [`max_bytes`](Self::max_bytes).
    pub fn max_bytes(mut self, bytes: u64) -> Self {
        self.max_bytes = bytes;
        self
    }
    /// Sets [`lookup_timeout`](Self::lookup_timeout).
    pub fn lookup_timeout(mut self, timeout: Duration) -> Self {
        self.lookup_timeout = timeout;
        self
    }
    /// Sets [`serve_stale_for`](Self::serve_stale_for).
    pub fn serve_stale_for(mut self, period: Option<Duration>) -> Self {
        self.serve_stale_for = period;
        self
    }
}

/// A cached answer: the policy, or `None` for an unknown tenant.
#[derive(Clone)]
struct Entry {
    policy: Option<TenantPolicy>,
    ttl: Duration,
}

struct PerEntry;

/// What one cached tenant is counted as besides its name: moka's entry,
/// its queue and timer nodes, the `Arc` header and the `Entry` itself.
const ENTRY_OVERHEAD: u64 = 256;

/// The weight of a cached tenant: its bytes, and at least the share of
/// [`CacheOptions::max_bytes`] that one of [`CacheOptions::max_tenants`]
/// entries may take, so that one capacity bounds both the bytes and the count.
fn weigher(options: &CacheOptions) -> impl Fn(&Arc<str>, &Entry) -> u32 + Send + Sync + 'static {
    let floor = options.max_bytes / options.max_tenants.max(1);
    move |name, _| u32::try_from((name.len() as u64 + ENTRY_OVERHEAD).max(floor)).unwrap_or(u32::MAX)
}

impl<K> Expiry<K, Entry> for PerEntry {
    fn expire_after_create(&self, _key: &K, value: &Entry, _now: Instant) -> Option<Duration> {
        Some(value.ttl)
    }
}

type Shared = Result<Option<TenantPolicy>, Arc<str>>;
type TenantKey = Option<Arc<str>>;

struct Inner<P> {
    provider: P,
    options: CacheOptions,
    named: moka::sync::Cache<Arc<str>, Entry>,
    unnamed: moka::sync::Cache<(), Entry>,
    last_good: Option<moka::sync::Cache<TenantKey, TenantPolicy>>,
    inflight: Mutex<HashMap<TenantKey, Arc<OnceCell<Shared>>>>,
}

/// Caches another provider's answers.
///
/// - hits are answered synchronously (no allocation, no boxing);
/// - concurrent misses for one tenant make one lookup;
/// - unknown tenants are cached for a short time (negative caching);
/// - lookups time out ([`CacheOptions::lookup_timeout`]); errors fail
///   closed (503) unless [`serve_stale_for`](CacheOptions::serve_stale_for)
///   allows the last good policy;
/// - the cache is bounded in entries and in bytes
///   ([`CacheOptions::max_tenants`], [`CacheOptions::max_bytes`]), however
///   many and however long the unknown tenant names clients send.
///
/// Lookups that miss need a tokio runtime (for the timeout).
///
/// ```
/// use std::time::Duration;
/// use tower_identity::{provider::from_async_fn, provider::CacheOptions, provider::CachingProvider, IdentityVerificationLayer};
///
/// let database = from_async_fn(|tenant: Option<String>| async move {
///     // SELECT … FROM identity_keys WHERE tenant_id = $1
///     let _ = tenant;
///     Ok(None)
/// });
/// let provider = CachingProvider::new(database, CacheOptions::default().ttl(Duration::from_secs(30)));
/// let layer = IdentityVerificationLayer::new(provider.clone());
/// // Later, when a key is revoked: provider.invalidate(Some("acme"));
/// # let _ = layer;
/// ```
pub struct CachingProvider<P> {
    inner: Arc<Inner<P>>,
}

impl<P> Clone for CachingProvider<P> {
    fn clone(&self) -> Self {
        CachingProvider { inner: self.inner.clone() }
    }
}

impl<P> fmt::Debug for CachingProvider<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CachingProvider")
            .field("options", &self.inner.options)
            .field("entries", &(self.inner.named.entry_count() + self.inner.unnamed.entry_count()))
            .finish_non_exhaustive()
    }
}

impl<P: SecretProvider> CachingProvider<P> {
    /// Caches `provider`'s answers.
    pub fn new(provider: P, options: CacheOptions) -> Self {
        let named = moka::sync::Cache::builder()
            .max_capacity(options.max_bytes)
            .weigher(weigher(&options))
            .expire_after(PerEntry)
            .build();
        let unnamed = moka::sync::Cache::builder().max_capacity(1).expire_after(PerEntry).build();
        let last_good = options.serve_stale_for.map(|stale| {
            moka::sync::Cache::builder().max_capacity(options.max_tenants).time_to_live(options.ttl + stale).build()
        });
        CachingProvider {
            inner: Arc::new(Inner { provider, options, named, unnamed, last_good, inflight: Mutex::default() }),
        }
    }

    /// Forgets a tenant: its next request looks it up again (e.g. on a
    /// database notification that its keys changed).
    pub fn invalidate(&self, tenant: Option<&str>) {
        match tenant {
            Some(t) => self.inner.named.invalidate(t),
            None => self.inner.unnamed.invalidate(&()),
        }
        if let Some(last) = &self.inner.last_good {
            last.invalidate(&tenant.map(Arc::from));
        }
    }

    /// Forgets every tenant.
    pub fn invalidate_all(&self) {
        self.inner.named.invalidate_all();
        self.inner.unnamed.invalidate_all();
        if let Some(last) = &self.inner.last_good {
            last.invalidate_all();
        }
    }

    /// The bytes the cached tenants are counted as (see
    /// [`CacheOptions::max_bytes`]), after applying pending evictions.
    pub fn cached_bytes(&self) -> u64 {
        self.inner.named.run_pending_tasks();
        self.inner.named.weighted_size() + self.inner.unnamed.entry_count() * ENTRY_OVERHEAD
    }

    /// The wrapped provider.
    pub fn get_ref(&self) -> &P {
        &self.inner.provider
    }
}

impl<P: SecretProvider> Inner<P> {
    fn cached(&self, tenant: Option<&str>) -> Option<Entry> {
        match tenant {
            Some(t) => self.named.get(t),
            None => self.unnamed.get(&()),
        }
    }

    fn store(&self, key: &TenantKey, entry: Entry) {
        match key {
            Some(t) => self.named.insert(t.clone(), entry),
            None => self.unnamed.insert((), entry),
        }
    }

    /// One lookup at the source, with the timeout, caching its answer.
    async fn load(&self, key: &TenantKey) -> Shared {
        // A request that missed the cache just before an earlier lookup for
        // this tenant finished finds that lookup's answer here, instead of
        // querying again.
        if let Some(entry) = self.cached(key.as_deref()) {
            return Ok(entry.policy);
        }
        let result = match self.provider.lookup(key.as_deref()) {
            Lookup::Ready(result) => result,
            Lookup::Pending(future) => match tokio::time::timeout(self.options.lookup_timeout, future).await {
                Ok(result) => result,
                Err(_) => Err(ProviderError::new("the secret provider timed out")),
            },
        };
        crate::metrics::provider_lookup(result.is_ok());
        match result {
            Ok(Some(policy)) => {
                self.store(key, Entry { policy: Some(policy.clone()), ttl: self.options.ttl });
                if let Some(last) = &self.last_good {
                    last.insert(key.clone(), policy.clone());
                }
                Ok(Some(policy))
            }
            Ok(None) => {
                self.store(key, Entry { policy: None, ttl: self.options.negative_ttl });
                Ok(None)
            }
            Err(error) => {
                if let Some(stale) = self.last_good.as_ref().and_then(|last| last.get(key)) {
                    tracing::warn!(%error, "identity: secret provider failed; serving the last good keys");
                    return Ok(Some(stale));
                }
                Err(Arc::from(error.to_string()))
            }
        }
    }
}

/// Removes a finished (or abandoned) in-flight entry, however `fetch` ends:
/// completed, cancelled by a dropped request, or unwound by a panic. Without
/// it, tenant names chosen by clients would pile up in the map.
struct InflightGuard<'a, P> {
    inner: &'a Inner<P>,
    key: &'a TenantKey,
    cell: &'a Arc<OnceCell<Shared>>,
}

impl<P> Drop for InflightGuard<'_, P> {
    fn drop(&mut self) {
        let mut inflight = self.inner.inflight.lock().unwrap_or_else(|e| e.into_inner());
        let ours = inflight.get(self.key).is_some_and(|c| Arc::ptr_eq(c, self.cell));
        // Keep an unfinished cell that other requests still wait on: one of
        // them takes the lookup over.
        if ours && (self.cell.initialized() || Arc::strong_count(self.cell) <= 2) {
            inflight.remove(self.key);
        }
    }
}

async fn fetch<P: SecretProvider>(inner: Arc<Inner<P>>, key: TenantKey) -> LookupResult {
    let cell = inner.inflight.lock().unwrap_or_else(|e| e.into_inner()).entry(key.clone()).or_default().clone();
    let _guard = InflightGuard { inner: &inner, key: &key, cell: &cell };
    // Every waiter is bounded by the timeout, also when the request that
    // started the lookup goes away and another one takes it over.
    match tokio::time::timeout(inner.options.lookup_timeout, cell.get_or_init(|| inner.load(&key))).await {
        Ok(result) => result.clone().map_err(|message| ProviderError::new(message.to_string())),
        Err(_) => Err(ProviderError::new("the secret provider timed out")),
    }
}

#[cfg(test)]
impl<P> CachingProvider<P> {
    fn inflight_len(&self) -> usize {
        self.inner.inflight.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

impl<P: SecretProvider> SecretProvider for CachingProvider<P> {
    fn lookup(&self, tenant: Option<&str>) -> Lookup {
        if let Some(entry) = self.inner.cached(tenant) {
            crate::metrics::cache(true);
            return Lookup::Ready(Ok(entry.policy));
        }
        crate::metrics::cache(false);
        Lookup::Pending(Box::pin(fetch(self.inner.clone(), tenant.map(Arc::from))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::from_async_fn;

    #[tokio::test]
    async fn cancelled_lookups_leave_nothing_behind() {
        let provider = CachingProvider::new(
            from_async_fn(|_: Option<String>| async {
                tokio::time::sleep(Duration::from_secs(60)).await;
                Ok(None)
            }),
            CacheOptions::default(),
        );
        for i in 0..100 {
            let Lookup::Pending(lookup) = provider.lookup(Some(&format!("tenant-{i}"))) else { panic!("a miss") };
            // The request goes away before the lookup finishes.
            assert!(tokio::time::timeout(Duration::from_millis(1), lookup).await.is_err());
        }
        assert_eq!(provider.inflight_len(), 0);
    }

    // On a paused clock, so the bound is the timers', not the machine's load.
    #[tokio::test(start_paused = true)]
    async fn every_waiter_is_bounded_by_the_timeout() {
        let timeout = Duration::from_millis(200);
        let provider = CachingProvider::new(
            from_async_fn(|_: Option<String>| std::future::pending()),
            CacheOptions::default().lookup_timeout(timeout),
        );
        let Lookup::Pending(first) = provider.lookup(Some("t")) else { panic!("a miss") };
        let Lookup::Pending(second) = provider.lookup(Some("t")) else { panic!("a miss") };
        let started = tokio::time::Instant::now();
        let first = tokio::spawn(first);
        tokio::time::sleep(Duration::from_millis(100)).await;
        first.abort(); // the request that started the lookup goes away
        assert!(second.await.is_err());
        // The second waiter, first polled at 100 ms, gives up at its own timeout.
        assert_eq!(started.elapsed(), Duration::from_millis(100) + timeout);
        assert_eq!(provider.inflight_len(), 0);
    }
}
