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
mod shared_secret;

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;

#[cfg(feature = "cache")]
#[cfg_attr(docsrs, doc(cfg(feature = "cache")))]
pub use cache::{CacheOptions, CachingProvider};
pub use hot_swap::HotSwap;
pub(crate) use shared_secret::SchemeIndex;
pub use shared_secret::{KeyUse, TenantMapError};

use crate::key::KeySet;
use crate::mode::Mode;

/// A tenant's policy: its key set and, optionally, a mode overriding the layer's.
///
/// Cheap to clone (one reference count).
#[derive(Clone, Debug)]
pub struct TenantPolicy {
    keys: KeySet,
    mode: Option<Mode>,
    misconfigured: bool,
}

impl TenantPolicy {
    /// A policy with these keys and the layer's mode.
    pub fn new(keys: KeySet) -> TenantPolicy {
        TenantPolicy { keys, mode: None, misconfigured: false }
    }

    /// A tenant that exists but whose keys break the key policy (e.g. its
    /// secret is another tenant's under another scheme): every request
    /// naming it is answered 500 `misconfigured`, in every mode but
    /// [`Mode::Off`], and nothing is verified. Providers return it instead of
    /// an error so that caches keep the answer and the database is not asked
    /// again on every request.
    pub fn misconfigured() -> TenantPolicy {
        TenantPolicy { keys: KeySet::empty(), mode: None, misconfigured: true }
    }

    /// Whether this is [`TenantPolicy::misconfigured`].
    pub fn is_misconfigured(&self) -> bool {
        self.misconfigured
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
/// Adding a tenant fails when one of its secrets is another tenant's under
/// another scheme ([`TenantMapError`]): a signature one tenant's backend
/// makes must never verify at another tenant as a different scheme.
///
/// ```
/// use tower_identity::{Identifier, Key, KeySet, Mode, Secret, TenantMap, TenantPolicy};
///
/// let acme = KeySet::single(Key::hmac(Identifier::UserId, Secret::text("acme-secret-0123456789")?));
/// let globex = KeySet::single(Key::hmac(Identifier::Email, Secret::hex("9f86d081884c7d659a2feaa0c55ad015")?));
/// let tenants = TenantMap::new()
///     .tenant("acme", acme)?
///     .tenant("globex", TenantPolicy::new(globex).with_mode(Mode::Optional))?;
/// assert_eq!(tenants.len(), 2);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, Default)]
pub struct TenantMap {
    tenants: HashMap<Box<str>, TenantPolicy>,
    untenanted: Option<TenantPolicy>,
    index: SchemeIndex,
}

impl TenantMap {
    /// An empty map.
    pub fn new() -> TenantMap {
        TenantMap::default()
    }

    /// A map of these tenants; fails like [`TenantMap::insert`].
    pub fn from_tenants<T, P>(tenants: impl IntoIterator<Item = (T, P)>) -> Result<TenantMap, TenantMapError>
    where
        T: Into<Box<str>>,
        P: Into<TenantPolicy>,
    {
        let mut map = TenantMap::new();
        for (tenant, policy) in tenants {
            map.insert(tenant, policy)?;
        }
        Ok(map)
    }

    /// Adds (or replaces) a tenant; fails like [`TenantMap::insert`].
    pub fn tenant(
        mut self,
        tenant: impl Into<Box<str>>,
        policy: impl Into<TenantPolicy>,
    ) -> Result<TenantMap, TenantMapError> {
        self.insert(tenant, policy)?;
        Ok(self)
    }

    /// Adds (or replaces) a tenant in place. Fails, leaving the map as it
    /// was, when one of its secrets is another tenant's under another scheme.
    pub fn insert(
        &mut self,
        tenant: impl Into<Box<str>>,
        policy: impl Into<TenantPolicy>,
    ) -> Result<(), TenantMapError> {
        let (tenant, policy) = (tenant.into(), policy.into());
        self.check_and_record(Some(&tenant), &policy)?;
        self.tenants.insert(tenant, policy);
        Ok(())
    }

    /// The policy for requests that name no tenant (requests naming an
    /// unknown tenant never fall back to it); fails like [`TenantMap::insert`].
    pub fn untenanted(mut self, policy: impl Into<TenantPolicy>) -> Result<TenantMap, TenantMapError> {
        let policy = policy.into();
        self.check_and_record(None, &policy)?;
        self.untenanted = Some(policy);
        Ok(self)
    }

    /// Checks `policy` against the other tenants' keys and records it in
    /// place of `tenant`'s previous policy.
    fn check_and_record(&mut self, tenant: Option<&str>, policy: &TenantPolicy) -> Result<(), TenantMapError> {
        if let Some(conflict) = self.index.conflict(tenant, policy.keys()) {
            return Err(conflict);
        }
        if let Some(previous) = self.get(tenant) {
            let previous = previous.keys().clone();
            self.index.remove(tenant, &previous);
        }
        self.index.add(tenant, policy.keys());
        Ok(())
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
/// use tower_identity::{provider::from_async_fn, Identifier, Key, KeySet, provider::ProviderError, Secret, TenantPolicy};
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
