//! What the proxy answers: its own health check and metrics, without
//! verification, and every other path through the identity layer to the
//! upstream.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderValue};
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tower::ServiceExt;
use tower_identity::layer::body::ResponseBody;
use tower_identity::{IdentityVerification, IdentityVerificationLayer, SecretProvider};

use crate::config::Settings;
use crate::revocation::Revalidator;
use crate::timed_body::{BodyTimedOut, TimedBody};
use crate::tunnel;
use crate::upstream::{self, ProxyBody, Upstream};

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
}

/// The paths the proxy answers itself, and the body deadline of the others.
pub struct Routes {
    health_path: String,
    metrics: Option<(String, PrometheusHandle)>,
    body_read_timeout: Option<Duration>,
    /// Watches WebSocket tunnels and event streams.
    revalidator: Arc<Revalidator>,
}

impl Routes {
    /// The routes of `settings`; installs the Prometheus recorder when
    /// metrics are served (a failure to install it disables them, logged).
    pub fn new(settings: &Settings, revalidator: Arc<Revalidator>) -> Routes {
        let metrics =
            settings.metrics_path.as_ref().and_then(|path| match PrometheusBuilder::new().install_recorder() {
                Ok(handle) => Some((path.clone(), handle)),
                Err(error) => {
                    tracing::warn!(%error, "metrics disabled: cannot install the recorder");
                    None
                }
            });
        let (health_path, body_read_timeout) = (settings.health_path.clone(), settings.body_read_timeout);
        Routes { health_path, metrics, body_read_timeout, revalidator }
    }

    /// The proxy's own answer for `path`, if it is one of its paths.
    fn local(&self, path: &str) -> Option<Response<ResponseBody<ProxyBody>>> {
        let (body, content_type) = if path == self.health_path {
            (Bytes::from_static(b"{\"status\":\"ok\"}"), "application/json")
        } else {
            let (_, handle) = self.metrics.as_ref().filter(|(metrics_path, _)| path == metrics_path)?;
            (Bytes::from(handle.render()), "text/plain; version=0.0.4")
        };
        let mut res = Response::new(ResponseBody::full(body));
        res.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
        Some(res)
    }
}

/// Answers one request from `peer`: a local path, or the proxied route.
pub async fn handle(
    svc: Verified,
    routes: Arc<Routes>,
    peer: SocketAddr,
    mut req: Request<Incoming>,
) -> Result<Response<ResponseBody<ProxyBody>>, Infallible> {
    if let Some(res) = routes.local(req.uri().path()) {
        return Ok(res);
    }
    let mut tracked = tunnel::track(&mut req);
    upstream::prepare(req.headers_mut(), peer);
    if let Some(tracked) = &mut tracked {
        tracked.prepare(&mut req);
    }
    let timed_out = BodyTimedOut::default();
    req.extensions_mut().insert(timed_out.clone());
    let req = req.map(|inner| TimedBody::new(inner, routes.body_read_timeout, timed_out.clone()));
    let res = svc.oneshot(req).await?;
    // The identity layer answers a body that failed while it buffered it with
    // 400 body_unreadable; when the failure was the deadline, say so.
    if timed_out.get() && res.status() == StatusCode::BAD_REQUEST {
        tracing::debug!("the request body was not received in time; answering 408");
        return Ok(upstream::request_timeout().map(ResponseBody::inner));
    }
    Ok(match tracked {
        Some(tracked) => tracked.finish(res, &routes.revalidator),
        None => res,
    })
}
