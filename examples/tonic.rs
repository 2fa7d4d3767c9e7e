//! tonic: a gRPC service behind `IdentityVerificationLayer`, with the
//! standard gRPC health service explicitly exempted.
//!
//! ```sh
//! cargo run --example tonic         # listens on 127.0.0.1:50051 (set ADDR to change)
//! ```
//!
//! Clients send the identity as metadata (`x-user-id`,
//! `x-identity-signature`); without a valid signature they get
//! `UNAUTHENTICATED` before the handler runs. The handler reads the
//! `VerifiedIdentity` from `request.extensions()`.
//!
//! ## Layout
//!
//! - **whoami**: to stay free of protoc, the authenticated service reuses the
//!   code generated for `grpc.health.v1.Health` (shipped by tonic-health): its
//!   `Check` answers `SERVING` and returns the caller's verified id in the
//!   `x-whoami` response metadata. So that it does not collide with the real
//!   health service, it is mounted under the path prefix `/whoami`; generated
//!   clients reach it with `HealthClient::with_origin(channel,
//!   "http://host:port/whoami")`. Your own services would simply be added with
//!   `add_service`.
//! - **health**: tonic-health's reporter at `/grpc.health.v1.Health/`, for
//!   load balancers and orchestrators that probe without credentials.
//!
//! ## Exemption
//!
//! The layer is installed server-wide with `Server::builder().layer(...)`,
//! and its [`bypass`](IdentityVerificationLayer::bypass) predicate lets the
//! requests for the listed gRPC services through without any verification
//! (no claim extraction, no key lookup; a second layer in `Mode::Off` would
//! still do both). A service added later is therefore verified unless it is
//! exempted by name: the server fails closed. The router matches the same
//! literal path, so an exempt prefix reaches only that service.
//!
//! The alternative, wrapping each protected service in the layer, fails open
//! for a service added without it.
//!
//! `tests/it/examples.rs` drives this server over 127.0.0.1 with a tonic client.
#![allow(dead_code)] // `main` is unused when tests/it/examples.rs includes this file.

use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::metadata::MetadataValue;
use tonic::service::Routes;
use tonic::transport::Server;
use tonic_health::ServingStatus;
use tonic_health::pb::health_server::{Health, HealthServer, SERVICE_NAME as HEALTH};
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};
use tower_identity::{Identifier, IdentityVerificationLayer, Key, KeySet, Secret, VerifiedIdentity, sign};

/// The demo secret. In production it comes from your secret store.
pub const DEMO_SECRET: &str = "grpc-demo-secret-do-not-use-in-production";

/// The path prefix the whoami service is mounted under.
pub const WHOAMI_PREFIX: &str = "/whoami";

/// What your backend computes for a user and hands to the client.
pub fn signature(user_id: &str) -> String {
    sign::hmac(&Secret::text(DEMO_SECRET).expect("valid secret"), user_id)
}

/// Answers `SERVING` to verified callers, with their id in `x-whoami`.
pub struct WhoAmI;

#[tonic::async_trait]
impl Health for WhoAmI {
    async fn check(
        &self,
        request: tonic::Request<HealthCheckRequest>,
    ) -> Result<tonic::Response<HealthCheckResponse>, tonic::Status> {
        // The layer rejected every request without a valid signature, so this
        // is always present; a missing one means the layer is not installed.
        let identity = request
            .extensions()
            .get::<VerifiedIdentity>()
            .ok_or_else(|| tonic::Status::internal("IdentityVerificationLayer is not installed"))?;
        let whoami = MetadataValue::try_from(identity.id())
            .map_err(|_| tonic::Status::internal("the id is not ASCII metadata"))?;
        let mut response = tonic::Response::new(HealthCheckResponse { status: ServingStatus::Serving as i32 });
        response.metadata_mut().insert("x-whoami", whoami);
        Ok(response)
    }

    type WatchStream = tokio_stream::Empty<Result<HealthCheckResponse, tonic::Status>>;

    async fn watch(
        &self,
        _request: tonic::Request<HealthCheckRequest>,
    ) -> Result<tonic::Response<Self::WatchStream>, tonic::Status> {
        Err(tonic::Status::unimplemented("watch"))
    }
}

/// `layer` with the requests for the gRPC services named in `services`
/// (full names, e.g. `grpc.health.v1.Health`) let through unverified.
pub fn verify_except(layer: IdentityVerificationLayer, services: &[&str]) -> IdentityVerificationLayer {
    let exempt: Box<[String]> = services.iter().map(|s| format!("/{s}/")).collect();
    layer.bypass(move |req| exempt.iter().any(|prefix| req.uri.path().starts_with(prefix.as_str())))
}

/// Serves whoami (verified) and the health service (exempt) on `listener`.
pub async fn serve(listener: TcpListener) -> Result<(), tonic::transport::Error> {
    let keys = KeySet::single(Key::hmac(Identifier::UserId, Secret::text(DEMO_SECRET).expect("valid secret")));
    let layer = verify_except(IdentityVerificationLayer::new(keys), &[HEALTH]);

    let (reporter, health) = tonic_health::server::health_reporter();
    reporter.set_service_status("whoami", ServingStatus::Serving).await;
    let routes: Routes =
        Routes::new(health).into_axum_router().nest_service(WHOAMI_PREFIX, HealthServer::new(WhoAmI)).into();

    Server::builder().layer(layer).add_routes(routes).serve_with_incoming(TcpListenerStream::new(listener)).await
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::var("ADDR").unwrap_or_else(|_| "127.0.0.1:50051".into());
    let listener = TcpListener::bind(&addr).await?;
    let addr = listener.local_addr()?;

    // gRPC over curl: an empty HealthCheckRequest is 5 zero bytes (flag + length).
    let grpc = "printf '\\0\\0\\0\\0\\0' | curl -s --http2-prior-knowledge -H 'content-type: application/grpc' \
                -H 'te: trailers' --data-binary @- -o /dev/null -D -";
    let signed = signature("user-42");
    println!("listening on http://{addr} (gRPC, h2c)\n");
    println!("# from Rust: HealthClient::with_origin(channel, \"http://{addr}{WHOAMI_PREFIX}\".parse()?)");
    println!("#            with x-user-id / x-identity-signature metadata\n");
    println!("# whoami, signed: grpc-status 0 and x-whoami: user-42");
    println!(
        "{grpc} -H 'x-user-id: user-42' -H 'x-identity-signature: {signed}' http://{addr}{WHOAMI_PREFIX}/{HEALTH}/Check\n"
    );
    println!("# whoami, no signature: grpc-status 16 (UNAUTHENTICATED)");
    println!("{grpc} http://{addr}{WHOAMI_PREFIX}/{HEALTH}/Check\n");
    println!("# the standard health check, exempt: grpc-status 0, no credentials needed");
    println!("{grpc} http://{addr}/{HEALTH}/Check");
    println!("# or, with grpc-proto's health.proto: grpcurl -plaintext -proto health.proto {addr} {HEALTH}/Check");

    serve(listener).await?;
    Ok(())
}
