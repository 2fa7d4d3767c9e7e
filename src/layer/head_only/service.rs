//! [`HeadOnlyVerification`]: the tower [`Service`] of a [`HeadOnlyLayer`](super::HeadOnlyLayer).

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use tower_service::Service;

use super::future::HeadOnlyFuture;
use crate::extract::RequestHead;
use crate::layer::config::Config;
use crate::layer::future::Pending;
use crate::layer::service::{Admission, admit, extract_head};
use crate::layer::verdict::{Resolved, refuse_tenant, resolve};

/// The service built by [`HeadOnlyLayer`](super::HeadOnlyLayer).
///
/// The inner service receives `Request<B>` as it came and the layer answers
/// `Response<ResBody>`, the inner service's own types; its error type is the
/// inner service's.
#[derive(Clone)]
pub struct HeadOnlyVerification<S> {
    inner: S,
    config: Arc<Config>,
}

impl<S> HeadOnlyVerification<S> {
    pub(crate) fn new(inner: S, config: Arc<Config>) -> Self {
        HeadOnlyVerification { inner, config }
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

impl<S: fmt::Debug> fmt::Debug for HeadOnlyVerification<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HeadOnlyVerification").field("inner", &self.inner).finish_non_exhaustive()
    }
}

impl<S, B, ResBody> Service<Request<B>> for HeadOnlyVerification<S>
where
    S: Service<Request<B>, Response = Response<ResBody>> + Clone,
    ResBody: From<Bytes>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = HeadOnlyFuture<S, B>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let config = &*self.config;
        if let Admission::Pass = admit(config, &mut req) {
            return HeadOnlyFuture::inner(self.inner.call(req));
        }
        let mut extracted = extract_head(config, &mut req);
        if let Some(failure) = extracted.tenant_error() {
            return HeadOnlyFuture::done(refuse_tenant(config, &RequestHead::of(&req), failure));
        }
        match resolve(config, &mut req, &mut extracted) {
            Resolved::Forward => HeadOnlyFuture::inner(self.inner.call(req)),
            Resolved::Reject(res) => HeadOnlyFuture::done(res),
            Resolved::Later(lookup) => {
                HeadOnlyFuture::resolving(lookup, Pending::new(&mut self.inner, req, extracted, &self.config))
            }
        }
    }
}
