//! The peers the layer is measured against: what an application writes by
//! hand instead of using the crate. Each does the same check as the layer's
//! case it is compared with, and nothing less: a peer that skipped work would
//! make the layer look slower than the choice a user actually faces.

use std::future::{Ready, ready};
use std::task::{Context, Poll};

use axum::body::Body as AxumBody;
use axum::extract::{Request as AxumRequest, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response as AxumResponse};
use futures_util::future::Either;
use hmac::{Hmac, KeyInit, Mac};
use http::header::AUTHORIZATION;
use http::{HeaderMap, HeaderName, Request, Response, StatusCode};
use sha2::Sha256;
use tower::{Layer, Service};

/// The two headers of the header-HMAC case.
const USER_ID: HeaderName = HeaderName::from_static("x-user-id");
const SIGNATURE: HeaderName = HeaderName::from_static("x-identity-signature");

/// An HMAC-SHA256 keyed once with `secret`, cloned per request.
pub fn prekeyed(secret: &[u8]) -> Hmac<Sha256> {
    Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length")
}

/// The identity a hand-written check leaves in the extensions.
#[derive(Clone)]
#[allow(dead_code)] // read by handlers in a real application
pub struct UserId(String);

/// The header-HMAC check as an application writes it: the user id and the
/// 32-byte tag from their headers, one pre-keyed HMAC, a constant-time
/// comparison.
fn check(mac: &Hmac<Sha256>, headers: &HeaderMap) -> Option<UserId> {
    let user = headers.get(USER_ID)?.to_str().ok()?;
    let mut tag = [0u8; 32];
    hex::decode_to_slice(headers.get(SIGNATURE)?.as_bytes(), &mut tag).ok()?;
    let mut mac = mac.clone();
    mac.update(user.as_bytes());
    mac.verify_slice(&tag).ok()?;
    Some(UserId(user.to_owned()))
}

/// An empty 401 with the inner service's body type.
fn unauthorized<B: Default>() -> Response<B> {
    let mut res = Response::new(B::default());
    *res.status_mut() = StatusCode::UNAUTHORIZED;
    res
}

/// A hand-written tower layer around one header check: the identity the
/// check returns into the extensions and the request otherwise unchanged
/// (same body type) to the inner service, or an empty 401.
#[derive(Clone)]
pub struct CheckLayer<C>(C);

/// A check of a request's headers, for [`CheckLayer`].
pub trait HeaderCheck: Clone {
    type Identity: Clone + Send + Sync + 'static;
    fn check(&self, headers: &HeaderMap) -> Option<Self::Identity>;
}

impl<S, C: Clone> Layer<S> for CheckLayer<C> {
    type Service = Checked<S, C>;
    fn layer(&self, inner: S) -> Checked<S, C> {
        Checked { inner, check: self.0.clone() }
    }
}

#[derive(Clone)]
pub struct Checked<S, C> {
    inner: S,
    check: C,
}

impl<S, C, B, RB> Service<Request<B>> for Checked<S, C>
where
    S: Service<Request<B>, Response = Response<RB>>,
    C: HeaderCheck,
    RB: Default,
{
    type Response = Response<RB>;
    type Error = S::Error;
    type Future = Either<S::Future, Ready<Result<Response<RB>, S::Error>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        match self.check.check(req.headers()) {
            Some(identity) => {
                req.extensions_mut().insert(identity);
                Either::Left(self.inner.call(req))
            }
            None => Either::Right(ready(Ok(unauthorized()))),
        }
    }
}

/// The naive layer: [`check`] with a pre-keyed HMAC.
pub type NaiveLayer = CheckLayer<NaiveHmac>;

#[derive(Clone)]
pub struct NaiveHmac(Hmac<Sha256>);

impl HeaderCheck for NaiveHmac {
    type Identity = UserId;
    fn check(&self, headers: &HeaderMap) -> Option<UserId> {
        check(&self.0, headers)
    }
}

impl NaiveLayer {
    pub fn new(secret: &[u8]) -> NaiveLayer {
        CheckLayer(NaiveHmac(prekeyed(secret)))
    }
}

/// The same check in an axum `from_fn_with_state` middleware, the HMAC keyed
/// once and handed in as state.
pub async fn from_fn_hmac(State(mac): State<Hmac<Sha256>>, mut req: AxumRequest, next: Next) -> AxumResponse {
    let Some(user) = check(&mac, req.headers()) else {
        return StatusCode::UNAUTHORIZED.into_response();
    };
    req.extensions_mut().insert(user);
    next.run(req).await
}

/// The fields of the JSON-body case, as an application declares them.
#[derive(serde::Deserialize)]
struct JsonIdentity<'a> {
    #[serde(borrow)]
    user_id: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    user_hash: std::borrow::Cow<'a, str>,
}

/// The JSON-body case by hand: buffer the body (`to_bytes`, the same 64 KiB
/// limit as the layer), deserialize the two fields, the pre-keyed HMAC, then
/// hand the buffered bytes on as the body.
pub async fn from_fn_json(State(mac): State<Hmac<Sha256>>, req: AxumRequest, next: Next) -> AxumResponse {
    let (parts, body) = req.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, 64 * 1024).await else {
        return StatusCode::PAYLOAD_TOO_LARGE.into_response();
    };
    let Ok(fields) = serde_json::from_slice::<JsonIdentity<'_>>(&bytes) else {
        return StatusCode::UNAUTHORIZED.into_response();
    };
    let mut tag = [0u8; 32];
    if hex::decode_to_slice(fields.user_hash.as_bytes(), &mut tag).is_err() {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let mut mac = mac.clone();
    mac.update(fields.user_id.as_bytes());
    if mac.verify_slice(&tag).is_err() {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let user = UserId(fields.user_id.into_owned());
    let mut req = AxumRequest::from_parts(parts, AxumBody::from(bytes));
    req.extensions_mut().insert(user);
    next.run(req).await
}

/// What `jsonwebtoken::decode` returns the claims into: the usual small struct.
#[derive(Clone, serde::Deserialize)]
#[allow(dead_code)] // read by handlers in a real application
pub struct JwtClaims {
    pub email: String,
    pub aud: String,
    pub iat: u64,
    pub exp: u64,
}

/// A tower layer around `jsonwebtoken::decode`: the bearer token of
/// `Authorization`, HS256 only, the audience and `exp` checked, the claims
/// into the extensions.
pub type JsonwebtokenLayer = CheckLayer<Jsonwebtoken>;

#[derive(Clone)]
pub struct Jsonwebtoken {
    key: jsonwebtoken::DecodingKey,
    validation: jsonwebtoken::Validation,
}

impl JsonwebtokenLayer {
    pub fn new(secret: &[u8], audience: &str) -> JsonwebtokenLayer {
        use jsonwebtoken::{Algorithm, DecodingKey, Validation};
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_audience(&[audience]);
        assert!(validation.validate_exp && validation.required_spec_claims.contains("exp"));
        CheckLayer(Jsonwebtoken { key: DecodingKey::from_secret(secret), validation })
    }

    /// Decodes `token` into the claims, or `None` when it does not verify.
    pub fn decode(&self, token: &str) -> Option<JwtClaims> {
        let Jsonwebtoken { key, validation } = &self.0;
        jsonwebtoken::decode::<JwtClaims>(token, key, validation).ok().map(|data| data.claims)
    }
}

impl HeaderCheck for Jsonwebtoken {
    type Identity = JwtClaims;
    fn check(&self, headers: &HeaderMap) -> Option<JwtClaims> {
        let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
        let token = value.strip_prefix("Bearer ")?;
        jsonwebtoken::decode::<JwtClaims>(token, &self.key, &self.validation).ok().map(|data| data.claims)
    }
}
