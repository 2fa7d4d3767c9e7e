//! The whole layer, driven with fuzzer-chosen request parts and a body split
//! into fuzzer-chosen chunks.
//!
//! Tenants with every scheme and mode, static, closure and async providers
//! (the async one answers on first poll), query, bearer, JSON and form
//! sources, credential stripping, identity forwarding and a bypass are all
//! switched by the input. Invariants: no panic and no hang; the inner service
//! gets exactly the body bytes and trailers sent; every request it gets
//! carries exactly one outcome, and a `VerifiedIdentity` exactly when
//! verified; a verified identity is one a valid credential of the input can
//! prove, under the tenant whose keys signed it; forwarded identity headers
//! match the identity and no client-sent copy survives; stripped credential
//! headers are gone and kept ones are marked sensitive; bypassed requests get
//! no outcome; every rejection is a well-formed documented one.
//!
//! Input layout (write seeds by hand): four config bytes, then an HTTP/1-like
//! text: `METHOD URI`, header lines `name: value`, an empty line, the body.
//! Before parsing, `$HA` `$HE` `$TB` `$JC` `$JA` `$HD` become valid
//! credentials (see `credentials`), and `$LEN` in the head the body length.
//!
//! - byte 0: bits 0-1 layer mode (off, report-only, optional, required); bit 2
//!   strip credentials; bit 3 forward identity headers; bit 4 bypass
//!   `/health…`; bits 5-6 provider (tenant map, closure, async closure, tenant
//!   map); bit 7 `Authorization: Bearer` tokens
//! - byte 1: bit 0 query sources (and tenant `app`); bit 1 JSON fields; bit 2
//!   form fields; bit 3 body limit 48 bytes; bit 4 trailers; bit 5 error after
//!   the last chunk; bit 6 pending before every frame; bit 7 GET bodies too
//! - byte 2: where the body is cut into chunks
//! - byte 3: the clock, in minutes from the signing time (signed)

#![no_main]

use std::sync::OnceLock;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Uri};
use libfuzzer_sys::fuzz_target;
use tower_identity::{
    Identifier, IdentityOutcome, IdentityVerificationLayer, Key, KeySet, Mode, Role, Scheme, Secret, Sources,
    TenantMap, TenantPolicy, layer::ForwardHeaders, provider::LookupResult, provider::ProviderError,
    provider::from_async_fn, sign,
};
use tower_identity_fuzz::{
    ChunkBody, NOW, Recorder, call, check_body, check_extensions, check_response, debug_run, is_grpc, name,
    replace_all, split,
};
use tower_layer::Layer;

const A_USER: &str = "tenant-a-user-secret-0123456789";
const A_EMAIL: &str = "tenant-a-email-secret-abcdefghij";
const B_TS: &str = "tenant-b-timestamped-secret-0123";
const C_JWT: &str = "tenant-c-jwt-secret-0123456789ab";
const D_OFF: &str = "tenant-d-off-secret-0123456789ab";
const USER: &str = "user-42";
const EMAIL: &str = "jane@example.com";
const MODES: [Mode; 4] = [Mode::Off, Mode::ReportOnly, Mode::Optional, Mode::Required];

fn secret(s: &str) -> Secret {
    Secret::text(s).unwrap()
}

fn tenants() -> &'static TenantMap {
    static MAP: OnceLock<TenantMap> = OnceLock::new();
    MAP.get_or_init(|| {
        let a = KeySet::new([
            Key::hmac(Identifier::UserId, secret(A_USER)).with_id("a-user"),
            Key::hmac(Identifier::Email, secret(A_EMAIL)).with_id("a-email"),
        ])
        .unwrap();
        TenantMap::new()
            .untenanted(a.clone())
            .and_then(|m| m.tenant("app_a", a))
            .and_then(|m| m.tenant(
                "app_b",
                TenantPolicy::new(KeySet::single(Key::timestamped_hmac(Identifier::UserId, secret(B_TS)).with_id("b")))
                    .with_mode(Mode::Optional),
            ))
            .and_then(|m| m.tenant(
                "app_c",
                TenantPolicy::new(KeySet::single(Key::jwt(secret(C_JWT)).with_id("c")).with_audience("app_c"))
                    .with_mode(Mode::ReportOnly),
            ))
            .and_then(|m| m.tenant(
                "app_off",
                TenantPolicy::new(KeySet::single(Key::hmac(Identifier::UserId, secret(D_OFF)).with_id("d")))
                    .with_mode(Mode::Off),
            ))
            .and_then(|m| {
                m.tenant("app_short", KeySet::single(Key::hmac(Identifier::UserId, secret("too-short")).with_id("short")))
            })
            .expect("no secret serves two schemes")
    })
}

/// The placeholders and the credentials they stand for.
fn credentials() -> &'static [(&'static [u8], String); 6] {
    static CREDS: OnceLock<[(&'static [u8], String); 6]> = OnceLock::new();
    CREDS.get_or_init(|| {
        let c = secret(C_JWT);
        [
            (b"$HA", sign::hmac(&secret(A_USER), USER)),
            (b"$HE", sign::hmac(&secret(A_EMAIL), EMAIL)),
            (b"$TB", sign::timestamped_hmac(&secret(B_TS), USER, NOW)),
            (b"$JC", sign::jwt_token(&c, "app_c", EMAIL, Some("Jane"), NOW, 600, [])),
            (b"$JA", sign::jwt_token(&c, "app_a", EMAIL, None, NOW, 600, [])),
            (b"$HD", sign::hmac(&secret(D_OFF), USER)),
        ]
    })
}

fn lookup(tenant: Option<&str>) -> LookupResult {
    if tenant == Some("app_down") {
        return Err(ProviderError::new("the tenant database is down"));
    }
    Ok(tenants().get(tenant).cloned())
}

fn layer(c0: u8, c1: u8, now: u64) -> IdentityVerificationLayer {
    let mut sources = Sources::new().header(Role::Tenant, name("x-app-id"));
    if c0 & 128 != 0 {
        sources = sources.bearer();
    }
    if c1 & 1 != 0 {
        sources = sources.query_defaults().query(Role::Tenant, "app");
    }
    if c1 & 2 != 0 {
        sources = sources
            .json(Role::UserId, "/user_id")
            .json(Role::Email, "/email")
            .json(Role::Signature, "/user_hash")
            .json(Role::Timestamp, "/ts")
            .json(Role::Token, "/token")
            .json(Role::Metadata, "/user_metadata")
            .json(Role::Tenant, "/app");
    }
    if c1 & 4 != 0 {
        sources = sources
            .form(Role::UserId, "user_id")
            .form(Role::Email, "email")
            .form(Role::Signature, "user_hash")
            .form(Role::Token, "token")
            .form(Role::Tenant, "app");
    }
    if c1 & 8 != 0 {
        sources = sources.body_limit(48);
    }
    if c1 & 128 != 0 {
        sources = sources.body_methods([Method::POST, Method::PUT, Method::PATCH, Method::GET]);
    }
    let mut layer =
        match c0 >> 5 & 3 {
            1 => IdentityVerificationLayer::new(lookup),
            2 => IdentityVerificationLayer::new(from_async_fn(|tenant: Option<String>| async move {
                lookup(tenant.as_deref())
            })),
            _ => IdentityVerificationLayer::new(tenants().clone()),
        };
    layer = layer.mode(MODES[(c0 & 3) as usize]).sources(sources).clock(move || now).strip_credentials(c0 & 4 != 0);
    if c0 & 8 != 0 {
        layer = layer.forward_identity_headers(ForwardHeaders::default());
    }
    if c0 & 16 != 0 {
        layer = layer.bypass(|req| req.uri.path().starts_with("/health"));
    }
    layer
}

/// Parses `METHOD URI\n(name: value\n)*\nbody`.
fn parse(text: &[u8]) -> (Method, Uri, Vec<(HeaderName, HeaderValue)>, Bytes) {
    let (head, body) = match text.windows(2).position(|w| w == b"\n\n") {
        Some(i) => (&text[..i], &text[i + 2..]),
        None => (text, &[][..]),
    };
    let head = replace_all(head, b"$LEN", body.len().to_string().as_bytes());
    let mut lines = head.split(|&b| b == b'\n').map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let first = lines.next().unwrap_or_default();
    let (method, uri) = match first.iter().position(|&b| b == b' ') {
        Some(i) => (&first[..i], &first[i + 1..]),
        None => (first, &b"/"[..]),
    };
    let method = Method::from_bytes(method).unwrap_or(Method::POST);
    let uri = Uri::try_from(uri).unwrap_or_else(|_| Uri::from_static("/"));
    let headers = lines
        .filter_map(|line| {
            let colon = line.iter().position(|&b| b == b':')?;
            let name = HeaderName::from_bytes(line[..colon].trim_ascii()).ok()?;
            let value = HeaderValue::from_bytes(line[colon + 1..].trim_ascii_start()).ok()?;
            Some((name, value))
        })
        .collect();
    (method, uri, headers, Bytes::copy_from_slice(body))
}

/// `-` for `_` and `.`, as the forwarder compares names.
fn normalized(name: &str) -> String {
    name.replace(['_', '.'], "-")
}

fn check_verified(record: &tower_identity_fuzz::Record) {
    let Some(identity) = &record.identity else { return };
    let tenant = identity.tenant();
    let ok = match (identity.scheme(), identity.key_id()) {
        (Scheme::Hmac { over: Identifier::UserId }, Some("a-user")) => {
            identity.id() == USER && matches!(tenant, None | Some("app_a"))
        }
        (Scheme::Hmac { over: Identifier::Email }, Some("a-email")) => {
            identity.id() == EMAIL && matches!(tenant, None | Some("app_a"))
        }
        (Scheme::TimestampedHmac { over: Identifier::UserId }, Some("b")) => {
            identity.id() == USER && tenant == Some("app_b") && identity.signed_at() == Some(NOW)
        }
        (Scheme::Jwt, Some("c")) => {
            identity.id() == EMAIL
                && tenant == Some("app_c")
                && identity.claims().is_some_and(|c| c.get_str("aud") == Some("app_c"))
        }
        _ => false,
    };
    assert!(ok, "an identity no credential of the input proves: {identity:?}");
}

fn check_forwarded(headers: &HeaderMap, outcome: Option<IdentityOutcome>, record: &tower_identity_fuzz::Record) {
    let forward = ForwardHeaders::default();
    let ours = forward.names();
    for name in headers.keys() {
        let n = normalized(name.as_str());
        if let Some(our) = ours.iter().find(|o| o.as_str() == n) {
            assert_eq!(name, *our, "a client-sent {name} survived");
            assert_eq!(headers.get_all(name).iter().count(), 1, "{name} twice");
        }
    }
    let get = |n: &HeaderName| headers.get(n).map(|v| v.to_str().expect("ASCII or checked").to_owned());
    let Some(outcome) = outcome else {
        // Bypassed: only stripped.
        for our in ours {
            assert!(!headers.contains_key(our), "{our} on a bypassed request");
        }
        return;
    };
    assert_eq!(get(forward.get_outcome()).as_deref(), Some(outcome.as_str()));
    let identity = record.identity.as_ref();
    let str_of = |v: &[u8]| std::str::from_utf8(v).expect("UTF-8").to_owned();
    let header_str = |n: &HeaderName| headers.get(n).map(|v| str_of(v.as_bytes()));
    assert_eq!(header_str(forward.get_user_id()).as_deref(), identity.and_then(|i| i.user_id()));
    assert_eq!(header_str(forward.get_email()).as_deref(), identity.and_then(|i| i.email()));
    assert_eq!(header_str(forward.get_visitor_id()).as_deref(), identity.and_then(|i| i.visitor_id()));
    assert_eq!(header_str(forward.get_tenant()).as_deref(), identity.and_then(|i| i.tenant()));
    assert_eq!(header_str(forward.get_key_id()).as_deref(), identity.and_then(|i| i.key_id()));
}

fuzz_target!(|data: &[u8]| {
    let byte = |i: usize| data.get(i).copied().unwrap_or(0);
    let (c0, c1, c2, c3) = (byte(0), byte(1), byte(2), byte(3));
    let now = NOW.saturating_add_signed(i64::from(c3 as i8) * 60);
    let mut text = data.get(4..).unwrap_or_default().to_vec();
    for (placeholder, credential) in credentials() {
        text = replace_all(&text, placeholder, credential.as_bytes());
    }
    let (method, uri, headers, body) = parse(&text);
    let bypassed = c0 & 16 != 0 && uri.path().starts_with("/health");
    let trailers = (c1 & 16 != 0).then(|| {
        let mut t = HeaderMap::new();
        t.insert("x-user-id", HeaderValue::from_static("trailer-user"));
        t
    });
    let error_at_end = c1 & 32 != 0;
    let chunks = split(&body, c2, 12);
    let mut req = Request::builder()
        .method(method)
        .uri(uri)
        .body(ChunkBody::new(chunks).error_at_end(error_at_end).trailers(trailers.clone()).pending(c1 & 64 != 0))
        .expect("valid parts");
    for (name, value) in headers {
        req.headers_mut().append(name, value);
    }
    let grpc = is_grpc(req.headers());

    let recorder = Recorder::default();
    let mut svc = layer(c0, c1, now).layer(recorder.clone());
    let (parts, response_body) = call(&mut svc, req);
    let record = recorder.take();
    let code = check_response(&parts, &response_body, record.is_some(), grpc);
    debug_run(&parts, code, record.as_ref());

    let Some(record) = record else {
        let code = code.expect("a rejection");
        assert!(!bypassed, "a bypassed request was rejected with {code}");
        assert!(code != "body_unreadable" || error_at_end, "body_unreadable without a body error");
        assert_ne!(code, "internal_error", "no provider here panics");
        return;
    };
    check_body(&record, &body, trailers.as_ref(), error_at_end);
    if bypassed {
        assert!(record.outcome.is_none() && record.identity.is_none(), "a bypassed request carries an outcome");
    } else {
        check_extensions(&record);
        check_verified(&record);
        if record.identity.is_some() {
            assert_eq!(record.outcome, Some(IdentityOutcome::Verified));
        }
        let credentials = [
            Some(name("x-identity-signature")),
            Some(name("x-identity-timestamp")),
            Some(name("x-identity-token")),
            (c0 & 128 != 0).then_some(http::header::AUTHORIZATION),
        ];
        if c0 & 4 != 0 {
            let claimed = [name("x-user-id"), name("x-user-email"), name("x-visitor-id")];
            for n in credentials.iter().flatten().chain(&claimed) {
                assert!(!record.headers.contains_key(n), "{n} was not stripped");
            }
        } else {
            for n in [&credentials[0], &credentials[2], &credentials[3]].into_iter().flatten() {
                for v in record.headers.get_all(n) {
                    assert!(v.is_sensitive(), "{n} is not marked sensitive");
                }
            }
        }
    }
    if c0 & 8 != 0 {
        check_forwarded(&record.headers, record.outcome, &record);
    }
});
