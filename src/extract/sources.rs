//! [`Sources`]: where each role is read from. The one list of the request
//! headers, query parameters and body fields the layer reads (the headers it
//! forwards are [`ForwardHeaders`](crate::layer::ForwardHeaders)).

use std::fmt;
use std::sync::Arc;

use http::header::AUTHORIZATION;
use http::{HeaderName, Method};

use super::ROLES;
use super::content_type::{BodyHeaders, BodyKind};
use super::head::{RequestHead, RequestPredicate as BodyFilter};
use super::headers::length_bit;
use super::json::JsonNode;
use crate::claim::Role;

/// Default body limit: 64 KiB.
pub const DEFAULT_BODY_LIMIT: usize = 64 * 1024;

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
/// [`Failure::Conflict`](crate::verify::Failure::Conflict).
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
/// // A body such as {"user_id": "...", "user_hash": "...", "user_metadata": {...}}
/// let sources = Sources::new()
///     .json(Role::UserId, "/user_id")
///     .json(Role::Signature, "/user_hash")
///     .json(Role::Metadata, "/user_metadata")
///     .body_filter(|req| req.uri.path().starts_with("/chat"));
/// # let _ = sources;
/// ```
#[derive(Clone)]
pub struct Sources {
    pub(super) headers: [Option<HeaderName>; ROLES],
    /// Bit `len % 64` is set for the length of every header name read (the
    /// configured ones, and `authorization` with `bearer`): a request header
    /// whose length is not in it is skipped without a comparison.
    pub(super) header_lengths: u64,
    /// The length of each role's header name (0: none), compared before the names.
    pub(super) header_len: [usize; ROLES],
    pub(super) query: [Option<Box<str>>; ROLES],
    pub(super) protocol: super::protocol::ProtocolSources,
    pub(super) bearer: bool,
    pub(super) json: JsonNode,
    pub(super) form: [Option<Box<str>>; ROLES],
    /// Whether `json` or `form` names a field (kept with them: the header
    /// pass asks on every request).
    reads_body: bool,
    pub(super) body_limit: usize,
    pub(super) body_methods: Vec<Method>,
    pub(super) body_filter: Option<BodyFilter>,
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
            header_len: [0; ROLES],
            query: Default::default(),
            protocol: Default::default(),
            bearer: false,
            json: JsonNode::default(),
            form: Default::default(),
            reads_body: false,
            body_limit: DEFAULT_BODY_LIMIT,
            body_methods: vec![Method::POST, Method::PUT, Method::PATCH],
            body_filter: None,
        }
    }

    /// Reads `role` from the header `name`.
    #[must_use]
    pub fn header(mut self, role: Role, name: HeaderName) -> Sources {
        self.headers[role.index()] = Some(name);
        self.index_headers()
    }

    /// Stops reading `role` from headers.
    #[must_use]
    pub fn without_header(mut self, role: Role) -> Sources {
        self.headers[role.index()] = None;
        self.index_headers()
    }

    fn index_headers(mut self) -> Sources {
        let bearer = self.bearer.then_some(&AUTHORIZATION);
        self.header_len = self.headers.each_ref().map(|name| name.as_ref().map_or(0, |n| n.as_str().len()));
        self.header_lengths = self.headers.iter().flatten().chain(bearer).fold(0, |mask, name| mask | length_bit(name));
        self
    }

    /// Also reads the token from `Authorization: Bearer <token>`. Off by
    /// default, so that an application's own bearer tokens are never mistaken
    /// for identity tokens.
    #[must_use]
    pub fn bearer(mut self) -> Sources {
        self.bearer = true;
        self.index_headers()
    }

    /// Reads `role` from the query parameter `name`.
    #[must_use]
    pub fn query(mut self, role: Role, name: impl Into<Box<str>>) -> Sources {
        self.query[role.index()] = Some(name.into());
        self
    }

    /// Stops reading `role` from query parameters.
    #[must_use]
    pub fn without_query(mut self, role: Role) -> Sources {
        self.query[role.index()] = None;
        self
    }

    /// Reads the identifiers, the signature, the timestamp and the token from
    /// the query parameters `user_id`, `email`, `visitor_id`, `signature`,
    /// `timestamp` and `token` (signed links such as `?user_id=42&signature=…`).
    #[must_use]
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
    #[must_use]
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
        self.reads_body = true;
        Ok(self)
    }

    /// Reads `role` from the form field `name` of an
    /// `application/x-www-form-urlencoded` body.
    #[must_use]
    pub fn form(mut self, role: Role, name: impl Into<Box<str>>) -> Sources {
        self.form[role.index()] = Some(name.into());
        self.reads_body = true;
        self
    }

    /// The body limit in bytes (default 64 KiB).
    #[must_use]
    pub fn body_limit(mut self, limit: usize) -> Sources {
        self.body_limit = limit;
        self
    }

    /// The methods whose bodies are read (default `POST`, `PUT`, `PATCH`).
    #[must_use]
    pub fn body_methods(mut self, methods: impl IntoIterator<Item = Method>) -> Sources {
        self.body_methods = methods.into_iter().collect();
        self
    }

    /// Reads bodies only of requests this predicate accepts (e.g. by path).
    #[must_use]
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

    pub(super) fn reads_query(&self) -> bool {
        self.query.iter().any(Option::is_some)
    }

    /// Whether any source is a body field (JSON or form).
    pub(crate) fn reads_body(&self) -> bool {
        self.reads_body
    }

    /// Which body to read for this request, if any, given what its headers
    /// say about it ([`Extracted::body`](super::Extracted::body)).
    pub(crate) fn body_kind(&self, head: &RequestHead<'_>, body: &BodyHeaders) -> Option<BodyKind> {
        let reads_json = !self.json.is_empty();
        let reads_form = self.form.iter().any(Option::is_some);
        if !(reads_json || reads_form) || !self.body_methods.contains(head.method) {
            return None;
        }
        let kind = match body.kind? {
            BodyKind::Json if reads_json => BodyKind::Json,
            BodyKind::Form if reads_form => BodyKind::Form,
            _ => return None,
        };
        if self.body_filter.as_ref().is_some_and(|f| !f(head)) {
            return None;
        }
        Some(kind)
    }
}
