//! Buffering a body that carries the identity: a share of the layer's
//! [`BodyBudget`] first, then its frames become the whole body, or stop at the
//! limit, or fail.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes, BytesMut};
use http::HeaderMap;
use http::header::CONTENT_LENGTH;
use http_body::Body;

use crate::extract::is_encoded;
use crate::verify::Failure;

/// Default of [`max_buffered_body_bytes`](super::IdentityVerificationLayer::max_buffered_body_bytes): 32 MiB.
pub const DEFAULT_MAX_BUFFERED_BODY_BYTES: usize = 32 * 1024 * 1024;

/// Whether the layer can read this body at all, from its headers alone: not
/// encoded, and not announced larger than the limit. A body it cannot read is
/// a failure for the mode to decide on (413/415 when enforcing); report-only
/// and off let the original body stream through untouched. `Ok` is the most
/// the body can take: its announced length, else the limit. The request
/// reserves that much of the budget, and [`Collect`] reads no further: a body
/// longer than its `Content-Length` says is over its limit.
pub(crate) fn precheck(headers: &HeaderMap, limit: usize) -> Result<usize, Failure> {
    if is_encoded(headers) {
        return Err(Failure::BodyEncoded);
    }
    let announced: Option<u64> = headers.get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse().ok());
    match announced {
        Some(len) if len > limit as u64 => Err(Failure::BodyTooLarge),
        // At most `limit`, so it fits in a usize.
        Some(len) => Ok(len as usize),
        None => Ok(limit),
    }
}

/// The bytes all requests through one layer may hold in buffered bodies at
/// once, shared by every service the layer (and its clones) builds. A request
/// reserves the most its body can take before reading it, and holds the
/// reservation until its buffered body is dropped.
#[derive(Debug)]
pub(crate) struct BodyBudget {
    max: usize,
    used: AtomicUsize,
}

impl BodyBudget {
    pub(crate) fn new(max: usize) -> Arc<BodyBudget> {
        Arc::new(BodyBudget { max, used: AtomicUsize::new(0) })
    }

    pub(crate) fn max(&self) -> usize {
        self.max
    }

    /// Reserves `bytes`, or `None` when that would pass the budget.
    pub(crate) fn reserve(self: &Arc<Self>, bytes: usize) -> Option<Reservation> {
        let fits = |used: usize| used.checked_add(bytes).filter(|&total| total <= self.max);
        self.used.fetch_update(Ordering::AcqRel, Ordering::Acquire, fits).ok()?;
        Some(Reservation { budget: self.clone(), bytes })
    }
}

/// A share of a [`BodyBudget`], given back when dropped: when the buffered
/// body is dropped, or the request is refused or cancelled while being read.
#[derive(Debug)]
pub(crate) struct Reservation {
    budget: Arc<BodyBudget>,
    bytes: usize,
}

impl Reservation {
    /// The bytes reserved: the most the body may be read to.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.budget.used.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

/// The frames read so far.
#[derive(Default)]
pub(crate) struct Collect {
    chunks: Vec<Bytes>,
    len: usize,
    trailers: Option<HeaderMap>,
}

/// How reading a body ended.
pub(crate) enum Collected {
    /// The whole body (and its trailers, if any).
    Whole { bytes: Bytes, trailers: Option<HeaderMap> },
    /// The body passed the limit; these are the bytes read so far.
    OverLimit(Bytes),
    /// The body failed while being read.
    Failed,
}

impl Collect {
    /// Reads frames until the body ends, fails or passes what `reservation`
    /// holds. Never further: the budget counts reservations, so a body read
    /// past its own (a `Content-Length` that understates, from a server that
    /// does not enforce it) would hold bytes the budget does not see. The
    /// frame that passes the limit is the only one held beyond it.
    pub(crate) fn poll<B: Body>(
        &mut self,
        mut body: Pin<&mut B>,
        reservation: &Reservation,
        cx: &mut Context<'_>,
    ) -> Poll<Collected> {
        let limit = reservation.bytes();
        loop {
            match ready!(body.as_mut().poll_frame(cx)) {
                None => {
                    let trailers = self.trailers.take();
                    return Poll::Ready(Collected::Whole { bytes: self.concat(), trailers });
                }
                // A broken body cannot be handed on in any mode.
                Some(Err(_)) => return Poll::Ready(Collected::Failed),
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(mut data) => {
                        self.len += data.remaining();
                        self.chunks.push(data.copy_to_bytes(data.remaining()));
                        if self.len > limit {
                            return Poll::Ready(Collected::OverLimit(self.concat()));
                        }
                    }
                    Err(frame) => {
                        if let Ok(trailers) = frame.into_trailers() {
                            self.trailers = Some(trailers);
                        }
                    }
                },
            }
        }
    }

    /// The body as one buffer: a single chunk as is (no copy), or one copy of all chunks.
    fn concat(&mut self) -> Bytes {
        let mut chunks = std::mem::take(&mut self.chunks);
        match chunks.len() {
            0 => Bytes::new(),
            1 => chunks.pop().unwrap_or_default(),
            _ => {
                let mut all = BytesMut::with_capacity(self.len);
                for chunk in chunks {
                    all.extend_from_slice(&chunk);
                }
                all.freeze()
            }
        }
    }
}
