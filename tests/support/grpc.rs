//! gRPC over 127.0.0.1: a client channel and health-check requests.

use std::net::SocketAddr;

use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::HealthCheckRequest;

/// A channel to the gRPC server on `addr`, connected.
pub async fn grpc_channel(addr: SocketAddr) -> Channel {
    Endpoint::from_shared(format!("http://{addr}")).unwrap().connect().await.unwrap()
}

/// A health check of `service` carrying the given metadata (credentials).
pub fn health_check(service: &str, metadata: &[(&'static str, &str)]) -> tonic::Request<HealthCheckRequest> {
    let mut req = tonic::Request::new(HealthCheckRequest { service: service.into() });
    for (k, v) in metadata {
        req.metadata_mut().insert(*k, v.parse().unwrap());
    }
    req
}
