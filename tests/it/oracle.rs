//! No tenant-existence oracle: for every shape of credential, a tenant the
//! provider does not know gets the answer a known tenant with a wrong key gets
//! (status, code, headers, body) and moves the same metrics, the verification
//! time included.

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use tower_identity::Mode;
use tower_identity::key::{Identifier, Key, KeySet};
use tower_identity::layer::IdentityVerificationLayer;
use tower_identity::provider::TenantMap;
use tower_identity::secret::Secret;
use tower_identity::sign;

use crate::support::*;

/// Every shape of credential an attacker without a key can send, as headers
/// (the tenant is added per run).
fn shapes() -> Vec<(&'static str, Vec<(&'static str, String)>)> {
    let other = Secret::text("an-attacker-secret-0123456789").unwrap();
    let user = |sig: String| vec![("x-user-id", "u1".to_owned()), ("x-identity-signature", sig)];
    let forged_token = sign::jwt_token(&other, "app", "e@example.com", None, NOW, 600, []);
    let zeros = "0".repeat(64);
    vec![
        ("missing", vec![("x-user-id", "u1".to_owned())]),
        ("malformed signature", user("zz".to_owned())),
        ("forged signature", user(sign::hmac(&other, "u1"))),
        ("over-long identifier", vec![("x-user-id", "u".repeat(300)), ("x-identity-signature", zeros.clone())]),
        ("edge whitespace", vec![("x-user-id", "u1 ".to_owned()), ("x-identity-signature", zeros.clone())]),
        ("expired timestamp", user(format!("{zeros}-{}", NOW - 86_400))),
        ("future timestamp", user(format!("{zeros}-{}", NOW + 86_400))),
        ("bad timestamp", user(format!("{zeros}-01"))),
        ("no identifier", vec![("x-identity-signature", zeros.clone())]),
        ("email only", vec![("x-user-email", "e@example.com".to_owned()), ("x-identity-signature", zeros.clone())]),
        ("malformed token", vec![("x-identity-token", "abc.def".to_owned())]),
        ("forged token", vec![("x-identity-token", forged_token.clone())]),
        ("signature and token", vec![("x-identity-signature", zeros), ("x-identity-token", forged_token)]),
    ]
}

fn request(tenant: &str, headers: &[(&'static str, String)]) -> Request<Full<Bytes>> {
    let mut all: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    all.push(("x-tenant", tenant));
    get("/", &all)
}

/// One metric as the oracle test compares it: name, labels other than
/// `tenant`, and the count (a counter's value, a histogram's samples).
type Sample = (String, Vec<(String, String)>, u64);

/// Sends `req` through a new layer (a layer keeps the metric handles of the
/// recorder it first used) with a recorder of its own; the answer, the inner
/// calls and the metrics.
fn run(layer: IdentityVerificationLayer, req: Request<Full<Bytes>>) -> (Answer, usize, Vec<Sample>) {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let (answer, rec) = metrics::with_local_recorder(&recorder, || rt.block_on(send(&layer, req)));
    let mut samples: Vec<Sample> = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _, _, value)| {
            let labels = key
                .key()
                .labels()
                .filter(|l| l.key() != "tenant")
                .map(|l| (l.key().into(), l.value().into()))
                .collect();
            let count = match value {
                DebugValue::Counter(n) => n,
                DebugValue::Histogram(samples) => samples.len() as u64,
                DebugValue::Gauge(_) => 0,
            };
            (key.key().name().to_owned(), labels, count)
        })
        .collect();
    samples.sort();
    (answer, rec.calls(), samples)
}

#[test]
fn an_unknown_tenant_answers_and_counts_like_a_known_one_with_a_wrong_key() {
    let keys = KeySet::new([
        Key::hmac(Identifier::UserId, secret()),
        Key::jwt(Secret::text("oracle-jwt-secret-0123456789").unwrap()),
    ])
    .unwrap();
    for mode in [Mode::ReportOnly, Mode::Optional, Mode::Required] {
        let layer = || tenant_layer(TenantMap::new().tenant("acme", keys.clone()).unwrap()).mode(mode).clock(|| NOW);
        for (shape, headers) in shapes() {
            let (known, known_calls, known_metrics) = run(layer(), request("acme", &headers));
            let (unknown, unknown_calls, unknown_metrics) = run(layer(), request("initech", &headers));
            let ctx = format!("{shape} in {mode:?}");
            assert_eq!((known.status, &known.body), (unknown.status, &unknown.body), "{ctx}");
            assert_eq!(known.headers, unknown.headers, "{ctx}");
            assert_eq!(known_calls, unknown_calls, "{ctx}");
            if mode == Mode::Required || (mode == Mode::Optional && shape != "missing") {
                assert_eq!(known_calls, 0, "{ctx}: rejected without calling the inner service");
            }
            assert_eq!(known_metrics, unknown_metrics, "{ctx}");
            let timed = known_metrics.iter().any(|(name, _, n)| name == "identity_verification_seconds" && *n == 1);
            assert_eq!(timed, shape != "missing", "{ctx}: {known_metrics:?}");
            println!("{ctx}: {} {}", known.status, known.body);
        }
    }
}
