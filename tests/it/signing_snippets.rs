//! The backend signing programs in `signing/` (Node.js, Python, Go, Ruby: the
//! snippets of the README's "Signing on your backend" section) against the
//! crate itself.
//!
//! Each program is run on every case and its output compared with
//! `tower_identity::sign` (plain and timestamped HMAC). JSON claim order and
//! escaping differ between languages, so a JWT is not compared as a string:
//! it must verify with `tower_identity::verify`, carry the expected `email`
//! and `name`, and decode to the same header and claims as `sign::jwt_token`.
//!
//! A language whose toolchain is not on PATH is skipped with a note on
//! stderr, unless `TOWER_IDENTITY_REQUIRE_SNIPPETS=1` is set (CI), which makes
//! it a failure. `.ci/install-snippet-toolchains.sh` installs the toolchains
//! from Debian packages.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use tower_identity::{
    Key, KeySet, Secret, claim::Claim, secret::SecretEncoding, sign, verify::VerifyOptions, verify::verify,
};

const REQUIRE_VAR: &str = "TOWER_IDENTITY_REQUIRE_SNIPPETS";

/// Seed 000's example secret: a hex-looking string that the vendor uses as text.
const SEED_SECRET: &str = "a6c93e058a4ab236449bd321002352483a85138489d2ee4fb2eaa4cfd3ab2ba8";
const UNICODE_SECRET: &str = "clé-secrète-東京-🔑-0123456789";

const IDENTIFIERS: &[&str] =
    &["user-42", "id-c5c178f6", "jane+support@example.com", "usér-ß-東京", " 🦀 spaces and \"quotes\" kept ", "42"];

/// Taken in turn by the identifiers: seed 000's, and one in 2100.
const TIMESTAMPS: &[u64] = &[1_741_761_604, 4_102_444_800];

#[derive(Debug)]
struct JwtCase {
    secret: &'static str,
    app_id: &'static str,
    email: &'static str,
    /// `""`: no `name` claim.
    name: &'static str,
    iat: u64,
    lifetime: u64,
}

const JWT_CASES: &[JwtCase] = &[
    JwtCase {
        secret: "the-jwt-secret-shown-once",
        app_id: "app_3b1d9e",
        email: "jane@example.com",
        name: "Jane Doe",
        iat: 1_767_225_600,
        lifetime: 600,
    },
    JwtCase {
        secret: UNICODE_SECRET,
        app_id: "app_3b1d9e",
        email: "jane+support@example.com",
        name: "usér-ß-東京",
        iat: 1_767_225_600,
        lifetime: 900,
    },
    JwtCase {
        secret: SEED_SECRET, app_id: "app_1", email: "usér@例え.jp", name: "", iat: 1_741_761_604, lifetime: 60
    },
    JwtCase {
        secret: "jwt-secret-0123456789abcdef",
        app_id: "app <&> 1",
        email: "o'neil@example.com",
        name: " Jane \"JD\" O'Neil \\ <b>&</b> ",
        iat: 1_700_000_000,
        lifetime: 1,
    },
];

/// Hex secrets that every program must refuse (and so does `Secret::hex`):
/// Node's `Buffer.from(s, "hex")` and Ruby's `pack("H*")` would silently sign
/// with other bytes.
const BAD_HEX_SECRETS: &[&str] = &["abc", "zz86d081884c7d659a2feaa0c55ad015"];

fn hmac_secrets() -> Vec<(String, SecretEncoding)> {
    let long_text = "a text secret longer than the 64-byte SHA-256 block, which HMAC hashes first: ".repeat(2);
    let long_hex: String = (0u8..100).map(|i| format!("{:02x}", i.wrapping_mul(37))).collect();
    vec![
        (SEED_SECRET.to_owned(), SecretEncoding::Utf8),
        (SEED_SECRET.to_owned(), SecretEncoding::Hex),
        ("9F86D081884C7D659A2FEAA0C55AD015".to_owned(), SecretEncoding::Hex),
        (UNICODE_SECRET.to_owned(), SecretEncoding::Utf8),
        (long_text, SecretEncoding::Utf8),
        (long_hex, SecretEncoding::Hex),
    ]
}

struct Lang {
    name: &'static str,
    tool: &'static str,
    version_args: &'static [&'static str],
}

const LANGS: &[Lang] = &[
    Lang { name: "node", tool: "node", version_args: &["--version"] },
    Lang { name: "python", tool: "python3", version_args: &["--version"] },
    Lang { name: "go", tool: "go", version_args: &["version"] },
    Lang { name: "ruby", tool: "ruby", version_args: &["--version"] },
];

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `go` with its caches under `target/`, offline, no workspace, no cgo (the program is stdlib-only).
fn go_command(tmp: &Path) -> Command {
    let mut cmd = Command::new("go");
    cmd.current_dir(root())
        .env("GOCACHE", tmp.join("go-cache"))
        .env("GOPATH", tmp.join("go-path"))
        .env("GOPROXY", "off")
        .env("GOTOOLCHAIN", "local")
        .env("GOWORK", "off")
        .env("CGO_ENABLED", "0")
        .env_remove("GOFLAGS");
    cmd
}

/// How to run one language's program.
enum Runner {
    Interpreter { tool: PathBuf, script: PathBuf },
    Binary(PathBuf),
}

impl Runner {
    fn prepare(lang: &Lang) -> Result<Runner, String> {
        let script = |path: &str| root().join("signing").join(path);
        Ok(match lang.name {
            "node" => Runner::Interpreter { tool: "node".into(), script: script("node/sign.js") },
            "python" => {
                // The interpreter itself: a version manager's `python3` shim costs ~0.2 s a run.
                let out = Command::new("python3")
                    .args(["-c", "import sys; print(sys.executable)"])
                    .output()
                    .map_err(|e| format!("python3: {e}"))?;
                let exe = String::from_utf8_lossy(&out.stdout).trim().to_owned();
                let tool = if out.status.success() && !exe.is_empty() { PathBuf::from(exe) } else { "python3".into() };
                Runner::Interpreter { tool, script: script("python/sign.py") }
            }
            "ruby" => Runner::Interpreter { tool: "ruby".into(), script: script("ruby/sign.rb") },
            "go" => {
                // Built once: `go run` would compile and link again for every case.
                let tmp = Path::new(env!("CARGO_TARGET_TMPDIR")).join("signing-snippets");
                let bin = tmp.join("go-sign");
                let out = go_command(&tmp)
                    .args(["build", "-o"])
                    .arg(&bin)
                    .arg(script("go/sign.go"))
                    .output()
                    .map_err(|e| format!("go build: {e}"))?;
                if !out.status.success() {
                    return Err(format!(
                        "go build signing/go/sign.go failed:\n{}",
                        String::from_utf8_lossy(&out.stderr)
                    ));
                }
                Runner::Binary(bin)
            }
            other => unreachable!("no runner for {other}"),
        })
    }

    /// Runs the program; `Ok(stdout without its final newline)` when it exits 0.
    fn run(&self, args: &[&str]) -> Result<String, String> {
        let mut cmd = match self {
            Runner::Interpreter { tool, script } => {
                let mut cmd = Command::new(tool);
                cmd.arg(script);
                cmd
            }
            Runner::Binary(bin) => Command::new(bin),
        };
        let out = cmd.args(args).current_dir(root()).output().map_err(|e| format!("{args:?}: {e}"))?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            return Err(format!(
                "{args:?} exited with {}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(stdout.strip_suffix('\n').unwrap_or(&stdout).to_owned())
    }
}

/// The toolchain's version line, or why it cannot be used.
fn probe(lang: &Lang) -> Result<String, String> {
    match Command::new(lang.tool).args(lang.version_args).output() {
        Ok(out) if out.status.success() => {
            let text = if out.stdout.is_empty() { &out.stderr } else { &out.stdout };
            Ok(String::from_utf8_lossy(text).trim().to_owned())
        }
        Ok(out) => Err(format!(
            "{} {} exited with {}: {}",
            lang.tool,
            lang.version_args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(format!("{} not found", lang.tool)),
        Err(e) => Err(format!("{}: {e}", lang.tool)),
    }
}

/// Why a language did not run.
enum Missing {
    /// Its toolchain is not on PATH or does not start: skipped unless required.
    Toolchain(String),
    /// The toolchain is there but the program could not be built: always a failure.
    Setup(String),
}

#[derive(Default)]
struct Report {
    /// The toolchain's version and how long the language took.
    toolchain: String,
    cases: usize,
    failures: Vec<String>,
}

impl Report {
    fn check(&mut self, what: impl FnOnce() -> String, result: Result<(), String>) {
        self.cases += 1;
        if let Err(e) = result {
            self.failures.push(format!("{}: {e}", what()));
        }
    }
}

fn expect_eq(got: Result<String, String>, want: &str) -> Result<(), String> {
    match got {
        Ok(got) if got == want => Ok(()),
        Ok(got) => Err(format!("printed {got:?}, the crate signs {want:?}")),
        Err(e) => Err(e),
    }
}

fn decode_part(part: &str) -> Result<Value, String> {
    let bytes = URL_SAFE_NO_PAD.decode(part).map_err(|e| format!("not base64url: {e}"))?;
    serde_json::from_slice(&bytes).map_err(|e| format!("not JSON: {e}"))
}

/// The token verifies with the crate at `iat` and means what `sign::jwt_token` means.
fn check_jwt(token: &str, case: &JwtCase) -> Result<(), String> {
    let &JwtCase { secret, app_id, email, name, iat, lifetime } = case;
    let name = (!name.is_empty()).then_some(name);
    let secret = Secret::text(secret).map_err(|e| e.to_string())?;
    let keys = KeySet::single(Key::jwt(secret.clone())).with_audience(app_id);
    let identity = verify(&Claim::new().token(token), &keys, iat, &VerifyOptions::default())
        .map_err(|e| format!("{token}: the crate refuses it: {e:?}"))?;
    if identity.email() != Some(email) {
        return Err(format!("{token}: email {:?}, want {email:?}", identity.email()));
    }
    let claims = identity.claims().ok_or("no signed claims")?;
    if claims.name() != name {
        return Err(format!("{token}: name {:?}, want {name:?}", claims.name()));
    }
    let [header, payload, _] = token.split('.').collect::<Vec<_>>()[..] else {
        return Err(format!("{token}: not three parts"));
    };
    let ours = sign::jwt_token(&secret, app_id, email, name, iat, lifetime, []);
    let our_payload = decode_part(ours.split('.').nth(1).expect("three parts"))?;
    if decode_part(header)? != json!({"alg": "HS256", "typ": "JWT"}) {
        return Err(format!("{token}: header {}", decode_part(header)?));
    }
    if decode_part(payload)? != our_payload {
        return Err(format!("{token}: claims {}, the crate's {our_payload}", decode_part(payload)?));
    }
    Ok(())
}

fn run_cases(runner: &Runner) -> Report {
    let mut report = Report::default();
    for (secret, encoding) in hmac_secrets() {
        let key = Secret::decode(&secret, encoding).expect("test secrets decode");
        for &id in IDENTIFIERS {
            let got = runner.run(&["hmac", &secret, encoding.as_str(), id]);
            report.check(
                || format!("hmac {secret:?} {} {id:?}", encoding.as_str()),
                expect_eq(got, &sign::hmac(&key, id)),
            );
        }
    }
    for secret in [SEED_SECRET, UNICODE_SECRET] {
        let key = Secret::text(secret).expect("test secrets decode");
        for (&id, &ts) in IDENTIFIERS.iter().zip(TIMESTAMPS.iter().cycle()) {
            let got = runner.run(&["timestamped", secret, id, &ts.to_string()]);
            let want = sign::timestamped_hmac(&key, id, ts);
            report.check(|| format!("timestamped {secret:?} {id:?} {ts}"), expect_eq(got, &want));
        }
    }
    for case in JWT_CASES {
        let &JwtCase { secret, app_id, email, name, iat, lifetime } = case;
        let got = runner.run(&["jwt", secret, app_id, email, name, &iat.to_string(), &lifetime.to_string()]);
        report.check(|| format!("jwt {case:?}"), got.and_then(|token| check_jwt(&token, case)));
    }
    for &secret in BAD_HEX_SECRETS {
        assert!(Secret::hex(secret).is_err(), "the crate accepts {secret:?} as hex");
        let result = match runner.run(&["hmac", secret, "hex", "user-42"]) {
            Ok(out) => Err(format!("signed with it: {out}")),
            Err(_) => Ok(()),
        };
        report.check(|| format!("hmac {secret:?} hex (must be refused)"), result);
    }
    report
}

#[test]
fn snippets_sign_like_the_crate() {
    // The seed document's worked example, so the comparisons below rest on a known answer.
    assert_eq!(
        sign::timestamped_hmac(&Secret::text(SEED_SECRET).unwrap(), "id-c5c178f6", 1_741_761_604),
        "6a403a1fcfcc866b8917e6e208a553004c54c73846bc4f3f686757e2a5ad588e-1741761604",
    );
    let required = std::env::var(REQUIRE_VAR).is_ok_and(|v| v == "1");

    let outcomes: Vec<(&Lang, Result<Report, Missing>)> = std::thread::scope(|s| {
        let handles: Vec<_> = LANGS
            .iter()
            .map(|lang| {
                s.spawn(move || {
                    let start = std::time::Instant::now();
                    let version = probe(lang).map_err(Missing::Toolchain)?;
                    let runner = Runner::prepare(lang).map_err(Missing::Setup)?;
                    let mut report = run_cases(&runner);
                    report.toolchain = format!("{version}, {:.1} s", start.elapsed().as_secs_f64());
                    Ok(report)
                })
            })
            .collect();
        LANGS.iter().zip(handles).map(|(lang, h)| (lang, h.join().expect("a language thread panicked"))).collect()
    });

    // Written to stderr directly so that `cargo test` shows it without `--nocapture`.
    let mut stderr = std::io::stderr().lock();
    let mut ran = Vec::new();
    let mut problems = Vec::new();
    for (lang, outcome) in outcomes {
        match outcome {
            Ok(report) => {
                let _ = writeln!(
                    stderr,
                    "signing snippets: {} ({}): {} cases, {} failed",
                    lang.name,
                    report.toolchain,
                    report.cases,
                    report.failures.len()
                );
                ran.push(lang.name);
                problems.extend(report.failures.into_iter().map(|f| format!("{}: {f}", lang.name)));
            }
            Err(Missing::Toolchain(why)) if required => {
                problems.push(format!("{}: {why}, and {REQUIRE_VAR}=1 requires every language", lang.name));
            }
            Err(Missing::Toolchain(why)) => {
                let _ = writeln!(stderr, "skipping {}: {why}", lang.name);
            }
            Err(Missing::Setup(why)) => problems.push(format!("{}: {why}", lang.name)),
        }
    }
    let _ = writeln!(stderr, "signing snippets ran: {}", if ran.is_empty() { "none".into() } else { ran.join(", ") });
    assert!(problems.is_empty(), "{} problem(s):\n{}", problems.len(), problems.join("\n"));
}
