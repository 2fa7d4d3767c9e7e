//! Shared test helpers: an inner service that records what it saw.
#![allow(dead_code)]

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use tower::{Service, ServiceExt};
use tower_identity::body::{RequestBody, ResponseBody};
use tower_identity::{IdentityOutcome, IdentityVerificationLayer, VerifiedIdentity};

pub const NOW: u64 = 1_767_225_600;
pub const SECRET: &str = "test-secret-0123456789abcdef";

/// The identity extensions of the last request the inner service saw.
type Seen = Option<(Option<IdentityOutcome>, Option<VerifiedIdentity>)>;

/// What the inner service saw.
#[derive(Clone, Default)]
pub struct Recorder {
    calls: Arc<AtomicUsize>,
    last: Arc<Mutex<Seen>>,
}

impl Recorder {
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    pub fn last_outcome(&self) -> Option<IdentityOutcome> {
        self.last.lock().unwrap().as_ref().and_then(|(o, _)| *o)
    }

    pub fn last_identity(&self) -> Option<VerifiedIdentity> {
        self.last.lock().unwrap().as_ref().and_then(|(_, i)| i.clone())
    }

    /// An inner service that records the identity extensions and answers 200 "inner".
    pub fn service(
        &self,
    ) -> impl Service<
        Request<RequestBody<Full<Bytes>>>,
        Response = Response<Full<Bytes>>,
        Error = Infallible,
        Future = impl Send,
    > + Clone
    + Send
    + 'static {
        let rec = self.clone();
        tower::service_fn(move |req: Request<RequestBody<Full<Bytes>>>| {
            // Counted at `call`, not when the future is polled: a layer that
            // called the inner service and dropped its future is caught too.
            rec.calls.fetch_add(1, Ordering::SeqCst);
            *rec.last.lock().unwrap() = Some((
                IdentityOutcome::from_extensions(req.extensions()),
                req.extensions().get::<VerifiedIdentity>().cloned(),
            ));
            async move { Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"inner")))) }
        })
    }
}

/// A response, collected.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: http::HeaderMap,
    pub body: String,
}

impl Answer {
    /// The `error` field of a JSON rejection body.
    pub fn code(&self) -> String {
        let v: serde_json::Value =
            serde_json::from_str(&self.body).unwrap_or_else(|_| panic!("not JSON: {}", self.body));
        v["error"].as_str().expect("error field").to_owned()
    }
}

pub async fn collect(res: Response<ResponseBody<Full<Bytes>>>) -> Answer {
    let (parts, body) = res.into_parts();
    let bytes = body.collect().await.unwrap().to_bytes();
    Answer { status: parts.status, headers: parts.headers, body: String::from_utf8(bytes.to_vec()).unwrap() }
}

/// Sends one request through `layer` around a fresh recorder.
pub async fn send(layer: &IdentityVerificationLayer, req: Request<Full<Bytes>>) -> (Answer, Recorder) {
    let rec = Recorder::default();
    let svc = tower::ServiceBuilder::new().layer(layer.clone()).service(rec.service());
    let res = svc.oneshot(req).await.unwrap();
    (collect(res).await, rec)
}

/// A GET request with the given headers.
pub fn get(uri: &str, headers: &[(&str, &str)]) -> Request<Full<Bytes>> {
    let mut b = Request::get(uri);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(Full::new(Bytes::new())).unwrap()
}

/// Asserts a rejection: status, code, standard headers, inner not called,
/// and no echo of the given sensitive strings.
pub fn assert_rejected(answer: &Answer, rec: &Recorder, status: u16, code: &str, secrets: &[&str]) {
    assert_eq!(answer.status.as_u16(), status, "body: {}", answer.body);
    assert_eq!(answer.code(), code);
    assert_eq!(rec.calls(), 0, "the inner service must not be called on rejection");
    assert_eq!(answer.headers["cache-control"], "no-store");
    assert_eq!(answer.headers["content-type"], "application/json");
    if status == 401 {
        let challenge = answer.headers["www-authenticate"].to_str().unwrap();
        assert!(challenge.contains(code), "{challenge}");
    }
    for s in secrets.iter().filter(|s| !s.is_empty()) {
        assert!(!answer.body.contains(s), "the body echoes {s:?}: {}", answer.body);
        for v in answer.headers.values() {
            assert!(!v.to_str().unwrap_or("").contains(s), "a header echoes {s:?}");
        }
    }
}

/// Secrets of a rotating key set (two HMAC keys and a JWT key) for the
/// observability and log-hygiene tests.
pub const OLD: &str = "observability-old-secret-0123";
pub const NEW: &str = "observability-new-secret-0123";
pub const JWT_SECRET: &str = "observability-jwt-secret-0123";

/// Keys "2025" (OLD), "2026" (NEW) and "jwt-1" (JWT_SECRET).
pub fn rotating_keys() -> tower_identity::KeySet {
    use tower_identity::{Identifier, Key, KeySet, Secret};
    KeySet::new([
        Key::hmac(Identifier::UserId, Secret::text(OLD).unwrap()).with_id("2025"),
        Key::hmac(Identifier::UserId, Secret::text(NEW).unwrap()).with_id("2026"),
        Key::jwt(Secret::text(JWT_SECRET).unwrap()).with_id("jwt-1"),
    ])
    .unwrap()
}

/// A GET carrying `user` signed with `secret` (HMAC over the user id).
pub fn signed(secret: &str, user: &str) -> Request<Full<Bytes>> {
    let sig = tower_identity::sign::hmac(&tower_identity::Secret::text(secret).unwrap(), user);
    get("/", &[("x-user-id", user), ("x-identity-signature", &sig)])
}

/// Reads a copied test data file, refusing it unless its sha256 is the
/// recorded one (see tests/data/README.md).
pub fn read_checked(path: &str, sha256: &str) -> Vec<u8> {
    use sha2::Digest;
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("cannot read test data file {path}: {e}"));
    let actual = hex::encode(sha2::Sha256::digest(&bytes));
    assert!(
        actual == sha256,
        "test data file {path} has sha256 {actual}, expected {sha256}: it is not a byte-identical copy of its \
         source; restore it (see tests/data/README.md) instead of changing the checksum"
    );
    bytes
}

/// A `MakeWriter` that appends every log line to a shared buffer, for tests
/// that search what the layer logged.
#[derive(Clone, Default)]
pub struct Capture(pub Arc<Mutex<Vec<u8>>>);

impl Capture {
    /// Everything logged so far.
    pub fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

impl std::io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Capture {
    type Writer = Capture;
    fn make_writer(&'a self) -> Capture {
        self.clone()
    }
}

/// The address an `identity-proxy` child listens on, from its "listening on"
/// log line on stderr (which must be piped); every line is handed to `check`.
pub fn proxy_address(child: &mut std::process::Child, check: impl Fn(&str) + Send + 'static) -> std::net::SocketAddr {
    use std::io::BufRead;
    let stderr = child.stderr.take().expect("the proxy's stderr is piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(at) = line.find("listening on http://") {
                let _ = tx.send(line[at + 20..].split_whitespace().next().unwrap().to_owned());
            }
            check(&line);
        }
    });
    let addr = rx.recv_timeout(std::time::Duration::from_secs(20)).expect("the proxy did not start");
    addr.parse().unwrap()
}
