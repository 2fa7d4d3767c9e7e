//! Log hygiene: every log line the layer writes at TRACE, in every mode, for
//! valid, forged, expired and malformed credentials, captured and searched
//! for secrets, signatures and tokens. (Its own test binary: tracing caches
//! callsite interest per process.)

mod support;

use support::*;
use tower_identity::{Identifier, IdentityVerificationLayer, Key, KeySet, Mode, Secret, Sources, jwt, sign};

#[test]
fn no_secret_signature_or_token_ever_reaches_the_logs() {
    let capture = Capture::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(capture.clone())
        .with_ansi(false)
        .finish();
    let token = jwt::token(&Secret::text(JWT_SECRET).unwrap(), "app", "jane@example.com", Some("Jane"), NOW, 600, []);
    let forged_token = format!("{}x", &token[..token.len() - 1]);
    let valid_sig = sign::hmac(&Secret::text(NEW).unwrap(), "u1");
    let ts_sig = sign::timestamped_hmac(&Secret::text(OLD).unwrap(), "u1", NOW);
    let mut secrets: Vec<String> = vec![OLD.into(), NEW.into(), JWT_SECRET.into(), valid_sig.clone(), token.clone()];
    secrets.push(token.rsplit('.').next().unwrap().to_owned());
    secrets.push(ts_sig[..64].to_owned());
    tracing::subscriber::with_default(subscriber, || {
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
    let logs = capture.text();
    assert!(logs.contains("verified") && logs.contains("would reject"), "the capture works: {logs}");
    for s in &secrets {
        assert!(!logs.contains(s.as_str()), "{s:?} reached the logs");
    }
    assert!(!logs.contains("u1"), "identifiers are not logged unless log_identifiers is set");
    println!("{} log bytes checked against {} secrets", logs.len(), secrets.len());
}
