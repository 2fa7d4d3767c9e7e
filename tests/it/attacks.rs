//! Attack cases not covered elsewhere (see also tests/it/layer.rs, tests/it/jwt.rs,
//! tests/it/body.rs, tests/it/examples.rs and identity-proxy/tests/it/proxy.rs): each asserts the
//! status, the error code, that the inner service was not called, and that
//! nothing sensitive is echoed.

use crate::support::*;
use base64::Engine as _;
use tower_identity::verify::jwt::JwtOptions;
use tower_identity::{
    Identifier, IdentityVerificationLayer, Key, KeySet, Mode, Secret, Sources, claim::Claim, sign,
    verify::VerifyOptions, verify::verify,
};

fn layer() -> IdentityVerificationLayer {
    IdentityVerificationLayer::new(KeySet::single(Key::hmac(Identifier::UserId, secret())))
        .sources(Sources::new().query_defaults())
        .clock(|| NOW)
}

#[tokio::test]
async fn signature_encodings_other_than_hex_are_refused() {
    let good = sign::hmac(&secret(), "u1");
    let tag = hex::decode(&good).unwrap();
    let forms = [
        base64::engine::general_purpose::STANDARD.encode(&tag),
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&tag),
        good[..32].to_owned(), // the 128-bit truncated tag
        format!("sha256={good}"),
        format!("{good},{good}"), // comma-joined values in one header
        format!("{good}, 0000"),
    ];
    for sig in &forms {
        let (a, rec) = send(&layer(), get("/", &[("x-user-id", "u1"), ("x-identity-signature", sig)])).await;
        assert_rejected(&a, &rec, 401, "credential_malformed", &[&good, SECRET, "u1"]);
    }
    // Comma-joined identifiers are one identifier, whose signature this is not.
    let (a, rec) = send(&layer(), get("/", &[("x-user-id", "u1, admin"), ("x-identity-signature", &good)])).await;
    assert_rejected(&a, &rec, 401, "signature_invalid", &["admin"]);
}

#[tokio::test]
async fn control_characters_from_query_parameters_are_never_accepted() {
    for (encoded, decoded) in
        [("u1%0D%0Ax-admin:%201", "u1\r\nx-admin: 1"), ("u1%00", "u1\0"), ("u1%0A", "u1\n"), ("%7F", "\u{7f}")]
    {
        // Even correctly signed, an identifier with control characters is refused.
        let sig = sign::hmac(&secret(), decoded);
        let (a, rec) = send(&layer(), get(&format!("/?user_id={encoded}&signature={sig}"), &[])).await;
        assert_rejected(&a, &rec, 401, "credential_malformed", &["x-admin", &sig]);
    }
}

#[tokio::test]
async fn timestamps_with_spaces_or_signs_are_malformed_through_the_layer() {
    let layer = IdentityVerificationLayer::new(KeySet::single(Key::timestamped_hmac(Identifier::UserId, secret())))
        .clock(|| NOW);
    let sig = sign::timestamped_hmac(&secret(), "u1", NOW);
    let (hex_part, ts) = sig.split_once('-').unwrap();
    for bad in [format!(" {ts}"), format!("{ts} "), format!("0{ts}"), format!("+{ts}"), format!("{ts}.0"), "1e9".into()]
    {
        let mut req = get("/", &[("x-user-id", "u1")]);
        req.headers_mut().insert("x-identity-signature", format!("{hex_part}-{bad}").parse().unwrap());
        let (a, rec) = send(&layer, req).await;
        assert_rejected(&a, &rec, 401, "credential_malformed", &[hex_part]);
    }
}

#[tokio::test]
async fn report_only_never_rejects_and_never_inserts_an_identity_for_an_attack() {
    let layer = layer().mode(Mode::ReportOnly);
    let (a, rec) = send(&layer, get("/", &[("x-user-id", "admin"), ("x-identity-signature", &"0".repeat(64))])).await;
    assert_eq!(a.status, 200);
    assert!(rec.last_identity().is_none());
}

#[test]
fn tokens_without_iat_are_refused_when_iat_is_required() {
    let s = Secret::text("jwt-attack-secret-0123456789").unwrap();
    let keys = KeySet::single(Key::jwt(s.clone()));
    let mut claims = serde_json::Map::new();
    claims.insert("email".into(), "a@b.c".into());
    claims.insert("exp".into(), (NOW + 300).into());
    let token = sign::jwt(&s, None, &claims);
    let mut opts = VerifyOptions::default();
    assert!(
        verify(&Claim::new().token(token.as_str()), &keys, NOW, &opts).is_ok(),
        "accepted by default (npm jsonwebtoken with noTimestamp)"
    );
    opts = opts.jwt(JwtOptions::default().require_iat(true));
    assert!(verify(&Claim::new().token(token.as_str()), &keys, NOW, &opts).is_err());
}
