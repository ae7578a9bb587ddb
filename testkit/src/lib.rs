//! Real servers for SecureVault's tests.
//!
//! `testkit` is a dev-only crate shared by the integration tests of every
//! crate in the workspace. It starts **real** PostgreSQL and Redis servers
//! (and finds the workspace's own binaries) on free `127.0.0.1` ports, and
//! stops them again when the handle is dropped. There are no mocks: a test
//! that passes here talks to the same software production talks to.
//!
//! The crate is deliberately synchronous and std-only (`std::process`,
//! `std::net`, `std::thread`). Tests of async crates can still use it: the
//! handles are plain values that are created before the runtime work starts
//! and dropped afterwards, and nothing here blocks for longer than a server
//! takes to start.
//!
//! # Modules
//!
//! * [`dirs`] — [`TempDir`], a unique directory that is removed
//!   on drop, and [`free_port`], which asks the kernel for an unused
//!   loopback port. Everything else builds on these two.
//! * [`process`] — [`Process`], a child process whose output
//!   is captured line by line so tests can wait for a log line (e.g.
//!   "ready to accept connections") and so that a failure message can show
//!   what the server said. It is killed and reaped on drop, so no zombie or
//!   stray server outlives the test.
//! * [`redis`] — [`Redis`], a private `redis-server` with no
//!   config file and no persistence, ready once it answers `PING`.
//! * [`postgres`] — [`Postgres`], a private PostgreSQL
//!   cluster. `initdb` is slow, so it runs once per test process into a
//!   template directory that each new cluster copies.
//! * [`mailpit`] — [`Mailpit`], a private mailpit: a real SMTP server whose
//!   HTTP API lets a test read back the mail that arrived, with chaos
//!   triggers that make SMTP stages fail on demand. Built from Go modules by
//!   `tests/setup/mailpit.sh` once and cached.
//! * [`seaweedfs`] — [`SeaweedFs`], a private SeaweedFS: a real
//!   S3-compatible server for backups, with one identity and the buckets a
//!   test creates. Built from Go modules by `tests/setup/seaweedfs.sh`.
//! * [`registry`] — [`Registry`], a private OCI registry (crane's) for
//!   publishing tests, and the cached `crane` and `cosign` binaries.
//! * [`webhook_receiver`] — [`WebhookReceiver`], an HTTP receiver that
//!   verifies each webhook with the reference Standard Webhooks library and
//!   records it; the test queues the statuses it answers.
//! * [`certs`] — [`TestCa`](certs::TestCa), a private CA issuing server
//!   certificates (valid or expired) for TLS tests.
//! * [`http_recorder`] — [`HttpRecorder`], an HTTP server that answers 200
//!   and keeps every request, standing for PagerDuty's and Slack's endpoints.
//! * [`dataplane`] — [`DataPlane`], the real `dataplane` binary on a free
//!   port with its own data directory, for tests of whole-process behaviour
//!   (logs, signals, exit codes) and for the operator's tests.
//! * [`prometheus`] — [`Prometheus`] and [`Alertmanager`], Debian's servers
//!   with the configuration a test gives.
//! * [`cluster`] — [`Cluster`], the shared Kubernetes test cluster (a real
//!   kube-apiserver, etcd, controller-manager and scheduler with kwok's fake
//!   nodes, run by `tests/cluster/cluster.sh`), driven through `kubectl`,
//!   with a [`Namespace`](cluster::Namespace) per test that is deleted on
//!   drop. It is started once and left running; `make cluster-down` stops it.
//! * [`bins`] — locating executables: environment overrides
//!   first, then the Debian default locations, then `PATH`; and
//!   [`workspace_binary`] for binaries this workspace builds.
//!
//! # Design notes
//!
//! * Every server gets its own port and its own directory, so tests can run
//!   in parallel (the default for `cargo test`) without sharing state.
//! * Ports are chosen by binding port 0 and releasing it. That leaves a small
//!   window in which another process could take the port; restarts therefore
//!   retry, and the servers' own log line (not just a successful connect)
//!   confirms that *our* process owns the port.
//! * Servers run in the foreground as direct children (never daemonized, and
//!   never behind `pg_ctl` or `runuser`, which would put another process
//!   between us and the server), so the [`Process`] handle's pid *is* the
//!   server and dropping the handle really stops it.
//! * Errors carry the tail of the child's output, because "timed out" alone
//!   is useless when a server failed to start on a CI machine.

pub mod bins;
pub mod certs;
pub mod cluster;
pub mod dataplane;
pub mod dirs;
pub mod docker;
pub mod http_recorder;
pub mod llama;
pub mod mailpit;
pub mod postgres;
pub mod process;
pub mod prometheus;
pub mod redis;
pub mod registry;
pub mod seaweedfs;
pub mod webhook_receiver;

use std::path::PathBuf;
use std::time::Duration;

pub use bins::workspace_binary;
pub use cluster::Cluster;
pub use dataplane::{ADMIN_PASSWORD, ADMIN_USERNAME, DataPlane, SECRET_KEY};
pub use dirs::{TempDir, free_port};
pub use docker::DockerEngine;
pub use http_recorder::HttpRecorder;
pub use llama::LlamaServer;
pub use mailpit::Mailpit;
pub use postgres::Postgres;
pub use process::Process;
pub use prometheus::{Alertmanager, Prometheus};
pub use redis::Redis;
pub use registry::Registry;
pub use seaweedfs::SeaweedFs;
pub use webhook_receiver::WebhookReceiver;

/// The result type of every fallible testkit function.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong while starting, driving or stopping a test
/// server.
///
/// Variants carry enough context (paths tried, the command line, the tail of
/// the child's log) for a failing test's message to explain itself. `Debug`
/// prints the same text as `Display`, because tests mostly `.unwrap()` and
/// a server log rendered as one escaped string would be unreadable.
#[derive(thiserror::Error)]
pub enum Error {
    /// An executable could not be found in any of the places searched.
    #[error("binary `{name}` not found; tried: {}", display_paths(.tried))]
    BinaryNotFound {
        /// The executable's name, e.g. `redis-server`.
        name: String,
        /// Every path that was checked, in order.
        tried: Vec<PathBuf>,
    },

    /// The operating system refused to start a child process.
    #[error("failed to spawn `{name}` ({program}): {source}")]
    Spawn {
        /// The name given to the process (used as its log prefix).
        name: String,
        /// The program that was executed.
        program: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// Something did not happen within the allowed time.
    #[error("timed out after {waited:?} waiting for {what}; last output:\n{log_tail}")]
    Timeout {
        /// What was being waited for, e.g. "redis:6379 to answer PING".
        what: String,
        /// How long we waited.
        waited: Duration,
        /// The last lines the process printed (may be empty).
        log_tail: String,
    },

    /// A process exited while we were waiting for it to do something else.
    #[error("`{name}` exited ({status}) while waiting for {what}; last output:\n{log_tail}")]
    Exited {
        /// The name given to the process.
        name: String,
        /// What was being waited for.
        what: String,
        /// Its exit status, as displayed by std.
        status: String,
        /// The last lines the process printed.
        log_tail: String,
    },

    /// The process has already exited and been reaped, so it cannot be
    /// signalled (its pid may belong to someone else by now).
    #[error("`{name}` is not running")]
    NotRunning {
        /// The name given to the process.
        name: String,
    },

    /// A helper command (initdb, psql, cp, kill, ...) ran but failed.
    #[error("command `{command}` failed ({status}):\n{output}")]
    CommandFailed {
        /// The command line, for copy-pasting into a shell.
        command: String,
        /// Its exit status, as displayed by std.
        status: String,
        /// Its stdout and stderr.
        output: String,
    },

    /// Creating the shared PostgreSQL template cluster failed earlier in this
    /// process. The first failure's message is repeated for every later
    /// caller rather than running a slow, doomed `initdb` again per test.
    #[error("the PostgreSQL template cluster could not be created: {0}")]
    TemplateFailed(String),

    /// Starting (or reaching) the shared Kubernetes test cluster failed
    /// earlier in this process; the first failure's message is repeated for
    /// every later caller rather than running `cluster.sh up` again per test.
    #[error("the shared Kubernetes test cluster is not available: {0}")]
    ClusterFailed(String),

    /// An argument was rejected before anything was run.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),

    /// A filesystem or network operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being attempted, e.g. "creating /tmp/x".
        what: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// Wraps an [`std::io::Error`] with a description of what was attempted.
    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> Error {
        Error::Io {
            what: what.into(),
            source,
        }
    }
}

impl std::fmt::Debug for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

fn display_paths(paths: &[PathBuf]) -> String {
    if paths.is_empty() {
        return "(nothing)".to_owned();
    }
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}
