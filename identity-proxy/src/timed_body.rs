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
    deadline: Option<tokio::time::Instant>,
    /// Created the first time the client makes us wait.
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
    timed_out: BodyTimedOut,
    /// Headers the client may not send, in trailers either.
    forward: Arc<ForwardHeaders>,
}

impl TimedBody {
    /// `inner` with `timeout` from now (`None`: no deadline); `timed_out` is
    /// set when it passes. Trailers named like one of `forward` (in any
    /// spelling) are removed.
    pub fn new(
        inner: Incoming,
        timeout: Option<Duration>,
        timed_out: BodyTimedOut,
        forward: Arc<ForwardHeaders>,
    ) -> TimedBody {
        let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
        TimedBody { inner, deadline, sleep: None, timed_out, forward }
    }

    /// `frame` with the forwarded identity headers removed from its trailers.
    fn strip(&self, frame: Frame<Bytes>) -> Frame<Bytes> {
        match frame.into_trailers() {
            Ok(mut trailers) => {
                self.forward.strip(&mut trailers);
                Frame::trailers(trailers)
            }
            Err(frame) => frame,
        }
    }
}

impl Body for TimedBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = &mut *self;
        if this.timed_out.get() {
            return Poll::Ready(None);
        }
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map(|f| this.strip(f)).map_err(BodyError::Client)));
        }
        let Some(deadline) = this.deadline else { return Poll::Pending };
        ready!(this.sleep.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline))).as_mut().poll(cx));
        this.timed_out.0.store(true, Ordering::Relaxed);
        Poll::Ready(Some(Err(BodyError::Deadline)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
