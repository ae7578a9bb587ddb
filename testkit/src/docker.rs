//! A private Docker engine for a test: Debian's `dockerd` with its state in
//! a temporary directory, stopped (and its directory removed) on drop, so a
//! test never depends on, or leaves behind, an engine of the machine.
//!
//! Started as `dockerd --storage-driver=vfs --iptables=false --bridge=none`:
//! no overlay filesystem is needed, and nothing touches the host's network.

use std::{
    path::Path,
    process::{Command, Output},
    time::Duration,
};

use crate::{Error, Process, Result, TempDir, bins};

/// The running engine; `DOCKER_HOST` for clients is [`DockerEngine::host`].
pub struct DockerEngine {
    // Taken (the daemon stopped) first on drop, then its mount is undone,
    // then its directory removed.
    process: Option<Process>,
    host: String,
    dir: TempDir,
}

impl Drop for DockerEngine {
    fn drop(&mut self) {
        drop(self.process.take());
        // dockerd bind-mounts the network namespace at exec/netns/default
        // and, killed, leaves it mounted: every engine would leak a mount
        // and a directory that cannot be removed.
        let _ = Command::new("umount")
            .arg(self.dir.path().join("exec/netns/default"))
            .output();
    }
}

impl DockerEngine {
    /// Starts the engine and waits (up to 30 s) until `docker info` answers.
    pub fn start() -> Result<DockerEngine> {
        let dockerd = bins::system_binary("dockerd", "TESTKIT_DOCKERD")?;
        let dir = TempDir::new("dockerd")?;
        let host = format!("unix://{}", dir.path().join("docker.sock").display());
        let at = |name: &str| dir.path().join(name).display().to_string();
        let mut cmd = Command::new(dockerd);
        cmd.arg("--storage-driver=vfs")
            .arg(format!("--data-root={}", at("data")))
            .arg(format!("--exec-root={}", at("exec")))
            .arg(format!("--pidfile={}", at("dockerd.pid")))
            .arg(format!("--host={host}"))
            .args(["--iptables=false", "--bridge=none"]);
        let process = Process::spawn("dockerd", cmd)?;
        let engine = DockerEngine {
            process: Some(process),
            host,
            dir,
        };
        for _ in 0..150 {
            if engine.docker(&["info"]).is_ok() {
                return Ok(engine);
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Err(Error::Timeout {
            what: "dockerd to answer `docker info`".into(),
            waited: Duration::from_secs(30),
            log_tail: engine
                .process
                .as_ref()
                .map(Process::log_tail)
                .unwrap_or_default(),
        })
    }

    /// The `DOCKER_HOST` value that reaches this engine.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// `docker ARGS…` against this engine: its stdout, or
    /// [`Error::CommandFailed`] with both streams.
    pub fn docker(&self, args: &[&str]) -> Result<String> {
        bins::run(
            Command::new("docker")
                .env("DOCKER_HOST", &self.host)
                .args(args),
        )
    }

    /// `docker ARGS…` whatever its exit status (for commands whose failure
    /// a test inspects, such as `docker logs` of a stopped container).
    pub fn output(&self, args: &[&str]) -> Result<Output> {
        Command::new("docker")
            .env("DOCKER_HOST", &self.host)
            .args(args)
            .output()
            .map_err(|e| Error::io("running the docker client", e))
    }

    /// Builds the production images with the repository's `docker/build.sh`
    /// (`PROFILE=debug`: the debug binaries `make test` built, packed the
    /// production way) and returns what it printed: one line per image,
    /// name and size.
    pub fn build_images(&self) -> Result<String> {
        let script = bins::workspace_script("docker/build.sh")?;
        bins::run(
            Command::new(script)
                .env("DOCKER_HOST", &self.host)
                .env("PROFILE", "debug"),
        )
    }

    /// `docker save` of `image` into `file` (a Docker archive, which
    /// containerd's `ctr images import` takes).
    pub fn save(&self, image: &str, file: &Path) -> Result<()> {
        let file = file.display().to_string();
        self.docker(&["save", "-o", &file, image]).map(drop)
    }
}
