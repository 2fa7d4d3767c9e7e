//! What the proxy answers on the client-facing listener: its own health
//! check (and metrics, when configured there), without verification, and
//! every other path through the identity layer to the upstream.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use metrics_exporter_prometheus::PrometheusHandle;
use tower::{Service, ServiceExt};
use tower_identity::layer::ForwardHeaders;
use tower_identity::layer::body::ResponseBody;
use tower_identity::{IdentityVerification, IdentityVerificationLayer, SecretProvider};

use crate::admin::text;
use crate::config::Settings;
use crate::live::Live;
use crate::revocation::Revalidator;
use crate::timed_body::TimedBody;
use crate::tunnel;
use crate::upstream::{self, ForwardedFor, ProxyBody, Upstream};

/// The identity layer in front of the upstream.
pub type Verified = IdentityVerification<Upstream>;

/// Builds the identity layer from the settings around `provider`.
pub fn layer(settings: &Settings, provider: impl SecretProvider) -> IdentityVerificationLayer {
    IdentityVerificationLayer::new(provider)
        .mode(settings.mode)
        .sources(settings.sources.clone())
        .verify_options(settings.options.clone())
        .min_secret_len(settings.min_secret_len)
        .forward_identity_headers(settings.forward.clone())
        .strip_credentials(settings.strip_credentials)
        .max_buffered_body_bytes(settings.max_buffered_body_bytes)
}

/// The paths the proxy answers itself, and what every proxied request needs.
pub struct Routes {
    health_path: String,
    metrics: Option<(String, PrometheusHandle)>,
    body_read_timeout: Option<Duration>,
    /// Removed from the request's trailers too, under any spelling.
    forward: Arc<ForwardHeaders>,
}

impl Routes {
    /// The routes of `settings`; `metrics` is the process's recorder, served
    /// here only with `metrics_on_public_listener`.
    pub fn new(settings: &Settings, metrics: Option<PrometheusHandle>) -> Routes {
        let metrics = settings.metrics_path.clone().zip(metrics).filter(|_| settings.admin.metrics_on_public_listener);
        Routes {
            health_path: settings.health_path.clone(),
            metrics,
            body_read_timeout: settings.body_read_timeout,
            forward: Arc::new(settings.forward.clone()),
        }
    }

    /// The proxy's own answer for `path`, if it is one of its paths.
    fn local(&self, path: &str) -> Option<Response<ResponseBody<ProxyBody>>> {
        if path == self.health_path {
            return Some(text(StatusCode::OK, "application/json", Bytes::from_static(b"{\"status\":\"ok\"}")));
        }
        let (_, handle) = self.metrics.as_ref().filter(|(metrics_path, _)| path == metrics_path)?;
        Some(text(StatusCode::OK, "text/plain; version=0.0.4", Bytes::from(handle.render())))
    }
}

/// Answers one request from the client `peer` with the configuration
/// `live`, CORS around it: a local path, or the proxied route (WebSocket
/// upgrades and event streams watched by `revalidator`).
pub async fn handle(
    live: Arc<Live>,
    revalidator: Arc<Revalidator>,
    peer: ForwardedFor,
    req: Request<Incoming>,
) -> Result<Response<ResponseBody<ProxyBody>>, Infallible> {
    crate::cors::around(live.cors.as_deref(), req, |req| route(&live, &revalidator, &peer, req)).await
}

async fn route(
    live: &Live,
    revalidator: &Arc<Revalidator>,
    peer: &ForwardedFor,
    mut req: Request<Incoming>,
) -> Result<Response<ResponseBody<ProxyBody>>, Infallible> {
    let routes = &live.routes;
    if let Some(res) = routes.local(req.uri().path()) {
        return Ok(res);
    }
    let Some(mut svc) = live.svc.clone() else {
        // A reload removed the upstream; only a restart stops this listener.
        let res = upstream::json_error(StatusCode::BAD_GATEWAY, "no_upstream", "no upstream is configured");
        return Ok(res.map(ResponseBody::inner));
    };
    // hyper decodes `chunked` and would leave any other coding (`gzip,
    // chunked`) applied to a body forwarded without its header.
    if upstream::unsupported_transfer_coding(req.headers()) {
        return Ok(upstream::not_implemented().map(ResponseBody::inner));
    }
    let mut tracked = tunnel::track(&mut req);
    upstream::prepare(req.headers_mut(), peer);
    if let Some(tracked) = &mut tracked {
        tracked.prepare(&mut req);
    }
    let (parts, body) = req.into_parts();
    let (body, timed_out) = TimedBody::new(body, routes.body_read_timeout, &routes.forward);
    let mut req = Request::from_parts(parts, body);
    if let Some(timed_out) = &timed_out {
        req.extensions_mut().insert(timed_out.clone());
    }
    let res = svc.ready().await?.call(req).await?;
    // The identity layer answers a body that failed while it buffered it with
    // 400 body_unreadable; when the failure was the deadline, say so.
    if timed_out.is_some_and(|t| t.get()) && res.status() == StatusCode::BAD_REQUEST {
        tracing::debug!("the request body was not received in time; answering 408");
        return Ok(upstream::request_timeout().map(ResponseBody::inner));
    }
    Ok(match tracked {
        Some(tracked) => tracked.finish(res, revalidator),
        None => res,
    })
}
