//! The server: the client-facing listener, the admin listener and the auth
//! listeners, one task per connection under its deadlines
//! ([`crate::connection`]), and a graceful shutdown on SIGTERM or Ctrl-C.

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
use crate::revocation::Revalidator;
use crate::routes;
use crate::upstream::ForwardedFor;

/// What a listener answers.
#[derive(Clone)]
enum Site {
    /// Clients: the proxied routes of the current configuration, with CORS
    /// around them; `Revalidator` watches their tunnels and event streams.
    Public(Current, Arc<Revalidator>),
    /// Operators: metrics and readiness.
    Admin(Arc<AdminRoutes>),
}

/// Runs the proxy until SIGTERM or Ctrl-C, reloading the configuration (from
/// `origin`, as `settings` was read) on SIGHUP and when the config or secret
/// files change. Without an upstream only the auth listeners (and the admin
/// listener) run.
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
        tokio::spawn(accept_until(listener, site, current.clone(), stop.clone()));
    }
    if let Some(authz) = &settings.authz {
        crate::authz::start(authz, current.clone(), settings.header_read_timeout).await?;
    }
    // Each reload is announced on `reloaded`, so open tunnels verify again.
    let (reloaded, reloads) = watch::channel(0u64);
    let revalidator = Revalidator::new(current.clone(), reloads, &settings.tunnels, settings.postgres.is_some());
    let public = match &settings.upstream {
        Some(_) => Some(TcpListener::bind(&settings.listen).await?),
        None => None,
    };
    let grace = settings.shutdown_grace;
    let announce = Announce::of(&settings);
    let swap = Swap { provider, current: current.clone(), metrics, reloaded };
    tokio::spawn(Reloader::new(settings, origin, swap).run());
    if let Some(listener) = public {
        announce.log(listener.local_addr()?);
        tokio::spawn(accept_until(listener, Site::Public(current.clone(), revalidator), current, stop));
    }

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

/// What the proxy says once it listens.
struct Announce {
    upstream: String,
    mode: String,
    tenants: usize,
    keys: usize,
}

impl Announce {
    fn of(settings: &Settings) -> Announce {
        Announce {
            upstream: settings.upstream.as_ref().map(ToString::to_string).unwrap_or_default(),
            mode: settings.mode.to_string(),
            tenants: settings.tenant_count,
            keys: settings.key_count,
        }
    }

    fn log(&self, addr: SocketAddr) {
        let Announce { upstream, mode, tenants, keys } = self;
        tracing::info!(%addr, %upstream, %mode, tenants, keys, "identity-proxy listening on http://{addr}");
    }
}

/// Accepts connections for `site` until the shutdown (`stop`), then closes the listener.
async fn accept_until(listener: TcpListener, site: Site, current: Current, mut stop: watch::Receiver<()>) {
    loop {
        tokio::select! {
            (stream, peer) = accept(&listener) => serve(stream, peer, site.clone(), &current, stop.clone()),
            _ = stop.changed() => return,
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

/// Serves one connection in its own task (upgrades allowed, for WebSocket
/// tunnels), with the connection settings of the configuration current
/// when it was accepted.
fn serve(stream: TcpStream, peer: SocketAddr, site: Site, current: &Current, stop: watch::Receiver<()>) {
    let live = current.load_full();
    let activity = Activity::new();
    let requests = activity.clone();
    let peer = ForwardedFor::new(peer);
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let in_flight = requests.begin(req.version() == http::Version::HTTP_2);
        let site = site.clone();
        let peer = peer.clone();
        async move {
            let res = match site {
                Site::Public(current, revalidator) => {
                    routes::handle(current.load_full(), revalidator, peer, req).await?
                }
                Site::Admin(admin) => admin.answer(req.uri().path()).await,
            };
            // The request is in flight until its response body is done.
            Ok::<_, std::convert::Infallible>(res.map(|body| Tracked::new(body, in_flight)))
        }
    });
    let conn = live.builder.serve_connection_with_upgrades(TokioIo::new(stream), service).into_owned();
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
