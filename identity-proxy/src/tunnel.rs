//! WebSocket tunnels and long responses that end when their credential does.
//!
//! An HTTP/1.1 WebSocket upgrade is verified like any request. When it
//! passes, the upgrade goes to the upstream with the identity headers, and
//! once the upstream answers `101` the proxy copies bytes both ways
//! (`hyper::upgrade` on both sides) until either side closes, or until the
//! connection's [`Watch`] says the credential stopped being valid: then the
//! client gets a close frame with code 1008 (policy violation), the upstream
//! a close frame too, and both connections end. A close frame is written only
//! between frames (the tunnel follows the frame boundaries of the bytes it
//! copies); in the middle of one, the connection is dropped instead.
//!
//! A rejected upgrade gets the usual 401 and never reaches the upstream.
//! Other upgrade protocols are not tunnelled: their `Upgrade` and
//! `Connection` headers are removed as the hop-by-hop headers they are.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use http::header::{CONNECTION, HeaderMap, HeaderValue, SEC_WEBSOCKET_PROTOCOL, UPGRADE};
use http::{Method, Request, Response, StatusCode, Version};
use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tower_identity::{Sources, VerifiedIdentity};
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::frame::{CloseFrame, Frame};

use tower_identity::layer::body::ResponseBody;

use crate::revocation::{CloseReason, Closing, Head, Open, Revalidator, Watch};
use crate::upstream::{ProxyBody, boxed};

/// The body of the proxy's answers.
pub type ClientBody = ResponseBody<ProxyBody>;

/// How long the closing handshake may take before the connections are dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(1);
/// How long both sides have to finish switching protocols after the `101`.
const UPGRADE_DEADLINE: Duration = Duration::from_secs(10);
/// Bytes read at a time, per direction.
const CHUNK: usize = 16 * 1024;

/// Whether `headers` list `token` in a comma-separated header (case-insensitive).
fn has_token(headers: &HeaderMap, name: http::header::HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// Whether the request asks for an HTTP/1.1 WebSocket upgrade.
pub fn is_websocket_upgrade<B>(req: &Request<B>) -> bool {
    // The cheap tests first: most requests are not upgrades.
    req.version() == Version::HTTP_11
        && req.method() == Method::GET
        && has_token(req.headers(), CONNECTION, "upgrade")
        && only_websocket(req.headers())
}

/// Whether `Upgrade` is one header naming `websocket`.
fn only_websocket(headers: &HeaderMap) -> bool {
    let mut upgrade = headers.get_all(UPGRADE).iter();
    upgrade.next().is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket")) && upgrade.next().is_none()
}

/// Whether the request asks for a server-sent events stream.
fn wants_event_stream<B>(req: &Request<B>) -> bool {
    has_token(req.headers(), http::header::ACCEPT, "text/event-stream")
}

/// A long-lived connection being set up: what the tunnel (or the event
/// stream) needs once the upstream has answered.
pub struct Tracked {
    /// The client's side of a WebSocket upgrade (`None` for an event stream).
    client: Option<OnUpgrade>,
    /// The client offered the bare marker protocol.
    marker: bool,
    /// Boxed: every request's future has room for a `Tracked`.
    head: Option<Box<Head>>,
}

/// Marks the request as carrying a verified identity the response must bring back.
#[derive(Clone, Copy)]
struct CarryIdentity;

/// The verified identity, brought from the request to the response (boxed:
/// it is carried through the upstream service's future).
#[derive(Clone)]
struct Carried(Option<Box<VerifiedIdentity>>);

/// Before the hop-by-hop headers are removed: takes the client's side of a
/// WebSocket upgrade, or notes an event-stream request. `None` for any other request.
pub fn track(req: &mut Request<hyper::body::Incoming>) -> Option<Tracked> {
    let client = if is_websocket_upgrade(req) {
        Some(hyper::upgrade::on(&mut *req))
    } else if wants_event_stream(req) {
        None
    } else {
        return None;
    };
    let marker = has_token(req.headers(), SEC_WEBSOCKET_PROTOCOL, Sources::PROTOCOL_MARKER);
    Some(Tracked { client, marker, head: None })
}

impl Tracked {
    /// After the hop-by-hop headers are removed: remembers the head for
    /// re-verification and puts the upgrade headers back for the upstream.
    pub fn prepare<B>(&mut self, req: &mut Request<B>) {
        self.head = Some(Box::new(Head::of(req)));
        req.extensions_mut().insert(CarryIdentity);
        if self.client.is_some() {
            req.headers_mut().insert(CONNECTION, HeaderValue::from_static("upgrade"));
            req.headers_mut().insert(UPGRADE, HeaderValue::from_static("websocket"));
        }
    }

    /// Turns the upstream's answer into the client's: a `101` starts the
    /// tunnel, an event stream gets a body that ends with its credential;
    /// anything else (a rejection, a refused upgrade) goes back as it is.
    pub fn finish(self, mut res: Response<ClientBody>, revalidator: &Arc<Revalidator>) -> Response<ClientBody> {
        let identity = res.extensions_mut().remove::<Carried>().and_then(|c| c.0);
        let Some(head) = self.head else { return res };
        let watch = revalidator.watch(*head, identity.as_deref());
        match self.client {
            Some(client) if res.status() == StatusCode::SWITCHING_PROTOCOLS => {
                let upstream = hyper::upgrade::on(&mut res);
                let headers = res.headers_mut();
                headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
                headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
                if self.marker && !headers.contains_key(SEC_WEBSOCKET_PROTOCOL) {
                    headers.insert(SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static(Sources::PROTOCOL_MARKER));
                }
                tokio::spawn(open(client, upstream, watch));
                res
            }
            Some(_) => res,
            None if res.status().is_success() => res.map(|body| ResponseBody::inner(boxed(Closing::new(body, watch)))),
            None => res,
        }
    }
}

/// In the upstream service, before the request is sent: the identity the
/// response must carry back to [`Tracked::finish`], for tracked requests only.
pub fn carried<B>(req: &Request<B>) -> Option<impl FnOnce(&mut http::Extensions) + use<B>> {
    req.extensions().get::<CarryIdentity>()?;
    let identity = req.extensions().get::<VerifiedIdentity>().cloned().map(Box::new);
    Some(move |ext: &mut http::Extensions| {
        ext.insert(Carried(identity));
    })
}

/// Waits for both sides to switch protocols, then runs the tunnel.
async fn open(client: OnUpgrade, upstream: OnUpgrade, watch: Watch) {
    let both = async { tokio::try_join!(client, upstream) };
    match tokio::time::timeout(UPGRADE_DEADLINE, both).await {
        Ok(Ok((client, upstream))) => run(client, upstream, watch).await,
        Ok(Err(error)) => tracing::debug!(%error, "a WebSocket upgrade failed"),
        Err(_) => tracing::debug!("a WebSocket upgrade did not complete in time"),
    }
}

/// Copies bytes both ways until both sides are done, either fails, or the watch fires.
async fn run(client: Upgraded, upstream: Upgraded, mut watch: Watch) {
    let open = Open::new();
    let (mut client_rx, mut client_tx) = tokio::io::split(TokioIo::new(client));
    let (mut upstream_rx, mut upstream_tx) = tokio::io::split(TokioIo::new(upstream));
    let (mut up, mut down) = (Pipe::new(), Pipe::new());
    let closed = watch.closed();
    let mut closed = std::pin::pin!(closed);
    while !(up.done && down.done) {
        let step = tokio::select! {
            step = up.step(&mut client_rx, &mut upstream_tx), if !up.done => step,
            step = down.step(&mut upstream_rx, &mut client_tx), if !down.done => step,
            reason = &mut closed => {
                open.closed_by(reason);
                let ends = Ends { client_rx, client_tx, upstream_tx };
                let _ = tokio::time::timeout(CLOSE_GRACE, ends.close(reason, &up.frames, &down.frames)).await;
                return;
            }
        };
        if let Err(error) = step {
            tracing::debug!(%error, "a WebSocket tunnel ended with an error");
            return;
        }
    }
}

type Io = TokioIo<Upgraded>;

/// The halves a close needs.
struct Ends {
    client_rx: ReadHalf<Io>,
    client_tx: WriteHalf<Io>,
    upstream_tx: WriteHalf<Io>,
}

impl Ends {
    /// Close frames where a frame may start, then the connections' write
    /// sides; waits for the client to finish, so it reads the close frame
    /// rather than a reset.
    async fn close(mut self, reason: CloseReason, to_upstream: &Frames, to_client: &Frames) {
        if to_client.at_boundary() {
            let _ = self.client_tx.write_all(&close_frame(reason, None)).await;
        }
        let _ = self.client_tx.shutdown().await;
        if to_upstream.at_boundary() {
            let _ = self.upstream_tx.write_all(&close_frame(reason, Some(mask()))).await;
        }
        let _ = self.upstream_tx.shutdown().await;
        let mut sink = [0u8; 512];
        while matches!(self.client_rx.read(&mut sink).await, Ok(n) if n > 0) {}
    }
}

/// A close frame with code 1008; masked when sent as the client (to the upstream).
fn close_frame(reason: CloseReason, mask: Option<[u8; 4]>) -> Vec<u8> {
    let text = match reason {
        CloseReason::Expired => "credential expired",
        CloseReason::Revoked => "credential revoked",
        CloseReason::Lifetime => "connection lifetime reached",
        CloseReason::Unavailable => "credential not verifiable",
    };
    let mut frame = Frame::close(Some(CloseFrame { code: CloseCode::Policy, reason: text.into() }));
    frame.header_mut().mask = mask;
    let mut out = Vec::with_capacity(32);
    // Writing into a Vec cannot fail.
    let _ = frame.format(&mut out);
    out
}

/// A masking key for a frame the proxy sends as a client: unpredictable to
/// the peer (RFC 6455 §5.3), from the process's randomly keyed hasher.
fn mask() -> [u8; 4] {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher
        .write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos());
    (hasher.finish() as u32).to_le_bytes()
}

/// One direction of the tunnel. Each step reads or writes once, so that a
/// step dropped for a close loses nothing already counted in `frames`.
struct Pipe {
    buf: Box<[u8]>,
    start: usize,
    end: usize,
    done: bool,
    /// The frames of the bytes written so far.
    frames: Frames,
}

impl Pipe {
    fn new() -> Pipe {
        Pipe { buf: vec![0; CHUNK].into_boxed_slice(), start: 0, end: 0, done: false, frames: Frames::default() }
    }

    async fn step(
        &mut self,
        from: &mut (impl AsyncRead + Unpin),
        to: &mut (impl AsyncWrite + Unpin),
    ) -> io::Result<()> {
        if self.start == self.end {
            let n = from.read(&mut self.buf).await?;
            if n == 0 {
                self.done = true;
                return to.shutdown().await;
            }
            (self.start, self.end) = (0, n);
        }
        let n = to.write(&self.buf[self.start..self.end]).await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        self.frames.feed(&self.buf[self.start..self.start + n]);
        self.start += n;
        if self.start == self.end {
            to.flush().await?;
        }
        Ok(())
    }
}

/// Follows WebSocket frame boundaries in a byte stream (RFC 6455 §5.2):
/// only where a frame starts can the proxy add its own close frame.
#[derive(Default)]
struct Frames {
    /// Header bytes of the frame being read.
    head: [u8; 14],
    have: usize,
    /// Payload bytes still to pass before the next header.
    payload_left: u64,
}

impl Frames {
    fn at_boundary(&self) -> bool {
        self.have == 0 && self.payload_left == 0
    }

    fn feed(&mut self, mut bytes: &[u8]) {
        while let Some((&first, rest)) = bytes.split_first() {
            if self.payload_left > 0 {
                let n = self.payload_left.min(bytes.len() as u64);
                self.payload_left -= n;
                bytes = &bytes[n as usize..];
                continue;
            }
            self.head[self.have] = first;
            self.have += 1;
            bytes = rest;
            if let Some(payload) = self.header_complete() {
                (self.have, self.payload_left) = (0, payload);
            }
        }
    }

    /// The payload length, once the whole header has been seen.
    fn header_complete(&self) -> Option<u64> {
        let head = &self.head[..self.have];
        let second = *head.get(1)?;
        let short = u64::from(second & 0x7F);
        let extended = match short {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        let size = 2 + extended + if second & 0x80 != 0 { 4 } else { 0 };
        if head.len() < size {
            return None;
        }
        Some(match extended {
            0 => short,
            n => head[2..2 + n].iter().fold(0, |len, &b| (len << 8) | u64::from(b)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(payload_len: usize, masked: bool) -> Vec<u8> {
        let mut f = Frame::message(
            vec![7u8; payload_len],
            tungstenite::protocol::frame::coding::OpCode::Data(tungstenite::protocol::frame::coding::Data::Binary),
            true,
        );
        if masked {
            f.header_mut().mask = Some([1, 2, 3, 4]);
        }
        let mut out = Vec::new();
        f.format(&mut out).unwrap();
        out
    }

    #[test]
    fn follows_frame_boundaries_byte_by_byte_and_in_chunks() {
        for (len, masked) in [(0, false), (5, true), (125, false), (126, true), (300, false), (70_000, true)] {
            let bytes = frame(len, masked);
            let mut frames = Frames::default();
            for (i, b) in bytes.iter().enumerate() {
                frames.feed(std::slice::from_ref(b));
                assert_eq!(frames.at_boundary(), i + 1 == bytes.len(), "len {len}, byte {i}");
            }
            let mut frames = Frames::default();
            let two = [bytes.clone(), bytes].concat();
            frames.feed(&two[..two.len() / 2 + 1]);
            assert!(!frames.at_boundary());
            frames.feed(&two[two.len() / 2 + 1..]);
            assert!(frames.at_boundary());
        }
    }

    #[test]
    fn close_frames_carry_1008() {
        let unmasked = close_frame(CloseReason::Expired, None);
        assert_eq!(&unmasked[..4], &[0x88, 20, 0x03, 0xF0]);
        let masked = close_frame(CloseReason::Expired, Some([0, 0, 0, 0]));
        assert_eq!(&masked[..2], &[0x88, 0x80 | 20]);
        let mut frames = Frames::default();
        frames.feed(&masked);
        assert!(frames.at_boundary());
    }

    #[test]
    fn only_websocket_upgrades_over_http1_get() {
        let req = |version, method, conn: &str, upgrade: &str| {
            Request::builder()
                .version(version)
                .method(method)
                .header(CONNECTION, conn)
                .header(UPGRADE, upgrade)
                .body(())
                .unwrap()
        };
        assert!(is_websocket_upgrade(&req(Version::HTTP_11, Method::GET, "keep-alive, Upgrade", "WebSocket")));
        assert!(!is_websocket_upgrade(&req(Version::HTTP_11, Method::GET, "keep-alive", "websocket")));
        assert!(!is_websocket_upgrade(&req(Version::HTTP_11, Method::GET, "upgrade", "h2c")));
        assert!(!is_websocket_upgrade(&req(Version::HTTP_11, Method::POST, "upgrade", "websocket")));
        assert!(!is_websocket_upgrade(&req(Version::HTTP_10, Method::GET, "upgrade", "websocket")));
    }
}
