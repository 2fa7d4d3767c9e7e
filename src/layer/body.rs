//! Body types: the request body handed to the inner service and the response
//! body returned by the layer. Both yield [`Bytes`] frames.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use super::collect::Reservation;

pin_project! {
    /// The request body the inner service receives: the original body,
    /// streamed through untouched, or the bytes the layer buffered (for body
    /// sources), handed on byte-for-byte.
    pub struct RequestBody<B> {
        #[pin]
        kind: RequestKind<B>,
    }
}

pin_project! {
    #[project = RequestKindProj]
    enum RequestKind<B> {
        /// The original body.
        Stream { #[pin] body: B },
        /// Buffered bytes (and the trailers that followed them, if any,
        /// boxed: rare, and a header map inline would more than double the
        /// size of every request body, which proxies move several times),
        /// and their share of the layer's body budget, given back with the body.
        Buffered { data: Option<Bytes>, trailers: Option<Box<HeaderMap>>, reservation: Option<Reservation> },
        /// The bytes read so far, then the rest of the original body (a body
        /// the layer stopped reading at its limit, forwarded in a mode that
        /// does not reject).
        Replay { data: Option<Bytes>, rest: Pin<Box<B>>, reservation: Reservation },
    }
}

impl<B> RequestBody<B> {
    /// Wraps a body to be streamed through.
    pub fn new(body: B) -> Self {
        RequestBody { kind: RequestKind::Stream { body } }
    }

    /// No bytes (a placeholder until the buffered body takes its place).
    pub(crate) fn empty() -> Self {
        RequestBody { kind: RequestKind::Buffered { data: None, trailers: None, reservation: None } }
    }

    /// A body made of buffered bytes.
    pub fn buffered(data: Bytes) -> Self {
        Self::buffered_with_trailers(data, None)
    }

    /// A body made of buffered bytes followed by trailers.
    pub(crate) fn buffered_with_trailers(data: Bytes, trailers: Option<HeaderMap>) -> Self {
        Self::buffered_kind(data, trailers, None)
    }

    /// Bytes the layer buffered, holding their share of its body budget.
    pub(crate) fn reserved(data: Bytes, trailers: Option<HeaderMap>, reservation: Reservation) -> Self {
        Self::buffered_kind(data, trailers, Some(reservation))
    }

    fn buffered_kind(data: Bytes, trailers: Option<HeaderMap>, reservation: Option<Reservation>) -> Self {
        let trailers = trailers.map(Box::new);
        RequestBody { kind: RequestKind::Buffered { data: (!data.is_empty()).then_some(data), trailers, reservation } }
    }

    /// The bytes read so far, then the rest of the original body.
    pub(crate) fn replay(read: Bytes, rest: Pin<Box<B>>, reservation: Reservation) -> Self {
        RequestBody { kind: RequestKind::Replay { data: (!read.is_empty()).then_some(read), rest, reservation } }
    }
}

pin_project! {
    /// The response body of the layer: the inner service's body, or a
    /// rejection's body. No `Default` bound on the inner body, so hyper's
    /// `Incoming` works as well as axum's and tonic's bodies.
    pub struct ResponseBody<B> {
        #[pin]
        kind: ResponseKind<B>,
    }
}

pin_project! {
    #[project = ResponseKindProj]
    enum ResponseKind<B> {
        /// The inner service's body.
        Inner { #[pin] body: B },
        /// A body built by the layer.
        Full { data: Option<Bytes> },
    }
}

impl<B> ResponseBody<B> {
    /// Wraps the inner service's body.
    pub fn inner(body: B) -> Self {
        ResponseBody { kind: ResponseKind::Inner { body } }
    }

    /// A full body.
    pub fn full(data: Bytes) -> Self {
        ResponseBody { kind: ResponseKind::Full { data: (!data.is_empty()).then_some(data) } }
    }
}

fn poll_inner<B: Body>(body: Pin<&mut B>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
    body.poll_frame(cx).map_ok(|frame| frame.map_data(|mut d| d.copy_to_bytes(d.remaining())))
}

fn poll_full<E>(data: &mut Option<Bytes>) -> Poll<Option<Result<Frame<Bytes>, E>>> {
    Poll::Ready(data.take().map(|d| Ok(Frame::data(d))))
}

fn full_hint(data: &Option<Bytes>) -> SizeHint {
    SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
}

impl<B: Body> Body for RequestBody<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        match self.project().kind.project() {
            RequestKindProj::Stream { body } => poll_inner(body, cx),
            RequestKindProj::Buffered { data, trailers, .. } => match data.take() {
                Some(d) => Poll::Ready(Some(Ok(Frame::data(d)))),
                None => Poll::Ready(trailers.take().map(|t| Ok(Frame::trailers(*t)))),
            },
            RequestKindProj::Replay { data, rest, .. } => match data.take() {
                Some(d) => Poll::Ready(Some(Ok(Frame::data(d)))),
                None => poll_inner(rest.as_mut(), cx),
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            RequestKind::Stream { body } => body.is_end_stream(),
            RequestKind::Buffered { data, trailers, .. } => data.is_none() && trailers.is_none(),
            RequestKind::Replay { data, rest, .. } => data.is_none() && rest.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            RequestKind::Stream { body } => body.size_hint(),
            RequestKind::Buffered { data, .. } => full_hint(data),
            RequestKind::Replay { data, rest, .. } => {
                let read = data.as_ref().map_or(0, |d| d.len() as u64);
                let rest = rest.size_hint();
                let mut hint = SizeHint::new();
                hint.set_lower(rest.lower() + read);
                if let Some(upper) = rest.upper() {
                    hint.set_upper(upper + read);
                }
                hint
            }
        }
    }
}

impl<B: Body> Body for ResponseBody<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        match self.project().kind.project() {
            ResponseKindProj::Inner { body } => poll_inner(body, cx),
            ResponseKindProj::Full { data } => poll_full(data),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            ResponseKind::Inner { body } => body.is_end_stream(),
            ResponseKind::Full { data } => data.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            ResponseKind::Inner { body } => body.size_hint(),
            ResponseKind::Full { data } => full_hint(data),
        }
    }
}

#[cfg(test)]
mod size {
    /// A request body is moved several times on its way upstream: it stays
    /// small whatever it holds (trailers are boxed).
    #[test]
    fn a_request_body_is_small() {
        type Incoming = http_body_util::Empty<bytes::Bytes>;
        assert!(size_of::<super::RequestBody<Incoming>>() <= 64, "{}", size_of::<super::RequestBody<Incoming>>());
    }
}
