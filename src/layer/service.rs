//! [`IdentityVerification`]: the tower [`Service`]. `call` strips, extracts
//! and resolves; what must wait (a body, a provider) continues in the
//! [`ResponseFuture`].

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use http_body::Body;
use tower_service::Service;

use super::body::{RequestBody, ResponseBody};
use super::collect::precheck;
use super::config::Config;
use super::future::{Pending, ResponseFuture, ready_inner};
use super::verdict::{Resolved, Verdict, apply, overloaded, refuse_tenant, resolve};
use crate::extract::{Extracted, RequestHead, mark_credentials, strip_credentials};

/// The service built by [`IdentityVerificationLayer`](super::IdentityVerificationLayer).
///
/// The inner service receives `Request<RequestBody<B>>` and the layer answers
/// `Response<ResponseBody<ResBody>>`; its error type is the inner service's.
#[derive(Clone)]
pub struct IdentityVerification<S> {
    inner: S,
    config: Arc<Config>,
}

impl<S> IdentityVerification<S> {
    pub(crate) fn new(inner: S, config: Arc<Config>) -> Self {
        IdentityVerification { inner, config }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: fmt::Debug> fmt::Debug for IdentityVerification<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdentityVerification").field("inner", &self.inner).finish_non_exhaustive()
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for IdentityVerification<S>
where
    S: Service<Request<RequestBody<ReqBody>>, Response = Response<ResBody>> + Clone,
    ReqBody: Body,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S, ReqBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        let config = &*self.config;
        if let Admission::Pass = admit(config, &mut req) {
            return ResponseFuture::inner(self.inner.call(req.map(RequestBody::new)));
        }
        let mut extracted = extract_head(config, &mut req);
        if let Some(failure) = extracted.tenant_error() {
            return ResponseFuture::done(refuse_tenant(config, &RequestHead::of(&req), failure));
        }
        // gRPC bodies are never read (`body_kind` is `None` for them).
        if let Some(kind) = config.sources.body_kind(&RequestHead::of(&req), &extracted.body) {
            match precheck(&extracted.body, config.sources.get_body_limit()) {
                Err(failure) => extracted.fail(failure),
                Ok(most) => {
                    let Some(reservation) = config.body_budget.reserve(most) else {
                        return ResponseFuture::done(overloaded(config, &RequestHead::of(&req)));
                    };
                    // The clone first: nothing large is held (copied) across the call.
                    let inner = ready_inner(&mut self.inner);
                    let (parts, body) = req.into_parts();
                    let req = Request::from_parts(parts, RequestBody::empty());
                    let pending = Pending { inner, req, extracted, config: self.config.clone() };
                    return ResponseFuture::buffering(body, kind, reservation, pending);
                }
            }
        }
        let mut req = req.map(RequestBody::new);
        match resolve(config, &mut req, &mut extracted) {
            Resolved::Forward => ResponseFuture::inner(self.inner.call(req)),
            Resolved::Reject(res) => ResponseFuture::done(res),
            Resolved::Later(lookup) => ResponseFuture::resolving(lookup, self.pending(req, extracted)),
        }
    }
}

/// What the head of a request decides before any verification.
pub(crate) enum Admission {
    /// Pass unverified: bypassed, or a CORS preflight let through (already
    /// guarded and marked).
    Pass,
    /// Verify: extract the claim ([`extract_head`]).
    Check,
}

/// The first step of every request, whatever the service: bypass, then CORS
/// preflight.
pub(crate) fn admit<B>(config: &Config, req: &mut Request<B>) -> Admission {
    if config.bypass.as_ref().is_some_and(|bypass| bypass(&RequestHead::of(req))) {
        guard_bypassed(config, req);
        return Admission::Pass;
    }
    if config.pass_cors_preflight && crate::cors::is_preflight(req.method(), req.headers()) {
        pass_preflight(config, req);
        return Admission::Pass;
    }
    Admission::Check
}

/// The claim in the request head. Its tenant is checked by the caller
/// ([`Extracted::tenant_error`]): returned in a `Result`, the claim (about
/// 300 bytes) would be copied on every request.
pub(crate) fn extract_head<B>(config: &Config, req: &mut Request<B>) -> Extracted {
    Extracted::from_head(&config.sources, config.options.get_max_identifier_len(), req)
}

/// A bypassed request is not verified, but its credentials are still guarded
/// (flagged sensitive, or stripped) and no identity is claimed on the layer's
/// behalf (forwarded identity headers are removed).
fn guard_bypassed<B>(config: &Config, req: &mut http::Request<B>) {
    mark_credentials(&config.sources, req.headers_mut());
    strip_credentials(&config.sources, config.strip_credentials, req);
    if let Some(forward) = &config.forward {
        forward.strip(req.headers_mut());
    }
}

/// A CORS preflight let through (`pass_cors_preflight`): anonymous, whatever
/// it carries, with credentials guarded as on every passed request.
fn pass_preflight<B>(config: &Config, req: &mut Request<B>) {
    mark_credentials(&config.sources, req.headers_mut());
    tracing::debug!(outcome = "anonymous", "identity: CORS preflight passed unverified");
    let rejected = apply(config, req, Verdict::Anonymous);
    debug_assert!(rejected.is_none(), "an anonymous verdict is always forwarded");
}

impl<S: Clone> IdentityVerification<S> {
    /// What a request needs once it must wait (for its body or its tenant's
    /// policy). The inner service was driven to readiness: keep that one for
    /// this request and leave a fresh clone in its place (tower's "be careful
    /// when cloning inner services").
    fn pending<R>(&mut self, req: R, extracted: Extracted) -> Pending<S, R> {
        Pending::new(&mut self.inner, req, extracted, &self.config)
    }
}

#[cfg(feature = "tonic")]
#[cfg_attr(docsrs, doc(cfg(feature = "tonic")))]
impl<S: tonic::server::NamedService> tonic::server::NamedService for IdentityVerification<S> {
    const NAME: &'static str = S::NAME;
}
