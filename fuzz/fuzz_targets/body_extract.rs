//! JSON and form extraction through the whole layer.
//!
//! A POST (or PUT, PATCH, GET) with a fuzzer-chosen content type, body bytes
//! cut into chunks, optional trailers, an optional error after the last
//! chunk and a few headers goes through `IdentityVerificationLayer`
//! configured with JSON and form sources, around an inner service that reads
//! and records the body. Invariants: no panic and no hang; if the inner
//! service was called it received exactly the bytes (and trailers) sent; a
//! verified identity is the one the only valid signature covers; `Required`
//! passes only verified requests, `Off` never verifies; in `Off` and
//! `ReportOnly` only an ambiguous or malformed tenant or a failing body stops
//! a request; every rejection is a well-formed documented one.
//!
//! Input layout (write seeds by hand): three config bytes, then the body.
//! Every `$S` in the body becomes the valid signature of `user-42`.
//!
//! - byte 0: bits 0-1 mode (off, report-only, optional, required); bits 2-4
//!   content type; bits 5-6 content-length (none, exact, exact + 1, "0");
//!   bit 7 `content-encoding: gzip`
//! - byte 1: where the body is cut into chunks
//! - byte 2: bit 0 trailers; bit 1 error after the last chunk; bit 2 pending
//!   before every frame; bit 3 body limit 32 bytes; bits 4-5 method (POST,
//!   PUT, PATCH, GET); bit 6 `x-user-id: user-42`; bit 7
//!   `x-identity-signature: $S`

#![no_main]

use std::sync::OnceLock;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request};
use libfuzzer_sys::fuzz_target;
use tower_identity::{
    Identifier, IdentityOutcome, IdentityVerificationLayer, Key, KeySet, Mode, Role, Secret, Sources, sign,
};
use tower_identity_fuzz::{
    ChunkBody, NOW, Recorder, call, check_body, check_extensions, check_response, debug_run, is_grpc, name,
    replace_all, split,
};
use tower_layer::Layer;

const SECRET: &str = "body-extract-secret-0123456789";
const USER: &str = "user-42";
const CONTENT_TYPES: [Option<&str>; 8] = [
    Some("application/json"),
    Some("application/json; charset=utf-8"),
    Some("application/vnd.api+json"),
    Some("application/x-www-form-urlencoded"),
    Some("Application/X-WWW-Form-Urlencoded;charset=UTF-8"),
    Some("text/plain"),
    None,
    Some("APPLICATION/JSON"),
];
const MODES: [Mode; 4] = [Mode::Off, Mode::ReportOnly, Mode::Optional, Mode::Required];

fn signature() -> &'static str {
    static SIG: OnceLock<String> = OnceLock::new();
    SIG.get_or_init(|| sign::hmac(&Secret::text(SECRET).unwrap(), USER))
}

fn layer(mode: Mode, small_limit: bool) -> IdentityVerificationLayer {
    let keys = KeySet::single(Key::hmac(Identifier::UserId, Secret::text(SECRET).unwrap()).with_id("a"));
    let sources = Sources::new()
        .header(Role::Tenant, name("x-app-id"))
        .json(Role::UserId, "/user_id")
        .json(Role::Signature, "/user_hash")
        .json(Role::Metadata, "/user_metadata")
        .json(Role::Email, "/traits/email")
        .json(Role::Tenant, "/app")
        .form(Role::UserId, "user_id")
        .form(Role::Signature, "user_hash")
        .form(Role::Metadata, "meta")
        .form(Role::Tenant, "app")
        .body_limit(if small_limit { 32 } else { tower_identity::extract::DEFAULT_BODY_LIMIT });
    IdentityVerificationLayer::new(keys).mode(mode).sources(sources).clock(|| NOW)
}

/// A verified request whose body the layer read must not show another user
/// id to a downstream parser that keeps the last of repeated keys (serde_json
/// `Value`, most form decoders), with escapes and percent-encoding decoded.
fn check_downstream_view(content_type: Option<&str>, body: &[u8]) {
    let seen: Vec<String> = match content_type.map(str::to_ascii_lowercase).as_deref() {
        Some(ct) if ct.contains("json") => match serde_json::from_slice::<serde_json::Value>(body) {
            Ok(v) => v
                .pointer("/user_id")
                .map(|u| u.as_str().map_or_else(|| u.to_string(), str::to_owned))
                .into_iter()
                .collect(),
            Err(_) => Vec::new(),
        },
        Some(ct) if ct.contains("form") => body
            .split(|&b| b == b'&')
            .filter_map(|pair| {
                let mut kv = pair.splitn(2, |&b| b == b'=');
                let key = form_decode(kv.next()?);
                (key == "user_id").then(|| form_decode(kv.next().unwrap_or_default()))
            })
            .collect(),
        _ => Vec::new(),
    };
    for user in seen {
        assert_eq!(user, USER, "verified as {USER}, but a downstream parser reads user_id {user:?} from the body");
    }
}

/// `application/x-www-form-urlencoded` decoding as common form parsers do it
/// (lossy UTF-8).
fn form_decode(raw: &[u8]) -> String {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        match raw[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < raw.len() && raw[i + 1].is_ascii_hexdigit() && raw[i + 2].is_ascii_hexdigit() => {
                let hex = std::str::from_utf8(&raw[i + 1..i + 3]).expect("ASCII");
                out.push(u8::from_str_radix(hex, 16).expect("hex"));
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fuzz_target!(|data: &[u8]| {
    let byte = |i: usize| data.get(i).copied().unwrap_or(0);
    let (c0, c1, c2) = (byte(0), byte(1), byte(2));
    let mode = MODES[(c0 & 3) as usize];
    let content_type = CONTENT_TYPES[(c0 >> 2 & 7) as usize];
    let trailers = (c2 & 1 != 0).then(|| {
        let mut t = HeaderMap::new();
        t.insert("x-checksum", HeaderValue::from_static("abc"));
        t
    });
    let error_at_end = c2 & 2 != 0;
    let method = [Method::POST, Method::PUT, Method::PATCH, Method::GET][(c2 >> 4 & 3) as usize].clone();

    let body = Bytes::from(replace_all(data.get(3..).unwrap_or_default(), b"$S", signature().as_bytes()));
    let mut req = Request::builder().method(method).uri("/chat");
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    match c0 >> 5 & 3 {
        1 => req = req.header("content-length", body.len()),
        2 => req = req.header("content-length", body.len() + 1),
        3 => req = req.header("content-length", 0),
        _ => {}
    }
    if c0 & 128 != 0 {
        req = req.header("content-encoding", "gzip");
    }
    if c2 & 64 != 0 {
        req = req.header("x-user-id", USER);
    }
    if c2 & 128 != 0 {
        req = req.header("x-identity-signature", signature());
    }
    let chunks = split(&body, c1, 8);
    let req = req
        .body(ChunkBody::new(chunks).error_at_end(error_at_end).trailers(trailers.clone()).pending(c2 & 4 != 0))
        .expect("a valid request");
    let grpc = is_grpc(req.headers());

    let recorder = Recorder::default();
    let mut svc = layer(mode, c2 & 8 != 0).layer(recorder.clone());
    let (parts, response_body) = call(&mut svc, req);
    let record = recorder.take();
    let code = check_response(&parts, &response_body, record.is_some(), grpc);
    debug_run(&parts, code, record.as_ref());

    match &record {
        Some(record) => {
            check_body(record, &body, trailers.as_ref(), error_at_end);
            check_extensions(record);
            if let Some(identity) = &record.identity {
                assert_eq!(identity.user_id(), Some(USER), "only user-42 has a valid signature");
                assert_eq!(identity.key_id(), Some("a"));
                let reads_body = c2 >> 4 & 3 != 3 && c0 & 128 == 0;
                if reads_body {
                    check_downstream_view(content_type, &body);
                }
            }
            let outcome = record.outcome.expect("checked");
            match mode {
                Mode::Required => {
                    assert_eq!(outcome, IdentityOutcome::Verified, "Required passed an unverified request")
                }
                Mode::Off => assert!(!outcome.is_verified(), "Off verified a request"),
                _ => {}
            }
        }
        None => {
            let code = code.expect("a rejection");
            assert!(code != "body_unreadable" || error_at_end, "body_unreadable without a body error");
            if matches!(mode, Mode::Off | Mode::ReportOnly) {
                // A tenant that cannot be read (not a string, too long, not
                // UTF-8) chooses no policy, so no mode: it is refused in every
                // mode, like an ambiguous one. Only the body names a tenant
                // here: a JSON key `"app"` (or one written with escapes, which
                // are not decoded here) or a form field `app`.
                let form_names_tenant = body.split(|&b| b == b'&').any(|pair| {
                    let key = pair.split(|&b| b == b'=').next().unwrap_or_default();
                    form_decode(key) == "app"
                });
                let names_tenant = memmem(&body, b"\"app\"") || memmem(&body, b"\\") || form_names_tenant;
                let malformed_tenant = code == "credential_malformed" && names_tenant;
                assert!(
                    code == "conflicting_values" || malformed_tenant || (code == "body_unreadable" && error_at_end),
                    "{mode:?} rejected a request with {code}"
                );
            }
        }
    }
});

/// Whether `needle` occurs in `haystack`.
fn memmem(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|window| window == needle)
}
