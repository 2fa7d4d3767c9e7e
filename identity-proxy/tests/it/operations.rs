//! Operating the proxy (issue 13, items 1, 12–16): the admin listener and
//! readiness, histograms, reloads that apply what they say, logs fit for a
//! collector, and metric series bounded whatever tenants clients name.

use std::process::Stdio;
use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;
use tower_identity::{Secret, sign};

use crate::process::{self, Proxy, config_dir};
use crate::proxy::{SECRET, config, send, start, upstream};
use crate::rng::Rng;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_and_readiness_live_on_the_admin_listener() {
    let (up, seen, _task) = upstream(false).await;
    let proxy = start("admin", &config(up, "admin_listen = \"127.0.0.1:0\""), SECRET);
    let admin = proxy.admin.expect("the admin listener's address is logged");
    let sig = sign::hmac(&Secret::text(SECRET).unwrap(), "u1");
    let signed = [("x-user-id", "u1"), ("x-identity-signature", sig.as_str())];
    assert_eq!(send(proxy.addr, "/", &signed, Bytes::new()).await.0, StatusCode::OK);
    seen.take();

    // Not on the client-facing port: there /metrics and /readyz are ordinary (verified) paths.
    assert_eq!(send(proxy.addr, "/metrics", &[], Bytes::new()).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(send(proxy.addr, "/readyz", &[], Bytes::new()).await.0, StatusCode::UNAUTHORIZED);
    assert!(seen.take().is_empty());
    assert_eq!(send(proxy.addr, "/healthz", &[], Bytes::new()).await.0, StatusCode::OK);

    let (status, _, body) = send(admin, "/metrics", &[], Bytes::new()).await;
    assert_eq!(status, StatusCode::OK);
    // A histogram with buckets from 100 ns to 10 ms, not a summary.
    assert!(body.contains("# TYPE identity_verification_seconds histogram"), "{body}");
    for le in ["0.0000001", "0.000001", "0.001", "0.01", "+Inf"] {
        let bucket = format!("identity_verification_seconds_bucket{{scheme=\"hmac\",le=\"{le}\"}}");
        assert!(body.contains(&bucket), "no {bucket} in {body}");
    }
    assert!(!body.contains("quantile="), "{body}");
    assert_eq!(send(admin, "/readyz", &[], Bytes::new()).await.0, StatusCode::OK);
    assert_eq!(send(admin, "/healthz", &[], Bytes::new()).await.0, StatusCode::OK);
    assert!(seen.take().is_empty(), "the admin listener never proxies");

    // Explicitly on the public port as well.
    let proxy = start("admin-public", &config(up, "metrics_on_public_listener = true"), SECRET);
    assert_eq!(send(proxy.addr, "/", &[], Bytes::new()).await.0, StatusCode::UNAUTHORIZED);
    let (status, _, body) = send(proxy.addr, "/metrics", &[], Bytes::new()).await;
    assert!(status == StatusCode::OK && body.contains("# TYPE"), "{status} {body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_fails_while_postgresql_cannot_serve() {
    let (up, seen, _task) = upstream(false).await;
    // Nothing listens there.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let cfg = format!(
        "listen = \"127.0.0.1:0\"\nupstream = \"http://{up}\"\nreload_poll_secs = 0\nadmin_listen = \"127.0.0.1:0\"\n\
         [postgres]\nurl_file = \"db-url.txt\"\nlisten_notify = false\nlookup_timeout_secs = 1\n"
    );
    let proxy = Proxy::start("ready-pg", &cfg, &[("db-url.txt", &format!("postgres://identity@{dead}/identity"))], &[]);
    let admin = proxy.admin.unwrap();
    let (status, headers, _) = send(admin, "/readyz", &[], Bytes::new()).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(headers.contains_key("retry-after"));
    assert_eq!(send(admin, "/healthz", &[], Bytes::new()).await.0, StatusCode::OK, "liveness is not readiness");
    // And requests fail closed meanwhile.
    assert_eq!(send(proxy.addr, "/", &[], Bytes::new()).await.0, StatusCode::SERVICE_UNAVAILABLE);
    assert!(seen.take().is_empty());
}

/// The configuration of the reload test: `mode`, `[forward]` and
/// `[sources]`/`[verify]` lines given.
fn reload_config(up: std::net::SocketAddr, listen: &str, mode: &str, more: &str) -> String {
    format!(
        "listen = \"{listen}\"\nupstream = \"http://{up}\"\nmode = \"{mode}\"\nreload_poll_secs = 0\n{more}\n\
         [[tenants]]\n[[tenants.keys]]\nid = \"k1\"\nscheme = \"hmac\"\nsecret_file = \"secret.txt\"\n"
    )
}

/// Writes `text` as the proxy's configuration, sends SIGHUP and waits for
/// reload number `n` to be logged.
fn reload(proxy: &Proxy, text: &str, n: usize) {
    std::fs::write(proxy.dir.join("proxy.toml"), text).unwrap();
    proxy.signal("HUP");
    for _ in 0..200 {
        if proxy.log().iter().filter(|l| l.contains("reloaded")).count() >= n {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("reload {n} was not logged:\n{}", proxy.log().join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_applies_mode_sources_forward_and_verify_and_names_what_needs_a_restart() {
    let (up, seen, _task) = upstream(false).await;
    let listen = "127.0.0.1:0";
    let proxy = start("reload-all", &reload_config(up, listen, "required", ""), SECRET);
    let sig = |id: &str| sign::hmac(&Secret::text(SECRET).unwrap(), id);
    let status = |headers: Vec<(&'static str, String)>| async move {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        send(proxy.addr, "/", &headers, Bytes::new()).await.0
    };
    assert_eq!(status(vec![]).await, StatusCode::UNAUTHORIZED);

    // mode
    reload(&proxy, &reload_config(up, listen, "optional", ""), 1);
    assert_eq!(status(vec![]).await, StatusCode::OK, "mode = optional lets anonymous requests in");
    assert_eq!(seen.take().pop().unwrap().0["x-identity-outcome"], "anonymous");

    // forward
    reload(&proxy, &reload_config(up, listen, "optional", "[forward]\nuser_id = \"x-proven-user\""), 2);
    assert_eq!(status(vec![("x-user-id", "u1".into()), ("x-identity-signature", sig("u1"))]).await, StatusCode::OK);
    let (headers, _) = seen.take().pop().unwrap();
    assert_eq!(headers["x-proven-user"], "u1");
    assert!(!headers.contains_key("x-verified-user-id"), "{headers:?}");

    // sources
    reload(&proxy, &reload_config(up, listen, "required", "[sources]\nheaders = { user_id = \"x-uid\" }"), 3);
    assert_eq!(status(vec![("x-uid", "u1".into()), ("x-identity-signature", sig("u1"))]).await, StatusCode::OK);
    assert_eq!(seen.take().pop().unwrap().0["x-verified-user-id"], "u1");

    // verify
    reload(&proxy, &reload_config(up, listen, "required", "[verify]\nmax_identifier_len = 3"), 4);
    assert_eq!(status(vec![("x-user-id", "u1".into()), ("x-identity-signature", sig("u1"))]).await, StatusCode::OK);
    let long = [("x-user-id", "user-1".into()), ("x-identity-signature", sig("user-1"))];
    assert_eq!(status(long.to_vec()).await, StatusCode::UNAUTHORIZED, "verify.max_identifier_len applies");
    seen.take();

    // listen: logged as needing a restart; the proxy keeps serving where it was.
    reload(&proxy, &reload_config(up, "127.0.0.1:1", "required", ""), 5);
    proxy.wait_for_log(&["restart", "listen"]);
    assert_eq!(
        status(vec![("x-user-id", "user-1".into()), ("x-identity-signature", sig("user-1"))]).await,
        StatusCode::OK
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_that_removes_the_upstream_answers_502_no_upstream_and_contacts_no_one() {
    let (up, seen, _task) = upstream(false).await;
    let with_upstream = reload_config(up, "127.0.0.1:0", "required", "[authz]\nlisten = \"127.0.0.1:0\"");
    let proxy = start("no-upstream", &with_upstream, SECRET);
    let sig = sign::hmac(&Secret::text(SECRET).unwrap(), "u1");
    let signed = [("x-user-id", "u1"), ("x-identity-signature", sig.as_str())];
    assert_eq!(send(proxy.addr, "/", &signed, Bytes::new()).await.0, StatusCode::OK);
    assert_eq!(seen.take().len(), 1);

    // Only [authz] is left: the proxy's listener keeps running until a restart.
    let authz_only = with_upstream.replace(&format!("upstream = \"http://{up}\"\n"), "");
    assert_ne!(authz_only, with_upstream);
    reload(&proxy, &authz_only, 1);
    proxy.wait_for_log(&["restart", "upstream (set or removed)"]);
    for headers in [&signed[..], &[]] {
        let (status, headers, body) = send(proxy.addr, "/chat?x=1", headers, Bytes::from_static(b"{}")).await;
        assert_eq!(status, StatusCode::BAD_GATEWAY);
        assert_eq!(headers["content-type"], "application/json");
        assert_eq!(body, r#"{"error":"no_upstream","message":"no upstream is configured"}"#);
    }
    assert!(seen.take().is_empty(), "the old upstream was contacted");
    assert_eq!(send(proxy.addr, "/healthz", &[], Bytes::new()).await.0, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_have_no_colour_codes_off_a_terminal_and_can_be_json() {
    let (up, _seen, _task) = upstream(false).await;
    let proxy = start("log-text", &config(up, ""), SECRET);
    assert_eq!(send(proxy.addr, "/", &[], Bytes::new()).await.0, StatusCode::UNAUTHORIZED);
    proxy.signal("HUP");
    proxy.wait_for_log(&["reloaded"]);
    let log = proxy.log();
    assert!(log.iter().all(|l| !l.contains('\u{1b}')), "ANSI escape codes in a piped log: {log:?}");

    let proxy = start("log-json", &config(up, "log_format = \"json\""), SECRET);
    proxy.signal("HUP");
    proxy.wait_for_log(&["reloaded"]);
    let log = proxy.log();
    assert!(log.len() >= 2);
    for line in &log {
        let value: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(value["level"].is_string() && value["fields"]["message"].is_string(), "{line}");
    }
}

/// A pseudo-terminal: its controller (what the process writes to the
/// terminal is read there) and the terminal (the process's stderr).
#[cfg(unix)]
fn pty() -> (std::fs::File, std::fs::File) {
    use rustix::fs::{Mode, OFlags, open};
    use rustix::pty::{OpenptFlags, grantpt, openpt, ptsname, unlockpt};
    let controller = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC).unwrap();
    grantpt(&controller).unwrap();
    unlockpt(&controller).unwrap();
    let name = ptsname(&controller, Vec::new()).unwrap();
    let terminal = open(name.as_c_str(), OFlags::RDWR | OFlags::NOCTTY | OFlags::CLOEXEC, Mode::empty()).unwrap();
    (controller.into(), terminal.into())
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_are_coloured_only_on_a_terminal_without_no_color() {
    let (up, _seen, _task) = upstream(false).await;
    // (stderr on a terminal, NO_COLOR, whether the log has ANSI escape codes)
    for (tty, no_color, coloured) in
        [(true, None, true), (true, Some("1"), false), (true, Some(""), true), (false, None, false)]
    {
        let dir = config_dir("colour", &config(up, ""), &[("secret.txt", &format!("{SECRET}\n"))]);
        let mut command = process::command(&dir, &[]);
        command.stdout(Stdio::null()).env_remove("NO_COLOR");
        if let Some(value) = no_color {
            command.env("NO_COLOR", value);
        }
        let never_logged = vec![SECRET.to_owned()];
        let proxy = if tty {
            let (controller, terminal) = pty();
            let child = command.stderr(terminal).spawn().unwrap();
            // The child holds the terminal now; ours closes with the command.
            drop(command);
            Proxy::watch(child, controller, dir, never_logged)
        } else {
            Proxy::spawn(command, dir, never_logged)
        };
        let listening = proxy.wait_for_log(&["listening on"]);
        let case = format!("tty {tty}, NO_COLOR {no_color:?}");
        assert_eq!(listening.contains("\u{1b}["), coloured, "{case}: {listening:?}");
        let log = proxy.log();
        assert!(coloured || log.iter().all(|l| !l.contains('\u{1b}')), "{case}: escape codes in {log:?}");
    }
}

/// The number of series in a Prometheus text exposition.
fn series(metrics: &str) -> usize {
    metrics.lines().filter(|l| !l.is_empty() && !l.starts_with('#')).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_tenant_names_leave_metric_series_and_memory_bounded() {
    let requests: usize =
        std::env::var("TOWER_IDENTITY_SERIES_REQUESTS").ok().and_then(|n| n.parse().ok()).unwrap_or(2000);
    let (up, seen, _task) = upstream(false).await;
    let cfg = format!(
        "listen = \"127.0.0.1:0\"\nupstream = \"http://{up}\"\nreload_poll_secs = 0\nadmin_listen = \"127.0.0.1:0\"\n\
         mode = \"required\"\n[sources]\nheaders = {{ tenant = \"x-app-id\" }}\n\
         [[tenants]]\nid = \"known\"\n[[tenants.keys]]\nid = \"k1\"\nscheme = \"hmac\"\nsecret_file = \"secret.txt\"\n"
    );
    let proxy = start("series", &cfg, SECRET);
    let admin = proxy.admin.unwrap();
    let mut rng = Rng::new(13);
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Full<Bytes>>();
    let one = |rng: &mut Rng| {
        // Mostly short names; one in ten up to 200 KB.
        let len = if rng.below(10) == 0 { 1 + rng.below(200 * 1024) } else { 1 + rng.below(64) } as usize;
        let name: String = (0..len).map(|_| char::from(b'a' + rng.below(26) as u8)).collect();
        let req = http::Request::get(format!("http://{}/", proxy.addr))
            .header("x-app-id", name)
            .header("x-user-id", "u1")
            .header("x-identity-signature", "0".repeat(64))
            .body(http_body_util::Full::new(Bytes::new()))
            .unwrap();
        let client = client.clone();
        async move { client.request(req).await.unwrap().status() }
    };
    for _ in 0..50 {
        assert_eq!(one(&mut rng).await, StatusCode::UNAUTHORIZED);
    }
    let before = series(&send(admin, "/metrics", &[], Bytes::new()).await.2);
    let rss_before = crate::load::rss_kib(proxy.pid()).0;
    for _ in 0..requests {
        assert_eq!(one(&mut rng).await, StatusCode::UNAUTHORIZED);
    }
    let (_, _, metrics) = send(admin, "/metrics", &[], Bytes::new()).await;
    let rss_after = crate::load::rss_kib(proxy.pid()).0;
    assert!(seen.take().is_empty());
    assert!(metrics.len() < 64 * 1024, "/metrics grew to {} bytes", metrics.len());
    assert!(series(&metrics) <= before + 8, "{before} series became {}", series(&metrics));
    assert!(rss_after <= rss_before + 32 * 1024, "RSS grew from {rss_before} KiB to {rss_after} KiB");
}
