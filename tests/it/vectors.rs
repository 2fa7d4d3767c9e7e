//! The HMAC verification core against external test vectors.
//!
//! The vectors are byte-identical copies kept in `tests/data/` (provenance and
//! checksums in `tests/data/README.md`); every test checks a file's sha256
//! before reading it.
//!
//! - `seed_hmac_vectors`: signatures made by real signing clients running the
//!   seed documents' snippets.
//! - `rfc4231_cases_1_to_7`: the HMAC-SHA256 test cases of RFC 4231.
//! - `wycheproof_hmac_sha256`: Project Wycheproof's HMAC-SHA256 `MacTest`s,
//!   run through a verifier that only accepts full 32-byte tags.

use crate::support::data;
use hmac::{KeyInit, Mac};
use serde::Deserialize;
use tower_identity::{
    Identifier, Key, KeySet, Scheme, Secret, claim::Claim, secret::SecretEncoding, sign, verify::Failure,
    verify::Malformed, verify::VerifyOptions, verify::verify,
};

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

/// The verification time used when a vector carries no timestamp (2026-01-01T00:00:00Z).
const DEFAULT_NOW: u64 = crate::support::NOW;

/// The full HMAC-SHA256 tag, computed with the `hmac` crate directly (the reference).
fn reference_tag(key: &[u8], msg: &[u8]) -> [u8; 32] {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC accepts keys of any length");
    mac.update(msg);
    mac.finalize().into_bytes().into()
}

/// The reference full-tag verifier: accepts iff `tag` is exactly 32 bytes and is the HMAC.
fn reference_accepts(key: &[u8], msg: &[u8], tag: &[u8]) -> bool {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC accepts keys of any length");
    mac.update(msg);
    mac.verify_slice(tag).is_ok()
}

/// `sig` (`<64 hex>` or `<64 hex>-<ts>`) with one bit of its 32-byte tag flipped, re-encoded as lowercase hex.
fn flip_tag_bit(sig: &str, bit: usize) -> String {
    let (hex_tag, rest) = sig.split_at(64);
    let mut tag = hex::decode(hex_tag).expect("the tag is hex");
    assert_eq!(tag.len(), 32);
    tag[bit / 8] ^= 1 << (bit % 8);
    format!("{}{rest}", hex::encode(tag))
}

/// `sig` with the hex of its tag uppercased.
fn uppercase_tag(sig: &str) -> String {
    let (hex_tag, rest) = sig.split_at(64);
    format!("{}{rest}", hex_tag.to_ascii_uppercase())
}

fn claim_for(which: Identifier, value: &str, signature: &str) -> Claim {
    let claim = Claim::new().signature(signature);
    match which {
        Identifier::UserId => claim.user_id(value),
        Identifier::Email => claim.email(value),
        Identifier::VisitorId => claim.visitor_id(value),
        other => panic!("no vectors for {other}"),
    }
}

// ---------------------------------------------------------------------------
// Seed vectors
// ---------------------------------------------------------------------------

#[derive(Deserialize)]
struct SeedFile {
    hmac: Vec<SeedHmac>,
}

#[derive(Deserialize)]
struct SeedHmac {
    name: String,
    secret: String,
    secret_encoding: String,
    message: String,
    signature_format: String,
    user_id: Option<String>,
    email: Option<String>,
    visitor_id: Option<String>,
    timestamp: Option<u64>,
    signature: String,
    expect: String,
}

#[test]
fn seed_hmac_vectors() {
    let file: SeedFile = serde_json::from_slice(&data::SEED_VECTORS.read()).expect("seed_vectors.json parses");
    let opts = VerifyOptions::default();
    let (mut ran, mut valid, mut rejected) = (0usize, 0usize, 0usize);

    for case in &file.hmac {
        let name = &case.name;
        let encoding = match case.secret_encoding.as_str() {
            "utf8" => SecretEncoding::Utf8,
            "hex" => SecretEncoding::Hex,
            other => panic!("{name}: unknown secret_encoding {other:?}"),
        };
        let secret = Secret::decode(&case.secret, encoding).unwrap_or_else(|e| panic!("{name}: secret: {e}"));

        let present: Vec<(Identifier, &str)> = [
            (Identifier::UserId, &case.user_id),
            (Identifier::Email, &case.email),
            (Identifier::VisitorId, &case.visitor_id),
        ]
        .into_iter()
        .filter_map(|(which, v)| v.as_deref().map(|v| (which, v)))
        .collect();
        let [(which, value)] = present[..] else {
            panic!("{name}: expected exactly one of user_id/email/visitor_id, found {}", present.len());
        };

        let timestamped = match case.signature_format.as_str() {
            "hex" => false,
            "hex-timestamp" => true,
            other => panic!("{name}: unknown signature_format {other:?}"),
        };
        let expected_message = if timestamped { format!("{{{which}}}-{{timestamp}}") } else { format!("{{{which}}}") };
        assert_eq!(case.message, expected_message, "{name}: message template does not match the case's fields");
        let scheme = if timestamped { Scheme::TimestampedHmac { over: which } } else { Scheme::Hmac { over: which } };

        let keys = KeySet::single(Key::new(scheme, secret.clone()));
        let now = case.timestamp.unwrap_or(DEFAULT_NOW);
        let claim = claim_for(which, value, &case.signature);
        let result = verify(&claim, &keys, now, &opts);
        ran += 1;

        if case.expect != "valid" {
            rejected += 1;
            let failure = match result {
                Ok(identity) => panic!("{name}: expected {:?}, but it verified as {identity:?}", case.expect),
                Err(failure) => failure,
            };
            if case.expect == "rejected: empty identity" {
                assert_eq!(failure, Failure::Malformed(Malformed::EmptyIdentifier), "{name}");
            }
            continue;
        }
        valid += 1;

        let identity = result.unwrap_or_else(|f| panic!("{name}: expected valid, got Err({f:?})"));
        assert_eq!(identity.id(), value, "{name}");
        assert_eq!(identity.subject(), which, "{name}");
        assert_eq!(identity.scheme(), scheme, "{name}");
        assert_eq!(identity.signed_at(), if timestamped { case.timestamp } else { None }, "{name}");

        // The signing side reproduces the signature byte for byte.
        let signed = if timestamped {
            let ts = case.timestamp.unwrap_or_else(|| panic!("{name}: a timestamped case needs a timestamp"));
            assert!(case.signature.ends_with(&format!("-{ts}")), "{name}: signature does not carry its timestamp");
            sign::timestamped_hmac(&secret, value, ts)
        } else {
            sign::hmac(&secret, value)
        };
        assert_eq!(signed, case.signature, "{name}: the signing API does not reproduce the vector");

        // Hex is accepted in either case.
        assert!(case.signature.is_ascii() && case.signature.len() >= 64, "{name}: signature shape");
        let upper = uppercase_tag(&case.signature);
        assert_ne!(upper, case.signature, "{name}: the tag has no letters to uppercase");
        let identity = verify(&claim_for(which, value, &upper), &keys, now, &opts)
            .unwrap_or_else(|f| panic!("{name}: uppercase hex tag rejected: {f:?}"));
        assert_eq!(identity.id(), value, "{name}");

        // Any single flipped bit of the tag is an invalid signature.
        for bit in 0..256 {
            let flipped = flip_tag_bit(&case.signature, bit);
            assert_eq!(
                verify(&claim_for(which, value, &flipped), &keys, now, &opts),
                Err(Failure::Invalid),
                "{name}: tag with bit {bit} flipped"
            );
        }
    }

    println!("seed HMAC vectors: {ran} run, {valid} valid, {rejected} rejected");
    assert!(ran >= 16, "only {ran} seed HMAC cases ran");
    assert!(rejected >= 1, "no seed HMAC case expects a rejection");
    assert_eq!(ran, valid + rejected);
}

// ---------------------------------------------------------------------------
// RFC 4231
// ---------------------------------------------------------------------------

/// How RFC 4231 writes an input.
enum Input {
    /// `n` times the byte `b` (e.g. "0x0b repeated 20 times").
    Repeat(u8, usize),
    /// Hex as printed in the RFC.
    Hex(&'static str),
    /// ASCII text as quoted in the RFC.
    Text(&'static str),
}

impl Input {
    fn bytes(&self) -> Vec<u8> {
        match *self {
            Input::Repeat(b, n) => vec![b; n],
            Input::Hex(h) => hex::decode(h).expect("RFC hex"),
            Input::Text(t) => t.as_bytes().to_vec(),
        }
    }
}

struct Rfc4231Case {
    number: u8,
    key: Input,
    data: Input,
    /// HMAC-SHA-256 as published (case 5: truncated to 128 bits).
    hmac_sha256: &'static str,
}

const RFC4231: [Rfc4231Case; 7] = [
    Rfc4231Case {
        number: 1,
        key: Input::Repeat(0x0b, 20),
        data: Input::Text("Hi There"),
        hmac_sha256: "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7",
    },
    Rfc4231Case {
        number: 2,
        key: Input::Text("Jefe"),
        data: Input::Text("what do ya want for nothing?"),
        hmac_sha256: "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
    },
    Rfc4231Case {
        number: 3,
        key: Input::Repeat(0xaa, 20),
        data: Input::Repeat(0xdd, 50),
        hmac_sha256: "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe",
    },
    Rfc4231Case {
        number: 4,
        key: Input::Hex("0102030405060708090a0b0c0d0e0f10111213141516171819"),
        data: Input::Repeat(0xcd, 50),
        hmac_sha256: "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b",
    },
    Rfc4231Case {
        number: 5,
        key: Input::Repeat(0x0c, 20),
        data: Input::Text("Test With Truncation"),
        hmac_sha256: "a3b6167473100ee06e0c796c2955552b",
    },
    Rfc4231Case {
        number: 6,
        key: Input::Repeat(0xaa, 131),
        data: Input::Text("Test Using Larger Than Block-Size Key - Hash Key First"),
        hmac_sha256: "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54",
    },
    Rfc4231Case {
        number: 7,
        key: Input::Repeat(0xaa, 131),
        data: Input::Text(concat!(
            "This is a test using a larger than block-size key and a larger than block-size data. ",
            "The key needs to be hashed before being used by the HMAC algorithm."
        )),
        hmac_sha256: "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2",
    },
];

#[test]
fn rfc4231_cases_1_to_7() {
    let opts = VerifyOptions::default();
    let mut through_verify = 0;
    for case in &RFC4231 {
        let n = case.number;
        let key = case.key.bytes();
        let data = case.data.bytes();
        let published = hex::decode(case.hmac_sha256).expect("RFC hex");
        let truncated = published.len() != 32;
        assert_eq!(truncated, n == 5, "case {n}: only case 5 is truncated");

        // The reference computation agrees with the RFC.
        let full = reference_tag(&key, &data);
        if truncated {
            assert_eq!(published.len(), 16, "case {n}");
            assert_eq!(&full[..16], &published[..], "case {n}: truncated tag");
        } else {
            assert_eq!(&full[..], &published[..], "case {n}");
        }
        let full_hex = hex::encode(full);

        let Ok(text) = std::str::from_utf8(&data) else {
            // Cases 3 and 4 sign 0xdd / 0xcd bytes, which no identifier can carry.
            assert!(n == 3 || n == 4, "case {n}: unexpected non-UTF-8 data");
            assert!(reference_accepts(&key, &data, &published), "case {n}");
            continue;
        };
        assert!(n != 3 && n != 4, "case {n}: expected non-UTF-8 data");

        let secret = Secret::from_bytes(key).expect("non-empty key");
        assert_eq!(sign::hmac(&secret, text), full_hex, "case {n}: sign::hmac");
        let keys = KeySet::single(Key::hmac(Identifier::UserId, secret));

        if truncated {
            // Only full 32-byte tags are accepted: the published 128-bit tag is malformed...
            assert_eq!(
                verify(&Claim::new().user_id(text).signature(case.hmac_sha256), &keys, DEFAULT_NOW, &opts),
                Err(Failure::Malformed(Malformed::Signature)),
                "case {n}: truncated tag"
            );
            // ...while the full tag it was cut from verifies.
            let identity = verify(&Claim::new().user_id(text).signature(full_hex.as_str()), &keys, DEFAULT_NOW, &opts)
                .unwrap_or_else(|f| panic!("case {n}: full tag rejected: {f:?}"));
            assert_eq!(identity.id(), text);
        } else {
            let identity = verify(&Claim::new().user_id(text).signature(case.hmac_sha256), &keys, DEFAULT_NOW, &opts)
                .unwrap_or_else(|f| panic!("case {n}: rejected: {f:?}"));
            assert_eq!(identity.user_id(), Some(text), "case {n}");
            assert_eq!(identity.scheme(), Scheme::Hmac { over: Identifier::UserId }, "case {n}");
            through_verify += 1;
        }
    }
    assert_eq!(through_verify, 4, "cases 1, 2, 6 and 7 go through verify");
}

// ---------------------------------------------------------------------------
// Wycheproof HMAC-SHA256
// ---------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct MacTestFile {
    algorithm: String,
    number_of_tests: usize,
    test_groups: Vec<MacTestGroup>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct MacTestGroup {
    key_size: usize,
    tag_size: usize,
    tests: Vec<MacTest>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct MacTest {
    tc_id: u64,
    comment: String,
    key: String,
    msg: String,
    tag: String,
    result: String,
}

/// Who decided a Wycheproof case.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Decider {
    /// `tower_identity::verify`.
    Crate,
    /// The `hmac` crate: the message is not UTF-8 (or the key is empty), so no
    /// claim can carry it.
    HmacNotUtf8,
    /// The `hmac` crate: the message is UTF-8 but `verify` refuses it as an
    /// identifier (empty, or control characters) before computing any MAC.
    HmacIdentifierPolicy,
}

/// The full-tag verifier, through the crate wherever a claim can carry the message.
fn full_tag_verifier(key: &[u8], msg: &[u8], tag: &[u8], label: &str) -> (bool, Decider) {
    let reference = reference_accepts(key, msg, tag);
    let (Ok(text), Ok(secret)) = (std::str::from_utf8(msg), Secret::from_bytes(key)) else {
        return (reference, Decider::HmacNotUtf8);
    };
    // No identifier length cap: the vectors test the MAC, not the input policy.
    let opts = VerifyOptions::default().max_identifier_len(usize::MAX);
    let keys = KeySet::single(Key::hmac(Identifier::UserId, secret));
    let result = verify(&Claim::new().user_id(text).signature(hex::encode(tag)), &keys, DEFAULT_NOW, &opts);
    match result {
        Err(Failure::Malformed(Malformed::EmptyIdentifier)) => {
            assert!(text.is_empty(), "{label}: EmptyIdentifier for a non-empty message");
            (reference, Decider::HmacIdentifierPolicy)
        }
        Err(Failure::Malformed(Malformed::IdentifierCharacters)) => {
            assert!(text.chars().any(char::is_control), "{label}: IdentifierCharacters without control characters");
            (reference, Decider::HmacIdentifierPolicy)
        }
        Ok(identity) => {
            assert_eq!(identity.id(), text, "{label}");
            assert!(reference, "{label}: verify accepts what the reference rejects");
            (true, Decider::Crate)
        }
        Err(failure) => {
            let expected = if tag.len() == 32 { Failure::Invalid } else { Failure::Malformed(Malformed::Signature) };
            assert_eq!(failure, expected, "{label}: tag of {} bytes", tag.len());
            assert!(!reference, "{label}: verify rejects what the reference accepts");
            (false, Decider::Crate)
        }
    }
}

#[test]
fn wycheproof_hmac_sha256() {
    let file: MacTestFile =
        serde_json::from_slice(&data::WYCHEPROOF_HMAC.read()).expect("hmac_sha256_test.json parses");
    assert_eq!(file.algorithm, "HMACSHA256");

    let (mut total, mut accepted) = (0usize, 0usize);
    let (mut valid_full, mut valid_truncated, mut invalid) = (0usize, 0usize, 0usize);
    let (mut by_crate, mut by_hmac_not_utf8, mut by_hmac_policy) = (0usize, 0usize, 0usize);
    let mut transplanted = 0usize;

    for group in &file.test_groups {
        for t in &group.tests {
            total += 1;
            let label = format!("tcId {} ({})", t.tc_id, t.comment);
            let key = hex::decode(&t.key).expect("key hex");
            let msg = hex::decode(&t.msg).expect("msg hex");
            let tag = hex::decode(&t.tag).expect("tag hex");
            assert_eq!(key.len() * 8, group.key_size, "{label}: keySize");
            assert_eq!(tag.len() * 8, group.tag_size, "{label}: tagSize");

            let (ok, decider) = full_tag_verifier(&key, &msg, &tag, &label);
            match decider {
                Decider::Crate => by_crate += 1,
                Decider::HmacNotUtf8 => by_hmac_not_utf8 += 1,
                Decider::HmacIdentifierPolicy => by_hmac_policy += 1,
            }
            if ok {
                accepted += 1;
                assert!(
                    t.result == "valid" && tag.len() == 32,
                    "{label}: accepted a {} {}-byte tag",
                    t.result,
                    tag.len()
                );
            }

            match (t.result.as_str(), tag.len()) {
                ("valid", 32) => {
                    valid_full += 1;
                    assert!(ok, "{label}: a valid full tag was rejected");
                }
                ("valid", _) => {
                    valid_truncated += 1;
                    // A genuine prefix of the MAC, refused only for its length.
                    let mut mac = HmacSha256::new_from_slice(&key).expect("any key length");
                    mac.update(&msg);
                    assert!(mac.verify_truncated_left(&tag).is_ok(), "{label}: not a prefix of the MAC");
                    assert!(!ok, "{label}: a truncated tag was accepted");
                }
                ("invalid", _) => {
                    invalid += 1;
                    assert!(!ok, "{label}: an invalid tag was accepted");
                    // Few of these messages can be identifiers, so also replay
                    // each full-length modification (as a difference from the
                    // true tag) on a signature the crate made for an identifier.
                    if tag.len() == 32 {
                        let secret = Secret::from_bytes(key.clone()).expect("non-empty key");
                        let ident = format!("wycheproof-{}", t.tc_id);
                        let good = hex::decode(sign::hmac(&secret, &ident)).expect("hex");
                        let diff: Vec<u8> = reference_tag(&key, &msg).iter().zip(&tag).map(|(a, b)| a ^ b).collect();
                        assert!(diff.iter().any(|&d| d != 0), "{label}: the invalid tag is the MAC");
                        let bad: Vec<u8> = good.iter().zip(&diff).map(|(g, d)| g ^ d).collect();
                        let keys = KeySet::single(Key::hmac(Identifier::UserId, secret));
                        let opts = VerifyOptions::default();
                        let claim = |sig: &[u8]| Claim::new().user_id(ident.as_str()).signature(hex::encode(sig));
                        assert!(verify(&claim(&good), &keys, DEFAULT_NOW, &opts).is_ok(), "{label}: own signature");
                        assert_eq!(
                            verify(&claim(&bad), &keys, DEFAULT_NOW, &opts),
                            Err(Failure::Invalid),
                            "{label}: modification replayed on a crate signature"
                        );
                        transplanted += 1;
                    }
                }
                (other, _) => panic!("{label}: unknown result {other:?}"),
            }
        }
    }

    println!(
        "wycheproof HMAC-SHA256: {accepted}/{total} accepted ({valid_full} valid full tags, {valid_truncated} valid \
         truncated tags, {invalid} invalid); decided by verify: {by_crate}, by the hmac crate: {by_hmac_not_utf8} \
         (message not UTF-8) + {by_hmac_policy} (message not a permitted identifier); {transplanted} tag \
         modifications replayed through verify"
    );
    assert_eq!(total, file.number_of_tests);
    assert_eq!(total, 174);
    assert_eq!(accepted, 33);
    assert_eq!(accepted, valid_full, "exactly the valid full-length tags are accepted");
    assert_eq!(valid_full + valid_truncated + invalid, total);
    assert_eq!(valid_truncated, 33);
    assert!(by_crate > 0, "no case went through verify");
    assert!(transplanted > 0, "no tag modification was replayed through verify");
}

/// All copied data files, including those no test above parses, are intact.
#[test]
fn data_files_are_byte_identical_copies() {
    for file in data::ALL {
        assert!(!file.read().is_empty(), "{} is empty", file.path);
    }
}
