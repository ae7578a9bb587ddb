//! A private Prometheus server per test (Debian's `prometheus` package):
//! scraping what the test names, with the rule files it gives, on a free
//! 127.0.0.1 port and a throwaway TSDB. [`Prometheus::get`] reads its HTTP
//! API (`/api/v1/series`, `/api/v1/alerts`…).

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::dirs::{TempDir, free_port};
use crate::mailpit::http;
use crate::process::Process;
use crate::{Error, Result, bins};

const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A running Prometheus, killed on drop.
#[derive(Debug)]
pub struct Prometheus {
    // Held for their Drop; the process first, so the server stops before
    // its directory goes.
    _process: Process,
    port: u16,
    _dir: TempDir,
}

impl Prometheus {
    /// Starts Prometheus with `config` (prometheus.yml) and `files` (name,
    /// contents) written beside it, e.g. the rule files the config names;
    /// returns once `/-/ready` answers 200.
    pub fn start(config: &str, files: &[(&str, &str)]) -> Result<Prometheus> {
        let binary = prometheus_binary()?;
        let dir = TempDir::new("prometheus")?;
        let write = |name: &str, text: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, text)
                .map_err(|e| Error::io(format!("writing {}", path.display()), e))
        };
        write("prometheus.yml", config)?;
        for (name, text) in files {
            write(name, text)?;
        }
        let port = free_port();
        let mut cmd = Command::new(binary);
        cmd.current_dir(dir.path())
            .arg("--config.file=prometheus.yml")
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn");
        let process = Process::spawn(&format!("prometheus:{port}"), cmd)?;
        let deadline = Instant::now() + START_TIMEOUT;
        while !matches!(http(port, "GET", "/-/ready", ""), Ok((200, _))) {
            if Instant::now() > deadline {
                return Err(Error::CommandFailed {
                    command: format!("prometheus on port {port}"),
                    status: format!("not ready within {START_TIMEOUT:?}"),
                    output: process.log_tail(),
                });
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(Prometheus {
            _process: process,
            port,
            _dir: dir,
        })
    }

    /// `http://127.0.0.1:P`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The body of `GET path` (e.g. `/api/v1/alerts`), if the answer is 200.
    pub fn get(&self, path: &str) -> Result<String> {
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

/// Finds `prometheus`: `$TESTKIT_PROMETHEUS`, then `/usr/bin`, then `PATH`
/// (`make test-deps` installs Debian's package).
pub fn prometheus_binary() -> Result<PathBuf> {
    bins::system_binary("prometheus", "TESTKIT_PROMETHEUS")
}

/// Finds `promtool` likewise (`$TESTKIT_PROMTOOL`).
pub fn promtool_binary() -> Result<PathBuf> {
    bins::system_binary("promtool", "TESTKIT_PROMTOOL")
}
