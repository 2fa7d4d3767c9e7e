//! `identity-proxy` under load, slow clients and memory, all on 127.0.0.1:
//!
//! - the mixed load of `tests/support/load_cases.rs` through the proxy in
//!   front of an echoing upstream: no wrong verdict, no identity crossing
//!   between requests, no altered body, no credential reaching the upstream,
//!   no panic;
//! - slow clients: slow headers (first request, or the next one on a
//!   kept-alive connection), silent connections, a slow HTTP/2 preface and
//!   slow bodies (read for the identity, or streamed to the upstream) are
//!   closed or answered 408 by their deadline while normal traffic is served;
//! - 200 concurrent uploads just over the body limit and one declaring an
//!   absurd `Content-Length` are answered 413, and the proxy's resident memory
//!   returns to its baseline.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower_identity::sign;

use crate::load_cases::{
    ACME_HMAC, ACME_JWT, GLOBEX_HMAC, SERIAL, ServerSide, Tally, assert_clean, case, check, drive, echo, load_client,
    now, requests, text,
};
use crate::process::Proxy;
use crate::rng::Rng;

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

/// Starts identity-proxy in front of `upstream` with the load tests' tenants,
/// `extra` configuration and `env`.
fn start_proxy(name: &str, upstream: SocketAddr, extra: &str, sources_extra: &str, env: &[(&str, &str)]) -> Proxy {
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
    let secrets = [("acme-hmac", ACME_HMAC), ("acme-jwt", ACME_JWT), ("globex-hmac", GLOBEX_HMAC)];
    Proxy::start(&format!("load-{name}"), &config, &secrets, env)
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

pub fn rss_kib(pid: u32) -> (u64, u64) {
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
