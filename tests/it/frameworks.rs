//! The same layer value in real axum, tonic and hyper servers on 127.0.0.1,
//! driven by real clients.

use std::convert::Infallible;
use std::net::SocketAddr;

use axum::Router;
use axum::routing::get;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use tower_identity::layer::body::RequestBody;
use tower_identity::{
    Identifier, IdentityOutcome, IdentityVerificationLayer, Key, KeySet, Mode, VerifiedIdentity, sign,
};

use crate::support::{
    SECRET, Server, client, fetch, grpc_channel, health_check, listener, secret, serve_hyper, signed_headers, spawn,
};

fn layer(mode: Mode) -> IdentityVerificationLayer {
    IdentityVerificationLayer::new(KeySet::single(Key::hmac(Identifier::UserId, secret()).with_id("k1"))).mode(mode)
}

/// The status and body of a GET of `path` on `addr`.
async fn visit(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> (StatusCode, String) {
    let a = fetch(crate::support::get(&format!("http://{addr}{path}"), headers)).await;
    (a.status, a.body)
}

fn signed(user: &str) -> [(&'static str, String); 2] {
    signed_headers(SECRET, user)
}

async fn me(identity: VerifiedIdentity) -> String {
    format!("verified {} with {}", identity.id(), identity.key_id().unwrap_or("-"))
}

async fn maybe(identity: Option<VerifiedIdentity>, outcome: IdentityOutcome) -> String {
    match identity {
        Some(id) => format!("hello {}", id.id()),
        None => format!("hello stranger ({})", outcome.as_str()),
    }
}

#[tokio::test]
async fn axum_route_layer_and_extractors() {
    let app = Router::new()
        .route("/me", get(me))
        .route_layer(layer(Mode::Required))
        .merge(Router::new().route("/maybe", get(maybe)).route_layer(layer(Mode::Optional)))
        .merge(Router::new().route("/report", get(me)).route_layer(layer(Mode::ReportOnly)))
        .route("/unprotected", get(me));
    let server = Server::axum(app, Default::default()).await;
    let addr = server.addr;

    let h = signed("42");
    let headers: Vec<(&str, &str)> = h.iter().map(|(k, v)| (*k, v.as_str())).collect();
    assert_eq!(visit(addr, "/me", &headers).await, (StatusCode::OK, "verified 42 with k1".into()));
    let (status, body) = visit(addr, "/me", &[("x-user-id", "42"), ("x-identity-signature", &"0".repeat(64))]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(body.contains("signature_invalid"), "{body}");
    let (status, body) = visit(addr, "/me", &[("x-user-id", "42")]).await;
    assert_eq!((status, body.contains("credential_missing")), (StatusCode::UNAUTHORIZED, true));

    // Option<VerifiedIdentity> serves anonymous and verified visitors.
    assert_eq!(visit(addr, "/maybe", &headers).await, (StatusCode::OK, "hello 42".into()));
    assert_eq!(visit(addr, "/maybe", &[]).await, (StatusCode::OK, "hello stranger (anonymous)".into()));
    let (status, _) = visit(addr, "/maybe", &[("x-user-id", "42"), ("x-identity-signature", &"0".repeat(64))]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // Report-only lets a bad credential through, but a handler demanding a
    // verified identity still refuses it.
    let (status, body) =
        visit(addr, "/report", &[("x-user-id", "42"), ("x-identity-signature", &"0".repeat(64))]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(body.contains("credential_missing"), "{body}");

    // A handler asking for the identity on a route without the layer: 500 naming the layer.
    let (status, body) = visit(addr, "/unprotected", &headers).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(body.contains("IdentityVerificationLayer"), "{body}");
    drop(server);
}

mod grpc {
    use super::*;
    use tonic::{Request as GrpcRequest, Response as GrpcResponse, Status};
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::health_server::{Health, HealthServer};
    use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse, health_check_response::ServingStatus};

    /// A health service whose `check` reports which user called it.
    pub struct WhoAmI;

    #[tonic::async_trait]
    impl Health for WhoAmI {
        async fn check(
            &self,
            req: GrpcRequest<HealthCheckRequest>,
        ) -> Result<GrpcResponse<HealthCheckResponse>, Status> {
            let identity = req.extensions().get::<VerifiedIdentity>().ok_or_else(|| Status::internal("no identity"))?;
            if identity.user_id() != Some(req.get_ref().service.as_str()) {
                return Err(Status::permission_denied("identity does not match"));
            }
            Ok(GrpcResponse::new(HealthCheckResponse { status: ServingStatus::Serving as i32 }))
        }

        type WatchStream = tonic::codegen::tokio_stream::Empty<Result<HealthCheckResponse, Status>>;

        async fn watch(
            &self,
            _req: GrpcRequest<HealthCheckRequest>,
        ) -> Result<GrpcResponse<Self::WatchStream>, Status> {
            Err(Status::unimplemented("watch"))
        }
    }

    #[tokio::test]
    async fn tonic_server_layer() {
        let (l, addr) = listener().await;
        let server = spawn(async move {
            tonic::transport::Server::builder()
                .layer(layer(Mode::Required))
                .add_service(HealthServer::new(WhoAmI))
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(l))
                .await
                .unwrap()
        });
        let mut client = HealthClient::new(grpc_channel(addr).await);

        let err = client.check(HealthCheckRequest { service: "42".into() }).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unauthenticated);

        let req = health_check("42", &[("x-user-id", "42"), ("x-identity-signature", &"0".repeat(64))]);
        let err = client.check(req).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unauthenticated);

        let req = health_check("42", &[("x-user-id", "42"), ("x-identity-signature", &sign::hmac(&secret(), "42"))]);
        let res = client.check(req).await.unwrap();
        assert_eq!(res.get_ref().status, ServingStatus::Serving as i32);
        drop(server);
    }

    /// With the `tonic` feature, one service can be wrapped and given to
    /// `add_service` (the layered service keeps the inner one's name).
    #[cfg(feature = "tonic")]
    #[tokio::test]
    async fn tonic_add_service_with_one_layered_service() {
        use tower::Layer;
        let (l, addr) = listener().await;
        let server = spawn(async move {
            tonic::transport::Server::builder()
                .add_service(layer(Mode::Required).layer(HealthServer::new(WhoAmI)))
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(l))
                .await
                .unwrap()
        });
        let mut client = HealthClient::new(grpc_channel(addr).await);
        let err = client.check(HealthCheckRequest { service: "7".into() }).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unauthenticated);
        let req = health_check("7", &[("x-user-id", "7"), ("x-identity-signature", &sign::hmac(&secret(), "7"))]);
        assert_eq!(client.check(req).await.unwrap().get_ref().status, ServingStatus::Serving as i32);
        drop(server);
    }
}

#[tokio::test]
async fn hyper_tower_to_hyper_service() {
    let svc = tower::ServiceBuilder::new().layer(layer(Mode::Required)).service_fn(
        |req: Request<RequestBody<hyper::body::Incoming>>| async move {
            let user = req.extensions().get::<VerifiedIdentity>().map(|i| i.id().to_owned()).unwrap_or_default();
            let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(format!("{user}:{}", body.len())))))
        },
    );
    let (server, addr) = serve_hyper(svc).await;
    let h = signed("7");
    // The request body streams through untouched.
    let mut b = Request::post(format!("http://{addr}/"));
    for (k, v) in &h {
        b = b.header(*k, v.as_str());
    }
    let res = client().request(b.body(Full::new(Bytes::from(vec![b'x'; 100_000]))).unwrap()).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.into_body().collect().await.unwrap().to_bytes(), "7:100000");
    let (status, body) = visit(addr, "/", &[("x-user-id", "7")]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(body.contains("credential_missing"));
    drop(server);
}
