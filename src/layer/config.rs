//! The layer's configuration, shared by every service it builds.

use std::sync::Arc;

use crate::clock::Clock;
use crate::extract::{RequestPredicate, Sources};
use crate::layer::collect::BodyBudget;
use crate::layer::forward::ForwardHeaders;
use crate::layer::reject::Responder;
use crate::mode::Mode;
use crate::provider::SecretProvider;
use crate::verify::VerifyOptions;

/// Everything a builder set, behind one `Arc`.
#[derive(Clone)]
pub(crate) struct Config {
    pub(crate) provider: Arc<dyn SecretProvider>,
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
