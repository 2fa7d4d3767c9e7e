//! Metrics: the counters an operator needs (per key id, would-reject).

use crate::support::*;
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use tower_identity::{IdentityVerificationLayer, Mode, provider::ProviderError};

/// Runs `f` on a current-thread runtime with `recorder` as this thread's recorder.
fn with_recorder(recorder: &DebuggingRecorder, f: impl std::future::Future<Output = ()>) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    metrics::with_local_recorder(recorder, || rt.block_on(f));
}

#[test]
fn verdict_counters_by_key_id_and_would_reject() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    with_recorder(&recorder, async {
        let layer = IdentityVerificationLayer::new(rotating_keys()).mode(Mode::ReportOnly);
        for _ in 0..3 {
            send(&layer, signed(OLD, "u1")).await;
        }
        for _ in 0..2 {
            send(&layer, signed(NEW, "u1")).await;
        }
        send(&layer, signed("forged-secret-0123456789", "u1")).await;
        send(&layer, get("/", &[])).await;
        // A key without an id, no tenant: the label sets found without a formatted key.
        let plain = IdentityVerificationLayer::new(tower_identity::KeySet::single(tower_identity::Key::hmac(
            tower_identity::Identifier::UserId,
            tower_identity::Secret::text(NEW).unwrap(),
        )));
        for _ in 0..4 {
            send(&plain, signed(NEW, "u1")).await;
        }
        send(&plain, get("/", &[])).await;
        let failing = IdentityVerificationLayer::new(|_: Option<&str>| Err(ProviderError::new("db down")));
        send(&failing, get("/", &[])).await;
    });
    let mut verdicts = Vec::new();
    let mut histogram_samples = 0;
    for (key, _, _, value) in snapshotter.snapshot().into_vec() {
        let labels: Vec<(String, String)> =
            key.key().labels().map(|l| (l.key().to_owned(), l.value().to_owned())).collect();
        let label = |name: &str| labels.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()).unwrap_or_default();
        match (key.key().name(), value) {
            ("identity_verdicts_total", DebugValue::Counter(n)) => {
                verdicts.push((label("outcome"), label("reason"), label("key_id"), n));
            }
            ("identity_verification_seconds", DebugValue::Histogram(samples)) => histogram_samples += samples.len(),
            _ => {}
        }
    }
    verdicts.sort();
    println!("{verdicts:#?}");
    let count = |outcome: &str, reason: &str, key: &str| {
        verdicts.iter().find(|(o, r, k, _)| o == outcome && r == reason && k == key).map_or(0, |v| v.3)
    };
    assert_eq!(count("verified", "ok", "2025"), 3, "the old key's use is visible before retiring it");
    assert_eq!(count("verified", "ok", "2026"), 2);
    assert_eq!(count("unverified", "signature_invalid", ""), 1, "report-only would-rejects are counted");
    assert_eq!(count("verified", "ok", ""), 4, "every verdict is counted, also once its handle is cached");
    assert_eq!(count("rejected", "credential_missing", ""), 1);
    assert_eq!(count("anonymous", "none", ""), 1);
    assert_eq!(count("rejected", "provider_unavailable", ""), 1);
    assert_eq!(histogram_samples, 10, "one verification time per verification");
}

/// Sends `count` requests through `layer`, user "u1" of a random tenant whose
/// name is `name_len` letters long, signed with `secret(i)`, then one of
/// `last` (if any); the `tenant` label of every series, one entry per series.
fn random_tenants(
    layer: IdentityVerificationLayer,
    count: usize,
    mut name_len: impl FnMut(usize, &mut Rng) -> usize,
    secret: fn(usize) -> &'static str,
    last: Option<&str>,
) -> Vec<String> {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let mut rng = Rng::new(13);
    with_recorder(&recorder, async {
        for i in 0..count {
            let len = name_len(i, &mut rng);
            let name: String = (0..len).map(|_| char::from(b'a' + rng.below(26) as u8)).collect();
            send(&layer, tenant_request(&name, secret(i))).await;
        }
        if let Some(tenant) = last {
            send(&layer, tenant_request(tenant, NEW)).await;
        }
    });
    let tenant = |key: &metrics_util::CompositeKey| {
        key.key().labels().find(|l| l.key() == "tenant").map_or(String::new(), |l| l.value().to_owned())
    };
    snapshotter.snapshot().into_vec().iter().map(|(key, ..)| tenant(key)).collect()
}

const FORGED: &str = "forged-secret-0123456789";

/// Attacker-chosen tenant names do not grow the metric series: a tenant the
/// provider does not know is `tenant="unknown"`, and one longer than the cap
/// is refused before it is counted under its name.
#[test]
fn random_tenant_names_leave_the_series_count_bounded() {
    use tower_identity::provider::TenantMap;
    let layer = tenant_layer(TenantMap::new().tenant("acme", rotating_keys()).unwrap()).mode(Mode::ReportOnly);
    // Mostly names under the cap, every 20th up to 200 KB; half of them signed with a real key.
    let len =
        |i: usize, rng: &mut Rng| 1 + if i.is_multiple_of(20) { rng.below(200_000) } else { rng.below(300) } as usize;
    let series = random_tenants(layer, 3000, len, |i| if i % 2 == 0 { NEW } else { FORGED }, Some("acme"));
    let mut tenants = series.clone();
    tenants.sort();
    tenants.dedup();
    println!("{} series, tenant labels {tenants:?}", series.len());
    assert!(tenants.iter().all(|t| ["", "acme", "unknown"].contains(&t.as_str())), "{tenants:?}");
    assert!(series.len() <= 8, "{} series", series.len());
}

/// A provider may answer for any name (one key set for every tenant): then
/// every name is "known", and a layer still counts under a bounded number of
/// label sets, the rest as `tenant="other"`.
#[test]
fn a_provider_that_knows_every_name_still_leaves_the_series_bounded() {
    let layer = tenant_layer(rotating_keys()).mode(Mode::ReportOnly);
    let series = random_tenants(layer, 5000, |_, _| 16, |_| FORGED, None);
    println!("{} series", series.len());
    assert!(series.iter().any(|t| t == "other"), "label sets past the bound are counted as other");
    assert!(series.len() <= 4096 + 8, "{} series", series.len());
}
