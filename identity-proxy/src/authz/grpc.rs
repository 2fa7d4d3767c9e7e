//! Envoy `ext_authz` v3 over gRPC: `envoy.service.auth.v3.Authorization/Check`.
//!
//! The API types and the tonic service come from `envoy-types`, whose code is
//! generated ahead of time (no `protoc` at build time) and which follows
//! tonic's releases. A pass is an `OkHttpResponse` that sets the identity
//! headers upstream and removes every other client-sent spelling of them; a
//! rejection is a `DeniedHttpResponse` carrying the layer's own status,
//! headers and JSON body (401, or 503 when the secret provider fails: fail
//! closed, as Envoy's own default).

use bytes::Bytes;
use envoy_types::ext_authz::v3::pb::{
    Authorization, AuthorizationServer, CheckRequest, CheckResponse, DeniedHttpResponse, HeaderAppendAction,
    HeaderValue as EnvoyHeader, HeaderValueOption, HttpResponse, HttpStatus, OkHttpResponse,
};
use envoy_types::pb::envoy::service::auth::v3::attribute_context::HttpRequest;
use envoy_types::pb::google::rpc;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Response, StatusCode};
use tokio::net::TcpListener;
use tonic::Code;
use tonic::transport::server::TcpIncoming;

use super::check::{Checker, Described, Verdict, bad_request, origin_form};

/// The `Authorization` service.
pub struct ExtAuthz {
    checker: Checker,
}

#[tonic::async_trait]
impl Authorization for ExtAuthz {
    async fn check(
        &self,
        request: tonic::Request<CheckRequest>,
    ) -> Result<tonic::Response<CheckResponse>, tonic::Status> {
        let http = request.get_ref().attributes.as_ref().and_then(|a| a.request.as_ref()).and_then(|r| r.http.as_ref());
        let Some(described) = http.and_then(describe) else {
            tracing::warn!("ext_authz check without a valid description of the original request; denying 400");
            return Ok(tonic::Response::new(invalid()));
        };
        let answer = match self.checker.check(described).await {
            Verdict::Pass { set, removed } => pass(&set, &removed),
            Verdict::Reject(res) => denied(res),
        };
        Ok(tonic::Response::new(answer))
    }
}

/// The original request from Envoy's attributes: method, target (path with
/// query) and headers (lower-case names; pseudo-headers skipped). Anything
/// the `http` crate cannot hold is refused rather than skipped: a skipped
/// header could be a spoofed identity header that then reaches the upstream.
pub fn describe(http: &HttpRequest) -> Option<Described> {
    let method = Method::from_bytes(http.method.as_bytes()).ok()?;
    let uri = origin_form(http.path.as_bytes())?;
    let mut headers = HeaderMap::new();
    let mut put = |name: &str, value: &[u8]| -> Option<()> {
        if !name.starts_with(':') {
            headers.append(HeaderName::from_bytes(name.as_bytes()).ok()?, HeaderValue::from_bytes(value).ok()?);
        }
        Some(())
    };
    for (name, value) in &http.headers {
        put(name, value.as_bytes())?;
    }
    // With `encode_raw_headers`, Envoy sends `header_map` instead, one entry per field line.
    for h in http.header_map.iter().flat_map(|m| &m.headers) {
        put(&h.key, if h.raw_value.is_empty() { h.value.as_bytes() } else { &h.raw_value })?;
    }
    Some(Described { method, uri, headers })
}

fn status(code: Code, message: &str) -> Option<rpc::Status> {
    Some(rpc::Status { code: code.into(), message: message.to_owned(), details: Vec::new() })
}

/// `OK`: set the identity headers (replacing any client copy of the same
/// name) and remove the rest of what the layer stripped.
fn pass(set: &HeaderMap, removed: &[HeaderName]) -> CheckResponse {
    let headers = set
        .iter()
        .map(|(name, value)| HeaderValueOption {
            header: Some(envoy_header(name, value)),
            append_action: HeaderAppendAction::OverwriteIfExistsOrAdd.into(),
            ..HeaderValueOption::default()
        })
        .collect();
    let headers_to_remove = removed.iter().map(|n| n.as_str().to_owned()).collect();
    let ok = OkHttpResponse { headers, headers_to_remove, ..OkHttpResponse::default() };
    CheckResponse {
        status: status(Code::Ok, ""),
        http_response: Some(HttpResponse::OkResponse(ok)),
        ..CheckResponse::default()
    }
}

/// A denial carrying the layer's rejection as the client's response.
fn denied(res: Response<Bytes>) -> CheckResponse {
    let code = match res.status() {
        StatusCode::UNAUTHORIZED => Code::Unauthenticated,
        StatusCode::SERVICE_UNAVAILABLE => Code::Unavailable,
        StatusCode::BAD_REQUEST => Code::InvalidArgument,
        _ => Code::PermissionDenied,
    };
    let headers = res
        .headers()
        .iter()
        .map(|(name, value)| HeaderValueOption { header: Some(envoy_header(name, value)), ..Default::default() })
        .collect();
    let denied = DeniedHttpResponse {
        status: Some(HttpStatus { code: i32::from(res.status().as_u16()) }),
        headers,
        body: String::from_utf8_lossy(res.body()).into_owned(),
    };
    CheckResponse {
        status: status(code, "identity rejected"),
        http_response: Some(HttpResponse::DeniedResponse(denied)),
        ..CheckResponse::default()
    }
}

/// A check that does not describe an HTTP request: 400, never a pass.
fn invalid() -> CheckResponse {
    denied(bad_request("The check does not describe an HTTP request."))
}

/// Envoy's header value: UTF-8 text in `value`, anything else in `raw_value`.
fn envoy_header(name: &HeaderName, value: &HeaderValue) -> EnvoyHeader {
    let key = name.as_str().to_owned();
    match value.to_str() {
        Ok(text) => EnvoyHeader { key, value: text.to_owned(), raw_value: Vec::new() },
        Err(_) => EnvoyHeader { key, value: String::new(), raw_value: value.as_bytes().to_vec() },
    }
}

/// Serves `ext_authz` checks on `listener` for as long as the runtime runs.
pub async fn serve(listener: TcpListener, checker: Checker) -> Result<(), tonic::transport::Error> {
    tonic::transport::Server::builder()
        .add_service(AuthorizationServer::new(ExtAuthz { checker }))
        .serve_with_incoming(TcpIncoming::from(listener).with_nodelay(Some(true)))
        .await
}
