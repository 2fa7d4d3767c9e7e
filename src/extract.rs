//! Where claims are read from: headers, query parameters, and JSON or form bodies.

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Uri};

use crate::identity::IdStr;
use crate::reject::RequestHead;
use crate::verify::{Claim, Failure, Malformed, Role};

const ROLES: usize = Role::ALL.len();

/// Default body limit: 64 KiB.
pub const DEFAULT_BODY_LIMIT: usize = 64 * 1024;

use crate::reject::RequestPredicate as BodyFilter;

/// Where each [`Role`] is read from.
///
/// Defaults (headers only; query parameters and bodies are opt-in):
///
/// | role | header | query parameter (after [`Sources::query_defaults`]) |
/// | --- | --- | --- |
/// | tenant | none | none |
/// | user id | `x-user-id` | `user_id` |
/// | email | `x-user-email` | `email` |
/// | visitor id | `x-visitor-id` | `visitor_id` |
/// | signature | `x-identity-signature` | `signature` |
/// | timestamp | `x-identity-timestamp` | `timestamp` |
/// | token (JWT) | `x-identity-token`, and `Authorization: Bearer` after [`Sources::bearer`] | `token` |
/// | metadata | none | none |
///
/// A role found twice (a repeated header or parameter, a duplicate JSON key
/// or form field, or two sources that disagree) fails with
/// [`Failure::Conflict`].
///
/// ## Bodies
///
/// [`json`](Sources::json) and [`form`](Sources::form) read roles from
/// `application/json` (and `application/*+json`) or
/// `application/x-www-form-urlencoded` bodies. The body is buffered only when
/// a body field is configured for the request's content type, the method is
/// one of [`body_methods`](Sources::body_methods) (default `POST`, `PUT`,
/// `PATCH`), the request is not gRPC, and the optional
/// [`body_filter`](Sources::body_filter) agrees. `Content-Length` is checked
/// against [`body_limit`](Sources::body_limit) (default 64 KiB) before
/// reading, and the body is read through the limit (413 beyond it). The inner
/// service receives exactly the bytes received.
///
/// ```
/// use tower_identity::{Role, Sources};
///
/// // Seed 001: {"user_id": "...", "user_hash": "...", "user_metadata": {...}}
/// let sources = Sources::new()
///     .json(Role::UserId, "/user_id")
///     .json(Role::Signature, "/user_hash")
///     .json(Role::Metadata, "/user_metadata")
///     .body_filter(|req| req.uri.path().starts_with("/chat"));
/// # let _ = sources;
/// ```
#[derive(Clone)]
pub struct Sources {
    headers: [Option<HeaderName>; ROLES],
    /// Bit `len % 64` is set for the length of every header name read (the
    /// configured ones, and `authorization` with `bearer`): a request header
    /// whose length is not in it is skipped without a comparison.
    header_lengths: u64,
    query: [Option<Box<str>>; ROLES],
    pub(crate) protocol: crate::protocol::ProtocolSources,
    bearer: bool,
    json: JsonNode,
    form: [Option<Box<str>>; ROLES],
    body_limit: usize,
    body_methods: Vec<Method>,
    body_filter: Option<BodyFilter>,
}

impl Default for Sources {
    fn default() -> Self {
        Sources {
            headers: [
                None,
                Some(HeaderName::from_static("x-user-id")),
                Some(HeaderName::from_static("x-user-email")),
                Some(HeaderName::from_static("x-visitor-id")),
                Some(HeaderName::from_static("x-identity-signature")),
                Some(HeaderName::from_static("x-identity-timestamp")),
                Some(HeaderName::from_static("x-identity-token")),
                None,
            ],
            ..Sources::empty()
        }
        .index_headers()
    }
}

impl fmt::Debug for Sources {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sources")
            .field("headers", &self.headers)
            .field("query", &self.query)
            .field("protocol", &self.protocol)
            .field("bearer", &self.bearer)
            .field("json", &self.json)
            .field("form", &self.form)
            .field("body_limit", &self.body_limit)
            .field("body_methods", &self.body_methods)
            .field("body_filter", &self.body_filter.as_ref().map(|_| ".."))
            .finish()
    }
}

impl Sources {
    /// The default sources (see the table above).
    pub fn new() -> Sources {
        Sources::default()
    }

    /// No sources at all; add them one by one.
    pub fn empty() -> Sources {
        Sources {
            headers: Default::default(),
            header_lengths: 0,
            query: Default::default(),
            protocol: Default::default(),
            bearer: false,
            json: JsonNode::default(),
            form: Default::default(),
            body_limit: DEFAULT_BODY_LIMIT,
            body_methods: vec![Method::POST, Method::PUT, Method::PATCH],
            body_filter: None,
        }
    }

    /// Reads `role` from the header `name`.
    pub fn header(mut self, role: Role, name: HeaderName) -> Sources {
        self.headers[role.index()] = Some(name);
        self.index_headers()
    }

    /// Stops reading `role` from headers.
    pub fn without_header(mut self, role: Role) -> Sources {
        self.headers[role.index()] = None;
        self.index_headers()
    }

    fn index_headers(mut self) -> Sources {
        let bearer = self.bearer.then_some(&AUTHORIZATION);
        self.header_lengths = self.headers.iter().flatten().chain(bearer).fold(0, |mask, name| mask | length_bit(name));
        self
    }

    /// Also reads the token from `Authorization: Bearer <token>`. Off by
    /// default, so that an application's own bearer tokens are never mistaken
    /// for identity tokens.
    pub fn bearer(mut self) -> Sources {
        self.bearer = true;
        self.index_headers()
    }

    /// Reads `role` from the query parameter `name`.
    pub fn query(mut self, role: Role, name: impl Into<Box<str>>) -> Sources {
        self.query[role.index()] = Some(name.into());
        self
    }

    /// Stops reading `role` from query parameters.
    pub fn without_query(mut self, role: Role) -> Sources {
        self.query[role.index()] = None;
        self
    }

    /// Reads the identifiers, the signature, the timestamp and the token from
    /// the query parameters `user_id`, `email`, `visitor_id`, `signature`,
    /// `timestamp` and `token` (signed links such as `?user_id=42&signature=…`).
    pub fn query_defaults(self) -> Sources {
        self.query(Role::UserId, "user_id")
            .query(Role::Email, "email")
            .query(Role::VisitorId, "visitor_id")
            .query(Role::Signature, "signature")
            .query(Role::Timestamp, "timestamp")
            .query(Role::Token, "token")
    }

    /// Reads `role` from a JSON body at `pointer` (RFC 6901, object keys
    /// only, e.g. `/user/id` or `/traits/identify_verification_signature`).
    /// Identifier, signature, timestamp and token fields must be JSON
    /// strings; [`Role::Metadata`] takes any JSON value, kept as raw text.
    ///
    /// # Panics
    ///
    /// When `pointer` is not of the form `/key[/key…]`, or is both a field
    /// and the parent of another field.
    pub fn json(self, role: Role, pointer: &str) -> Sources {
        match self.try_json(role, pointer) {
            Ok(sources) => sources,
            Err(e) => panic!("invalid JSON pointer {pointer:?}: {e}"),
        }
    }

    /// Like [`json`](Sources::json), but returns an error for a bad pointer
    /// instead of panicking (for configuration read at run time).
    pub fn try_json(mut self, role: Role, pointer: &str) -> Result<Sources, &'static str> {
        self.json.insert(role, pointer)?;
        Ok(self)
    }

    /// Reads `role` from the form field `name` of an
    /// `application/x-www-form-urlencoded` body.
    pub fn form(mut self, role: Role, name: impl Into<Box<str>>) -> Sources {
        self.form[role.index()] = Some(name.into());
        self
    }

    /// The body limit in bytes (default 64 KiB).
    pub fn body_limit(mut self, limit: usize) -> Sources {
        self.body_limit = limit;
        self
    }

    /// The methods whose bodies are read (default `POST`, `PUT`, `PATCH`).
    pub fn body_methods(mut self, methods: impl IntoIterator<Item = Method>) -> Sources {
        self.body_methods = methods.into_iter().collect();
        self
    }

    /// Reads bodies only of requests this predicate accepts (e.g. by path).
    pub fn body_filter(mut self, filter: impl Fn(&RequestHead<'_>) -> bool + Send + Sync + 'static) -> Sources {
        self.body_filter = Some(Arc::new(filter));
        self
    }

    /// The header `role` is read from.
    pub fn header_name(&self, role: Role) -> Option<&HeaderName> {
        self.headers[role.index()].as_ref()
    }

    /// The query parameter `role` is read from.
    pub fn query_name(&self, role: Role) -> Option<&str> {
        self.query[role.index()].as_deref()
    }

    /// Whether the token is also read from `Authorization: Bearer`.
    pub fn reads_bearer(&self) -> bool {
        self.bearer
    }

    /// The body limit in bytes.
    pub fn get_body_limit(&self) -> usize {
        self.body_limit
    }

    fn reads_query(&self) -> bool {
        self.query.iter().any(Option::is_some)
    }

    /// Which body to read for this request, if any.
    pub(crate) fn body_kind(&self, head: &RequestHead<'_>) -> Option<BodyKind> {
        let reads_json = !self.json.children.is_empty();
        let reads_form = self.form.iter().any(Option::is_some);
        if !(reads_json || reads_form) || !self.body_methods.contains(head.method) {
            return None;
        }
        let ct = head.headers.get(CONTENT_TYPE)?.to_str().ok()?;
        let essence = ct.split(';').next().unwrap_or("").trim();
        let kind = if reads_json && is_json(essence) {
            BodyKind::Json
        } else if reads_form && essence.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
            BodyKind::Form
        } else {
            return None;
        };
        if self.body_filter.as_ref().is_some_and(|f| !f(head)) {
            return None;
        }
        Some(kind)
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

/// The kind of body a request's identity is read from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BodyKind {
    Json,
    Form,
}

/// A claim as read from a request, with the first problem met while reading
/// it. The tenant is kept even when another role failed, so that the tenant's
/// mode still decides.
#[derive(Debug, Default)]
pub(crate) struct Extracted {
    pub(crate) claim: Claim,
    pub(crate) error: Option<Failure>,
    /// The tenant itself was ambiguous: no policy can be chosen.
    tenant_conflict: bool,
}

impl Extracted {
    pub(crate) fn fail(&mut self, failure: Failure) {
        if failure == Failure::Conflict(Role::Tenant) {
            self.tenant_conflict = true;
        }
        self.error.get_or_insert(failure);
    }

    pub(crate) fn put(&mut self, role: Role, value: IdStr) {
        let slot = self.claim.slot(role);
        match slot {
            Some(existing) if *existing != value => {
                *slot = None;
                self.fail(Failure::Conflict(role));
            }
            Some(_) => {}
            None => *slot = Some(value),
        }
    }

    fn tenant_failed(&self) -> bool {
        self.tenant_conflict
    }

    /// Adds the roles found in a buffered body.
    pub(crate) fn add_body(&mut self, sources: &Sources, kind: BodyKind, body: &Bytes) -> Result<(), Failure> {
        match kind {
            BodyKind::Form => self.add_form(sources, body),
            BodyKind::Json => self.add_json(sources, body),
        }
        if self.tenant_failed() { Err(Failure::Conflict(Role::Tenant)) } else { Ok(()) }
    }

    fn add_form(&mut self, sources: &Sources, body: &Bytes) {
        self.add_urlencoded(&sources.form, body);
    }

    /// Reads the roles named in `names` from `application/x-www-form-urlencoded`
    /// text (a query string or a form body). Values are decoded strictly: a
    /// percent-encoded byte sequence that is not UTF-8 is refused rather than
    /// replaced, so two different byte strings never read as one identifier.
    fn add_urlencoded(&mut self, names: &[Option<Box<str>>; ROLES], input: &[u8]) {
        let mut seen = [false; ROLES];
        for pair in input.split(|&b| b == b'&').filter(|p| !p.is_empty()) {
            let (k, v) = match pair.iter().position(|&b| b == b'=') {
                Some(i) => (&pair[..i], &pair[i + 1..]),
                None => (pair, &[][..]),
            };
            let Some(key) = decode_component(k) else { continue };
            let Some(role) = Role::ALL.into_iter().find(|r| names[r.index()].as_deref() == Some(&*key)) else {
                continue;
            };
            if std::mem::replace(&mut seen[role.index()], true) {
                self.claim.slot(role).take();
                self.fail(Failure::Conflict(role));
                continue;
            }
            match decode_component(v) {
                Some(value) => self.put(role, IdStr::from(&*value)),
                None => self.fail(Failure::Malformed(Malformed::NotUtf8)),
            }
        }
    }

    #[cfg(feature = "json")]
    fn add_json(&mut self, sources: &Sources, body: &Bytes) {
        use serde::de::DeserializeSeed;
        // An empty body (a POST with a JSON content type and nothing to say)
        // carries no identity; it is not an error.
        if body.iter().all(u8::is_ascii_whitespace) {
            return;
        }
        let mut found = json::Found::default();
        let mut de = serde_json::Deserializer::from_slice(body);
        let walked = json::Walk { node: &sources.json, found: &mut found, base: body }
            .deserialize(&mut de)
            .and_then(|()| de.end());
        if let Err(e) = walked {
            let failure = found.failure.unwrap_or(Failure::Malformed(Malformed::Body));
            tracing::debug!(error = %e, "identity: JSON body refused");
            self.fail(failure);
            return;
        }
        for (role, value) in Role::ALL.into_iter().zip(found.values) {
            if let Some(value) = value {
                self.put(role, value);
            }
        }
    }

    #[cfg(not(feature = "json"))]
    fn add_json(&mut self, _sources: &Sources, _body: &Bytes) {}
}

fn length_bit(name: &HeaderName) -> u64 {
    1 << (name.as_str().len() % 64)
}

/// The header value read for each role (and for `Authorization: Bearer`),
/// found in one pass over the request's headers.
#[derive(Default)]
struct HeaderHits<'a> {
    /// The role's value, when its header was sent exactly once.
    values: [Option<&'a HeaderValue>; ROLES],
    /// The role's header was sent more than once.
    repeated: [bool; ROLES],
    authorization: Option<&'a HeaderValue>,
    authorization_repeated: bool,
}

fn note<'a>(slot: &mut Option<&'a HeaderValue>, repeated: &mut bool, value: &'a HeaderValue) {
    if slot.replace(value).is_some() {
        *repeated = true;
    }
}

/// One pass over the headers instead of a hash lookup per configured name:
/// a request carries few headers, most of them of lengths no configured name
/// has, and hashing a custom header name costs more than comparing lengths.
///
/// The same pass flags the headers that carry a signature or a token as
/// sensitive, so that loggers that honour the flag and HTTP/2 header
/// compression leave them alone wherever the request goes next.
fn scan_headers<'a>(sources: &Sources, headers: &'a mut HeaderMap) -> HeaderHits<'a> {
    const CREDENTIALS: u8 = (1 << Role::Signature as u8) | (1 << Role::Token as u8);
    let mut hits = HeaderHits::default();
    for (name, value) in headers.iter_mut() {
        if sources.header_lengths & length_bit(name) == 0 {
            continue;
        }
        // The roles this header is configured for (one name may serve several).
        let roles = sources
            .headers
            .iter()
            .enumerate()
            .filter(|(_, configured)| configured.as_ref() == Some(name))
            .fold(0u8, |mask, (i, _)| mask | (1 << i));
        let bearer = sources.bearer && name == AUTHORIZATION;
        if bearer || roles & CREDENTIALS != 0 {
            value.set_sensitive(true);
        }
        let value: &'a HeaderValue = value;
        let mut left = roles;
        while left != 0 {
            let i = left.trailing_zeros() as usize;
            left &= left - 1;
            note(&mut hits.values[i], &mut hits.repeated[i], value);
        }
        if bearer {
            note(&mut hits.authorization, &mut hits.authorization_repeated, value);
        }
    }
    hits
}

/// Flags the credential headers sensitive without reading a claim (for
/// requests the layer lets through unverified by `bypass`).
pub(crate) fn mark_credentials(sources: &Sources, headers: &mut HeaderMap) {
    scan_headers(sources, headers);
}

/// Reads the claim from the request head. Pure: no I/O, no body.
#[cfg(test)]
pub(crate) fn extract(sources: &Sources, headers: &HeaderMap, uri: &Uri) -> Result<Extracted, Failure> {
    let mut out = Extracted::default();
    extract_headers(sources, &mut headers.clone(), &mut out)?;
    extract_query(sources, uri, &mut out).map(|()| out)
}

/// Reads the claim's header values into `out` (in place: a claim is a few
/// hundred bytes, and the hot path does not move it), flagging credential
/// headers as sensitive. `Err` when the tenant itself is ambiguous. Then
/// [`extract_query`].
pub(crate) fn extract_headers(sources: &Sources, headers: &mut HeaderMap, out: &mut Extracted) -> Result<(), Failure> {
    let hits = scan_headers(sources, headers);
    for role in Role::ALL {
        let Some(first) = hits.values[role.index()] else { continue };
        if hits.repeated[role.index()] {
            if role == Role::Tenant {
                return Err(Failure::Conflict(role));
            }
            out.fail(Failure::Conflict(role));
            continue;
        }
        match IdStr::from_header(first) {
            Some(v) => out.put(role, v),
            None if role == Role::Tenant => return Err(Failure::Malformed(Malformed::NotUtf8)),
            None => out.fail(Failure::Malformed(Malformed::NotUtf8)),
        }
    }
    if let Some(value) = hits.authorization {
        let bearer = value.as_bytes();
        if hits.authorization_repeated {
            out.fail(Failure::Conflict(Role::Token));
        } else if bearer.len() > 7 && bearer[..7].eq_ignore_ascii_case(b"bearer ") {
            match std::str::from_utf8(&bearer[7..]) {
                Ok(token) => out.put(Role::Token, IdStr::from(token.trim_start())),
                Err(_) => out.fail(Failure::Malformed(Malformed::NotUtf8)),
            }
        }
    }
    crate::protocol::extract_protocol(sources, headers, out);
    Ok(())
}

/// Reads the claim's query parameters into `out`, after [`extract_headers`].
/// `Err` when the tenant is ambiguous.
pub(crate) fn extract_query(sources: &Sources, uri: &Uri, out: &mut Extracted) -> Result<(), Failure> {
    if sources.reads_query()
        && let Some(query) = uri.query()
    {
        out.add_urlencoded(&sources.query, query.as_bytes());
    }
    if out.tenant_failed() {
        return Err(Failure::Conflict(Role::Tenant));
    }
    Ok(())
}

/// Decodes one urlencoded component: `+` is a space, `%XX` a byte, and the
/// result must be valid UTF-8.
pub(crate) fn decode_component(raw: &[u8]) -> Option<std::borrow::Cow<'_, str>> {
    use percent_encoding::percent_decode;
    if raw.contains(&b'+') {
        let spaced: Vec<u8> = raw.iter().map(|&b| if b == b'+' { b' ' } else { b }).collect();
        let decoded = percent_decode(&spaced).decode_utf8().ok()?.into_owned();
        Some(std::borrow::Cow::Owned(decoded))
    } else {
        percent_decode(raw).decode_utf8().ok()
    }
}

/// The configured JSON fields, as a tree of object keys.
#[derive(Clone, Debug, Default)]
struct JsonNode {
    children: Vec<(Box<str>, JsonChild)>,
}

#[derive(Clone, Debug)]
enum JsonChild {
    Field(Role),
    Object(JsonNode),
}

impl JsonNode {
    fn insert(&mut self, role: Role, pointer: &str) -> Result<(), &'static str> {
        let Some(rest) = pointer.strip_prefix('/') else {
            return Err("a JSON pointer starts with '/'");
        };
        let keys: Vec<String> = rest.split('/').map(|k| k.replace("~1", "/").replace("~0", "~")).collect();
        let mut node = self;
        for (i, key) in keys.iter().enumerate() {
            let last = i + 1 == keys.len();
            let pos = node.children.iter().position(|(k, _)| **k == **key);
            match (pos, last) {
                (None, true) => {
                    node.children.push((key.as_str().into(), JsonChild::Field(role)));
                    return Ok(());
                }
                (None, false) => {
                    node.children.push((key.as_str().into(), JsonChild::Object(JsonNode::default())));
                    let JsonChild::Object(next) = &mut node.children.last_mut().expect("just pushed").1 else {
                        unreachable!()
                    };
                    node = next;
                }
                (Some(p), true) => match &mut node.children[p].1 {
                    JsonChild::Field(r) => {
                        *r = role;
                        return Ok(());
                    }
                    JsonChild::Object(_) => return Err("the pointer is the parent of another field"),
                },
                (Some(p), false) => match &mut node.children[p].1 {
                    JsonChild::Object(next) => node = next,
                    JsonChild::Field(_) => return Err("the pointer goes below another field"),
                },
            }
        }
        Err("empty pointer")
    }
}

#[cfg(feature = "json")]
mod json {
    //! A single pass over a JSON body that picks out the configured fields
    //! without building a tree: strings without escapes and metadata are
    //! shared slices of the body; everything else is skipped.

    use std::fmt;

    use bytes::Bytes;
    use serde::Deserializer;
    use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
    use serde_json::value::RawValue;

    use super::{JsonChild, JsonNode, ROLES};
    use crate::identity::IdStr;
    use crate::json_key::JsonKey;
    use crate::verify::{Failure, Malformed, Role};

    #[derive(Default)]
    pub(super) struct Found {
        pub(super) values: [Option<IdStr>; ROLES],
        pub(super) failure: Option<Failure>,
    }

    pub(super) struct Walk<'a> {
        pub(super) node: &'a JsonNode,
        pub(super) found: &'a mut Found,
        pub(super) base: &'a Bytes,
    }

    impl<'de> DeserializeSeed<'de> for Walk<'_> {
        type Value = ();
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            d.deserialize_any(self)
        }
    }

    macro_rules! ignore {
        ($($name:ident($t:ty)),*) => {
            $(fn $name<E: de::Error>(self, _v: $t) -> Result<(), E> { Ok(()) })*
        };
    }

    impl<'de> Visitor<'de> for Walk<'_> {
        type Value = ();

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a JSON value")
        }

        ignore!(visit_bool(bool), visit_i64(i64), visit_u64(u64), visit_f64(f64), visit_str(&str));

        fn visit_unit<E: de::Error>(self) -> Result<(), E> {
            Ok(())
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            Ok(())
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            let mut seen = 0u64;
            while let Some(key) = map.next_key::<JsonKey<'de>>()? {
                let Some(i) = self.node.children.iter().position(|(k, _)| **k == *key) else {
                    map.next_value::<IgnoredAny>()?;
                    continue;
                };
                let bit = 1u64 << (i % 64);
                let duplicate = seen & bit != 0;
                seen |= bit;
                match &self.node.children[i].1 {
                    JsonChild::Field(role) => {
                        if duplicate {
                            self.found.failure = Some(Failure::Conflict(*role));
                            return Err(de::Error::custom("duplicate key"));
                        }
                        let value = if *role == Role::Metadata {
                            let raw: &RawValue = map.next_value()?;
                            IdStr::shared_in(self.base, raw.get())
                        } else {
                            match map.next_value::<JsonStr<'de>>()? {
                                JsonStr::Borrowed(s) => IdStr::shared_in(self.base, s),
                                JsonStr::Owned(s) => IdStr::from(s),
                                JsonStr::NotAString => {
                                    self.found.failure = Some(Failure::Malformed(Malformed::NotAString));
                                    return Err(de::Error::custom("not a string"));
                                }
                            }
                        };
                        let slot = &mut self.found.values[role.index()];
                        if slot.as_ref().is_some_and(|prev| *prev != value) {
                            self.found.failure = Some(Failure::Conflict(*role));
                            return Err(de::Error::custom("conflicting values"));
                        }
                        *slot = Some(value);
                    }
                    JsonChild::Object(node) => {
                        if duplicate {
                            self.found.failure = Some(Failure::Malformed(Malformed::Body));
                            return Err(de::Error::custom("duplicate key"));
                        }
                        map.next_value_seed(Walk { node, found: &mut *self.found, base: self.base })?;
                    }
                }
            }
            Ok(())
        }
    }

    /// A field value that must be a string.
    enum JsonStr<'de> {
        Borrowed(&'de str),
        Owned(String),
        NotAString,
    }

    impl<'de> de::Deserialize<'de> for JsonStr<'de> {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> Visitor<'de> for V {
                type Value = JsonStr<'de>;
                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("a string")
                }
                fn visit_borrowed_str<E>(self, v: &'de str) -> Result<JsonStr<'de>, E> {
                    Ok(JsonStr::Borrowed(v))
                }
                fn visit_str<E>(self, v: &str) -> Result<JsonStr<'de>, E> {
                    Ok(JsonStr::Owned(v.to_owned()))
                }
                fn visit_string<E>(self, v: String) -> Result<JsonStr<'de>, E> {
                    Ok(JsonStr::Owned(v))
                }
                fn visit_bool<E>(self, _: bool) -> Result<JsonStr<'de>, E> {
                    Ok(JsonStr::NotAString)
                }
                fn visit_i64<E>(self, _: i64) -> Result<JsonStr<'de>, E> {
                    Ok(JsonStr::NotAString)
                }
                fn visit_u64<E>(self, _: u64) -> Result<JsonStr<'de>, E> {
                    Ok(JsonStr::NotAString)
                }
                fn visit_f64<E>(self, _: f64) -> Result<JsonStr<'de>, E> {
                    Ok(JsonStr::NotAString)
                }
                fn visit_unit<E>(self) -> Result<JsonStr<'de>, E> {
                    Ok(JsonStr::NotAString)
                }
                fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<JsonStr<'de>, A::Error> {
                    while seq.next_element::<IgnoredAny>()?.is_some() {}
                    Ok(JsonStr::NotAString)
                }
                fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<JsonStr<'de>, A::Error> {
                    while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                    Ok(JsonStr::NotAString)
                }
            }
            d.deserialize_any(V)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

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
            e.add_json(&sources, &Bytes::copy_from_slice(body.as_bytes()));
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
            e.add_json(&sources, &Bytes::from_static(body.as_bytes()));
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
        e.add_form(&sources, &Bytes::from_static(b"user_id=a%2Bb&signature=x&other=1"));
        assert_eq!((e.error, e.claim.user_id.as_deref()), (None, Some("a+b")));
        let mut e = Extracted::default();
        e.add_form(&sources, &Bytes::from_static(b"user_id=a&user_id=a"));
        assert_eq!(e.error, Some(Failure::Conflict(Role::UserId)));
    }

    #[test]
    fn body_kind_by_content_type_and_method() {
        let sources = Sources::new().json(Role::UserId, "/u");
        let mut h = HeaderMap::new();
        let uri = uri("/");
        let head = |m: &'static Method, h: &HeaderMap| -> Option<BodyKind> {
            sources.body_kind(&RequestHead { method: m, uri: &uri, version: http::Version::HTTP_11, headers: h })
        };
        assert_eq!(head(&Method::POST, &h), None);
        h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json; charset=utf-8"));
        assert_eq!(head(&Method::POST, &h), Some(BodyKind::Json));
        assert_eq!(head(&Method::GET, &h), None);
        h.insert(CONTENT_TYPE, HeaderValue::from_static("application/vnd.api+json"));
        assert_eq!(head(&Method::POST, &h), Some(BodyKind::Json));
        h.insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        assert_eq!(head(&Method::POST, &h), None);
        h.insert(CONTENT_TYPE, HeaderValue::from_static("application/x-www-form-urlencoded"));
        assert_eq!(head(&Method::POST, &h), None, "no form fields configured");
    }
}
