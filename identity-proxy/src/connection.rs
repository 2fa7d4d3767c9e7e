//! One client connection and its deadlines. hyper bounds the headers of an
//! HTTP/1 request and HTTP/2 pings bound a dead peer, but an HTTP/2 client
//! that answers pings and sends nothing would hold its connection (and a
//! file descriptor) forever. So each connection is also closed when:
//!
//! - its first request has not started by `first_request` (a client that
//!   sends nothing, or the HTTP/2 preface a byte at a time): dropped;
//! - it has had no request in flight for `idle`: closed gracefully;
//! - it is older than `max_age`: closed gracefully (HTTP/2 `GOAWAY`), its
//!   requests in flight given `grace` to finish;
//! - the server shuts down: closed gracefully.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use http_body::{Body, Frame, SizeHint};
use hyper_util::server::graceful::GracefulConnection;
use tokio::sync::watch;
use tokio::time::Instant;

/// The deadlines of one connection (see the module's documentation).
#[derive(Debug, Clone, Copy)]
pub struct Deadlines {
    pub first_request: Duration,
    pub idle: Option<Duration>,
    pub max_age: Option<Duration>,
    pub grace: Duration,
}

/// The requests in flight on one connection, and since when it has had none.
pub struct Activity {
    started: AtomicBool,
    in_flight: AtomicUsize,
    idle_since: Mutex<Instant>,
}

impl Activity {
    pub fn new() -> Arc<Activity> {
        Arc::new(Activity {
            started: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
            idle_since: Mutex::new(Instant::now()),
        })
    }

    /// A request starts; it ends when the guard (kept until the response
    /// body is done) is dropped.
    pub fn begin(self: &Arc<Self>) -> InFlight {
        self.started.store(true, Ordering::Relaxed);
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        InFlight(self.clone())
    }

    /// When the connection became idle, or `None` while a request is in flight.
    fn idle_since(&self) -> Option<Instant> {
        let since = *self.idle_since.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        (self.in_flight.load(Ordering::SeqCst) == 0).then_some(since)
    }
}

/// One request in flight on a connection.
pub struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut since = self.0.idle_since.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if self.0.in_flight.fetch_sub(1, Ordering::SeqCst) == 1 {
            *since = Instant::now();
        }
    }
}

/// A response body that keeps its request in flight until it is done (or
/// dropped), with the inner body's size and end unchanged, so that hyper
/// still sends a `Content-Length` where it can.
pub struct Tracked<B> {
    inner: B,
    _in_flight: InFlight,
}

impl<B> Tracked<B> {
    pub fn new(inner: B, in_flight: InFlight) -> Tracked<B> {
        Tracked { inner, _in_flight: in_flight }
    }
}

impl<B: Body + Unpin> Body for Tracked<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// What the deadlines say at one instant.
enum Next {
    /// Look again then.
    Wait(Instant),
    /// Ask the connection to close once its requests finish.
    Close(&'static str),
    /// Drop it now.
    Drop(&'static str),
}

/// The deadlines of a connection opened at `opened`, at `now`.
fn next(d: &Deadlines, activity: &Activity, opened: Instant, closing: Option<Instant>, now: Instant) -> Next {
    if let Some(until) = closing {
        return if now >= until { Next::Drop("still busy after its grace period") } else { Next::Wait(until) };
    }
    let mut wake = now + d.idle.unwrap_or(d.first_request);
    if !activity.started.load(Ordering::Relaxed) {
        let deadline = opened + d.first_request;
        if now >= deadline {
            return Next::Drop("no request within header_read_timeout");
        }
        wake = wake.min(deadline);
    }
    if let Some(max_age) = d.max_age {
        if now >= opened + max_age {
            return Next::Close("older than connections.max_age_secs");
        }
        wake = wake.min(opened + max_age);
    }
    if let (Some(idle), Some(since)) = (d.idle, activity.idle_since()) {
        if now >= since + idle {
            return Next::Close("idle for connections.idle_timeout_secs");
        }
        wake = wake.min(since + idle);
    }
    Next::Wait(wake)
}

/// Drives `conn` to its end under its deadlines and the server's `shutdown`.
pub async fn drive<C>(conn: C, activity: Arc<Activity>, d: Deadlines, mut shutdown: watch::Receiver<()>)
where
    C: GracefulConnection,
    C::Error: std::fmt::Display,
{
    let mut conn = std::pin::pin!(conn);
    let opened = Instant::now();
    let mut closing: Option<Instant> = None;
    loop {
        let wake = match next(&d, &activity, opened, closing, Instant::now()) {
            Next::Wait(at) => at,
            Next::Drop(why) => return tracing::debug!(why, "closing the connection"),
            Next::Close(why) => {
                tracing::debug!(why, "closing the connection gracefully");
                conn.as_mut().graceful_shutdown();
                closing = Some(Instant::now() + d.grace);
                continue;
            }
        };
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(error) = result {
                    tracing::debug!(%error, "connection ended with an error");
                }
                return;
            }
            // The server's shutdown has its own grace period.
            _ = shutdown.changed(), if closing.is_none() => {
                conn.as_mut().graceful_shutdown();
                closing = Some(Instant::now() + d.grace);
            }
            () = tokio::time::sleep_until(wake) => {}
        }
    }
}
