//! Extraction: the [`Claim`] a request makes, read from the configured
//! [`Sources`]: headers, query parameters, and JSON or form bodies.
//!
//! Pure functions of the request head and, only when a body source applies,
//! the buffered body. One rule for every source: a role sent twice under the
//! same name (a repeated header or parameter, a duplicate JSON key or form
//! field) is a conflict, and a role found at two places (two sources, two
//! JSON paths) must carry the same value. A bad tenant (ambiguous, not
//! UTF-8, longer than the cap, or with control characters or edge whitespace)
//! from any source leaves no policy to choose, so the request is refused
//! whatever the mode, before any lookup.

mod content_type;
mod head;
mod headers;
mod json;
mod protocol;
mod sources;
mod strip_query;
mod urlencoded;

use bytes::Bytes;
use http::Request;

pub use head::RequestHead;
pub use sources::{DEFAULT_BODY_LIMIT, Sources};

pub(crate) use content_type::{BodyHeaders, BodyKind};
pub(crate) use head::{RequestPredicate, is_grpc};
pub(crate) use headers::{mark_credentials, remove_every_spelling};
pub(crate) use strip_query::strip_credentials;

use crate::claim::{Claim, IdStr, Role};
use crate::verify::{DEFAULT_MAX_IDENTIFIER_LEN, Failure, check_utf8};

const ROLES: usize = Role::ALL.len();

/// A claim as read from a request, with the first problem met while reading
/// it. The tenant is kept even when another role failed, so that the tenant's
/// mode still decides; a problem with the tenant itself has its own channel.
#[derive(Debug)]
pub(crate) struct Extracted {
    pub(crate) claim: Claim,
    /// The first failure met, for the mode to decide on.
    pub(crate) error: Option<Failure>,
    /// The tenant itself is ambiguous or unreadable: no policy (and no mode)
    /// can be chosen, so the request is refused in every mode.
    tenant_error: Option<Failure>,
    /// The longest tenant name read, in bytes (the identifier cap).
    tenant_cap: usize,
    /// What the headers say about the body (noted only when the sources read one).
    pub(crate) body: BodyHeaders,
}

impl Default for Extracted {
    fn default() -> Self {
        Extracted::new(DEFAULT_MAX_IDENTIFIER_LEN)
    }
}

impl Extracted {
    /// Nothing read yet; tenant names longer than `tenant_cap` bytes will be refused.
    pub(crate) fn new(tenant_cap: usize) -> Extracted {
        Extracted { claim: Claim::default(), error: None, tenant_error: None, tenant_cap, body: BodyHeaders::default() }
    }

    /// Reads the claim from the request head (headers, then the query),
    /// flagging credential headers as sensitive. Tenant names longer than
    /// `tenant_cap` bytes are refused.
    pub(crate) fn from_head<B>(sources: &Sources, tenant_cap: usize, req: &mut Request<B>) -> Extracted {
        let mut out = Extracted::new(tenant_cap);
        headers::read(sources, req.headers_mut(), &mut out);
        protocol::read(sources, req.headers(), &mut out);
        urlencoded::read_query(sources, req.uri(), &mut out);
        out
    }

    /// Adds the roles found in a buffered body.
    pub(crate) fn add_body(&mut self, sources: &Sources, kind: BodyKind, body: &Bytes) {
        match kind {
            BodyKind::Form => urlencoded::read(&sources.form, body, self),
            BodyKind::Json => json::read(sources, body, self),
        }
    }

    /// Why the tenant cannot be read, if it cannot: the request is then
    /// refused before any lookup, in every mode.
    pub(crate) fn tenant_error(&self) -> Option<Failure> {
        self.tenant_error
    }

    /// A failure of the request as a whole (its body), not of one role.
    pub(crate) fn fail(&mut self, failure: Failure) {
        self.error.get_or_insert(failure);
    }

    /// A failure reading `role`'s value.
    fn fail_role(&mut self, role: Role, failure: Failure) {
        if role == Role::Tenant {
            self.tenant_error.get_or_insert(failure);
        }
        self.fail(failure);
    }

    /// `role` was sent twice under one name: a conflict, whatever the values.
    fn repeated(&mut self, role: Role) {
        self.claim.slot(role).take();
        self.fail_role(role, Failure::Conflict(role));
    }

    /// `role`'s value, found at one more place: it must agree with the others.
    /// A tenant name is checked here, whatever its source: it chooses the
    /// policy, and is looked up, cached, counted and logged, so a long or
    /// ambiguous one goes no further.
    fn put(&mut self, role: Role, value: IdStr) {
        if role == Role::Tenant
            && let Err(failure) = check_utf8(value.as_bytes(), self.tenant_cap)
        {
            self.claim.tenant = None;
            self.fail_role(role, failure);
            return;
        }
        let slot = self.claim.slot(role);
        match slot {
            Some(existing) if *existing != value => {
                *slot = None;
                self.fail_role(role, Failure::Conflict(role));
            }
            Some(_) => {}
            None => *slot = Some(value),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::Malformed;
    use headers::scan_headers;
    use http::header::{AUTHORIZATION, CONTENT_TYPE};
    use http::{HeaderMap, HeaderName, HeaderValue, Method, Uri};
    use json::JsonNode;

    /// Reads the claim from the request head; `Err` for a bad tenant.
    fn extract(sources: &Sources, headers: &HeaderMap, uri: &Uri) -> Result<Extracted, Failure> {
        let mut req = Request::new(());
        *req.headers_mut() = headers.clone();
        *req.uri_mut() = uri.clone();
        let out = Extracted::from_head(sources, DEFAULT_MAX_IDENTIFIER_LEN, &mut req);
        match out.tenant_error() {
            Some(failure) => Err(failure),
            None => Ok(out),
        }
    }

    fn uri(s: &str) -> Uri {
        s.parse().unwrap()
    }

    #[test]
    fn headers_and_query_merge() {
        let sources = Sources::new().query_defaults();
        let mut h = HeaderMap::new();
        h.insert("x-user-id", HeaderValue::from_static("42"));
        let got = extract(&sources, &h, &uri("/?user_id=42&signature=abc")).unwrap();
        assert_eq!(got.error, None);
        assert_eq!(got.claim.user_id.as_deref(), Some("42"));
        assert_eq!(got.claim.signature.as_deref(), Some("abc"));

        let got = extract(&sources, &h, &uri("/?user_id=43")).unwrap();
        assert_eq!(got.error, Some(Failure::Conflict(Role::UserId)));
        assert_eq!(got.claim.user_id, None);
    }

    #[test]
    fn repeats_conflict() {
        let sources = Sources::new().query_defaults();
        let mut h = HeaderMap::new();
        h.append("x-user-id", HeaderValue::from_static("42"));
        h.append("x-user-id", HeaderValue::from_static("42"));
        assert_eq!(extract(&sources, &h, &uri("/")).unwrap().error, Some(Failure::Conflict(Role::UserId)));
        let got = extract(&sources, &HeaderMap::new(), &uri("/?signature=a&signature=a")).unwrap();
        assert_eq!(got.error, Some(Failure::Conflict(Role::Signature)));
        assert_eq!(got.claim.signature, None);
    }

    /// The one-pass header scan finds exactly what a lookup per configured
    /// name finds: names sharing a length, names of 64+ bytes (the length
    /// filter wraps), two roles on one header, standard headers, repeats.
    #[test]
    fn header_scan_matches_lookups() {
        let long = "x-".to_owned() + &"l".repeat(70); // 72 bytes: the same filter bit as 8-byte names
        let sources = Sources::new()
            .header(Role::Tenant, HeaderName::from_static("x-app-id")) // 8 bytes, like `x-app-ix` below
            .header(Role::Metadata, HeaderName::from_bytes(long.as_bytes()).unwrap())
            .header(Role::VisitorId, HeaderName::from_static("x-user-id")) // shares x-user-id with UserId
            .header(Role::Timestamp, http::header::DATE) // a standard header
            .bearer();
        let names =
            ["x-app-id", "x-app-ix", &long, "x-user-id", "date", "authorization", "x-identity-signature", "host"];
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..2000 {
            let mut headers = HeaderMap::new();
            for _ in 0..(rng % 7) {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                let name = names[(rng % names.len() as u64) as usize];
                headers.append(HeaderName::from_bytes(name.as_bytes()).unwrap(), HeaderValue::from_static("v"));
            }
            let mut scanned = headers.clone();
            let hits = scan_headers(&sources, &mut scanned);
            for role in Role::ALL {
                let expected: Vec<_> =
                    sources.header_name(role).map_or(vec![], |n| headers.get_all(n).iter().collect());
                let got = hits.values[role.index()];
                assert_eq!(got.is_some(), !expected.is_empty(), "{role:?} in {headers:?}");
                assert_eq!(hits.repeated[role.index()], expected.len() > 1, "{role:?} in {headers:?}");
            }
            let auth = headers.get_all(AUTHORIZATION).iter().count();
            assert_eq!((hits.authorization.is_some(), hits.authorization_repeated), (auth > 0, auth > 1));
            // Exactly the credential headers (signature, token, bearer) are flagged sensitive.
            for (name, value) in &scanned {
                let credential = ["x-identity-signature", "authorization"].contains(&name.as_str());
                assert_eq!(value.is_sensitive(), credential, "{name}");
            }
        }
    }

    #[test]
    fn query_is_opt_in_and_percent_decoded() {
        let got = extract(&Sources::new(), &HeaderMap::new(), &uri("/?user_id=42")).unwrap();
        assert_eq!(got.claim.user_id, None);
        let got = extract(&Sources::new().query_defaults(), &HeaderMap::new(), &uri("/?email=a%2Bb%40c.d")).unwrap();
        assert_eq!(got.claim.email.as_deref(), Some("a+b@c.d"));
    }

    #[test]
    fn tenant_conflict_fails_whole_extraction() {
        let sources =
            Sources::new().header(Role::Tenant, HeaderName::from_static("x-tenant")).query(Role::Tenant, "app");
        let mut h = HeaderMap::new();
        h.insert("x-tenant", HeaderValue::from_static("a"));
        assert_eq!(extract(&sources, &h, &uri("/?app=b")).unwrap_err(), Failure::Conflict(Role::Tenant));
        assert!(extract(&sources, &h, &uri("/?app=a")).is_ok());
    }

    #[test]
    fn a_tenant_conflict_is_seen_after_another_error() {
        let sources =
            Sources::new().header(Role::Tenant, HeaderName::from_static("x-tenant")).query(Role::Tenant, "app");
        let mut h = HeaderMap::new();
        h.append("x-user-id", HeaderValue::from_static("1"));
        h.append("x-user-id", HeaderValue::from_static("2"));
        h.insert("x-tenant", HeaderValue::from_static("a"));
        assert_eq!(extract(&sources, &h, &uri("/?app=b")).unwrap_err(), Failure::Conflict(Role::Tenant));
    }

    #[test]
    fn non_utf8_header() {
        let mut h = HeaderMap::new();
        h.insert("x-user-id", HeaderValue::from_bytes(b"\xff\xfe").unwrap());
        let got = extract(&Sources::new(), &h, &uri("/")).unwrap();
        assert_eq!(got.error, Some(Failure::Malformed(Malformed::NotUtf8)));
    }

    #[test]
    fn bearer_is_opt_in() {
        let mut h = HeaderMap::new();
        h.insert(AUTHORIZATION, HeaderValue::from_static("Bearer abc.def.ghi"));
        assert_eq!(extract(&Sources::new(), &h, &uri("/")).unwrap().claim.token, None);
        let got = extract(&Sources::new().bearer(), &h, &uri("/")).unwrap();
        assert_eq!(got.claim.token.as_deref(), Some("abc.def.ghi"));
        h.insert(AUTHORIZATION, HeaderValue::from_static("Basic Zm9vOmJhcg=="));
        assert_eq!(extract(&Sources::new().bearer(), &h, &uri("/")).unwrap().claim.token, None);
    }

    #[test]
    fn json_pointers_build_a_tree() {
        let mut n = JsonNode::default();
        n.insert(Role::UserId, "/user/id").unwrap();
        n.insert(Role::Signature, "/user/hash").unwrap();
        n.insert(Role::Email, "/a~1b").unwrap();
        assert_eq!(n.children.len(), 2);
        assert_eq!(&*n.children[1].0, "a/b");
        assert!(n.insert(Role::Token, "/user").is_err());
        assert!(n.insert(Role::Token, "/user/id/x").is_err());
        assert!(n.insert(Role::Token, "user").is_err());
    }

    #[cfg(feature = "json")]
    #[test]
    fn json_bodies() {
        let sources = Sources::new()
            .json(Role::UserId, "/user_id")
            .json(Role::Signature, "/user_hash")
            .json(Role::Metadata, "/user_metadata")
            .json(Role::Tenant, "/traits/app");
        let run = |body: &str| {
            let mut e = Extracted::default();
            e.add_body(&sources, BodyKind::Json, &Bytes::copy_from_slice(body.as_bytes()));
            e
        };
        let e = run(
            r#"{"x":[1,{"user_id":"no"}],"user_id":"u\u0031","user_hash":"abc","user_metadata":{"plan":"pro"},"traits":{"app":"t"}}"#,
        );
        assert_eq!(e.error, None);
        assert_eq!(e.claim.user_id.as_deref(), Some("u1"));
        assert_eq!(e.claim.signature.as_deref(), Some("abc"));
        assert_eq!(e.claim.metadata.as_deref(), Some(r#"{"plan":"pro"}"#));
        assert_eq!(e.claim.tenant.as_deref(), Some("t"));
        assert_eq!(run(r#"{"user_id":"a","user_id":"a"}"#).error, Some(Failure::Conflict(Role::UserId)));
        assert_eq!(run(r#"{"user_id":42}"#).error, Some(Failure::Malformed(Malformed::NotAString)));
        assert_eq!(run(r#"{"user_id":"a""#).error, Some(Failure::Malformed(Malformed::Body)));
        assert_eq!(run(r#"{"user_id":"a"} x"#).error, Some(Failure::Malformed(Malformed::Body)));
        assert_eq!(run("[1,2]").error, None);
        assert_eq!(run("").error, None, "an empty body carries no identity");
        // Duplicate keys outside the configured fields are not the layer's business.
        assert_eq!(run(r#"{"other":1,"other":2,"user_id":"a"}"#).error, None);
    }

    #[cfg(feature = "json")]
    #[test]
    fn one_role_at_two_paths_must_agree() {
        let sources = Sources::new().json(Role::UserId, "/user_id").json(Role::UserId, "/traits/user_id");
        let run = |body: &'static str| {
            let mut e = Extracted::default();
            e.add_body(&sources, BodyKind::Json, &Bytes::from_static(body.as_bytes()));
            e
        };
        let e = run(r#"{"user_id":"victim","traits":{"user_id":"attacker"}}"#);
        assert_eq!(e.error, Some(Failure::Conflict(Role::UserId)));
        let e = run(r#"{"user_id":"same","traits":{"user_id":"same"}}"#);
        assert_eq!((e.error, e.claim.user_id.as_deref()), (None, Some("same")));
    }

    #[test]
    fn form_bodies() {
        let sources = Sources::new().form(Role::UserId, "user_id").form(Role::Signature, "signature");
        let mut e = Extracted::default();
        e.add_body(&sources, BodyKind::Form, &Bytes::from_static(b"user_id=a%2Bb&signature=x&other=1"));
        assert_eq!((e.error, e.claim.user_id.as_deref()), (None, Some("a+b")));
        let mut e = Extracted::default();
        e.add_body(&sources, BodyKind::Form, &Bytes::from_static(b"user_id=a&user_id=a"));
        assert_eq!(e.error, Some(Failure::Conflict(Role::UserId)));
    }

    /// The head's pass notes the body's headers, as lookups would find them,
    /// and only when the sources read a body.
    #[test]
    fn the_header_pass_notes_the_body_headers() {
        use http::header::{CONTENT_ENCODING, CONTENT_LENGTH};
        let json = Sources::new().json(Role::UserId, "/u");
        let cases: [&[(HeaderName, &str)]; 5] = [
            &[],
            &[(CONTENT_TYPE, "application/json"), (CONTENT_LENGTH, "17")],
            &[(CONTENT_TYPE, "text/plain"), (CONTENT_TYPE, "application/json"), (CONTENT_LENGTH, "x17")],
            &[(CONTENT_LENGTH, "9"), (CONTENT_LENGTH, "12"), (CONTENT_ENCODING, "IDENTITY")],
            &[(CONTENT_ENCODING, "identity"), (CONTENT_ENCODING, "gzip"), (CONTENT_TYPE, "application/grpc+json")],
        ];
        for pairs in cases {
            let mut h = HeaderMap::new();
            for (name, value) in pairs {
                h.append(name, HeaderValue::from_static(value));
            }
            let noted = extract(&json, &h, &uri("/")).unwrap().body;
            let looked_up = BodyHeaders::of(&h);
            assert_eq!(
                (noted.kind, noted.length, noted.encoded),
                (looked_up.kind, looked_up.length, looked_up.encoded),
                "{pairs:?}"
            );
            let unread = extract(&Sources::new(), &h, &uri("/")).unwrap().body;
            assert_eq!((unread.kind, unread.length, unread.encoded), (None, None, false));
        }
        let mut h = HeaderMap::new();
        h.append(CONTENT_ENCODING, HeaderValue::from_static("identity"));
        h.append(CONTENT_ENCODING, HeaderValue::from_static("br"));
        h.append(CONTENT_LENGTH, HeaderValue::from_static("12"));
        h.append(CONTENT_LENGTH, HeaderValue::from_static("9"));
        let noted = extract(&json, &h, &uri("/")).unwrap().body;
        assert_eq!((noted.length, noted.encoded), (Some(12), true), "the first length; any coding");
    }

    #[test]
    fn body_kind_by_content_type_and_method() {
        let sources = Sources::new().json(Role::UserId, "/u");
        let mut h = HeaderMap::new();
        let uri = uri("/");
        let head = |m: &'static Method, h: &HeaderMap| -> Option<BodyKind> {
            let head = RequestHead { method: m, uri: &uri, version: http::Version::HTTP_11, headers: h };
            sources.body_kind(&head, &BodyHeaders::of(h))
        };
        assert_eq!(head(&Method::POST, &h), None);
        h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json; charset=utf-8"));
        assert_eq!(head(&Method::POST, &h), Some(BodyKind::Json));
        assert_eq!(head(&Method::GET, &h), None);
        h.insert(CONTENT_TYPE, HeaderValue::from_static("application/vnd.api+json"));
        assert_eq!(head(&Method::POST, &h), Some(BodyKind::Json));
        h.insert(CONTENT_TYPE, HeaderValue::from_static(" application/json\t; charset=utf-8"));
        assert_eq!(head(&Method::POST, &h), Some(BodyKind::Json));
        h.insert(CONTENT_TYPE, HeaderValue::from_bytes(b"application/json; charset=\"\xe9\"").unwrap());
        assert_eq!(head(&Method::POST, &h), None, "not visible ASCII");
        // gRPC bodies are never read, whatever their format.
        h.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc+json"));
        assert_eq!(head(&Method::POST, &h), None);
        h.insert(CONTENT_TYPE, HeaderValue::from_static("Application/GRPC+JSON"));
        assert_eq!(head(&Method::POST, &h), None);
        h.insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        assert_eq!(head(&Method::POST, &h), None);
        h.insert(CONTENT_TYPE, HeaderValue::from_static("application/x-www-form-urlencoded"));
        assert_eq!(head(&Method::POST, &h), None, "no form fields configured");
    }
}
