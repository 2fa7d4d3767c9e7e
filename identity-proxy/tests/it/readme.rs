//! The README's sidecar section, run as written (issue 13, item 17): its
//! command starts a proxy that answers, the configuration it shows is the
//! file the command runs, and the `sign` and `check` examples print what the
//! README says they print.

use std::path::{Path, PathBuf};
use std::process::Command;

use bytes::Bytes;
use http::StatusCode;
use tower_identity::{Secret, sign};

use crate::process::{BIN, Proxy, temp_dir};
use crate::proxy::send;

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_owned()
}

/// The README's sidecar section.
fn section() -> String {
    let readme = std::fs::read_to_string(repository().join("README.md")).unwrap();
    let start = readme.find("## The `identity-proxy` sidecar").expect("the sidecar section");
    let end = readme[start + 3..].find("\n## ").map_or(readme.len(), |e| start + 3 + e);
    readme[start..end].to_owned()
}

/// The fenced blocks of `text` in `language`, in order.
fn blocks(text: &str, language: &str) -> Vec<String> {
    let fence = format!("```{language}\n");
    text.split(fence.as_str()).skip(1).map(|rest| rest[..rest.find("```").unwrap()].to_owned()).collect()
}

/// The variables the first block exports.
fn exported(block: &str) -> Vec<(String, String)> {
    block
        .lines()
        .filter_map(|l| l.strip_prefix("export "))
        .flat_map(str::split_whitespace)
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap();
            (name.to_owned(), value.to_owned())
        })
        .collect()
}

/// The binary, from the repository's root, with only `env` (and `PATH`).
fn command(args: &[&str], env: &[(String, String)]) -> Command {
    let mut c = Command::new(BIN);
    c.args(args).current_dir(repository()).env_clear().env("PATH", std::env::var_os("PATH").unwrap_or_default());
    c.envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readmes_sidecar_command_starts_and_answers() {
    let section = section();
    let shell = blocks(&section, "sh");
    let env = exported(&shell[0]);
    let run = shell[0].lines().find_map(|l| l.strip_prefix("cargo run -p identity-proxy -- ")).expect("the command");
    let args: Vec<&str> = run.split_whitespace().collect();

    // The configuration the README shows is the file its command runs.
    let config = args[args.iter().position(|a| *a == "--config").unwrap() + 1];
    let shown = &blocks(&section, "toml")[0];
    assert_eq!(&std::fs::read_to_string(repository().join(config)).unwrap(), shown, "README vs {config}");

    // Fixed ports (8080, 9090) may be taken on the test machine: only they are overridden.
    let mut with_ports = env.clone();
    with_ports.push(("IDENTITY_PROXY_LISTEN".into(), "127.0.0.1:0".into()));
    with_ports.push(("IDENTITY_PROXY_ADMIN_LISTEN".into(), "127.0.0.1:0".into()));
    with_ports.push(("RUST_LOG".into(), "info".into()));
    let secrets = env.iter().map(|(_, v)| v.clone()).collect();
    let proxy = Proxy::spawn(command(&args, &with_ports), temp_dir("readme"), secrets);
    assert_eq!(send(proxy.addr, "/healthz", &[], Bytes::new()).await.0, StatusCode::OK);
    assert_eq!(send(proxy.addr, "/", &[], Bytes::new()).await.0, StatusCode::UNAUTHORIZED, "mode = required");
    let demo = &env.iter().find(|(k, _)| k == "DEMO_SECRET").unwrap().1;
    let sig = sign::hmac(&Secret::text(demo).unwrap(), "user-42");
    let signed = [("x-user-id", "user-42"), ("x-identity-signature", sig.as_str())];
    let (status, _, _) = send(proxy.addr, "/", &signed, Bytes::new()).await;
    assert_ne!(status, StatusCode::UNAUTHORIZED, "verified, then forwarded to whatever is at 127.0.0.1:3000");
    assert_eq!(send(proxy.admin.unwrap(), "/readyz", &[], Bytes::new()).await.0, StatusCode::OK);
}

#[test]
fn the_readmes_sign_and_check_examples_print_what_it_says() {
    let section = section();
    let shell = blocks(&section, "sh");
    let env = exported(&shell[0]);
    let examples = shell.iter().find(|b| b.starts_with("$ identity-proxy")).expect("the helpers' block");
    let mut runs = 0;
    for example in examples.split("$ identity-proxy ").skip(1) {
        let (line, expected) = example.split_once('\n').unwrap();
        let args: Vec<&str> = line.split_whitespace().collect();
        let out = command(&args, &env).output().unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), expected, "identity-proxy {line}");
        runs += 1;
    }
    assert_eq!(runs, 2);
}

#[test]
fn the_reference_configuration_runs_with_the_variables_it_names() {
    let text = std::fs::read_to_string(repository().join("examples/identity-proxy.toml")).unwrap();
    let env: Vec<(String, String)> = text
        .lines()
        .filter_map(|l| l.strip_prefix('#').map(|l| l.trim().trim_end_matches('\\').trim()))
        .skip_while(|l| !l.starts_with("export "))
        .take_while(|l| !l.starts_with("cargo run"))
        .map(|l| l.strip_prefix("export ").unwrap_or(l))
        .filter_map(|pair| pair.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())))
        .collect();
    assert_eq!(env.len(), 5, "{env:?}");
    let out = command(&["--config", "examples/identity-proxy.toml", "check"], &env).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "configuration OK: 3 tenants, 5 keys\n");
}
