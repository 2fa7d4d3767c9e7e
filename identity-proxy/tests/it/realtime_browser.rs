//! A real browser's WebSockets through `identity-proxy`: headless Chromium
//! opens `new WebSocket(...)` with a JWT in the query or in
//! `Sec-WebSocket-Protocol`, echoes a message through the recording upstream
//! of `realtime.rs`, and sees the proxy's close when the JWT expires; forged
//! and missing tokens never open.
//!
//! Why the page reports over HTTP rather than in its DOM, as the other
//! browser tests do: `--dump-dom` prints the DOM once the page's virtual
//! time budget has run out, and virtual time runs the page's timers ahead of
//! the real clock and does not wait for an open WebSocket, while the proxy
//! closes the socket at the credential's `exp` in real seconds (tried: with
//! this page, `--dump-dom` returned before `exp`, no close seen). So Chromium
//! runs here in real time ([`chromium::Chromium::open`]), the page POSTs what
//! each socket saw to a collector on its own origin when the socket closes,
//! and the test waits for those reports, bounded in time, and checks the
//! close against the real clock: the browser's own close time is not before
//! `exp`, and the report reached the test soon after `exp`. The tokens are
//! minted when the browser loads the page, so the browser's start-up time
//! does not eat into their lifetime.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::{Json, State};
use axum::response::Html;
use axum::routing::{get, post};
use axum::{Router, http::HeaderMap};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::proxy::start;
use crate::realtime::{JWT_SECRET, assert_closed_total, jwt, jwt_signed_with, proxy_config, ws_upstream};
use crate::ws::unix_now;
use crate::{chromium, page};

/// How long the page's tokens live, in seconds: long enough for the browser
/// to open the sockets and echo on a busy machine, short for the test.
const LIFETIME: u64 = 4;
/// How late after `exp` the test may get a close report: the proxy closes
/// within a second, and the browser needs a moment to report it.
const REPORT_SLACK_MS: u64 = 2_000;
/// How long the test waits for all the reports.
const WAIT: Duration = Duration::from_secs(30);
/// What each socket sends once open.
const TEXT: &str = "hello from the browser";

/// The site serving the page: the proxy the page talks to, the `exp` of the
/// tokens minted for each load of the page, and the reports as they come.
struct Site {
    proxy: SocketAddr,
    loads: Mutex<Vec<u64>>,
    reports: mpsc::UnboundedSender<Value>,
}

/// The cases: three valid sockets (token in the query; token as a protocol
/// entry beside the app's `chat.v1`; beside the bare marker, for an app
/// without a protocol of its own) and three that must not open.
fn cases(proxy: SocketAddr, exp: u64) -> Value {
    let chat = format!("ws://{proxy}/chat");
    let forged = jwt_signed_with("forged-jwt-secret-0123456789abcdef", "browser-forged", exp);
    let case = |name: &str, url: String, protocols: Value| json!({ "name": name, "url": url, "protocols": protocols, "send": TEXT });
    json!([
        case("query", format!("{chat}?room=5&token={}", jwt("browser-query", exp)), Value::Null),
        case(
            "protocol",
            format!("{chat}?room=6"),
            json!(["chat.v1", format!("identity.token.{}", jwt("browser-protocol", exp))])
        ),
        case(
            "marker",
            format!("{chat}?room=7"),
            json!(["identity", format!("identity.token.{}", jwt("browser-marker", exp))])
        ),
        case("forged", format!("{chat}?room=8&token={forged}"), Value::Null),
        case("forged_protocol", format!("{chat}?room=9"), json!(["chat.v1", format!("identity.token.{forged}")])),
        case("missing", format!("{chat}?room=10"), Value::Null),
    ])
}

/// The page, with tokens minted now.
async fn page(State(site): State<Arc<Site>>) -> Html<String> {
    let exp = unix_now() + LIFETIME;
    site.loads.lock().unwrap().push(exp);
    Html(include_str!("websocket.html").replace("__CASES__", &cases(site.proxy, exp).to_string()))
}

/// One socket's report, stamped with the time (unix ms) the test received it.
async fn report(State(site): State<Arc<Site>>, Json(mut report): Json<Value>) {
    report["received_at"] = json!(unix_ms());
    let _ = site.reports.send(report);
}

fn unix_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64
}

/// Waits, bounded, for `n` reports; the browser's log tail when they do not come.
async fn reports(rx: &mut mpsc::UnboundedReceiver<Value>, n: usize, browser: &chromium::Running) -> Vec<Value> {
    let mut got = Vec::new();
    let all = async {
        while got.len() < n {
            got.push(rx.recv().await.expect("the site is running"));
        }
    };
    if tokio::time::timeout(WAIT, all).await.is_err() {
        panic!("{} of {n} reports within {WAIT:?}: {got:?}\nChromium's log:\n{}", got.len(), browser.log());
    }
    got
}

/// The upstream's handshake for `target`: the headers it got.
fn handshake(seen: &[(String, HeaderMap)], target: &str) -> HeaderMap {
    let found = seen.iter().find(|(t, _)| t == target);
    found.unwrap_or_else(|| panic!("no handshake for {target}: {seen:?}")).1.clone()
}

/// A socket that opened, echoed while its token was valid, and was closed
/// by the proxy with 1008 at `exp`: not before, and reported soon after.
fn assert_echoed_then_expired(r: &Value, protocol: &str, exp: u64) {
    let exp_ms = exp * 1000;
    assert_eq!((r["opened"].as_bool(), r["protocol"].as_str()), (Some(true), Some(protocol)), "{r}");
    assert_eq!(r["echoed"], TEXT, "{r}");
    assert!(r["echoed_at"].as_u64().unwrap() < exp_ms, "echoed while the token was valid: {r}");
    assert_eq!((r["code"].as_u64(), r["reason"].as_str()), (Some(1008), Some("credential expired")), "{r}");
    assert_eq!((r["clean"].as_bool(), r["error"].as_bool()), (Some(true), Some(false)), "{r}");
    assert!(r["closed_at"].as_u64().unwrap() >= exp_ms, "not closed before exp {exp}: {r}");
    assert!(r["received_at"].as_u64().unwrap() <= exp_ms + REPORT_SLACK_MS, "closed soon after exp {exp}: {r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_websocket_echoes_and_is_closed_when_its_jwt_expires() {
    let Some(browser) = chromium::Chromium::require() else { return };
    let (up, seen, _upstream) = ws_upstream().await;
    let proxy = start("ws-browser", &proxy_config(up, "jwt", ""), JWT_SECRET);
    let (tx, mut rx) = mpsc::unbounded_channel();
    let site = Arc::new(Site { proxy: proxy.addr, loads: Mutex::default(), reports: tx });
    let app = Router::new().route("/", get(page)).route("/report", post(report)).with_state(site.clone());
    let (listener, origin) = page::bind().await;
    let _site = page::serve(listener, app);

    let running = browser.open(&format!("{origin}/"));
    let reports = reports(&mut rx, 6, &running).await;
    drop(running);
    let exp = match site.loads.lock().unwrap().as_slice() {
        [exp] => *exp,
        loads => panic!("the page was loaded once, not {loads:?}"),
    };
    let by_name =
        |name: &str| reports.iter().find(|r| r["name"] == name).unwrap_or_else(|| panic!("{name}: {reports:?}"));

    // Forged and missing tokens: the browser's socket fails, the upstream is never contacted.
    for name in ["forged", "forged_protocol", "missing"] {
        let r = by_name(name);
        assert_eq!((r["opened"].as_bool(), r["error"].as_bool()), (Some(false), Some(true)), "{r}");
        assert_eq!((r["code"].as_u64(), r["clean"].as_bool()), (Some(1006), Some(false)), "{r}");
        assert_eq!(r["echoed"], Value::Null, "{r}");
    }
    assert_eq!(seen.connections.load(Ordering::SeqCst), 3, "rejected upgrades never reach the upstream");
    let handshakes = seen.handshakes.lock().unwrap().clone();
    assert_eq!(handshakes.len(), 3, "{handshakes:?}");

    // Valid tokens: the echo round-trips and the proxy closes with 1008 at
    // exp. The browser's `ws.protocol` is what the upstream selected among
    // the app's protocols (or the marker, selected by the proxy); the
    // upstream got the proven identity and no token, in the URL or the header.
    let token_start = jwt("any", exp).split('.').next().unwrap().to_owned(); // the same encoded JOSE header in every token
    let valid = [
        ("query", "/chat?room=5", "browser-query", "", None),
        ("protocol", "/chat?room=6", "browser-protocol", "chat.v1", Some("chat.v1")),
        ("marker", "/chat?room=7", "browser-marker", "identity", Some("identity")),
    ];
    for (name, target, user, selected, forwarded_protocol) in valid {
        assert_echoed_then_expired(by_name(name), selected, exp);
        let headers = handshake(&handshakes, target);
        assert_eq!(headers["x-verified-user-id"], user, "{name}");
        assert_eq!(headers["x-identity-outcome"], "verified", "{name}");
        let forwarded = headers.get("sec-websocket-protocol").map(|v| v.to_str().unwrap());
        assert_eq!(forwarded, forwarded_protocol, "{name}");
        assert!(!format!("{headers:?}").contains(&token_start), "{name}: no token reaches the upstream: {headers:?}");
    }
    seen.assert_closes(vec![Some(1008); 3]).await;
    assert_closed_total(&proxy, "expired", 3.0).await;
}
