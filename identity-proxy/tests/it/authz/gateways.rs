//! Real nginx (`auth_request`) and real Caddy (`forward_auth`), each with the
//! configuration from `examples/gateways/`, in front of a recording upstream,
//! asking identity-proxy's auth listener.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use crate::authz::cases::{self, Case, Expect};
use crate::authz::support::{
    Authz, Client, Process, Upstream, example, free_addr, identity_headers, required, start_authz,
};
use crate::process::temp_dir;

#[derive(Clone, Copy, Debug)]
enum Gateway {
    Nginx,
    Caddy,
}

impl Gateway {
    /// Starts the gateway on a free port in front of `upstream`, asking `authz`.
    fn start(self, authz: SocketAddr, upstream: SocketAddr) -> Result<(Process, SocketAddr), String> {
        let listen = free_addr();
        let dir = temp_dir(&format!("{self:?}"));
        let (upstream, authz) = (upstream.to_string(), authz.to_string());
        let command = match self {
            Gateway::Nginx => {
                let conf =
                    example("nginx.conf", &[("LISTEN", listen.to_string()), ("UPSTREAM", upstream), ("AUTHZ", authz)]);
                std::fs::write(dir.join("nginx.conf"), conf).unwrap();
                let bin = if Path::new("/usr/sbin/nginx").exists() { "/usr/sbin/nginx" } else { "nginx" };
                let mut c = Command::new(bin);
                let d = dir.display();
                c.arg("-p")
                    .arg(&dir)
                    .arg("-c")
                    .arg(dir.join("nginx.conf"))
                    .arg("-g")
                    .arg(format!("daemon off; master_process off; pid {d}/nginx.pid; error_log {d}/error.log;"));
                c
            }
            Gateway::Caddy => {
                let values = [
                    ("LISTEN", listen.to_string()),
                    ("BIND", listen.ip().to_string()),
                    ("UPSTREAM", upstream),
                    ("AUTHZ", authz),
                ];
                std::fs::write(dir.join("Caddyfile"), example("Caddyfile", &values)).unwrap();
                let mut c = Command::new("caddy");
                c.arg("run").arg("--config").arg(dir.join("Caddyfile")).arg("--adapter").arg("caddyfile");
                c.env("HOME", &dir).env("XDG_DATA_HOME", dir.join("data")).env("XDG_CONFIG_HOME", dir.join("config"));
                c
            }
        };
        let mut process = Process::spawn(command, dir)?;
        process.wait_for(listen)?;
        Ok((process, listen))
    }
}

/// Sends `case` through the gateway and says what went wrong, if anything.
async fn check(client: &Client, gateway: SocketAddr, upstream: &Upstream, case: &Case) -> Result<(), String> {
    let answer = client.get(gateway, &case.target, &case.headers).await;
    let seen = upstream.take(&case.name);
    match (&case.expect, seen) {
        (Expect::Pass(want), Some(headers)) if answer.status == 200 && answer.body == "upstream" => {
            let got = identity_headers(&headers);
            if got == cases::expected(want) {
                Ok(())
            } else {
                Err(format!("{}: upstream saw {got:?}, want {want:?}", case.name))
            }
        }
        (Expect::Reject, None) if answer.status == 401 => Ok(()),
        (expect, seen) => Err(format!(
            "{}: expected {expect:?}, got {} {:?} (upstream called: {})",
            case.name,
            answer.status,
            answer.body,
            seen.is_some()
        )),
    }
}

/// identity-proxy with an upstream of its own (the recording one): if the
/// auth listener ever proxied, the upstream would count the extra calls.
fn authz(upstream: &Upstream) -> Authz {
    start_authz(&cases::config(&format!("upstream = \"http://{}\"", upstream.addr())), &cases::SECRETS)
}

async fn every_case_through(gateway: Gateway) {
    let upstream = Upstream::start().await;
    let authz = authz(&upstream);
    let Some((_gateway, addr)) = required(&format!("{gateway:?}"), gateway.start(authz.http, upstream.addr())) else {
        return;
    };
    let client = Client::new();
    let cases = cases::cases(0);
    let mut failures = Vec::new();
    for case in &cases {
        if let Err(failure) = check(&client, addr, &upstream, case).await {
            failures.push(failure);
        }
    }
    assert!(failures.is_empty(), "{gateway:?}:\n{}", failures.join("\n"));
    let passes = cases.iter().filter(|c| c.expect != Expect::Reject).count();
    assert_eq!(upstream.calls(), passes, "the upstream is called once per pass, never by the auth listener");
}

async fn auth_listener_down(gateway: Gateway) {
    let upstream = Upstream::start().await;
    let Some((_gateway, addr)) = required(&format!("{gateway:?}"), gateway.start(free_addr(), upstream.addr())) else {
        return;
    };
    let client = Client::new();
    for case in cases::cases(1).iter().filter(|c| c.name.starts_with("hmac-valid")) {
        let answer = client.get(addr, &case.target, &case.headers).await;
        assert!(answer.status.is_server_error(), "{gateway:?} {}: {} {}", case.name, answer.status, answer.body);
    }
    assert_eq!(upstream.calls(), 0, "{gateway:?}: the upstream was called without a check");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_auth_request_verifies_every_case_and_never_lets_spoofed_headers_through() {
    every_case_through(Gateway::Nginx).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caddy_forward_auth_verifies_every_case_and_never_lets_spoofed_headers_through() {
    every_case_through(Gateway::Caddy).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_fails_closed_when_the_auth_listener_is_down() {
    auth_listener_down(Gateway::Nginx).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caddy_fails_closed_when_the_auth_listener_is_down() {
    auth_listener_down(Gateway::Caddy).await;
}

/// 20,000 mixed checks through nginx, 32 at a time: not one wrong verdict.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_load_20000_mixed_checks_without_a_wrong_verdict() {
    const CHECKS: usize = 20_000;
    let upstream = Upstream::start().await;
    let authz = authz(&upstream);
    let Some((_gateway, addr)) = required("nginx", Gateway::Nginx.start(authz.http, upstream.addr())) else {
        return;
    };
    let client = Client::new();
    let per_user = cases::cases(0).len();
    let all: Vec<Case> = (0..CHECKS.div_ceil(per_user)).flat_map(cases::cases).take(CHECKS).collect();
    let passes = all.iter().filter(|c| c.expect != Expect::Reject).count();
    let permits = Arc::new(tokio::sync::Semaphore::new(32));
    let mut tasks = tokio::task::JoinSet::new();
    for case in all {
        let permit = permits.clone().acquire_owned().await.unwrap();
        let (client, upstream) = (client.clone(), upstream.clone());
        tasks.spawn(async move {
            let _permit = permit;
            check(&client, addr, &upstream, &case).await
        });
    }
    let mut wrong = Vec::new();
    while let Some(result) = tasks.join_next().await {
        if let Err(failure) = result.unwrap() {
            wrong.push(failure);
        }
    }
    assert!(
        wrong.is_empty(),
        "{} wrong verdicts of {CHECKS}, e.g.:\n{}",
        wrong.len(),
        wrong[..wrong.len().min(5)].join("\n")
    );
    assert_eq!(upstream.calls(), passes);
}
