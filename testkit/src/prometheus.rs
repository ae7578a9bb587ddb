//! Private Prometheus and Alertmanager servers per test (Debian's
//! `prometheus` and `prometheus-alertmanager` packages), each on a free
//! 127.0.0.1 port with its configuration and a throwaway data directory.
//! [`Prometheus::get`] and [`Alertmanager::get`] read their HTTP APIs
//! (`/api/v1/alerts`, `/api/v2/alerts`…).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::dirs::{TempDir, free_port};
use crate::mailpit::http;
use crate::process::Process;
use crate::{Error, Result, bins};

const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A server of the Prometheus family, killed on drop.
#[derive(Debug)]
struct Server {
    // Held for their Drop; the process first, so the server stops before
    // its directory goes.
    _process: Process,
    port: u16,
    dir: TempDir,
}

impl Server {
    /// Writes `files` (name, contents) into a new directory, starts `binary`
    /// there with the arguments `args` makes from the directory and a free
    /// port, and returns once `/-/ready` answers 200 (both servers have it).
    fn start(
        name: &str,
        binary: PathBuf,
        files: &[(&str, &str)],
        args: impl FnOnce(&Path, u16) -> Vec<String>,
    ) -> Result<Server> {
        let dir = TempDir::new(name)?;
        for (file, text) in files {
            let path = dir.path().join(file);
            std::fs::write(&path, text)
                .map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
        }
        let port = free_port();
        let mut cmd = Command::new(binary);
        cmd.current_dir(dir.path()).args(args(dir.path(), port));
        let process = Process::spawn(&format!("{name}:{port}"), cmd)?;
        let deadline = Instant::now() + START_TIMEOUT;
        while !matches!(http(port, "GET", "/-/ready", ""), Ok((200, _))) {
            if Instant::now() > deadline {
                return Err(Error::CommandFailed {
                    command: format!("{name} on port {port}"),
                    status: format!("not ready within {START_TIMEOUT:?}"),
                    output: process.log_tail(),
                });
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(Server {
            _process: process,
            port,
            dir,
        })
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn get(&self, path: &str) -> Result<String> {
        match http(self.port, "GET", path, "") {
            Ok((200, body)) => Ok(body),
            Ok((status, body)) => Err(Error::CommandFailed {
                command: format!("GET {}{path}", self.url()),
                status: format!("HTTP {status}"),
                output: body,
            }),
            Err(e) => Err(Error::io(format!("GET {}{path}", self.url()), e)),
        }
    }
}

/// A running Prometheus, killed on drop.
#[derive(Debug)]
pub struct Prometheus(Server);

impl Prometheus {
    /// Starts Prometheus with `config` (prometheus.yml) and `files` (name,
    /// contents) written beside it, e.g. the rule files the config names;
    /// returns once `/-/ready` answers 200.
    pub fn start(config: &str, files: &[(&str, &str)]) -> Result<Prometheus> {
        Prometheus::start_binary(prometheus_binary()?, config, files)
    }

    /// Like [`Prometheus::start`], with another build of Prometheus: the
    /// one with Kubernetes service discovery that Debian's lacks
    /// (tests/setup/prometheus-operator.sh).
    pub fn start_binary(
        binary: PathBuf,
        config: &str,
        files: &[(&str, &str)],
    ) -> Result<Prometheus> {
        let mut all = vec![("prometheus.yml", config)];
        all.extend_from_slice(files);
        Server::start("prometheus", binary, &all, |dir, port| {
            vec![
                "--config.file=prometheus.yml".to_owned(),
                format!("--storage.tsdb.path={}", dir.join("data").display()),
                format!("--web.listen-address=127.0.0.1:{port}"),
                "--log.level=warn".to_owned(),
            ]
        })
        .map(Prometheus)
    }

    /// `http://127.0.0.1:P`.
    pub fn url(&self) -> String {
        self.0.url()
    }

    /// The directory its files were written to: a `file_sd_configs` file
    /// there, rewritten, changes its targets without a restart.
    pub fn dir(&self) -> &Path {
        self.0.dir.path()
    }

    /// The body of `GET path` (e.g. `/api/v1/alerts`), if the answer is 200.
    pub fn get(&self, path: &str) -> Result<String> {
        self.0.get(path)
    }
}

/// A running Alertmanager (no clustering), killed on drop.
#[derive(Debug)]
pub struct Alertmanager(Server);

impl Alertmanager {
    /// Starts Alertmanager with `config` (alertmanager.yml) and `files`
    /// written beside it (e.g. the secret files the config reads); returns
    /// once `/-/ready` answers 200.
    pub fn start(config: &str, files: &[(&str, &str)]) -> Result<Alertmanager> {
        let mut all = vec![("alertmanager.yml", config)];
        all.extend_from_slice(files);
        Server::start("alertmanager", alertmanager_binary()?, &all, |dir, port| {
            vec![
                "--config.file=alertmanager.yml".to_owned(),
                format!("--storage.path={}", dir.join("data").display()),
                format!("--web.listen-address=127.0.0.1:{port}"),
                // A single instance: no gossip port to collide with others.
                "--cluster.listen-address=".to_owned(),
                "--log.level=warn".to_owned(),
            ]
        })
        .map(Alertmanager)
    }

    /// `http://127.0.0.1:P`.
    pub fn url(&self) -> String {
        self.0.url()
    }

    /// `127.0.0.1:P`, for Prometheus's `alerting.alertmanagers` targets.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.0.port)
    }

    /// The directory its files were written to (for absolute paths in them).
    pub fn dir(&self) -> &Path {
        self.0.dir.path()
    }

    /// The body of `GET path` (e.g. `/api/v2/alerts`), if the answer is 200.
    pub fn get(&self, path: &str) -> Result<String> {
        self.0.get(path)
    }
}

/// Finds `prometheus`: `$TESTKIT_PROMETHEUS`, then `/usr/bin`, then `PATH`
/// (`make test-deps` installs Debian's package).
pub fn prometheus_binary() -> Result<PathBuf> {
    bins::system_binary("prometheus", "TESTKIT_PROMETHEUS")
}

/// Finds `promtool` likewise (`$TESTKIT_PROMTOOL`).
pub fn promtool_binary() -> Result<PathBuf> {
    bins::system_binary("promtool", "TESTKIT_PROMTOOL")
}

/// Finds Debian's `prometheus-alertmanager` likewise (`$TESTKIT_ALERTMANAGER`).
pub fn alertmanager_binary() -> Result<PathBuf> {
    bins::system_binary("prometheus-alertmanager", "TESTKIT_ALERTMANAGER")
}

/// Finds `amtool`, the Alertmanager's config checker (`$TESTKIT_AMTOOL`).
pub fn amtool_binary() -> Result<PathBuf> {
    bins::system_binary("amtool", "TESTKIT_AMTOOL")
}
