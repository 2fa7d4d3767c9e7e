//! hyper: a reverse proxy that verifies the identity and hands it to the
//! upstream as trusted headers.
//!
//! ```sh
//! cargo run --example hyper_proxy   # proxy on 127.0.0.1:3002 (set ADDR to change), demo upstream on a free port
//! ```
//!
//! The proxy (hyper 1 server, hyper-util's legacy `Client` to the upstream)
//! runs `IdentityVerificationLayer` in `Mode::Optional` with
//! `.forward_identity_headers(ForwardHeaders::default())` and
//! `.strip_credentials(true)`:
//!
//! - a valid signature reaches the upstream as `x-verified-user-id`,
//!   `x-verified-key-id` and `x-identity-outcome: verified`;
//! - no signature reaches it as `x-identity-outcome: anonymous`;
//! - a forged one is answered 401 by the proxy;
//! - client-sent copies of those headers, in any spelling
//!   (`x_verified_user_id`, `X.Verified.User.Id`), are deleted in every case,
//!   and the signature header never leaves the proxy.
//!
//! Request bodies are streamed to the upstream as they arrive (the layer
//! hands on a `RequestBody<Incoming>`, which the client sends as is),
//! hop-by-hop headers are removed in both directions, and an unreachable
//! upstream is answered `502` with a JSON body.
//!
//! The demo upstream echoes the identity headers it receives. Only the proxy
//! may be able to reach it: an upstream trusts these headers exactly as far
//! as it trusts the network path from the proxy.
//!
//! `tests/it/examples.rs` drives this proxy over 127.0.0.1.
#![allow(dead_code)] // `main` is unused when tests/it/examples.rs includes this file.

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http::header::HOST;
use http::{HeaderValue, Request, Response, StatusCode, Uri, Version};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tower::ServiceBuilder;
use tower_identity::layer::body::RequestBody;
use tower_identity::{
    Identifier, IdentityVerificationLayer, Key, KeySet, Mode, Secret, layer::ForwardHeaders, layer::remove_hop_by_hop,
    sign,
};

/// The demo secret. In production it comes from your secret store.
pub const DEMO_SECRET: &str = "proxy-demo-secret-do-not-use-in-production";

/// What your backend computes for a user and hands to the browser.
pub fn signature(user_id: &str) -> String {
    sign::hmac(&Secret::text(DEMO_SECRET).expect("valid secret"), user_id)
}

/// The body the proxy answers with: the upstream's, streamed, or its own.
pub type ProxyBody = BoxBody<Bytes, hyper::Error>;

type UpstreamClient = Client<HttpConnector, RequestBody<Incoming>>;

fn identity_layer() -> IdentityVerificationLayer {
    let key = Key::hmac(Identifier::UserId, Secret::text(DEMO_SECRET).expect("valid secret")).with_id("proxy-2026");
    IdentityVerificationLayer::new(KeySet::single(key))
        .mode(Mode::Optional) // anonymous visitors pass as `x-identity-outcome: anonymous`
        .forward_identity_headers(ForwardHeaders::default())
        .strip_credentials(true)
}

fn bad_gateway() -> Response<ProxyBody> {
    let body = Full::new(Bytes::from_static(
        b"{\"error\":\"bad_gateway\",\"message\":\"The upstream service is unreachable.\"}",
    ));
    let mut res = Response::new(body.map_err(|never| match never {}).boxed());
    *res.status_mut() = StatusCode::BAD_GATEWAY;
    res.headers_mut().insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    res
}

/// The inner service: sends the verified request on to `upstream`.
async fn forward(
    client: UpstreamClient,
    upstream: SocketAddr,
    mut req: Request<RequestBody<Incoming>>,
) -> Result<Response<ProxyBody>, Infallible> {
    let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let uri = Uri::builder().scheme("http").authority(upstream.to_string()).path_and_query(path).build();
    let Ok(uri) = uri else { return Ok(bad_gateway()) };
    *req.uri_mut() = uri;
    *req.version_mut() = Version::HTTP_11; // HTTP/2 clients too: the upstream speaks HTTP/1.1
    req.headers_mut().remove(HOST); // the client sets the upstream's
    match client.request(req).await {
        Ok(res) => {
            let (mut parts, body) = res.into_parts();
            remove_hop_by_hop(&mut parts.headers);
            Ok(Response::from_parts(parts, body.boxed()))
        }
        Err(error) => {
            eprintln!("proxy: upstream {upstream}: {error:?}");
            Ok(bad_gateway())
        }
    }
}

/// Runs the proxy on `listener`, forwarding to `upstream` over HTTP/1.1.
pub async fn run_proxy(listener: TcpListener, upstream: SocketAddr) -> std::io::Result<()> {
    let client: UpstreamClient = Client::builder(TokioExecutor::new()).build_http();
    let service = ServiceBuilder::new()
        // Hop-by-hop headers go first, so that `Connection: x-verified-user-id`
        // cannot delete the headers the layer adds.
        .map_request(|mut req: Request<Incoming>| {
            remove_hop_by_hop(req.headers_mut());
            req
        })
        .layer(identity_layer())
        .service_fn(move |req| forward(client.clone(), upstream, req));

    loop {
        let (stream, _) = listener.accept().await?;
        let service = TowerToHyperService::new(service.clone());
        tokio::spawn(async move {
            // HTTP/1.1 and HTTP/2 (h2c) clients alike.
            let _ = auto::Builder::new(TokioExecutor::new()).serve_connection(TokioIo::new(stream), service).await;
        });
    }
}

/// The demo upstream: answers with the identity headers it received and the
/// size of the body.
async fn echo(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, hyper::Error> {
    let mut text = String::new();
    for (name, value) in req.headers() {
        let name = name.as_str();
        if name.starts_with("x-verified-") || name.starts_with("x-identity-") || name == "x-user-id" {
            text.push_str(&format!("{name}: {}\n", value.to_str().unwrap_or("<binary>")));
        }
    }
    let body = req.into_body().collect().await?.to_bytes();
    text.push_str(&format!("body: {} bytes\n", body.len()));
    Ok(Response::new(Full::new(Bytes::from(text))))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let upstream_listener = TcpListener::bind("127.0.0.1:0").await?;
    let upstream = upstream_listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((stream, _)) = upstream_listener.accept().await {
            tokio::spawn(async move {
                let service = hyper::service::service_fn(echo);
                let _ = auto::Builder::new(TokioExecutor::new()).serve_connection(TokioIo::new(stream), service).await;
            });
        }
    });

    let addr = std::env::var("ADDR").unwrap_or_else(|_| "127.0.0.1:3002".into());
    let listener = TcpListener::bind(&addr).await?;
    let url = format!("http://{}", listener.local_addr()?);
    let signed = signature("user-42");
    println!("proxy on {url}, demo upstream on http://{upstream}\n");
    println!("# verified: the upstream sees x-verified-user-id: user-42, and no signature");
    println!("curl -i -H 'x-user-id: user-42' -H 'x-identity-signature: {signed}' {url}/\n");
    println!("# anonymous, with spoofed identity headers: the upstream sees x-identity-outcome: anonymous only");
    println!(
        "curl -i -H 'x-verified-user-id: admin' -H 'x_verified_user_id: admin' -H 'x-identity-outcome: verified' {url}/\n"
    );
    println!("# forged (401 from the proxy, the upstream is not called):");
    println!("curl -i -H 'x-user-id: admin' -H 'x-identity-signature: {signed}' {url}/\n");
    println!("# a streamed upload:");
    println!(
        "head -c 1048576 /dev/urandom | curl -i -T - -H 'x-user-id: user-42' -H 'x-identity-signature: {signed}' {url}/upload"
    );

    run_proxy(listener, upstream).await?;
    Ok(())
}
