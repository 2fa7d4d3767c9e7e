//! [`HeadOnlyFuture`]: the full layer's future without its buffering state.
//! A request goes straight to `Inner` or `Done`, or through `Resolving` when
//! its provider must wait.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::{Request, Response};
use pin_project_lite::pin_project;
use tower_service::Service;

use crate::layer::future::{Pending, poll_lookup, taken};
use crate::provider::LookupFuture;

pin_project! {
    /// The response future of [`HeadOnlyVerification`](super::HeadOnlyVerification).
    pub struct HeadOnlyFuture<S, B>
    where
        S: Service<Request<B>>,
    {
        #[pin]
        state: State<S, B>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, B>
    where
        S: Service<Request<B>>,
    {
        Inner { #[pin] fut: S::Future },
        Resolving { lookup: LookupFuture, pending: Option<Box<Pending<S, Request<B>>>> },
        Done { response: Option<Response<Bytes>> },
    }
}

impl<S, B> HeadOnlyFuture<S, B>
where
    S: Service<Request<B>>,
{
    pub(crate) fn inner(fut: S::Future) -> Self {
        HeadOnlyFuture { state: State::Inner { fut } }
    }

    pub(crate) fn done(response: Response<Bytes>) -> Self {
        HeadOnlyFuture { state: State::Done { response: Some(response) } }
    }

    pub(crate) fn resolving(lookup: LookupFuture, pending: Pending<S, Request<B>>) -> Self {
        HeadOnlyFuture { state: State::Resolving { lookup, pending: Some(Box::new(pending)) } }
    }
}

impl<S, B> fmt::Debug for HeadOnlyFuture<S, B>
where
    S: Service<Request<B>>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HeadOnlyFuture")
    }
}

impl<S, B, ResBody> Future for HeadOnlyFuture<S, B>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
    ResBody: From<Bytes>,
{
    type Output = Result<Response<ResBody>, S::Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            let mut this = self.as_mut().project();
            let next = match this.state.as_mut().project() {
                StateProj::Inner { fut } => return fut.poll(cx),
                StateProj::Done { response } => return Poll::Ready(Ok(taken(response).map(ResBody::from))),
                StateProj::Resolving { lookup, pending } => match ready!(poll_lookup(lookup, pending, cx)) {
                    Ok(fut) => State::Inner { fut },
                    Err(response) => State::Done { response: Some(response) },
                },
            };
            this.state.set(next);
        }
    }
}
