//! Requests and responses, and real servers and clients on 127.0.0.1.

use std::fmt::Debug;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::keys::signed_headers;

/// A GET request with the given headers.
pub fn get(uri: &str, headers: &[(&str, &str)]) -> Request<Full<Bytes>> {
    let mut b = Request::get(uri);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(Full::new(Bytes::new())).unwrap()
}

/// A GET of `/` carrying `user` signed with `secret` (HMAC over the user id).
pub fn signed(secret: &str, user: &str) -> Request<Full<Bytes>> {
    let headers = signed_headers(secret, user);
    get("/", &headers.each_ref().map(|(k, v)| (*k, v.as_str())))
}

/// A response, collected.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Answer {
    /// The body as text.
    pub fn text(&self) -> &str {
        &self.body
    }

    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|_| panic!("not JSON: {}", self.body))
    }

    /// The `error` field of a JSON rejection body.
    pub fn code(&self) -> String {
        self.json()["error"].as_str().expect("error field").to_owned()
    }
}

/// Collects a response whose body is UTF-8.
pub async fn collect<B>(res: Response<B>) -> Answer
where
    B: http_body::Body,
    B::Error: Debug,
{
    let (parts, body) = res.into_parts();
    let bytes = body.collect().await.unwrap().to_bytes();
    Answer { status: parts.status, headers: parts.headers, body: String::from_utf8(bytes.to_vec()).unwrap() }
}

/// A listener on a free port of 127.0.0.1.
pub async fn listener() -> (TcpListener, SocketAddr) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    (l, addr)
}

/// A task aborted when dropped, so a failing test does not leave servers running.
pub struct Task(JoinHandle<()>);

impl Drop for Task {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Spawns `f` as a [`Task`].
pub fn spawn<F: Future<Output = ()> + Send + 'static>(f: F) -> Task {
    Task(tokio::spawn(f))
}

/// An axum app served on 127.0.0.1 until dropped, with the counter its
/// handlers bump (so a test can prove a rejected request never reached them).
pub struct Server {
    pub addr: SocketAddr,
    pub calls: Arc<AtomicUsize>,
    _task: Task,
}

impl Server {
    /// Serves `app`, whose handlers count their calls in `calls`.
    pub async fn axum(app: axum::Router, calls: Arc<AtomicUsize>) -> Server {
        let (l, addr) = listener().await;
        let task = spawn(async move { axum::serve(l, app).await.unwrap() });
        Server { addr, calls, _task: task }
    }
}

/// Serves the tower service `svc` with hyper-util's HTTP/1.1 and h2c server
/// on a free port of 127.0.0.1, one task per connection, until the returned
/// task is dropped.
pub async fn serve_hyper<S, B>(svc: S) -> (Task, SocketAddr)
where
    S: tower::Service<Request<hyper::body::Incoming>, Response = Response<B>> + Clone + Send + Sync + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (l, addr) = listener().await;
    let task = spawn(async move {
        loop {
            let Ok((stream, _)) = l.accept().await else { return };
            let svc = hyper_util::service::TowerToHyperService::new(svc.clone());
            tokio::spawn(async move {
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (task, addr)
}

/// An HTTP/1.1 client (h2c when the server offers it) for request bodies of type `B`.
pub fn client<B>() -> Client<HttpConnector, B>
where
    B: http_body::Body + Send + 'static,
    B::Data: Send,
{
    Client::builder(TokioExecutor::new()).build_http()
}

/// An HTTP/2-only (h2c) client.
pub fn client_h2<B>() -> Client<HttpConnector, B>
where
    B: http_body::Body + Send + 'static,
    B::Data: Send,
{
    Client::builder(TokioExecutor::new()).http2_only(true).build_http()
}

/// Sends `req` with `client` and collects the answer.
pub async fn send_with<B>(client: &Client<HttpConnector, B>, req: Request<B>) -> Answer
where
    B: http_body::Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    collect(client.request(req).await.unwrap()).await
}

/// Sends `req` with a new client and collects the answer.
pub async fn fetch<B>(req: Request<B>) -> Answer
where
    B: http_body::Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    send_with(&client(), req).await
}
