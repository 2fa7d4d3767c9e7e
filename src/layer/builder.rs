//! [`IdentityVerificationLayer`]: the builder.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tower_layer::Layer;

use super::collect::{BodyBudget, DEFAULT_MAX_BUFFERED_BODY_BYTES};
use super::config::{Config, Policies};
use super::forward::ForwardHeaders;
use super::head_only::{HeadOnlyLayer, ReadsBody};
use super::keep_body::KeepResponseBodyLayer;
use super::reject::{DefaultResponder, Responder};
use super::service::IdentityVerification;
use crate::clock::{Clock, SystemClock};
use crate::extract::{RequestHead, Sources};
use crate::mode::Mode;
use crate::provider::SecretProvider;
use crate::verify::VerifyOptions;

/// Shortest secret accepted by default, in bytes.
pub const DEFAULT_MIN_SECRET_LEN: usize = 16;

/// A tower layer that verifies signed identities before requests reach the
/// inner service.
///
/// On success the request carries a [`VerifiedIdentity`](crate::identity::VerifiedIdentity)
/// in its extensions (an [`IdentityOutcome`](crate::identity::IdentityOutcome) when it
/// passes unverified, see [`IdentityOutcome::from_extensions`](crate::identity::IdentityOutcome::from_extensions)); on
/// rejection the layer answers itself (401, or a gRPC status for gRPC
/// requests) and the inner service is never called.
///
/// `Clone + Send + Sync`; the configuration lives in an `Arc`.
///
/// ```
/// use tower_identity::{IdentityVerificationLayer, Identifier, Key, KeySet, Mode, Secret};
///
/// let keys = KeySet::single(Key::hmac(Identifier::UserId, Secret::text("a-long-random-secret-from-the-vendor").unwrap()));
/// let layer = IdentityVerificationLayer::new(keys).mode(Mode::Optional);
/// # let _ = layer;
/// ```
#[derive(Clone)]
#[must_use]
pub struct IdentityVerificationLayer {
    config: Arc<Config>,
}

impl IdentityVerificationLayer {
    /// A layer taking keys from `provider`, in [`Mode::Required`], reading
    /// the [default sources](Sources).
    pub fn new(provider: impl SecretProvider) -> Self {
        IdentityVerificationLayer {
            config: Arc::new(Config {
                provider: Policies::of(provider),
                mode: Mode::Required,
                sources: Sources::default(),
                options: VerifyOptions::default(),
                clock: Arc::new(SystemClock),
                responder: Arc::new(DefaultResponder),
                min_secret_len: DEFAULT_MIN_SECRET_LEN,
                forward: None,
                strip_credentials: false,
                log_identifiers: false,
                bypass: None,
                pass_cors_preflight: false,
                body_budget: BodyBudget::new(DEFAULT_MAX_BUFFERED_BODY_BYTES),
                metrics: Default::default(),
            }),
        }
    }

    fn config_mut(&mut self) -> &mut Config {
        Arc::make_mut(&mut self.config)
    }

    /// Sets the mode (tenants may override it through their policy).
    pub fn mode(mut self, mode: Mode) -> Self {
        self.config_mut().mode = mode;
        self
    }

    /// Sets where claims are read from.
    pub fn sources(mut self, sources: Sources) -> Self {
        self.config_mut().sources = sources;
        self
    }

    /// Sets the verification limits.
    pub fn verify_options(mut self, options: VerifyOptions) -> Self {
        self.config_mut().options = options;
        self
    }

    /// Oldest accepted timestamped signature (default one hour).
    pub fn max_age(mut self, max_age: Duration) -> Self {
        let options = &mut self.config_mut().options;
        *options = options.clone().max_age(max_age.as_secs());
        self
    }

    /// Accepted clock skew for timestamps in the future (default 60 s).
    pub fn future_skew(mut self, skew: Duration) -> Self {
        let options = &mut self.config_mut().options;
        *options = options.clone().future_skew(skew.as_secs());
        self
    }

    /// Longest accepted identifier and tenant name, in bytes (default 256).
    /// A longer tenant name is refused (`credential_malformed`, in every mode)
    /// before it is looked up, cached, counted or logged.
    pub fn max_identifier_len(mut self, len: usize) -> Self {
        let options = &mut self.config_mut().options;
        *options = options.clone().max_identifier_len(len);
        self
    }

    /// The most bytes of request bodies buffered for identity extraction at
    /// once, across every request of every service this layer (and its
    /// clones) builds (default 32 MiB). Before reading a body, a request
    /// reserves its announced `Content-Length` (or the body limit when none
    /// is announced); when that would pass the budget it is answered 503
    /// `overloaded` with `Retry-After`, in every mode, without reading the
    /// body. The body is then read no further than its reservation: one
    /// longer than its `Content-Length` says is over the limit, like a body
    /// over [`Sources::body_limit`](crate::Sources::body_limit). The
    /// reservation is given back when the buffered body is dropped (the
    /// request finished, was refused, or was cancelled). Requests whose
    /// bodies are not read take nothing from it.
    pub fn max_buffered_body_bytes(mut self, bytes: usize) -> Self {
        self.config_mut().body_budget = BodyBudget::new(bytes);
        self
    }

    /// Shortest secret accepted from the provider, in bytes (default 16). A
    /// tenant whose key set holds a shorter secret is answered 500
    /// `misconfigured` and logged; the secret is never used to verify.
    pub fn min_secret_len(mut self, len: usize) -> Self {
        self.config_mut().min_secret_len = len.max(1);
        self
    }

    /// Replaces the clock (for tests, or a coarse cached clock).
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.config_mut().clock = Arc::new(clock);
        self
    }

    /// Forwards the verified identity to the inner service (an upstream) as
    /// headers, after deleting every client-sent copy of those headers in
    /// every spelling. For proxies; see [`ForwardHeaders`].
    pub fn forward_identity_headers(mut self, headers: ForwardHeaders) -> Self {
        self.config_mut().forward = Some(headers);
        self
    }

    /// Removes the claim before forwarding: the credential (signature,
    /// timestamp, token, and `Authorization` when it is a token source) and
    /// the claimed identifiers (user id, email, visitor id), from the headers
    /// they are read from in every spelling (`x_identity_signature`) and from
    /// the query parameters they are read from (the rest of the query kept as
    /// sent, in order), so the upstream sees only what the layer proved and
    /// its access log holds nothing to replay. Bodies are forwarded byte for
    /// byte, body fields included. Off by default; when kept, credential
    /// headers are marked sensitive.
    /// (Credential entries of `Sec-WebSocket-Protocol` are removed either way.)
    pub fn strip_credentials(mut self, strip: bool) -> Self {
        self.config_mut().strip_credentials = strip;
        self
    }

    /// Includes the verified identifier in the `debug` verdict events. Off by
    /// default: identifiers are personal data. Secrets, signatures and tokens
    /// are never logged.
    pub fn log_identifiers(mut self, log: bool) -> Self {
        self.config_mut().log_identifiers = log;
        self
    }

    /// Lets requests this predicate accepts through without any verification
    /// (health checks, public endpoints): no claim is read, no provider is
    /// asked, no identity or outcome is inserted. Forwarded identity headers
    /// are still stripped from them.
    ///
    /// ```
    /// # use tower_identity::{IdentityVerificationLayer, Identifier, Key, KeySet, Secret};
    /// # let keys = KeySet::single(Key::hmac(Identifier::UserId, Secret::text("a-long-random-secret-0123").unwrap()));
    /// let layer = IdentityVerificationLayer::new(keys)
    ///     .bypass(|req| req.uri.path().starts_with("/grpc.health.v1.Health/"));
    /// # let _ = layer;
    /// ```
    pub fn bypass(mut self, predicate: impl Fn(&RequestHead<'_>) -> bool + Send + Sync + 'static) -> Self {
        self.config_mut().bypass = Some(Arc::new(predicate));
        self
    }

    /// Lets CORS preflights (`OPTIONS` with `Origin` and
    /// `Access-Control-Request-Method`, see [`cors`](crate::cors)) pass to
    /// the inner service as anonymous, with no identity, in every mode; they
    /// are not verified and not counted as rejections. For setups where
    /// something inside this layer answers preflights; the usual way to serve
    /// browsers is a CORS layer outside, which answers them first.
    ///
    /// Off by default. With it on, any client (not only a browser) can send
    /// an `OPTIONS` request with those two headers past the layer: the inner
    /// service must treat it as the anonymous request it is (its
    /// [`IdentityOutcome`](crate::IdentityOutcome) is `Anonymous`, and a
    /// proxy's forwarded identity headers say so), never as verified.
    pub fn pass_cors_preflight(mut self, pass: bool) -> Self {
        self.config_mut().pass_cors_preflight = pass;
        self
    }

    /// This configuration as a [`HeadOnlyLayer`]: the same verification,
    /// from the request head only, with the inner service's body types kept
    /// (`Request<B>` in, `Response<ResBody>` out; no body wrapper for a
    /// framework to box again). Call it last, once configured.
    ///
    /// # Errors
    ///
    /// [`ReadsBody`] when the [`sources`](Self::sources) read JSON or form
    /// fields: a head-only layer would not see them.
    pub fn head_only(self) -> Result<HeadOnlyLayer, ReadsBody> {
        HeadOnlyLayer::new(self.config)
    }

    /// This configuration as a [`KeepResponseBodyLayer`]: the same
    /// verification (body sources included), answering with the inner
    /// service's own response body type (`Response<ResBody>` for
    /// `ResBody: From<Bytes>`, such as axum's `Body`; rejections made with
    /// `ResBody::from`), so that no framework boxes a body wrapper again.
    /// Call it last, once configured.
    pub fn keep_response_body(self) -> KeepResponseBodyLayer {
        KeepResponseBodyLayer::new(self)
    }

    /// Replaces the responder that builds rejection responses.
    pub fn responder(mut self, responder: impl Responder) -> Self {
        self.config_mut().responder = Arc::new(responder);
        self
    }
}

impl fmt::Debug for IdentityVerificationLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdentityVerificationLayer")
            .field("mode", &self.config.mode)
            .field("sources", &self.config.sources)
            .field("options", &self.config.options)
            .field("min_secret_len", &self.config.min_secret_len)
            .field("forward", &self.config.forward)
            .field("strip_credentials", &self.config.strip_credentials)
            .field("bypass", &self.config.bypass.is_some())
            .field("pass_cors_preflight", &self.config.pass_cors_preflight)
            .field("max_buffered_body_bytes", &self.config.body_budget.max())
            .finish_non_exhaustive()
    }
}

impl<S> Layer<S> for IdentityVerificationLayer {
    type Service = IdentityVerification<S>;

    fn layer(&self, inner: S) -> Self::Service {
        IdentityVerification::new(inner, self.config.clone())
    }
}
