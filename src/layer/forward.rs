//! Forwarding the verified identity as headers (proxy use), after stripping
//! every client-sent copy of those headers.

use http::{HeaderMap, HeaderName, HeaderValue};

use crate::claim::IdStr;
use crate::extract::remove_every_spelling;
use crate::identity::{IdentityOutcome, VerifiedIdentity};
use crate::key::Identifier;

/// The headers a proxy adds for its upstream.
///
/// Before adding them, the layer deletes every client-sent header whose name
/// matches one of them, also when spelled with `_` or `.` instead of `-`
/// (`x_verified_user_id`, `X.Verified.User.Id`), in every mode: an upstream
/// can trust these headers exactly as far as it trusts the proxy.
///
/// | header (default) | value |
/// | --- | --- |
/// | `x-verified-user-id` | the proven user id |
/// | `x-verified-email` | the proven email |
/// | `x-verified-visitor-id` | the proven visitor id |
/// | `x-verified-tenant` | the tenant whose keys verified the request |
/// | `x-verified-key-id` | the id of the key that matched |
/// | `x-identity-outcome` | `verified`, `anonymous` or `unverified` |
///
/// ```
/// use http::HeaderName;
/// use tower_identity::layer::ForwardHeaders;
///
/// let headers = ForwardHeaders::default().tenant(HeaderName::from_static("x-verified-app"));
/// assert_eq!(headers.get_tenant(), "x-verified-app");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ForwardHeaders {
    user_id: HeaderName,
    email: HeaderName,
    visitor_id: HeaderName,
    tenant: HeaderName,
    key_id: HeaderName,
    outcome: HeaderName,
}

macro_rules! names {
    ($($field:ident, $get:ident: $what:literal;)*) => {
        impl ForwardHeaders {
            $(
                #[doc = concat!("Sets the header for ", $what, ".")]
                #[must_use]
                pub fn $field(mut self, name: HeaderName) -> Self {
                    self.$field = name;
                    self
                }

                #[doc = concat!("The header for ", $what, ".")]
                pub fn $get(&self) -> &HeaderName {
                    &self.$field
                }
            )*
        }
    };
}

names! {
    user_id, get_user_id: "the proven user id";
    email, get_email: "the proven email";
    visitor_id, get_visitor_id: "the proven visitor id";
    tenant, get_tenant: "the tenant";
    key_id, get_key_id: "the matching key's id";
    outcome, get_outcome: "the outcome";
}

impl Default for ForwardHeaders {
    fn default() -> Self {
        ForwardHeaders {
            user_id: HeaderName::from_static("x-verified-user-id"),
            email: HeaderName::from_static("x-verified-email"),
            visitor_id: HeaderName::from_static("x-verified-visitor-id"),
            tenant: HeaderName::from_static("x-verified-tenant"),
            key_id: HeaderName::from_static("x-verified-key-id"),
            outcome: HeaderName::from_static("x-identity-outcome"),
        }
    }
}

impl ForwardHeaders {
    /// Every header name this list forwards.
    pub fn names(&self) -> [&HeaderName; 6] {
        [&self.user_id, &self.email, &self.visitor_id, &self.tenant, &self.key_id, &self.outcome]
    }

    /// Removes every header that is one of ours under any spelling (`_` and
    /// `.` read as `-`). The layer calls it on the request's headers; a proxy
    /// calls it on the request's trailers too, which reach the upstream
    /// without passing the layer.
    pub fn strip(&self, headers: &mut HeaderMap) {
        remove_every_spelling(headers, self.names().into_iter());
    }

    /// Strips, then adds the headers for this outcome.
    pub(crate) fn apply(&self, headers: &mut HeaderMap, outcome: IdentityOutcome, identity: Option<&VerifiedIdentity>) {
        self.strip(headers);
        let label = match outcome {
            IdentityOutcome::Verified => const { HeaderValue::from_static("verified") },
            IdentityOutcome::Anonymous => const { HeaderValue::from_static("anonymous") },
            IdentityOutcome::Unverified(_) => const { HeaderValue::from_static("unverified") },
        };
        debug_assert_eq!(label, outcome.as_str());
        headers.insert(self.outcome.clone(), label);
        let Some(id) = identity else { return };
        let mut put = |name: &HeaderName, value: Option<&IdStr>| {
            // Identifiers were checked to hold no control characters, so every
            // value is a valid header value; anything else is dropped, never
            // forwarded half-way.
            if let Some(v) = value.and_then(IdStr::to_header_value) {
                headers.insert(name.clone(), v);
            }
        };
        put(&self.user_id, id.proven_str(Identifier::UserId));
        put(&self.email, id.proven_str(Identifier::Email));
        put(&self.visitor_id, id.proven_str(Identifier::VisitorId));
        put(&self.tenant, id.tenant.as_ref());
        if let Some(key_id) = id.key_id.as_deref().and_then(|k| HeaderValue::from_str(k).ok()) {
            headers.insert(self.key_id.clone(), key_id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_every_spelling() {
        let f = ForwardHeaders::default();
        let mut h = HeaderMap::new();
        for name in [
            "x-verified-user-id",
            "x_verified_user_id",
            "x.verified.user.id",
            "x-verified_user.id",
            "x-identity-outcome",
        ] {
            h.append(HeaderName::from_bytes(name.as_bytes()).unwrap(), HeaderValue::from_static("spoof"));
        }
        h.append("x-verified-user-id", HeaderValue::from_static("spoof2"));
        h.insert("x-user-id", HeaderValue::from_static("keep"));
        f.apply(&mut h, IdentityOutcome::Anonymous, None);
        assert_eq!(h.len(), 2, "{h:?}");
        assert_eq!(h["x-user-id"], "keep");
        assert_eq!(h["x-identity-outcome"], "anonymous");
    }
}

/// Headers that describe one connection and are never forwarded by a proxy
/// (RFC 9110 §7.6.1), besides those the `Connection` header names. Parsed at
/// compile time: a `&str` name would be parsed again on every removal.
const HOP_BY_HOP: [HeaderName; 9] = [
    http::header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    http::header::PROXY_AUTHENTICATE,
    http::header::PROXY_AUTHORIZATION,
    http::header::TE,
    http::header::TRAILER,
    http::header::TRANSFER_ENCODING,
    http::header::UPGRADE,
];

/// Removes the hop-by-hop headers (RFC 9110 §7.6.1): `Connection`,
/// `Keep-Alive`, `Proxy-Connection`, `Proxy-Authenticate`,
/// `Proxy-Authorization`, `TE`, `Trailer`, `Transfer-Encoding`, `Upgrade`, and
/// every header the `Connection` header names.
///
/// A proxy calls it on the request before the identity layer runs, so that a
/// client cannot name the forwarded identity headers in `Connection` and have
/// them removed after verification, and on the upstream's response.
pub fn remove_hop_by_hop(headers: &mut HeaderMap) {
    // Most messages carry none: one pass over the names instead of nine removals.
    if !headers.keys().any(|name| HOP_BY_HOP.contains(name)) {
        return;
    }
    let listed: Vec<HeaderName> = headers
        .get_all(http::header::CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in listed {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
}

#[cfg(test)]
mod hop_by_hop_tests {
    use http::{HeaderMap, HeaderValue};

    use super::remove_hop_by_hop;

    #[test]
    fn removes_the_listed_and_the_connection_named_headers() {
        let mut h = HeaderMap::new();
        for name in [
            "keep-alive",
            "proxy-connection",
            "proxy-authenticate",
            "proxy-authorization",
            "te",
            "trailer",
            "transfer-encoding",
            "upgrade",
            "x-hop",
            "x-other-hop",
            "x-keep",
        ] {
            h.insert(http::HeaderName::from_static(name), HeaderValue::from_static("v"));
        }
        h.append("connection", HeaderValue::from_static("X-Hop , keep-alive"));
        h.append("connection", HeaderValue::from_static("x-other-hop"));
        remove_hop_by_hop(&mut h);
        assert_eq!(h.keys().collect::<Vec<_>>(), ["x-keep"], "{h:?}");

        // Without any hop-by-hop header, nothing is touched.
        let mut h = HeaderMap::new();
        h.insert("x-hop", HeaderValue::from_static("v"));
        remove_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
    }
}
