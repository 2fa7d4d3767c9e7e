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
    let ct = headers.get(CONTENT_TYPE)?;
    if is_grpc_type(ct) {
        return None;
    }
    let ct = ct.to_str().ok()?;
    // The value is visible ASCII (`to_str`): only spaces and tabs to trim.
    let essence = ct.find(';').map_or(ct, |end| &ct[..end]).trim_ascii();
    if is_json(essence) {
        Some(BodyKind::Json)
    } else if essence.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
        Some(BodyKind::Form)
    } else {
        None
    }
}

fn is_json(essence: &str) -> bool {
    let Some(sub) = essence.get(..12).filter(|p| p.eq_ignore_ascii_case("application/")).map(|_| &essence[12..]) else {
        return false;
    };
    sub.eq_ignore_ascii_case("json")
        || (sub.len() > 5 && sub.get(sub.len() - 5..).is_some_and(|t| t.eq_ignore_ascii_case("+json")))
}

/// Whether the body carries a content coding the layer cannot read.
pub(crate) fn is_encoded(headers: &HeaderMap) -> bool {
    headers.get_all(CONTENT_ENCODING).iter().any(|v| !v.as_bytes().eq_ignore_ascii_case(b"identity"))
}

/// Whether a `Content-Type` value is gRPC's (`application/grpc`, with or
/// without a `+format` suffix).
pub(crate) fn is_grpc_type(ct: &HeaderValue) -> bool {
    ct.as_bytes().get(..16).is_some_and(|p| p.eq_ignore_ascii_case(b"application/grpc"))
}
