//! Processes killed on drop, a recording upstream, a client, and the
//! identity-proxy under test.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};

use crate::process::{Listeners, Running};

/// A child process, killed (and its directory removed) on drop.
pub struct Process {
    child: Child,
    pub dir: PathBuf,
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Process {
    /// Starts `command` with its output in `dir/output.log`.
    pub fn spawn(mut command: Command, dir: PathBuf) -> Result<Process, String> {
        let log = std::fs::File::create(dir.join("output.log")).map_err(|e| e.to_string())?;
        let child = command
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot run {:?}: {e}", command.get_program()))?;
        Ok(Process { child, dir })
    }

    /// Waits (at most ten seconds) until `addr` accepts connections.
    pub fn wait_for(&mut self, addr: SocketAddr) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("exited with {status}: {}", self.output()));
            }
            if std::net::TcpStream::connect(addr).is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(format!("did not listen on {addr}: {}", self.output()))
    }

    fn output(&self) -> String {
        std::fs::read_to_string(self.dir.join("output.log")).unwrap_or_default()
    }
}

/// A port nothing listens on (bound, then released).
pub fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

/// An external component's start: `Some` when it runs; otherwise a failure
/// under `CI`, and a printed skip elsewhere.
pub fn required<T>(component: &str, started: Result<T, String>) -> Option<T> {
    match started {
        Ok(value) => Some(value),
        Err(reason) if std::env::var_os("CI").is_some() => panic!("{component} cannot start under CI: {reason}"),
        Err(reason) => {
            eprintln!("skipped: {component} cannot start here ({reason}); set CI=1 to make this a failure");
            None
        }
    }
}

/// A gateway configuration from `examples/gateways/`, placeholders replaced.
pub fn example(file: &str, values: &[(&str, String)]) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/gateways").join(file);
    let mut text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    for (name, value) in values {
        text = text.replace(&format!("{{{{{name}}}}}"), value);
    }
    assert!(!text.contains("{{"), "{file}: a placeholder is left: {text}");
    text
}

/// The identity headers among `headers`, under any spelling (`_` and `.`
/// read as `-`), with every value: what an upstream could mistake for ours.
pub fn identity_headers(headers: &HeaderMap) -> BTreeMap<String, Vec<String>> {
    let mut out = BTreeMap::<String, Vec<String>>::new();
    for (name, value) in headers {
        let norm = name.as_str().replace(['_', '.'], "-");
        if norm.starts_with("x-verified-") || norm == "x-identity-outcome" {
            out.entry(name.as_str().to_owned()).or_default().push(value.to_str().unwrap_or("?").to_owned());
        }
    }
    out
}

/// An upstream that records the headers of every request, keyed by its
/// `x-case` header, and answers "upstream".
#[derive(Clone, Default)]
pub struct Upstream {
    pub addr: Option<SocketAddr>,
    seen: Arc<Mutex<BTreeMap<String, HeaderMap>>>,
    calls: Arc<AtomicUsize>,
}

impl Upstream {
    pub async fn start() -> Upstream {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let up = Upstream { addr: Some(listener.local_addr().unwrap()), ..Upstream::default() };
        let rec = up.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let rec = rec.clone();
                let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                    rec.calls.fetch_add(1, Ordering::SeqCst);
                    let case = req.headers().get("x-case").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
                    rec.seen.lock().unwrap().insert(case, req.headers().clone());
                    async { Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"upstream")))) }
                });
                tokio::spawn(hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc));
            }
        });
        up
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr.unwrap()
    }

    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    /// The headers of the request with `x-case: case`, if it arrived.
    pub fn take(&self, case: &str) -> Option<HeaderMap> {
        self.seen.lock().unwrap().remove(case)
    }
}

/// A response, collected.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

/// An HTTP/1.1 client with pooled connections.
#[derive(Clone)]
pub struct Client(HyperClient<HttpConnector, Empty<Bytes>>);

impl Client {
    pub fn new() -> Client {
        Client(HyperClient::builder(TokioExecutor::new()).build_http())
    }

    pub async fn get(&self, addr: SocketAddr, target: &str, headers: &[(String, String)]) -> Answer {
        let mut b = Request::get(format!("http://{addr}{target}"));
        for (k, v) in headers {
            b = b.header(k.as_str(), v.as_str());
        }
        let res = tokio::time::timeout(Duration::from_secs(10), self.0.request(b.body(Empty::new()).unwrap()))
            .await
            .expect("answered in time")
            .expect("the request went through");
        let (parts, body) = res.into_parts();
        let body = String::from_utf8_lossy(&body.collect().await.unwrap().to_bytes()).into_owned();
        Answer { status: parts.status, headers: parts.headers, body }
    }
}

/// A running identity-proxy and its auth listeners.
pub struct Authz {
    pub http: SocketAddr,
    pub grpc: Option<SocketAddr>,
    _process: Running,
}

/// Starts identity-proxy with `config` (and the secret files of `secrets`)
/// and waits for its auth listeners.
pub fn start_authz(config: &str, secrets: &[(&str, &str)]) -> Authz {
    let files: Vec<(&str, String)> = secrets.iter().map(|(file, secret)| (*file, format!("{secret}\n"))).collect();
    let files: Vec<(&str, &str)> = files.iter().map(|(file, text)| (*file, text.as_str())).collect();
    let ready: fn(&Listeners) -> bool = if config.contains("grpc_listen") {
        |l| l.auth.is_some() && l.ext_authz.is_some()
    } else {
        |l| l.auth.is_some()
    };
    let (process, listeners) = Running::start("authz", config, &files, &[], ready);
    Authz { http: listeners.auth.unwrap(), grpc: listeners.ext_authz, _process: process }
}
