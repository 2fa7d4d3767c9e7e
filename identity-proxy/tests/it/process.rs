//! The `identity-proxy` binary as a child process: one start-up helper for
//! every test that runs it.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The binary under test, built by cargo for this test target.
pub const BIN: &str = env!("CARGO_BIN_EXE_identity-proxy");

/// A running proxy, killed (and its directory removed) when dropped.
pub struct Proxy {
    pub child: Child,
    pub addr: SocketAddr,
    /// The admin listener's address, when it has one (logged before `addr`).
    pub admin: Option<SocketAddr>,
    /// Holds `proxy.toml` and the secret files.
    pub dir: PathBuf,
    /// Lines of the proxy's log with "panicked".
    pub panics: Arc<AtomicUsize>,
    /// Lines of the proxy's log that contain one of the secrets it was started with.
    leaks: Arc<AtomicUsize>,
    /// The last lines of its log.
    log: Log,
}

/// The last [`LOG_LINES`] lines of a proxy's log.
type Log = Arc<Mutex<VecDeque<String>>>;
const LOG_LINES: usize = 2000;

impl Proxy {
    /// Starts the binary with `config` (written to `proxy.toml`), the
    /// `secrets` files (name, content) beside it and `env`, and waits for its
    /// "listening on" line. Its log must never contain a secret: checked
    /// when the proxy is dropped.
    pub fn start(name: &str, config: &str, secrets: &[(&str, &str)], env: &[(&str, &str)]) -> Proxy {
        let dir = temp_dir(name);
        std::fs::write(dir.join("proxy.toml"), config).unwrap();
        for (file, content) in secrets {
            std::fs::write(dir.join(file), content).unwrap();
        }
        let mut command = Command::new(BIN);
        command.arg("--config").arg(dir.join("proxy.toml")).env("RUST_LOG", "info").envs(env.iter().copied());
        Proxy::spawn(command, dir, secrets.iter().map(|(_, s)| s.trim().to_owned()).collect())
    }

    /// Runs `command` (the binary with its arguments), its stderr read for
    /// the listening lines, panics and the `never_logged` strings.
    pub fn spawn(mut command: Command, dir: PathBuf, never_logged: Vec<String>) -> Proxy {
        let mut child = command.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
        let (panics, leaks) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let (counted_panics, counted_leaks) = (panics.clone(), leaks.clone());
        let log: Log = Arc::default();
        let kept = log.clone();
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let admin_tx = tx.clone();
        std::thread::spawn(move || {
            let address = |line: &str, at: usize| {
                line[at..].split(|c: char| c.is_whitespace() || c == '"').next().unwrap().to_owned()
            };
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(at) = line.find("admin endpoints on http://") {
                    let _ = admin_tx.send((true, address(&line, at + 26)));
                }
                if let Some(at) = line.find("listening on http://") {
                    let _ = tx.send((false, address(&line, at + 20)));
                }
                let mut kept = kept.lock().unwrap();
                if kept.len() == LOG_LINES {
                    kept.pop_front();
                }
                kept.push_back(line.clone());
                drop(kept);
                if line.contains("panicked") {
                    counted_panics.fetch_add(1, Ordering::SeqCst);
                    eprintln!("identity-proxy: {line}");
                }
                if never_logged.iter().any(|secret| line.contains(secret.as_str())) {
                    counted_leaks.fetch_add(1, Ordering::SeqCst);
                }
            }
        });
        let mut admin = None;
        let addr = loop {
            let (is_admin, addr) = rx.recv_timeout(Duration::from_secs(30)).expect("the proxy did not start");
            match is_admin {
                true => admin = Some(addr.parse().unwrap()),
                false => break addr.parse().unwrap(),
            }
        };
        Proxy { child, addr, admin, dir, panics, leaks, log }
    }

    /// The log lines kept so far.
    pub fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().iter().cloned().collect()
    }

    /// Waits (at most ten seconds) for a log line containing every one of `needles`.
    pub fn wait_for_log(&self, needles: &[&str]) -> String {
        let until = Instant::now() + Duration::from_secs(10);
        while Instant::now() < until {
            if let Some(line) = self.log().into_iter().find(|l| needles.iter().all(|n| l.contains(n))) {
                return line;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("no log line with {needles:?} in:\n{}", self.log().join("\n"));
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process is still running.
    pub fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Sends `sig` (`HUP`, `TERM`) to the process.
    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill").arg(format!("-{sig}")).arg(self.pid().to_string()).status().unwrap().success();
        assert!(ok);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
        if !std::thread::panicking() {
            assert_eq!(self.leaks.load(Ordering::SeqCst), 0, "a secret reached the proxy's log");
        }
    }
}

/// A fresh directory for one test's files.
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("identity-proxy-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs the binary with `args` in `dir`: exit code, stdout, stderr.
pub fn run_cli(args: &[&str], dir: &Path) -> (i32, String, String) {
    let out = Command::new(BIN).args(args).current_dir(dir).env_remove("RUST_LOG").output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
