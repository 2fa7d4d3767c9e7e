//! HTTP auth checks: nginx `auth_request`, ingress-nginx `auth-url`, Traefik
//! `ForwardAuth`, Caddy `forward_auth`.
//!
//! Every request to the auth listener is a check of the original request the
//! gateway describes: its method and target come from `X-Original-Method` and
//! `X-Original-URI` (nginx) or `X-Forwarded-Method` and `X-Forwarded-Uri`
//! (Traefik, Caddy); every other header is the client's. A pass is `200` with
//! the identity as response headers for the gateway to copy upstream; a
//! rejection is the layer's 401/503 JSON; a request that does not describe
//! its original is `400`, never a pass.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{CACHE_CONTROL, HOST};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpListener;

use super::check::{Checker, Described, Verdict, bad_request, origin_form};

const X_ORIGINAL_METHOD: HeaderName = HeaderName::from_static("x-original-method");
const X_ORIGINAL_URI: HeaderName = HeaderName::from_static("x-original-uri");
const X_FORWARDED_METHOD: HeaderName = HeaderName::from_static("x-forwarded-method");
const X_FORWARDED_URI: HeaderName = HeaderName::from_static("x-forwarded-uri");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Why a check request does not describe an original request.
#[derive(Debug, PartialEq, Eq)]
pub enum BadDescription {
    /// Neither `X-Original-*` nor `X-Forwarded-*` names it.
    Missing(&'static str),
    /// Named twice with different values (a repeated header, or the two
    /// conventions disagreeing): ambiguous, so refused.
    Conflict(&'static str),
    /// Not a method, or not an origin-form target (`/path?query`).
    Invalid(&'static str),
}

impl BadDescription {
    fn message(&self) -> &'static str {
        match self {
            BadDescription::Missing("uri") => "X-Original-URI (or X-Forwarded-Uri) is missing.",
            BadDescription::Missing(_) => "X-Original-Method (or X-Forwarded-Method) is missing.",
            BadDescription::Conflict(_) => "The original request is described twice, differently.",
            BadDescription::Invalid("uri") => "The original URI is not a path with an optional query.",
            BadDescription::Invalid(_) => "The original method is invalid.",
        }
    }
}

/// The one value of the described field, from either convention.
fn described<'a>(
    headers: &'a HeaderMap,
    field: &'static str,
    names: [&HeaderName; 2],
) -> Result<&'a [u8], BadDescription> {
    let mut found: Option<&[u8]> = None;
    for value in names.into_iter().flat_map(|name| headers.get_all(name)) {
        match found {
            Some(seen) if seen != value.as_bytes() => return Err(BadDescription::Conflict(field)),
            _ => found = Some(value.as_bytes()),
        }
    }
    found.ok_or(BadDescription::Missing(field))
}

/// Reads the gateway's description of the original request; the headers
/// left are the client's.
pub fn describe(mut headers: HeaderMap) -> Result<Described, BadDescription> {
    let method = described(&headers, "method", [&X_ORIGINAL_METHOD, &X_FORWARDED_METHOD])?;
    let method = Method::from_bytes(method).map_err(|_| BadDescription::Invalid("method"))?;
    let target = described(&headers, "uri", [&X_ORIGINAL_URI, &X_FORWARDED_URI])?;
    let uri = origin_form(target).ok_or(BadDescription::Invalid("uri"))?;
    if let Some(host) = headers.remove(X_FORWARDED_HOST) {
        headers.insert(HOST, host);
    }
    for name in [X_ORIGINAL_METHOD, X_ORIGINAL_URI, X_FORWARDED_METHOD, X_FORWARDED_URI] {
        headers.remove(name);
    }
    Ok(Described { method, uri, headers })
}

/// Answers one check request.
pub async fn answer(checker: &Checker, headers: HeaderMap) -> Response<Full<Bytes>> {
    let described = match describe(headers) {
        Ok(described) => described,
        Err(bad) => {
            tracing::warn!(?bad, "auth check without a valid description of the original request; answering 400");
            return bad_request(bad.message()).map(Full::new);
        }
    };
    match checker.check(described).await {
        Verdict::Pass { set, .. } => {
            let mut res = Response::new(Full::default());
            *res.headers_mut() = set;
            // A cached pass would let a later request through unchecked.
            res.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
            res
        }
        Verdict::Reject(res) => res.map(Full::new),
    }
}

/// Serves HTTP checks (HTTP/1.1 and h2c) on `listener` for as long as the runtime runs.
pub async fn serve(listener: TcpListener, checker: Checker, header_read_timeout: Duration) {
    let checker = Arc::new(checker);
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(header_read_timeout);
    loop {
        let (stream, peer) = crate::server::accept(&listener).await;
        let checker = checker.clone();
        let service = hyper::service::service_fn(move |req: Request<Incoming>| {
            let checker = checker.clone();
            // The body is never read: a check is its headers.
            let (parts, _body) = req.into_parts();
            async move { Ok::<_, Infallible>(answer(&checker, parts.headers).await) }
        });
        let conn = builder.serve_connection(TokioIo::new(stream), service).into_owned();
        tokio::spawn(async move {
            if let Err(error) = conn.await {
                tracing::debug!(%error, %peer, "auth connection ended with an error");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(HeaderName::from_bytes(k.as_bytes()).unwrap(), HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn nginx_and_traefik_conventions() {
        let d = describe(headers(&[
            ("x-original-method", "POST"),
            ("x-original-uri", "/chat?user_id=42"),
            ("x-user-id", "42"),
        ]))
        .unwrap();
        assert_eq!((d.method, d.uri.to_string()), (Method::POST, "/chat?user_id=42".to_owned()));
        assert_eq!(d.headers.len(), 1, "only the client's headers are left: {:?}", d.headers);
        let d = describe(headers(&[
            ("x-forwarded-method", "GET"),
            ("x-forwarded-uri", "/a"),
            ("x-forwarded-host", "chat.example"),
        ]))
        .unwrap();
        assert_eq!((d.method, d.uri.to_string()), (Method::GET, "/a".to_owned()));
        assert_eq!(d.headers[HOST], "chat.example");
        // Both conventions agreeing is one description.
        let both = [("x-original-method", "GET"), ("x-forwarded-method", "GET")];
        let d = describe(headers(&[both[0], both[1], ("x-original-uri", "/b"), ("x-forwarded-uri", "/b")])).unwrap();
        assert_eq!(d.uri.to_string(), "/b");
    }

    #[test]
    fn missing_conflicting_or_invalid_descriptions_are_refused() {
        use BadDescription::*;
        let get = ("x-original-method", "GET");
        for (pairs, want) in [
            (vec![get], Missing("uri")),
            (vec![("x-original-uri", "/")], Missing("method")),
            (vec![get, ("x-original-uri", "/a"), ("x-original-uri", "/b")], Conflict("uri")),
            (vec![get, ("x-original-uri", "/a"), ("x-forwarded-uri", "/b")], Conflict("uri")),
            (vec![get, ("x-forwarded-method", "POST"), ("x-original-uri", "/")], Conflict("method")),
            (vec![get, ("x-original-uri", "")], Invalid("uri")),
            (vec![get, ("x-original-uri", "chat?x=1")], Invalid("uri")),
            (vec![get, ("x-original-uri", "http://evil.example/")], Invalid("uri")),
            (vec![get, ("x-original-uri", "/a b")], Invalid("uri")),
            (vec![("x-original-method", "G E T"), ("x-original-uri", "/")], Invalid("method")),
        ] {
            assert_eq!(describe(headers(&pairs)).err(), Some(want), "{pairs:?}");
        }
    }
}
