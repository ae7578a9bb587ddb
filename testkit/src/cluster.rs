//! The shared Kubernetes test cluster.
//!
//! Unlike PostgreSQL and Redis, a control plane (kube-apiserver, etcd,
//! kube-controller-manager, kube-scheduler and kwok's fake nodes) takes
//! seconds to start and minutes to build the first time, so tests do not get
//! one each: every test of a test process shares one cluster, and tests keep
//! out of each other's way through a namespace each ([`Cluster::create_namespace`]).
//!
//! The cluster itself is run by `tests/cluster/cluster.sh` (`make cluster-up`),
//! which builds the real binaries from Go modules, caches them under
//! `~/.cache/securevault/bin/` and writes the admin kubeconfig to
//! `~/.cache/securevault/cluster/kubeconfig` (`$SECUREVAULT_CACHE` replaces
//! `~/.cache/securevault`). [`Cluster::shared`] uses a running one, or starts
//! it.
//!
//! **testkit never stops the cluster**: it is shared with later test
//! processes and with the developer's own `kubectl`. `make cluster-down`
//! (`tests/cluster/cluster.sh down`) stops it. A runner that manages the
//! cluster itself (`make test` is meant to: `cluster.sh up` before `cargo
//! test`, `cluster.sh down` after) sets `SECUREVAULT_KUBECONFIG`, and then
//! testkit only uses it.
//!
//! Everything goes through the `kubectl` built with the cluster (the
//! machine's own `kubectl` is an older client), which keeps this crate free
//! of a Kubernetes client library and its async runtime.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::bins::{self, command_line, is_executable};
use crate::process::Process;
use crate::{Error, Result};

/// The script that builds, starts and stops the cluster, relative to the
/// workspace root.
const SCRIPT: &str = "tests/cluster/cluster.sh";

/// How long `cluster.sh up` may take. A cold build of the binaries is about
/// 8 minutes on a 2-core machine; a warm start takes seconds.
const UP_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// The longest namespace prefix accepted: the name, `prefix-<pid>-<n>`, must
/// stay a DNS label (63 characters).
const MAX_PREFIX: usize = 40;

/// A running Kubernetes cluster, reached through its admin kubeconfig and
/// the `kubectl` built with it.
#[derive(Debug, Clone)]
pub struct Cluster {
    kubeconfig: PathBuf,
    kubectl: PathBuf,
}

impl Cluster {
    /// The shared test cluster.
    ///
    /// If `SECUREVAULT_KUBECONFIG` is set (by a runner such as `make test`
    /// that started the cluster before `cargo test` and stops it after),
    /// that kubeconfig is used as it is. Otherwise `tests/cluster/cluster.sh up` runs, once per test
    /// process: it builds the binaries if they are not cached yet (minutes),
    /// starts the cluster unless it already answers (seconds), and leaves it
    /// running afterwards; stop it with `make cluster-down`.
    ///
    /// `kubectl` is `$SECUREVAULT_KUBECTL` if set, else the one
    /// `cluster.sh` builds. Either way the API server must answer
    /// `/readyz` before this returns. A failure is remembered, so later
    /// tests of the same process fail at once with the same message.
    pub fn shared() -> Result<&'static Cluster> {
        static SHARED: OnceLock<std::result::Result<Cluster, String>> = OnceLock::new();
        SHARED
            .get_or_init(|| start_shared().map_err(|e| e.to_string()))
            .as_ref()
            .map_err(|e| Error::ClusterFailed(e.clone()))
    }

    /// A cluster reached through `kubeconfig` with the given `kubectl`,
    /// for a cluster started some other way. Nothing is checked or started.
    pub fn new(kubeconfig: impl Into<PathBuf>, kubectl: impl Into<PathBuf>) -> Cluster {
        Cluster {
            kubeconfig: kubeconfig.into(),
            kubectl: kubectl.into(),
        }
    }

    /// The admin kubeconfig, e.g. for the operator under test
    /// (`KUBECONFIG=...`).
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// The `kubectl` used by [`Cluster::kubectl`].
    pub fn kubectl_path(&self) -> &Path {
        &self.kubectl
    }

    /// Runs `kubectl --kubeconfig <kubeconfig> ARGS...` and returns its
    /// stdout. A non-zero exit is [`Error::CommandFailed`] with the command
    /// line and both output streams (the API server's refusal is on
    /// stderr).
    pub fn kubectl(&self, args: &[&str]) -> Result<String> {
        bins::run(&mut self.command(args))
    }

    /// Waits (up to 60 s) until the CustomResourceDefinition `name` is
    /// Established. Right after an apply a CRD may have no status yet,
    /// which `kubectl wait` reports as an error instead of waiting (more
    /// often on a busy API server): that is tried again, up to 10 times.
    pub fn wait_established(&self, name: &str) -> Result<()> {
        let crd = format!("crd/{name}");
        let mut tries = 0;
        loop {
            match self.kubectl(&["wait", "--for=condition=Established", "--timeout=60s", &crd]) {
                Ok(_) => return Ok(()),
                Err(e) if tries >= 9 => return Err(e),
                Err(_) => {
                    tries += 1;
                    std::thread::sleep(std::time::Duration::from_millis(500));
                }
            }
        }
    }

    /// A lock on the cluster's optional CRDs (the Prometheus Operator's and
    /// cert-manager's, which `cluster.sh` installs): held `exclusive` by a
    /// test that deletes and reinstalls them
    /// (operator/tests/optional_crds.rs), shared by one that needs them in
    /// place. The two lanes of `make test` are separate processes running
    /// at once, so it is a lock on a file beside the kubeconfig; it is
    /// released when the returned file is dropped.
    pub fn crds_lock(&self, exclusive: bool) -> Result<std::fs::File> {
        let path = self.kubeconfig.with_file_name("crds.lock");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
        if exclusive {
            file.lock()
        } else {
            file.lock_shared()
        }
        .map_err(|e| Error::io(format!("locking {}", path.display()), e))?;
        Ok(file)
    }

    /// Like [`Cluster::kubectl`], with `stdin` on kubectl's standard input:
    /// `cluster.kubectl_stdin(&["apply", "-f", "-"], yaml)`.
    pub fn kubectl_stdin(&self, args: &[&str], stdin: &str) -> Result<String> {
        let mut cmd = self.command(args);
        let line = command_line(&cmd);
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| Error::Spawn {
                name: line.clone(),
                program: self.kubectl.display().to_string(),
                source: e,
            })?;
        // Written from a thread while the output is read here, so that
        // neither side can fill a pipe and wait for the other forever.
        let writer = child.stdin.take().map(|mut pipe| {
            let input = stdin.to_owned();
            std::thread::spawn(move || pipe.write_all(input.as_bytes()))
        });
        let Output {
            status,
            stdout,
            stderr,
        } = child
            .wait_with_output()
            .map_err(|e| Error::io(format!("waiting for `{line}`"), e))?;
        // kubectl may exit without reading all of its input (e.g. on a bad
        // flag); the broken pipe that leaves is not the error to report.
        let written = writer.map(|w| w.join());
        let stdout = String::from_utf8_lossy(&stdout).into_owned();
        if !status.success() {
            return Err(Error::CommandFailed {
                command: line,
                status: status.to_string(),
                output: format!("{stdout}{}", String::from_utf8_lossy(&stderr)),
            });
        }
        if let Some(Ok(Err(e))) = written {
            return Err(Error::io(format!("writing the input of `{line}`"), e));
        }
        Ok(stdout)
    }

    /// Creates a namespace named `<prefix>-<pid>-<n>`, unique across the
    /// tests of this process and across test processes running at once. It
    /// is deleted (without waiting for its contents to go) when the handle
    /// is dropped.
    ///
    /// `prefix` must be lowercase letters, digits and `-`, start with a
    /// letter and be at most 40 characters long.
    pub fn create_namespace(&self, prefix: &str) -> Result<Namespace> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let valid = prefix.len() <= MAX_PREFIX
            && prefix.starts_with(|c: char| c.is_ascii_lowercase())
            && prefix
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !valid {
            return Err(Error::InvalidArgument(format!(
                "namespace prefix {prefix:?} must be 1 to {MAX_PREFIX} characters of \
                 a-z, 0-9 and '-', starting with a letter"
            )));
        }
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("{prefix}-{}-{n}", std::process::id());
        self.kubectl(&["create", "namespace", &name])?;
        Ok(Namespace {
            name,
            cluster: self.clone(),
        })
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.kubectl);
        cmd.arg("--kubeconfig").arg(&self.kubeconfig).args(args);
        cmd
    }
}

/// A namespace of the test cluster, deleted on drop.
///
/// The deletion is requested with `--wait=false`: the namespace controller
/// empties it in the background, and the test does not wait for it.
#[derive(Debug)]
pub struct Namespace {
    name: String,
    cluster: Cluster,
}

impl Namespace {
    /// The namespace's name, for `kubectl -n` and for manifests.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        // Best effort, like TempDir: a cluster that went away must not turn
        // a finished test into a panic.
        let _ = self.cluster.kubectl(&[
            "delete",
            "namespace",
            &self.name,
            "--wait=false",
            "--ignore-not-found",
        ]);
    }
}

fn start_shared() -> Result<Cluster> {
    let kubeconfig = match non_empty_env("SECUREVAULT_KUBECONFIG") {
        Some(path) => PathBuf::from(path),
        None => {
            let script = script()?;
            cluster_up(&script)?;
            PathBuf::from(script_output(&script, "kubeconfig")?)
        }
    };
    if !kubeconfig.is_file() {
        return Err(Error::InvalidArgument(format!(
            "kubeconfig {} does not exist (is the cluster running? `make cluster-up` starts it)",
            kubeconfig.display()
        )));
    }
    let kubectl = match non_empty_env("SECUREVAULT_KUBECTL") {
        Some(path) => PathBuf::from(path),
        None => PathBuf::from(script_output(&script()?, "kubectl")?),
    };
    if !is_executable(&kubectl) {
        return Err(Error::BinaryNotFound {
            name: "kubectl".to_owned(),
            tried: vec![kubectl],
        });
    }
    let cluster = Cluster {
        kubeconfig,
        kubectl,
    };
    let ready = cluster.kubectl(&["get", "--raw", "/readyz", "--request-timeout=10s"])?;
    if ready.trim() != "ok" {
        return Err(Error::InvalidArgument(format!(
            "the API server of {} answered /readyz with {ready:?}",
            cluster.kubeconfig.display()
        )));
    }
    Ok(cluster)
}

/// Runs `cluster.sh up`, its output going to the test's log through
/// [`Process`] (a cold build prints for minutes).
fn cluster_up(script: &Path) -> Result<()> {
    let mut cmd = Command::new(script);
    cmd.arg("up");
    let line = command_line(&cmd);
    let mut process = Process::spawn("cluster.sh up", cmd)?;
    let status = process.wait_exit(UP_TIMEOUT)?;
    if status.success() {
        return Ok(());
    }
    Err(Error::CommandFailed {
        command: line,
        status: status.to_string(),
        output: process.log_tail(),
    })
}

/// `cluster.sh kubeconfig` or `cluster.sh kubectl`: the script is the one
/// place that knows the cache layout and the versions.
fn script_output(script: &Path, what: &str) -> Result<String> {
    let mut cmd = Command::new(script);
    cmd.arg(what);
    Ok(bins::run(&mut cmd)?.trim().to_owned())
}

/// `tests/cluster/cluster.sh` in the first directory at or above this
/// crate's that has one: the workspace root.
fn script() -> Result<PathBuf> {
    bins::workspace_script(SCRIPT)
}

fn non_empty_env(name: &str) -> Option<std::ffi::OsString> {
    std::env::var_os(name).filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_script_in_the_workspace() {
        let script = script().unwrap();
        assert!(script.ends_with(SCRIPT), "{}", script.display());
    }

    #[test]
    fn rejects_bad_namespace_prefixes() {
        let cluster = Cluster::new("/nonexistent/kubeconfig", "/nonexistent/kubectl");
        for bad in [
            "",
            "Upper",
            "1st",
            "under_score",
            "dot.ted",
            &"x".repeat(41),
        ] {
            let err = cluster.create_namespace(bad).unwrap_err();
            assert!(matches!(err, Error::InvalidArgument(_)), "{bad:?}: {err}");
        }
    }

    #[test]
    fn kubectl_errors_name_the_command() {
        let cluster = Cluster::new("/nonexistent/kubeconfig", "/bin/false");
        let err = cluster.kubectl(&["get", "nodes"]).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("/bin/false --kubeconfig /nonexistent/kubeconfig get nodes"),
            "{msg}"
        );
    }

    #[test]
    fn kubectl_stdin_feeds_the_input() {
        // `sh -c 'cat' --kubeconfig K ARGS` ignores the arguments: a
        // stand-in program to check the plumbing, not kubectl itself.
        let dir = crate::TempDir::new("cluster-unit").unwrap();
        let fake = dir.path().join("cat-kubectl");
        std::fs::write(&fake, "#!/bin/sh\nexec cat\n").unwrap();
        std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let cluster = Cluster::new("/nonexistent/kubeconfig", &fake);
        let big = "line\n".repeat(100_000);
        assert_eq!(
            cluster.kubectl_stdin(&["apply", "-f", "-"], &big).unwrap(),
            big
        );
    }
}
