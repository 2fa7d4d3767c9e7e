//! HMAC-SHA256 signatures: `<hex>` over an identifier, or `<hex>-<unix_ts>`
//! over `{identifier}-{unix_ts}`, decoded to exactly 32 bytes and compared in
//! constant time.

use hmac::Mac;

use super::{Failure, Malformed, Proof, VerifyOptions};
use crate::claim::{Claim, IdStr};
use crate::key::{KeySet, Scheme};

/// The length of an HMAC-SHA256 tag in hex.
const TAG_HEX_LEN: usize = 64;
/// Longest accepted decimal timestamp (fits in `u64`).
const MAX_TS_DIGITS: usize = 19;

/// A parsed signature: the 32-byte tag and, for timestamped signatures, the
/// timestamp text exactly as sent (it is part of the signed message).
struct ParsedSignature<'a> {
    tag: [u8; 32],
    timestamp: Option<(&'a [u8], u64)>,
}

/// Decodes exactly 64 hex digits (either case) into the 32-byte tag, with
/// `const-hex` (SIMD where the CPU has it: a few nanoseconds). The tag is
/// attacker-supplied, not secret, so its decoding need not be constant-time:
/// the comparison with the expected MAC is.
fn parse_tag(digits: &[u8]) -> Result<[u8; 32], Failure> {
    let mut tag = [0u8; 32];
    if digits.len() != TAG_HEX_LEN || const_hex::decode_to_slice(digits, &mut tag).is_err() {
        return Err(Failure::Malformed(Malformed::Signature));
    }
    Ok(tag)
}

/// Parses a unix timestamp: ASCII digits only, no sign, no leading zero, at
/// most 19 digits.
fn parse_timestamp(b: &[u8]) -> Result<u64, Failure> {
    if b.is_empty() || b.len() > MAX_TS_DIGITS || !b.iter().all(u8::is_ascii_digit) || (b.len() > 1 && b[0] == b'0') {
        return Err(Failure::Malformed(Malformed::Timestamp));
    }
    // At most 19 digits: below u64::MAX, no overflow.
    Ok(b.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0')))
}

/// Parses `<hex>` or `<hex>-<unix_ts>` (or `<hex>` with a separate timestamp).
/// Works on the bytes: the signature is ASCII or malformed, and skipping a
/// UTF-8 check here saves re-validating what extraction validated.
fn parse_signature<'a>(sig: &'a [u8], separate_ts: Option<&'a [u8]>) -> Result<ParsedSignature<'a>, Failure> {
    if let Some(ts) = separate_ts {
        return Ok(ParsedSignature { tag: parse_tag(sig)?, timestamp: Some((ts, parse_timestamp(ts)?)) });
    }
    if sig.len() == TAG_HEX_LEN {
        return Ok(ParsedSignature { tag: parse_tag(sig)?, timestamp: None });
    }
    match sig.split_at_checked(TAG_HEX_LEN) {
        Some((hex_tag, rest)) if rest.first() == Some(&b'-') => {
            let ts = &rest[1..];
            Ok(ParsedSignature { tag: parse_tag(hex_tag)?, timestamp: Some((ts, parse_timestamp(ts)?)) })
        }
        _ => Err(Failure::Malformed(Malformed::Signature)),
    }
}

pub(super) fn verify(
    claim: &Claim,
    sig: &[u8],
    keys: &KeySet,
    now: u64,
    opts: &VerifyOptions,
) -> Result<Proof, Failure> {
    let parsed = parse_signature(sig, claim.timestamp.as_ref().map(IdStr::as_bytes))?;
    let mut identifier_missing = false;
    for key in keys.keys() {
        if !key.is_valid_at(now) {
            continue;
        }
        let over = match (key.scheme, parsed.timestamp) {
            (Scheme::Hmac { over }, None) | (Scheme::TimestampedHmac { over }, Some(_)) => over,
            _ => continue,
        };
        let Some(value) = claim.identifier(over) else {
            identifier_missing = true;
            continue;
        };
        let mut mac = key.mac.clone();
        mac.update(value.as_bytes());
        if let Some((ts_text, _)) = parsed.timestamp {
            mac.update(b"-");
            mac.update(ts_text);
        }
        if mac.verify_slice(&parsed.tag).is_err() {
            continue;
        }
        let signed_at = parsed.timestamp.map(|(_, ts)| ts);
        if let Some(ts) = signed_at {
            if ts > now && ts - now > opts.future_skew {
                return Err(Failure::NotYetValid);
            }
            if now > ts && now - ts > opts.max_age {
                return Err(Failure::Expired);
            }
        }
        // The first second at which `verify` would refuse it: past `max_age`, or the key's `not_after`.
        let aged_out = signed_at.map(|ts| ts.saturating_add(opts.max_age).saturating_add(1));
        let valid_until = match (aged_out, key.not_after) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        return Ok(Proof::Hmac { over, scheme: key.scheme, key_id: key.id.clone(), signed_at, valid_until });
    }
    Err(if identifier_missing { Failure::Malformed(Malformed::IdentifierMissing) } else { Failure::Invalid })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_decoding_matches_the_hex_crate() {
        let samples =
            ["00".repeat(32), "ff".repeat(32), "FF".repeat(32), "0123456789abcdefABCDEF".repeat(3)[..64].to_owned()];
        for s in &samples {
            assert_eq!(parse_tag(s.as_bytes()).unwrap().to_vec(), hex::decode(s).unwrap());
        }
        for bad in [
            "g".repeat(64),
            format!("{}{}", "0".repeat(63), " "),
            format!("{}/", "0".repeat(63)),
            format!("{}:", "0".repeat(63)),
        ] {
            assert!(parse_tag(bad.as_bytes()).is_err(), "{bad:?}");
        }
        // A `0x` prefix (which const-hex strips) leaves too few digits: refused.
        assert!(parse_tag(format!("0x{}", "ab".repeat(31)).as_bytes()).is_err());
        assert!(parse_tag(format!("0x{}", "ab".repeat(32)).as_bytes()).is_err());
        // Every byte value in every position: accepted exactly when it is a hex digit.
        for pos in [0, 1, 62, 63] {
            for b in 0u8..=255 {
                let mut s = vec![b'a'; 64];
                s[pos] = b;
                assert_eq!(parse_tag(&s).is_ok(), b.is_ascii_hexdigit(), "byte {b:#x} at {pos}");
            }
        }
    }

    #[test]
    fn timestamp_parsing_is_canonical() {
        let parse_timestamp = |s: &str| parse_timestamp(s.as_bytes());
        assert_eq!(parse_timestamp("1741761604"), Ok(1741761604));
        assert_eq!(parse_timestamp("0"), Ok(0));
        for bad in [
            "",
            "01741761604",
            "+1741761604",
            " 1741761604",
            "1741761604 ",
            "1.7e9",
            "-5",
            "17417616040000000000",
            "١٧",
        ] {
            assert!(parse_timestamp(bad).is_err(), "{bad:?}");
        }
        assert_eq!(parse_timestamp("9999999999999999999"), Ok(9_999_999_999_999_999_999));
    }
}
