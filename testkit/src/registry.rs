//! A private OCI registry for a test, and the release tools that talk to it.
//!
//! [`Registry`] is go-containerregistry's `crane registry serve` on a free
//! 127.0.0.1 port: plain HTTP, no authentication, blobs in a temporary
//! directory and manifests in memory, so nothing outlives the handle. crane
//! and cosign are built from Go modules by `tests/setup/crane.sh` and
//! `tests/setup/cosign.sh` once and cached; `$TESTKIT_CRANE` and
//! `$TESTKIT_COSIGN` name other binaries.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::dirs::{TempDir, free_port};
use crate::process::Process;
use crate::{Error, Result, bins, mailpit::http};

/// How long a start may take before it is reported as failed.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Starts on a port another process took in the meantime are retried.
const START_ATTEMPTS: usize = 3;

/// A running registry, killed (and its blobs removed) on drop.
#[derive(Debug)]
pub struct Registry {
    // Before `_dir`: the server dies before its files go.
    _process: Process,
    address: String,
    _dir: TempDir,
}

impl Registry {
    /// Starts a registry and waits until `/v2/` answers 200.
    pub fn start() -> Result<Registry> {
        let crane = crane()?;
        let dir = TempDir::new("registry")?;
        let mut last = None;
        for _ in 0..START_ATTEMPTS {
            let port = free_port();
            let address = format!("127.0.0.1:{port}");
            let mut cmd = Command::new(&crane);
            cmd.args(["registry", "serve", "--address", &address, "--disk"])
                .arg(dir.path());
            let process = Process::spawn(&format!("registry:{port}"), cmd)?;
            // crane logs this once it listens; a taken port makes it exit
            // first, which the wait reports as Exited.
            let serving = format!("serving on port {port}");
            match process.wait_for_line(|l| l.contains(&serving), START_TIMEOUT) {
                Ok(_) => {
                    wait_answering(port, &process)?;
                    return Ok(Registry {
                        _process: process,
                        address,
                        _dir: dir,
                    });
                }
                Err(e @ Error::Exited { .. }) => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| Error::InvalidArgument("no start attempted".into())))
    }

    /// `127.0.0.1:PORT`, the registry part of image references
    /// (`ADDRESS/securevault/dataplane:1.0.0`, `oci://ADDRESS/charts`).
    pub fn address(&self) -> &str {
        &self.address
    }
}

/// Polls `GET /v2/` (the registry API's version check) until it answers 200.
fn wait_answering(port: u16, process: &Process) -> Result<()> {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        match http(port, "GET", "/v2/", "") {
            Ok((200, _)) => return Ok(()),
            last if Instant::now() >= deadline => {
                return Err(Error::Timeout {
                    what: format!(
                        "the registry on 127.0.0.1:{port} to answer /v2/ (last: {last:?})"
                    ),
                    waited: START_TIMEOUT,
                    log_tail: process.log_tail(),
                });
            }
            _ => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// The crane binary: `$TESTKIT_CRANE`, else the one `tests/setup/crane.sh`
/// builds (once per process; a failure is remembered and repeated).
pub fn crane() -> Result<PathBuf> {
    static BUILT: OnceLock<std::result::Result<PathBuf, String>> = OnceLock::new();
    tool("TESTKIT_CRANE", "tests/setup/crane.sh", &BUILT)
}

/// The cosign binary: `$TESTKIT_COSIGN`, else the one `tests/setup/cosign.sh`
/// builds (a cold build takes several minutes; then cached).
pub fn cosign() -> Result<PathBuf> {
    static BUILT: OnceLock<std::result::Result<PathBuf, String>> = OnceLock::new();
    tool("TESTKIT_COSIGN", "tests/setup/cosign.sh", &BUILT)
}

fn tool(
    var: &str,
    script: &str,
    built: &OnceLock<std::result::Result<PathBuf, String>>,
) -> Result<PathBuf> {
    if let Some(path) = std::env::var_os(var).filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(path));
    }
    built
        .get_or_init(|| bins::built_by_script(script, &[]).map_err(|e| e.to_string()))
        .clone()
        .map_err(|output| Error::CommandFailed {
            command: script.to_owned(),
            status: "failed (once per test process)".to_owned(),
            output,
        })
}
