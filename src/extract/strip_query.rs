//! What the layer removes from a request it passes on: credential entries of
//! `Sec-WebSocket-Protocol` always (they are no protocol), and with
//! `strip_credentials` the headers and query parameters that carry the
//! credential and the claimed identifiers: the upstream reads the proven
//! identity from the forwarded headers, and a signature or token in a URL
//! ends up in access logs.

use http::uri::PathAndQuery;
use http::{Request, Uri};

use super::urlencoded::decode_component;
use super::{Sources, headers, protocol};
use crate::claim::Role;

/// Removes the credentials from `req` (see the module docs).
pub(crate) fn strip_credentials<B>(sources: &Sources, strip: bool, req: &mut Request<B>) {
    protocol::strip(sources, req.headers_mut());
    if strip {
        headers::strip_claim_headers(sources, req.headers_mut());
        strip_query(sources, req.uri_mut());
    }
}

/// The roles whose query parameters are removed (the tenant and metadata stay).
const STRIPPED: [Role; 6] = [Role::Signature, Role::Timestamp, Role::Token, Role::UserId, Role::Email, Role::VisitorId];

fn stripped(sources: &Sources, pair: &str) -> bool {
    let key = pair.split_once('=').map_or(pair, |(k, _)| k);
    let Some(key) = decode_component(key.as_bytes()) else { return false };
    STRIPPED.iter().any(|&role| sources.query_name(role) == Some(&*key))
}

/// Removes the configured credential and identifier parameters from `uri`'s
/// query, keeping every other parameter byte for byte and in order.
fn strip_query(sources: &Sources, uri: &mut Uri) {
    let Some(query) = uri.query() else { return };
    if !query.split('&').any(|pair| stripped(sources, pair)) {
        return;
    }
    let kept: Vec<&str> = query.split('&').filter(|p| !p.is_empty() && !stripped(sources, p)).collect();
    let path = uri.path();
    let rebuilt = if kept.is_empty() { path.to_owned() } else { format!("{path}?{}", kept.join("&")) };
    let mut parts = uri.clone().into_parts();
    // The kept text is a subset of a valid path and query, so it parses.
    parts.path_and_query = PathAndQuery::try_from(rebuilt).ok();
    if let Ok(new) = Uri::from_parts(parts) {
        *uri = new;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strip(uri: &str) -> String {
        let mut uri: Uri = uri.parse().unwrap();
        strip_query(&Sources::new().query_defaults().query(Role::Tenant, "app"), &mut uri);
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
