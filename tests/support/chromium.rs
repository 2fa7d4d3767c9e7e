//! Headless Chromium, run once per page: `--dump-dom` after the page's
//! network settles (virtual time waits for pending fetches), or
//! `--screenshot`; or left open in real time for a page that reports over
//! the network ([`Chromium::open`]). Every run has a fresh profile, a
//! deadline (the caller's, for an open page), and its whole process group
//! killed when it ends, however it ends.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

/// How long one Chromium run may take before it is killed and the test fails.
const DEADLINE: Duration = Duration::from_secs(90);

/// A Chromium binary known to exist.
pub struct Chromium {
    path: PathBuf,
}

impl Chromium {
    /// The browser, from `CHROMIUM` or the usual Debian names. When none is
    /// found: `None` with a printed reason, or a panic when `CI` is set (the
    /// browser tests must not be skipped in CI).
    pub fn require() -> Option<Chromium> {
        let candidates = std::env::var_os("CHROMIUM")
            .map(PathBuf::from)
            .into_iter()
            .chain(["/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"].map(PathBuf::from));
        let found = candidates.into_iter().find(|p| p.is_file());
        match found {
            Some(path) => Some(Chromium { path }),
            None if std::env::var_os("CI").is_some() => {
                panic!("CI is set and no Chromium was found (install Debian's `chromium` or set CHROMIUM)")
            }
            None => {
                eprintln!("SKIPPED: no Chromium found (install Debian's `chromium` or set CHROMIUM)");
                None
            }
        }
    }

    /// The page's DOM once its scripts and fetches are done.
    pub async fn dump_dom(&self, url: &str) -> String {
        let out = self.run(&["--virtual-time-budget=30000", "--dump-dom", url]).await;
        let dom = String::from_utf8(out).expect("Chromium printed UTF-8");
        assert!(dom.contains("<html"), "Chromium printed no DOM for {url}: {dom}");
        dom
    }

    /// A PNG of the page once its scripts and fetches are done.
    pub async fn screenshot(&self, url: &str, png: &Path, size: &str) {
        let shot = format!("--screenshot={}", png.display());
        let size = format!("--window-size={size}");
        self.run(&["--virtual-time-budget=30000", "--hide-scrollbars", &shot, &size, url]).await;
        let len = std::fs::metadata(png).map(|m| m.len()).unwrap_or(0);
        assert!(len > 0, "Chromium wrote no screenshot to {}", png.display());
    }

    /// Opens `url` in a browser that runs in real time (no virtual time)
    /// until the returned [`Running`] is dropped: for pages that report what
    /// they saw over the network while the test waits, rather than in their DOM.
    pub fn open(&self, url: &str) -> Running {
        let profile = profile();
        let log = std::fs::File::create(profile.path().join("chromium.log")).expect("a log file in the profile");
        let mut cmd = self.command(profile.path(), &[url]);
        cmd.stdout(Stdio::null()).stderr(log);
        let child = cmd.spawn().unwrap_or_else(|e| panic!("cannot start {}: {e}", self.path.display()));
        let group = KillGroup(child.id().expect("a running child has an id"));
        Running { _group: group, _child: child, profile }
    }

    async fn run(&self, args: &[&str]) -> Vec<u8> {
        let profile = profile();
        let mut cmd = self.command(profile.path(), args);
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let child = cmd.spawn().unwrap_or_else(|e| panic!("cannot start {}: {e}", self.path.display()));
        // Renderer and GPU processes are in the browser's group: kill them all.
        let _group = KillGroup(child.id().expect("a running child has an id"));
        let out = tokio::time::timeout(DEADLINE, child.wait_with_output())
            .await
            .unwrap_or_else(|_| panic!("Chromium did not finish within {DEADLINE:?}: killed"))
            .expect("waiting for Chromium");
        assert!(
            out.status.success(),
            "Chromium failed ({}): {}",
            out.status,
            last_lines(&String::from_utf8_lossy(&out.stderr))
        );
        out.stdout
    }

    /// The browser with the usual headless flags, a fresh `profile`, `args`,
    /// in a process group of its own.
    fn command(&self, profile: &Path, args: &[&str]) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(&self.path);
        cmd.args([
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .process_group(0);
        cmd
    }
}

/// A fresh, temporary browser profile.
fn profile() -> tempfile::TempDir {
    tempfile::Builder::new().prefix("tower-identity-chromium-").tempdir().expect("a temporary profile")
}

/// The last lines of a browser's log, for failure messages.
fn last_lines(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// A browser left running by [`Chromium::open`]: its whole process group is
/// killed, then its profile removed, when this is dropped.
pub struct Running {
    // Fields drop in order: the group is killed before the profile goes.
    _group: KillGroup,
    _child: tokio::process::Child,
    profile: tempfile::TempDir,
}

impl Running {
    /// The last lines of the browser's log so far, for failure messages.
    pub fn log(&self) -> String {
        last_lines(&std::fs::read_to_string(self.profile.path().join("chromium.log")).unwrap_or_default())
    }
}

/// Kills a process group when dropped (the group id is the leader's pid).
struct KillGroup(u32);

impl Drop for KillGroup {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.0)])
            .stderr(Stdio::null())
            .status();
    }
}

/// The text content of the element with this id in a dumped DOM (entities
/// decoded), or panics showing the DOM.
pub fn text_of(dom: &str, id: &str) -> String {
    let start = format!("id=\"{id}\"");
    let at = dom.find(&start).unwrap_or_else(|| panic!("no element #{id} in the DOM:\n{dom}"));
    let open_end = at + dom[at..].find('>').expect("a closed start tag") + 1;
    let close = open_end + dom[open_end..].find("</").expect("an end tag");
    dom[open_end..close].replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", "\"").replace("&amp;", "&")
}
