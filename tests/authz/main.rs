//! `identity-proxy` as the auth service of existing gateways: real nginx and
//! real Caddy in front of a recording upstream, and protocol-conformance
//! checks for Traefik's `ForwardAuth` and Envoy's `ext_authz`, all on
//! 127.0.0.1. Tests that need nginx or Caddy fail when `CI` is set and the
//! binary cannot start, and are skipped with a printed reason otherwise.

mod cases;
mod conformance;
mod gateways;
mod support;
