//! `tower_identity::verify` on HMAC and timestamped-HMAC signatures.
//!
//! The claim carries fuzzer-chosen identifiers, signature and timestamp,
//! either raw or made by signing with one of the key set's secrets and then
//! mutated. The result must equal an independent oracle's: `Ok` only when
//! the signature is what `sign::hmac` / `sign::timestamped_hmac` produce for
//! the identifier under a key valid now (case-insensitively for the hex), and
//! the exact `Failure` otherwise.

#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use tower_identity::{
    Identifier, Key, KeySet, Scheme, Secret, claim::Claim, sign, verify::Failure, verify::Malformed,
    verify::VerifyOptions, verify::verify,
};
use tower_identity_fuzz::{NOW, canonical_timestamp, hmac_hex};

#[derive(Arbitrary, Debug)]
struct Input {
    user_id: Option<String>,
    email: Option<String>,
    visitor_id: Option<String>,
    signature: Sig,
    timestamp: Option<String>,
    now: Now,
    options: Options,
}

#[derive(Arbitrary, Debug)]
enum Now {
    /// Near the keys' validity windows.
    Near(i16),
    Raw(u64),
}

#[derive(Arbitrary, Debug)]
enum Options {
    Default,
    Custom { max_age: u64, future_skew: u64, max_identifier_len: u16 },
}

#[derive(Arbitrary, Debug)]
enum Sig {
    None,
    Raw(String),
    /// A signature made with a key of the set (or an unknown secret), over
    /// the claim's identifier or another string, then mutated.
    Signed {
        key: u8,
        over_other: Option<String>,
        ts_delta: i64,
        separate_ts: bool,
        mutation: Mutation,
    },
}

#[derive(Arbitrary, Debug)]
enum Mutation {
    None,
    Uppercase,
    MixedCase(u64),
    ReplaceChar {
        at: u8,
        with: char,
    },
    Truncate(u8),
    Append(String),
    Insert {
        at: u8,
        text: String,
    },
    /// Leading zero, plus sign or spaces in the timestamp.
    TimestampPrefix(String),
}

struct Fixture {
    keys: KeySet,
    /// An extra secret no key holds.
    stranger: Secret,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: std::sync::OnceLock<Fixture> = std::sync::OnceLock::new();
    FIXTURE.get_or_init(|| Fixture {
        keys: KeySet::new([
            Key::hmac(Identifier::UserId, Secret::text("fuzz-user-secret-old-0123456789").unwrap())
                .with_id("user-old")
                .not_after(NOW + 100),
            Key::hmac(Identifier::UserId, Secret::text("fuzz-user-secret-new-abcdefghij").unwrap()).with_id("user-new"),
            Key::hmac(Identifier::Email, Secret::hex("9f86d081884c7d659a2feaa0c55ad015").unwrap()).with_id("email"),
            Key::timestamped_hmac(
                Identifier::UserId,
                Secret::text("a6c93e058a4ab236449bd321002352483a85138489d2ee4fb2eaa4cfd3ab2ba8").unwrap(),
            )
            .with_id("ts-user"),
            Key::timestamped_hmac(Identifier::VisitorId, Secret::base64("dmlzaXRvci1zZWNyZXQtMDEyMzQ1Njc4OQ").unwrap())
                .with_id("ts-visitor")
                .not_before(NOW - 50),
            Key::hmac(Identifier::VisitorId, Secret::text("fuzz-visitor-secret-no-id-xyz").unwrap()),
        ])
        .expect("distinct secrets"),
        stranger: Secret::text("a-secret-no-key-holds-0123456789").unwrap(),
    })
}

fn identifier(claim: &Claim, which: Identifier) -> Option<&str> {
    claim.identifier(which).map(|v| v.as_str())
}

/// What `verify` must answer: the index of the key that verifies, or the failure.
fn oracle(claim: &Claim, keys: &KeySet, now: u64, opts: &VerifyOptions) -> Result<usize, Failure> {
    for id in [&claim.user_id, &claim.email, &claim.visitor_id].into_iter().flatten() {
        if id.is_empty() {
            return Err(Failure::Malformed(Malformed::EmptyIdentifier));
        }
        if id.len() > opts.get_max_identifier_len() {
            return Err(Failure::Malformed(Malformed::IdentifierTooLong));
        }
        if id.chars().any(char::is_control) {
            return Err(Failure::Malformed(Malformed::IdentifierCharacters));
        }
        // HTTP parsers trim whitespace at either end: such an identifier is refused.
        if id.trim().len() != id.len() {
            return Err(Failure::Malformed(Malformed::Whitespace));
        }
    }
    let Some(sig) = claim.signature.as_deref() else { return Err(Failure::Missing) };
    let hex64 = |b: &[u8]| b.len() == 64 && b.iter().all(u8::is_ascii_hexdigit);
    let bad_sig = Err(Failure::Malformed(Malformed::Signature));
    let bad_ts = Err(Failure::Malformed(Malformed::Timestamp));
    // (hex tag, timestamp text and value)
    let (tag, ts): (&str, Option<(&str, u64)>) = match claim.timestamp.as_deref() {
        Some(ts) => {
            if !hex64(sig.as_bytes()) {
                return bad_sig;
            }
            let Some(value) = canonical_timestamp(ts) else { return bad_ts };
            (sig, Some((ts, value)))
        }
        None if sig.len() == 64 => {
            if !hex64(sig.as_bytes()) {
                return bad_sig;
            }
            (sig, None)
        }
        None => {
            let b = sig.as_bytes();
            if b.len() < 65 || b[64] != b'-' || !hex64(&b[..64]) {
                return bad_sig;
            }
            let ts = &sig[65..];
            let Some(value) = canonical_timestamp(ts) else { return bad_ts };
            (&sig[..64], Some((ts, value)))
        }
    };
    let tag = tag.to_ascii_lowercase();
    let mut identifier_missing = false;
    for (i, key) in keys.keys().iter().enumerate() {
        if !key.is_valid_at(now) {
            continue;
        }
        let over = match (key.scheme(), ts) {
            (Scheme::Hmac { over }, None) | (Scheme::TimestampedHmac { over }, Some(_)) => over,
            _ => continue,
        };
        let Some(value) = identifier(claim, over) else {
            identifier_missing = true;
            continue;
        };
        let matches = match ts {
            None => sign::hmac(key.secret(), value) == tag,
            Some((text, value_ts)) => {
                assert_eq!(text, value_ts.to_string(), "a canonical timestamp prints as itself");
                sign::timestamped_hmac(key.secret(), value, value_ts) == format!("{tag}-{text}")
            }
        };
        if !matches {
            continue;
        }
        if let Some((_, t)) = ts {
            if t > now && t - now > opts.get_future_skew() {
                return Err(Failure::NotYetValid);
            }
            if now > t && now - t > opts.get_max_age() {
                return Err(Failure::Expired);
            }
        }
        return Ok(i);
    }
    Err(if identifier_missing { Failure::Malformed(Malformed::IdentifierMissing) } else { Failure::Invalid })
}

fn mutate(sig: String, mutation: &Mutation) -> String {
    match mutation {
        Mutation::None => sig,
        Mutation::Uppercase => sig.to_ascii_uppercase(),
        Mutation::MixedCase(mask) => sig
            .chars()
            .enumerate()
            .map(|(i, c)| if mask >> (i % 64) & 1 == 1 { c.to_ascii_uppercase() } else { c })
            .collect(),
        Mutation::ReplaceChar { at, with } => {
            let mut chars: Vec<char> = sig.chars().collect();
            if !chars.is_empty() {
                let at = *at as usize % chars.len();
                chars[at] = *with;
            }
            chars.into_iter().collect()
        }
        Mutation::Truncate(n) => sig.chars().take(*n as usize).collect(),
        Mutation::Append(s) => sig + s,
        Mutation::Insert { at, text } => {
            let mut at = (*at as usize).min(sig.len());
            while !sig.is_char_boundary(at) {
                at -= 1;
            }
            format!("{}{text}{}", &sig[..at], &sig[at..])
        }
        Mutation::TimestampPrefix(p) => match sig.split_once('-') {
            Some((tag, ts)) => format!("{tag}-{p}{ts}"),
            None => sig,
        },
    }
}

fuzz_target!(|input: Input| {
    let fx = fixture();
    let now = match input.now {
        Now::Near(d) => NOW.saturating_add_signed(i64::from(d)),
        Now::Raw(n) => n,
    };
    let opts = match input.options {
        Options::Default => VerifyOptions::default(),
        Options::Custom { max_age, future_skew, max_identifier_len } => VerifyOptions::default()
            .max_age(max_age)
            .future_skew(future_skew)
            .max_identifier_len(max_identifier_len as usize),
    };
    let mut claim = Claim::new();
    claim.user_id = input.user_id.map(Into::into);
    claim.email = input.email.map(Into::into);
    claim.visitor_id = input.visitor_id.map(Into::into);
    claim.timestamp = input.timestamp.map(Into::into);
    match input.signature {
        Sig::None => {}
        Sig::Raw(s) => claim.signature = Some(s.into()),
        Sig::Signed { key, over_other, ts_delta, separate_ts, mutation } => {
            let keys = fx.keys.keys();
            let index = key as usize % (keys.len() + 1);
            let (secret, scheme) = match keys.get(index) {
                Some(k) => (k.secret(), k.scheme()),
                None => (&fx.stranger, Scheme::Hmac { over: Identifier::UserId }),
            };
            let over = scheme.identifier().expect("HMAC keys only");
            let value = over_other.or_else(|| identifier(&claim, over).map(str::to_owned)).unwrap_or_default();
            let sig = match scheme {
                Scheme::TimestampedHmac { .. } => {
                    let ts = now.saturating_add_signed(ts_delta);
                    let sig = sign::timestamped_hmac(secret, &value, ts);
                    // The library's signer agrees with RFC 2104 written out.
                    assert_eq!(sig, format!("{}-{ts}", hmac_hex(secret.expose(), format!("{value}-{ts}").as_bytes())));
                    if separate_ts {
                        let (tag, ts) = sig.split_once('-').expect("<hex>-<ts>");
                        claim.timestamp = Some(ts.into());
                        tag.to_owned()
                    } else {
                        sig
                    }
                }
                _ => {
                    let sig = sign::hmac(secret, &value);
                    assert_eq!(sig, hmac_hex(secret.expose(), value.as_bytes()));
                    sig
                }
            };
            claim.signature = Some(mutate(sig, &mutation).into());
        }
    }

    let got = verify(&claim, &fx.keys, now, &opts);
    let expected = oracle(&claim, &fx.keys, now, &opts);
    match (&got, expected) {
        (Ok(identity), Ok(i)) => {
            let key = &fx.keys.keys()[i];
            let over = key.scheme().identifier().expect("HMAC keys only");
            assert_eq!(identity.key_id(), key.id());
            assert_eq!(identity.scheme(), key.scheme());
            assert_eq!(identity.subject(), over);
            assert_eq!(Some(identity.id()), identifier(&claim, over));
            assert!(identity.claims().is_none());
            let signed_at = identity.signed_at();
            assert_eq!(signed_at.is_some(), matches!(key.scheme(), Scheme::TimestampedHmac { .. }));
            if let Some(ts) = signed_at {
                assert!(
                    ts <= now.saturating_add(opts.get_future_skew()) && now.saturating_sub(ts) <= opts.get_max_age()
                );
            }
            // Only the signed identifier is proven; the others are unsigned.
            for which in [Identifier::UserId, Identifier::Email, Identifier::VisitorId] {
                let (proven, unsigned) = match which {
                    Identifier::UserId => (identity.user_id(), identity.unsigned().user_id()),
                    Identifier::Email => (identity.email(), identity.unsigned().email()),
                    Identifier::VisitorId => (identity.visitor_id(), identity.unsigned().visitor_id()),
                    _ => unreachable!("only the three identifiers above are tried"),
                };
                let sent = identifier(&claim, which);
                if which == over {
                    assert_eq!((proven, unsigned), (sent, None));
                } else {
                    assert_eq!((proven, unsigned), (None, sent));
                }
            }
        }
        (Err(failure), Err(expected)) => assert_eq!(*failure, expected, "{claim:?}"),
        (got, expected) => panic!("verify answered {got:?}, the oracle {expected:?}, for {claim:?} at {now}"),
    }
});
