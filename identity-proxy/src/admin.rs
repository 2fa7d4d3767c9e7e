//! The admin listener (`admin_listen`): Prometheus metrics, which name every
//! tenant, key and traffic count, and the readiness check, kept off the
//! client-facing port. Liveness (`health_path`) is answered on both.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderValue};
use http::{Response, StatusCode};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tower_identity::layer::body::ResponseBody;

use crate::config::Settings;
use crate::live::Provider;
use crate::upstream::ProxyBody;

/// Upper bounds of the `identity_verification_seconds` buckets: a
/// verification takes from a hundred nanoseconds (an HMAC with a static key)
/// to milliseconds (a slow provider), so the buckets span 100 ns – 10 ms.
const VERIFICATION_BUCKETS: [f64; 16] =
    [1e-7, 2.5e-7, 5e-7, 1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2];

/// How long the readiness check waits for the provider.
const READY_TIMEOUT: Duration = Duration::from_secs(2);

/// Installs the process's Prometheus recorder when metrics are served
/// somewhere (a failure disables them, logged).
pub fn recorder(settings: &Settings) -> Option<PrometheusHandle> {
    settings.metrics_path.as_ref()?;
    if settings.admin.listen.is_none() && !settings.admin.metrics_on_public_listener {
        tracing::info!("metrics are not served: set admin_listen (or metrics_on_public_listener = true)");
        return None;
    }
    let builder = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Full("identity_verification_seconds".into()), &VERIFICATION_BUCKETS);
    match builder.and_then(PrometheusBuilder::install_recorder) {
        Ok(handle) => Some(handle),
        Err(error) => {
            tracing::warn!(%error, "metrics disabled: cannot install the recorder");
            None
        }
    }
}

/// What the admin listener answers.
pub struct AdminRoutes {
    health_path: String,
    ready_path: String,
    metrics: Option<(String, PrometheusHandle)>,
    provider: Provider,
    /// Set on SIGTERM: not ready, so that load balancers stop sending.
    draining: Arc<AtomicBool>,
}

impl AdminRoutes {
    pub fn new(
        settings: &Settings,
        metrics: Option<PrometheusHandle>,
        provider: Provider,
        draining: Arc<AtomicBool>,
    ) -> Self {
        AdminRoutes {
            health_path: settings.health_path.clone(),
            ready_path: settings.admin.ready_path.clone(),
            metrics: settings.metrics_path.clone().zip(metrics),
            provider,
            draining,
        }
    }

    /// The answer for `path`: liveness, readiness, metrics, or 404.
    pub async fn answer(self: Arc<Self>, path: &str) -> Response<ResponseBody<ProxyBody>> {
        if path == self.health_path {
            return text(StatusCode::OK, "application/json", Bytes::from_static(b"{\"status\":\"ok\"}"));
        }
        if path == self.ready_path {
            return self.readiness().await;
        }
        match &self.metrics {
            Some((metrics_path, handle)) if path == metrics_path => {
                text(StatusCode::OK, "text/plain; version=0.0.4", Bytes::from(handle.render()))
            }
            _ => text(StatusCode::NOT_FOUND, "application/json", Bytes::from_static(b"{\"error\":\"not_found\"}")),
        }
    }

    /// 200 when the provider answers and the proxy is not shutting down; 503
    /// otherwise. (The configuration is checked before the proxy listens and
    /// a refused reload keeps the previous one serving, so a listening proxy
    /// always has one that can serve.)
    async fn readiness(&self) -> Response<ResponseBody<ProxyBody>> {
        if !self.draining.load(Ordering::Relaxed) && self.provider.ready(READY_TIMEOUT).await {
            return text(StatusCode::OK, "application/json", Bytes::from_static(b"{\"status\":\"ready\"}"));
        }
        let body = Bytes::from_static(b"{\"status\":\"unavailable\"}");
        let mut res = text(StatusCode::SERVICE_UNAVAILABLE, "application/json", body);
        res.headers_mut().insert(http::header::RETRY_AFTER, HeaderValue::from_static("5"));
        res
    }
}

/// A small answer of the proxy's own.
pub fn text(status: StatusCode, content_type: &'static str, body: Bytes) -> Response<ResponseBody<ProxyBody>> {
    let mut res = Response::new(ResponseBody::full(body));
    *res.status_mut() = status;
    res.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    res
}
