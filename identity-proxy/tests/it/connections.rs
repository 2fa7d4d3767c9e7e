//! Connections and what they carry (issue 13, items 5, 6 and 9): HTTP/2
//! connections are closed when idle, too old or silent to pings; their
//! streams are bounded; trailers cannot smuggle identity headers to an h2c
//! upstream; transfer codings the proxy cannot forward are refused.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body::Frame;
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tower_identity::{Secret, sign};

use crate::process::{BIN, Proxy, temp_dir};
use crate::proxy::{SECRET, config, send, start, upstream};

/// An HTTP/2 (prior knowledge) connection to `addr` that has made one
/// request to `/healthz`; its task ends when the proxy closes the connection.
async fn idle_h2(addr: SocketAddr) -> Option<tokio::task::JoinHandle<()>> {
    let stream = TcpStream::connect(addr).await.ok()?;
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream)).await.ok()?;
    let task = tokio::spawn(async move {
        let _ = conn.await;
    });
    let req = Request::get(format!("http://{addr}/healthz")).body(Empty::<Bytes>::new()).unwrap();
    let res = sender.send_request(req).await.ok()?;
    (res.status() == StatusCode::OK).then_some(task)
}

/// `GET /healthz` on a new HTTP/1.1 connection: its status, or `None` when
/// there is no answer within two seconds.
async fn health(addr: SocketAddr) -> Option<StatusCode> {
    let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let req = Request::get(format!("http://{addr}/healthz")).body(Empty::new()).unwrap();
    let res = tokio::time::timeout(Duration::from_secs(2), client.request(req)).await.ok()?.ok()?;
    Some(res.status())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_http2_connections_are_closed_and_cannot_starve_the_proxy() {
    let (up, _seen, _task) = upstream(false).await;
    let dir = temp_dir("h2-idle");
    let cfg = config(up, "header_read_timeout_secs = 30\n[connections]\nidle_timeout_secs = 1\nmax_age_secs = 0");
    std::fs::write(dir.join("proxy.toml"), cfg).unwrap();
    std::fs::write(dir.join("secret.txt"), SECRET).unwrap();
    // 64 file descriptors: the idle connections below use all the proxy has.
    let mut command = Command::new("sh");
    command.arg("-c").arg(format!("ulimit -n 64 && exec {BIN} --config {}", dir.join("proxy.toml").display()));
    let proxy = Proxy::spawn(command, dir, vec![SECRET.to_owned()]);

    let mut idle = Vec::new();
    for _ in 0..60 {
        match tokio::time::timeout(Duration::from_secs(3), idle_h2(proxy.addr)).await {
            Ok(Some(task)) => idle.push(task),
            _ => break,
        }
    }
    assert!(idle.len() >= 30, "only {} idle HTTP/2 connections could be opened", idle.len());
    // A legitimate client is served although the idle connections took
    // every descriptor: they are closed once idle for a second.
    let mut served = false;
    for _ in 0..10 {
        if health(proxy.addr).await == Some(StatusCode::OK) {
            served = true;
            break;
        }
    }
    assert!(served, "a legitimate request was not served while idle HTTP/2 connections were open");
    for task in idle {
        tokio::time::timeout(Duration::from_secs(10), task).await.expect("an idle connection was not closed").unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busy_http2_connections_end_at_their_maximum_age_without_failing_requests() {
    let (up, _seen, _task) = upstream(false).await;
    let proxy = start("h2-age", &config(up, "[connections]\nmax_age_secs = 2\nidle_timeout_secs = 0"), SECRET);
    let stream = TcpStream::connect(proxy.addr).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream)).await.unwrap();
    let mut conn = tokio::spawn(conn);
    let mut answered = 0;
    let ended = tokio::time::timeout(Duration::from_secs(15), async {
        loop {
            tokio::select! {
                result = &mut conn => return result.unwrap(),
                () = tokio::time::sleep(Duration::from_millis(100)) => {}
            }
            let req = Request::get(format!("http://{}/healthz", proxy.addr)).body(Empty::<Bytes>::new()).unwrap();
            // After the proxy's GOAWAY, new requests are refused by the client itself.
            if let Ok(res) = sender.send_request(req).await {
                assert_eq!(res.status(), StatusCode::OK);
                answered += 1;
            }
        }
    })
    .await;
    assert!(ended.expect("a busy connection outlived its maximum age").is_ok(), "closed gracefully");
    assert!(answered > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_header_read_timeout_ends_idle_http1_connections_but_not_http2_ones() {
    let (up, _seen, _task) = upstream(false).await;
    let proxy = start(
        "head-timeout",
        &config(up, "header_read_timeout_secs = 1\n[connections]\nidle_timeout_secs = 0"),
        SECRET,
    );
    // HTTP/2: past the first request, only idle_timeout_secs (off here) ends an idle connection.
    let stream = TcpStream::connect(proxy.addr).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream)).await.unwrap();
    tokio::spawn(conn);
    for pause in [Duration::from_millis(2500), Duration::ZERO] {
        let req = Request::get(format!("http://{}/healthz", proxy.addr)).body(Empty::<Bytes>::new()).unwrap();
        assert_eq!(sender.send_request(req).await.expect("the HTTP/2 connection is open").status(), StatusCode::OK);
        tokio::time::sleep(pause).await;
    }
    // HTTP/1.1: a kept-alive connection without a next request is dropped.
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    stream.write_all(format!("GET /healthz HTTP/1.1\r\nhost: {}\r\n\r\n", proxy.addr).as_bytes()).await.unwrap();
    let started = std::time::Instant::now();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer)).await;
    let (answer, after) = (String::from_utf8_lossy(&answer), started.elapsed());
    assert!(answer.starts_with("HTTP/1.1 200 OK") && answer.ends_with(r#"{"status":"ok"}"#), "{answer}");
    assert!(after >= Duration::from_millis(800) && after < Duration::from_secs(5), "closed after {after:?}");
}

/// Opens an HTTP/2 connection to `addr` by hand (preface and empty SETTINGS)
/// and returns it with the SETTINGS the server sent first.
async fn raw_h2(addr: SocketAddr) -> (TcpStream, Vec<(u16, u32)>) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0").await.unwrap();
    let mut head = [0u8; 9];
    stream.read_exact(&mut head).await.unwrap();
    assert_eq!(head[3], 4, "the server's first frame is SETTINGS");
    let mut payload = vec![0u8; usize::from(head[1]) << 8 | usize::from(head[2])];
    stream.read_exact(&mut payload).await.unwrap();
    let settings = payload
        .chunks_exact(6)
        .map(|s| (u16::from_be_bytes([s[0], s[1]]), u32::from_be_bytes([s[2], s[3], s[4], s[5]])))
        .collect();
    (stream, settings)
}

/// Reads until the server closes `stream`; `false` if it is still open after ten seconds.
async fn closed_by_server(mut stream: TcpStream) -> bool {
    let mut buf = [0u8; 4096];
    tokio::time::timeout(Duration::from_secs(10), async {
        while let Ok(n @ 1..) = stream.read(&mut buf).await {
            let _ = n;
        }
    })
    .await
    .is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_streams_are_bounded_and_silent_peers_are_pinged_out() {
    const MAX_CONCURRENT_STREAMS: u16 = 3;
    let (up, _seen, _task) = upstream(false).await;
    let extra = "header_read_timeout_secs = 60\n[connections]\nidle_timeout_secs = 0\nmax_age_secs = 0\n\
                 http2_max_concurrent_streams = 7\nhttp2_keep_alive_interval_secs = 1\nhttp2_keep_alive_timeout_secs = 1";
    let proxy = start("h2-streams", &config(up, extra), SECRET);
    let (stream, settings) = raw_h2(proxy.addr).await;
    assert!(settings.contains(&(MAX_CONCURRENT_STREAMS, 7)), "{settings:?}");
    // This client never acknowledges the pings (nor anything else): with
    // no idle timeout, no maximum age and a first-request deadline of a
    // minute, only the unanswered ping closes it.
    assert!(closed_by_server(stream).await, "a peer that does not answer pings kept its connection");

    // The default is bounded too.
    let proxy = start("h2-streams-default", &config(up, ""), SECRET);
    let (_stream, settings) = raw_h2(proxy.addr).await;
    assert!(settings.contains(&(MAX_CONCURRENT_STREAMS, 100)), "{settings:?}");
}

/// An h2c upstream that records each request's trailers.
async fn trailer_upstream() -> (SocketAddr, Arc<Mutex<Vec<HeaderMap>>>) {
    let seen: Arc<Mutex<Vec<HeaderMap>>> = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let rec = seen.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let rec = rec.clone();
            let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let rec = rec.clone();
                async move {
                    let collected = req.into_body().collect().await.unwrap();
                    rec.lock().unwrap().push(collected.trailers().cloned().unwrap_or_default());
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"upstream"))))
                }
            });
            tokio::spawn(async move {
                let builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
                let _ = builder.serve_connection(TokioIo::new(stream), svc).await;
            });
        }
    });
    (addr, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trailers_named_like_identity_headers_never_reach_an_h2c_upstream() {
    let (up, seen) = trailer_upstream().await;
    let proxy = start("trailers", &config(up, "upstream_protocol = \"h2c\""), SECRET);
    let sig = sign::hmac(&Secret::text(SECRET).unwrap(), "u1");
    let stream = TcpStream::connect(proxy.addr).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream)).await.unwrap();
    tokio::spawn(conn);
    let mut trailers = HeaderMap::new();
    for name in ["x-verified-user-id", "x_verified_user_id", "x.verified.tenant", "x-identity-outcome", "x-checksum"] {
        trailers.insert(http::HeaderName::from_static(name), "admin".parse().unwrap());
    }
    let frames = Frames(vec![Frame::data(Bytes::from_static(b"hello")), Frame::trailers(trailers)].into());
    let req = Request::post(format!("http://{}/upload", proxy.addr))
        .header("x-user-id", "u1")
        .header("x-identity-signature", sig)
        .body(frames)
        .unwrap();
    let res = sender.send_request(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let got = seen.lock().unwrap().pop().expect("the upstream was called");
    let names: Vec<&str> = got.keys().map(|k| k.as_str()).collect();
    assert_eq!(names, ["x-checksum"], "only the unrelated trailer is forwarded");
}

/// A request body of the given frames (data, then trailers).
struct Frames(std::collections::VecDeque<Frame<Bytes>>);

impl http_body::Body for Frames {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        std::task::Poll::Ready(self.0.pop_front().map(Ok))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfer_codings_other_than_chunked_are_answered_501() {
    let (up, seen, _task) = upstream(false).await;
    let proxy = start("coding", &config(up, ""), SECRET);
    let sig = sign::hmac(&Secret::text(SECRET).unwrap(), "u1");
    let raw = |coding: &str| {
        format!(
            "POST /a HTTP/1.1\r\nhost: x\r\nx-user-id: u1\r\nx-identity-signature: {sig}\r\n\
             transfer-encoding: {coding}\r\nconnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
        )
    };
    for (coding, expected) in [("gzip, chunked", 501), ("chunked", 200), ("deflate,chunked", 501)] {
        let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
        stream.write_all(raw(coding).as_bytes()).await.unwrap();
        let mut answer = String::new();
        let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_string(&mut answer)).await;
        let status = answer.split_whitespace().nth(1).unwrap_or_default().to_owned();
        assert_eq!(status, expected.to_string(), "{coding}: {answer}");
        let forwarded = seen.take().len();
        assert_eq!(forwarded, usize::from(expected == 200), "{coding}: the upstream was called {forwarded} times");
    }
    // Health still answered.
    assert_eq!(send(proxy.addr, "/healthz", &[], Bytes::new()).await.0, StatusCode::OK);
}
