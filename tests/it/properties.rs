//! Property tests: what the signer makes, the verifier accepts; any bit flip,
//! truncation or extension of a signature or token is refused; and however a
//! body is chunked, the inner service receives the same bytes.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use crate::support::NOW;
use bytes::Bytes;
use http::Request;
use http_body::{Body, Frame};
use http_body_util::{BodyExt, Full};
use proptest::prelude::*;
use tower::{Service, ServiceExt};
use tower_identity::layer::body::RequestBody;
use tower_identity::{
    Identifier, IdentityVerificationLayer, Key, KeySet, Mode, Role, Secret, Sources, claim::Claim, sign,
    verify::VerifyOptions, verify::verify,
};

/// Identifiers as the verifier accepts them: no control characters, no
/// whitespace at either end, 1..=256 bytes.
fn identifier() -> impl Strategy<Value = String> {
    "[^\\p{Cc}]{1,64}".prop_filter("at most 256 bytes, no edge whitespace", |s| s.len() <= 256 && s.trim() == s)
}

fn key_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 1..100)
}

fn options() -> VerifyOptions {
    VerifyOptions::default()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn signed_identifiers_verify(id in identifier(), key in key_bytes(), ts in 0u64..4_000_000_000) {
        let secret = Secret::from_bytes(key).unwrap();
        let plain = KeySet::single(Key::hmac(Identifier::UserId, secret.clone()));
        let claim = Claim::new().user_id(id.as_str()).signature(sign::hmac(&secret, &id));
        let verified = verify(&claim, &plain, NOW, &options()).unwrap();
        prop_assert_eq!(verified.user_id(), Some(id.as_str()));

        let timed = KeySet::single(Key::timestamped_hmac(Identifier::UserId, secret.clone()));
        let claim = Claim::new().user_id(id.as_str()).signature(sign::timestamped_hmac(&secret, &id, ts));
        let opts = options().max_age(u64::MAX).future_skew(u64::MAX);
        prop_assert_eq!(verify(&claim, &timed, NOW, &opts).unwrap().signed_at(), Some(ts));
    }

    #[test]
    fn identifiers_with_edge_whitespace_are_refused_though_signed(
        id in identifier(), key in key_bytes(), pad in "[\\p{White_Space}]{1,3}", leading in any::<bool>(),
    ) {
        let secret = Secret::from_bytes(key).unwrap();
        let keys = KeySet::single(Key::hmac(Identifier::UserId, secret.clone()));
        let padded = if leading { format!("{pad}{id}") } else { format!("{id}{pad}") };
        let claim = Claim::new().user_id(padded.as_str()).signature(sign::hmac(&secret, &padded));
        let refused = verify(&claim, &keys, NOW, &options()).unwrap_err();
        prop_assert!(matches!(refused, tower_identity::verify::Failure::Malformed(_)), "{:?}", refused);
    }

    #[test]
    fn any_bit_flip_truncation_or_extension_of_a_signature_is_refused(
        id in identifier(), key in key_bytes(), bit in 0usize..256, cut in 1usize..64, extra in "[0-9a-fA-F -]{1,8}",
    ) {
        let secret = Secret::from_bytes(key).unwrap();
        let keys = KeySet::single(Key::hmac(Identifier::UserId, secret.clone()));
        let good = sign::hmac(&secret, &id);
        let mut tag = hex::decode(&good).unwrap();
        tag[bit / 8] ^= 1 << (bit % 8);
        for sig in [hex::encode(tag), good[..64 - cut].to_owned(), format!("{good}{extra}")] {
            let claim = Claim::new().user_id(id.as_str()).signature(sig);
            prop_assert!(verify(&claim, &keys, NOW, &options()).is_err());
        }
    }

    #[test]
    fn any_change_to_a_token_is_refused(email in "[a-z]{1,12}@[a-z]{1,8}\\.com", key in key_bytes(), pos in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let secret = Secret::from_bytes(key).unwrap();
        let keys = KeySet::single(Key::jwt(secret.clone())).with_audience("app");
        let token = sign::jwt_token(&secret, "app", &email, None, NOW, 600, []);
        prop_assert!(verify(&Claim::new().token(token.as_str()), &keys, NOW, &options()).is_ok());
        let mut bytes = token.clone().into_bytes();
        let i = pos.index(bytes.len());
        prop_assume!(bytes[i] != byte);
        bytes[i] = byte;
        if let Ok(mutated) = String::from_utf8(bytes) {
            prop_assert!(verify(&Claim::new().token(mutated.as_str()), &keys, NOW, &options()).is_err());
        }
        prop_assert!(verify(&Claim::new().token(&token[..token.len() - 1]), &keys, NOW, &options()).is_err());
        let extended = format!("{}A", token);
        prop_assert!(verify(&Claim::new().token(extended), &keys, NOW, &options()).is_err());
    }

    #[test]
    fn chunking_never_changes_what_the_inner_service_receives(
        pad in prop::collection::vec(any::<u8>(), 0..3000), cuts in prop::collection::vec(1usize..512, 0..40), json in any::<bool>(),
    ) {
        let secret = Secret::text("property-secret-0123456789").unwrap();
        let sig = sign::hmac(&secret, "u1");
        let pad = hex::encode(&pad);
        let (ct, body) = if json {
            ("application/json", format!(r#"{{"user_id":"u1","user_hash":"{sig}","pad":"{pad}"}}"#))
        } else {
            ("application/x-www-form-urlencoded", format!("user_id=u1&user_hash={sig}&pad={pad}"))
        };
        let body = Bytes::from(body);
        let mut chunks = Vec::new();
        let mut rest = body.clone();
        for cut in cuts {
            if rest.is_empty() { break; }
            chunks.push(rest.split_to(cut.min(rest.len())));
        }
        if !rest.is_empty() { chunks.push(rest); }

        let seen: Arc<Mutex<Option<Bytes>>> = Arc::default();
        let layer = IdentityVerificationLayer::new(KeySet::single(Key::hmac(Identifier::UserId, secret)))
            .mode(Mode::Required)
            .sources(Sources::new().json(Role::UserId, "/user_id").json(Role::Signature, "/user_hash")
                .form(Role::UserId, "user_id").form(Role::Signature, "user_hash").body_limit(16 * 1024));
        let rec = seen.clone();
        let mut svc = tower::ServiceBuilder::new().layer(layer).service(tower::service_fn(move |req: Request<RequestBody<Chunks>>| {
            let rec = rec.clone();
            async move {
                let bytes = req.into_body().collect().await.unwrap().to_bytes();
                *rec.lock().unwrap() = Some(bytes);
                Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::new())))
            }
        }));
        let req = Request::post("/").header("content-type", ct).body(Chunks(chunks)).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let status = rt.block_on(async { svc.ready().await.unwrap().call(req).await.unwrap().status() });
        prop_assert_eq!(status, 200);
        prop_assert_eq!(seen.lock().unwrap().clone(), Some(body));
    }
}

/// A body yielding pre-cut chunks, one frame per poll.
struct Chunks(Vec<Bytes>);

impl Body for Chunks {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.0.is_empty() {
            return Poll::Ready(None);
        }
        let chunk = self.0.remove(0);
        Poll::Ready(Some(Ok(Frame::data(chunk))))
    }
}
