//! The server: the client-facing listener and the admin listener, one task
//! per connection under its deadlines ([`crate::connection`]),
//! and a graceful shutdown on SIGTERM or Ctrl-C.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use http::Request;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::admin::{self, AdminRoutes};
use crate::config::Settings;
use crate::connection::{self, Activity, Tracked};
use crate::live::{Current, Live, Provider, Swap};
use crate::reload::{Origin, Reloader};
use crate::routes;

/// What a listener answers.
#[derive(Clone)]
enum Site {
    /// Clients: the proxied routes of the current configuration.
    Public(Current),
    /// Operators: metrics and readiness.
    Admin(Arc<AdminRoutes>),
}

/// Runs the proxy until SIGTERM or Ctrl-C, reloading the configuration (from
/// `origin`, as `settings` was read) on SIGHUP and when the config or secret
/// files change.
pub async fn run(settings: Settings, origin: Origin) -> std::io::Result<()> {
    let metrics = admin::recorder(&settings);
    let provider = Provider::new(&settings)?;
    let current: Current = Arc::new(ArcSwap::from_pointee(Live::new(&settings, &provider, metrics.clone())));
    let draining = Arc::new(AtomicBool::new(false));
    let (shutdown, stop) = watch::channel(());
    if let Some(addr) = &settings.admin.listen {
        let listener = TcpListener::bind(addr).await?;
        tracing::info!(addr = %listener.local_addr()?, "admin endpoints on http://{}", listener.local_addr()?);
        let routes = AdminRoutes::new(&settings, metrics.clone(), provider.clone(), draining.clone());
        let site = Site::Admin(Arc::new(routes));
        tokio::spawn(accept(listener, site, current.clone(), stop.clone()));
    }
    let listener = TcpListener::bind(&settings.listen).await?;
    let addr = listener.local_addr()?;
    let (grace, tenants, keys) = (settings.shutdown_grace, settings.tenant_count, settings.key_count);
    let (up, mode) = (settings.upstream.clone(), settings.mode);
    let swap = Swap { provider, current: current.clone(), metrics };
    let reloader = Reloader::new(settings, origin, swap);
    tokio::spawn(reloader.run());
    tracing::info!(%addr, upstream = %up, %mode, tenants, keys, "identity-proxy listening on http://{addr}");
    tokio::spawn(accept(listener, Site::Public(current.clone()), current, stop));

    shutdown_signal().await;
    draining.store(true, Ordering::Relaxed);
    tracing::info!(grace_secs = grace.as_secs(), "shutting down: finishing in-flight requests");
    shutdown.send_replace(());
    tokio::select! {
        () = shutdown.closed() => tracing::info!("all connections closed"),
        () = tokio::time::sleep(grace) => tracing::warn!("grace period over; closing remaining connections"),
    }
    Ok(())
}

/// Accepts connections for `site` until the shutdown (`stop`), then closes the listener.
async fn accept(listener: TcpListener, site: Site, current: Current, mut stop: watch::Receiver<()>) {
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => serve(stream, peer, site.clone(), &current, stop.clone()),
                Err(error) => {
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = stop.changed() => return,
        }
    }
}

/// Serves one connection in its own task, with the connection settings of
/// the configuration current when it was accepted.
fn serve(stream: TcpStream, peer: SocketAddr, site: Site, current: &Current, stop: watch::Receiver<()>) {
    let _ = stream.set_nodelay(true);
    let live = current.load_full();
    let activity = Activity::new();
    let requests = activity.clone();
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let in_flight = requests.begin();
        let site = site.clone();
        async move {
            let res = match site {
                Site::Public(current) => routes::handle(current.load_full(), peer, req).await?,
                Site::Admin(admin) => admin.answer(req.uri().path()).await,
            };
            // The request is in flight until its response body is done.
            Ok::<_, std::convert::Infallible>(res.map(|body| Tracked::new(body, in_flight)))
        }
    });
    let conn = live.builder.serve_connection(TokioIo::new(stream), service).into_owned();
    tokio::spawn(connection::drive(conn, activity, live.deadlines, stop));
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
