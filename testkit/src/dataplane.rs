//! [`DataPlane`]: the real `dataplane` binary, started on a free port with a
//! private data directory and a clean environment.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use crate::{Process, Result, TempDir};

/// How long the binary gets to migrate and start listening.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a dropped data plane gets to exit after SIGTERM.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// The marker the data plane logs once it accepts connections, followed by
/// `http://ADDR` or `https://ADDR`.
const LISTENING: &str = "listening on ";

/// The marker of its metrics listener, logged before [`LISTENING`].
const METRICS: &str = "metrics on ";

/// The administrator every data plane started here gets (unless the test
/// sets `ADMIN_PASSWORD` itself). One fixed value, so data planes sharing a
/// database agree on it.
pub const ADMIN_USERNAME: &str = "admin";
/// Its password.
pub const ADMIN_PASSWORD: &str = "testkit-admin-password-0f3a";

/// The `SECRET_KEY` every data plane started here gets (unless the test
/// sets its own): replicas sharing a database must seal and open with one
/// key, as a SecureVault's pods share theirs.
pub const SECRET_KEY: &str = "testkit-secret-key-shared-by-every-data-plane-0f3a";

/// Rate limits high enough that no test trips them unless it sets its own.
const UNLIMITED: &str = "1000000/1s";

/// A running data plane. Dropping it sends SIGTERM and waits for the exit
/// (so an instrumented binary writes its coverage profile), then kills it if
/// it is still there.
pub struct DataPlane {
    process: Process,
    addr: String,
    /// `http` or `https`.
    scheme: String,
    /// `scheme://host:port` of the metrics listener.
    metrics: String,
    // Declared after `process` so the directory outlives the server.
    data_dir: TempDir,
}

impl DataPlane {
    /// Starts `binary serve` with `env` on top of a clean environment:
    /// nothing inherited but `PATH` and `HOME`, so a developer's own
    /// `DATABASE_URL` or `REDIS_URL` cannot leak into a test. `LISTEN_ADDR`
    /// defaults to a free loopback port and `DATA_DIR` to a new directory;
    /// the administrator is [`ADMIN_USERNAME`] / [`ADMIN_PASSWORD`], and the
    /// rate limits are out of the way, unless `env` says otherwise.
    pub fn start(binary: &Path, env: &[(&str, &str)]) -> Result<DataPlane> {
        let data_dir = TempDir::new("dataplane")?;
        let mut cmd = Self::command(binary, data_dir.path());
        cmd.arg("serve");
        cmd.env("ADMIN_PASSWORD", ADMIN_PASSWORD);
        cmd.env("SECRET_KEY", SECRET_KEY);
        for var in ["RATE_LIMIT_API", "RATE_LIMIT_EMAIL", "RATE_LIMIT_AI"] {
            cmd.env(var, UNLIMITED);
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let process = Process::spawn("dataplane", cmd)?;
        let line = process.wait_for_line(
            |l| l.contains("listening on http://") || l.contains("listening on https://"),
            START_TIMEOUT,
        )?;
        let url = url_after(&line, LISTENING);
        let metrics = process
            .output_lines()
            .iter()
            .find(|l| l.contains(METRICS))
            .map(|l| url_after(l, METRICS))
            .unwrap_or_default();
        let (scheme, addr) = url.split_once("://").unwrap_or(("http", &url));
        Ok(DataPlane {
            process,
            scheme: scheme.to_owned(),
            addr: addr.to_owned(),
            metrics,
            data_dir,
        })
    }

    /// The command with the clean environment [`DataPlane::start`] uses, for
    /// tests that run other subcommands or expect the start to fail.
    pub fn command(binary: &Path, data_dir: &Path) -> Command {
        let mut cmd = Command::new(binary);
        cmd.env_clear();
        // Coverage runs (cargo llvm-cov) tell the instrumented binary where to
        // write its profile through these; without them its lines are lost.
        for (key, value) in std::env::vars_os() {
            let key_str = key.to_string_lossy();
            if key_str == "PATH"
                || key_str == "HOME"
                || key_str.starts_with("LLVM_PROFILE")
                || key_str.starts_with("CARGO_LLVM_COV")
            {
                cmd.env(&key, value);
            }
        }
        cmd.env("LISTEN_ADDR", "127.0.0.1:0")
            .env("METRICS_ADDR", "127.0.0.1:0")
            .env("DATA_DIR", data_dir);
        cmd
    }

    /// `http://host:port{path}` (or `https://`) on the metrics listener,
    /// e.g. `metrics_url("/metrics")`.
    pub fn metrics_url(&self, path: &str) -> String {
        format!("{}{path}", self.metrics)
    }

    /// `host:port` of the metrics listener.
    pub fn metrics_addr(&self) -> &str {
        self.metrics
            .split_once("://")
            .map_or(self.metrics.as_str(), |(_, addr)| addr)
    }

    /// `host:port` it listens on.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// `http://host:port{path}`, or `https://` when it serves TLS.
    pub fn url(&self, path: &str) -> String {
        format!("{}://{}{path}", self.scheme, self.addr)
    }

    /// Its private data directory (where the default SQLite file lives).
    pub fn data_dir(&self) -> &Path {
        self.data_dir.path()
    }

    /// The URL of the default SQLite database in its data directory.
    pub fn sqlite_url(&self) -> String {
        format!("sqlite://{}", self.sqlite_path().display())
    }

    /// The default SQLite file.
    pub fn sqlite_path(&self) -> PathBuf {
        self.data_dir.path().join("securevault.db")
    }

    /// The process, to signal it, wait for it or read its log lines.
    pub fn process(&mut self) -> &mut Process {
        &mut self.process
    }
}

/// The URL logged after `marker` in a JSON log line.
fn url_after(line: &str, marker: &str) -> String {
    line.split(marker)
        .nth(1)
        .map(|rest| {
            rest.chars()
                .take_while(|c| *c != '"' && !c.is_whitespace())
                .collect()
        })
        .unwrap_or_default()
}

impl Drop for DataPlane {
    fn drop(&mut self) {
        if self.process.is_running() && self.process.signal("TERM").is_ok() {
            let _ = self.process.wait_exit(DRAIN_TIMEOUT);
        }
    }
}
