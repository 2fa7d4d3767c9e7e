//! The layer driven in process: an inner service that records what it saw,
//! one request through a layer, and the checks every rejection must pass.

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{HeaderName, Request, Response};
use http_body_util::Full;
use tower::{Service, ServiceExt};
use tower_identity::layer::body::RequestBody;
use tower_identity::{IdentityOutcome, IdentityVerificationLayer, Role, SecretProvider, Sources, VerifiedIdentity};

use super::http::{Answer, collect, get};
use super::keys::signed_headers;

/// One request through a layer, as two layers built from one configuration
/// must agree on it: the answer, the inner service's calls and what it saw
/// (`T`, recorded by the test's inner service).
#[derive(Debug, PartialEq)]
pub struct Run<T> {
    pub status: http::StatusCode,
    pub headers: Vec<(String, String)>,
    pub body: String,
    pub calls: usize,
    pub seen: Option<T>,
}

impl<T> Run<T> {
    /// The answer (headers sorted by name), the calls counted in `calls` and
    /// what was left in `seen` (taken).
    pub fn of(answer: Answer, calls: &AtomicUsize, seen: &Mutex<Option<T>>) -> Run<T> {
        let mut headers: Vec<(String, String)> = answer
            .headers
            .iter()
            .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("<bytes>").to_owned()))
            .collect();
        headers.sort();
        let seen = seen.lock().unwrap().take();
        Run { status: answer.status, headers, body: answer.body, calls: calls.load(Ordering::SeqCst), seen }
    }
}

/// The identity extensions of the last request the inner service saw.
type Seen = Option<(Option<IdentityOutcome>, Option<VerifiedIdentity>)>;

/// What the inner service saw.
#[derive(Clone, Default)]
pub struct Recorder {
    calls: Arc<AtomicUsize>,
    last: Arc<Mutex<Seen>>,
}

impl Recorder {
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    pub fn last_outcome(&self) -> Option<IdentityOutcome> {
        self.last.lock().unwrap().as_ref().and_then(|(o, _)| *o)
    }

    pub fn last_identity(&self) -> Option<VerifiedIdentity> {
        self.last.lock().unwrap().as_ref().and_then(|(_, i)| i.clone())
    }

    /// An inner service that records the identity extensions and answers 200 "inner".
    pub fn service(
        &self,
    ) -> impl Service<
        Request<RequestBody<Full<Bytes>>>,
        Response = Response<Full<Bytes>>,
        Error = Infallible,
        Future = impl Send,
    > + Clone
    + Send
    + 'static {
        let rec = self.clone();
        tower::service_fn(move |req: Request<RequestBody<Full<Bytes>>>| {
            // Counted at `call`, not when the future is polled: a layer that
            // called the inner service and dropped its future is caught too.
            rec.calls.fetch_add(1, Ordering::SeqCst);
            *rec.last.lock().unwrap() = Some((
                IdentityOutcome::from_extensions(req.extensions()),
                req.extensions().get::<VerifiedIdentity>().cloned(),
            ));
            async move { Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"inner")))) }
        })
    }
}

/// Sends one request through `layer` around a fresh recorder.
pub async fn send(layer: &IdentityVerificationLayer, req: Request<Full<Bytes>>) -> (Answer, Recorder) {
    let rec = Recorder::default();
    let svc = tower::ServiceBuilder::new().layer(layer.clone()).service(rec.service());
    let res = svc.oneshot(req).await.unwrap();
    (collect(res).await, rec)
}

/// Asserts a rejection: status, code, standard headers, inner not called,
/// and no echo of the given sensitive strings.
pub fn assert_rejected(answer: &Answer, rec: &Recorder, status: u16, code: &str, secrets: &[&str]) {
    assert_eq!(answer.status.as_u16(), status, "body: {}", answer.body);
    assert_eq!(answer.code(), code);
    assert_eq!(rec.calls(), 0, "the inner service must not be called on rejection");
    assert_eq!(answer.headers["cache-control"], "no-store");
    assert_eq!(answer.headers["content-type"], "application/json");
    if status == 401 {
        let challenge = answer.headers["www-authenticate"].to_str().unwrap();
        assert!(challenge.contains(code), "{challenge}");
    }
    for s in secrets.iter().filter(|s| !s.is_empty()) {
        assert!(!answer.body.contains(s), "the body echoes {s:?}: {}", answer.body);
        for v in answer.headers.values() {
            assert!(!v.to_str().unwrap_or("").contains(s), "a header echoes {s:?}");
        }
    }
}

/// A layer over `provider` that reads the tenant from the `x-tenant` header.
pub fn tenant_layer(provider: impl SecretProvider) -> IdentityVerificationLayer {
    IdentityVerificationLayer::new(provider)
        .sources(Sources::new().header(Role::Tenant, HeaderName::from_static("x-tenant")))
}

/// A GET for [`tenant_layer`]: user "u1" of `tenant`, signed with `secret`.
pub fn tenant_request(tenant: &str, secret: &str) -> Request<Full<Bytes>> {
    let [(user, id), (signature, sig)] = signed_headers(secret, "u1");
    get("/", &[("x-tenant", tenant), (user, &id), (signature, &sig)])
}
