//! Which body a request's identity is read from, by its content type, and
//! whether the layer can read that body at all.

use http::HeaderValue;
#[cfg(test)]
use http::header::{CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE};

/// The kind of body a request's identity is read from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BodyKind {
    Json,
    Form,
}

/// What a request's headers say about its body, noted in the same pass over
/// the headers that reads the claim (when the sources read a body) rather
/// than by a lookup per header.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct BodyHeaders {
    /// The kind its first `Content-Type` names ([`body_kind`]).
    pub(crate) kind: Option<BodyKind>,
    /// Its first `Content-Length`, when that is a number.
    pub(crate) length: Option<u64>,
    /// Whether it carries a content coding the layer cannot read: a
    /// `Content-Encoding` other than `identity`.
    pub(crate) encoded: bool,
}

impl BodyHeaders {
    /// From the first `Content-Type` and `Content-Length` values and the
    /// codings seen.
    pub(super) fn new(content_type: Option<&HeaderValue>, length: Option<&HeaderValue>, encoded: bool) -> Self {
        let length = length.and_then(|v| parse_length(v.as_bytes()));
        BodyHeaders { kind: content_type.and_then(body_kind), length, encoded }
    }

    /// Looked up in `headers` (for tests: requests are read in one pass).
    #[cfg(test)]
    pub(crate) fn of(headers: &http::HeaderMap) -> Self {
        let encoded = headers.get_all(CONTENT_ENCODING).iter().any(is_coded);
        BodyHeaders::new(headers.get(CONTENT_TYPE), headers.get(CONTENT_LENGTH), encoded)
    }
}

/// A `Content-Length` value as `u64::from_str` reads it (digits, one
/// optional leading `+`, no overflow), without first checking the bytes are
/// text: a digit is.
fn parse_length(value: &[u8]) -> Option<u64> {
    let digits = value.strip_prefix(b"+").unwrap_or(value);
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &d| {
        let digit = d.checked_sub(b'0').filter(|d| *d < 10)?;
        n.checked_mul(10)?.checked_add(u64::from(digit))
    })
}

/// Whether a `Content-Encoding` value names a coding other than `identity`.
pub(super) fn is_coded(value: &HeaderValue) -> bool {
    !value.as_bytes().eq_ignore_ascii_case(b"identity")
}

/// The body kind a `Content-Type` names, if the layer reads it:
/// `application/json`, `application/*+json` or
/// `application/x-www-form-urlencoded`, parameters ignored. Never a gRPC
/// body (`application/grpc+json` would look like JSON): those are not read.
fn body_kind(value: &HeaderValue) -> Option<BodyKind> {
    let ct = value.as_bytes();
    // What browsers and SDKs send, recognised without parsing.
    match ct {
        b"application/json" => return Some(BodyKind::Json),
        b"application/x-www-form-urlencoded" => return Some(BodyKind::Form),
        _ => {}
    }
    // A header value holds tabs and bytes from 0x20 up (no 0x7f): the ASCII
    // ones are exactly what `HeaderValue::to_str` accepts, which this keeps.
    if !ct.is_ascii() || is_grpc_type(value) {
        return None;
    }
    // Only spaces and tabs to trim, for the same reason.
    let essence = ct.iter().position(|&b| b == b';').map_or(ct, |end| &ct[..end]).trim_ascii();
    if is_json(essence) {
        Some(BodyKind::Json)
    } else if essence.eq_ignore_ascii_case(b"application/x-www-form-urlencoded") {
        Some(BodyKind::Form)
    } else {
        None
    }
}

fn is_json(essence: &[u8]) -> bool {
    let Some((prefix, sub)) = essence.split_at_checked(12) else { return false };
    prefix.eq_ignore_ascii_case(b"application/")
        && (sub.eq_ignore_ascii_case(b"json") || (sub.len() > 5 && sub[sub.len() - 5..].eq_ignore_ascii_case(b"+json")))
}

/// The `Content-Type` of gRPC, before its optional `+format` suffix.
const GRPC: &[u8] = b"application/grpc";

/// Whether a `Content-Type` value is gRPC's (`application/grpc`, with or
/// without a `+format` suffix).
pub(crate) fn is_grpc_type(ct: &HeaderValue) -> bool {
    ct.as_bytes().get(..GRPC.len()).is_some_and(|p| p.eq_ignore_ascii_case(GRPC))
}

#[cfg(test)]
mod tests {
    /// `parse_length` reads what `str::parse::<u64>` reads, and nothing else.
    #[test]
    fn lengths_parse_as_u64_from_str_does() {
        let samples = [
            "0",
            "1024",
            "+7",
            "007",
            "18446744073709551615",
            "18446744073709551616",
            "",
            "+",
            "-1",
            " 1",
            "1 ",
            "1_0",
            "0x10",
            "１",
            "99999999999999999999999",
            "+-1",
            "++1",
        ];
        for s in samples {
            assert_eq!(super::parse_length(s.as_bytes()), s.parse::<u64>().ok(), "{s:?}");
        }
        assert_eq!(super::parse_length(b"1\xff"), None);
    }
}
