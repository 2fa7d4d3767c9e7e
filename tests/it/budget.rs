//! The global budget of buffered body bytes: slow uploads hold it, the next
//! buffering request is answered 503 before its body is read, requests that
//! need no body keep being served, the budget comes back when a buffered
//! request finishes or is cancelled, and no body is read past its share.

use std::convert::Infallible;
use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Method, Request, Response};
use http_body::{Body, Frame};
use http_body_util::Full;
use tokio::sync::mpsc;
use tower::{Layer, Service, ServiceExt};
use tower_identity::Mode;
use tower_identity::claim::Role;
use tower_identity::extract::Sources;
use tower_identity::key::{Identifier, Key, KeySet};
use tower_identity::layer::IdentityVerificationLayer;
use tower_identity::layer::body::RequestBody;
use tower_identity::sign;

use crate::support::*;

/// A request body the test feeds chunk by chunk, and that tells whether the
/// layer ever polled it.
struct Slow {
    rx: mpsc::UnboundedReceiver<Bytes>,
    polled: Arc<AtomicBool>,
}

impl Body for Slow {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.polled.store(true, Ordering::SeqCst);
        self.rx.poll_recv(cx).map(|chunk| chunk.map(|b| Ok(Frame::data(b))))
    }
}

/// A JSON POST whose body the test sends later; `len` is its announced length.
fn upload(len: Option<usize>) -> (Request<Slow>, mpsc::UnboundedSender<Bytes>, Arc<AtomicBool>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let polled = Arc::new(AtomicBool::new(false));
    let mut req = Request::new(Slow { rx, polled: polled.clone() });
    *req.method_mut() = Method::POST;
    req.headers_mut().insert("content-type", "application/json".parse().unwrap());
    if let Some(len) = len {
        req.headers_mut().insert("content-length", len.into());
    }
    (req, tx, polled)
}

/// The signed body of user "u1" (95 bytes).
fn signed_body() -> Bytes {
    let sig = sign::hmac(&secret(), "u1");
    Bytes::from(format!(r#"{{"user_id":"u1","signature":"{sig}"}}"#))
}

/// A request whose body is already all there.
fn complete(len: Option<usize>) -> Request<Slow> {
    let (req, tx, _) = upload(len);
    tx.send(signed_body()).unwrap();
    req
}

/// Polls a future once: `Some` when it is already done.
async fn poll_once<F: Future + Unpin>(fut: &mut F) -> Option<F::Output> {
    poll_fn(|cx| {
        Poll::Ready(match Pin::new(&mut *fut).poll(cx) {
            Poll::Ready(out) => Some(out),
            Poll::Pending => None,
        })
    })
    .await
}

#[tokio::test]
async fn the_body_budget_is_shared_by_every_service_and_given_back() {
    let keys = KeySet::single(Key::hmac(Identifier::UserId, secret()));
    let sources = Sources::new().json(Role::UserId, "/user_id").json(Role::Signature, "/signature").body_limit(100);
    assert_eq!(signed_body().len(), 95);
    for mode in [Mode::Off, Mode::ReportOnly, Mode::Optional, Mode::Required] {
        let layer = IdentityVerificationLayer::new(keys.clone())
            .mode(mode)
            .sources(sources.clone())
            .max_buffered_body_bytes(200);
        let calls = Arc::new(AtomicUsize::new(0));
        let inner = tower::service_fn({
            let calls = calls.clone();
            move |_: Request<RequestBody<Slow>>| {
                calls.fetch_add(1, Ordering::SeqCst);
                std::future::ready(Ok::<_, Infallible>(Response::new(Full::new(Bytes::new()))))
            }
        });
        let mut first = layer.layer(inner.clone());
        let mut second = first.clone();
        let mut other = layer.layer(inner.clone());

        // Two slow uploads hold the whole budget: one announces 100 bytes, the
        // other announces nothing and so reserves the body limit.
        let (req, _tx1, _) = upload(Some(100));
        let mut slow1 = Box::pin(first.ready().await.unwrap().call(req));
        let (req, tx2, _) = upload(None);
        let mut slow2 = Box::pin(second.ready().await.unwrap().call(req));
        assert!(poll_once(&mut slow1).await.is_none() && poll_once(&mut slow2).await.is_none());

        // The next buffering request, through another service of the same
        // layer, is refused before its body is read.
        let (req, tx, polled) = upload(Some(1));
        tx.send(Bytes::from_static(b"{")).unwrap();
        let answer = collect(other.ready().await.unwrap().call(req).await.unwrap()).await;
        assert_eq!(answer.status, 503, "{mode:?}");
        assert_eq!(answer.code(), "overloaded");
        assert_eq!(answer.headers["retry-after"], "5");
        assert!(!polled.load(Ordering::SeqCst), "{mode:?}: the body was read");
        assert_eq!(calls.load(Ordering::SeqCst), 0, "{mode:?}: the inner service was called");

        // Requests that need no body are served meanwhile.
        let header_only = crate::support::signed(SECRET, "u1")
            .map(|_| Slow { rx: mpsc::unbounded_channel().1, polled: Arc::default() });
        let res = other.ready().await.unwrap().call(header_only).await.unwrap();
        assert_eq!(res.status(), 200, "{mode:?}");
        assert_eq!(calls.load(Ordering::SeqCst), 1);

        // A cancelled upload gives its share back.
        drop(slow1);
        let res = other.ready().await.unwrap().call(complete(Some(95))).await.unwrap();
        assert_eq!(res.status(), 200, "{mode:?}");
        assert_eq!(calls.load(Ordering::SeqCst), 2);

        // So does a finished one: afterwards the whole budget is free again.
        tx2.send(signed_body()).unwrap();
        drop(tx2);
        assert_eq!(slow2.await.unwrap().status(), 200, "{mode:?}");
        let (req, _tx3, _) = upload(None);
        let mut slow3 = Box::pin(first.ready().await.unwrap().call(req));
        let (req, _tx4, _) = upload(None);
        let mut slow4 = Box::pin(second.ready().await.unwrap().call(req));
        assert!(poll_once(&mut slow3).await.is_none() && poll_once(&mut slow4).await.is_none(), "{mode:?}");
        let refused = other.ready().await.unwrap().call(complete(None)).await.unwrap();
        assert_eq!(refused.status(), 503, "{mode:?}");
    }
}

/// A request body of one-byte frames, all there at once, that counts the
/// bytes the layer pulled from it.
struct Trickle {
    left: usize,
    pulled: Arc<AtomicUsize>,
}

impl Body for Trickle {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.left == 0 {
            return Poll::Ready(None);
        }
        self.left -= 1;
        self.pulled.fetch_add(1, Ordering::SeqCst);
        Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(b" ")))))
    }
}

/// A JSON POST of `len` one-byte frames; `announced` is its Content-Length.
fn trickle(len: usize, announced: Option<usize>, pulled: Arc<AtomicUsize>) -> Request<Trickle> {
    let mut req = Request::new(Trickle { left: len, pulled });
    *req.method_mut() = Method::POST;
    req.headers_mut().insert("content-type", "application/json".parse().unwrap());
    if let Some(len) = announced {
        req.headers_mut().insert("content-length", len.into());
    }
    req
}

#[tokio::test]
async fn a_body_is_never_read_past_its_reservation() {
    // The budget counts what a request reserved before reading: its announced
    // Content-Length, or the body limit when none is announced. A body that
    // sends more than its Content-Length says (a hand-made body, or a server
    // that does not enforce the length) must not be read past it, or the
    // budget would count 10 bytes for 100 held.
    let keys = KeySet::single(Key::hmac(Identifier::UserId, secret()));
    let sources = Sources::new().json(Role::UserId, "/user_id").json(Role::Signature, "/signature").body_limit(100);
    const SENT: usize = 300;
    for mode in [Mode::Off, Mode::ReportOnly, Mode::Optional, Mode::Required] {
        for announced in [None, Some(10)] {
            let reserved = announced.unwrap_or(100);
            let layer = IdentityVerificationLayer::new(keys.clone())
                .mode(mode)
                .sources(sources.clone())
                .max_buffered_body_bytes(reserved);
            let pulled = Arc::new(AtomicUsize::new(0));
            // What the layer had pulled when it called the inner service, and
            // the body the inner service then read.
            let seen = Arc::new(std::sync::Mutex::new(None));
            let calls = Arc::new(AtomicUsize::new(0));
            let inner = tower::service_fn({
                let (pulled, seen, calls) = (pulled.clone(), seen.clone(), calls.clone());
                move |req: Request<RequestBody<Trickle>>| {
                    calls.fetch_add(1, Ordering::SeqCst);
                    let at_call = pulled.load(Ordering::SeqCst);
                    let seen = seen.clone();
                    async move {
                        let body = http_body_util::BodyExt::collect(req.into_body()).await.unwrap().to_bytes();
                        *seen.lock().unwrap() = Some((at_call, body.len()));
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::new())))
                    }
                }
            });
            let mut svc = layer.layer(inner);
            let req = trickle(SENT, announced, pulled.clone());
            let res = svc.ready().await.unwrap().call(req).await.unwrap();
            let case = format!("{mode:?}, Content-Length {announced:?}");
            let seen = seen.lock().unwrap().take();
            if matches!(mode, Mode::Optional | Mode::Required) {
                assert_eq!(res.status(), 413, "{case}");
                assert_eq!(calls.load(Ordering::SeqCst), 0, "{case}: the inner service was called");
                // One byte past the reservation is how the layer knows the body is longer.
                assert_eq!(pulled.load(Ordering::SeqCst), reserved + 1, "{case}: read past the reservation");
            } else {
                // Not refused in these modes: the inner service gets the whole
                // body, the bytes read so far and then the rest, streamed.
                assert_eq!(res.status(), 200, "{case}");
                assert_eq!(seen, Some((reserved + 1, SENT)), "{case}: (pulled before the call, body length)");
            }
            // The reservation is back: the whole budget can be reserved again.
            let req = trickle(reserved, Some(reserved), Arc::default());
            let res = svc.ready().await.unwrap().call(req).await.unwrap();
            assert_ne!(res.status(), 503, "{case}: the budget was not given back");
        }
    }
}
