//! A layer whose services answer with the inner service's own response body
//! type: [`KeepResponseBodyLayer`], built by
//! [`IdentityVerificationLayer::keep_response_body`](super::IdentityVerificationLayer::keep_response_body).
//!
//! [`IdentityVerification`] answers `Response<`[`ResponseBody<ResBody>`](super::ResponseBody)`>`,
//! which works over any body (hyper's `Incoming` has no way to hold a
//! rejection). A framework that keeps one response body type (axum's `Body`)
//! boxes that wrapper again, one allocation per request. When the inner
//! service's body can be made from bytes (`ResBody: From<Bytes>`, as axum's
//! `Body` and `Full<Bytes>` can), [`KeepResponseBody`] hands on the inner
//! service's body as it came and makes rejections with `ResBody::from`.
//! Everything else is the full layer's: body sources, limits, budget,
//! modes, tenants, providers, forwarded headers. Without body sources,
//! [`head_only`](super::IdentityVerificationLayer::head_only) keeps the
//! request body type too.
//!
//! ```
//! use axum::{Router, routing::post};
//! use tower_identity::{Identifier, IdentityVerificationLayer, Key, KeySet, Role, Secret, Sources};
//!
//! let keys = KeySet::single(Key::hmac(Identifier::UserId, Secret::text("a-long-random-secret-from-the-vendor").unwrap()));
//! let sources = Sources::new().json(Role::UserId, "/user_id").json(Role::Signature, "/user_hash");
//! let layer = IdentityVerificationLayer::new(keys).sources(sources).keep_response_body();
//! let app: Router = Router::new().route("/messages", post(|| async { "ok" })).route_layer(layer);
//! # let _ = app;
//! ```

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use super::body::RequestBody;
use super::future::ResponseFuture;
use super::{IdentityVerification, IdentityVerificationLayer};

/// [`IdentityVerificationLayer`] whose services answer with the inner
/// service's response body type (see the [module docs](self)).
#[derive(Clone)]
#[must_use]
pub struct KeepResponseBodyLayer {
    layer: IdentityVerificationLayer,
}

impl KeepResponseBodyLayer {
    pub(crate) fn new(layer: IdentityVerificationLayer) -> Self {
        KeepResponseBodyLayer { layer }
    }
}

impl fmt::Debug for KeepResponseBodyLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeepResponseBodyLayer").field("layer", &self.layer).finish()
    }
}

impl<S> Layer<S> for KeepResponseBodyLayer {
    type Service = KeepResponseBody<S>;

    fn layer(&self, inner: S) -> Self::Service {
        KeepResponseBody { inner: self.layer.layer(inner) }
    }
}

/// The service built by [`KeepResponseBodyLayer`]: [`IdentityVerification`]
/// answering `Response<ResBody>`, the inner service's own response type.
///
/// The inner service receives `Request<`[`RequestBody<B>`]`>`, as from the
/// full layer; its error type is the inner service's.
#[derive(Clone)]
pub struct KeepResponseBody<S> {
    inner: IdentityVerification<S>,
}

impl<S> KeepResponseBody<S> {
    /// The inner service.
    pub fn get_ref(&self) -> &S {
        self.inner.get_ref()
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        self.inner.get_mut()
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner.into_inner()
    }
}

impl<S: fmt::Debug> fmt::Debug for KeepResponseBody<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeepResponseBody").field("inner", self.inner.get_ref()).finish_non_exhaustive()
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for KeepResponseBody<S>
where
    S: Service<Request<RequestBody<ReqBody>>, Response = Response<ResBody>> + Clone,
    ReqBody: Body,
    ResBody: From<Bytes>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = KeepResponseBodyFuture<S, ReqBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        KeepResponseBodyFuture { inner: self.inner.call(req) }
    }
}

pin_project! {
    /// The response future of [`KeepResponseBody`]: the full layer's
    /// [`ResponseFuture`], answering with the inner service's body type.
    pub struct KeepResponseBodyFuture<S, B>
    where
        S: Service<Request<RequestBody<B>>>,
    {
        #[pin]
        inner: ResponseFuture<S, B>,
    }
}

impl<S, B> fmt::Debug for KeepResponseBodyFuture<S, B>
where
    S: Service<Request<RequestBody<B>>>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeepResponseBodyFuture")
    }
}

impl<S, B, ResBody> Future for KeepResponseBodyFuture<S, B>
where
    S: Service<Request<RequestBody<B>>, Response = Response<ResBody>>,
    B: Body,
    ResBody: From<Bytes>,
{
    type Output = Result<Response<ResBody>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.project().inner.poll_answer(cx, |body| body, ResBody::from)
    }
}

#[cfg(feature = "tonic")]
#[cfg_attr(docsrs, doc(cfg(feature = "tonic")))]
impl<S: tonic::server::NamedService> tonic::server::NamedService for KeepResponseBody<S> {
    const NAME: &'static str = S::NAME;
}
