//! The request body's read deadline: slow bodies (one byte a second) cannot
//! hold the proxy, whether the identity layer buffers them or they stream to
//! the upstream. Its trailers lose the forwarded identity headers, as the
//! request's headers do in the identity layer.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use tower_identity::layer::ForwardHeaders;

/// Why a request body failed: the client's connection, or the body deadline.
#[derive(Debug)]
pub enum BodyError {
    Client(hyper::Error),
    Deadline,
}

impl std::fmt::Display for BodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BodyError::Client(error) => write!(f, "the request body failed: {error}"),
            BodyError::Deadline => f.write_str("the request body was not received in time"),
        }
    }
}

impl std::error::Error for BodyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            BodyError::Client(error) => Some(error),
            BodyError::Deadline => None,
        }
    }
}

/// Set (in the request's extensions) when the body missed its deadline, so
/// that the body error it caused is answered 408 instead of 400 or 502.
#[derive(Clone, Default)]
pub struct BodyTimedOut(Arc<AtomicBool>);

impl BodyTimedOut {
    /// Whether the body missed its deadline.
    pub fn get(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// A client's request body that fails with [`BodyError::Deadline`] when it
/// has not fully arrived by its deadline. Only waiting for the client counts:
/// a body whose bytes are all here is handed on whatever the time.
pub struct TimedBody {
    inner: Incoming,
    /// Headers the client may not send, in trailers either (`None` for a
    /// body complete when it arrived: it has no trailers).
    forward: Option<Arc<ForwardHeaders>>,
    /// `None`: no deadline, or nothing to wait for.
    deadline: Option<Deadline>,
}

struct Deadline {
    at: tokio::time::Instant,
    /// Created the first time the client makes us wait.
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
    timed_out: BodyTimedOut,
}

impl TimedBody {
    /// `inner` with `timeout` from now (`None`: no deadline), and the flag
    /// set when it passes. A body already complete when it arrives (a `GET`)
    /// has nothing to wait for: no deadline and no flag. Trailers named like
    /// one of `forward` (in any spelling) are removed.
    pub fn new(
        inner: Incoming,
        timeout: Option<Duration>,
        forward: &Arc<ForwardHeaders>,
    ) -> (TimedBody, Option<BodyTimedOut>) {
        if inner.is_end_stream() {
            return (TimedBody { inner, forward: None, deadline: None }, None);
        }
        let deadline = timeout.map(|t| Deadline {
            at: tokio::time::Instant::now() + t,
            sleep: None,
            timed_out: BodyTimedOut::default(),
        });
        let timed_out = deadline.as_ref().map(|d| d.timed_out.clone());
        (TimedBody { inner, forward: Some(forward.clone()), deadline }, timed_out)
    }

    /// `frame` with the forwarded identity headers removed from its trailers.
    fn strip(&self, frame: Frame<Bytes>) -> Frame<Bytes> {
        match (frame.into_trailers(), &self.forward) {
            (Ok(mut trailers), Some(forward)) => {
                forward.strip(&mut trailers);
                Frame::trailers(trailers)
            }
            (Ok(trailers), None) => Frame::trailers(trailers),
            (Err(frame), _) => frame,
        }
    }
}

impl Body for TimedBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = &mut *self;
        if this.deadline.as_ref().is_some_and(|d| d.timed_out.get()) {
            return Poll::Ready(None);
        }
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map(|f| this.strip(f)).map_err(BodyError::Client)));
        }
        let Some(d) = &mut this.deadline else { return Poll::Pending };
        ready!(d.sleep.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(d.at))).as_mut().poll(cx));
        d.timed_out.0.store(true, Ordering::Relaxed);
        Poll::Ready(Some(Err(BodyError::Deadline)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
