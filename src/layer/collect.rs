//! Buffering a body that carries the identity: its frames become the whole
//! body, or stop at the limit, or fail.

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes, BytesMut};
use http::HeaderMap;
use http::header::CONTENT_LENGTH;
use http_body::Body;

use crate::extract::is_encoded;
use crate::verify::Failure;

/// Whether the layer can read this body at all, from its headers alone: not
/// encoded, and not announced larger than the limit. A body it cannot read is
/// a failure for the mode to decide on (413/415 when enforcing); report-only
/// and off let the original body stream through untouched.
pub(crate) fn precheck(headers: &HeaderMap, limit: usize) -> Result<(), Failure> {
    if is_encoded(headers) {
        return Err(Failure::BodyEncoded);
    }
    let announced: Option<u64> = headers.get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse().ok());
    if announced.is_some_and(|len| len > limit as u64) {
        return Err(Failure::BodyTooLarge);
    }
    Ok(())
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
    /// Reads frames until the body ends, fails or passes `limit`.
    pub(crate) fn poll<B: Body>(
        &mut self,
        mut body: Pin<&mut B>,
        limit: usize,
        cx: &mut Context<'_>,
    ) -> Poll<Collected> {
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
