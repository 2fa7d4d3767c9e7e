//! The mixed load shared by the layer's load test (tests/load.rs) and the
//! sidecar's (identity-proxy/tests/it/load.rs): deterministic request cases
//! (valid HMAC and JWT, mutated credentials, none, wrong tenants; JSON bodies
//! of random sizes sent in random chunks), the client that sends them, the
//! tally of what came back and the server side's record of what arrived.
//!
//! `TOWER_IDENTITY_LOAD_REQUESTS` sets the number of requests of each load
//! test (default 100,000).

use std::collections::{BTreeMap, VecDeque};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use sha2::Digest;
use tower_identity::{Secret, sign};

use super::rng::Rng;

pub const ACME_HMAC: &str = "load-acme-hmac-0123456789abcdef";
pub const ACME_JWT: &str = "load-acme-jwt-0123456789abcdef";
pub const GLOBEX_HMAC: &str = "load-globex-hmac-0123456789abcdef";
pub const CONCURRENCY: usize = 256;
/// No load test runs longer than this, whatever the request count.
pub const LOAD_TIME_LIMIT: Duration = Duration::from_secs(240);

/// The tests share two cores: run them one at a time, so that the timing
/// assertions of one are not the CPU load of another.
pub static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

pub fn requests() -> u64 {
    std::env::var("TOWER_IDENTITY_LOAD_REQUESTS").ok().and_then(|n| n.parse().ok()).unwrap_or(100_000)
}

pub fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

pub fn text(s: &str) -> Secret {
    Secret::text(s).unwrap()
}

pub fn sha(bytes: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(bytes))
}

// ---------------------------------------------------------------------------
// The mixed load

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    HmacHeader,
    HmacBody,
    JwtBearer,
    JwtHeader,
    FlippedSignature,
    TruncatedSignature,
    FlippedToken,
    TruncatedToken,
    OtherUser,
    NoCredentials,
    WrongTenant,
    UnknownTenant,
}

pub const KINDS: [Kind; 12] = [
    Kind::HmacHeader,
    Kind::HmacBody,
    Kind::JwtBearer,
    Kind::JwtHeader,
    Kind::FlippedSignature,
    Kind::TruncatedSignature,
    Kind::FlippedToken,
    Kind::TruncatedToken,
    Kind::OtherUser,
    Kind::NoCredentials,
    Kind::WrongTenant,
    Kind::UnknownTenant,
];

/// One request and the verdict it must get.
pub struct Case {
    pub rid: String,
    pub kind: Kind,
    /// `None`: must pass, seen as this identity; `Some(code)`: must be refused with 401 `code`.
    pub reject: Option<&'static str>,
    pub identity: String,
    pub headers: Vec<(&'static str, String)>,
    pub body: Bytes,
    pub body_sha: String,
    pub chunks: Vec<usize>,
    pub with_length: bool,
}

/// Flips one bit of one byte of a hex signature (a valid hex signature of another tag).
pub fn flip_hex(sig: &str, rng: &mut Rng) -> String {
    let mut tag = hex::decode(sig).unwrap();
    let i = rng.below(tag.len() as u64) as usize;
    tag[i] ^= 1 << rng.below(8);
    hex::encode(tag)
}

/// Changes one character of a token's payload or signature (not the last
/// character of a part, whose spare bits strict base64url refuses).
pub fn flip_token(token: &str, rng: &mut Rng) -> String {
    let first_dot = token.find('.').unwrap();
    let second_dot = token.rfind('.').unwrap();
    let candidates: Vec<usize> = (first_dot + 1..token.len())
        .filter(|&i| i != second_dot && i + 1 != second_dot && i + 1 != token.len())
        .collect();
    let i = candidates[rng.below(candidates.len() as u64) as usize];
    let mut bytes = token.as_bytes().to_vec();
    bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
    String::from_utf8(bytes).unwrap()
}

pub fn case(n: u64, iat: u64) -> Case {
    let mut rng = Rng::new(n + 1);
    let kind = KINDS[rng.below(KINDS.len() as u64) as usize];
    let rid = format!("r{n}");
    let user = format!("u-{n}");
    let email = format!("e{n}@example.com");
    let hmac = || sign::hmac(&text(ACME_HMAC), &user);
    let token = || sign::jwt_token(&text(ACME_JWT), "acme", &email, None, iat, 600, []);
    let mut headers = vec![("x-request-id", rid.clone()), ("x-app-id", "acme".to_owned())];
    let mut body_identity = None;
    let (reject, identity) = match kind {
        Kind::HmacHeader => {
            headers.extend([("x-user-id", user.clone()), ("x-identity-signature", hmac())]);
            (None, user.clone())
        }
        Kind::HmacBody => {
            body_identity = Some((user.clone(), hmac()));
            (None, user.clone())
        }
        Kind::JwtBearer => {
            headers.push(("authorization", format!("Bearer {}", token())));
            (None, email.clone())
        }
        Kind::JwtHeader => {
            headers.push(("x-identity-token", token()));
            (None, email.clone())
        }
        Kind::FlippedSignature => {
            let sig = flip_hex(&hmac(), &mut rng);
            if rng.below(2) == 0 {
                headers.extend([("x-user-id", user.clone()), ("x-identity-signature", sig)]);
            } else {
                body_identity = Some((user.clone(), sig));
            }
            (Some("signature_invalid"), String::new())
        }
        Kind::TruncatedSignature => {
            let sig = hmac();
            let keep = 1 + rng.below(63) as usize;
            headers.extend([("x-user-id", user.clone()), ("x-identity-signature", sig[..keep].to_owned())]);
            (Some("credential_malformed"), String::new())
        }
        Kind::FlippedToken => {
            headers.push(("x-identity-token", flip_token(&token(), &mut rng)));
            (Some("signature_invalid"), String::new())
        }
        Kind::TruncatedToken => {
            let t = token();
            let keep = 1 + rng.below(t.len() as u64 - 1) as usize;
            headers.push(("authorization", format!("Bearer {}", &t[..keep])));
            (Some("credential_malformed"), String::new())
        }
        Kind::OtherUser => {
            headers.extend([("x-user-id", format!("u-{}", n + 1)), ("x-identity-signature", hmac())]);
            (Some("signature_invalid"), String::new())
        }
        Kind::NoCredentials => (Some("credential_missing"), String::new()),
        Kind::WrongTenant | Kind::UnknownTenant => {
            headers[1].1 = if kind == Kind::WrongTenant { "globex".into() } else { format!("nobody-{n}") };
            if rng.below(2) == 0 {
                headers.extend([("x-user-id", user.clone()), ("x-identity-signature", hmac())]);
            } else {
                headers.push(("x-identity-token", token()));
            }
            (Some("signature_invalid"), String::new())
        }
    };
    let expect = match reject {
        None => "200".to_owned(),
        Some(code) => format!("401 {code}"),
    };
    headers.push(("x-expect", expect));
    // A JSON body of 40 B to 4 KiB, with the identity for HmacBody.
    let mut json = format!(r#"{{"rid":"{rid}""#);
    if let Some((user, sig)) = body_identity {
        json.push_str(&format!(r#","user_id":"{user}","user_hash":"{sig}""#));
    }
    json.push_str(r#","pad":""#);
    let len = 40 + rng.below(4056) as usize;
    let letters: Vec<char> = (0..16).map(|_| (b'a' + rng.below(26) as u8) as char).collect();
    json.extend(letters.iter().cycle().take(len.saturating_sub(json.len() + 2)));
    json.push_str(r#""}"#);
    let body = Bytes::from(json);
    let mut chunks = Vec::new();
    let mut rest = body.len();
    let one_chunk = rng.below(3) == 0;
    while rest > 0 {
        let n = if one_chunk { rest } else { (1 + rng.below(2048) as usize).min(rest) };
        chunks.push(n);
        rest -= n;
    }
    let body_sha = sha(&body);
    Case { rid, kind, reject, identity, headers, body, body_sha, chunks, with_length: rng.below(2) == 0 }
}

/// A request body sent in the given chunks, each after a yield so that they
/// travel separately; with an exact size (Content-Length) or not (chunked).
pub struct Chunked {
    chunks: VecDeque<Bytes>,
    remaining: u64,
    exact: bool,
    yielded: bool,
}

impl Chunked {
    fn new(body: &Bytes, sizes: &[usize], exact: bool) -> Chunked {
        let mut chunks = VecDeque::new();
        let mut at = 0;
        for &n in sizes {
            chunks.push_back(body.slice(at..at + n));
            at += n;
        }
        Chunked { chunks, remaining: body.len() as u64, exact, yielded: false }
    }
}

impl Body for Chunked {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = &mut *self;
        if this.chunks.is_empty() {
            return Poll::Ready(None);
        }
        if !this.yielded {
            this.yielded = true;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        this.yielded = false;
        let chunk = this.chunks.pop_front().unwrap();
        this.remaining -= chunk.len() as u64;
        Poll::Ready(Some(Ok(Frame::data(chunk))))
    }

    fn is_end_stream(&self) -> bool {
        self.chunks.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        if self.exact { SizeHint::with_exact(self.remaining) } else { SizeHint::new() }
    }
}

pub type LoadClient = Client<HttpConnector, Chunked>;

/// A pooled client; TCP_NODELAY, or Nagle's algorithm and delayed ACKs add
/// 40 ms to requests whose body is written after the headers.
pub fn load_client() -> LoadClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(CONCURRENCY)
        .pool_idle_timeout(Duration::from_secs(30))
        .build(connector)
}

/// What the clients saw.
#[derive(Default)]
pub struct Tally {
    pub sent: AtomicU64,
    pub passed: AtomicU64,
    pub rejected: AtomicU64,
    pub wrong_verdict: AtomicU64,
    pub crossed_identity: AtomicU64,
    pub wrong_request_id: AtomicU64,
    pub altered_body: AtomicU64,
    pub client_errors: AtomicU64,
    pub by_kind: Mutex<BTreeMap<String, u64>>,
    pub samples: Mutex<Vec<String>>,
}

impl Tally {
    pub fn fail(&self, counter: &AtomicU64, what: String) {
        counter.fetch_add(1, Ordering::Relaxed);
        let mut samples = self.samples.lock().unwrap();
        if samples.len() < 10 {
            samples.push(what);
        }
    }

    pub fn failures(&self) -> u64 {
        [&self.wrong_verdict, &self.crossed_identity, &self.wrong_request_id, &self.altered_body, &self.client_errors]
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .sum()
    }

    pub fn print(&self, name: &str, elapsed: Duration) {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let sent = get(&self.sent);
        println!(
            "{name}: {sent} requests at {CONCURRENCY} concurrency in {elapsed:.1?} ({:.0} req/s): {} passed, {} rejected; \
             wrong verdicts {}, crossed identities {}, wrong request ids {}, altered bodies {}, client errors {}",
            sent as f64 / elapsed.as_secs_f64(),
            get(&self.passed),
            get(&self.rejected),
            get(&self.wrong_verdict),
            get(&self.crossed_identity),
            get(&self.wrong_request_id),
            get(&self.altered_body),
            get(&self.client_errors),
        );
        println!("{name}: by kind and verdict: {:?}", self.by_kind.lock().unwrap());
        for s in self.samples.lock().unwrap().iter() {
            println!("{name}: FAILURE {s}");
        }
    }
}

/// Sends one case and checks the answer against its expected verdict.
pub async fn check(client: &LoadClient, addr: SocketAddr, c: Case, tally: &Tally) {
    let mut req = Request::post(format!("http://{addr}/echo")).header("content-type", "application/json");
    for (k, v) in &c.headers {
        req = req.header(*k, v);
    }
    let req = req.body(Chunked::new(&c.body, &c.chunks, c.with_length)).unwrap();
    tally.sent.fetch_add(1, Ordering::Relaxed);
    let answer = tokio::time::timeout(Duration::from_secs(30), async {
        let res = client.request(req).await.map_err(|e| format!("{e:?}"))?;
        let status = res.status();
        let body = res.into_body().collect().await.map_err(|e| format!("{e:?}"))?.to_bytes();
        Ok::<_, String>((status, String::from_utf8_lossy(&body).into_owned()))
    })
    .await;
    let (status, text) = match answer {
        Ok(Ok(answer)) => answer,
        Ok(Err(e)) => return tally.fail(&tally.client_errors, format!("{} {:?}: {e}", c.rid, c.kind)),
        Err(_) => return tally.fail(&tally.client_errors, format!("{} {:?}: no answer in 30 s", c.rid, c.kind)),
    };
    let verdict = match c.reject {
        None => {
            if status != StatusCode::OK {
                return tally
                    .fail(&tally.wrong_verdict, format!("{} {:?}: expected 200, got {status} {text}", c.rid, c.kind));
            }
            // The handler's echo: request id, identity, tenant, sha256 of the body.
            let mut echo = text.split(' ');
            let (rid, id, tenant, body_sha) = (echo.next(), echo.next(), echo.next(), echo.next());
            if rid != Some(c.rid.as_str()) {
                return tally.fail(&tally.wrong_request_id, format!("{} {:?}: answered for {rid:?}", c.rid, c.kind));
            }
            if id != Some(c.identity.as_str()) || tenant != Some("acme") {
                return tally.fail(
                    &tally.crossed_identity,
                    format!(
                        "{} {:?}: expected {} of acme, the handler saw {id:?} of {tenant:?}",
                        c.rid, c.kind, c.identity
                    ),
                );
            }
            if body_sha != Some(c.body_sha.as_str()) {
                return tally.fail(&tally.altered_body, format!("{} {:?}: the body arrived altered", c.rid, c.kind));
            }
            tally.passed.fetch_add(1, Ordering::Relaxed);
            "200".to_owned()
        }
        Some(code) => {
            let got = serde_json::from_str::<serde_json::Value>(&text)
                .ok()
                .and_then(|v| v["error"].as_str().map(str::to_owned))
                .unwrap_or_default();
            if status != StatusCode::UNAUTHORIZED || got != code {
                return tally.fail(
                    &tally.wrong_verdict,
                    format!("{} {:?}: expected 401 {code}, got {status} {text}", c.rid, c.kind),
                );
            }
            tally.rejected.fetch_add(1, Ordering::Relaxed);
            format!("401 {code}")
        }
    };
    *tally.by_kind.lock().unwrap().entry(format!("{:?} {verdict}", c.kind)).or_default() += 1;
}

/// Runs `total` cases against `addr` from `CONCURRENCY` workers sharing one pooled client.
pub async fn drive(addr: SocketAddr, total: u64) -> (Arc<Tally>, Duration) {
    let client = load_client();
    let tally = Arc::new(Tally::default());
    let next = Arc::new(AtomicU64::new(0));
    let iat = now();
    let started = Instant::now();
    let workers: Vec<_> = (0..CONCURRENCY)
        .map(|_| {
            let (client, tally, next) = (client.clone(), tally.clone(), next.clone());
            tokio::spawn(async move {
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n >= total || started.elapsed() > LOAD_TIME_LIMIT {
                        break;
                    }
                    check(&client, addr, case(n, iat), &tally).await;
                }
            })
        })
        .collect();
    for w in workers {
        w.await.unwrap();
    }
    (tally, started.elapsed())
}

/// The echo both servers answer: request id, identity, tenant, sha256 of the body.
pub fn echo(headers: &HeaderMap, id: &str, tenant: &str, body: &[u8]) -> String {
    let rid = headers.get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or("-");
    format!("{rid} {id} {tenant} {}", sha(body))
}

/// Requests the handler or upstream received although the client expected them refused.
#[derive(Clone, Default)]
pub struct ServerSide {
    pub calls: Arc<AtomicU64>,
    pub unexpected: Arc<AtomicU64>,
    pub credentials_seen: Arc<AtomicU64>,
    /// Slow JSON bodies that reached the upstream at all (counted on arrival,
    /// before the body is read: they must be refused before forwarding).
    pub slow_json_arrived: Arc<AtomicU64>,
}

impl ServerSide {
    pub fn saw(&self, headers: &HeaderMap) {
        self.calls.fetch_add(1, Ordering::Relaxed);
        if headers.get("x-expect").is_none_or(|v| v != "200") {
            self.unexpected.fetch_add(1, Ordering::Relaxed);
        }
    }
}

pub fn assert_clean(name: &str, tally: &Tally, server: &ServerSide, total: u64) {
    let calls = server.calls.load(Ordering::Relaxed);
    let passed = tally.passed.load(Ordering::Relaxed);
    println!(
        "{name}: the server side saw {calls} requests, {} expected to be refused",
        server.unexpected.load(Ordering::Relaxed)
    );
    assert_eq!(tally.failures(), 0, "{name}: see the FAILURE lines above");
    assert_eq!(tally.sent.load(Ordering::Relaxed), total, "{name}: every request was sent within {LOAD_TIME_LIMIT:?}");
    assert_eq!(passed + tally.rejected.load(Ordering::Relaxed), total, "{name}");
    assert_eq!(server.unexpected.load(Ordering::Relaxed), 0, "{name}: a request to refuse reached the server");
    assert_eq!(calls, passed, "{name}: exactly the passing requests reached the server");
    assert!(passed > total / 4 && passed < total / 2, "{name}: a mixed load ({passed} of {total} passed)");
}
