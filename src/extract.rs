//! Where claims are read from: headers and query parameters.

use http::{HeaderMap, HeaderName, Uri};

use crate::identity::IdStr;
use crate::verify::{Claim, Failure, Malformed, Role};

/// Where each [`Role`] is read from.
///
/// Defaults (headers only; query parameters are opt-in because URLs end up in
/// logs and browser history):
///
/// | role | header | query parameter (after [`Sources::query_defaults`]) |
/// | --- | --- | --- |
/// | tenant | none | none |
/// | user id | `x-user-id` | `user_id` |
/// | email | `x-user-email` | `email` |
/// | visitor id | `x-visitor-id` | `visitor_id` |
/// | signature | `x-identity-signature` | `signature` |
/// | timestamp | `x-identity-timestamp` | `timestamp` |
///
/// A role found twice (a repeated header or parameter, or a header and a
/// parameter that disagree) fails with [`Failure::Conflict`].
#[derive(Clone, Debug)]
pub struct Sources {
    headers: [Option<HeaderName>; 6],
    query: [Option<Box<str>>; 6],
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
            ],
            query: Default::default(),
        }
    }
}

impl Sources {
    /// The default sources (see the table above).
    pub fn new() -> Sources {
        Sources::default()
    }

    /// No sources at all; add them one by one.
    pub fn empty() -> Sources {
        Sources { headers: Default::default(), query: Default::default() }
    }

    /// Reads `role` from the header `name`.
    pub fn header(mut self, role: Role, name: HeaderName) -> Sources {
        self.headers[role.index()] = Some(name);
        self
    }

    /// Stops reading `role` from headers.
    pub fn without_header(mut self, role: Role) -> Sources {
        self.headers[role.index()] = None;
        self
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

    /// Reads the identifiers, the signature and the timestamp from the query
    /// parameters `user_id`, `email`, `visitor_id`, `signature`, `timestamp`
    /// (signed links such as `?user_id=42&signature=…`).
    pub fn query_defaults(self) -> Sources {
        self.query(Role::UserId, "user_id")
            .query(Role::Email, "email")
            .query(Role::VisitorId, "visitor_id")
            .query(Role::Signature, "signature")
            .query(Role::Timestamp, "timestamp")
    }

    /// The header `role` is read from.
    pub fn header_name(&self, role: Role) -> Option<&HeaderName> {
        self.headers[role.index()].as_ref()
    }

    /// The query parameter `role` is read from.
    pub fn query_name(&self, role: Role) -> Option<&str> {
        self.query[role.index()].as_deref()
    }

    fn reads_query(&self) -> bool {
        self.query.iter().any(Option::is_some)
    }
}

/// A claim as read from a request, with the first problem met while reading
/// it. The tenant is kept even when another role failed, so that the tenant's
/// mode still decides.
#[derive(Debug, Default)]
pub(crate) struct Extracted {
    pub(crate) claim: Claim,
    pub(crate) error: Option<Failure>,
}

impl Extracted {
    fn fail(&mut self, failure: Failure) {
        self.error.get_or_insert(failure);
    }

    fn put(&mut self, role: Role, value: IdStr) {
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
}

/// Reads the claim from the request head. Pure: no I/O, no body.
pub(crate) fn extract(sources: &Sources, headers: &HeaderMap, uri: &Uri) -> Result<Extracted, Failure> {
    let mut out = Extracted::default();
    for role in Role::ALL {
        let Some(name) = &sources.headers[role.index()] else { continue };
        let mut values = headers.get_all(name).iter();
        let Some(first) = values.next() else { continue };
        if values.next().is_some() {
            out.fail(Failure::Conflict(role));
            if role == Role::Tenant {
                return Err(Failure::Conflict(role));
            }
            continue;
        }
        match IdStr::from_header(first) {
            Some(v) => out.put(role, v),
            None if role == Role::Tenant => return Err(Failure::Malformed(Malformed::NotUtf8)),
            None => out.fail(Failure::Malformed(Malformed::NotUtf8)),
        }
    }
    if sources.reads_query()
        && let Some(query) = uri.query()
    {
        let mut seen = [false; 6];
        for (k, v) in form_urlencoded::parse(query.as_bytes()) {
            let Some(role) = Role::ALL.into_iter().find(|r| sources.query[r.index()].as_deref() == Some(&*k)) else {
                continue;
            };
            if std::mem::replace(&mut seen[role.index()], true) {
                out.claim.slot(role).take();
                out.fail(Failure::Conflict(role));
                continue;
            }
            out.put(role, IdStr::from(v.into_owned()));
        }
    }
    if matches!(out.error, Some(Failure::Conflict(Role::Tenant))) {
        return Err(Failure::Conflict(Role::Tenant));
    }
    Ok(out)
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
    fn non_utf8_header() {
        let mut h = HeaderMap::new();
        h.insert("x-user-id", HeaderValue::from_bytes(b"\xff\xfe").unwrap());
        let got = extract(&Sources::new(), &h, &uri("/")).unwrap();
        assert_eq!(got.error, Some(Failure::Malformed(Malformed::NotUtf8)));
    }
}
