//! `identity-proxy` with `[cors]`: preflights answered by the proxy, CORS
//! headers on every answer it makes or relays to an allowed origin, the
//! upstream's `Access-Control-*` replaced, per-tenant origins; and a real
//! browser (headless Chromium) calling the proxy from another origin.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower_identity::{Secret, sign};

use crate::process::{BIN, Proxy};
use crate::{chromium, page};

const SECRET: &str = "cors-proxy-secret-0123456789";
const SHOP: &str = "https://shop.example";
const ACME_SITE: &str = "https://acme.example";

/// The paths the upstream was called with.
#[derive(Clone, Default)]
struct Calls(Arc<Mutex<Vec<String>>>);

impl Calls {
    fn take(&self) -> Vec<String> {
        std::mem::take(&mut self.0.lock().unwrap())
    }
}

/// An upstream that records each call's method and path and answers with
/// its own CORS headers (which the proxy must replace). `/slow` answers late.
async fn upstream() -> (SocketAddr, Calls, page::Server) {
    let calls = Calls::default();
    let (listener, _) = page::bind().await;
    let addr = listener.local_addr().unwrap();
    let rec = calls.clone();
    let task = tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let rec = rec.clone();
            let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                rec.0.lock().unwrap().push(format!("{} {}", req.method(), req.uri().path()));
                async move {
                    if req.uri().path() == "/slow" {
                        tokio::time::sleep(Duration::from_secs(5)).await;
                    }
                    let res = Response::builder()
                        .header("access-control-allow-origin", "*")
                        .header("access-control-allow-credentials", "true")
                        .header("access-control-expose-headers", "x-upstream")
                        .body(Full::new(Bytes::from_static(b"upstream")))
                        .unwrap();
                    Ok::<_, Infallible>(res)
                }
            });
            tokio::spawn(hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc));
        }
    });
    (addr, calls, page::Server::from(task))
}

/// A configuration: tenants "acme" (its own origins) and "globex" (the
/// global list), named in the URL as `?app=`; `cors` is the `[cors]` section
/// (or nothing) and `extra` top-level keys.
fn config(upstream: SocketAddr, extra: &str, cors: &str) -> String {
    format!(
        r#"
listen = "127.0.0.1:0"
upstream = "http://{upstream}"
upstream_timeout_secs = 1
body_read_timeout_secs = 1
reload_poll_secs = 0
shutdown_grace_secs = 1
{extra}

[sources]
query = {{ tenant = "app" }}
json = {{ user_id = "/user_id", signature = "/user_hash" }}
body_limit = 256

{cors}

[[tenants]]
id = "acme"
{acme_origins}
[[tenants.keys]]
scheme = "hmac"
secret_file = "secret.txt"

[[tenants]]
id = "globex"
[[tenants.keys]]
scheme = "hmac"
secret_file = "secret.txt"
"#,
        acme_origins = if cors.is_empty() { String::new() } else { format!("allowed_origins = [\"{ACME_SITE}\"]") },
    )
}

fn cors_section(origins: &[&str]) -> String {
    format!("[cors]\nallowed_origins = {origins:?}\nmax_age_secs = 600\n")
}

/// Starts the proxy with `config` and the tenants' secret file.
fn start(config: &str) -> Proxy {
    start_with(config, &[])
}

/// `start`, with more files beside the configuration.
fn start_with(config: &str, files: &[(&str, &str)]) -> Proxy {
    let files: Vec<(&str, &str)> = [("secret.txt", SECRET)].into_iter().chain(files.iter().copied()).collect();
    Proxy::start("cors", config, &files, &[])
}

/// One request; the answer's status and headers.
async fn send(
    addr: SocketAddr,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (StatusCode, HeaderMap) {
    let mut b = Request::builder().method(method).uri(format!("http://{addr}{path}"));
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let client = Client::builder(TokioExecutor::new()).build_http();
    let res = client.request(b.body(Full::new(Bytes::from(body.to_owned()))).unwrap()).await.unwrap();
    let (parts, body) = res.into_parts();
    body.collect().await.unwrap();
    (parts.status, parts.headers)
}

fn preflight_headers(origin: &str) -> [(&str, &str); 3] {
    [("origin", origin), ("access-control-request-method", "POST"), ("access-control-request-headers", "content-type")]
}

fn access_control(headers: &HeaderMap) -> Vec<String> {
    headers.keys().filter(|k| k.as_str().starts_with("access-control-")).map(|k| k.to_string()).collect()
}

/// The proxy's CORS headers for `origin`, exactly once each, and nothing of the upstream's.
fn assert_cors(headers: &HeaderMap, origin: &str, context: &str) {
    let acao: Vec<_> = headers.get_all("access-control-allow-origin").iter().collect();
    assert_eq!(acao, [origin], "{context}: {headers:?}");
    assert_eq!(headers["access-control-expose-headers"], "www-authenticate, retry-after", "{context}");
    assert_eq!(access_control(headers).len(), 2, "{context}: only ours: {headers:?}");
    assert!(headers.get_all("vary").iter().any(|v| v == "origin"), "{context}: {headers:?}");
}

fn signed_chat(user: &str, signer: &str) -> String {
    let hash = sign::hmac(&Secret::text(SECRET).unwrap(), signer);
    json!({ "user_id": user, "user_hash": hash, "text": "hi" }).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preflights_with_cors_are_answered_by_the_proxy() {
    let (up, calls, _up) = upstream().await;
    let proxy = start(&config(up, "mode = \"required\"", &cors_section(&[SHOP])));
    let (status, h) = send(proxy.addr, Method::OPTIONS, "/chat?app=globex", &preflight_headers(SHOP), "").await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(h["access-control-allow-origin"], SHOP);
    assert_eq!(h["access-control-max-age"], "600");
    assert!(h["access-control-allow-methods"].to_str().unwrap().contains("POST"));
    assert_eq!(
        h["access-control-allow-headers"],
        "x-user-id, x-user-email, x-visitor-id, x-identity-signature, x-identity-timestamp, x-identity-token, content-type"
    );
    assert_eq!(h["vary"], "origin");
    // Not allowed: answered, without any Access-Control-Allow-* header.
    for (path, origin) in [("/chat?app=globex", "https://evil.example"), ("/chat?app=acme", SHOP)] {
        let (status, h) = send(proxy.addr, Method::OPTIONS, path, &preflight_headers(origin), "").await;
        assert_eq!(status, StatusCode::NO_CONTENT, "{path} {origin}");
        assert_eq!(access_control(&h), Vec::<String>::new(), "{path} {origin}");
    }
    // The tenant's own origins replace the global list for it.
    let (_, h) = send(proxy.addr, Method::OPTIONS, "/chat?app=acme", &preflight_headers(ACME_SITE), "").await;
    assert_eq!(h["access-control-allow-origin"], ACME_SITE);
    let (_, h) = send(proxy.addr, Method::OPTIONS, "/chat?app=globex", &preflight_headers(ACME_SITE), "").await;
    assert_eq!(access_control(&h), Vec::<String>::new());
    // A tenant named twice, differently, or not in UTF-8: no list applies.
    for path in ["/chat?app=acme&app=globex", "/chat?app=%FF", "/chat?app=acme%FF"] {
        let (_, h) = send(proxy.addr, Method::OPTIONS, path, &preflight_headers(SHOP), "").await;
        assert_eq!(access_control(&h), Vec::<String>::new(), "{path}");
    }
    // The query is decoded as the identity layer decodes it.
    let (_, h) = send(proxy.addr, Method::OPTIONS, "/chat?%61pp=%61cme", &preflight_headers(ACME_SITE), "").await;
    assert_eq!(h["access-control-allow-origin"], ACME_SITE);
    assert_eq!(calls.take(), Vec::<String>::new(), "no preflight reaches the upstream");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_cors_a_preflight_is_an_ordinary_request() {
    let (up, calls, _up) = upstream().await;
    let proxy = start(&config(up, "mode = \"required\"", ""));
    let (status, h) = send(proxy.addr, Method::OPTIONS, "/chat?app=globex", &preflight_headers(SHOP), "").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(access_control(&h), Vec::<String>::new());
    assert_eq!(calls.take(), Vec::<String>::new());
    drop(proxy);
    let proxy = start(&config(up, "mode = \"optional\"", ""));
    let (status, h) = send(proxy.addr, Method::OPTIONS, "/chat?app=globex", &preflight_headers(SHOP), "").await;
    assert_eq!(status, StatusCode::OK);
    // Forwarded like any anonymous request, the upstream's own headers as they are.
    assert_eq!(h["access-control-allow-origin"], "*");
    assert_eq!(calls.take(), ["OPTIONS /chat"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answer_to_an_allowed_origin_carries_the_proxys_cors_headers() {
    let (up, calls, _up) = upstream().await;
    let proxy = start(&config(up, "mode = \"required\"", &cors_section(&[SHOP])));
    let json = ("content-type", "application/json");
    let origin = ("origin", SHOP);
    let valid = signed_chat("42", "42");
    let big = json!({ "user_id": "42", "pad": "x".repeat(400) }).to_string();
    let forged = signed_chat("41", "42");
    let gzip = ("content-encoding", "gzip");
    let cases = [
        ("valid", vec![origin, json], valid.as_str(), 200),
        ("forged", vec![origin, json], &forged, 401),
        ("none", vec![origin], "", 401),
        ("too large", vec![origin, json], &big, 413),
        ("encoded", vec![origin, json, gzip], &valid, 415),
    ];
    for (name, headers, body, status) in cases {
        let (got, h) = send(proxy.addr, Method::POST, "/chat?app=globex", &headers, body).await;
        assert_eq!(got.as_u16(), status, "{name}");
        assert_cors(&h, SHOP, name);
    }
    assert_eq!(calls.take(), ["POST /chat"], "only the valid request reached the upstream");
    // 504: the upstream is too slow.
    let (got, h) = send(proxy.addr, Method::POST, "/slow?app=globex", &[origin, json], &valid).await;
    assert_eq!(got, StatusCode::GATEWAY_TIMEOUT);
    assert_cors(&h, SHOP, "504");
    // 408: the body does not arrive in time (written by hand: a client library would finish it).
    let head = format!(
        "POST /chat?app=globex HTTP/1.1\r\nhost: x\r\norigin: {SHOP}\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{{\"user_id\""
    );
    let mut tcp = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    tcp.write_all(head.as_bytes()).await.unwrap();
    let mut answer = vec![0; 4096];
    let n = tokio::time::timeout(Duration::from_secs(20), tcp.read(&mut answer)).await.unwrap().unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]).to_ascii_lowercase();
    assert!(answer.starts_with("http/1.1 408"), "{answer}");
    assert!(answer.contains(&format!("access-control-allow-origin: {SHOP}\r\n")), "{answer}");
    // A request without Origin (a server, curl) is relayed as it is.
    let (_, h) = send(proxy.addr, Method::POST, "/chat?app=globex", &[json], &valid).await;
    assert_eq!(h["access-control-allow-origin"], "*");
    assert_eq!(h["access-control-allow-credentials"], "true");
    // An origin not allowed: the answer, without any CORS header.
    let (got, h) =
        send(proxy.addr, Method::POST, "/chat?app=globex", &[("origin", "https://evil.example"), json], &valid).await;
    assert_eq!(got, StatusCode::OK);
    assert_eq!(access_control(&h), Vec::<String>::new());
    calls.take();
    drop(proxy);

    // 502: the upstream is down.
    let closed = page::bind().await.0.local_addr().unwrap();
    let proxy = start(&config(closed, "mode = \"required\"", &cors_section(&[SHOP])));
    let (got, h) = send(proxy.addr, Method::POST, "/chat?app=globex", &[origin, json], &valid).await;
    assert_eq!(got, StatusCode::BAD_GATEWAY);
    assert_cors(&h, SHOP, "502");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_key_store_503_carries_cors_headers() {
    let (up, calls, _up) = upstream().await;
    let closed = page::bind().await.0.local_addr().unwrap();
    let text = config(up, "mode = \"required\"", &cors_section(&[SHOP]));
    // Keys from a PostgreSQL server that is not there.
    let tenants_at = text.find("[[tenants]]").unwrap();
    let text = format!(
        "{}\n[postgres]\nurl_file = \"pg.txt\"\nlookup_timeout_secs = 2\nlisten_notify = false\n",
        &text[..tenants_at]
    );
    let proxy = start_with(&text, &[("pg.txt", &format!("postgres://u@{closed}/db"))]);
    let valid = signed_chat("42", "42");
    let (got, h) = send(
        proxy.addr,
        Method::POST,
        "/chat?app=globex",
        &[("origin", SHOP), ("content-type", "application/json")],
        &valid,
    )
    .await;
    assert_eq!(got, StatusCode::SERVICE_UNAVAILABLE);
    assert_cors(&h, SHOP, "503");
    assert!(h.contains_key("retry-after"));
    assert_eq!(calls.take(), Vec::<String>::new());
}

#[test]
fn invalid_cors_configurations_exit_2_naming_the_key() {
    let up: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let cases = [
        (config(up, "", &cors_section(&["https://shop.example/"])), "cors.allowed_origins"),
        (config(up, "", &cors_section(&["shop.example"])), "cors.allowed_origins"),
        (
            config(up, "", "").replace("id = \"acme\"\n", "id = \"acme\"\nallowed_origins = [\"https://a.example\"]\n"),
            "tenants[0].allowed_origins",
        ),
        (
            config(up, "", &cors_section(&[SHOP])).replace("query = { tenant = \"app\" }", ""),
            "tenants[0].allowed_origins",
        ),
    ];
    for (text, needle) in cases {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("bad.toml"), &text).unwrap();
        std::fs::write(dir.path().join("secret.txt"), SECRET).unwrap();
        let out = Command::new(BIN).args(["--config", "bad.toml", "check"]).current_dir(dir.path()).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{needle}: {stderr}");
        assert!(stderr.contains(needle), "{needle}: {stderr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_calls_the_proxy_across_origins() {
    let Some(browser) = chromium::Chromium::require() else { return };
    let (up, calls, _up) = upstream().await;
    let secret = Secret::text(SECRET).unwrap();
    let (valid, forged) = (sign::hmac(&secret, "42"), sign::hmac(&secret, "41"));
    // The page's origin must be known before the proxy starts: bind first, serve later.
    let (site_listener, site) = page::bind().await;
    let (stranger_listener, stranger) = page::bind().await;
    let proxy = start(&config(up, "mode = \"required\"", &cors_section(&[&site])));
    let api = format!("http://{}", proxy.addr);
    let cases = page::identity_cases(&api, "?app=globex", &valid, &forged);
    let _site = page::serve_runner(site_listener, &cases);
    let _stranger = page::serve_runner(stranger_listener, &cases);

    let results = page::run_page(&browser, &site).await;
    page::assert_read(&results, "valid", 200, None);
    assert_eq!(results["valid"]["body"], "upstream");
    page::assert_read(&results, "forged", 401, Some("signature_invalid"));
    page::assert_read(&results, "none", 401, Some("credential_missing"));
    page::assert_read(&results, "json", 200, None);
    page::assert_read(&results, "json_forged", 401, Some("signature_invalid"));
    assert_eq!(calls.take(), ["GET /me", "POST /chat"], "no preflight and no rejected request reached the upstream");

    let results = page::run_page(&browser, &stranger).await;
    for name in ["valid", "forged", "none", "json", "json_forged"] {
        page::assert_blocked(&results, name);
    }
    // Preflighted requests never left the browser; the simple one without
    // credentials (no preflight) reached the proxy and was refused there.
    assert_eq!(calls.take(), Vec::<String>::new());
}
