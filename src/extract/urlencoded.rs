//! Reading roles from `application/x-www-form-urlencoded` text: the query
//! string and form bodies.

use std::borrow::Cow;

use http::Uri;

use super::headers::STRIPPED;
use super::{Extracted, ROLES, Sources};
use crate::claim::{IdStr, Role};
use crate::verify::{Failure, Malformed};

/// Reads the claim's query parameters into `out`.
pub(super) fn read_query(sources: &Sources, uri: &Uri, out: &mut Extracted) {
    if sources.reads_query()
        && let Some(query) = uri.query()
    {
        read(&sources.query, query.as_bytes(), out);
    }
}

/// Reads the roles named in `names` from urlencoded text (a query string or a
/// form body). Values are decoded strictly: a percent-encoded byte sequence
/// that is not UTF-8 is refused rather than replaced, so two different byte
/// strings never read as one identifier.
pub(super) fn read(names: &[Option<Box<str>>; ROLES], input: &[u8], out: &mut Extracted) {
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
            out.repeated(role);
            continue;
        }
        match decode_component(v) {
            Some(value) => out.put(role, IdStr::from(&*value)),
            None => out.fail_role(role, Failure::Malformed(Malformed::NotUtf8)),
        }
    }
}

/// Removes the query parameters of the stripped roles (credential and claimed
/// identifiers) from `uri`, keeping every other parameter byte for byte and in
/// order. A URI without one is left as is, without allocating.
pub(super) fn strip_query(sources: &Sources, uri: &mut Uri) {
    let Some(query) = uri.query().filter(|_| sources.reads_query()) else { return };
    let stripped = |pair: &&str| {
        let key = pair.split_once('=').map_or(*pair, |(k, _)| k);
        decode_component(key.as_bytes())
            .is_some_and(|key| STRIPPED.iter().any(|r| sources.query[r.index()].as_deref() == Some(&*key)))
    };
    if !query.split('&').any(|pair| stripped(&pair)) {
        return;
    }
    let kept: Vec<&str> = query.split('&').filter(|pair| !stripped(pair)).collect();
    let path = uri.path();
    let rebuilt = if kept.is_empty() { path.to_owned() } else { format!("{path}?{}", kept.join("&")) };
    let mut parts = std::mem::take(uri).into_parts();
    // Kept pairs are slices of a valid query, so this parses; should it not,
    // the URI loses its path and query rather than keep a credential.
    parts.path_and_query = rebuilt.parse().ok();
    *uri = Uri::from_parts(parts).unwrap_or_default();
}

/// Decodes one urlencoded component: `+` is a space, `%XX` a byte, and the
/// result must be valid UTF-8.
pub(super) fn decode_component(raw: &[u8]) -> Option<Cow<'_, str>> {
    use percent_encoding::percent_decode;
    if raw.contains(&b'+') {
        let spaced: Vec<u8> = raw.iter().map(|&b| if b == b'+' { b' ' } else { b }).collect();
        let decoded = percent_decode(&spaced).decode_utf8().ok()?.into_owned();
        Some(Cow::Owned(decoded))
    } else {
        percent_decode(raw).decode_utf8().ok()
    }
}
