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
use crate::routes::{self, Routes, Verified};
use crate::upstream::Upstream;

/// What every connection shares.
struct Shared {
    svc: Verified,
    routes: Arc<Routes>,
    builder: auto::Builder<TokioExecutor>,
    header_read_timeout: Duration,
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
    let upstream_client = Upstream::new(&settings.upstream, settings.upstream_protocol, settings.upstream_timeout);
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(settings.header_read_timeout);
    let shared = Arc::new(Shared {
        svc: tower::Layer::layer(&identity_layer, upstream_client),
        routes: Arc::new(Routes::new(&settings)),
        builder,
        header_read_timeout: settings.header_read_timeout,
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
    let reloader = Reloader {
        watched: settings.watched.clone(),
        poll: settings.reload_poll,
        config_path,
        listen,
        upstream,
        provider,
    };
    tokio::spawn(reloader.run());

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
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => serve(stream, peer, shared.clone(), graceful),
                Err(error) => {
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            () = &mut shutdown => return,
        }
    }
}

/// Serves one connection in its own task, watched for the graceful shutdown.
fn serve(stream: TcpStream, peer: SocketAddr, shared: Arc<Shared>, graceful: &GracefulShutdown) {
    let _ = stream.set_nodelay(true);
    let started = Arc::new(AtomicBool::new(false));
    let first = started.clone();
    let (svc, routes) = (shared.svc.clone(), shared.routes.clone());
    let service = hyper::service::service_fn(move |req| {
        first.store(true, Ordering::Relaxed);
        routes::handle(svc.clone(), routes.clone(), peer, req)
    });
    let conn = graceful.watch(shared.builder.serve_connection(TokioIo::new(stream), service).into_owned());
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
