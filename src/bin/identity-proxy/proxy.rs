//! The reverse proxy: the identity layer in front of a hyper-util client.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONNECTION, CONTENT_TYPE, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode, Uri};
use http_body::{Body, Frame, SizeHint};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tower::{Service, ServiceExt};
use tower_identity::body::{RequestBody, ResponseBody};
use tower_identity::{HotSwap, IdentityVerification, IdentityVerificationLayer, TenantMap};

use crate::config::{self, Settings, UpstreamProtocol};

pub type ProxyBody = BoxBody<Bytes, hyper::Error>;

/// Headers that describe one hop, never forwarded (RFC 9110 §7.6.1).
/// Parsed at compile time: a `&str` name would be parsed on every removal.
const HOP_BY_HOP: [HeaderName; 8] = [
    http::header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    http::header::TE,
    http::header::TRAILER,
    http::header::TRANSFER_ENCODING,
    http::header::UPGRADE,
    http::header::PROXY_AUTHORIZATION,
];

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

fn strip_hop_by_hop(headers: &mut http::HeaderMap) {
    // Most requests carry none: one pass over the names instead of eight removals.
    if !headers.keys().any(|name| HOP_BY_HOP.contains(name)) {
        return;
    }
    let listed: Vec<HeaderName> = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in listed {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
}

fn json_error(status: StatusCode, code: &str, message: &str) -> Response<ProxyBody> {
    let body = format!("{{\"error\":\"{code}\",\"message\":\"{message}\"}}");
    let mut res = Response::new(Full::new(Bytes::from(body)).map_err(|never: Infallible| match never {}).boxed());
    *res.status_mut() = status;
    res.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    res
}

fn request_timeout() -> Response<ProxyBody> {
    json_error(StatusCode::REQUEST_TIMEOUT, "request_timeout", "The request body was not received in time.")
}

/// Why a request body failed: the client's connection, or the body deadline.
#[derive(Debug)]
pub enum BodyError {
    Client(hyper::Error),
    Deadline,
}

impl std::fmt::Display for BodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BodyError::Client(error) => write!(f, "the request body failed: {error}"),
            BodyError::Deadline => f.write_str("the request body was not received in time"),
        }
    }
}

impl std::error::Error for BodyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            BodyError::Client(error) => Some(error),
            BodyError::Deadline => None,
        }
    }
}

/// Set (in the request's extensions) when the body missed its deadline, so
/// that the body error it caused is answered 408 instead of 400 or 502.
#[derive(Clone, Default)]
struct BodyTimedOut(Arc<AtomicBool>);

impl BodyTimedOut {
    fn get(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// A client's request body that fails with [`BodyError::Deadline`] when it
/// has not fully arrived by its deadline: slow bodies (one byte a second)
/// cannot hold the proxy, whether the identity layer buffers them or they
/// stream to the upstream. Only waiting for the client counts: a body whose
/// bytes are all here is handed on whatever the time.
pub struct TimedBody {
    inner: Incoming,
    deadline: Option<tokio::time::Instant>,
    /// Created the first time the client makes us wait.
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
    timed_out: BodyTimedOut,
}

impl Body for TimedBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = &mut *self;
        if this.timed_out.get() {
            return Poll::Ready(None);
        }
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(BodyError::Client)));
        }
        let Some(deadline) = this.deadline else { return Poll::Pending };
        ready!(this.sleep.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline))).as_mut().poll(cx));
        this.timed_out.0.store(true, Ordering::Relaxed);
        Poll::Ready(Some(Err(BodyError::Deadline)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Forwards requests to the upstream.
#[derive(Clone)]
pub struct Upstream {
    client: Client<HttpConnector, RequestBody<TimedBody>>,
    authority: http::uri::Authority,
    timeout: Duration,
}

impl Upstream {
    pub fn new(uri: &Uri, protocol: UpstreamProtocol, timeout: Duration) -> Upstream {
        let mut builder = Client::builder(TokioExecutor::new());
        builder.timer(TokioTimer::new()).pool_timer(TokioTimer::new());
        if protocol == UpstreamProtocol::H2c {
            builder.http2_only(true);
        }
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(timeout));
        Upstream { client: builder.build(connector), authority: uri.authority().expect("checked").clone(), timeout }
    }
}

impl Service<Request<RequestBody<TimedBody>>> for Upstream {
    type Response = Response<ProxyBody>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<ProxyBody>, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut req: Request<RequestBody<TimedBody>>) -> Self::Future {
        let timed_out = req.extensions().get::<BodyTimedOut>().cloned().unwrap_or_default();
        let carry = crate::tunnel::carried(&req);
        let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
        let uri = Uri::builder().scheme("http").authority(self.authority.clone()).path_and_query(path).build();
        let client = self.client.clone();
        let timeout = self.timeout;
        Box::pin(async move {
            let Ok(uri) = uri else {
                return Ok(json_error(StatusCode::BAD_REQUEST, "bad_request", "The request target is invalid."));
            };
            *req.uri_mut() = uri;
            *req.version_mut() = http::Version::HTTP_11;
            match tokio::time::timeout(timeout, client.request(req)).await {
                Ok(Ok(mut res)) => {
                    strip_hop_by_hop(res.headers_mut());
                    if let Some(carry) = carry {
                        carry(res.extensions_mut());
                    }
                    Ok(res.map(BodyExt::boxed))
                }
                Ok(Err(_)) if timed_out.get() => {
                    tracing::debug!("the request body was not received in time; answering 408");
                    Ok(request_timeout())
                }
                Ok(Err(error)) => {
                    tracing::warn!(%error, "upstream request failed");
                    Ok(json_error(
                        StatusCode::BAD_GATEWAY,
                        "upstream_unavailable",
                        "The upstream service is unavailable.",
                    ))
                }
                Err(_) => {
                    tracing::warn!(timeout_secs = timeout.as_secs(), "upstream timed out");
                    Ok(json_error(StatusCode::GATEWAY_TIMEOUT, "upstream_timeout", "The upstream service timed out."))
                }
            }
        })
    }
}

/// Builds the layer from the settings around `provider`.
pub fn layer(settings: &Settings, provider: impl tower_identity::SecretProvider) -> IdentityVerificationLayer {
    IdentityVerificationLayer::new(provider)
        .mode(settings.mode)
        .sources(settings.sources.clone())
        .verify_options(settings.options.clone())
        .min_secret_len(settings.min_secret_len)
        .forward_identity_headers(settings.forward.clone())
        .strip_credentials(settings.strip_credentials)
}

type Verified = IdentityVerification<Upstream>;

/// The endpoints the proxy answers itself, without verification.
struct Local {
    health_path: String,
    metrics: Option<(String, metrics_exporter_prometheus::PrometheusHandle)>,
    body_read_timeout: Option<Duration>,
    revalidator: Arc<crate::revocation::Revalidator>,
}

async fn handle(
    svc: Verified,
    local: Arc<Local>,
    peer: SocketAddr,
    mut req: Request<Incoming>,
) -> Result<Response<ResponseBody<ProxyBody>>, Infallible> {
    let path = req.uri().path();
    if path == local.health_path {
        let mut res = Response::new(ResponseBody::full(Bytes::from_static(b"{\"status\":\"ok\"}")));
        res.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        return Ok(res);
    }
    if let Some((metrics_path, handle)) = &local.metrics
        && path == metrics_path
    {
        let mut res = Response::new(ResponseBody::full(Bytes::from(handle.render())));
        res.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4"));
        return Ok(res);
    }
    let mut tracked = crate::tunnel::track(&mut req);
    // Before the layer: a client must not be able to name the forwarded
    // identity headers in `Connection` and have them removed after verification.
    strip_hop_by_hop(req.headers_mut());
    let forwarded_for = match req.headers().get(X_FORWARDED_FOR).and_then(|v| v.to_str().ok()) {
        Some(prior) => format!("{prior}, {}", peer.ip()),
        None => peer.ip().to_string(),
    };
    if let Ok(v) = HeaderValue::from_str(&forwarded_for) {
        req.headers_mut().insert(X_FORWARDED_FOR, v);
    }
    if let Some(tracked) = &mut tracked {
        tracked.prepare(&mut req);
    }
    let timed_out = BodyTimedOut::default();
    req.extensions_mut().insert(timed_out.clone());
    let deadline = local.body_read_timeout.map(|t| tokio::time::Instant::now() + t);
    let req = req.map(|inner| TimedBody { inner, deadline, sleep: None, timed_out: timed_out.clone() });
    let res = svc.oneshot(req).await?;
    // The identity layer answers a body that failed while it buffered it with
    // 400 body_unreadable; when the failure was the deadline, say so.
    if timed_out.get() && res.status() == StatusCode::BAD_REQUEST {
        tracing::debug!("the request body was not received in time; answering 408");
        return Ok(request_timeout().map(ResponseBody::inner));
    }
    Ok(match tracked {
        Some(tracked) => tracked.finish(res, &local.revalidator),
        None => res,
    })
}

/// Runs the proxy until SIGTERM or Ctrl-C, reloading keys on SIGHUP and when
/// the config or secret files change.
pub async fn run(
    settings: Settings,
    config_path: PathBuf,
    listen_override: Option<String>,
    upstream_override: Option<String>,
) -> std::io::Result<()> {
    let provider = HotSwap::new(settings.tenants.clone());
    let upstream = Upstream::new(&settings.upstream, settings.upstream_protocol, settings.upstream_timeout);
    let identity_layer = match &settings.postgres {
        None => layer(&settings, provider.clone()),
        Some(pg) => {
            let db = tower_identity::postgres::PostgresProvider::connect(&pg.url, pg.max_connections)
                .map_err(|e| std::io::Error::other(e.to_string()))?;
            let cached = db.cached(pg.cache.clone());
            if pg.listen_notify {
                tower_identity::postgres::listen_for_changes(&pg.url, cached.clone());
            }
            tracing::info!(
                ttl_secs = pg.cache.ttl.as_secs(),
                listen_notify = pg.listen_notify,
                "tenants and keys from PostgreSQL"
            );
            layer(&settings, cached)
        }
    };
    let svc = tower::Layer::layer(&identity_layer, upstream);
    let (reloaded, reloads) = tokio::sync::watch::channel(0u64);
    let revalidator =
        crate::revocation::Revalidator::new(&identity_layer, reloads, &settings.tunnels, settings.postgres.is_some());
    let metrics = match &settings.metrics_path {
        Some(path) => match metrics_exporter_prometheus::PrometheusBuilder::new().install_recorder() {
            Ok(handle) => Some((path.clone(), handle)),
            Err(error) => {
                tracing::warn!(%error, "metrics disabled: cannot install the recorder");
                None
            }
        },
        None => None,
    };
    let local = Arc::new(Local {
        health_path: settings.health_path.clone(),
        metrics,
        body_read_timeout: settings.body_read_timeout,
        revalidator,
    });

    let listener = TcpListener::bind(&settings.listen).await?;
    let addr = listener.local_addr()?;
    tracing::info!(
        %addr,
        upstream = %settings.upstream,
        mode = %settings.mode,
        tenants = settings.tenant_count,
        keys = settings.key_count,
        "identity-proxy listening on http://{addr}"
    );

    tokio::spawn(reload_loop(
        settings.watched.clone(),
        settings.reload_poll,
        config_path,
        listen_override,
        upstream_override,
        provider,
        reloaded,
    ));

    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(settings.header_read_timeout);
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown_signal());
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(conn) => conn,
                    Err(error) => {
                        tracing::warn!(%error, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let svc = svc.clone();
                let local = local.clone();
                let started = Arc::new(AtomicBool::new(false));
                let first = started.clone();
                let service = hyper::service::service_fn(move |req| {
                    first.store(true, Ordering::Relaxed);
                    handle(svc.clone(), local.clone(), peer, req)
                });
                let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service).into_owned();
                let conn = graceful.watch(conn);
                let first_request_deadline = settings.header_read_timeout;
                tokio::spawn(async move {
                    // hyper's header_read_timeout starts only once the protocol is
                    // known, and HTTP/2 has none: a client that sends nothing, or
                    // the HTTP/2 preface a byte at a time, would hold the
                    // connection forever. Its first request must start in time.
                    let mut conn = std::pin::pin!(conn);
                    let result = tokio::select! {
                        result = conn.as_mut() => result,
                        () = tokio::time::sleep(first_request_deadline) => {
                            if !started.load(Ordering::Relaxed) {
                                tracing::debug!(%peer, "no request within header_read_timeout; closing the connection");
                                return;
                            }
                            conn.await
                        }
                    };
                    if let Err(error) = result {
                        tracing::debug!(%error, "connection ended with an error");
                    }
                });
            }
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    tracing::info!(grace_secs = settings.shutdown_grace.as_secs(), "shutting down: finishing in-flight requests");
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("all connections closed"),
        () = tokio::time::sleep(settings.shutdown_grace) => tracing::warn!("grace period over; closing remaining connections"),
    }
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}

/// Reloads keys and tenants on SIGHUP and when a watched file changes. A bad
/// new configuration is refused with a log line; the old one keeps serving.
async fn reload_loop(
    mut watched: Vec<(PathBuf, Option<std::time::SystemTime>)>,
    poll: Option<Duration>,
    config_path: PathBuf,
    listen: Option<String>,
    upstream: Option<String>,
    provider: HotSwap<TenantMap>,
    reloaded: tokio::sync::watch::Sender<u64>,
) {
    #[cfg(unix)]
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    loop {
        let reason = {
            #[cfg(unix)]
            let hangup = async {
                match hup.as_mut() {
                    Some(s) => {
                        s.recv().await;
                    }
                    None => std::future::pending().await,
                }
            };
            #[cfg(not(unix))]
            let hangup = std::future::pending::<()>();
            let tick = async {
                match poll {
                    Some(p) => loop {
                        tokio::time::sleep(p).await;
                        if config::changed(&watched) {
                            break;
                        }
                    },
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = hangup => "SIGHUP",
                () = tick => "file change",
            }
        };
        match config::load(&config_path, std::env::vars(), listen.as_deref(), upstream.as_deref()) {
            Ok(new) => {
                provider.store(new.tenants);
                // Open tunnels and event streams verify their credential again.
                reloaded.send_modify(|generation| *generation += 1);
                watched = new.watched;
                tracing::info!(reason, tenants = new.tenant_count, keys = new.key_count, "reloaded keys and tenants");
            }
            Err(error) => {
                // Remember the new modification times so a broken file is not retried in a loop.
                for (path, time) in &mut watched {
                    *time = std::fs::metadata(&*path).and_then(|m| m.modified()).ok();
                }
                tracing::error!(reason, %error, "reload refused; the previous configuration keeps serving");
            }
        }
    }
}
