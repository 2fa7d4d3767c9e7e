//! Shared pieces of the fuzz targets: an independent HMAC-SHA256, a runtime-free
//! executor, a request body yielding fuzzer-chosen chunks, and an inner service
//! that records what the layer handed it.
//!
//! Every provider the targets use answers without waiting, and the only other
//! source of `Poll::Pending` is [`ChunkBody`], which wakes its waker before
//! answering `Pending`: so [`block_on`] polls with a no-op waker and treats a
//! future that is still pending after [`MAX_POLLS`] polls as a hang.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::pin::{Pin, pin};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode};
use http_body::{Body, Frame};
use tower_identity::layer::body::{RequestBody, ResponseBody};
use tower_identity::{IdentityOutcome, VerifiedIdentity};
use tower_service::Service;

/// The fixed "now" of the targets (2026-01-01T00:00:00Z).
pub const NOW: u64 = 1_767_225_600;

/// Polls after which a future that has not completed counts as hung.
pub const MAX_POLLS: usize = 100_000;

// ---------------------------------------------------------------------------
// Independent HMAC-SHA256 (RFC 2104 over sha2, not the `hmac` crate the
// library uses) and base64url.

/// HMAC-SHA256, written out from RFC 2104.
pub fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    const BLOCK: usize = 64;
    let mut k = [0u8; BLOCK];
    if key.len() > BLOCK {
        let digest: [u8; 32] = Sha256::digest(key).into();
        k[..32].copy_from_slice(&digest);
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha256::new();
    inner.update(k.map(|b| b ^ 0x36));
    inner.update(message);
    let inner: [u8; 32] = inner.finalize().into();
    let mut outer = Sha256::new();
    outer.update(k.map(|b| b ^ 0x5c));
    outer.update(inner);
    outer.finalize().into()
}

/// HMAC-SHA256 as lowercase hex.
pub fn hmac_hex(key: &[u8], message: &[u8]) -> String {
    hex::encode(hmac_sha256(key, message))
}

/// base64url without padding.
pub fn b64url(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Whether `ts` is a canonical unix timestamp as the README defines it: ASCII
/// digits, no sign, no leading zero, at most 19 digits.
pub fn canonical_timestamp(ts: &str) -> Option<u64> {
    let b = ts.as_bytes();
    if b.is_empty() || b.len() > 19 || !b.iter().all(u8::is_ascii_digit) || (b.len() > 1 && b[0] == b'0') {
        return None;
    }
    ts.parse().ok()
}

/// Replaces every occurrence of `from` in `haystack` by `to`.
pub fn replace_all(haystack: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    if from.is_empty() {
        return haystack.to_vec();
    }
    let mut out = Vec::with_capacity(haystack.len());
    let mut i = 0;
    while i < haystack.len() {
        if haystack[i..].starts_with(from) {
            out.extend_from_slice(to);
            i += from.len();
        } else {
            out.push(haystack[i]);
            i += 1;
        }
    }
    out
}

// ---------------------------------------------------------------------------
// A runtime-free executor.

/// Polls `fut` to completion with a no-op waker.
///
/// # Panics
///
/// When the future is still pending after [`MAX_POLLS`] polls.
pub fn block_on<F: Future>(fut: F) -> F::Output {
    let mut fut = pin!(fut);
    let mut cx = Context::from_waker(Waker::noop());
    for _ in 0..MAX_POLLS {
        if let Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
            return out;
        }
    }
    panic!("a future was still pending after {MAX_POLLS} polls: lost wake-up or endless loop");
}

// ---------------------------------------------------------------------------
// The request body.

/// The error [`ChunkBody`] fails with when asked to.
#[derive(Debug)]
pub struct BodyError;

impl fmt::Display for BodyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("injected body error")
    }
}

impl std::error::Error for BodyError {}

/// A request body yielding the given chunks (empty ones included), then
/// optionally an error, then optionally trailers. With `pending`, every frame
/// is preceded by one `Poll::Pending` (after waking the waker).
#[derive(Debug)]
pub struct ChunkBody {
    chunks: VecDeque<Bytes>,
    error_at_end: bool,
    trailers: Option<HeaderMap>,
    pending: bool,
    pended: bool,
    finished: bool,
}

impl ChunkBody {
    /// A body of `chunks`.
    pub fn new(chunks: Vec<Bytes>) -> Self {
        ChunkBody {
            chunks: chunks.into(),
            error_at_end: false,
            trailers: None,
            pending: false,
            pended: false,
            finished: false,
        }
    }

    /// Fails after the last chunk.
    pub fn error_at_end(mut self, yes: bool) -> Self {
        self.error_at_end = yes;
        self
    }

    /// Ends with these trailers.
    pub fn trailers(mut self, trailers: Option<HeaderMap>) -> Self {
        self.trailers = trailers;
        self
    }

    /// Answers `Pending` once before every frame.
    pub fn pending(mut self, yes: bool) -> Self {
        self.pending = yes;
        self
    }
}

impl Body for ChunkBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = self.get_mut();
        if this.finished {
            return Poll::Ready(None);
        }
        if this.pending && !this.pended {
            this.pended = true;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        this.pended = false;
        if let Some(chunk) = this.chunks.pop_front() {
            return Poll::Ready(Some(Ok(Frame::data(chunk))));
        }
        if std::mem::take(&mut this.error_at_end) {
            this.finished = true;
            return Poll::Ready(Some(Err(BodyError)));
        }
        if let Some(trailers) = this.trailers.take() {
            return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
        }
        this.finished = true;
        Poll::Ready(None)
    }
}

/// Cuts `body` into at most `max_chunks` chunks (empty ones allowed) at
/// positions drawn from `seed`.
pub fn split(body: &Bytes, seed: u8, max_chunks: usize) -> Vec<Bytes> {
    let mut state = u32::from(seed).wrapping_mul(2_654_435_761).wrapping_add(0x9e37_79b9) | 1;
    let mut next = || {
        // xorshift32
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        state
    };
    let count = 1 + (seed as usize) % max_chunks.max(1);
    let mut cuts: Vec<usize> = (1..count).map(|_| next() as usize % (body.len() + 1)).collect();
    cuts.sort_unstable();
    let mut chunks = Vec::with_capacity(count);
    let mut start = 0;
    for cut in cuts {
        chunks.push(body.slice(start..cut));
        start = cut;
    }
    chunks.push(body.slice(start..));
    chunks
}

// ---------------------------------------------------------------------------
// The inner service.

/// What the inner service received.
#[derive(Debug, Default)]
pub struct Record {
    /// The request headers.
    pub headers: HeaderMap,
    /// The outcome in the extensions.
    pub outcome: Option<IdentityOutcome>,
    /// The verified identity in the extensions.
    pub identity: Option<VerifiedIdentity>,
    /// Every data byte of the body, in order.
    pub body: Vec<u8>,
    /// The trailers, if any.
    pub trailers: Option<HeaderMap>,
    /// Whether reading the body failed.
    pub body_error: bool,
}

/// An inner service that reads the whole body and records the request.
#[derive(Clone, Default)]
pub struct Recorder {
    /// The record of the request it served (at most one per run).
    pub slot: Arc<Mutex<Option<Record>>>,
}

impl Recorder {
    /// Takes the record, if the service was called.
    pub fn take(&self) -> Option<Record> {
        self.slot.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

/// The body the inner service answers with.
pub const INNER_BODY: &str = "inner service";

impl<B> Service<Request<RequestBody<B>>> for Recorder
where
    B: Body<Data = Bytes> + Unpin,
{
    type Response = Response<String>;
    type Error = Infallible;
    type Future = RecordFuture<B>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<RequestBody<B>>) -> Self::Future {
        let (mut parts, body) = req.into_parts();
        let record = Record {
            headers: std::mem::take(&mut parts.headers),
            outcome: IdentityOutcome::from_extensions(&parts.extensions),
            identity: parts.extensions.get::<VerifiedIdentity>().cloned(),
            ..Record::default()
        };
        RecordFuture { slot: self.slot.clone(), body: Box::pin(body), record: Some(record) }
    }
}

/// Reads the body, then stores the record and answers 200.
pub struct RecordFuture<B> {
    slot: Arc<Mutex<Option<Record>>>,
    body: Pin<Box<RequestBody<B>>>,
    record: Option<Record>,
}

impl<B: Body<Data = Bytes> + Unpin> Future for RecordFuture<B> {
    type Output = Result<Response<String>, Infallible>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        let record = this.record.as_mut().expect("RecordFuture polled after completion");
        loop {
            match this.body.as_mut().poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) => record.body.extend_from_slice(&data),
                    Err(frame) => {
                        if let Ok(trailers) = frame.into_trailers() {
                            assert!(record.trailers.is_none(), "two trailer frames");
                            record.trailers = Some(trailers);
                        }
                    }
                },
                Poll::Ready(Some(Err(_))) => {
                    record.body_error = true;
                    break;
                }
                Poll::Ready(None) => break,
            }
        }
        let record = this.record.take().expect("checked above");
        let mut slot = this.slot.lock().unwrap_or_else(|e| e.into_inner());
        assert!(slot.is_none(), "the inner service was called twice for one request");
        *slot = Some(record);
        Poll::Ready(Ok(Response::new(INNER_BODY.to_owned())))
    }
}

// ---------------------------------------------------------------------------
// Running a request through a layered service and checking the answer.

/// Calls `svc` with `req` (after `poll_ready`) and collects the response.
pub fn call<S>(svc: &mut S, req: Request<ChunkBody>) -> (http::response::Parts, Bytes)
where
    S: Service<Request<ChunkBody>, Response = Response<ResponseBody<String>>, Error = Infallible>,
{
    block_on(std::future::poll_fn(|cx| svc.poll_ready(cx))).expect("Infallible");
    let response = block_on(svc.call(req)).expect("Infallible");
    let (parts, body) = response.into_parts();
    let mut body = pin!(body);
    let mut bytes = Vec::new();
    while let Some(frame) = block_on(std::future::poll_fn(|cx| body.as_mut().poll_frame(cx))) {
        if let Ok(data) = frame.expect("Infallible").into_data() {
            bytes.extend_from_slice(&data);
        }
    }
    (parts, Bytes::from(bytes))
}

/// Whether the layer treats a request with these headers as gRPC (the first
/// `content-type` starts with `application/grpc`, any case).
pub fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|ct| ct.as_bytes().len() >= 16 && ct.as_bytes()[..16].eq_ignore_ascii_case(b"application/grpc"))
}

/// The documented codes, their HTTP status and gRPC status.
pub const CODES: [(&str, u16, u8); 14] = [
    ("credential_missing", 401, 16),
    ("credential_malformed", 401, 16),
    ("signature_invalid", 401, 16),
    ("signature_expired", 401, 16),
    ("signature_not_yet_valid", 401, 16),
    ("conflicting_values", 401, 16),
    ("token_lifetime_too_long", 401, 16),
    ("claims_mismatch", 401, 16),
    ("body_too_large", 413, 8),
    ("body_encoding_unsupported", 415, 3),
    ("body_unreadable", 400, 3),
    ("provider_unavailable", 503, 14),
    ("misconfigured", 500, 13),
    ("internal_error", 500, 13),
];

/// Checks the layer's answer: the inner service's response when it was
/// called, otherwise a well-formed rejection that echoes nothing. Returns the
/// rejection's code.
pub fn check_response(
    parts: &http::response::Parts,
    body: &[u8],
    inner_called: bool,
    grpc: bool,
) -> Option<&'static str> {
    if inner_called {
        assert_eq!(parts.status, StatusCode::OK, "the inner service answered 200");
        assert_eq!(body, INNER_BODY.as_bytes(), "the inner service's body is handed back untouched");
        return None;
    }
    assert_ne!(body, INNER_BODY.as_bytes(), "an inner response without an inner call");
    assert_eq!(parts.headers.get(http::header::CACHE_CONTROL).map(HeaderValue::as_bytes), Some(&b"no-store"[..]));
    if grpc {
        assert_eq!(parts.status, StatusCode::OK, "gRPC rejections are trailers-only 200s");
        assert!(body.is_empty(), "a trailers-only gRPC response has no body");
        let status = parts.headers.get("grpc-status").expect("grpc-status").to_str().expect("ASCII");
        let message = parts.headers.get("grpc-message").expect("grpc-message").to_str().expect("ASCII");
        let &(code, _, grpc_status) = CODES.iter().find(|(c, ..)| *c == message).expect("a documented code");
        assert_eq!(status, grpc_status.to_string(), "{code}");
        return Some(code);
    }
    let json: serde_json::Value = serde_json::from_slice(body).expect("a JSON rejection body");
    let object = json.as_object().expect("a JSON object");
    assert_eq!(object.len(), 2, "{json}");
    let error = object.get("error").and_then(|e| e.as_str()).expect("an error code");
    assert!(object.get("message").is_some_and(|m| m.is_string()), "{json}");
    let &(code, status, _) = CODES.iter().find(|(c, ..)| *c == error).expect("a documented code");
    assert_eq!(parts.status.as_u16(), status, "{code}");
    if status == 401 {
        let challenge = parts.headers.get(http::header::WWW_AUTHENTICATE).expect("a challenge on 401");
        assert_eq!(challenge.as_bytes(), format!("Identity realm=\"identity\", error=\"{code}\"").as_bytes());
    }
    if status == 503 {
        assert!(parts.headers.contains_key(http::header::RETRY_AFTER), "Retry-After on 503");
    }
    Some(code)
}

/// Checks what the inner service received against what was sent: the exact
/// body bytes, the trailers, and whether the body failed.
pub fn check_body(record: &Record, sent: &[u8], trailers: Option<&HeaderMap>, error_at_end: bool) {
    assert!(
        record.body == sent,
        "the inner service received other body bytes than were sent:\n sent {:?}\n got  {:?}",
        Bytes::copy_from_slice(sent),
        Bytes::copy_from_slice(&record.body)
    );
    assert_eq!(record.body_error, error_at_end, "the body error reached the inner service (or appeared from nowhere)");
    if !error_at_end {
        assert_eq!(record.trailers.as_ref(), trailers, "trailers are handed on");
    }
}

/// Checks the outcome and identity extensions of a request that reached the
/// inner service through verification (not a bypass).
pub fn check_extensions(record: &Record) {
    let outcome = record.outcome.expect("every request the layer lets through carries an IdentityOutcome");
    assert_eq!(outcome.is_verified(), record.identity.is_some(), "VerifiedIdentity present exactly when Verified");
    if let Some(identity) = &record.identity {
        assert!(!identity.id().is_empty());
        assert!(!identity.id().chars().any(char::is_control));
    }
}

/// A header name from a static string.
pub fn name(s: &'static str) -> HeaderName {
    HeaderName::from_static(s)
}

/// Whether `FUZZ_DEBUG` is set: the targets then print what they saw (for
/// running one input by hand, e.g. to check that a seed reaches the path it
/// was written for).
pub fn debug_enabled() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var_os("FUZZ_DEBUG").is_some())
}

/// Prints a one-line summary of a layer run when `FUZZ_DEBUG` is set.
pub fn debug_run(parts: &http::response::Parts, code: Option<&str>, record: Option<&Record>) {
    if debug_enabled() {
        eprintln!(
            "status {} code {:?} inner {:?}",
            parts.status,
            code,
            record.map(|r| (
                r.outcome,
                r.identity.as_ref().map(|i| (
                    i.id().to_owned(),
                    i.tenant().map(str::to_owned),
                    i.key_id().map(str::to_owned)
                )),
                r.body.len()
            )),
        );
    }
}
