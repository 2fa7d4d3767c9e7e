//! Reading the claim's headers: one pass over the request's headers that
//! also flags credential headers as sensitive, and stripping them again.

use http::header::{AUTHORIZATION, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderMap, HeaderName, HeaderValue};

use super::content_type::{BodyHeaders, is_coded};
use super::{Extracted, ROLES, Sources};
use crate::claim::{IdStr, Role};
use crate::verify::{Failure, Malformed};

pub(super) fn length_bit(name: &HeaderName) -> u64 {
    1 << (name.as_str().len() % 64)
}

/// The header value read for each role (and for `Authorization: Bearer`),
/// found in one pass over the request's headers.
#[derive(Default)]
pub(super) struct HeaderHits<'a> {
    /// The role's value, when its header was sent exactly once.
    pub(super) values: [Option<&'a HeaderValue>; ROLES],
    /// The role's header was sent more than once.
    pub(super) repeated: [bool; ROLES],
    pub(super) authorization: Option<&'a HeaderValue>,
    pub(super) authorization_repeated: bool,
    /// The body's headers, noted only when the sources read a body.
    pub(super) body: BodyHits<'a>,
}

/// The body's first `Content-Type` and `Content-Length`, and whether a
/// `Content-Encoding` names a coding.
#[derive(Default)]
pub(super) struct BodyHits<'a> {
    content_type: Option<&'a HeaderValue>,
    content_length: Option<&'a HeaderValue>,
    encoded: bool,
}

impl<'a> BodyHits<'a> {
    /// Notes `value` when `name` is one of the body's headers. Not inlined:
    /// the header pass stays as lean for sources that read no body.
    #[inline(never)]
    fn note(&mut self, name: &HeaderName, value: &'a HeaderValue) {
        if name == CONTENT_TYPE {
            self.content_type.get_or_insert(value);
        } else if name == CONTENT_LENGTH {
            self.content_length.get_or_insert(value);
        } else if name == CONTENT_ENCODING {
            self.encoded |= is_coded(value);
        }
    }
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
/// compression leave them alone wherever the request goes next, and notes
/// the body's headers when the sources read a body.
pub(super) fn scan_headers<'a>(sources: &Sources, headers: &'a mut HeaderMap) -> HeaderHits<'a> {
    const CREDENTIALS: u8 = (1 << Role::Signature as u8) | (1 << Role::Token as u8);
    let mut hits = HeaderHits::default();
    let reads_body = sources.reads_body();
    for (name, value) in headers.iter_mut() {
        if sources.header_lengths & length_bit(name) == 0 {
            if reads_body {
                hits.body.note(name, value);
            }
            continue;
        }
        // The roles this header is configured for (one name may serve several).
        // Lengths first: most configured names differ from this one in length,
        // and comparing two lengths is cheaper than comparing two names.
        let len = name.as_str().len();
        let mut roles = 0u8;
        for (i, configured) in sources.headers.iter().enumerate() {
            if sources.header_len[i] == len && configured.as_ref() == Some(name) {
                roles |= 1 << i;
            }
        }
        let bearer = sources.bearer && name == AUTHORIZATION;
        if bearer || roles & CREDENTIALS != 0 {
            value.set_sensitive(true);
        }
        let value: &'a HeaderValue = value;
        if reads_body {
            hits.body.note(name, value);
        }
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

/// Reads the claim's header values into `out` (in place: a claim is a few
/// hundred bytes, and the hot path does not move it), flagging credential
/// headers as sensitive.
pub(super) fn read(sources: &Sources, headers: &mut HeaderMap, out: &mut Extracted) {
    let hits = scan_headers(sources, headers);
    if sources.reads_body() {
        let body = &hits.body;
        out.body = BodyHeaders::new(body.content_type, body.content_length, body.encoded);
    }
    for role in Role::ALL {
        let Some(first) = hits.values[role.index()] else { continue };
        if hits.repeated[role.index()] {
            out.repeated(role);
            continue;
        }
        match IdStr::from_header(first) {
            Some(v) => out.put(role, v),
            None => out.fail_role(role, Failure::Malformed(Malformed::NotUtf8)),
        }
    }
    if let Some(value) = hits.authorization {
        let bearer = value.as_bytes();
        if hits.authorization_repeated {
            out.repeated(Role::Token);
        } else if bearer.len() > 7 && bearer[..7].eq_ignore_ascii_case(b"bearer ") {
            match std::str::from_utf8(&bearer[7..]) {
                Ok(token) => out.put(Role::Token, IdStr::from(token.trim_start())),
                Err(_) => out.fail_role(Role::Token, Failure::Malformed(Malformed::NotUtf8)),
            }
        }
    }
}

/// The roles whose headers and query parameters `strip_credentials` removes:
/// the credential and the claimed identifiers. The tenant and metadata stay:
/// they prove nothing and claim nothing.
pub(super) const STRIPPED: [Role; 6] =
    [Role::Signature, Role::Timestamp, Role::Token, Role::UserId, Role::Email, Role::VisitorId];

/// Removes the headers that carry credentials and claimed identifiers: the
/// signature, timestamp and token headers, `Authorization` when it is a token
/// source, and the user id, email and visitor id headers, in every spelling
/// (`x_identity_signature`, `X.Identity.Signature`: some servers and CGI-style
/// upstreams read them as one name).
pub(crate) fn strip_claim_headers(sources: &Sources, headers: &mut HeaderMap) {
    let bearer = sources.reads_bearer().then_some(&AUTHORIZATION);
    let names = STRIPPED.map(|r| sources.header_name(r)).into_iter().chain([bearer]).flatten();
    remove_every_spelling(headers, names);
}

/// Removes every header named as one of `names` is, also when spelled with
/// `_` or `.` instead of `-` (`x_verified_user_id`, `X.Verified.User.Id`):
/// some servers and CGI-style upstreams read those as the same name, so a
/// client could slip a second copy past a proxy under another spelling.
pub(crate) fn remove_every_spelling<'a, I>(headers: &mut HeaderMap, names: I)
where
    I: Iterator<Item = &'a HeaderName> + Clone,
{
    // The names as given go without a copy of their names ...
    for name in names.clone() {
        headers.remove(name);
    }
    // ... the other spellings (sent only to slip past a proxy) are found by a
    // scan that allocates only when it finds one, and passes over a name of a
    // length none of `names` has with one bit test.
    let lengths = names.clone().fold(0, |bits, name| bits | length_bit(name));
    let other_spelling =
        |k: &HeaderName| lengths & length_bit(k) != 0 && names.clone().any(|n| same_name(k.as_str(), n.as_str()));
    let doomed: Vec<HeaderName> = headers.keys().filter(|k| other_spelling(k)).cloned().collect();
    for name in doomed {
        headers.remove(&name);
    }
}

/// Whether two header names are the same once `_` and `.` read as `-`
/// (header names are already lowercase).
fn same_name(a: &str, b: &str) -> bool {
    let norm = |c: u8| if c == b'_' || c == b'.' { b'-' } else { c };
    a.len() == b.len() && a.bytes().zip(b.bytes()).all(|(x, y)| norm(x) == norm(y))
}
