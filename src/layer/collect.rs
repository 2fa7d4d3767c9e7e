//! Buffering a body that carries the identity: a share of the layer's
//! [`BodyBudget`] first, then its frames become the whole body, or stop at the
//! limit, or fail.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes, BytesMut};
use http::HeaderMap;
use http_body::Body;

use crate::extract::BodyHeaders;
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
pub(crate) fn precheck(body: &BodyHeaders, limit: usize) -> Result<usize, Failure> {
    if body.encoded {
        return Err(Failure::BodyEncoded);
    }
    match body.length {
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

/// The frames read so far. Most bodies arrive in one chunk: it is kept
/// inline, so reading one allocates nothing.
#[derive(Default)]
pub(crate) struct Collect {
    first: Bytes,
    rest: Vec<Bytes>,
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
                    Ok(data) => {
                        self.push(data);
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

    /// Keeps a chunk (as is when it is a `Bytes`); empty ones are dropped.
    fn push(&mut self, mut data: impl Buf) {
        let data = data.copy_to_bytes(data.remaining());
        self.len += data.len();
        if self.first.is_empty() {
            // Nothing kept yet: `rest` fills only once `first` holds bytes.
            self.first = data;
        } else if !data.is_empty() {
            self.rest.push(data);
        }
    }

    /// The body as one buffer: a single chunk as is (no copy), or one copy of all chunks.
    fn concat(&mut self) -> Bytes {
        let first = std::mem::take(&mut self.first);
        if self.rest.is_empty() {
            return first;
        }
        let mut all = BytesMut::with_capacity(self.len);
        all.extend_from_slice(&first);
        for chunk in std::mem::take(&mut self.rest) {
            all.extend_from_slice(&chunk);
        }
        all.freeze()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads `chunks` as a body's data frames, under a budget of 64 bytes.
    fn collect(chunks: &[&'static [u8]]) -> Bytes {
        let frames =
            chunks.iter().map(|c| Ok::<_, std::convert::Infallible>(http_body::Frame::data(Bytes::from_static(c))));
        let body = http_body_util::StreamBody::new(futures_util::stream::iter(frames));
        let reservation = BodyBudget::new(64).reserve(64).expect("fits");
        let mut cx = Context::from_waker(std::task::Waker::noop());
        match Collect::default().poll(std::pin::pin!(body), &reservation, &mut cx) {
            Poll::Ready(Collected::Whole { bytes, trailers: None }) => bytes,
            _ => panic!("not read whole"),
        }
    }

    #[test]
    fn one_chunk_is_kept_as_is_and_several_are_joined_in_order() {
        let one: &'static [u8] = b"{\"user_id\":\"jane\"}";
        assert_eq!(collect(&[one]).as_ptr(), one.as_ptr(), "one chunk is not copied");
        assert_eq!(collect(&[b"", one, b""]).as_ptr(), one.as_ptr(), "empty frames are skipped");
        assert_eq!(collect(&[b"ab", b"", b"c", b"def"]), &b"abcdef"[..]);
        assert_eq!(collect(&[b"", b""]), &b""[..]);
        assert_eq!(collect(&[]), &b""[..]);
    }
}
