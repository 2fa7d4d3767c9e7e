//! One secret, two schemes, two tenants: an index of which tenant uses which
//! HMAC key under which scheme, to refuse a secret that would let one
//! tenant's signatures verify as another scheme's at another tenant (a plain
//! HMAC over `bob-1999999999` is the timestamped signature of `bob`; an HMAC
//! over `header.payload` is an HS256 signature).

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use crate::key::{Fingerprint, Key, KeySet, Scheme};

/// A tenant's key, named in a [`TenantMapError`] (never its secret).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct KeyUse {
    /// The tenant, `None` for the policy of requests naming no tenant.
    pub tenant: Option<String>,
    /// The key's id, if it has one.
    pub key_id: Option<String>,
    /// The scheme the key verifies.
    pub scheme: Scheme,
}

impl fmt::Display for KeyUse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.tenant {
            Some(tenant) => write!(f, "tenant {tenant:?}")?,
            None => f.write_str("the default tenant")?,
        }
        if let Some(id) = &self.key_id {
            write!(f, " (key {id:?})")?;
        }
        match self.scheme.identifier() {
            Some(over) => write!(f, " with {} over {over}", self.scheme.as_str()),
            None => write!(f, " with {}", self.scheme.as_str()),
        }
    }
}

/// Why a [`TenantMap`](super::TenantMap) refused a tenant.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TenantMapError {
    /// Two tenants use the same secret for two different schemes: a
    /// signature one tenant's backend makes would verify at the other under
    /// the other scheme. A secret shared by tenants under one scheme is
    /// allowed.
    SecretSharedAcrossTenants {
        /// The key already in the map.
        first: KeyUse,
        /// The key refused.
        second: KeyUse,
    },
}

impl fmt::Display for TenantMapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TenantMapError::SecretSharedAcrossTenants { first, second } => write!(
                f,
                "{first} and {second} use the same secret for two schemes; \
                 a secret must be bound to one scheme"
            ),
        }
    }
}

impl std::error::Error for TenantMapError {}

/// One tenant's use of an HMAC key.
#[derive(Clone, Debug)]
struct Use {
    tenant: Option<Arc<str>>,
    key_id: Option<Arc<str>>,
    scheme: Scheme,
}

impl Use {
    fn named(&self) -> KeyUse {
        KeyUse {
            tenant: self.tenant.as_deref().map(str::to_owned),
            key_id: self.key_id.as_deref().map(str::to_owned),
            scheme: self.scheme,
        }
    }
}

fn key_use(tenant: Option<&str>, key: &Key) -> KeyUse {
    KeyUse { tenant: tenant.map(str::to_owned), key_id: key.id().map(str::to_owned), scheme: key.scheme() }
}

/// Which tenants use which HMAC keys (by [`Fingerprint`], never the secret),
/// under which scheme. The digests are looked up in a hash map: they are
/// keyed by the secrets themselves, so their timing tells nothing of a secret.
#[derive(Clone, Debug, Default)]
pub(crate) struct SchemeIndex {
    uses: HashMap<Fingerprint, Vec<Use>>,
}

impl SchemeIndex {
    /// The first key of `keys` whose secret another tenant uses under another
    /// scheme, as the pair to report.
    pub(crate) fn conflict(&self, tenant: Option<&str>, keys: &KeySet) -> Option<TenantMapError> {
        keys.keys().iter().find_map(|key| {
            let other = self
                .uses
                .get(&key.fingerprint())?
                .iter()
                .find(|u| u.tenant.as_deref() != tenant && u.scheme != key.scheme())?;
            Some(TenantMapError::SecretSharedAcrossTenants { first: other.named(), second: key_use(tenant, key) })
        })
    }

    /// Records `tenant`'s keys.
    pub(crate) fn add(&mut self, tenant: Option<&str>, keys: &KeySet) {
        let tenant: Option<Arc<str>> = tenant.map(Arc::from);
        for key in keys.keys() {
            let entry = Use { tenant: tenant.clone(), key_id: key.id.clone(), scheme: key.scheme() };
            self.uses.entry(key.fingerprint()).or_default().push(entry);
        }
    }

    /// Forgets `tenant`'s keys (before its policy is replaced).
    pub(crate) fn remove(&mut self, tenant: Option<&str>, keys: &KeySet) {
        for key in keys.keys() {
            let fingerprint = key.fingerprint();
            if let Some(uses) = self.uses.get_mut(&fingerprint) {
                uses.retain(|u| u.tenant.as_deref() != tenant);
                if uses.is_empty() {
                    self.uses.remove(&fingerprint);
                }
            }
        }
    }
}
