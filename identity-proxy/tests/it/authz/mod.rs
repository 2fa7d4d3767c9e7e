//! `identity-proxy` as the auth service of existing gateways: real nginx and
//! real Caddy in front of a recording upstream, and protocol-conformance
//! checks for Traefik's `ForwardAuth` and Envoy's `ext_authz`, all on
//! 127.0.0.1. Tests that need nginx or Caddy fail when `CI` is set and the
//! binary cannot start, and are skipped with a printed reason otherwise.

mod cases;
mod conformance;
mod gateways;
mod support;

/// The README shows the gateway configurations the tests run, unchanged
/// (each file from its first line that is not a leading comment).
#[test]
fn readme_shows_the_tested_gateway_configurations() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    for file in ["nginx.conf", "ingress-nginx.yaml", "traefik.yml", "Caddyfile", "envoy.yaml", "istio.yaml"] {
        let text = std::fs::read_to_string(root.join("examples/gateways").join(file)).unwrap();
        let body: Vec<&str> = text.lines().skip_while(|l| l.starts_with('#') || l.trim().is_empty()).collect();
        let body = body.join("\n");
        assert!(readme.contains(body.trim_end()), "README.md does not show examples/gateways/{file} as it is");
    }
}
