//! `identity-proxy` end to end: the real binary between a real client and a
//! recording upstream, all on 127.0.0.1.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use sha2::Digest;
use tower_identity::{Secret, sign};

use crate::process::{Proxy, run_cli, temp_dir};

pub const SECRET: &str = "proxy-secret-0123456789abcdef";

/// What the upstream saw.
#[derive(Clone, Default)]
pub struct Seen(Arc<Mutex<Vec<(HeaderMap, String)>>>);

impl Seen {
    pub fn take(&self) -> Vec<(HeaderMap, String)> {
        std::mem::take(&mut self.0.lock().unwrap())
    }
}

/// An upstream that records headers and the body's sha256, and answers
/// "upstream". `/slow` waits two seconds first. The request's path and query
/// are recorded as the header `x-test-target`.
pub async fn upstream(h2: bool) -> (SocketAddr, Seen, tokio::task::JoinHandle<()>) {
    let seen = Seen::default();
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let rec = seen.clone();
    let task = tokio::spawn(async move {
        loop {
            let (stream, _) = l.accept().await.unwrap();
            let rec = rec.clone();
            let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let rec = rec.clone();
                async move {
                    let slow = req.uri().path() == "/slow";
                    let (parts, body) = req.into_parts();
                    let bytes = body.collect().await.unwrap().to_bytes();
                    let mut headers = parts.headers;
                    let target = parts.uri.path_and_query().map_or("", |p| p.as_str());
                    headers.insert("x-test-target", target.parse().unwrap());
                    rec.0.lock().unwrap().push((headers, hex::encode(sha2::Sha256::digest(&bytes))));
                    if slow {
                        tokio::time::sleep(Duration::from_secs(2)).await;
                    }
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"upstream"))))
                }
            });
            tokio::spawn(async move {
                let io = TokioIo::new(stream);
                if h2 {
                    let _ =
                        hyper::server::conn::http2::Builder::new(TokioExecutor::new()).serve_connection(io, svc).await;
                } else {
                    let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, svc).await;
                }
            });
        }
    });
    (addr, seen, task)
}

pub fn config(upstream: SocketAddr, extra: &str) -> String {
    format!(
        r#"
listen = "127.0.0.1:0"
upstream = "http://{upstream}"
mode = "required"
strip_credentials = true
upstream_timeout_secs = 1
reload_poll_secs = 0
shutdown_grace_secs = 5
{extra}

[sources]
json = {{ user_id = "/user_id", signature = "/user_hash" }}

[[tenants]]
[[tenants.keys]]
id = "k1"
scheme = "hmac"
secret_file = "secret.txt"
"#
    )
}

/// Starts the binary with `config` and `secret` in `secret.txt` (with a
/// trailing newline, which the proxy drops).
pub fn start(name: &str, config: &str, secret: &str) -> Proxy {
    Proxy::start(name, config, &[("secret.txt", &format!("{secret}\n"))], &[])
}

pub async fn send(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    body: Bytes,
) -> (StatusCode, HeaderMap, String) {
    let mut b = Request::post(format!("http://{addr}{path}"));
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let client = Client::builder(TokioExecutor::new()).build_http();
    let res = client.request(b.body(Full::new(body)).unwrap()).await.unwrap();
    let (parts, body) = res.into_parts();
    (parts.status, parts.headers, String::from_utf8_lossy(&body.collect().await.unwrap().to_bytes()).into_owned())
}

const SPOOFS: [&str; 6] = [
    "x-verified-user-id",
    "x_verified_user_id",
    "x.verified.user.id",
    "x-verified_email",
    "x-identity-outcome",
    "x_verified_key_id",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verifies_strips_spoofs_and_streams_bodies() {
    for h2 in [false, true] {
        let (up, seen, _task) = upstream(h2).await;
        let protocol = if h2 { "upstream_protocol = \"h2c\"" } else { "" };
        let proxy = start(if h2 { "h2" } else { "h1" }, &config(up, protocol), SECRET);
        let sig = sign::hmac(&Secret::text(SECRET).unwrap(), "u1");

        // Verified, with spoofed identity headers in every spelling.
        let mut headers = vec![("x-user-id", "u1"), ("x-identity-signature", sig.as_str())];
        headers.extend(SPOOFS.iter().map(|s| (*s, "admin")));
        let (status, _, body) = send(proxy.addr, "/a", &headers, Bytes::new()).await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "upstream"));
        let (h, _) = seen.take().pop().unwrap();
        assert_eq!(h.get_all("x-verified-user-id").iter().collect::<Vec<_>>(), ["u1"]);
        assert_eq!(h.get_all("x-identity-outcome").iter().collect::<Vec<_>>(), ["verified"]);
        assert_eq!(h.get_all("x-verified-key-id").iter().collect::<Vec<_>>(), ["k1"]);
        assert!(h.values().all(|v| v != "admin"), "a spoofed header reached the upstream: {h:?}");
        assert!(h.get("x-identity-signature").is_none(), "credential stripped");
        assert_eq!(
            (&h["x-test-target"], &h["x-forwarded-for"]),
            (&"/a".parse().unwrap(), &"127.0.0.1".parse().unwrap())
        );

        // The request target arrives as sent; the client is appended to a
        // prior x-forwarded-for, and replaces one that is not visible ASCII.
        let target = "/a/b%20c?q=1&r=%2F&s";
        for (prior, expected) in [("203.0.113.7", "203.0.113.7, 127.0.0.1"), ("ÿ", "127.0.0.1")] {
            let headers = [("x-user-id", "u1"), ("x-identity-signature", sig.as_str()), ("x-forwarded-for", prior)];
            let (status, _, _) = send(proxy.addr, target, &headers, Bytes::new()).await;
            assert_eq!(status, StatusCode::OK);
            let (h, _) = seen.take().pop().unwrap();
            assert_eq!(h["x-test-target"], target);
            assert_eq!(h.get_all("x-forwarded-for").iter().collect::<Vec<_>>(), [expected], "prior {prior:?}");
        }

        // Hop-by-hop names cannot remove the proven identity headers (stripped before the layer).
        let hop = "keep-alive, x-verified-user-id, x-identity-outcome";
        let headers = [("x-user-id", "u1"), ("x-identity-signature", sig.as_str()), ("connection", hop)];
        let (status, _, _) = send(proxy.addr, "/a", &headers, Bytes::new()).await;
        assert_eq!(status, StatusCode::OK);
        let (h, _) = seen.take().pop().unwrap();
        assert_eq!(
            (&h["x-verified-user-id"], &h["x-identity-outcome"]),
            (&"u1".parse().unwrap(), &"verified".parse().unwrap())
        );

        // Rejected: nothing reaches the upstream.
        let (status, _, body) =
            send(proxy.addr, "/a", &[("x-user-id", "u1"), ("x-identity-signature", &"0".repeat(64))], Bytes::new())
                .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert!(body.contains("signature_invalid") && !body.contains("u1"), "{body}");
        let (status, _, _) = send(proxy.addr, "/a", &SPOOFS.map(|s| (s, "admin")), Bytes::new()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert!(seen.take().is_empty());

        // A large streamed body arrives byte-identical.
        let big: Vec<u8> = (0..3_000_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
        let (status, _, _) = send(
            proxy.addr,
            "/upload",
            &[("x-user-id", "u1"), ("x-identity-signature", &sig)],
            Bytes::from(big.clone()),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        let (_, digest) = seen.take().pop().unwrap();
        assert_eq!(digest, hex::encode(sha2::Sha256::digest(&big)));

        // Identity in a JSON body: verified, and the body arrives whole.
        let json = format!(r#"{{"user_id":"u1","user_hash":"{sig}","text":"hello"}}"#);
        let (status, _, _) =
            send(proxy.addr, "/chat", &[("content-type", "application/json")], Bytes::from(json.clone())).await;
        assert_eq!(status, StatusCode::OK);
        let (h, digest) = seen.take().pop().unwrap();
        assert_eq!(digest, hex::encode(sha2::Sha256::digest(json.as_bytes())));
        assert_eq!(h["x-verified-user-id"], "u1");

        // Health check without credentials.
        let (status, _, body) = send(proxy.addr, "/healthz", &[], Bytes::new()).await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, r#"{"status":"ok"}"#));

        // Upstream too slow: 504 with a JSON body.
        let (status, _, body) =
            send(proxy.addr, "/slow", &[("x-user-id", "u1"), ("x-identity-signature", &sig)], Bytes::new()).await;
        assert_eq!(status, StatusCode::GATEWAY_TIMEOUT);
        assert!(body.contains("upstream_timeout"), "{body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_requests_in_optional_mode_and_upstream_down() {
    // Reserve a port and close it: nothing listens there.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let proxy = start("down", &config(dead, "").replace("mode = \"required\"", "mode = \"optional\""), SECRET);
    let (status, _, body) = send(proxy.addr, "/", &[], Bytes::new()).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert!(body.contains("upstream_unavailable"), "{body}");

    let (up, seen, _task) = upstream(false).await;
    let optional = config(up, "admin_listen = \"127.0.0.1:0\"").replace("mode = \"required\"", "mode = \"optional\"");
    let proxy = start("anon", &optional, SECRET);
    let (status, _, _) = send(proxy.addr, "/", &[("x_verified_user_id", "admin")], Bytes::new()).await;
    assert_eq!(status, StatusCode::OK);
    let (h, _) = seen.take().pop().unwrap();
    assert_eq!(h["x-identity-outcome"], "anonymous");
    assert!(h.get("x-verified-user-id").is_none() && h.get("x_verified_user_id").is_none());

    // Prometheus metrics, on the admin listener only.
    let (status, _, _) = send(proxy.addr, "/metrics", &[], Bytes::new()).await;
    assert_eq!(status, StatusCode::OK, "proxied (upstream answered), not the proxy's metrics");
    seen.take();
    let (status, headers, body) = send(proxy.admin.unwrap(), "/metrics", &[], Bytes::new()).await;
    assert_eq!(status, StatusCode::OK);
    assert!(headers["content-type"].to_str().unwrap().starts_with("text/plain"));
    assert!(body.contains("identity_verdicts_total{") && body.contains("outcome=\"anonymous\""), "{body}");
    assert!(seen.take().is_empty(), "/metrics is answered by the proxy itself");
}

/// `[sources] max_buffered_body_bytes` reaches the layer: a JSON body larger
/// than the whole budget is answered 503 `overloaded` with `Retry-After`
/// before it is read, and never reaches the upstream; header-only requests
/// keep being served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_body_budget_setting_refuses_buffering_beyond_it() {
    let (up, seen, _task) = upstream(false).await;
    let cfg = config(up, "").replace(
        "json = { user_id = \"/user_id\", signature = \"/user_hash\" }",
        "json = { user_id = \"/user_id\", signature = \"/user_hash\" }\nmax_buffered_body_bytes = 64",
    );
    let proxy = start("budget", &cfg, SECRET);
    let sig = tower_identity::sign::hmac(&tower_identity::Secret::text(SECRET).unwrap(), "u1");
    let json = format!(r#"{{"user_id":"u1","user_hash":"{sig}","text":"hello"}}"#);
    assert!(json.len() > 64);
    let (status, headers, body) =
        send(proxy.addr, "/chat", &[("content-type", "application/json")], Bytes::from(json)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(body.contains("overloaded"), "{body}");
    assert!(headers.contains_key("retry-after"));
    assert!(seen.take().is_empty(), "a refused body never reaches the upstream");
    let (status, _, _) =
        send(proxy.addr, "/", &[("x-user-id", "u1"), ("x-identity-signature", &sig)], Bytes::new()).await;
    assert_eq!(status, StatusCode::OK, "header identities need no buffering");
    assert_eq!(seen.take().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_rotates_keys_without_dropping_requests() {
    let (up, _seen, _task) = upstream(false).await;
    let mut proxy =
        start("reload", &config(up, "").replace("upstream_timeout_secs = 1", "upstream_timeout_secs = 10"), SECRET);
    let old = sign::hmac(&Secret::text(SECRET).unwrap(), "u1");
    let new_secret = "rotated-secret-0123456789abcdef";
    let new = sign::hmac(&Secret::text(new_secret).unwrap(), "u1");
    let call = |sig: String, path: &'static str| {
        let addr = proxy.addr;
        async move { send(addr, path, &[("x-user-id", "u1"), ("x-identity-signature", &sig)], Bytes::new()).await.0 }
    };
    assert_eq!(call(old.clone(), "/").await, StatusCode::OK);
    assert_eq!(call(new.clone(), "/").await, StatusCode::UNAUTHORIZED);

    // A request in flight while the key rotates completes (the upstream holds it 2 s).
    let in_flight = tokio::spawn(call(old.clone(), "/slow"));
    tokio::time::sleep(Duration::from_millis(200)).await;
    std::fs::write(proxy.dir.join("secret.txt"), new_secret).unwrap();
    proxy.signal("HUP");
    let mut rotated = false;
    for _ in 0..50 {
        if call(new.clone(), "/").await == StatusCode::OK {
            rotated = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(rotated, "the new key is accepted after SIGHUP");
    assert_eq!(call(old.clone(), "/").await, StatusCode::UNAUTHORIZED, "the removed key is rejected");
    assert_eq!(in_flight.await.unwrap(), StatusCode::OK);

    // A broken new configuration is refused; the current keys keep serving.
    std::fs::write(proxy.dir.join("proxy.toml"), "this is not toml [").unwrap();
    proxy.signal("HUP");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(call(new.clone(), "/").await, StatusCode::OK);

    // SIGTERM: in-flight requests finish, then the process exits cleanly.
    let in_flight = tokio::spawn(call(new.clone(), "/slow"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    proxy.signal("TERM");
    assert_eq!(in_flight.await.unwrap(), StatusCode::OK);
    let status = tokio::task::spawn_blocking(move || {
        let status = proxy.child.wait().unwrap();
        drop(proxy);
        status
    })
    .await
    .unwrap();
    assert!(status.success(), "{status:?}");
}

#[test]
fn invalid_configurations_exit_2_naming_file_and_key() {
    let dir = temp_dir("invalid");
    std::fs::write(dir.join("secret.txt"), SECRET).unwrap();
    let base = config("127.0.0.1:9".parse().unwrap(), "");
    let cases = [
        (base.replace("scheme = \"hmac\"", "scheme = \"md5\""), "tenants[default].keys[\"k1\"].scheme"),
        (
            base.replace("secret_file = \"secret.txt\"", "secret_file = \"missing.txt\""),
            "tenants[default].keys[\"k1\"].secret_file",
        ),
        (base.replace("secret_file = \"secret.txt\"", "secret = \"inline\""), "unknown field `secret`"),
        (base.replace("mode = \"required\"", "mode = \"strict\""), "mode"),
        (base.replace("upstream = ", "upstream = \"ftp://x\"\n#"), "upstream"),
        (
            format!("{base}\n[sources.json]\nuser_id = \"no-slash\"\n")
                .replace("json = { user_id = \"/user_id\", signature = \"/user_hash\" }", ""),
            "sources.json.user_id",
        ),
    ];
    for (text, needle) in cases {
        std::fs::write(dir.join("bad.toml"), &text).unwrap();
        let (code, _, stderr) = run_cli(&["--config", "bad.toml", "check"], &dir);
        assert_eq!(code, 2, "{needle}: {stderr}");
        assert!(stderr.contains("bad.toml") && stderr.contains(needle), "{needle}: {stderr}");
        assert!(!stderr.contains(SECRET));
    }
    // A too-short secret is refused at load time.
    std::fs::write(dir.join("secret.txt"), "short").unwrap();
    std::fs::write(dir.join("ok.toml"), &base).unwrap();
    let (code, _, stderr) = run_cli(&["--config", "ok.toml", "check"], &dir);
    assert_eq!(code, 2);
    assert!(stderr.contains("min_secret_len"), "{stderr}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn one_secret_for_two_schemes_across_tenants_is_refused_naming_both() {
    let dir = temp_dir("shared-secret");
    std::fs::write(dir.join("secret.txt"), SECRET).unwrap();
    std::fs::write(dir.join("same.txt"), format!("{SECRET}\n")).unwrap();
    let tenant = |id: &str, key: &str, scheme: &str, file: &str| {
        format!(
            "\n[[tenants]]\nid = \"{id}\"\n[[tenants.keys]]\nid = \"{key}\"\nscheme = \"{scheme}\"\nsecret_file = \"{file}\"\n"
        )
    };
    let base = config("127.0.0.1:9".parse().unwrap(), "");
    // The default tenant signs plain HMACs; app_b would accept them as timestamped signatures.
    let text = format!("{base}{}", tenant("app_b", "b1", "timestamped_hmac", "same.txt"));
    std::fs::write(dir.join("shared.toml"), &text).unwrap();
    let (code, _, stderr) = run_cli(&["--config", "shared.toml", "check"], &dir);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains(r#"the default tenant (key "k1")"#), "{stderr}");
    assert!(stderr.contains(r#"tenant "app_b" (key "b1")"#), "{stderr}");
    assert!(stderr.contains("shared.toml") && !stderr.contains(SECRET), "{stderr}");
    // The same secret under the same scheme stays allowed.
    let text = format!("{base}{}", tenant("app_b", "b1", "hmac", "same.txt"));
    std::fs::write(dir.join("same.toml"), &text).unwrap();
    let (code, _, stderr) = run_cli(&["--config", "same.toml", "check"], &dir);
    assert_eq!(code, 0, "{stderr}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn sign_and_check_tools() {
    let dir = temp_dir("tools");
    std::fs::write(dir.join("secret.txt"), SECRET).unwrap();
    std::fs::write(dir.join("p.toml"), config("127.0.0.1:9".parse().unwrap(), "")).unwrap();
    let (code, out, _) = run_cli(&["--config", "p.toml", "check"], &dir);
    assert_eq!((code, out.trim()), (0, "configuration OK: 1 tenants, 1 keys"));
    let (code, sig, _) = run_cli(&["--config", "p.toml", "sign", "--user-id", "u42"], &dir);
    assert_eq!(code, 0);
    assert_eq!(sig.trim(), sign::hmac(&Secret::text(SECRET).unwrap(), "u42"), "the tool signs like the crate");
    let (code, out, _) = run_cli(&["--config", "p.toml", "check", "--user-id", "u42", "--signature", sig.trim()], &dir);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("valid"));
    // Signed with the secret hex-decoded by mistake... or the hex text of the secret.
    let hex_text = hex::encode(SECRET);
    let wrong = sign::hmac(&Secret::text(&hex_text).unwrap(), "u42");
    let (code, out, _) = run_cli(&["--config", "p.toml", "check", "--user-id", "u42", "--signature", &wrong], &dir);
    assert_eq!(code, 1);
    assert!(out.contains("encoding"), "{out}");
    // Signed over the email instead of the user id.
    let (code, out, _) = run_cli(
        &[
            "--config",
            "p.toml",
            "check",
            "--user-id",
            "u42",
            "--email",
            "a@b.c",
            "--signature",
            &sign::hmac(&Secret::text(SECRET).unwrap(), "a@b.c"),
        ],
        &dir,
    );
    assert_eq!(code, 1);
    assert!(out.contains("over the email"), "{out}");
    assert!(!out.contains(SECRET) && !out.contains(&hex_text));
    let _ = std::fs::remove_dir_all(dir);
}

/// Creates the tables once per test binary: tests migrating the same fresh
/// database at the same time would race on `CREATE TABLE IF NOT EXISTS`.
async fn migrate(url: &str) {
    static MIGRATED: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
    MIGRATED
        .get_or_init(|| async {
            let provider = tower_identity::provider::postgres::PostgresProvider::connect(url, 1).unwrap();
            provider.migrate().await.unwrap();
        })
        .await;
}

/// The PostgreSQL URL and a client, with `tenant` (re)created holding one
/// HMAC key `key_id` over `SECRET`; `None` (skipped) without PostgreSQL,
/// unless it is required.
pub async fn pg_tenant(tenant: &str, key_id: &str) -> Option<(String, tokio_postgres::Client)> {
    let Ok(url) = std::env::var("TOWER_IDENTITY_PG_URL") else {
        assert!(std::env::var("TOWER_IDENTITY_REQUIRE_POSTGRES").as_deref() != Ok("1"), "PostgreSQL is required");
        eprintln!("skipping: TOWER_IDENTITY_PG_URL is not set");
        return None;
    };
    migrate(&url).await;
    let (db, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    db.execute("DELETE FROM identity_tenants WHERE tenant_id = $1", &[&tenant]).await.unwrap();
    db.execute("INSERT INTO identity_tenants (tenant_id) VALUES ($1)", &[&tenant]).await.unwrap();
    db.execute(
        "INSERT INTO identity_keys (tenant_id, key_id, scheme, secret) VALUES ($1, $2, 'hmac', $3)",
        &[&tenant, &key_id, &SECRET],
    )
    .await
    .unwrap();
    Some((url, db))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_from_postgresql_with_immediate_revocation() {
    let Some((url, db)) = pg_tenant("proxy-pg", "db-1").await else { return };

    let (up, seen, _task) = upstream(false).await;
    let cfg = format!(
        "listen = \"127.0.0.1:0\"\nupstream = \"http://{up}\"\nreload_poll_secs = 0\n\
         [sources]\nheaders = {{ tenant = \"x-app-id\" }}\n\
         [postgres]\nurl_file = \"db-url.txt\"\ncache_ttl_secs = 3600\n"
    );
    let proxy = Proxy::start("pg", &cfg, &[("db-url.txt", &url)], &[]);
    let sig = sign::hmac(&Secret::text(SECRET).unwrap(), "u1");
    let headers = [("x-app-id", "proxy-pg"), ("x-user-id", "u1"), ("x-identity-signature", sig.as_str())];
    let call = || send(proxy.addr, "/", &headers, Bytes::new());
    assert_eq!(call().await.0, StatusCode::OK);
    let (h, _) = seen.take().pop().unwrap();
    assert_eq!(
        (h["x-verified-key-id"].to_str().unwrap(), h["x-verified-tenant"].to_str().unwrap()),
        ("db-1", "proxy-pg")
    );
    // Revoked in the database: refused at once (LISTEN/NOTIFY), although the cache TTL is an hour.
    tokio::time::sleep(Duration::from_millis(300)).await;
    db.execute("UPDATE identity_keys SET not_after = now() - interval '1 second' WHERE tenant_id = 'proxy-pg'", &[])
        .await
        .unwrap();
    let mut refused = false;
    for _ in 0..50 {
        if call().await.0 == StatusCode::UNAUTHORIZED {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(refused, "the revoked key is refused without waiting for the TTL");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_secret_file_is_reloaded_without_a_signal() {
    let (up, _seen, _task) = upstream(false).await;
    let proxy = start("watch", &config(up, "").replace("reload_poll_secs = 0", "reload_poll_secs = 1"), SECRET);
    let rotated = "watched-rotated-secret-0123456789";
    let call = |secret: &'static str| {
        let addr = proxy.addr;
        async move {
            let sig = sign::hmac(&Secret::text(secret).unwrap(), "u1");
            send(addr, "/", &[("x-user-id", "u1"), ("x-identity-signature", &sig)], Bytes::new()).await.0
        }
    };
    assert_eq!(call(SECRET).await, StatusCode::OK);
    // A different mtime is what the watcher looks for; make sure the clock moved.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    std::fs::write(proxy.dir.join("secret.txt"), rotated).unwrap();
    let mut reloaded = false;
    for _ in 0..60 {
        if call(rotated).await == StatusCode::OK {
            reloaded = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(reloaded, "the new secret is picked up from the changed file");
    assert_eq!(call(SECRET).await, StatusCode::UNAUTHORIZED);
}
