//! [`ResponseFuture`]: a named state machine, one helper per state. A request
//! that needs nothing awaited goes straight to `Inner` or `Done`; one whose
//! identity is in its body passes through `Buffering`, one whose provider
//! must wait through `Resolving`.

use std::fmt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use pin_project_lite::pin_project;
use tower_service::Service;

use super::body::{RequestBody, ResponseBody};
use super::collect::{Collect, Collected, Reservation};
use super::config::Config;
use super::verdict::{Resolved, apply, borrowed, decide, provider_panicked, refuse_tenant, reject, resolve};
use crate::code::ErrorCode;
use crate::extract::{BodyKind, Extracted, RequestHead};
use crate::provider::{LookupFuture, LookupResult};
use crate::verify::Failure;

/// A request waiting for its body or its tenant's policy, with the inner
/// service that will take it.
pub(crate) struct Pending<S, R> {
    pub(crate) inner: S,
    pub(crate) req: R,
    pub(crate) extracted: Extracted,
    pub(crate) config: Arc<Config>,
}

impl<S: Clone, R> Pending<S, R> {
    /// What a request needs once it must wait (for its body or its tenant's
    /// policy). `inner` was driven to readiness: keep that one for this
    /// request and leave a fresh clone in its place (tower's "be careful when
    /// cloning inner services").
    pub(crate) fn new(inner: &mut S, req: R, extracted: Extracted, config: &Arc<Config>) -> Self {
        Pending { inner: ready_inner(inner), req, extracted, config: config.clone() }
    }
}

/// The inner service `inner` was driven to readiness, taken for the request
/// that must wait, with a fresh clone left in its place.
pub(crate) fn ready_inner<S: Clone>(inner: &mut S) -> S {
    let clone = inner.clone();
    std::mem::replace(inner, clone)
}

/// A request (with its body wrapped for the inner service) waiting for its
/// tenant's policy, or for its body.
type Resolving<S, B> = Pending<S, Request<RequestBody<B>>>;

/// A request whose body is being buffered (boxed once: the future stays small).
struct Buffering<S, B> {
    body: Pin<Box<B>>,
    kind: BodyKind,
    collect: Collect,
    /// The body's share of the layer's budget, handed on with the body.
    reservation: Reservation,
    /// The request, its body empty until the buffered one takes its place.
    pending: Resolving<S, B>,
}

pin_project! {
    /// The response future of [`IdentityVerification`](super::IdentityVerification).
    pub struct ResponseFuture<S, B>
    where
        S: Service<Request<RequestBody<B>>>,
    {
        #[pin]
        state: State<S, B>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, B>
    where
        S: Service<Request<RequestBody<B>>>,
    {
        Inner { #[pin] fut: S::Future },
        Buffering { buffering: Option<Box<Buffering<S, B>>> },
        Resolving { lookup: LookupFuture, pending: Option<Box<Resolving<S, B>>> },
        Done { response: Option<Response<Bytes>> },
    }
}

impl<S, B> ResponseFuture<S, B>
where
    S: Service<Request<RequestBody<B>>>,
{
    pub(crate) fn inner(fut: S::Future) -> Self {
        ResponseFuture { state: State::Inner { fut } }
    }

    pub(crate) fn done(response: Response<Bytes>) -> Self {
        ResponseFuture { state: State::done(response) }
    }

    /// A request whose body is read before its claim is complete.
    pub(crate) fn buffering(body: B, kind: BodyKind, reservation: Reservation, pending: Resolving<S, B>) -> Self {
        // Allocated first, then written: the fields (a claim and a request
        // head, several hundred bytes) go straight into the box, not through
        // a copy on the stack.
        let buffering = Box::write(
            Box::new_uninit(),
            Buffering { body: Box::pin(body), kind, collect: Collect::default(), reservation, pending },
        );
        ResponseFuture { state: State::Buffering { buffering: Some(buffering) } }
    }

    pub(crate) fn resolving(lookup: LookupFuture, pending: Resolving<S, B>) -> Self {
        ResponseFuture { state: State::Resolving { lookup, pending: Some(Box::new(pending)) } }
    }
}

impl<S, B> State<S, B>
where
    S: Service<Request<RequestBody<B>>>,
{
    fn done(response: Response<Bytes>) -> Self {
        State::Done { response: Some(response) }
    }
}

impl<S, B> fmt::Debug for ResponseFuture<S, B>
where
    S: Service<Request<RequestBody<B>>>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ResponseFuture")
    }
}

impl<S, B, ResBody> ResponseFuture<S, B>
where
    S: Service<Request<RequestBody<B>>, Response = Response<ResBody>>,
    B: Body,
{
    /// Drives the request to its answer, whose body is made by `inner` from
    /// the inner service's body or by `full` from a rejection's bytes. Each
    /// future that answers with its own body type calls it with its own
    /// functions: no answer is built twice.
    #[inline]
    pub(crate) fn poll_answer<R>(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        inner: impl FnOnce(ResBody) -> R,
        full: impl FnOnce(Bytes) -> R,
    ) -> Poll<Result<Response<R>, S::Error>> {
        loop {
            let mut this = self.as_mut().project();
            let next = match this.state.as_mut().project() {
                StateProj::Inner { fut } => return fut.poll(cx).map_ok(|res| res.map(inner)),
                StateProj::Done { response } => return Poll::Ready(Ok(taken(response).map(full))),
                StateProj::Buffering { buffering } => ready!(poll_buffering(buffering, cx)),
                StateProj::Resolving { lookup, pending } => ready!(poll_resolving(lookup, pending, cx)),
            };
            this.state.set(next);
        }
    }
}

impl<S, B, ResBody> Future for ResponseFuture<S, B>
where
    S: Service<Request<RequestBody<B>>, Response = Response<ResBody>>,
    B: Body,
{
    type Output = Result<Response<ResponseBody<ResBody>>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.poll_answer(cx, ResponseBody::inner, ResponseBody::full)
    }
}

/// The value a state holds until it moves on; taken exactly once, since a
/// state that gave it up is replaced before the next poll.
pub(crate) fn taken<T>(slot: &mut Option<T>) -> T {
    slot.take().expect("response future polled after completion")
}

/// Reads the body, then adds the roles it carries and resolves the tenant.
/// The buffered request stays in its box (a claim and a request head are
/// several hundred bytes): its body is set in place, and the request moves
/// out only into the inner service's call.
#[inline]
fn poll_buffering<S, B>(slot: &mut Option<Box<Buffering<S, B>>>, cx: &mut Context<'_>) -> Poll<State<S, B>>
where
    S: Service<Request<RequestBody<B>>>,
    B: Body,
{
    let buffering = slot.as_mut().expect("response future polled after completion");
    let collected = ready!(buffering.collect.poll(buffering.body.as_mut(), &buffering.reservation, cx));
    let mut buffering = taken(slot);
    let Pending { req, extracted, config, .. } = &mut buffering.pending;
    *req.body_mut() = match collected {
        Collected::Failed => {
            tracing::debug!("identity: the request body failed while being read");
            return Poll::Ready(State::done(reject(config, &RequestHead::of(req), ErrorCode::BodyUnreadable)));
        }
        Collected::OverLimit(read) => {
            extracted.fail(Failure::BodyTooLarge);
            RequestBody::replay(read, buffering.body, buffering.reservation)
        }
        Collected::Whole { bytes, trailers } => {
            extracted.add_body(&config.sources, buffering.kind, &bytes);
            if let Some(failure) = extracted.tenant_error() {
                return Poll::Ready(State::done(refuse_tenant(config, &RequestHead::of(req), failure)));
            }
            RequestBody::reserved(bytes, trailers, buffering.reservation)
        }
    };
    Poll::Ready(match resolve(config, req, extracted) {
        Resolved::Forward => State::Inner { fut: buffering.pending.inner.call(buffering.pending.req) },
        Resolved::Reject(res) => State::done(res),
        Resolved::Later(lookup) => State::Resolving { lookup, pending: Some(Box::new(buffering.pending)) },
    })
}

/// Waits for the provider, then decides and applies the verdict.
fn poll_resolving<S, B>(
    lookup: &mut LookupFuture,
    slot: &mut Option<Box<Resolving<S, B>>>,
    cx: &mut Context<'_>,
) -> Poll<State<S, B>>
where
    S: Service<Request<RequestBody<B>>>,
{
    Poll::Ready(match ready!(poll_lookup(lookup, slot, cx)) {
        Ok(fut) => State::Inner { fut },
        Err(res) => State::done(res),
    })
}

/// Waits for the provider, then decides and applies the verdict: the inner
/// service's future, or the rejection to answer. Shared by every service's
/// future, whatever body type its inner service takes.
pub(crate) fn poll_lookup<S, R>(
    lookup: &mut LookupFuture,
    slot: &mut Option<Box<Pending<S, Request<R>>>>,
    cx: &mut Context<'_>,
) -> Poll<Result<S::Future, Response<Bytes>>>
where
    S: Service<Request<R>>,
{
    // A panicking provider is a refused request, never a pass and never a dead connection.
    let polled = std::panic::catch_unwind(AssertUnwindSafe(|| lookup.as_mut().poll(cx)));
    let result: Option<LookupResult> = match polled {
        Ok(Poll::Pending) => return Poll::Pending,
        Ok(Poll::Ready(result)) => Some(result),
        Err(_) => None,
    };
    let Pending { mut inner, mut req, mut extracted, config } = *taken(slot);
    let Some(result) = result else {
        return Poll::Ready(Err(provider_panicked(&config, &RequestHead::of(&req))));
    };
    Poll::Ready(match apply(&config, &mut req, decide(&config, &mut extracted, borrowed(&result))) {
        None => Ok(inner.call(req)),
        Some(res) => Err(res),
    })
}
