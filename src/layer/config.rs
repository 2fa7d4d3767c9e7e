//! The layer's configuration, shared by every service it builds.

use std::sync::Arc;

use crate::clock::Clock;
use crate::extract::{RequestPredicate, Sources};
use crate::layer::collect::BodyBudget;
use crate::layer::forward::ForwardHeaders;
use crate::layer::reject::Responder;
use crate::mode::Mode;
use crate::provider::{Lookup, SecretProvider, TenantMap, TenantPolicy};
use crate::verify::VerifyOptions;

/// Everything a builder set, behind one `Arc`.
#[derive(Clone)]
pub(crate) struct Config {
    pub(crate) provider: Policies,
    pub(crate) mode: Mode,
    pub(crate) sources: Sources,
    pub(crate) options: VerifyOptions,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) responder: Arc<dyn Responder>,
    pub(crate) min_secret_len: usize,
    pub(crate) forward: Option<ForwardHeaders>,
    pub(crate) strip_credentials: bool,
    pub(crate) log_identifiers: bool,
    pub(crate) bypass: Option<RequestPredicate>,
    /// Whether CORS preflights pass as anonymous (`pass_cors_preflight`).
    pub(crate) pass_cors_preflight: bool,
    /// Bytes of bodies buffered at once, shared by every service of the layer.
    pub(crate) body_budget: Arc<BodyBudget>,
    /// Metric handles registered on first use (feature `metrics`).
    pub(crate) metrics: crate::metrics::Handles,
}

/// Where the layer finds a tenant's policy. The static providers (a
/// [`KeySet`](crate::KeySet), a [`TenantPolicy`], a [`TenantMap`]) are kept
/// as themselves, so that the hot path borrows their policies: no reference
/// count is touched, no `dyn` call made and no panic guard needed, since the
/// crate's own lookups cannot panic. Any other provider is asked through
/// [`SecretProvider::lookup`].
#[derive(Clone)]
pub(crate) enum Policies {
    /// One policy for every request, whatever tenant it names.
    Fixed(TenantPolicy),
    /// A static map of tenants (shared: builder calls clone the configuration).
    Map(Arc<TenantMap>),
    /// Any other provider.
    Provider(Arc<dyn SecretProvider>),
}

/// A policy found without waiting: borrowed from a static provider, or owned
/// from a provider's answer.
pub(crate) enum Found<'a> {
    /// Borrowed from [`Policies::Fixed`] or [`Policies::Map`].
    Lent(Option<&'a TenantPolicy>),
    /// What [`SecretProvider::lookup`] answered.
    Asked(Lookup),
}

impl Policies {
    /// Keeps a static provider as itself (see [`Policies`]).
    pub(crate) fn of<P: SecretProvider>(provider: P) -> Policies {
        let any: Box<dyn std::any::Any> = Box::new(provider);
        let any = match any.downcast::<crate::KeySet>() {
            Ok(keys) => return Policies::Fixed(TenantPolicy::new(*keys)),
            Err(other) => other,
        };
        let any = match any.downcast::<TenantPolicy>() {
            Ok(policy) => return Policies::Fixed(*policy),
            Err(other) => other,
        };
        match any.downcast::<TenantMap>() {
            Ok(map) => Policies::Map(Arc::new(*map)),
            Err(other) => match other.downcast::<P>() {
                Ok(provider) => Policies::Provider(Arc::new(*provider)),
                Err(_) => unreachable!("a box holds the type it was made of"),
            },
        }
    }

    /// The policy for `tenant` (see [`Found`]). A provider that panics is
    /// `Err`: the request is refused, never passed.
    pub(crate) fn find(&self, tenant: Option<&str>) -> Result<Found<'_>, ()> {
        match self {
            Policies::Fixed(policy) => Ok(Found::Lent(Some(policy))),
            Policies::Map(map) => Ok(Found::Lent(map.get(tenant))),
            Policies::Provider(provider) => {
                let lookup = || provider.lookup(tenant);
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(lookup)).map(Found::Asked).map_err(drop)
            }
        }
    }
}
