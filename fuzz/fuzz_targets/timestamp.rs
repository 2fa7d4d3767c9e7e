//! Timestamp parsing, through `verify` with timestamped keys.
//!
//! The fuzzer picks the timestamp text; the signature is a correct HMAC over
//! `{identifier}-{text}` (written out from RFC 2104), sent as
//! `<64 hex>-<text>` or as 64 hex with the text in the separate timestamp
//! field. It must verify exactly when the text is a canonical decimal unix
//! time (digits only, no sign, no leading zero, at most 19 digits) inside
//! the `max_age` / `future_skew` window, whatever "now" is (also near 0 and
//! `u64::MAX`).
//!
//! Input layout (seeds are easy to write by hand): one flags byte, four
//! bytes of signed offset between now and the timestamp, then the timestamp
//! text.

#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use tower_identity::{
    Identifier, Key, KeySet, Secret, claim::Claim, verify::Failure, verify::Malformed, verify::VerifyOptions,
    verify::verify,
};
use tower_identity_fuzz::{NOW, canonical_timestamp, hmac_hex};

const USER_SECRET: &str = "timestamped-user-secret-0123456789";
const VISITOR_SECRET: &str = "timestamped-visitor-secret-abcdef";
const PLAIN_SECRET: &str = "plain-hmac-secret-never-timestamped";
const IDENTIFIERS: [&str; 4] = ["id-c5c178f6", "bob", "a-1", "user@example.com"];

#[derive(Arbitrary, Debug)]
struct Input {
    /// bit 0: separate timestamp field; bit 1: uppercase hex; bits 2-3:
    /// identifier; bit 4: visitor key instead of user key; bit 5: now is
    /// `NOW + offset` instead of `timestamp + offset`; bit 6: tight window
    /// (max_age 10, future_skew 0); bit 7: now near `u64::MAX`.
    flags: u8,
    offset: i32,
    /// The rest of the input.
    ts: String,
}

fn keys() -> &'static KeySet {
    static KEYS: std::sync::OnceLock<KeySet> = std::sync::OnceLock::new();
    KEYS.get_or_init(|| {
        KeySet::new([
            Key::hmac(Identifier::UserId, Secret::text(PLAIN_SECRET).unwrap()).with_id("plain"),
            Key::timestamped_hmac(Identifier::UserId, Secret::text(USER_SECRET).unwrap()).with_id("user"),
            Key::timestamped_hmac(Identifier::VisitorId, Secret::text(VISITOR_SECRET).unwrap()).with_id("visitor"),
        ])
        .expect("distinct secrets")
    })
}

fuzz_target!(|input: Input| {
    let Input { flags, offset, ts } = input;
    let separate = flags & 1 != 0;
    let uppercase = flags & 2 != 0;
    let identifier = IDENTIFIERS[(flags >> 2 & 3) as usize];
    let visitor = flags & 16 != 0;
    let canonical = canonical_timestamp(&ts);
    let base = if flags & 128 != 0 {
        u64::MAX
    } else if flags & 32 != 0 {
        NOW
    } else {
        // Lenient on purpose ("+5", "007"): lands near non-canonical values too.
        ts.trim().parse::<u64>().unwrap_or(NOW)
    };
    let now = base.saturating_add_signed(i64::from(offset));
    let opts =
        if flags & 64 != 0 { VerifyOptions::default().max_age(10).future_skew(0) } else { VerifyOptions::default() };

    let secret = if visitor { VISITOR_SECRET } else { USER_SECRET };
    let mut tag = hmac_hex(secret.as_bytes(), format!("{identifier}-{ts}").as_bytes());
    if uppercase {
        tag.make_ascii_uppercase();
    }
    let mut claim = if visitor { Claim::new().visitor_id(identifier) } else { Claim::new().user_id(identifier) };
    claim = if separate { claim.signature(tag).timestamp(ts.as_str()) } else { claim.signature(format!("{tag}-{ts}")) };

    let got = verify(&claim, keys(), now, &opts);
    let expected = match canonical {
        None => Err(Failure::Malformed(Malformed::Timestamp)),
        Some(t) if t > now && t - now > opts.get_future_skew() => Err(Failure::NotYetValid),
        Some(t) if now > t && now - t > opts.get_max_age() => Err(Failure::Expired),
        Some(_) => Ok(if visitor { "visitor" } else { "user" }),
    };
    match (&got, expected) {
        (Ok(identity), Ok(key_id)) => {
            assert_eq!(identity.key_id(), Some(key_id));
            assert_eq!(identity.id(), identifier);
            assert_eq!(identity.signed_at(), canonical);
        }
        (Err(failure), Err(expected)) => assert_eq!(*failure, expected, "timestamp {ts:?}, now {now}"),
        (got, expected) => panic!("verify answered {got:?}, expected {expected:?}, for timestamp {ts:?} at {now}"),
    }
});
