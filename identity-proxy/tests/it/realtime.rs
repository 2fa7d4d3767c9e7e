//! Real-time channels through `identity-proxy`: WebSocket tunnels and
//! server-sent events between a tokio-tungstenite client (or a hyper client)
//! and a recording upstream, all on 127.0.0.1.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::header::SEC_WEBSOCKET_PROTOCOL;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, StreamBody};
use hyper::body::Frame;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request as WsRequest, Response as WsResponse};
use tower_identity::{Secret, sign};

use crate::process::Proxy;
use crate::proxy::{SECRET, pg_tenant, start};
use crate::ws::*;

pub const JWT_SECRET: &str = "proxy-jwt-secret-0123456789abcdef";

/// What the WebSocket upstream saw: each handshake's target and headers,
/// and the close code of each connection the other side closed.
#[derive(Clone, Default)]
pub struct WsSeen {
    pub handshakes: Arc<Mutex<Vec<(String, HeaderMap)>>>,
    pub closes: Arc<Mutex<Vec<Option<u16>>>>,
    pub connections: Arc<AtomicUsize>,
}

impl WsSeen {
    /// Waits (bounded) until the upstream got exactly `expected` close codes,
    /// in any order, and asserts that it did.
    pub async fn assert_closes(&self, mut expected: Vec<Option<u16>>) {
        expected.sort_unstable();
        let sorted = || {
            let mut closes = self.closes.lock().unwrap().clone();
            closes.sort_unstable();
            closes
        };
        for _ in 0..20 {
            if sorted() == expected {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(sorted(), expected, "the close frames the upstream got");
    }
}

/// A WebSocket echo upstream that selects `chat.v1` when it is offered.
pub async fn ws_upstream() -> (SocketAddr, WsSeen, Task) {
    let seen = WsSeen::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let rec = seen.clone();
    let task = tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            rec.connections.fetch_add(1, Ordering::SeqCst);
            let rec = rec.clone();
            tokio::spawn(async move {
                let handshakes = rec.handshakes.clone();
                #[allow(clippy::result_large_err)] // the callback type tungstenite asks for
                let callback = move |req: &WsRequest, mut res: WsResponse| -> Result<WsResponse, ErrorResponse> {
                    handshakes.lock().unwrap().push((req.uri().to_string(), req.headers().clone()));
                    let offered = req.headers().get(SEC_WEBSOCKET_PROTOCOL).map(|v| v.to_str().unwrap().to_owned());
                    if offered.is_some_and(|o| o.split(',').any(|p| p.trim() == "chat.v1")) {
                        res.headers_mut().insert(SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static("chat.v1"));
                    }
                    Ok(res)
                };
                let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(stream, callback).await else { return };
                while let Some(Ok(message)) = ws.next().await {
                    let echoed = match message {
                        Message::Text(_) | Message::Binary(_) => ws.send(message).await,
                        // Reading on sends the close reply, then the stream ends.
                        Message::Close(frame) => {
                            rec.closes.lock().unwrap().push(frame.map(|f| u16::from(f.code)));
                            Ok(())
                        }
                        _ => Ok(()),
                    };
                    if echoed.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, seen, Task(task))
}

/// A task aborted when dropped, so a failing test leaves no server running.
pub struct Task(tokio::task::JoinHandle<()>);

impl Drop for Task {
    fn drop(&mut self) {
        self.0.abort();
    }
}

pub fn proxy_config(up: SocketAddr, scheme: &str, extra: &str) -> String {
    format!(
        r#"
listen = "127.0.0.1:0"
upstream = "http://{up}"
mode = "required"
strip_credentials = true
upstream_timeout_secs = 5
reload_poll_secs = 0
shutdown_grace_secs = 1
metrics_path = "/metrics"
metrics_on_public_listener = true
{extra}

[sources]
query_defaults = true
protocol_defaults = true

[[tenants]]
[[tenants.keys]]
id = "k1"
scheme = "{scheme}"
secret_file = "secret.txt"
"#
    )
}

/// A JWT for `user_id` expiring at `exp`, signed with the proxy's secret.
pub fn jwt(user_id: &str, exp: u64) -> String {
    jwt_signed_with(JWT_SECRET, user_id, exp)
}

/// A JWT for `user_id` expiring at `exp`, signed with `secret`.
pub fn jwt_signed_with(secret: &str, user_id: &str, exp: u64) -> String {
    let claims = serde_json::json!({ "sub": user_id, "iat": unix_now(), "exp": exp });
    tower_identity::sign::jwt(&Secret::text(secret).unwrap(), None, claims.as_object().unwrap())
}

async fn metrics(proxy: &Proxy) -> String {
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let res = client.get(format!("http://{}/metrics", proxy.addr).parse().unwrap()).await.unwrap();
    String::from_utf8(res.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap()
}

/// The value of the Prometheus sample `line_start` (a metric name with its labels).
fn sample(metrics: &str, line_start: &str) -> Option<f64> {
    metrics.lines().find_map(|l| l.strip_prefix(line_start)?.trim().parse().ok())
}

/// Asserts how many tunnels the proxy closed for `reason`.
pub async fn assert_closed_total(proxy: &Proxy, reason: &str, expected: f64) {
    let m = metrics(proxy).await;
    let name = format!("identity_proxy_tunnels_closed_total{{reason=\"{reason}\"}}");
    assert_eq!(sample(&m, &name), Some(expected), "{m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_upgrades_are_verified_forwarded_and_tunnelled() {
    let (up, seen, _task) = ws_upstream().await;
    let proxy = start("ws-verify", &proxy_config(up, "hmac", ""), SECRET);
    let sig = sign::hmac(&Secret::text(SECRET).unwrap(), "u1");
    let base = format!("ws://{}/chat", proxy.addr);

    // In the query: the upstream sees the proven identity, not the credential.
    let (mut client, chosen) = connect(&format!("{base}?room=5&user_id=u1&signature={sig}"), None).await.unwrap();
    assert_eq!(chosen, None);
    assert_eq!(echo(&mut client, "hello").await, "hello");
    let (target, headers) = seen.handshakes.lock().unwrap().pop().unwrap();
    assert_eq!(target, "/chat?room=5", "query credentials are stripped");
    assert_eq!(headers["x-verified-user-id"], "u1");
    assert_eq!(headers["x-identity-outcome"], "verified");
    assert_eq!(headers["upgrade"], "websocket");
    client.close(None).await.unwrap();

    // In Sec-WebSocket-Protocol: the upstream negotiates only its own protocols.
    let offered = format!("chat.v1, identity.signature.{sig}");
    let (mut client, chosen) = connect(&format!("{base}?user_id=u1"), Some(&offered)).await.unwrap();
    assert_eq!(chosen.as_deref(), Some("chat.v1"));
    assert_eq!(echo(&mut client, "again").await, "again");
    let (target, headers) = seen.handshakes.lock().unwrap().pop().unwrap();
    assert_eq!((target.as_str(), &headers[SEC_WEBSOCKET_PROTOCOL]), ("/chat", &HeaderValue::from_static("chat.v1")));
    assert_eq!(headers["x-verified-user-id"], "u1");
    assert!(!format!("{headers:?}").contains(&sig), "the credential never reaches the upstream");

    // Only the credential and the marker: the proxy selects the marker.
    let offered = format!("identity, identity.signature.{sig}");
    let (mut client, chosen) = connect(&format!("{base}?user_id=u1"), Some(&offered)).await.unwrap();
    assert_eq!(chosen.as_deref(), Some("identity"));
    assert_eq!(echo(&mut client, "marker").await, "marker");

    // Forged, missing, spoofed: 401 before any upgrade, the upstream never contacted.
    let contacted = seen.connections.load(Ordering::SeqCst);
    let forged = sign::hmac(&Secret::text("forged-secret-0123456789abc").unwrap(), "u1");
    assert_eq!(status(connect(&format!("{base}?user_id=u1&signature={forged}"), None).await), 401);
    assert_eq!(status(connect(&format!("{base}?user_id=u1"), None).await), 401);
    let forged_entry = format!("identity.signature.{forged}");
    assert_eq!(status(connect(&format!("{base}?user_id=u1"), Some(&forged_entry)).await), 401);
    assert_eq!(seen.connections.load(Ordering::SeqCst), contacted, "rejected upgrades never reach the upstream");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tunnel_is_closed_when_its_jwt_expires() {
    let (up, seen, _task) = ws_upstream().await;
    let proxy = start("ws-exp", &proxy_config(up, "jwt", ""), JWT_SECRET);
    let exp = unix_now() + 3;
    let (mut client, _) = connect(&format!("ws://{}/chat?token={}", proxy.addr, jwt("u2", exp)), None).await.unwrap();
    assert_eq!(echo(&mut client, "before").await, "before");
    assert_closed_1008(&mut client, exp, exp + 1).await;
    seen.assert_closes(vec![Some(1008)]).await;
    assert_closed_total(&proxy, "expired", 1.0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tunnel_is_closed_when_its_key_is_removed_by_a_reload() {
    let (up, _seen, _task) = ws_upstream().await;
    let proxy = start(
        "ws-revoke",
        &proxy_config(up, "hmac", "").replace("reload_poll_secs = 0", "reload_poll_secs = 1"),
        SECRET,
    );
    let url = |secret: &str| {
        format!("ws://{}/chat?user_id=u3&signature={}", proxy.addr, sign::hmac(&Secret::text(secret).unwrap(), "u3"))
    };

    // The secret file rewritten and SIGHUP: closed at once (well within the
    // file-poll interval + 1 s).
    let (mut client, _) = connect(&url(SECRET), None).await.unwrap();
    assert_eq!(echo(&mut client, "x").await, "x");
    let rotated = "rotated-ws-secret-0123456789abcdef";
    std::fs::write(proxy.dir.join("secret.txt"), rotated).unwrap();
    proxy.signal("HUP");
    let sent = unix_now();
    assert_closed_1008(&mut client, sent, sent + 2).await;

    // A changed secret file, no signal: closed within the poll interval + 1 s.
    let (mut client, _) = connect(&url(rotated), None).await.unwrap();
    assert_eq!(echo(&mut client, "y").await, "y");
    std::fs::write(proxy.dir.join("secret.txt"), "rotated-again-0123456789abcdef").unwrap();
    let written = unix_now();
    assert_closed_1008(&mut client, written, written + 3).await;
    assert_closed_total(&proxy, "revoked", 2.0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_connection_lifetime_bounds_every_tunnel() {
    let (up, _seen, _task) = ws_upstream().await;
    let extra = "[tunnels]\nmax_connection_lifetime_secs = 1";
    let proxy = start("ws-lifetime", &proxy_config(up, "hmac", extra), SECRET);
    let sig = sign::hmac(&Secret::text(SECRET).unwrap(), "u4");
    let opened = unix_now();
    let (mut client, _) = connect(&format!("ws://{}/chat?user_id=u4&signature={sig}", proxy.addr), None).await.unwrap();
    assert_eq!(echo(&mut client, "z").await, "z");
    assert_closed_1008(&mut client, opened, opened + 3).await;
    assert_closed_total(&proxy, "lifetime", 1.0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_tunnels_echo_and_close_cleanly() {
    let (up, seen, _task) = ws_upstream().await;
    let proxy = start("ws-200", &proxy_config(up, "hmac", ""), SECRET);
    let clients: Vec<_> = (0..200)
        .map(|i| {
            let user = format!("user-{i}");
            let sig = sign::hmac(&Secret::text(SECRET).unwrap(), &user);
            let url = format!("ws://{}/chat?user_id={user}&signature={sig}", proxy.addr);
            tokio::spawn(async move {
                let (mut client, _) = connect(&url, None).await.unwrap();
                for n in 0..3 {
                    let text = format!("{user} says {n}");
                    assert_eq!(echo(&mut client, &text).await, text);
                }
                client.close(None).await.unwrap();
                // The close handshake completes: the echo of our close, then the end.
                while let Some(message) = client.next().await {
                    assert!(matches!(message, Ok(Message::Close(_))), "{message:?}");
                }
            })
        })
        .collect();
    for client in clients {
        client.await.unwrap();
    }
    assert_eq!(seen.handshakes.lock().unwrap().len(), 200);
    let mut gauge = None;
    for _ in 0..40 {
        gauge = sample(&metrics(&proxy).await, "identity_proxy_tunnels_open ");
        if gauge == Some(0.0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(gauge, Some(0.0), "every tunnel was counted closed");
}

/// An upstream sending `events` server-sent events, one per 100 ms; `done`
/// is set once the last one is sent, `requests` counts the requests it got.
async fn sse_upstream(events: usize) -> (SocketAddr, Arc<AtomicBool>, Arc<AtomicUsize>, Task) {
    let done = Arc::new(AtomicBool::new(false));
    let requests = Arc::new(AtomicUsize::new(0));
    let counter = requests.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let flag = done.clone();
    let task = tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let (flag, counter) = (flag.clone(), counter.clone());
            let svc = hyper::service::service_fn(move |_req: Request<hyper::body::Incoming>| {
                counter.fetch_add(1, Ordering::SeqCst);
                let flag = flag.clone();
                let stream = futures_util::stream::unfold(0, move |n| {
                    let flag = flag.clone();
                    async move {
                        if n == events {
                            flag.store(true, Ordering::SeqCst);
                            return None;
                        }
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        Some((Ok::<_, Infallible>(Frame::data(Bytes::from(format!("data: {n}\n\n")))), n + 1))
                    }
                });
                let mut res = Response::new(StreamBody::new(stream));
                res.headers_mut().insert("content-type", HeaderValue::from_static("text/event-stream"));
                async move { Ok::<_, Infallible>(res) }
            });
            tokio::spawn(hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc));
        }
    });
    (addr, done, requests, Task(task))
}

async fn open_events(proxy: &Proxy, query: &str) -> Response<hyper::body::Incoming> {
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let req = Request::get(format!("http://{}/events?{query}", proxy.addr))
        .header("accept", "text/event-stream")
        .body(Empty::new())
        .unwrap();
    client.request(req).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_sent_events_stream_unbuffered_and_end_with_the_credential() {
    // The first event arrives while the upstream is still sending.
    let (up, done, requests, _task) = sse_upstream(10).await;
    let proxy = start("sse", &proxy_config(up, "jwt", ""), JWT_SECRET);
    let forged = jwt("u5", unix_now() + 60).replace('.', "x.");
    assert_eq!(open_events(&proxy, &format!("token={forged}")).await.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(requests.load(Ordering::SeqCst), 0, "a rejected event stream never reaches the upstream");
    let res = open_events(&proxy, &format!("token={}", jwt("u5", unix_now() + 60))).await;
    assert_eq!(res.status(), StatusCode::OK);
    let mut body = res.into_body();
    let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
    assert_eq!(&first[..], b"data: 0\n\n");
    assert!(!done.load(Ordering::SeqCst), "the first event arrived before the stream ended");
    drop(body);

    // A stream outliving its token ends at exp, before the upstream is done.
    let (up, done, _requests, _task) = sse_upstream(100).await;
    let proxy = start("sse-exp", &proxy_config(up, "jwt", ""), JWT_SECRET);
    let exp = unix_now() + 2;
    let mut body = open_events(&proxy, &format!("token={}", jwt("u6", exp))).await.into_body();
    let mut events = 0;
    while let Some(frame) = tokio::time::timeout(Duration::from_secs(10), body.frame()).await.unwrap() {
        if frame.unwrap().is_data() {
            events += 1;
        }
    }
    let ended = unix_now();
    assert!(events > 0 && !done.load(Ordering::SeqCst), "{events} events");
    assert!((exp..=exp + 1).contains(&ended), "ended at {ended}, exp {exp}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tunnel_is_closed_when_postgresql_revokes_its_key() {
    let Some((url, db)) = pg_tenant("proxy-ws-pg", "db-ws").await else { return };
    let (up, _seen, _task) = ws_upstream().await;
    let cfg = format!(
        "listen = \"127.0.0.1:0\"\nupstream = \"http://{up}\"\nreload_poll_secs = 0\n\
         [sources]\nquery_defaults = true\nquery = {{ tenant = \"app\" }}\n\
         [postgres]\nurl_file = \"secret.txt\"\ncache_ttl_secs = 3600\n"
    );
    // The database URL goes where `start` writes the secret file.
    let proxy = start("ws-pg", &cfg, &url);
    let sig = sign::hmac(&Secret::text(SECRET).unwrap(), "u8");
    let target = format!("ws://{}/chat?app=proxy-ws-pg&user_id=u8&signature={sig}", proxy.addr);
    let (mut client, _) = connect(&target, None).await.unwrap();
    assert_eq!(echo(&mut client, "pg").await, "pg");
    db.execute("DELETE FROM identity_keys WHERE tenant_id = 'proxy-ws-pg'", &[]).await.unwrap();
    let revoked = unix_now();
    // NOTIFY drops the cached keys; the next re-verification (every second) closes the tunnel.
    assert_closed_1008(&mut client, revoked, revoked + 2).await;
}
