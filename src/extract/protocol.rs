//! Credentials in `Sec-WebSocket-Protocol`, for browsers: `new WebSocket(url,
//! protocols)` cannot set headers, but it can offer subprotocols.
//!
//! A credential travels as one protocol entry made of a configured prefix and
//! the value, beside the application's own protocols:
//!
//! ```text
//! Sec-WebSocket-Protocol: chat.v2, identity.token.eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiI0MiJ9.c2ln
//! ```
//!
//! With [`Sources::protocol_defaults`] the prefixes are `identity.token.`
//! (a JWT), `identity.signature.` (an HMAC signature, `<hex>` or
//! `<hex>-<unix_ts>`) and `identity.timestamp.`; identifiers go in the query
//! ([`Sources::query_defaults`]). Each prefix names its role, so an entry
//! reads one way only. The layer removes the credential entries from the
//! request it passes on (always, not only with `strip_credentials`): the
//! application negotiates among its own protocols and never sees the
//! credential there.
//!
//! A browser fails the handshake when it offered protocols and the server
//! selects none. A client whose application has no protocol of its own
//! offers the bare [`Sources::PROTOCOL_MARKER`] (`identity`) beside the credential, and the
//! server selects it (`identity-proxy` does so when its upstream selects
//! nothing).

use http::HeaderMap;
use http::header::{HeaderValue, SEC_WEBSOCKET_PROTOCOL};

use super::{Extracted, Sources};
use crate::claim::{IdStr, Role};

/// The prefixes read from `Sec-WebSocket-Protocol`, one per role.
#[derive(Clone, Debug, Default)]
pub(crate) struct ProtocolSources {
    prefixes: [Option<Box<str>>; Role::ALL.len()],
}

impl ProtocolSources {
    fn any(&self) -> bool {
        self.prefixes.iter().any(Option::is_some)
    }

    /// The role and value of one protocol entry, when it carries a credential.
    fn entry<'a>(&self, entry: &'a str) -> Option<(Role, &'a str)> {
        Role::ALL.into_iter().find_map(|role| {
            let prefix = self.prefixes[role.index()].as_deref()?;
            entry.strip_prefix(prefix).map(|value| (role, value))
        })
    }
}

impl Sources {
    /// The bare protocol a client offers beside its credential entry when its
    /// application has no protocol of its own, so that the server has one to
    /// select (browsers fail a handshake that offered protocols and got none).
    pub const PROTOCOL_MARKER: &'static str = "identity";

    /// Reads `role` from a `Sec-WebSocket-Protocol` entry `<prefix><value>`
    /// (e.g. `identity.token.` for [`Role::Token`]). Entries that match are
    /// removed from the request the layer passes on. Use prefixes that no
    /// application protocol starts with; the value must be made of HTTP
    /// token characters, as browsers refuse any other protocol name.
    pub fn protocol(mut self, role: Role, prefix: impl Into<Box<str>>) -> Sources {
        self.protocol.prefixes[role.index()] = Some(prefix.into());
        self
    }

    /// Reads the token, the signature and the timestamp from the
    /// `Sec-WebSocket-Protocol` entries `identity.token.<jwt>`,
    /// `identity.signature.<signature>` and `identity.timestamp.<unix_ts>`.
    pub fn protocol_defaults(self) -> Sources {
        self.protocol(Role::Token, "identity.token.")
            .protocol(Role::Signature, "identity.signature.")
            .protocol(Role::Timestamp, "identity.timestamp.")
    }

    /// The `Sec-WebSocket-Protocol` prefix `role` is read from.
    pub fn protocol_prefix(&self, role: Role) -> Option<&str> {
        self.protocol.prefixes[role.index()].as_deref()
    }
}

/// Every protocol entry of every `Sec-WebSocket-Protocol` line, trimmed.
/// A line that is not visible ASCII yields nothing (it cannot name a protocol).
fn entries(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all(SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|line| line.to_str().ok())
        .flat_map(|line| line.split(','))
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
}

/// Reads the configured roles from `Sec-WebSocket-Protocol` into `out`; the
/// same role offered twice is a conflict, as for any other source.
pub(super) fn read(sources: &Sources, headers: &HeaderMap, out: &mut Extracted) {
    if !sources.protocol.any() {
        return;
    }
    let mut seen = [false; Role::ALL.len()];
    for (role, value) in entries(headers).filter_map(|e| sources.protocol.entry(e)) {
        if std::mem::replace(&mut seen[role.index()], true) {
            out.repeated(role);
            continue;
        }
        out.put(role, IdStr::from(value));
    }
}

/// Removes the credential entries from `Sec-WebSocket-Protocol`, keeping the
/// application's protocols in their order (and dropping the header when none
/// is left).
pub(super) fn strip(sources: &Sources, headers: &mut HeaderMap) {
    if !sources.protocol.any() || !entries(headers).any(|e| sources.protocol.entry(e).is_some()) {
        return;
    }
    let kept: Vec<&str> = entries(headers).filter(|e| sources.protocol.entry(e).is_none()).collect();
    let kept = (!kept.is_empty()).then(|| HeaderValue::from_str(&kept.join(", ")));
    headers.remove(SEC_WEBSOCKET_PROTOCOL);
    // The entries were visible ASCII, so joining them cannot fail.
    if let Some(Ok(value)) = kept {
        headers.insert(SEC_WEBSOCKET_PROTOCOL, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::Failure;

    fn headers(lines: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for line in lines {
            h.append(SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_str(line).unwrap());
        }
        h
    }

    #[test]
    fn reads_each_prefix_as_its_role() {
        let sources = Sources::empty().protocol_defaults();
        let mut out = Extracted::default();
        read(&sources, &headers(&["chat, identity.token.a.b.c", "identity.signature.ab-12"]), &mut out);
        assert_eq!(out.error, None);
        assert_eq!(out.claim.token.as_deref(), Some("a.b.c"));
        assert_eq!(out.claim.signature.as_deref(), Some("ab-12"));
    }

    #[test]
    fn a_role_offered_twice_conflicts() {
        let sources = Sources::empty().protocol_defaults();
        let mut out = Extracted::default();
        read(&sources, &headers(&["identity.token.x, identity.token.x"]), &mut out);
        assert_eq!(out.error, Some(Failure::Conflict(Role::Token)));
        assert_eq!(out.claim.token, None);
    }

    #[test]
    fn unconfigured_reads_nothing() {
        let mut out = Extracted::default();
        read(&Sources::new(), &headers(&["identity.token.x"]), &mut out);
        assert_eq!(out.claim.token, None);
    }

    #[test]
    fn strip_keeps_only_application_protocols() {
        let sources = Sources::empty().protocol_defaults();
        let mut h = headers(&["chat.v2, identity.token.x", "identity, identity.signature.y"]);
        strip(&sources, &mut h);
        assert_eq!(h.get_all(SEC_WEBSOCKET_PROTOCOL).iter().collect::<Vec<_>>(), ["chat.v2, identity"]);
        let mut only = headers(&["identity.token.x"]);
        strip(&sources, &mut only);
        assert!(only.get(SEC_WEBSOCKET_PROTOCOL).is_none());
        let mut untouched = headers(&["chat"]);
        strip(&sources, &mut untouched);
        assert_eq!(untouched[SEC_WEBSOCKET_PROTOCOL], "chat");
    }
}
