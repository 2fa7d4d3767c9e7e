//! The tower [`Service`]: extract, resolve, verify, decide.

use std::fmt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes};
use http::{Request, Response};
use http_body::Body;
use pin_project_lite::pin_project;
use tower_service::Service;

use crate::body::{RequestBody, ResponseBody};
use crate::extract::{BodyKind, Extracted, extract_headers, extract_query, is_encoded, mark_credentials};
use crate::identity::{IdentityOutcome, UnverifiedReason, VerifiedIdentity};
use crate::layer::Config;
use crate::mode::Mode;
use crate::provider::{Lookup, LookupFuture, LookupResult};
use crate::reject::{ErrorCode, Rejection, RequestHead, is_grpc};
use crate::verify::{Failure, Role, check};

/// The service built by [`IdentityVerificationLayer`](crate::IdentityVerificationLayer).
///
/// The inner service receives `Request<RequestBody<B>>` and the layer answers
/// `Response<ResponseBody<ResBody>>`; its error type is the inner service's.
#[derive(Clone)]
pub struct IdentityVerification<S> {
    inner: S,
    config: Arc<Config>,
}

impl<S> IdentityVerification<S> {
    pub(crate) fn new(inner: S, config: Arc<Config>) -> Self {
        IdentityVerification { inner, config }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: fmt::Debug> fmt::Debug for IdentityVerification<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdentityVerification").field("inner", &self.inner).finish_non_exhaustive()
    }
}

/// The verdict for one request.
// A short-lived stack value: boxing the identity would cost an allocation per request.
#[allow(clippy::large_enum_variant)]
enum Decision {
    Pass { outcome: IdentityOutcome, identity: Option<VerifiedIdentity> },
    Reject(ErrorCode),
}

fn decide(config: &Config, extracted: &mut Extracted, lookup: LookupResult) -> Decision {
    let error = extracted.error;
    let claim = &mut extracted.claim;
    let tenant = claim.tenant.as_deref();
    let policy = match lookup {
        Ok(policy) => policy,
        Err(error) => {
            tracing::warn!(tenant, %error, "identity: secret provider failed; answering 503");
            record(config, tenant, Mode::Required, Err(Failure::Invalid), Some(ErrorCode::ProviderUnavailable));
            return Decision::Reject(ErrorCode::ProviderUnavailable);
        }
    };
    let mode = policy.as_ref().and_then(|p| p.mode()).unwrap_or(config.mode);
    if mode == Mode::Off {
        let outcome = if claim.has_credential() || error.is_some() {
            IdentityOutcome::Unverified(UnverifiedReason::VerificationOff)
        } else {
            IdentityOutcome::Anonymous
        };
        config.metrics.verdict(outcome.as_str(), "off", tenant, None, "none");
        tracing::debug!(tenant, mode = mode.as_str(), outcome = outcome.as_str(), "identity: verification off");
        return Decision::Pass { outcome, identity: None };
    }
    let checked = match (error, &policy) {
        (Some(failure), _) => Err(failure),
        (None, _) if !claim.has_credential() => Err(Failure::Missing),
        (None, None) => Err(Failure::Invalid),
        (None, Some(policy)) => {
            let keys = policy.keys();
            if keys.shortest_secret() < config.min_secret_len {
                tracing::error!(
                    tenant,
                    min_secret_len = config.min_secret_len,
                    "identity: the tenant's key set holds a secret shorter than the minimum; refusing to verify"
                );
                record(config, tenant, mode, Err(Failure::Invalid), Some(ErrorCode::Misconfigured));
                return Decision::Reject(ErrorCode::Misconfigured);
            }
            // The clock (a system call) is read only for key sets that look at the time.
            let now = if keys.needs_time() { config.clock.now() } else { 0 };
            let timer = crate::metrics::Timer::start();
            let checked = check(claim, keys, now, &config.options);
            let scheme = checked.as_ref().map_or("unknown", |proof| proof.scheme().name());
            config.metrics.verification_time(scheme, timer.elapsed());
            checked
        }
    };
    let failure = match checked {
        Ok(proof) => {
            // The identity takes the claim's values (no reference-count traffic).
            let identity = proof.identity(claim);
            record(config, identity.tenant(), mode, Ok(&identity), None);
            return Decision::Pass { outcome: IdentityOutcome::Verified, identity: Some(identity) };
        }
        Err(failure) => failure,
    };
    record(config, tenant, mode, Err(failure), None);
    match failure {
        Failure::Missing if mode != Mode::Required => {
            Decision::Pass { outcome: IdentityOutcome::Anonymous, identity: None }
        }
        failure if mode == Mode::ReportOnly => Decision::Pass {
            outcome: IdentityOutcome::Unverified(UnverifiedReason::WouldReject(failure.code())),
            identity: None,
        },
        failure => Decision::Reject(failure.code()),
    }
}

/// One event (and one counter) per verdict: tenant, scheme, key id, outcome
/// and reason, never a secret, signature or token; the identifier only with
/// `log_identifiers`.
fn record(
    config: &Config,
    tenant: Option<&str>,
    mode: Mode,
    result: Result<&VerifiedIdentity, Failure>,
    forced: Option<ErrorCode>,
) {
    match (result, forced) {
        (_, Some(code)) => {
            config.metrics.verdict("rejected", code.as_str(), tenant, None, "none");
        }
        (Ok(identity), None) => {
            let (scheme, key_id) = (identity.scheme().name(), identity.key_id());
            config.metrics.verdict("verified", "ok", tenant, key_id, scheme);
            if config.log_identifiers {
                tracing::debug!(
                    tenant,
                    scheme,
                    key_id,
                    subject = identity.id(),
                    outcome = "verified",
                    "identity: verified"
                );
            } else {
                tracing::debug!(tenant, scheme, key_id, outcome = "verified", "identity: verified");
            }
        }
        (Err(Failure::Missing), None) if mode != Mode::Required => {
            config.metrics.verdict("anonymous", "none", tenant, None, "none");
            tracing::debug!(tenant, outcome = "anonymous", "identity: anonymous");
        }
        (Err(failure), None) if mode == Mode::ReportOnly => {
            let reason = failure.code().as_str();
            config.metrics.verdict("unverified", reason, tenant, None, "none");
            tracing::info!(tenant, outcome = "unverified", reason, "identity: would reject (report-only)");
        }
        (Err(failure), None) => {
            let reason = failure.code().as_str();
            config.metrics.verdict("rejected", reason, tenant, None, "none");
            tracing::debug!(tenant, outcome = "rejected", reason, detail = %failure, "identity: rejected");
        }
    }
}

/// Applies a decision to the request (kept in place: the request is large
/// and moving it costs a copy): forward it, or the rejection response.
fn apply<B>(config: &Config, req: &mut Request<B>, decision: Decision) -> Dispatch {
    match decision {
        Decision::Pass { outcome, identity } => {
            strip_credentials(config, req);
            if let Some(forward) = &config.forward {
                forward.apply(req.headers_mut(), outcome, identity.as_ref());
            }
            let ext = req.extensions_mut();
            // Never trust state that arrived with the request (an outer
            // identity layer, or code in front of this one). Both removals are
            // free on the usual empty extensions.
            ext.remove::<VerifiedIdentity>();
            ext.remove::<IdentityOutcome>();
            // A verified request carries only its identity (the outcome is
            // implied, see `IdentityOutcome::from_extensions`): one insert,
            // one allocation fewer.
            if let Some(identity) = identity {
                ext.insert(identity);
            } else {
                ext.insert(outcome);
            }
            Dispatch::Forward
        }
        Decision::Reject(code) => Dispatch::Reject(reject(config, &RequestHead::of(req), code)),
    }
}

/// Removes the headers and query parameters that carry credentials and
/// claimed identifiers (with `strip_credentials`). Otherwise they go on,
/// flagged as sensitive by the extraction pass. Credential entries of
/// `Sec-WebSocket-Protocol` are always removed: they are no protocol.
fn strip_credentials<B>(config: &Config, req: &mut Request<B>) {
    crate::protocol::strip_protocol(&config.sources, req.headers_mut());
    if !config.strip_credentials {
        return;
    }
    crate::strip_query::strip_query(&config.sources, req.uri_mut());
    let headers = req.headers_mut();
    let sources = &config.sources;
    let bearer = sources.reads_bearer().then_some(&http::header::AUTHORIZATION);
    let roles = [Role::Signature, Role::Timestamp, Role::Token, Role::UserId, Role::Email, Role::VisitorId];
    for name in roles.map(|r| sources.header_name(r)).into_iter().chain([bearer]).flatten() {
        headers.remove(name);
    }
}

/// The rejection response; a gRPC one for gRPC requests (looked up only here:
/// the accept path never needs to know).
fn reject(config: &Config, head: &RequestHead<'_>, code: ErrorCode) -> Response<Bytes> {
    config.responder.respond(&Rejection::new(code, is_grpc(head.headers)), head)
}

/// The outcome of asking the provider: decided now, or a lookup to wait for.
#[allow(clippy::large_enum_variant)] // a short-lived return value; boxing would allocate per request
enum Resolved {
    Now(Dispatch),
    Later(LookupFuture),
}

/// What to do with a decided request.
enum Dispatch {
    Forward,
    Reject(Response<Bytes>),
}

fn resolve<B>(config: &Config, req: &mut Request<B>, extracted: &mut Extracted) -> Resolved {
    let tenant = extracted.claim.tenant.as_deref();
    // A panicking provider is a refused request, never a pass and never a dead connection.
    match std::panic::catch_unwind(AssertUnwindSafe(|| config.provider.lookup(tenant))) {
        Ok(Lookup::Ready(result)) => Resolved::Now(apply(config, req, decide(config, extracted, result))),
        Ok(Lookup::Pending(lookup)) => Resolved::Later(lookup),
        Err(_) => Resolved::Now(Dispatch::Reject(provider_panicked(config, req))),
    }
}

fn provider_panicked<B>(config: &Config, req: &Request<B>) -> Response<Bytes> {
    tracing::error!("identity: the secret provider panicked; answering 500");
    config.metrics.verdict("rejected", ErrorCode::Internal.as_str(), None, None, "none");
    reject(config, &RequestHead::of(req), ErrorCode::Internal)
}

fn content_length(headers: &http::HeaderMap) -> Option<u64> {
    headers.get(http::header::CONTENT_LENGTH)?.to_str().ok()?.parse().ok()
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for IdentityVerification<S>
where
    S: Service<Request<RequestBody<ReqBody>>, Response = Response<ResBody>> + Clone,
    ReqBody: Body,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S, ReqBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        let config = &*self.config;
        if let Some(bypass) = &config.bypass
            && bypass(&RequestHead::of(&req))
        {
            // Not verified, but credentials are still guarded (flagged or
            // stripped) and no identity is claimed on the layer's behalf.
            mark_credentials(&config.sources, req.headers_mut());
            strip_credentials(config, &mut req);
            if let Some(forward) = &config.forward {
                forward.strip(req.headers_mut());
            }
            return ResponseFuture::inner(self.inner.call(req.map(RequestBody::new)));
        }
        let mut extracted = Extracted::default();
        let read = extract_headers(&config.sources, req.headers_mut(), &mut extracted)
            .and_then(|()| extract_query(&config.sources, req.uri(), &mut extracted));
        if let Err(failure) = read {
            // The tenant is ambiguous, so no policy (and no mode) applies: refuse.
            tracing::debug!(reason = %failure, "identity: rejected before lookup");
            return ResponseFuture::done(reject(config, &RequestHead::of(&req), failure.code()));
        }
        // gRPC bodies are never read (`application/grpc+json` would look like JSON).
        let body_kind = config.sources.body_kind(&RequestHead::of(&req)).filter(|_| !is_grpc(req.headers()));
        if let Some(kind) = body_kind {
            // A body the layer will not read is a failure for the mode to
            // decide on (413/415 when enforcing); report-only and off let the
            // original body stream through untouched.
            if is_encoded(req.headers()) {
                extracted.fail(Failure::BodyEncoded);
            } else if content_length(req.headers()).is_some_and(|len| len > config.sources.get_body_limit() as u64) {
                extracted.fail(Failure::BodyTooLarge);
            } else {
                let inner = self.take_ready_inner();
                let (parts, body) = req.into_parts();
                return ResponseFuture::buffering(
                    Box::pin(body),
                    Buffering {
                        pending: Pending {
                            inner,
                            req: Request::from_parts(parts, ()),
                            extracted,
                            config: self.config.clone(),
                        },
                        kind,
                        chunks: Vec::new(),
                        len: 0,
                        trailers: None,
                    },
                );
            }
        }
        let mut req = req.map(RequestBody::new);
        match resolve(config, &mut req, &mut extracted) {
            Resolved::Now(Dispatch::Forward) => ResponseFuture::inner(self.inner.call(req)),
            Resolved::Now(Dispatch::Reject(res)) => ResponseFuture::done(res),
            Resolved::Later(lookup) => {
                let inner = self.take_ready_inner();
                ResponseFuture {
                    state: State::Resolving {
                        lookup,
                        pending: Some(Box::new(Pending { inner, req, extracted, config: self.config.clone() })),
                    },
                }
            }
        }
    }
}

impl<S: Clone> IdentityVerification<S> {
    /// The inner service was driven to readiness; keep that one for this
    /// request and leave a fresh clone in its place (tower's "be careful when
    /// cloning inner services").
    fn take_ready_inner(&mut self) -> S {
        let clone = self.inner.clone();
        std::mem::replace(&mut self.inner, clone)
    }
}

struct Pending<S, R> {
    inner: S,
    req: R,
    extracted: Extracted,
    config: Arc<Config>,
}

/// A request whose body is being buffered.
struct Buffering<S> {
    pending: Pending<S, Request<()>>,
    kind: BodyKind,
    chunks: Vec<Bytes>,
    len: usize,
    trailers: Option<http::HeaderMap>,
}

/// The body as one buffer: a single chunk as is (no copy), or one copy of all chunks.
fn concat(mut chunks: Vec<Bytes>, len: usize) -> Bytes {
    match chunks.len() {
        0 => Bytes::new(),
        1 => chunks.pop().unwrap_or_default(),
        _ => {
            let mut all = bytes::BytesMut::with_capacity(len);
            for chunk in chunks {
                all.extend_from_slice(&chunk);
            }
            all.freeze()
        }
    }
}

pin_project! {
    /// The response future of [`IdentityVerification`].
    pub struct ResponseFuture<S, B>
    where
        S: Service<Request<RequestBody<B>>>,
    {
        #[pin]
        state: State<S, B>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, B>
    where
        S: Service<Request<RequestBody<B>>>,
    {
        Inner { #[pin] fut: S::Future },
        Buffering { body: Option<Pin<Box<B>>>, pending: Option<Box<Buffering<S>>> },
        Resolving { lookup: LookupFuture, pending: Option<Box<Pending<S, Request<RequestBody<B>>>>> },
        Done { response: Option<Response<Bytes>> },
    }
}

impl<S, B> ResponseFuture<S, B>
where
    S: Service<Request<RequestBody<B>>>,
{
    fn inner(fut: S::Future) -> Self {
        ResponseFuture { state: State::Inner { fut } }
    }

    fn done(response: Response<Bytes>) -> Self {
        ResponseFuture { state: State::Done { response: Some(response) } }
    }

    fn buffering(body: Pin<Box<B>>, buffering: Buffering<S>) -> Self {
        ResponseFuture { state: State::Buffering { body: Some(body), pending: Some(Box::new(buffering)) } }
    }
}

impl<S, B> fmt::Debug for ResponseFuture<S, B>
where
    S: Service<Request<RequestBody<B>>>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ResponseFuture")
    }
}

impl<S, B, ResBody> Future for ResponseFuture<S, B>
where
    S: Service<Request<RequestBody<B>>, Response = Response<ResBody>>,
    B: Body,
{
    type Output = Result<Response<ResponseBody<ResBody>>, S::Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            let mut this = self.as_mut().project();
            let next = 'next: {
                match this.state.as_mut().project() {
                    StateProj::Inner { fut } => {
                        return fut.poll(cx).map_ok(|res| res.map(ResponseBody::inner));
                    }
                    StateProj::Done { response } => {
                        let response = response.take().expect("ResponseFuture polled after completion");
                        return Poll::Ready(Ok(response.map(ResponseBody::full)));
                    }
                    StateProj::Buffering { body, pending } => {
                        let buffering = pending.as_mut().expect("ResponseFuture polled after completion");
                        let stream = body.as_mut().expect("ResponseFuture polled after completion");
                        let limit = buffering.pending.config.sources.get_body_limit();
                        let over_limit = loop {
                            match ready!(stream.as_mut().poll_frame(cx)) {
                                None => break false,
                                Some(Err(_)) => {
                                    // A broken body cannot be handed on in any mode.
                                    let Pending { req, config, .. } = pending.take().expect("checked above").pending;
                                    tracing::debug!("identity: the request body failed while being read");
                                    let res = reject(&config, &RequestHead::of(&req), ErrorCode::BodyUnreadable);
                                    break 'next State::Done { response: Some(res) };
                                }
                                Some(Ok(frame)) => match frame.into_data() {
                                    Ok(mut data) => {
                                        buffering.len += data.remaining();
                                        buffering.chunks.push(data.copy_to_bytes(data.remaining()));
                                        if buffering.len > limit {
                                            break true;
                                        }
                                    }
                                    Err(frame) => {
                                        if let Ok(trailers) = frame.into_trailers() {
                                            buffering.trailers = Some(trailers);
                                        }
                                    }
                                },
                            }
                        };
                        let Buffering {
                            pending: Pending { mut inner, req, mut extracted, config },
                            kind,
                            chunks,
                            len,
                            trailers,
                        } = *pending.take().expect("checked above");
                        let (parts, ()) = req.into_parts();
                        let bytes = concat(chunks, len);
                        let body = if over_limit {
                            extracted.fail(Failure::BodyTooLarge);
                            RequestBody::Replay {
                                data: (!bytes.is_empty()).then_some(bytes),
                                rest: body.take().expect("checked above"),
                            }
                        } else {
                            if let Err(failure) = extracted.add_body(&config.sources, kind, &bytes) {
                                let res = reject(&config, &RequestHead::of_parts(&parts), failure.code());
                                break 'next State::Done { response: Some(res) };
                            }
                            RequestBody::buffered_with_trailers(bytes, trailers)
                        };
                        let mut req = Request::from_parts(parts, body);
                        match resolve(&config, &mut req, &mut extracted) {
                            Resolved::Now(Dispatch::Forward) => State::Inner { fut: inner.call(req) },
                            Resolved::Now(Dispatch::Reject(res)) => State::Done { response: Some(res) },
                            Resolved::Later(lookup) => State::Resolving {
                                lookup,
                                pending: Some(Box::new(Pending { inner, req, extracted, config })),
                            },
                        }
                    }
                    StateProj::Resolving { lookup, pending } => {
                        let polled = std::panic::catch_unwind(AssertUnwindSafe(|| lookup.as_mut().poll(cx)));
                        let result = match polled {
                            Ok(Poll::Pending) => return Poll::Pending,
                            Ok(Poll::Ready(result)) => Some(result),
                            Err(_) => None,
                        };
                        let Pending { mut inner, mut req, mut extracted, config } =
                            *pending.take().expect("ResponseFuture polled after completion");
                        let Some(result) = result else {
                            break 'next State::Done { response: Some(provider_panicked(&config, &req)) };
                        };
                        match apply(&config, &mut req, decide(&config, &mut extracted, result)) {
                            Dispatch::Forward => State::Inner { fut: inner.call(req) },
                            Dispatch::Reject(res) => State::Done { response: Some(res) },
                        }
                    }
                }
            };
            this.state.set(next);
        }
    }
}

#[cfg(feature = "tonic")]
impl<S: tonic::server::NamedService> tonic::server::NamedService for IdentityVerification<S> {
    const NAME: &'static str = S::NAME;
}
