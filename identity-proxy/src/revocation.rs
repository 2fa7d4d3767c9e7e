//! When a long-lived connection (a WebSocket tunnel, a server-sent events
//! stream) must end: its credential expired, its key was removed or rotated
//! out, or it reached `max_connection_lifetime`.
//!
//! A request is verified once, but a tunnel lives on. Each one carries a
//! [`Watch`]: a deadline at the credential's `valid_until` (the JWT's `exp`,
//! the timestamped signature's `max_age`, the key's `not_after`) or the
//! lifetime bound, whichever comes first, and a re-verification of the
//! original request head through the same identity layer whenever keys are
//! reloaded (SIGHUP, a changed file) and, when tenants live in PostgreSQL,
//! every `revalidate_secs` (a `NOTIFY` drops the cached keys, and the next
//! re-verification reads the new ones).

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, Uri};
use http_body::{Body, Frame, SizeHint};
use http_body_util::Empty;
use tokio::sync::{oneshot, watch};
use tokio::time::Instant;
use tower::{Service, ServiceExt};
use tower_identity::layer::body::RequestBody;
use tower_identity::{IdentityVerification, VerifiedIdentity};

use crate::live::Current;

/// The `[tunnels]` settings, checked.
#[derive(Clone, Debug)]
pub struct TunnelSettings {
    /// Upper bound on every tunnel and event stream.
    pub max_lifetime: Option<Duration>,
    /// Periodic re-verification (used when tenants live in PostgreSQL).
    pub revalidate: Option<Duration>,
}

/// Why the proxy closed a long-lived connection (a metric label: a fixed set).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseReason {
    /// The credential's `valid_until` passed.
    Expired,
    /// Verifying the request again failed: its key was removed or rotated out.
    Revoked,
    /// `max_connection_lifetime` was reached.
    Lifetime,
    /// The secret provider failed while verifying again (fail closed).
    Unavailable,
}

impl CloseReason {
    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::Expired => "expired",
            CloseReason::Revoked => "revoked",
            CloseReason::Lifetime => "lifetime",
            CloseReason::Unavailable => "unavailable",
        }
    }
}

/// The inner service of the re-verification: answers 200, carrying the
/// fresh identity's `valid_until` (a reload may have moved the key's `not_after`).
#[derive(Clone)]
pub struct Probe;

#[derive(Clone, Copy)]
struct ValidUntil(Option<u64>);

impl Service<Request<RequestBody<Empty<Bytes>>>> for Probe {
    type Response = Response<Empty<Bytes>>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<RequestBody<Empty<Bytes>>>) -> Self::Future {
        let until = req.extensions().get::<VerifiedIdentity>().and_then(VerifiedIdentity::valid_until);
        let mut res = Response::new(Empty::new());
        res.extensions_mut().insert(ValidUntil(until));
        std::future::ready(Ok(res))
    }
}

/// What every watch shares: the current configuration (whose identity layer
/// re-verifies), the reload signal and the settings.
pub struct Revalidator {
    current: Current,
    reloads: watch::Receiver<u64>,
    /// Periodic re-verification (tenants in PostgreSQL).
    every: Option<Duration>,
    max_lifetime: Option<Duration>,
}

impl Revalidator {
    /// Re-verifies with the identity layer of `current` as it is at each
    /// re-verification (a reload replaces it: the layer built at start-up
    /// would still accept a removed key); `reloads` changes on every reload.
    pub fn new(
        current: Current,
        reloads: watch::Receiver<u64>,
        settings: &TunnelSettings,
        periodic: bool,
    ) -> Arc<Revalidator> {
        Arc::new(Revalidator {
            current,
            reloads,
            every: settings.revalidate.filter(|_| periodic),
            max_lifetime: settings.max_lifetime,
        })
    }

    /// A watch over the connection opened by the request `head` (after the
    /// hop-by-hop headers were removed, credentials still in place), which
    /// verified as `identity`.
    pub fn watch(self: &Arc<Self>, head: Head, identity: Option<&VerifiedIdentity>) -> Watch {
        let mut reloads = self.reloads.clone();
        reloads.mark_unchanged();
        Watch {
            head,
            valid_until: identity.and_then(VerifiedIdentity::valid_until),
            opened: Instant::now(),
            reloads: Some(reloads),
            shared: self.clone(),
        }
    }
}

/// The part of a request needed to verify it again.
#[derive(Clone)]
pub struct Head {
    pub method: Method,
    pub uri: Uri,
    pub headers: HeaderMap,
}

impl Head {
    pub fn of<B>(req: &Request<B>) -> Head {
        Head { method: req.method().clone(), uri: req.uri().clone(), headers: req.headers().clone() }
    }
}

/// One connection's watch: resolves when the connection must close.
pub struct Watch {
    head: Head,
    valid_until: Option<u64>,
    opened: Instant,
    /// `None` once the reload loop is gone (shutting down): only deadlines remain.
    reloads: Option<watch::Receiver<u64>>,
    shared: Arc<Revalidator>,
}

/// The instant (on tokio's clock) of a unix time in seconds.
fn instant_of(unix_secs: u64) -> Instant {
    let at = UNIX_EPOCH + Duration::from_secs(unix_secs);
    Instant::now() + at.duration_since(SystemTime::now()).unwrap_or(Duration::ZERO)
}

impl Watch {
    /// The next deadline and what it means.
    fn deadline(&self) -> Option<(Instant, CloseReason)> {
        let expiry = self.valid_until.map(|t| (instant_of(t), CloseReason::Expired));
        let lifetime = self.shared.max_lifetime.map(|l| (self.opened + l, CloseReason::Lifetime));
        [expiry, lifetime].into_iter().flatten().min_by_key(|(at, _)| *at)
    }

    /// Waits until the connection must close, and says why.
    pub async fn closed(&mut self) -> CloseReason {
        let mut tick = self.shared.every.map(|every| tokio::time::interval_at(Instant::now() + every, every));
        loop {
            let deadline = self.deadline();
            let recheck = tokio::select! {
                () = sleep_until(deadline.map(|(at, _)| at)) => {
                    return deadline.map_or(CloseReason::Lifetime, |(_, reason)| reason);
                }
                changed = changed(&mut self.reloads) => changed,
                _ = async { match tick.as_mut() { Some(t) => t.tick().await, None => std::future::pending().await } } => true,
            };
            if recheck && let Some(reason) = self.recheck().await {
                return reason;
            }
        }
    }

    /// Verifies the request head again; `Some` when the connection must close.
    async fn recheck(&mut self) -> Option<CloseReason> {
        let mut req = Request::new(Empty::<Bytes>::new());
        *req.method_mut() = self.head.method.clone();
        *req.uri_mut() = self.head.uri.clone();
        *req.headers_mut() = self.head.headers.clone();
        let probe: IdentityVerification<Probe> = tower::Layer::layer(&self.shared.current.load().layer, Probe);
        let Ok(res) = probe.oneshot(req).await;
        if res.status().is_success() {
            self.valid_until = res.extensions().get::<ValidUntil>().and_then(|v| v.0);
            return None;
        }
        Some(if res.status().is_server_error() { CloseReason::Unavailable } else { CloseReason::Revoked })
    }
}

/// Whether keys were reloaded; `false` (once) when the reload loop is gone.
async fn changed(reloads: &mut Option<watch::Receiver<u64>>) -> bool {
    let Some(rx) = reloads else { return std::future::pending().await };
    let alive = rx.changed().await.is_ok();
    if !alive {
        *reloads = None;
    }
    alive
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Counts an open connection (a gauge) while alive; records why it was closed.
pub struct Open(());

impl Open {
    pub fn new() -> Open {
        metrics::gauge!("identity_proxy_tunnels_open").increment(1.0);
        Open(())
    }

    /// Records that the proxy closed the connection, and why.
    pub fn closed_by(&self, reason: CloseReason) {
        metrics::counter!("identity_proxy_tunnels_closed_total", "reason" => reason.as_str()).increment(1);
        tracing::debug!(reason = reason.as_str(), "closing a long-lived connection");
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        metrics::gauge!("identity_proxy_tunnels_open").decrement(1.0);
    }
}

/// A long response body (a server-sent events stream) that ends cleanly when
/// its connection's [`Watch`] fires. The watch runs in its own task, which
/// ends when the body is dropped.
pub struct Closing<B> {
    inner: B,
    closed: Option<oneshot::Receiver<CloseReason>>,
    ended: bool,
    open: Open,
}

impl<B> Closing<B> {
    pub fn new(inner: B, mut watch: Watch) -> Closing<B> {
        let (mut tx, rx) = oneshot::channel();
        tokio::spawn(async move {
            tokio::select! {
                reason = watch.closed() => { let _ = tx.send(reason); }
                () = tx.closed() => {}
            }
        });
        Closing { inner, closed: Some(rx), ended: false, open: Open::new() }
    }
}

impl<B: Body + Unpin> Body for Closing<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let this = &mut *self;
        if this.ended {
            return Poll::Ready(None);
        }
        if let Some(closed) = &mut this.closed
            && let Poll::Ready(reason) = Pin::new(closed).poll(cx)
        {
            this.closed = None;
            if let Ok(reason) = reason {
                this.open.closed_by(reason);
                this.ended = true;
                return Poll::Ready(None);
            }
        }
        Pin::new(&mut this.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.ended || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        if self.ended { SizeHint::with_exact(0) } else { self.inner.size_hint() }
    }
}
