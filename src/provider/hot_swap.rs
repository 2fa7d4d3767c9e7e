//! [`HotSwap`]: a provider replaced at run time without locks on the request path.

use std::fmt;

use super::{Lookup, SecretProvider, TenantMap};

/// A provider whose contents can be replaced at run time without locks on
/// the request path (the sidecar's hot reload uses it). Clones share the
/// same slot.
///
/// ```
/// use tower_identity::{provider::HotSwap, Identifier, Key, KeySet, Secret, TenantMap};
///
/// let keys = |s: &str| KeySet::single(Key::hmac(Identifier::UserId, Secret::text(s).unwrap()));
/// let provider = HotSwap::new(TenantMap::new().tenant("acme", keys("first-secret-0123456789"))?);
/// let handle = provider.clone(); // give `provider` to the layer, keep the handle
/// handle.store(TenantMap::new().tenant("acme", keys("rotated-secret-0123456789"))?);
/// # Ok::<(), tower_identity::TenantMapError>(())
/// ```
pub struct HotSwap<P = TenantMap> {
    current: std::sync::Arc<arc_swap::ArcSwap<P>>,
}

impl<P> Clone for HotSwap<P> {
    fn clone(&self) -> Self {
        HotSwap { current: self.current.clone() }
    }
}

impl<P> fmt::Debug for HotSwap<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HotSwap(..)")
    }
}

impl<P> HotSwap<P> {
    /// A slot holding `provider`.
    pub fn new(provider: P) -> Self {
        HotSwap { current: std::sync::Arc::new(arc_swap::ArcSwap::from_pointee(provider)) }
    }

    /// Replaces the provider; requests already resolving keep the old one.
    pub fn store(&self, provider: P) {
        self.current.store(std::sync::Arc::new(provider));
    }

    /// The current provider.
    pub fn load(&self) -> std::sync::Arc<P> {
        self.current.load_full()
    }
}

impl<P: SecretProvider> SecretProvider for HotSwap<P> {
    fn lookup(&self, tenant: Option<&str>) -> Lookup {
        self.current.load().lookup(tenant)
    }
}
