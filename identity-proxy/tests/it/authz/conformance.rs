//! Protocol conformance without the gateways themselves (Traefik and Envoy
//! are not installable here): requests to the auth listeners shaped exactly
//! as Traefik's `ForwardAuth` and Envoy's `ext_authz` send them, the 400 for
//! a check that describes no request, and fail-closed provider errors.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;

use envoy_types::ext_authz::v3::pb::{CheckRequest, CheckResponse, HeaderAppendAction, HttpResponse};
use envoy_types::pb::envoy::config::core::v3::{HeaderMap as EnvoyHeaderMap, HeaderValue as EnvoyHeader};
use envoy_types::pb::envoy::service::auth::v3::AttributeContext;
use envoy_types::pb::envoy::service::auth::v3::attribute_context::{HttpRequest, Request as EnvoyRequest};
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;

use crate::authz::cases::{self, Case, Expect, SPOOFS};
use crate::authz::support::{Authz, Client, Upstream, example, identity_headers, start_authz};

async fn authz() -> (Authz, Upstream) {
    let upstream = Upstream::start().await;
    let config = cases::config(&format!("upstream = \"http://{}\"", upstream.addr()));
    (start_authz(&config, &cases::SECRETS), upstream)
}

fn assert_rejection(status: u16, body: &str, challenge: Option<&str>, case: &str) {
    assert_eq!(status, 401, "{case}: {body}");
    let json: serde_json::Value = serde_json::from_str(body).unwrap_or_else(|_| panic!("{case}: not JSON: {body}"));
    let code = json["error"].as_str().unwrap();
    assert!(challenge.is_some_and(|c| c.contains(code)), "{case}: WWW-Authenticate {challenge:?}");
}

/// Traefik's `ForwardAuth`: every client header, plus its `X-Forwarded-*` description.
fn traefik_headers(case: &Case) -> Vec<(String, String)> {
    let mut headers = case.headers.clone();
    for (name, value) in [
        ("X-Forwarded-Method", "GET"),
        ("X-Forwarded-Proto", "https"),
        ("X-Forwarded-Host", "chat.example.com"),
        ("X-Forwarded-Uri", case.target.as_str()),
        ("X-Forwarded-For", "203.0.113.7"),
    ] {
        headers.push((name.to_owned(), value.to_owned()));
    }
    headers
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traefik_forward_auth_protocol_conformance() {
    let traefik = example("traefik.yml", &[("AUTHZ", "127.0.0.1:9191".to_owned())]);
    for name in [
        "X-Verified-User-Id",
        "X-Verified-Email",
        "X-Verified-Visitor-Id",
        "X-Verified-Tenant",
        "X-Verified-Key-Id",
        "X-Identity-Outcome",
    ] {
        assert!(traefik.contains(&format!("- {name}")), "traefik.yml: authResponseHeaders lacks {name}");
    }
    let (authz, upstream) = authz().await;
    let client = Client::new();
    for case in cases::cases(2) {
        let answer = client.get(authz.http, "/", &traefik_headers(&case)).await;
        match &case.expect {
            Expect::Pass(want) => {
                assert_eq!((answer.status.as_u16(), answer.body.as_str()), (200, ""), "{}", case.name);
                assert_eq!(identity_headers(&answer.headers), cases::expected(want), "{}", case.name);
                assert_eq!(answer.headers["cache-control"], "no-store");
            }
            Expect::Reject => {
                let challenge = answer.headers.get("www-authenticate").and_then(|v| v.to_str().ok());
                assert_rejection(answer.status.as_u16(), &answer.body, challenge, &case.name);
            }
        }
    }
    assert_eq!(upstream.calls(), 0, "the auth listener never proxies");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_check_that_describes_no_request_is_400_never_a_pass() {
    let (authz, upstream) = authz().await;
    let client = Client::new();
    let valid = cases::cases(3).into_iter().find(|c| c.name.starts_with("hmac-valid-header")).unwrap();
    let described = |extra: &[(&str, &str)]| {
        let mut h = valid.headers.clone();
        h.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
        h
    };
    for (what, headers) in [
        ("no description", described(&[])),
        ("no URI", described(&[("X-Original-Method", "GET")])),
        ("no method", described(&[("X-Original-URI", "/chat")])),
        ("absolute URI", described(&[("X-Original-Method", "GET"), ("X-Original-URI", "http://other.example/")])),
        ("relative URI", described(&[("X-Original-Method", "GET"), ("X-Original-URI", "chat")])),
        (
            "conventions disagree",
            described(&[("X-Original-Method", "GET"), ("X-Original-URI", "/a"), ("X-Forwarded-Uri", "/b")]),
        ),
    ] {
        let answer = client.get(authz.http, "/", &headers).await;
        assert_eq!(answer.status, 400, "{what}: {}", answer.body);
        assert!(answer.body.contains("\"bad_request\""), "{what}: {}", answer.body);
        assert!(identity_headers(&answer.headers).is_empty(), "{what}: {:?}", answer.headers);
    }
    // The same client headers, described, pass: the 400s were the description's.
    let answer =
        client.get(authz.http, "/", &described(&[("X-Original-Method", "GET"), ("X-Original-URI", "/chat")])).await;
    assert_eq!(answer.status, 200);
    assert_eq!(upstream.calls(), 0, "the auth listener never proxies");
}

/// A `CheckRequest` as Envoy sends it: method, path with query, lower-case
/// header names with the pseudo-headers, in `headers` or (with
/// `encode_raw_headers`) in `header_map`.
fn check_request(case: &Case, raw: bool) -> CheckRequest {
    let mut headers: Vec<(String, String)> = vec![
        (":authority".into(), "chat.example.com".into()),
        (":method".into(), "GET".into()),
        (":path".into(), case.target.clone()),
        (":scheme".into(), "https".into()),
        ("x-request-id".into(), "b5c7e3a0-0000-4000-8000-000000000000".into()),
    ];
    headers.extend(case.headers.iter().map(|(k, v)| (k.to_ascii_lowercase(), v.clone())));
    let mut http = HttpRequest {
        id: "1".into(),
        method: "GET".into(),
        path: case.target.clone(),
        host: "chat.example.com".into(),
        scheme: "https".into(),
        protocol: "HTTP/1.1".into(),
        ..HttpRequest::default()
    };
    if raw {
        let headers =
            headers.into_iter().map(|(key, v)| EnvoyHeader { key, raw_value: v.into_bytes(), ..Default::default() });
        http.header_map = Some(EnvoyHeaderMap { headers: headers.collect() });
    } else {
        http.headers = headers.into_iter().collect::<HashMap<_, _>>();
    }
    let request = EnvoyRequest { http: Some(http), ..EnvoyRequest::default() };
    CheckRequest { attributes: Some(AttributeContext { request: Some(request), ..AttributeContext::default() }) }
}

async fn envoy(addr: SocketAddr, request: CheckRequest) -> CheckResponse {
    let mut client = AuthorizationClient::connect(format!("http://{addr}")).await.unwrap();
    client.check(request).await.unwrap().into_inner()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_ext_authz_protocol_conformance() {
    let envoy_yaml = example(
        "envoy.yaml",
        &[
            ("AUTHZ_HOST", "127.0.0.1".into()),
            ("AUTHZ_PORT", "9192".into()),
            ("LISTEN_PORT", "8080".into()),
            ("UPSTREAM_HOST", "127.0.0.1".into()),
            ("UPSTREAM_PORT", "3000".into()),
        ],
    );
    assert!(envoy_yaml.contains("envoy.service.auth.v3") || envoy_yaml.contains("transport_api_version: V3"));
    let (authz, upstream) = authz().await;
    let grpc = authz.grpc.unwrap();
    for (n, case) in cases::cases(4).into_iter().enumerate() {
        let answer = envoy(grpc, check_request(&case, n % 3 == 0)).await;
        let code = answer.status.as_ref().map_or(-1, |s| s.code);
        match (&case.expect, answer.http_response) {
            (Expect::Pass(want), Some(HttpResponse::OkResponse(ok))) => {
                assert_eq!(code, 0, "{}", case.name);
                let set: BTreeMap<String, Vec<String>> = ok
                    .headers
                    .iter()
                    .map(|o| {
                        assert_eq!(o.append_action, HeaderAppendAction::OverwriteIfExistsOrAdd as i32, "{}", case.name);
                        let h = o.header.as_ref().unwrap();
                        (h.key.clone(), vec![h.value.clone()])
                    })
                    .collect();
                assert_eq!(set, cases::expected(want), "{}", case.name);
                // Every other client-sent spelling goes; a name that is set is not also removed.
                let spoofs: BTreeSet<String> = SPOOFS.iter().map(|s| s.to_ascii_lowercase()).collect();
                let removed: BTreeSet<String> = ok.headers_to_remove.iter().cloned().collect();
                let want_removed: BTreeSet<String> = spoofs.into_iter().filter(|s| !set.contains_key(s)).collect();
                assert_eq!(removed, want_removed, "{}", case.name);
            }
            (Expect::Reject, Some(HttpResponse::DeniedResponse(denied))) => {
                assert_eq!(code, 16, "{}: UNAUTHENTICATED", case.name);
                let status = denied.status.as_ref().map_or(0, |s| s.code);
                let challenge =
                    denied.headers.iter().filter_map(|o| o.header.as_ref()).find(|h| h.key == "www-authenticate");
                assert_rejection(status as u16, &denied.body, challenge.map(|h| h.value.as_str()), &case.name);
            }
            (expect, got) => panic!("{}: expected {expect:?}, got {got:?} (status {code})", case.name),
        }
    }
    // A check that describes no HTTP request is denied 400, never a pass.
    let answer = envoy(grpc, CheckRequest::default()).await;
    assert_eq!(answer.status.map(|s| s.code), Some(3), "INVALID_ARGUMENT");
    let Some(HttpResponse::DeniedResponse(denied)) = answer.http_response else { panic!("not denied") };
    assert_eq!(denied.status.map(|s| s.code), Some(400));
    assert_eq!(upstream.calls(), 0, "the auth listener never proxies");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_secret_provider_is_503_on_both_listeners_and_only_authz_needs_no_upstream() {
    let closed = crate::authz::support::free_addr();
    let config = "mode = \"required\"\nreload_poll_secs = 0\n[authz]\nlisten = \"127.0.0.1:0\"\n\
                  grpc_listen = \"127.0.0.1:0\"\n[postgres]\nurl_file = \"pg.txt\"\nlookup_timeout_secs = 2\n\
                  listen_notify = false\n";
    let url = format!("postgres://nobody@{closed}/none");
    let authz = start_authz(config, &[("pg.txt", url.as_str())]);
    let case = cases::cases(5).into_iter().find(|c| c.name.starts_with("hmac-valid-header")).unwrap();
    let mut headers = case.headers.clone();
    headers.push(("X-Original-Method".into(), "GET".into()));
    headers.push(("X-Original-URI".into(), case.target.clone()));
    let answer = Client::new().get(authz.http, "/", &headers).await;
    assert_eq!(answer.status, 503, "{}", answer.body);
    assert!(answer.headers.contains_key("retry-after"));
    assert!(identity_headers(&answer.headers).is_empty());
    let answer = envoy(authz.grpc.unwrap(), check_request(&case, false)).await;
    assert_eq!(answer.status.map(|s| s.code), Some(14), "UNAVAILABLE");
    let Some(HttpResponse::DeniedResponse(denied)) = answer.http_response else { panic!("not denied") };
    assert_eq!(denied.status.map(|s| s.code), Some(503));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_ext_authz_protocol_conformance_removes_credentials_with_strip_credentials() {
    let authz = start_authz(&cases::config("strip_credentials = true"), &cases::SECRETS);
    let case = cases::cases(6).into_iter().find(|c| c.name.starts_with("hmac-valid-header")).unwrap();
    let answer = envoy(authz.grpc.unwrap(), check_request(&case, false)).await;
    let Some(HttpResponse::OkResponse(ok)) = answer.http_response else { panic!("not a pass: {answer:?}") };
    for credential in ["x-user-id", "x-identity-signature"] {
        assert!(ok.headers_to_remove.iter().any(|h| h == credential), "{credential}: {:?}", ok.headers_to_remove);
    }
    assert!(!ok.headers_to_remove.iter().any(|h| h == "x-case"), "only what the layer strips is removed");
}
