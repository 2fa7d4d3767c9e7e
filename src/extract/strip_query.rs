//! What the layer removes from a request it passes on: credential entries of
//! `Sec-WebSocket-Protocol` always (they are no protocol), and with
//! `strip_credentials` the headers and query parameters that carry the
//! credential and the claimed identifiers: the upstream reads the proven
//! identity from the forwarded headers, and a signature or token in a URL
//! ends up in access logs.

use http::Request;

use super::{Sources, headers, protocol, urlencoded};

/// Removes the credentials from `req` (see the module docs).
pub(crate) fn strip_credentials<B>(sources: &Sources, strip: bool, req: &mut Request<B>) {
    protocol::strip(sources, req.headers_mut());
    if strip {
        headers::strip_claim_headers(sources, req.headers_mut());
        urlencoded::strip_query(sources, req.uri_mut());
    }
}

#[cfg(test)]
mod tests {
    use http::Uri;

    use super::*;
    use crate::claim::Role;

    fn strip(uri: &str) -> String {
        let mut uri: Uri = uri.parse().unwrap();
        urlencoded::strip_query(&Sources::new().query_defaults().query(Role::Tenant, "app"), &mut uri);
        uri.to_string()
    }

    #[test]
    fn removes_credentials_and_identifiers_only() {
        assert_eq!(strip("/ws?app=a&user_id=42&signature=ab&x=%20y"), "/ws?app=a&x=%20y");
        assert_eq!(strip("/ws?token=a.b.c"), "/ws");
        assert_eq!(strip("http://h:1/ws?sig%6Eature=ab&q"), "http://h:1/ws?q");
        assert_eq!(strip("/ws?q=1&r"), "/ws?q=1&r");
        assert_eq!(strip("/ws"), "/ws");
    }
}
