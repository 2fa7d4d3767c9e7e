//! The servers `benches/e2e.sh` puts under load: an axum "hello" service,
//! bare or behind `IdentityVerificationLayer`, and a plain reverse proxy (the
//! reference for the crate's `identity-proxy` binary).
//!
//! ```text
//! e2e_server bare  <port>                      # GET / answers "hello"
//! e2e_server layer <port>                      # the same, with the layer (header HMAC over x-user-id)
//! e2e_server head-only <port>                  # the same, with the layer's head-only form
//! e2e_server plain-proxy <port> <upstream_port> # a hyper-util reverse proxy to 127.0.0.1:<upstream_port>
//! e2e_server signature                         # prints the x-identity-signature value for USER
//! e2e_server user                              # prints USER
//! e2e_server secret                            # prints SECRET (for the identity-proxy's configuration)
//! ```
//!
//! The plain proxy does what any HTTP/1.1 reverse proxy has to, and nothing
//! more: a hyper HTTP/1.1 server whose handler strips the hop-by-hop headers,
//! appends the peer to `x-forwarded-for`, points the URI at the upstream and
//! sends the request with a pooled hyper-util legacy `Client` (HTTP/1.1,
//! `TCP_NODELAY`), streaming the upstream's response back (hop-by-hop
//! headers stripped). No identity verification, no timeouts, no metrics.
//!
//! It is a `harness = false` bench target so that it builds with the bench
//! profile; run without a mode (as `cargo bench` does, passing `--bench`) it
//! prints its usage and exits at once. Listens on 127.0.0.1 only, on a
//! multi-thread tokio runtime with one worker.

use std::net::SocketAddr;

use axum::Router;
use axum::routing::get;
use http::header::{CONNECTION, HeaderName, HeaderValue};
use http::uri::Authority;
use http::{Request, Response, Uri};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tower_identity::{Identifier, IdentityVerificationLayer, Key, KeySet, Secret, sign};

const SECRET: &str = "e2e-secret-0123456789abcdef";
const USER: &str = "user-42";

fn secret() -> Secret {
    Secret::text(SECRET).expect("valid secret")
}

async fn hello() -> &'static str {
    "hello"
}

/// Which layer, if any, the hello service runs behind.
#[derive(Clone, Copy)]
enum Guard {
    Bare,
    /// `IdentityVerificationLayer` as built.
    Layer,
    /// The same configuration, `head_only()`: axum's body types kept.
    HeadOnly,
}

fn app(guard: Guard) -> Router {
    let app = Router::new().route("/", get(hello));
    let layer = IdentityVerificationLayer::new(KeySet::single(Key::hmac(Identifier::UserId, secret())));
    match guard {
        Guard::Bare => app,
        Guard::Layer => app.route_layer(layer),
        Guard::HeadOnly => app.route_layer(layer.head_only().expect("header sources only")),
    }
}

fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()
}

fn serve(guard: Guard, port: u16) -> std::io::Result<()> {
    let rt = runtime()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
        println!("listening on {}", listener.local_addr()?);
        // Serve on the worker thread; this thread only waits.
        tokio::spawn(async move { axum::serve(listener, app(guard)).await }).await.map_err(std::io::Error::other)?
    })
}

/// Headers that describe one hop, never forwarded (RFC 9110 §7.6.1).
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "proxy-authorization",
];

fn strip_hop_by_hop(headers: &mut http::HeaderMap) {
    let listed: Vec<HeaderName> = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().to_ascii_lowercase().as_bytes()).ok())
        .collect();
    for name in listed {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
}

type ProxyClient = Client<HttpConnector, Incoming>;

/// Forwards one request to the upstream. A failed upstream request fails
/// the connection (hyper closes it): wrk counts it as a socket error.
async fn forward(
    client: ProxyClient,
    upstream: Authority,
    peer: SocketAddr,
    mut req: Request<Incoming>,
) -> Result<Response<Incoming>, Box<dyn std::error::Error + Send + Sync>> {
    strip_hop_by_hop(req.headers_mut());
    let forwarded_for = match req.headers().get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
        Some(prior) => format!("{prior}, {}", peer.ip()),
        None => peer.ip().to_string(),
    };
    req.headers_mut().insert("x-forwarded-for", HeaderValue::from_str(&forwarded_for)?);
    let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
    *req.uri_mut() = Uri::builder().scheme("http").authority(upstream).path_and_query(path).build()?;
    *req.version_mut() = http::Version::HTTP_11;
    let mut res = client.request(req).await?;
    strip_hop_by_hop(res.headers_mut());
    Ok(res)
}

fn plain_proxy(port: u16, upstream_port: u16) -> std::io::Result<()> {
    let rt = runtime()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
        println!("listening on {} (plain proxy to 127.0.0.1:{upstream_port})", listener.local_addr()?);
        let upstream: Authority = format!("127.0.0.1:{upstream_port}").parse().map_err(std::io::Error::other)?;
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let client: ProxyClient = Client::builder(TokioExecutor::new()).build(connector);
        // Accept and serve on the worker thread; this thread only waits.
        tokio::spawn(async move {
            loop {
                let (stream, peer) = listener.accept().await?;
                stream.set_nodelay(true)?;
                let (client, upstream) = (client.clone(), upstream.clone());
                let service =
                    hyper::service::service_fn(move |req| forward(client.clone(), upstream.clone(), peer, req));
                tokio::spawn(async move {
                    // A connection error (the client went away) ends that connection only.
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        })
        .await
        .map_err(std::io::Error::other)?
    })
}

fn port(text: &str) -> std::io::Result<u16> {
    text.parse().map_err(|_| std::io::Error::other(format!("bad port {text:?}")))
}

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match args.as_slice() {
        ["bare", p] => serve(Guard::Bare, port(p)?),
        ["layer", p] => serve(Guard::Layer, port(p)?),
        ["head-only", p] => serve(Guard::HeadOnly, port(p)?),
        ["plain-proxy", p, upstream] => plain_proxy(port(p)?, port(upstream)?),
        ["signature"] => {
            println!("{}", sign::hmac(&secret(), USER));
            Ok(())
        }
        ["user"] => {
            println!("{USER}");
            Ok(())
        }
        ["secret"] => {
            println!("{SECRET}");
            Ok(())
        }
        _ => {
            eprintln!(
                "e2e_server: usage: e2e_server (bare|layer|head-only) <port> | plain-proxy <port> <upstream_port> \
                 | signature | user | secret  (run by benches/e2e.sh)"
            );
            Ok(())
        }
    }
}
