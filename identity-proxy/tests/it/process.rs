//! The `identity-proxy` binary as a child process: one start-up helper for
//! every test that runs it, whichever of its listeners it waits for.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The binary under test, built by cargo for this test target.
pub const BIN: &str = env!("CARGO_BIN_EXE_identity-proxy");

/// A running proxy whose public listener is up: its process, and the
/// addresses it logged.
pub struct Proxy {
    process: Running,
    pub addr: SocketAddr,
    /// The admin listener's address, when it has one (logged before `addr`).
    pub admin: Option<SocketAddr>,
}

impl Proxy {
    /// Starts the binary with `config` (written to `proxy.toml`), the
    /// `secrets` files (name, content) beside it and `env`, and waits for its
    /// "listening on" line. Its log must never contain a secret: checked
    /// when the proxy is dropped.
    pub fn start(name: &str, config: &str, secrets: &[(&str, &str)], env: &[(&str, &str)]) -> Proxy {
        Proxy::of(Running::start(name, config, secrets, env, |l| l.public.is_some()))
    }

    /// Runs `command` (the binary with its arguments), its stderr read for
    /// the listening lines, panics and the `never_logged` strings.
    pub fn spawn(command: Command, dir: PathBuf, never_logged: Vec<String>) -> Proxy {
        Proxy::of(Running::spawn(command, dir, never_logged, |l| l.public.is_some()))
    }

    /// A started `child` whose log is read from `log` (its stderr, whatever
    /// that is), as [`Proxy::spawn`] reads it.
    pub fn watch(child: Child, log: impl Read + Send + 'static, dir: PathBuf, never_logged: Vec<String>) -> Proxy {
        Proxy::of(Running::watch(child, log, dir, never_logged, |l| l.public.is_some()))
    }

    fn of((process, listeners): (Running, Listeners)) -> Proxy {
        Proxy { process, addr: listeners.public.expect("waited for"), admin: listeners.admin }
    }
}

impl Deref for Proxy {
    type Target = Running;
    fn deref(&self) -> &Running {
        &self.process
    }
}

impl DerefMut for Proxy {
    fn deref_mut(&mut self) -> &mut Running {
        &mut self.process
    }
}

/// The addresses of the listeners a proxy logged, as it bound them.
#[derive(Clone, Copy, Debug, Default)]
pub struct Listeners {
    /// The proxy's own listener (none with only `[authz]`).
    pub public: Option<SocketAddr>,
    pub admin: Option<SocketAddr>,
    /// The HTTP auth check listener (`[authz] listen`).
    pub auth: Option<SocketAddr>,
    /// The Envoy `ext_authz` listener (`[authz] grpc_listen`).
    pub ext_authz: Option<SocketAddr>,
}

impl Listeners {
    /// Notes the address `line` announces, if it announces one.
    fn note(&mut self, line: &str) {
        let slots = [
            ("listening on http://", &mut self.public),
            ("admin endpoints on http://", &mut self.admin),
            ("ext_authz checks on http://", &mut self.ext_authz),
            ("auth checks on http://", &mut self.auth),
        ];
        for (marker, slot) in slots {
            if let Some(at) = line.find(marker) {
                let addr = line[at + marker.len()..].split(|c: char| c.is_whitespace() || c == '"').next();
                *slot = addr.and_then(|a| a.parse().ok());
                return;
            }
        }
    }
}

/// The proxy's process, killed (and its directory removed) when dropped.
pub struct Running {
    pub child: Child,
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

/// The binary with `dir/proxy.toml` as its configuration, `RUST_LOG=info`
/// and `env`.
pub fn command(dir: &Path, env: &[(&str, &str)]) -> Command {
    let mut command = Command::new(BIN);
    command.arg("--config").arg(dir.join("proxy.toml")).env("RUST_LOG", "info").envs(env.iter().copied());
    command
}

/// A fresh directory holding `config` as `proxy.toml` and the `secrets`
/// files (name, content).
pub fn config_dir(name: &str, config: &str, secrets: &[(&str, &str)]) -> PathBuf {
    let dir = temp_dir(name);
    std::fs::write(dir.join("proxy.toml"), config).unwrap();
    for (file, content) in secrets {
        std::fs::write(dir.join(file), content).unwrap();
    }
    dir
}

impl Running {
    /// Starts the binary with `config`, the `secrets` files beside it and
    /// `env`, and waits (at most 30 seconds) until the listeners it logged
    /// are `ready`. Its log must never contain a secret: checked when the
    /// process is dropped.
    pub fn start(
        name: &str,
        config: &str,
        secrets: &[(&str, &str)],
        env: &[(&str, &str)],
        ready: fn(&Listeners) -> bool,
    ) -> (Running, Listeners) {
        let dir = config_dir(name, config, secrets);
        let never_logged = secrets.iter().map(|(_, s)| s.trim().to_owned()).collect();
        Running::spawn(command(&dir, env), dir, never_logged, ready)
    }

    /// Runs `command` (the binary with its arguments), its stderr read for
    /// the listening lines, panics and the `never_logged` strings.
    pub fn spawn(
        mut command: Command,
        dir: PathBuf,
        never_logged: Vec<String>,
        ready: fn(&Listeners) -> bool,
    ) -> (Running, Listeners) {
        let mut child = command.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
        let stderr = child.stderr.take().unwrap();
        Running::watch(child, stderr, dir, never_logged, ready)
    }

    /// Reads the log of a started `child` from `log`, and waits for its
    /// listeners as [`Running::start`] does.
    pub fn watch(
        child: Child,
        log: impl Read + Send + 'static,
        dir: PathBuf,
        never_logged: Vec<String>,
        ready: fn(&Listeners) -> bool,
    ) -> (Running, Listeners) {
        let (panics, leaks) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let (counted_panics, counted_leaks) = (panics.clone(), leaks.clone());
        let kept: Log = Arc::default();
        let running = Running { child, dir, panics, leaks, log: kept.clone() };
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut listeners = Listeners::default();
            for line in BufReader::new(log).lines().map_while(Result::ok) {
                listeners.note(&line);
                let _ = tx.send(listeners);
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
        let until = Instant::now() + Duration::from_secs(30);
        loop {
            let left = until.saturating_duration_since(Instant::now());
            let listeners = rx
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("the proxy did not start its listeners:\n{}", running.log().join("\n")));
            if ready(&listeners) {
                return (running, listeners);
            }
        }
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

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
        if !std::thread::panicking() {
            assert_eq!(self.leaks.load(Ordering::SeqCst), 0, "a secret reached the proxy's log");
        }
    }
}

/// A fresh directory for one test's files (`name` and a number unique in
/// this process).
pub fn temp_dir(name: &str) -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("identity-proxy-test-{name}-{}-{n}", std::process::id()));
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
