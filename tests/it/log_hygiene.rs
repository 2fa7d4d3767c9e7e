//! Log hygiene: every log line the layer writes at TRACE, in every mode, for
//! valid, forged, expired and malformed credentials, captured and searched
//! for secrets, signatures and tokens.
//!
//! The tests of every module share this process, and tracing caches each
//! callsite's interest per process: a scoped subscriber (`with_default`)
//! would miss the events of callsites another thread registered while it was
//! the only subscriber (they are cached as "never"). So one global
//! subscriber, installed once, asks at every event whether the emitting
//! thread is capturing, and writes the line into that thread's buffer.

use std::cell::RefCell;
use std::io::Write;
use std::sync::OnceLock;

use tower_identity::{Identifier, IdentityVerificationLayer, Key, KeySet, Mode, Secret, Sources, sign};
use tracing_subscriber::filter::dynamic_filter_fn;
use tracing_subscriber::prelude::*;

use crate::support::*;

thread_local! {
    /// The log lines written on this thread while it captures (`None` when it does not).
    static CAPTURED: RefCell<Option<Vec<u8>>> = const { RefCell::new(None) };
}

/// A writer into the emitting thread's capture buffer.
struct ThreadCapture;

impl Write for ThreadCapture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        CAPTURED.with_borrow_mut(|captured| captured.as_mut().map(|lines| lines.extend_from_slice(buf)));
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Installs the process's global subscriber (once): every level, enabled
/// only on threads that capture, so other tests' events stay disabled.
fn install() {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        let capturing = dynamic_filter_fn(|_, _| CAPTURED.with_borrow(Option::is_some));
        let layer = tracing_subscriber::fmt::layer().with_writer(|| ThreadCapture).with_ansi(false);
        tracing_subscriber::registry()
            .with(layer.with_filter(capturing))
            .try_init()
            .expect("no other global subscriber in the integration tests");
    });
}

/// Runs `f` on this thread and returns every log line it wrote, at any level.
fn capture(f: impl FnOnce()) -> String {
    install();
    CAPTURED.set(Some(Vec::new()));
    f();
    let lines = CAPTURED.take().unwrap_or_default();
    String::from_utf8(lines).unwrap()
}

#[test]
fn no_secret_signature_or_token_ever_reaches_the_logs() {
    let token =
        sign::jwt_token(&Secret::text(JWT_SECRET).unwrap(), "app", "jane@example.com", Some("Jane"), NOW, 600, []);
    let forged_token = format!("{}x", &token[..token.len() - 1]);
    let valid_sig = sign::hmac(&Secret::text(NEW).unwrap(), "u1");
    let ts_sig = sign::timestamped_hmac(&Secret::text(OLD).unwrap(), "u1", NOW);
    let mut secrets: Vec<String> = vec![OLD.into(), NEW.into(), JWT_SECRET.into(), valid_sig.clone(), token.clone()];
    secrets.push(token.rsplit('.').next().unwrap().to_owned());
    secrets.push(ts_sig[..64].to_owned());
    let logs = capture(|| {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            for mode in [Mode::Off, Mode::ReportOnly, Mode::Optional, Mode::Required] {
                let layer = IdentityVerificationLayer::new(rotating_keys().with_audience("app"))
                    .mode(mode)
                    .clock(|| NOW)
                    .sources(Sources::new().bearer());
                send(&layer, signed(NEW, "u1")).await;
                send(&layer, signed("forged-secret-0123456789", "u1")).await;
                send(&layer, get("/", &[("x-user-id", "u1"), ("x-identity-signature", &ts_sig)])).await;
                send(&layer, get("/", &[("authorization", &format!("Bearer {token}"))])).await;
                send(&layer, get("/", &[("x-identity-token", &forged_token)])).await;
                send(&layer, get("/", &[("x-identity-token", &token), ("x-user-email", "other@example.com")])).await;
                let short = IdentityVerificationLayer::new(KeySet::single(Key::hmac(
                    Identifier::UserId,
                    Secret::text("tiny").unwrap(),
                )));
                send(&short, signed("tiny", "u1")).await;
            }
            // Debug output of the configuration and the identity.
            let layer = IdentityVerificationLayer::new(rotating_keys());
            tracing::debug!(?layer, keys = ?rotating_keys(), "configuration");
        });
    });
    assert!(logs.contains("verified") && logs.contains("would reject"), "the capture works: {logs}");
    for s in &secrets {
        assert!(!logs.contains(s.as_str()), "{s:?} reached the logs");
    }
    assert!(!logs.contains("u1"), "identifiers are not logged unless log_identifiers is set");
    println!("{} log bytes checked against {} secrets", logs.len(), secrets.len());
}

#[test]
fn a_rejected_cors_preflight_logs_that_a_cors_layer_belongs_outside() {
    let rejected = |req| {
        capture(|| {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            let layer = IdentityVerificationLayer::new(rotating_keys()).mode(Mode::Required);
            let (answer, rec) = rt.block_on(send(&layer, req));
            assert_rejected(&answer, &rec, 401, "credential_missing", &[]);
        })
    };
    // An ordinary rejection says nothing about CORS; a rejected preflight does.
    let ordinary = rejected(get("/", &[]));
    assert!(!ordinary.contains("CorsLayer"), "{ordinary}");
    let preflight = http::Request::options("/chat")
        .header("origin", "https://shop.example")
        .header("access-control-request-method", "POST")
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    let logs = rejected(preflight);
    assert!(logs.contains("CorsLayer") && logs.contains("outside IdentityVerificationLayer"), "{logs}");
}

/// No attacker-chosen value of unbounded length reaches a log line: a tenant
/// name longer than the cap is refused before it is logged, and a tenant the
/// provider does not know is logged as `<unknown>`, in every mode and when the
/// provider fails.
#[test]
fn unknown_and_long_tenant_names_never_reach_the_logs() {
    use tower_identity::provider::{LookupResult, ProviderError, TenantMap};
    let long = format!("huge-{}", "x".repeat(300 * 1024));
    let unknown = "initech-unknown-tenant-name-0123456789";
    let logs = capture(|| {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            for mode in [Mode::Off, Mode::ReportOnly, Mode::Optional, Mode::Required] {
                let tenants = TenantMap::new().tenant("acme", rotating_keys()).unwrap();
                let layer = tenant_layer(tenants).mode(mode);
                for tenant in [long.as_str(), unknown] {
                    send(&layer, tenant_request(tenant, NEW)).await;
                    send(&layer, tenant_request(tenant, "forged-secret-0123456789")).await;
                    send(&layer, get("/", &[("x-tenant", tenant)])).await;
                }
                send(&layer, tenant_request("acme", "forged-secret-0123456789")).await;
            }
            let failing = tenant_layer(|_: Option<&str>| -> LookupResult { Err(ProviderError::new("db down")) });
            send(&failing, tenant_request(unknown, NEW)).await;
        });
    });
    assert!(logs.contains("would reject") && logs.contains("<unknown>"), "the capture works: {logs}");
    assert!(logs.contains("acme"), "known tenants are logged by name");
    assert!(!logs.contains(unknown), "an unknown tenant name reached the logs");
    assert!(!logs.contains("huge-"), "an over-long tenant name reached the logs");
    assert!(logs.len() < 64 * 1024, "{} log bytes for 29 requests", logs.len());
}
