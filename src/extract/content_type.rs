//! Which body a request's identity is read from, by its content type, and
//! whether the layer can read that body at all.

use http::header::{CONTENT_ENCODING, CONTENT_TYPE};
use http::{HeaderMap, HeaderValue};

/// The kind of body a request's identity is read from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BodyKind {
    Json,
    Form,
}

/// The body kind the request's `Content-Type` names, if the layer reads it:
/// `application/json`, `application/*+json` or
/// `application/x-www-form-urlencoded`, parameters ignored. Never a gRPC
/// body (`application/grpc+json` would look like JSON): those are not read.
pub(super) fn body_kind(headers: &HeaderMap) -> Option<BodyKind> {
    let ct = headers.get(CONTENT_TYPE)?.as_bytes();
    // What browsers and SDKs send, recognised without parsing.
    match ct {
        b"application/json" => return Some(BodyKind::Json),
        b"application/x-www-form-urlencoded" => return Some(BodyKind::Form),
        _ => {}
    }
    // A header value holds tabs and bytes from 0x20 up (no 0x7f): the ASCII
    // ones are exactly what `HeaderValue::to_str` accepts, which this keeps.
    if !ct.is_ascii() || ct.get(..GRPC.len()).is_some_and(|p| p.eq_ignore_ascii_case(GRPC)) {
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

/// Whether the body carries a content coding the layer cannot read.
pub(crate) fn is_encoded(headers: &HeaderMap) -> bool {
    headers.get_all(CONTENT_ENCODING).iter().any(|v| !v.as_bytes().eq_ignore_ascii_case(b"identity"))
}

/// The `Content-Type` of gRPC, before its optional `+format` suffix.
const GRPC: &[u8] = b"application/grpc";

/// Whether a `Content-Type` value is gRPC's (`application/grpc`, with or
/// without a `+format` suffix).
pub(crate) fn is_grpc_type(ct: &HeaderValue) -> bool {
    ct.as_bytes().get(..GRPC.len()).is_some_and(|p| p.eq_ignore_ascii_case(GRPC))
}
