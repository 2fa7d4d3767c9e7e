//! The server: the listener, one task per connection with its deadlines, and
//! a graceful shutdown on SIGTERM or Ctrl-C.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, TcpStream};
use tower_identity::provider::HotSwap;

use crate::config::Settings;
use crate::reload::{self, Reloader};
use crate::revocation::Revalidator;
use crate::routes::{self, Routes, Verified};
use crate::upstream::Upstream;

/// What every connection shares.
struct Shared {
    svc: Verified,
    routes: Arc<Routes>,
    builder: auto::Builder<TokioExecutor>,
    header_read_timeout: Duration,
    cors: Option<Arc<crate::cors::Cors>>,
}

/// Runs the proxy until SIGTERM or Ctrl-C, reloading keys on SIGHUP and when
/// the config or secret files change. `listen` and `upstream` are the command
/// line's overrides, applied again by every reload.
pub async fn run(
    settings: Settings,
    config_path: PathBuf,
    listen: Option<String>,
    upstream: Option<String>,
) -> std::io::Result<()> {
    let provider = HotSwap::new(settings.tenants.clone());
    let identity_layer = reload::identity_layer(&settings, provider.clone())?;
    // Each reload is announced on `reloaded`, so open tunnels verify again.
    let (reloaded, reloads) = tokio::sync::watch::channel(0u64);
    let reloader = Reloader {
        watched: settings.watched.clone(),
        poll: settings.reload_poll,
        config_path,
        listen,
        upstream,
        provider,
        reloaded,
    };
    tokio::spawn(reloader.run());
    if let Some(authz) = &settings.authz {
        crate::authz::start(authz, &identity_layer, settings.forward.clone(), settings.header_read_timeout).await?;
    }
    let Some(upstream) = &settings.upstream else {
        // Only the auth listeners run.
        shutdown_signal().await;
        return Ok(());
    };
    let upstream_client = Upstream::new(upstream, settings.upstream_protocol, settings.upstream_timeout);
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(settings.header_read_timeout);
    let periodic = settings.postgres.is_some();
    let revalidator = Revalidator::new(&identity_layer, reloads, &settings.tunnels, periodic);
    let shared = Arc::new(Shared {
        svc: tower::Layer::layer(&identity_layer, upstream_client),
        routes: Arc::new(Routes::new(&settings, revalidator)),
        builder,
        header_read_timeout: settings.header_read_timeout,
        cors: settings.cors.clone(),
    });

    let listener = TcpListener::bind(&settings.listen).await?;
    let addr = listener.local_addr()?;
    tracing::info!(
        %addr,
        %upstream,
        mode = %settings.mode,
        tenants = settings.tenant_count,
        keys = settings.key_count,
        "identity-proxy listening on http://{addr}"
    );
    let graceful = GracefulShutdown::new();
    accept_until_shutdown(listener, &shared, &graceful).await;
    tracing::info!(grace_secs = settings.shutdown_grace.as_secs(), "shutting down: finishing in-flight requests");
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("all connections closed"),
        () = tokio::time::sleep(settings.shutdown_grace) => tracing::warn!("grace period over; closing remaining connections"),
    }
    Ok(())
}

/// Accepts connections until the shutdown signal, then closes the listener.
async fn accept_until_shutdown(listener: TcpListener, shared: &Arc<Shared>, graceful: &GracefulShutdown) {
    let mut shutdown = std::pin::pin!(shutdown_signal());
    loop {
        tokio::select! {
            (stream, peer) = accept(&listener) => serve(stream, peer, shared.clone(), graceful),
            () = &mut shutdown => return,
        }
    }
}

/// The next connection, with `TCP_NODELAY` set. A failed accept (out of
/// file descriptors, say) is logged and retried after a pause instead of
/// ending the listener.
pub async fn accept(listener: &TcpListener) -> (TcpStream, SocketAddr) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let _ = stream.set_nodelay(true);
                return (stream, peer);
            }
            Err(error) => {
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Serves one connection in its own task, watched for the graceful shutdown.
fn serve(stream: TcpStream, peer: SocketAddr, shared: Arc<Shared>, graceful: &GracefulShutdown) {
    let started = Arc::new(AtomicBool::new(false));
    let first = started.clone();
    let (svc, routes, cors) = (shared.svc.clone(), shared.routes.clone(), shared.cors.clone());
    let service = hyper::service::service_fn(move |req| {
        first.store(true, Ordering::Relaxed);
        let (svc, routes, cors) = (svc.clone(), routes.clone(), cors.clone());
        async move { crate::cors::around(cors.as_deref(), req, |req| routes::handle(svc, routes, peer, req)).await }
    });
    let conn =
        graceful.watch(shared.builder.serve_connection_with_upgrades(TokioIo::new(stream), service).into_owned());
    let first_request_deadline = shared.header_read_timeout;
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

/// SIGTERM or Ctrl-C.
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
