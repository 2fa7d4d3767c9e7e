//! The auth service: `identity-proxy` as the external authorizer of a gateway
//! that is already there (nginx `auth_request`, ingress-nginx `auth-url`,
//! Traefik `ForwardAuth`, Caddy `forward_auth`, Envoy and Istio `ext_authz`).
//!
//! ```toml
//! [authz]
//! listen = "127.0.0.1:9191"       # HTTP checks
//! grpc_listen = "127.0.0.1:9192"  # Envoy ext_authz v3 (optional)
//! ```
//!
//! The gateway asks before it proxies; the answer carries the proven identity
//! as headers for the gateway to copy upstream. The decision is the proxy's
//! own: the same layer (sources, tenants, modes, provider) runs on a bodiless
//! request built from the gateway's description ([`check`]), so headers and
//! query parameters are read and body sources are absent (gateways send no
//! body). The auth listeners believe the gateway's description of the
//! original request, so they listen on their own addresses, never the
//! proxy's, and must be reachable by the gateway only.

mod check;
mod grpc;
mod http;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use tokio::net::TcpListener;

use crate::config::ConfigError;
use crate::live::Current;
use check::Checker;
pub use check::Checks;

/// The `[authz]` section of the configuration file.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct AuthzSection {
    /// The HTTP check listener (nginx, Traefik, Caddy).
    pub listen: Option<String>,
    /// The Envoy `ext_authz` gRPC listener.
    pub grpc_listen: Option<String>,
}

/// The auth listeners' addresses, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct AuthzSettings {
    pub listen: Option<SocketAddr>,
    pub grpc_listen: Option<SocketAddr>,
}

fn address(file: &Path, key: &str, text: &str) -> Result<SocketAddr, ConfigError> {
    text.parse().map_err(|_| ConfigError {
        file: file.to_owned(),
        key: key.to_owned(),
        problem: format!("{text:?} is not an address such as 127.0.0.1:9191"),
    })
}

impl AuthzSection {
    /// Checks the section. `proxy_listen` is the proxy's own address when it
    /// runs: an auth listener trusts what it is told about the original
    /// request, so it never shares an address with the public listener.
    pub fn build(&self, file: &Path, proxy_listen: Option<SocketAddr>) -> Result<AuthzSettings, ConfigError> {
        let listen = self.listen.as_deref().map(|t| address(file, "authz.listen", t)).transpose()?;
        let grpc_listen = self.grpc_listen.as_deref().map(|t| address(file, "authz.grpc_listen", t)).transpose()?;
        let problem = if listen.is_none() && grpc_listen.is_none() {
            Some("set listen, grpc_listen or both")
        } else if clash(listen, proxy_listen) || clash(grpc_listen, proxy_listen) {
            Some("an auth listener needs its own address, not the proxy's listen address")
        } else if clash(listen, grpc_listen) {
            Some("listen and grpc_listen need different addresses")
        } else {
            None
        };
        match problem {
            Some(problem) => {
                Err(ConfigError { file: file.to_owned(), key: "authz".to_owned(), problem: problem.to_owned() })
            }
            None => Ok(AuthzSettings { listen, grpc_listen }),
        }
    }
}

/// Two fixed addresses that are the same (port 0 picks a free port, so never clashes).
fn clash(a: Option<SocketAddr>, b: Option<SocketAddr>) -> bool {
    matches!((a, b), (Some(a), Some(b)) if a.port() != 0 && a == b)
}

/// Binds the configured auth listeners and serves them in the background,
/// with the identity layer of the `current` configuration deciding (each
/// reload's new keys, mode and forwarded headers apply to the next check).
pub async fn start(settings: &AuthzSettings, current: Current, header_read_timeout: Duration) -> std::io::Result<()> {
    let checker = Checker::new(current);
    if let Some(addr) = settings.listen {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        tracing::info!(%addr, "auth checks on http://{addr}");
        tokio::spawn(http::serve(listener, checker.clone(), header_read_timeout));
    }
    if let Some(addr) = settings.grpc_listen {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        tracing::info!(%addr, "ext_authz checks on http://{addr}");
        tokio::spawn(async move {
            if let Err(error) = grpc::serve(listener, checker).await {
                tracing::error!(%error, "the ext_authz listener stopped");
            }
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(listen: Option<&str>, grpc: Option<&str>, proxy: Option<&str>) -> Result<AuthzSettings, String> {
        let section = AuthzSection { listen: listen.map(str::to_owned), grpc_listen: grpc.map(str::to_owned) };
        section.build(Path::new("f.toml"), proxy.map(|p| p.parse().unwrap())).map_err(|e| e.to_string())
    }

    #[test]
    fn auth_listeners_have_their_own_addresses() {
        let ok = build(Some("127.0.0.1:9191"), Some("127.0.0.1:9192"), Some("127.0.0.1:8080")).unwrap();
        assert_eq!(ok.listen, Some("127.0.0.1:9191".parse().unwrap()));
        assert!(build(Some("127.0.0.1:9191"), None, None).is_ok(), "no proxy listener: nothing to clash with");
        assert!(build(Some("127.0.0.1:0"), Some("127.0.0.1:0"), Some("127.0.0.1:0")).is_ok(), "port 0 never clashes");
        for (listen, grpc, proxy, problem) in [
            (None, None, None, "set listen, grpc_listen or both"),
            (Some("127.0.0.1:8080"), None, Some("127.0.0.1:8080"), "its own address"),
            (None, Some("127.0.0.1:8080"), Some("127.0.0.1:8080"), "its own address"),
            (Some("127.0.0.1:9191"), Some("127.0.0.1:9191"), None, "different addresses"),
            (Some("localhost"), None, None, "is not an address"),
        ] {
            let e = build(listen, grpc, proxy).unwrap_err();
            assert!(e.contains("f.toml") && e.contains(problem), "{e}");
        }
    }
}
