//! Load, slow clients and memory, all on 127.0.0.1:
//!
//! - a mixed load (valid HMAC and JWT, mutated credentials, none, wrong
//!   tenants; JSON bodies of random sizes sent in random chunks) through the
//!   layer in an axum server, and through `identity-proxy` in front of an
//!   echoing upstream: no wrong verdict, no identity crossing between
//!   requests, no altered body, no panic;
//! - slow clients against `identity-proxy`: slow headers (first request, or
//!   the next one on a kept-alive connection), silent connections, a slow
//!   HTTP/2 preface and slow bodies (read for the identity, or streamed to the
//!   upstream) are closed or answered 408 by their deadline while normal
//!   traffic is served;
//! - 200 concurrent uploads just over the body limit and one declaring an
//!   absurd `Content-Length` are answered 413, and the proxy's resident memory
//!   returns to its baseline.
//!
//! `TOWER_IDENTITY_LOAD_REQUESTS` sets the number of requests of each load
//! test (default 100,000).

use std::collections::{BTreeMap, VecDeque};
use std::convert::Infallible;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::post;
use bytes::Bytes;
use http::{HeaderMap, HeaderName, Request, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use sha2::Digest;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower_identity::{
    Identifier, IdentityVerificationLayer, Key, KeySet, Role, Secret, Sources, TenantMap, VerifiedIdentity, jwt, sign,
};

const BIN: &str = env!("CARGO_BIN_EXE_identity-proxy");
const ACME_HMAC: &str = "load-acme-hmac-0123456789abcdef";
const ACME_JWT: &str = "load-acme-jwt-0123456789abcdef";
const GLOBEX_HMAC: &str = "load-globex-hmac-0123456789abcdef";
const CONCURRENCY: usize = 256;
/// No load test runs longer than this, whatever the request count.
const LOAD_TIME_LIMIT: Duration = Duration::from_secs(240);

/// The tests share two cores: run them one at a time, so that the timing
/// assertions of one are not the CPU load of another.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn requests() -> u64 {
    std::env::var("TOWER_IDENTITY_LOAD_REQUESTS").ok().and_then(|n| n.parse().ok()).unwrap_or(100_000)
}

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

fn text(s: &str) -> Secret {
    Secret::text(s).unwrap()
}

fn sha(bytes: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(bytes))
}

/// A deterministic xorshift generator (one per request, seeded by its id).
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

// ---------------------------------------------------------------------------
// The mixed load

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
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

const KINDS: [Kind; 12] = [
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
struct Case {
    rid: String,
    kind: Kind,
    /// `None`: must pass, seen as this identity; `Some(code)`: must be refused with 401 `code`.
    reject: Option<&'static str>,
    identity: String,
    headers: Vec<(&'static str, String)>,
    body: Bytes,
    body_sha: String,
    chunks: Vec<usize>,
    with_length: bool,
}

/// Flips one bit of one byte of a hex signature (a valid hex signature of another tag).
fn flip_hex(sig: &str, rng: &mut Rng) -> String {
    let mut tag = hex::decode(sig).unwrap();
    let i = rng.below(tag.len() as u64) as usize;
    tag[i] ^= 1 << rng.below(8);
    hex::encode(tag)
}

/// Changes one character of a token's payload or signature (not the last
/// character of a part, whose spare bits strict base64url refuses).
fn flip_token(token: &str, rng: &mut Rng) -> String {
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

fn case(n: u64, iat: u64) -> Case {
    let mut rng = Rng::new(n + 1);
    let kind = KINDS[rng.below(KINDS.len() as u64) as usize];
    let rid = format!("r{n}");
    let user = format!("u-{n}");
    let email = format!("e{n}@example.com");
    let hmac = || sign::hmac(&text(ACME_HMAC), &user);
    let token = || jwt::token(&text(ACME_JWT), "acme", &email, None, iat, 600, []);
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
struct Chunked {
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

type LoadClient = Client<HttpConnector, Chunked>;

/// A pooled client; TCP_NODELAY, or Nagle's algorithm and delayed ACKs add
/// 40 ms to requests whose body is written after the headers.
fn load_client() -> LoadClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(CONCURRENCY)
        .pool_idle_timeout(Duration::from_secs(30))
        .build(connector)
}

/// What the clients saw.
#[derive(Default)]
struct Tally {
    sent: AtomicU64,
    passed: AtomicU64,
    rejected: AtomicU64,
    wrong_verdict: AtomicU64,
    crossed_identity: AtomicU64,
    wrong_request_id: AtomicU64,
    altered_body: AtomicU64,
    client_errors: AtomicU64,
    by_kind: Mutex<BTreeMap<String, u64>>,
    samples: Mutex<Vec<String>>,
}

impl Tally {
    fn fail(&self, counter: &AtomicU64, what: String) {
        counter.fetch_add(1, Ordering::Relaxed);
        let mut samples = self.samples.lock().unwrap();
        if samples.len() < 10 {
            samples.push(what);
        }
    }

    fn failures(&self) -> u64 {
        [&self.wrong_verdict, &self.crossed_identity, &self.wrong_request_id, &self.altered_body, &self.client_errors]
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .sum()
    }

    fn print(&self, name: &str, elapsed: Duration) {
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
async fn check(client: &LoadClient, addr: SocketAddr, c: Case, tally: &Tally) {
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
async fn drive(addr: SocketAddr, total: u64) -> (Arc<Tally>, Duration) {
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

/// Counts panics anywhere in this process (the axum server runs in it).
static PANICS: AtomicUsize = AtomicUsize::new(0);

fn count_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            PANICS.fetch_add(1, Ordering::SeqCst);
            previous(info);
        }));
    });
}

/// The echo both servers answer: request id, identity, tenant, sha256 of the body.
fn echo(headers: &HeaderMap, id: &str, tenant: &str, body: &[u8]) -> String {
    let rid = headers.get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or("-");
    format!("{rid} {id} {tenant} {}", sha(body))
}

/// Requests the handler or upstream received although the client expected them refused.
#[derive(Clone, Default)]
struct ServerSide {
    calls: Arc<AtomicU64>,
    unexpected: Arc<AtomicU64>,
    credentials_seen: Arc<AtomicU64>,
    /// Slow JSON bodies that reached the upstream at all (counted on arrival,
    /// before the body is read: they must be refused before forwarding).
    slow_json_arrived: Arc<AtomicU64>,
}

impl ServerSide {
    fn saw(&self, headers: &HeaderMap) {
        self.calls.fetch_add(1, Ordering::Relaxed);
        if headers.get("x-expect").is_none_or(|v| v != "200") {
            self.unexpected.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn tenants() -> TenantMap {
    let acme = KeySet::new([
        Key::hmac(Identifier::UserId, text(ACME_HMAC)).with_id("acme-hmac"),
        Key::jwt(text(ACME_JWT)).with_id("acme-jwt"),
    ])
    .unwrap()
    .with_audience("acme");
    TenantMap::new()
        .tenant("acme", acme)
        .tenant("globex", KeySet::single(Key::hmac(Identifier::UserId, text(GLOBEX_HMAC))))
}

fn assert_clean(name: &str, tally: &Tally, server: &ServerSide, total: u64) {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_load_through_the_layer_in_axum() {
    let _serial = SERIAL.lock().await;
    count_panics();
    let panics_before = PANICS.load(Ordering::SeqCst);
    let server = ServerSide::default();
    let seen = server.clone();
    let handler = move |identity: VerifiedIdentity, headers: HeaderMap, body: Bytes| {
        let seen = seen.clone();
        async move {
            seen.saw(&headers);
            echo(&headers, identity.id(), identity.tenant().unwrap_or("-"), &body)
        }
    };
    let sources = Sources::new()
        .header(Role::Tenant, HeaderName::from_static("x-app-id"))
        .bearer()
        .json(Role::UserId, "/user_id")
        .json(Role::Signature, "/user_hash");
    let app = Router::new()
        .route("/echo", post(handler))
        .route_layer(IdentityVerificationLayer::new(tenants()).sources(sources));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let task = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let total = requests();
    let (tally, elapsed) = drive(addr, total).await;
    tally.print("layer in axum", elapsed);
    let panics = PANICS.load(Ordering::SeqCst) - panics_before;
    println!("layer in axum: {panics} panics");
    assert!(!task.is_finished(), "the server is still running");
    assert_eq!(panics, 0, "no panic while serving");
    assert_clean("layer in axum", &tally, &server, total);
    // Still healthy: new connections get the right verdicts.
    let (after, _) = drive(addr, 50).await;
    assert_eq!(after.failures(), 0, "the server still answers correctly");
    task.abort();
}

// ---------------------------------------------------------------------------
// identity-proxy

/// An upstream that echoes what it received (see [`echo`]), recording it on `server`.
async fn upstream(server: ServerSide) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            };
            let server = server.clone();
            let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let server = server.clone();
                async move {
                    let (parts, body) = req.into_parts();
                    if parts.headers.contains_key("x-slow-json") {
                        server.slow_json_arrived.fetch_add(1, Ordering::Relaxed);
                    }
                    let Ok(body) = body.collect().await.map(|b| b.to_bytes()) else {
                        return Ok(Response::builder().status(400).body(Full::new(Bytes::new())).unwrap());
                    };
                    let h = &parts.headers;
                    server.saw(h);
                    if ["x-identity-signature", "x-identity-token", "authorization", "x-user-id"]
                        .iter()
                        .any(|n| h.contains_key(*n))
                    {
                        server.credentials_seen.fetch_add(1, Ordering::Relaxed);
                    }
                    let value = |n: &str| h.get(n).and_then(|v| v.to_str().ok()).map(str::to_owned);
                    let id = value("x-verified-email").or_else(|| value("x-verified-user-id")).unwrap_or("-".into());
                    let tenant = value("x-verified-tenant").unwrap_or("-".into());
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(echo(h, &id, &tenant, &body)))))
                }
            });
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
            });
        }
    });
    (addr, task)
}

struct Proxy {
    child: Child,
    addr: SocketAddr,
    dir: PathBuf,
    /// Lines of the proxy's log with "panicked".
    panics: Arc<AtomicUsize>,
}

impl Proxy {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process is still running.
    fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Starts identity-proxy in front of `upstream` with the load tests' tenants,
/// `extra` configuration and `env`, and waits for its "listening on" line.
fn start_proxy(name: &str, upstream: SocketAddr, extra: &str, sources_extra: &str, env: &[(&str, &str)]) -> Proxy {
    let dir = std::env::temp_dir().join(format!("identity-proxy-load-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for (file, secret) in [("acme-hmac", ACME_HMAC), ("acme-jwt", ACME_JWT), ("globex-hmac", GLOBEX_HMAC)] {
        std::fs::write(dir.join(file), secret).unwrap();
    }
    let config = format!(
        r#"
listen = "127.0.0.1:0"
upstream = "http://{upstream}"
mode = "required"
strip_credentials = true
metrics_path = ""
upstream_timeout_secs = 10
reload_poll_secs = 0
shutdown_grace_secs = 1
{extra}

[sources]
headers = {{ tenant = "x-app-id" }}
bearer = true
json = {{ user_id = "/user_id", signature = "/user_hash" }}
{sources_extra}

[[tenants]]
id = "acme"
audience = "acme"
[[tenants.keys]]
id = "acme-hmac"
scheme = "hmac"
secret_file = "acme-hmac"
[[tenants.keys]]
id = "acme-jwt"
scheme = "jwt"
secret_file = "acme-jwt"

[[tenants]]
id = "globex"
[[tenants.keys]]
scheme = "hmac"
secret_file = "globex-hmac"
"#
    );
    std::fs::write(dir.join("proxy.toml"), config).unwrap();
    let mut child = Command::new(BIN)
        .arg("--config")
        .arg(dir.join("proxy.toml"))
        .env("RUST_LOG", "info")
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let panics = Arc::new(AtomicUsize::new(0));
    let (tx, rx) = std::sync::mpsc::channel();
    let counted = panics.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(at) = line.find("listening on http://") {
                let _ = tx.send(line[at + 20..].split_whitespace().next().unwrap().to_owned());
            }
            if line.contains("panicked") {
                counted.fetch_add(1, Ordering::SeqCst);
                eprintln!("identity-proxy: {line}");
            }
        }
    });
    let addr = rx.recv_timeout(Duration::from_secs(30)).expect("the proxy did not start").parse().unwrap();
    Proxy { child, addr, dir, panics }
}

async fn healthz(addr: SocketAddr) -> StatusCode {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let req = Request::get(format!("http://{addr}/healthz")).body(Full::new(Bytes::new())).unwrap();
    match tokio::time::timeout(Duration::from_secs(5), client.request(req)).await {
        Ok(Ok(res)) => res.status(),
        _ => StatusCode::SERVICE_UNAVAILABLE,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_load_through_identity_proxy() {
    let _serial = SERIAL.lock().await;
    let server = ServerSide::default();
    let (up, _upstream) = upstream(server.clone()).await;
    let mut proxy = start_proxy("mixed", up, "", "", &[]);
    let total = requests();
    let (tally, elapsed) = drive(proxy.addr, total).await;
    tally.print("identity-proxy", elapsed);
    let panics = proxy.panics.load(Ordering::SeqCst);
    let credentials = server.credentials_seen.load(Ordering::Relaxed);
    println!("identity-proxy: {panics} panics, {credentials} requests reached the upstream with credentials");
    assert!(proxy.alive(), "the proxy is still running");
    assert_eq!(healthz(proxy.addr).await, StatusCode::OK, "the proxy is still healthy");
    assert_eq!(panics, 0, "no panic while serving");
    assert_eq!(credentials, 0, "strip_credentials: the upstream never sees signatures or tokens");
    assert_clean("identity-proxy", &tally, &server, total);
}

// ---------------------------------------------------------------------------
// Slow clients

/// How a slow connection ended.
#[derive(Debug)]
struct Ended {
    /// What the proxy sent (empty when it closed without a response).
    answer: String,
    /// From the moment the deadline started (connect, or the end of the headers).
    after: Duration,
}

/// Connects, sends `fast` at once, then `slow` one byte at a time every
/// `pace()`; reads until the proxy answers or closes (at most `limit`).
async fn slow_client(
    addr: SocketAddr,
    fast: Vec<u8>,
    slow: Vec<u8>,
    mut pace: impl FnMut() -> Duration + Send + 'static,
    limit: Duration,
) -> Ended {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut read, mut write) = stream.into_split();
    let started = Instant::now();
    let writer = tokio::spawn(async move {
        if write.write_all(&fast).await.is_err() {
            return;
        }
        for byte in slow {
            tokio::time::sleep(pace()).await;
            if write.write_all(&[byte]).await.is_err() {
                return;
            }
        }
        // Everything sent: keep the connection open.
        tokio::time::sleep(Duration::from_secs(60)).await;
        drop(write);
    });
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(limit, async {
        let mut buf = [0u8; 1024];
        loop {
            match read.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    let after = started.elapsed();
    writer.abort();
    Ended { answer: String::from_utf8_lossy(&answer).into_owned(), after }
}

fn request_head(addr: SocketAddr, content_type: &str, length: Option<usize>, extra: &[(&str, String)]) -> String {
    let mut head = format!("POST /echo HTTP/1.1\r\nhost: {addr}\r\ncontent-type: {content_type}\r\nx-app-id: acme\r\n");
    match length {
        Some(n) => head.push_str(&format!("content-length: {n}\r\n")),
        None => head.push_str("transfer-encoding: chunked\r\n"),
    }
    for (k, v) in extra {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    head
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_cut_off_by_their_deadlines_while_normal_traffic_flows() {
    let _serial = SERIAL.lock().await;
    const HEADER_DEADLINE: Duration = Duration::from_secs(1);
    const BODY_DEADLINE: Duration = Duration::from_secs(2);
    let slack = Duration::from_millis(1500);
    let server = ServerSide::default();
    let (up, _upstream) = upstream(server.clone()).await;
    let mut proxy = start_proxy("slow", up, "header_read_timeout_secs = 1\nbody_read_timeout_secs = 2", "", &[]);
    let addr = proxy.addr;
    let started = Instant::now();

    let paced = |seed: u64| {
        let mut rng = Rng::new(seed);
        move || Duration::from_millis(100 + rng.below(401))
    };
    let every_second = || Duration::from_secs(1);
    let limit = Duration::from_secs(10);
    let user = "slow-user";
    let sig = sign::hmac(&text(ACME_HMAC), user);
    let json = format!(r#"{{"user_id":"{user}","user_hash":"{sig}","text":"hello"}}"#).into_bytes();
    let mut slow = Vec::new();
    // Headers one byte every 100-500 ms: closed by the header deadline.
    for i in 0..8 {
        let head = request_head(addr, "application/json", Some(json.len()), &[]);
        slow.push((
            "slow headers",
            HEADER_DEADLINE,
            tokio::spawn(slow_client(addr, vec![], head.into_bytes(), paced(i), limit)),
        ));
    }
    // A kept-alive connection whose second request comes slowly: hyper's
    // header_read_timeout closes it after the first answer.
    for i in 0..2 {
        let first = format!("GET /healthz HTTP/1.1\r\nhost: {addr}\r\n\r\n").into_bytes();
        let head = request_head(addr, "application/json", Some(json.len()), &[]);
        let fut = slow_client(addr, first, head.into_bytes(), paced(300 + i), limit);
        slow.push(("slow second request", HEADER_DEADLINE, tokio::spawn(fut)));
    }
    // A connection that sends nothing, and one that sends the HTTP/2 preface slowly.
    for i in 0..4 {
        let fut = slow_client(addr, vec![], vec![], paced(100 + i), limit);
        slow.push(("silent connection", HEADER_DEADLINE, tokio::spawn(fut)));
        let preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        let fut = slow_client(addr, vec![], preface, paced(200 + i), limit);
        slow.push(("slow HTTP/2 preface", HEADER_DEADLINE, tokio::spawn(fut)));
    }
    // Bodies one byte a second, read by the proxy for the identity (with a
    // length, and chunked) or streamed to the upstream: 408 by the body deadline.
    for _ in 0..4 {
        let marked = [("x-slow-json", "1".to_owned())];
        let head = request_head(addr, "application/json", Some(json.len()), &marked);
        let fut = slow_client(addr, head.into_bytes(), json.clone(), every_second, limit);
        slow.push(("slow JSON body", BODY_DEADLINE, tokio::spawn(fut)));
        let head = request_head(addr, "application/json", None, &marked);
        let mut chunked = format!("{:x}\r\n", json.len()).into_bytes();
        chunked.extend_from_slice(&json);
        chunked.extend_from_slice(b"\r\n0\r\n\r\n");
        let fut = slow_client(addr, head.into_bytes(), chunked, every_second, limit);
        slow.push(("slow chunked JSON body", BODY_DEADLINE, tokio::spawn(fut)));
        let headers = [("x-user-id", user.to_owned()), ("x-identity-signature", sig.clone())];
        let head = request_head(addr, "text/plain", Some(100), &headers);
        let fut = slow_client(addr, head.into_bytes(), vec![b'x'; 100], every_second, limit);
        slow.push(("slow body streamed upstream", BODY_DEADLINE, tokio::spawn(fut)));
    }

    // Meanwhile, normal traffic: 32 workers, each request timed.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let client = load_client();
    let tally = Arc::new(Tally::default());
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let iat = now();
    let normal: Vec<_> = (0..32u64)
        .map(|w| {
            let (client, tally, latencies) = (client.clone(), tally.clone(), latencies.clone());
            tokio::spawn(async move {
                for i in 0..25u64 {
                    let t = Instant::now();
                    check(&client, addr, case(1_000_000 + w * 100 + i, iat), &tally).await;
                    latencies.lock().unwrap().push(t.elapsed());
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            })
        })
        .collect();
    for n in normal {
        n.await.unwrap();
    }
    let normal_done = started.elapsed();

    let mut summary: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    let mut problems = Vec::new();
    for (what, deadline, task) in slow {
        let ended = task.await.unwrap();
        // The answer to the fast first request of a kept-alive connection does not count.
        let answer = match ended.answer.strip_prefix("HTTP/1.1 200 OK") {
            Some(rest) if what == "slow second request" => rest.split_once("{\"status\":\"ok\"}").map_or("?", |r| r.1),
            _ if what == "slow second request" => "no answer to the first request",
            _ => ended.answer.as_str(),
        };
        let closed = answer.is_empty();
        let timed_out = answer.starts_with("HTTP/1.1 408") && answer.contains("request_timeout");
        summary.entry(what).or_default().push(format!(
            "{} after {:.2}s",
            if closed { "closed".to_owned() } else { answer.lines().next().unwrap_or("").to_owned() },
            ended.after.as_secs_f64()
        ));
        let expected_408 = deadline == BODY_DEADLINE;
        let ok_answer = if expected_408 { timed_out } else { closed || timed_out };
        if !ok_answer || ended.after > deadline + slack || ended.after + Duration::from_millis(200) < deadline {
            problems.push(format!("{what}: {:?} after {:?} (deadline {deadline:?})", ended.answer, ended.after));
        }
    }
    for (what, outcomes) in &summary {
        println!("{what}: {outcomes:?}");
    }
    let mut latencies = std::mem::take(&mut *latencies.lock().unwrap());
    latencies.sort();
    let pct = |p: usize| latencies[(latencies.len() - 1) * p / 100];
    println!(
        "normal traffic during the slow clients: {} requests in {normal_done:.1?}, {} passed, {} rejected, \
         latency p50 {:?} p99 {:?} max {:?}",
        latencies.len(),
        tally.passed.load(Ordering::Relaxed),
        tally.rejected.load(Ordering::Relaxed),
        pct(50),
        pct(99),
        pct(100)
    );
    tally.print("normal traffic", normal_done);
    assert!(problems.is_empty(), "slow clients not cut off by their deadline:\n{}", problems.join("\n"));
    assert_eq!(tally.failures(), 0, "normal traffic is unaffected");
    assert_eq!(latencies.len(), 800);
    assert!(pct(100) < Duration::from_millis(1000), "normal requests are not held up by slow clients");
    assert_eq!(server.unexpected.load(Ordering::Relaxed), 0);
    assert_eq!(
        server.slow_json_arrived.load(Ordering::Relaxed),
        0,
        "a slow JSON body was forwarded before it was read"
    );
    assert!(proxy.alive());
    assert_eq!(healthz(addr).await, StatusCode::OK);
    assert_eq!(proxy.panics.load(Ordering::SeqCst), 0);
}

// ---------------------------------------------------------------------------
// Memory

fn rss_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Sends a raw request in two parts, `first`, then `rest` once `release`
/// opens (so that many uploads are held by the proxy at the same time), and
/// returns the status line of the answer, read even if the proxy answers and
/// closes before the body is sent.
async fn staged(
    addr: SocketAddr,
    first: Vec<u8>,
    rest: Vec<u8>,
    sent: Arc<AtomicUsize>,
    mut release: tokio::sync::watch::Receiver<bool>,
) -> String {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let (mut read, mut write) = stream.into_split();
    let writer = tokio::spawn(async move {
        let ok = write.write_all(&first).await.is_ok();
        sent.fetch_add(1, Ordering::SeqCst);
        let _ = tokio::time::timeout(Duration::from_secs(20), release.wait_for(|go| *go)).await;
        if ok {
            let _ = write.write_all(&rest).await;
        }
        // Keep the write side open until the answer is read.
        tokio::time::sleep(Duration::from_secs(30)).await;
        drop(write);
    });
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(45), async {
        let mut buf = [0u8; 4096];
        while !answer.windows(2).any(|w| w == b"\r\n") {
            match read.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    writer.abort();
    String::from_utf8_lossy(&answer).lines().next().unwrap_or("").to_owned()
}

const MEMORY_LIMIT: usize = 64 * 1024;
/// What each upload sends before it waits for the others.
const HELD: usize = 63 * 1024;
/// Uploads of each burst that declare their length (refused before reading).
const DECLARED: usize = 20;

/// An upload just over the body limit, split where it waits: chunked (read
/// up to the limit, then refused) or with its length declared (refused
/// before reading).
fn over_limit(addr: SocketAddr, n: usize, declared: bool) -> (Vec<u8>, Vec<u8>) {
    let user = format!("big-{n}");
    let sig = sign::hmac(&text(ACME_HMAC), &user);
    let mut json = format!(r#"{{"user_id":"{user}","user_hash":"{sig}","pad":""#).into_bytes();
    json.resize(MEMORY_LIMIT + 1 - 2, b'p');
    json.extend_from_slice(br#""}"#);
    assert_eq!(json.len(), MEMORY_LIMIT + 1);
    let (mut first, mut rest);
    if declared {
        first = request_head(addr, "application/json", Some(json.len()), &[]).into_bytes();
        first.extend_from_slice(&json[..HELD]);
        rest = json[HELD..].to_vec();
    } else {
        let chunk = |part: &[u8]| [format!("{:x}\r\n", part.len()).as_bytes(), part, b"\r\n"].concat();
        first = request_head(addr, "application/json", None, &[]).into_bytes();
        first.extend_from_slice(&chunk(&json[..HELD]));
        rest = chunk(&json[HELD..]);
        rest.extend_from_slice(b"0\r\n\r\n");
    }
    (first, rest)
}

/// `uploads` chunked uploads held by the proxy at the same time, `DECLARED`
/// uploads with their length declared, and one declaring 10^18 bytes;
/// samples the proxy's RSS while they are held. Returns the status lines and
/// the RSS sampled.
async fn burst(addr: SocketAddr, pid: u32, uploads: usize) -> (BTreeMap<String, usize>, u64) {
    let sent = Arc::new(AtomicUsize::new(0));
    let (release, go) = tokio::sync::watch::channel(false);
    let mut tasks: Vec<_> = (0..uploads + DECLARED)
        .map(|n| {
            let (first, rest) = over_limit(addr, n, n >= uploads);
            tokio::spawn(staged(addr, first, rest, sent.clone(), go.clone()))
        })
        .collect();
    let absurd = request_head(addr, "application/json", Some(0), &[])
        .replace("content-length: 0", "content-length: 1000000000000000000")
        + "{";
    tasks.push(tokio::spawn(staged(addr, absurd.into_bytes(), Vec::new(), Arc::default(), go)));
    // Every upload has sent its first part: let the proxy read them, sample, release.
    let waiting = Instant::now();
    while sent.load(Ordering::SeqCst) < uploads + DECLARED && waiting.elapsed() < Duration::from_secs(20) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let held = rss_kib(pid).0;
    release.send_replace(true);
    let mut statuses = BTreeMap::new();
    for t in tasks {
        *statuses.entry(t.await.unwrap()).or_default() += 1;
    }
    (statuses, held)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_uploads_are_refused_and_memory_returns_to_baseline() {
    let _serial = SERIAL.lock().await;
    let server = ServerSide::default();
    let (up, _upstream) = upstream(server.clone()).await;
    // glibc's malloc keeps freed 4-64 KiB buffers resident in its arenas, at
    // random: after identical bursts the RSS of this proxy was measured from
    // +1 % to +63 % over the baseline, and malloc_trim(0) (called through gdb)
    // brought every one of those processes 25 % *below* the baseline: retained
    // free memory, not a leak. With buffers of 4 KiB and more served by mmap
    // (returned to the system when freed) the RSS measures what the proxy
    // holds, not what the allocator caches: +0.1 % to +2.2 % over 18 bursts.
    // Allocators other than glibc's ignore the variable.
    let tunables = [("GLIBC_TUNABLES", "glibc.malloc.mmap_threshold=4096")];
    let mut proxy = start_proxy("memory", up, "", &format!("body_limit = {MEMORY_LIMIT}"), &tunables);
    let (addr, pid) = (proxy.addr, proxy.pid());
    let started = Instant::now();

    // Warm-up: normal traffic and a smaller burst, then let it settle.
    let (tally, _) = drive(addr, 2_000).await;
    assert_eq!(tally.failures(), 0);
    let (warm, _) = burst(addr, pid, 50).await;
    assert_eq!(warm.get("HTTP/1.1 413 Payload Too Large"), Some(&(50 + DECLARED + 1)), "{warm:?}");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (baseline, _) = rss_kib(pid);

    let (statuses, held) = burst(addr, pid, 200).await;
    let (during, peak) = rss_kib(pid);
    println!(
        "200 chunked uploads of {} bytes held at once, {DECLARED} declaring that length, one declaring 10^18: {statuses:?}",
        MEMORY_LIMIT + 1
    );
    let refused = statuses.get("HTTP/1.1 413 Payload Too Large");
    assert_eq!(refused, Some(&(200 + DECLARED + 1)), "every upload is refused: {statuses:?}");

    // Settle: at most 5 s for the memory to come back within 10 %.
    let mut after = during;
    let settle = Instant::now();
    while settle.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(250)).await;
        after = rss_kib(pid).0;
        if after * 10 <= baseline * 11 {
            break;
        }
    }
    println!(
        "identity-proxy RSS: baseline {baseline} KiB, uploads held {held} KiB, right after {during} KiB, \
         peak (VmHWM) {peak} KiB, after {:.1?} {after} KiB ({:+.1} %); test took {:.1?}",
        settle.elapsed(),
        (after as f64 / baseline as f64 - 1.0) * 100.0,
        started.elapsed()
    );
    assert_eq!(
        server.calls.load(Ordering::Relaxed),
        tally.passed.load(Ordering::Relaxed),
        "nothing over the limit was forwarded"
    );
    assert!(proxy.alive());
    assert_eq!(healthz(addr).await, StatusCode::OK);
    assert!(after * 10 <= baseline * 11, "RSS {after} KiB is more than 10 % over the baseline {baseline} KiB");
}
