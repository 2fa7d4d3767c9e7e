//! `[cors]`: the proxy serves browser widgets on other origins.
//!
//! With the section present the proxy owns CORS: it answers preflights from
//! allowed origins itself (they carry no credential, so they are never
//! verified and never forwarded), adds `Access-Control-Allow-Origin`,
//! `Vary: Origin` and `Access-Control-Expose-Headers` to every answer to an
//! allowed origin (its own 401/408/413/415/502/503/504 and the upstream's),
//! and removes every `Access-Control-*` header the upstream sent, so a
//! browser never sees two `Access-Control-Allow-Origin`. A tenant named in
//! the URL (`sources.query.tenant`) may carry its own `allowed_origins`,
//! which replaces the global list for its requests.

use std::borrow::Cow;
use std::collections::HashMap;
use std::convert::Infallible;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{
    ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS, ACCESS_CONTROL_ALLOW_ORIGIN,
    ACCESS_CONTROL_EXPOSE_HEADERS, ACCESS_CONTROL_MAX_AGE, HeaderName, HeaderValue, ORIGIN, VARY,
};
use http::{HeaderMap, Request, Response, StatusCode};
use serde::Deserialize;
use tower_identity::layer::body::ResponseBody;
use tower_identity::{Role, Sources, cors};

use crate::config::ConfigError;

/// The `[cors]` section.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CorsSection {
    /// Exact origins (`https://shop.example`), or `"*"` for any.
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    /// How long a browser may cache a preflight answer (default 600).
    pub max_age_secs: Option<u64>,
}

/// The methods a widget may use.
const ALLOW_METHODS: HeaderValue = HeaderValue::from_static("GET, HEAD, POST, PUT, PATCH, DELETE");
const VARY_ORIGIN: HeaderValue = HeaderValue::from_static("origin");

/// Which origins may call.
#[derive(Debug, Clone)]
enum Origins {
    Any,
    List(Vec<HeaderValue>),
}

impl Origins {
    fn parse(file: &Path, key: &str, list: &[String]) -> Result<Origins, ConfigError> {
        if list.iter().any(|o| o == "*") {
            return Ok(Origins::Any);
        }
        list.iter().map(|o| origin(file, key, o)).collect::<Result<_, _>>().map(Origins::List)
    }

    fn allows(&self, origin: &HeaderValue) -> bool {
        match self {
            Origins::Any => true,
            Origins::List(list) => list.contains(origin),
        }
    }
}

/// An origin as browsers send it: `scheme://host[:port]`, lowercase, no path.
fn origin(file: &Path, key: &str, text: &str) -> Result<HeaderValue, ConfigError> {
    let bad = || crate::config::err(file, key, format!("{text:?} is not an origin such as https://shop.example"));
    let lower = text.to_ascii_lowercase();
    let uri: http::Uri = lower.parse().map_err(|_| bad())?;
    let scheme_ok = matches!(uri.scheme_str(), Some("http" | "https"));
    // `http::Uri` reads no path as "/": the text itself must not end with one.
    let bare = uri.path() == "/" && uri.query().is_none() && !lower.ends_with('/');
    if !scheme_ok || uri.authority().is_none() || !bare {
        return Err(bad());
    }
    HeaderValue::from_str(&lower).map_err(|_| bad())
}

/// A `[[tenants]]` entry's id and `allowed_origins`, in file order.
pub type TenantOrigins<'a> = (Option<&'a str>, Option<&'a [String]>);

/// The checked `[cors]` settings.
#[derive(Debug)]
pub struct Cors {
    global: Origins,
    /// Per tenant (named in the URL by `tenant_param`).
    tenants: HashMap<String, Origins>,
    tenant_param: Option<Box<str>>,
    allow_headers: HeaderValue,
    /// What a widget needs to read on a rejection ([`cors::EXPOSE_HEADERS`]).
    expose_headers: HeaderValue,
    max_age: HeaderValue,
}

/// `names` as one comma-separated header value.
fn list(names: &[HeaderName]) -> HeaderValue {
    let names: Vec<&str> = names.iter().map(HeaderName::as_str).collect();
    HeaderValue::from_str(&names.join(", ")).expect("header names are valid values")
}

impl Cors {
    /// Builds the settings, or `None` without a `[cors]` section.
    pub fn build(
        file: &Path,
        section: Option<&CorsSection>,
        tenants: &[TenantOrigins<'_>],
        sources: &Sources,
    ) -> Result<Option<Arc<Cors>>, ConfigError> {
        let per_tenant = tenants.iter().enumerate().filter_map(|(i, &(id, list))| Some((i, id, list?)));
        let Some(section) = section else {
            return match per_tenant.map(|(i, ..)| i).next() {
                Some(i) => {
                    Err(crate::config::err(file, format!("tenants[{i}].allowed_origins"), "needs a [cors] section"))
                }
                None => Ok(None),
            };
        };
        let tenant_param = sources.query_name(Role::Tenant).map(Box::from);
        let mut by_tenant = HashMap::new();
        for (i, id, list) in per_tenant {
            let key = format!("tenants[{i}].allowed_origins");
            let (Some(id), true) = (id, tenant_param.is_some()) else {
                let problem = "applies only to a tenant with an id named in the URL (set sources.query.tenant)";
                return Err(crate::config::err(file, key, problem));
            };
            by_tenant.insert(id.to_owned(), Origins::parse(file, &key, list)?);
        }
        Ok(Some(Arc::new(Cors {
            global: Origins::parse(file, "cors.allowed_origins", &section.allowed_origins)?,
            tenants: by_tenant,
            tenant_param,
            allow_headers: list(&sources.cors_allow_headers()),
            expose_headers: list(&cors::EXPOSE_HEADERS),
            max_age: HeaderValue::from(section.max_age_secs.unwrap_or(600)),
        })))
    }

    /// The request's `Origin` when it is allowed to call.
    fn allowed<B>(&self, req: &Request<B>) -> Option<HeaderValue> {
        let origin = req.headers().get(ORIGIN)?;
        let origins = match self.tenant_in(req.uri()) {
            Ok(Some(tenant)) => self.tenants.get(tenant.as_ref()).unwrap_or(&self.global),
            Ok(None) => &self.global,
            // A tenant named twice, or not in UTF-8: no list applies (the
            // layer refuses it too).
            Err(()) => return None,
        };
        origins.allows(origin).then(|| origin.clone())
    }

    /// The tenant the query names, decoded as the identity layer decodes it;
    /// `Err` when it names two, or one that is not UTF-8.
    fn tenant_in<'a>(&self, uri: &'a http::Uri) -> Result<Option<Cow<'a, str>>, ()> {
        let (Some(param), Some(query)) = (self.tenant_param.as_deref(), uri.query()) else { return Ok(None) };
        let mut found = None;
        for pair in query.split('&') {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            // A name that is not UTF-8 is no parameter the layer reads.
            if decode(name).as_deref() != Some(param) {
                continue;
            }
            let value = decode(value).ok_or(())?;
            if found.as_ref().is_some_and(|f| *f != value) {
                return Err(());
            }
            found = Some(value);
        }
        Ok(found)
    }

    /// The proxy's answer to a preflight: 204, with the `Access-Control-Allow-*`
    /// headers only for an allowed origin.
    fn preflight<B>(&self, origin: Option<HeaderValue>) -> Response<ResponseBody<B>> {
        let mut res = Response::new(ResponseBody::full(Bytes::new()));
        *res.status_mut() = StatusCode::NO_CONTENT;
        let headers = res.headers_mut();
        headers.append(VARY, VARY_ORIGIN);
        if let Some(origin) = origin {
            headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, origin);
            headers.insert(ACCESS_CONTROL_ALLOW_METHODS, ALLOW_METHODS);
            headers.insert(ACCESS_CONTROL_ALLOW_HEADERS, self.allow_headers.clone());
            headers.insert(ACCESS_CONTROL_MAX_AGE, self.max_age.clone());
        }
        res
    }
}

/// One `application/x-www-form-urlencoded` component (`+` is a space),
/// decoded strictly as the identity layer decodes it: `None` when the bytes
/// are not UTF-8, so that no two byte strings read as one tenant.
fn decode(text: &str) -> Option<Cow<'_, str>> {
    if text.contains('+') {
        let spaced = text.replace('+', " ");
        return percent_encoding::percent_decode_str(&spaced).decode_utf8().ok().map(|d| Cow::Owned(d.into_owned()));
    }
    percent_encoding::percent_decode_str(text).decode_utf8().ok()
}

/// Replaces the upstream's `Access-Control-*` headers with the proxy's own
/// (`expose`, and `origin` when it is allowed).
fn decorate(headers: &mut HeaderMap, origin: Option<HeaderValue>, expose: &HeaderValue) {
    let theirs = |name: &HeaderName| name.as_str().starts_with("access-control-");
    // Most upstreams send none: one pass over the names, no allocation.
    if headers.keys().any(theirs) {
        let names: Vec<HeaderName> = headers.keys().filter(|name| theirs(name)).cloned().collect();
        for name in names {
            headers.remove(name);
        }
    }
    headers.append(VARY, VARY_ORIGIN);
    if let Some(origin) = origin {
        headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        headers.insert(ACCESS_CONTROL_EXPOSE_HEADERS, expose.clone());
    }
}

/// Runs `next` for the request, with CORS around it: preflights answered
/// here, every other answer decorated. Requests without `Origin` (servers,
/// curl) pass untouched, and so does everything without `[cors]`.
pub async fn around<B, R, F, Fut>(
    cors: Option<&Cors>,
    req: Request<B>,
    next: F,
) -> Result<Response<ResponseBody<R>>, Infallible>
where
    F: FnOnce(Request<B>) -> Fut,
    Fut: Future<Output = Result<Response<ResponseBody<R>>, Infallible>>,
{
    let Some(cors) = cors.filter(|_| req.headers().contains_key(ORIGIN)) else { return next(req).await };
    let origin = cors.allowed(&req);
    if tower_identity::cors::is_preflight(req.method(), req.headers()) {
        tracing::debug!(allowed = origin.is_some(), "answered a CORS preflight");
        return Ok(cors.preflight(origin));
    }
    let mut res = next(req).await?;
    decorate(res.headers_mut(), origin, &cors.expose_headers);
    Ok(res)
}
