//! One client connection and its deadlines. HTTP/2 pings bound a dead peer,
//! but an HTTP/2 client that answers pings and sends nothing would hold its
//! connection (and a file descriptor) forever. So each connection is also
//! closed when:
//!
//! - it has had no request in flight for `request_head` since it was opened
//!   or, over HTTP/1, since its last answer (a client that sends nothing, the
//!   HTTP/2 preface or a request head a byte at a time, a kept-alive
//!   connection left unused): dropped. This is HTTP/1's header read timeout,
//!   kept here rather than in hyper, which would arm and clear a timer for
//!   every request;
//! - it has had no request in flight for `idle`: closed gracefully;
//! - it is older than `max_age`: closed gracefully (HTTP/2 `GOAWAY`), its
//!   requests in flight given `grace` to finish;
//! - the server shuts down: closed gracefully.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use atomic_waker::AtomicWaker;
use http_body::{Body, Frame, SizeHint};
use hyper_util::server::graceful::GracefulConnection;
use tokio::sync::watch;
use tokio::time::Instant;

/// The deadlines of one connection (see the module's documentation).
#[derive(Debug, Clone, Copy)]
pub struct Deadlines {
    /// `header_read_timeout`.
    pub request_head: Duration,
    pub idle: Option<Duration>,
    pub max_age: Option<Duration>,
    pub grace: Duration,
}

/// The requests in flight on one connection, and since when it has had none.
pub struct Activity {
    /// Its requests are HTTP/2 streams: `request_head` bounds only the first.
    http2: AtomicBool,
    in_flight: AtomicUsize,
    idle_since: Mutex<Instant>,
}

impl Activity {
    pub fn new() -> Arc<Activity> {
        Arc::new(Activity {
            http2: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
            idle_since: Mutex::new(Instant::now()),
        })
    }

    /// A request (over HTTP/2 when `http2`) starts; it ends when the guard
    /// (kept until the response body is done) is dropped.
    pub fn begin(self: &Arc<Self>, http2: bool) -> InFlight {
        if http2 {
            self.http2.store(true, Ordering::Relaxed);
        }
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
    // Looked at again at least this often, so a deadline from a later idle
    // period is not missed.
    let mut wake = now + d.idle.map_or(d.request_head, |idle| idle.min(d.request_head));
    let idle_since = activity.idle_since();
    if let Some(since) = idle_since.filter(|_| !activity.http2.load(Ordering::Relaxed)) {
        if now >= since + d.request_head {
            return Next::Drop("no request within header_read_timeout");
        }
        wake = wake.min(since + d.request_head);
    }
    if let Some(max_age) = d.max_age {
        if now >= opened + max_age {
            return Next::Close("older than connections.max_age_secs");
        }
        wake = wake.min(opened + max_age);
    }
    if let (Some(idle), Some(since)) = (d.idle, idle_since) {
        if now >= since + idle {
            return Next::Close("idle for connections.idle_timeout_secs");
        }
        wake = wake.min(since + idle);
    }
    Next::Wait(wake)
}

/// What ended a wait of [`drive`].
enum Event<R> {
    /// The connection ended.
    Ended(R),
    /// The server is shutting down.
    Shutdown,
    /// A deadline may have passed.
    Wake,
}

/// Wakes the connection's task for the server's shutdown or a deadline, and
/// says so, so that the task polls those two only when one of them fired
/// (not on every read and write of the connection).
#[derive(Default)]
struct Alarm {
    rang: AtomicBool,
    task: AtomicWaker,
}

impl Wake for Alarm {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.rang.store(true, Ordering::Release);
        self.task.wake();
    }
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
    let alarm = Arc::new(Alarm::default());
    let alarm_waker = Waker::from(alarm.clone());
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
        let mut sleep = std::pin::pin!(tokio::time::sleep_until(wake));
        let mut changed = std::pin::pin!(shutdown.changed());
        // New futures: polled once to register the alarm.
        alarm.rang.store(true, Ordering::Release);
        let event = std::future::poll_fn(|cx| {
            // Registered before the alarm is read, so that no ring is missed.
            alarm.task.register(cx.waker());
            if alarm.rang.swap(false, Ordering::AcqRel) {
                let mut rung = Context::from_waker(&alarm_waker);
                // The server's shutdown has its own grace period.
                if closing.is_none() && changed.as_mut().poll(&mut rung).is_ready() {
                    return Poll::Ready(Event::Shutdown);
                }
                if sleep.as_mut().poll(&mut rung).is_ready() {
                    return Poll::Ready(Event::Wake);
                }
            }
            conn.as_mut().poll(cx).map(Event::Ended)
        })
        .await;
        match event {
            Event::Ended(result) => {
                if let Err(error) = result {
                    tracing::debug!(%error, "connection ended with an error");
                }
                return;
            }
            Event::Shutdown => {
                conn.as_mut().graceful_shutdown();
                closing = Some(Instant::now() + d.grace);
            }
            Event::Wake => {}
        }
    }
}
