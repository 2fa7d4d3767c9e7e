//! Where keys come from: the [`SecretProvider`] trait, a tenant's
//! [`TenantPolicy`], and the built-in providers: a static [`KeySet`] or
//! [`TenantMap`], an async closure ([`from_async_fn`]), a [`HotSwap`] slot,
//! and (features `cache`, `postgres`) a [`CachingProvider`] and a PostgreSQL
//! provider.

#[cfg(feature = "cache")]
mod cache;
mod hot_swap;
#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub mod postgres;

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;

#[cfg(feature = "cache")]
#[cfg_attr(docsrs, doc(cfg(feature = "cache")))]
pub use cache::{CacheOptions, CachingProvider};
pub use hot_swap::HotSwap;

use crate::key::KeySet;
use crate::mode::Mode;

/// A tenant's policy: its key set and, optionally, a mode overriding the layer's.
///
/// Cheap to clone (one reference count).
#[derive(Clone, Debug)]
pub struct TenantPolicy {
    keys: KeySet,
    mode: Option<Mode>,
}

impl TenantPolicy {
    /// A policy with these keys and the layer's mode.
    pub fn new(keys: KeySet) -> TenantPolicy {
        TenantPolicy { keys, mode: None }
    }

    /// Overrides the layer's mode for this tenant.
    #[must_use]
    pub fn with_mode(mut self, mode: Mode) -> TenantPolicy {
        self.mode = Some(mode);
        self
    }

    /// The tenant's keys.
    pub fn keys(&self) -> &KeySet {
        &self.keys
    }

    /// The tenant's mode, if it overrides the layer's.
    pub fn mode(&self) -> Option<Mode> {
        self.mode
    }
}

impl From<KeySet> for TenantPolicy {
    fn from(keys: KeySet) -> Self {
        TenantPolicy::new(keys)
    }
}

/// A provider failure (database down, vault timeout). The layer answers 503
/// and never lets the request through. The message is logged: keep secrets
/// out of it.
#[derive(Debug)]
pub struct ProviderError {
    message: Cow<'static, str>,
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl ProviderError {
    /// An error with a message.
    pub fn new(message: impl Into<Cow<'static, str>>) -> ProviderError {
        ProviderError { message: message.into(), source: None }
    }

    /// An error caused by another.
    pub fn with_source(
        message: impl Into<Cow<'static, str>>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> ProviderError {
        ProviderError { message: message.into(), source: Some(source.into()) }
    }
}

impl fmt::Display for ProviderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ProviderError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_deref().map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// The result of a lookup: the tenant's policy, `None` for an unknown tenant.
pub type LookupResult = Result<Option<TenantPolicy>, ProviderError>;

/// A boxed lookup future, for providers that must wait (databases, vaults).
pub type LookupFuture = Pin<Box<dyn Future<Output = LookupResult> + Send + 'static>>;

/// What [`SecretProvider::lookup`] returns: an answer now (no allocation,
/// no boxing) or a future to wait on.
#[non_exhaustive]
pub enum Lookup {
    /// The answer is known now.
    Ready(LookupResult),
    /// The answer needs I/O.
    Pending(LookupFuture),
}

impl fmt::Debug for Lookup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Lookup::Ready(r) => f.debug_tuple("Ready").field(r).finish(),
            Lookup::Pending(_) => f.write_str("Pending(..)"),
        }
    }
}

/// Gives a tenant's policy (keys and optional mode).
///
/// `tenant` is the tenant key read from the request, or `None` when the
/// request names none (single-tenant setups). Return `Ok(None)` for an
/// unknown tenant: the layer answers it exactly as it answers a known tenant
/// whose key does not match (same code, body, metrics and work).
///
/// Built in: [`KeySet`] and [`TenantPolicy`] (one static tenant),
/// [`TenantMap`] (many static tenants), [`from_async_fn`] (an async closure),
/// and any closure `Fn(Option<&str>) -> LookupResult`.
pub trait SecretProvider: Send + Sync + 'static {
    /// Looks up the policy of `tenant`.
    fn lookup(&self, tenant: Option<&str>) -> Lookup;
}

impl SecretProvider for KeySet {
    fn lookup(&self, _tenant: Option<&str>) -> Lookup {
        Lookup::Ready(Ok(Some(TenantPolicy::new(self.clone()))))
    }
}

impl SecretProvider for TenantPolicy {
    fn lookup(&self, _tenant: Option<&str>) -> Lookup {
        Lookup::Ready(Ok(Some(self.clone())))
    }
}

impl<F> SecretProvider for F
where
    F: Fn(Option<&str>) -> LookupResult + Send + Sync + 'static,
{
    fn lookup(&self, tenant: Option<&str>) -> Lookup {
        Lookup::Ready(self(tenant))
    }
}

/// Static per-tenant policies, looked up by the tenant key the request names.
///
/// ```
/// use tower_identity::{Identifier, Key, KeySet, Mode, Secret, TenantMap, TenantPolicy};
///
/// let acme = KeySet::single(Key::hmac(Identifier::UserId, Secret::text("acme-secret-0123456789").unwrap()));
/// let globex = KeySet::single(Key::hmac(Identifier::Email, Secret::hex("9f86d081884c7d659a2feaa0c55ad015").unwrap()));
/// let tenants = TenantMap::new()
///     .tenant("acme", acme)
///     .tenant("globex", TenantPolicy::new(globex).with_mode(Mode::Optional));
/// assert_eq!(tenants.len(), 2);
/// ```
#[derive(Clone, Debug, Default)]
pub struct TenantMap {
    tenants: HashMap<Box<str>, TenantPolicy>,
    untenanted: Option<TenantPolicy>,
}

impl TenantMap {
    /// An empty map.
    pub fn new() -> TenantMap {
        TenantMap::default()
    }

    /// Adds (or replaces) a tenant.
    #[must_use]
    pub fn tenant(mut self, tenant: impl Into<Box<str>>, policy: impl Into<TenantPolicy>) -> TenantMap {
        self.insert(tenant, policy);
        self
    }

    /// Adds (or replaces) a tenant in place.
    pub fn insert(&mut self, tenant: impl Into<Box<str>>, policy: impl Into<TenantPolicy>) {
        self.tenants.insert(tenant.into(), policy.into());
    }

    /// The policy for requests that name no tenant. Requests naming an
    /// unknown tenant never fall back to it.
    #[must_use]
    pub fn untenanted(mut self, policy: impl Into<TenantPolicy>) -> TenantMap {
        self.untenanted = Some(policy.into());
        self
    }

    /// Number of tenants.
    pub fn len(&self) -> usize {
        self.tenants.len()
    }

    /// Whether there are no tenants.
    pub fn is_empty(&self) -> bool {
        self.tenants.is_empty()
    }

    /// The policy of a tenant.
    pub fn get(&self, tenant: Option<&str>) -> Option<&TenantPolicy> {
        match tenant {
            Some(t) => self.tenants.get(t),
            None => self.untenanted.as_ref(),
        }
    }
}

impl FromIterator<(String, TenantPolicy)> for TenantMap {
    fn from_iter<T: IntoIterator<Item = (String, TenantPolicy)>>(iter: T) -> Self {
        let mut map = TenantMap::new();
        for (t, p) in iter {
            map.insert(t, p);
        }
        map
    }
}

impl SecretProvider for TenantMap {
    fn lookup(&self, tenant: Option<&str>) -> Lookup {
        Lookup::Ready(Ok(self.get(tenant).cloned()))
    }
}

/// A provider from an async closure; see [`from_async_fn`].
#[derive(Clone)]
pub struct AsyncFnProvider<F>(F);

impl<F> fmt::Debug for AsyncFnProvider<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AsyncFnProvider(..)")
    }
}

/// Adapts an async closure into a provider. The tenant is passed owned so the
/// future may outlive the request; the future is boxed once per lookup (wrap
/// slow providers in a cache to keep them off the hot path).
///
/// ```
/// use tower_identity::{from_async_fn, Identifier, Key, KeySet, ProviderError, Secret, TenantPolicy};
///
/// let provider = from_async_fn(|tenant: Option<String>| async move {
///     // e.g. SELECT secret FROM tenants WHERE id = $1
///     match tenant.as_deref() {
///         Some("acme") => Ok(Some(TenantPolicy::new(KeySet::single(Key::hmac(
///             Identifier::UserId,
///             Secret::text("acme-secret-0123456789").map_err(|e| ProviderError::new(e.to_string()))?,
///         ))))),
///         _ => Ok(None),
///     }
/// });
/// # let _ = provider;
/// ```
pub fn from_async_fn<F, Fut>(f: F) -> AsyncFnProvider<F>
where
    F: Fn(Option<String>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = LookupResult> + Send + 'static,
{
    AsyncFnProvider(f)
}

impl<F, Fut> SecretProvider for AsyncFnProvider<F>
where
    F: Fn(Option<String>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = LookupResult> + Send + 'static,
{
    fn lookup(&self, tenant: Option<&str>) -> Lookup {
        Lookup::Pending(Box::pin((self.0)(tenant.map(str::to_owned))))
    }
}
