//! A private PostgreSQL cluster per test.
//!
//! `initdb` takes a second or two, which adds up quickly when every test
//! wants its own server. So it runs once per test process, into a template
//! data directory, and each [`Postgres`] copies that (`cp -a`, a few tens of
//! milliseconds) and starts `postgres` on it directly.
//!
//! The server runs with durability switched off (`fsync`,
//! `synchronous_commit`, `full_page_writes`): a test cluster never survives
//! a machine crash anyway, and the savings make tests markedly faster.
//!
//! PostgreSQL refuses to run as root. When the tests run as root (as in the
//! CI container), `initdb` and `postgres` run as the `postgres` user, set
//! directly on the child with `CommandExt::uid/gid` rather than via
//! `runuser`: `runuser` forks and stays around as a "watching parent", so
//! the pid we hold would not be the server's and our signals would arrive
//! translated (SIGINT becomes SIGTERM, then SIGKILL two seconds later).

use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::dirs::{TempDir, free_port};
use crate::process::Process;
use crate::{Error, Result, bins};

/// How long a start or restart may take before it is reported as failed.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a fast shutdown may take before the server is SIGKILLed.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// How many times a start is attempted when the port (or the previous
/// instance's shared memory) is still in use.
const START_ATTEMPTS: u64 = 5;

/// Log fragments meaning "try again in a moment" rather than "broken".
const RETRYABLE: [&str; 3] = [
    "Address already in use",
    "could not create any TCP/IP sockets",
    "pre-existing shared memory block",
];

/// A private PostgreSQL cluster on a free 127.0.0.1 port.
///
/// Superuser `postgres`, trust authentication, loopback only. The server is
/// shut down (fast mode) and its data directory removed on drop.
#[derive(Debug)]
pub struct Postgres {
    // Declared before `dir` so the server is gone before its data directory
    // is removed (Drop also stops it explicitly, gracefully).
    process: Option<Process>,
    /// Holds `data/` (the cluster) and `sock/` (the Unix socket directory).
    dir: TempDir,
    port: u16,
    binary: PathBuf,
    /// uid/gid to run the server as, when we are root.
    owner: Option<(u32, u32)>,
}

impl Postgres {
    /// Creates a new cluster from the template and starts it on a free port;
    /// returns once the log says it is ready and a TCP connect succeeds
    /// (within 30 s).
    pub fn start() -> Result<Postgres> {
        let binary = bins::pg_binary("postgres")?;
        let template = template()?;
        let owner = run_as()?;
        let dir = TempDir::new("pg")?;

        let mut cp = Command::new("cp");
        cp.arg("-a")
            .arg(template.path().join("data"))
            .arg(dir.path().join("data"));
        bins::run(&mut cp)?;
        let sock = dir.path().join("sock");
        std::fs::create_dir(&sock)
            .map_err(|e| Error::io(format!("creating {}", sock.display()), e))?;
        chown(&sock, owner)?;

        let mut pg = Postgres {
            process: None,
            dir,
            port: free_port(),
            binary,
            owner,
        };
        pg.launch()?;
        Ok(pg)
    }

    /// The TCP port the server listens on (it keeps it across restarts).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL of the default database, `postgres://postgres@127.0.0.1:P/postgres`.
    pub fn url(&self) -> String {
        self.database_url("postgres")
    }

    /// The URL of database `name` on this server (which need not exist yet).
    pub fn database_url(&self, name: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }

    /// The cluster's data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The running server process, if any, e.g. to inspect its log or to
    /// `signal("STOP")` it for a hung-database test.
    pub fn process(&self) -> Option<&Process> {
        self.process.as_ref()
    }

    /// Creates database `name` and returns its URL.
    ///
    /// `name` must match `[a-z0-9_]+`, which keeps it safe to splice into
    /// SQL and the URL, and means tests never trip over identifier case.
    pub fn create_database(&self, name: &str) -> Result<String> {
        let valid = !name.is_empty()
            && name.len() <= 63
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !valid {
            return Err(Error::InvalidArgument(format!(
                "database name {name:?} must match [a-z0-9_]{{1,63}}"
            )));
        }
        // Quoted so that names starting with a digit are accepted too.
        self.psql("postgres", &format!("CREATE DATABASE \"{name}\""))?;
        Ok(self.database_url(name))
    }

    /// Runs `sql` in `database` with `psql -X -v ON_ERROR_STOP=1 -At` and
    /// returns its stdout without the final newline (so `SELECT 1` gives
    /// `"1"`). Any SQL error fails with [`Error::CommandFailed`].
    pub fn psql(&self, database: &str, sql: &str) -> Result<String> {
        let mut cmd = Command::new(bins::pg_binary("psql")?);
        cmd.args(["-X", "-v", "ON_ERROR_STOP=1", "-At", "-h", "127.0.0.1"])
            .arg("-p")
            .arg(self.port.to_string())
            .args(["-U", "postgres", "-d", database, "-c", sql])
            // A developer's own PG* settings must not redirect the tests.
            .env_remove("PGSERVICE")
            .env_remove("PGOPTIONS")
            .env("PGCONNECT_TIMEOUT", "10");
        let out = bins::run(&mut cmd)?;
        Ok(out.strip_suffix('\n').unwrap_or(&out).to_owned())
    }

    /// `pg_dump` of `database` as SQL text: what an operator's own backup
    /// of the database holds.
    pub fn dump(&self, database: &str) -> Result<String> {
        let mut cmd = Command::new(bins::pg_binary("pg_dump")?);
        cmd.args(["-h", "127.0.0.1", "-U", "postgres", "-d", database])
            .arg("-p")
            .arg(self.port.to_string())
            .env_remove("PGSERVICE")
            .env_remove("PGOPTIONS")
            .env("PGCONNECT_TIMEOUT", "10");
        bins::run(&mut cmd)
    }

    /// Shuts the server down in "fast" mode (SIGINT: abort transactions,
    /// disconnect clients, checkpoint, exit), waiting up to 10 s before
    /// resorting to SIGKILL. The data directory and port are kept for
    /// [`Postgres::restart`]. Stopping a stopped server does nothing.
    pub fn stop(&mut self) -> Result<()> {
        let Some(mut process) = self.process.take() else {
            return Ok(());
        };
        match process.signal("INT") {
            Ok(()) | Err(Error::NotRunning { .. }) => {}
            Err(e) => return Err(e),
        }
        if process.wait_exit(STOP_TIMEOUT).is_ok() {
            return Ok(());
        }
        // SIGKILL leaves a small SysV shared-memory segment behind, which is
        // why it is only the fallback; dropping `process` also kills.
        match process.signal("KILL") {
            Ok(()) | Err(Error::NotRunning { .. }) => {}
            Err(e) => return Err(e),
        }
        process.wait_exit(STOP_TIMEOUT).map(drop)
    }

    /// Starts the server again on the same port and data directory
    /// (stopping it first if it is running); committed data survives.
    pub fn restart(&mut self) -> Result<()> {
        self.stop()?;
        self.launch()
    }

    /// Runs `postgres` in the foreground on `self.port`, retrying while the
    /// port or the previous instance's resources are still in use.
    fn launch(&mut self) -> Result<()> {
        let name = format!("postgres:{}", self.port);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut cmd = Command::new(&self.binary);
            cmd.arg("-D")
                .arg(self.dir.path().join("data"))
                .arg("-p")
                .arg(self.port.to_string())
                .arg("-k")
                .arg(self.dir.path().join("sock"))
                .args(["-c", "listen_addresses=127.0.0.1"])
                .args(["-c", "fsync=off"])
                .args(["-c", "synchronous_commit=off"])
                .args(["-c", "full_page_writes=off"])
                // The readiness check matches an English log line.
                .args(["-c", "lc_messages=C"])
                .current_dir(self.dir.path());
            as_owner(&mut cmd, self.owner);
            let process = Process::spawn(&name, cmd)?;
            match wait_ready(&process, self.port) {
                Ok(()) => {
                    self.process = Some(process);
                    return Ok(());
                }
                Err(Error::Exited { ref log_tail, .. })
                    if attempt < START_ATTEMPTS
                        && RETRYABLE.iter().any(|m| log_tail.contains(m)) =>
                {
                    std::thread::sleep(Duration::from_millis(200 * attempt));
                }
                Err(e) => return Err(e),
            }
        }
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        // Graceful rather than SIGKILL: a fast shutdown of a test cluster
        // takes well under a second and, unlike a kill, cleans up its
        // shared memory. Errors are moot here; Process's own Drop is the
        // backstop that guarantees the server is gone.
        let _ = self.stop();
    }
}

/// Waits for our server's own "ready" log line (so a foreign server that
/// took the port cannot fool us) and then for a TCP connect to succeed.
fn wait_ready(process: &Process, port: u16) -> Result<()> {
    let deadline = Instant::now() + START_TIMEOUT;
    process.wait_for_line(
        |l| l.contains("database system is ready to accept connections"),
        START_TIMEOUT,
    )?;
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    loop {
        let last_error = match TcpStream::connect_timeout(&addr, Duration::from_secs(1)) {
            Ok(_) => return Ok(()),
            Err(e) => e,
        };
        if Instant::now() >= deadline {
            return Err(Error::Timeout {
                what: format!("a TCP connection to postgres on port {port} ({last_error})"),
                waited: START_TIMEOUT,
                log_tail: process.log_tail(),
            });
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The process-wide template: a directory holding an initdb'd `data/`.
///
/// Created on first use; a failure is remembered so that later tests fail
/// fast with the same message. Statics are never dropped, so the directory
/// outlives the process; the next test process's [`TempDir`] sweep removes
/// it.
fn template() -> Result<&'static TempDir> {
    static TEMPLATE: OnceLock<std::result::Result<TempDir, String>> = OnceLock::new();
    TEMPLATE
        .get_or_init(|| init_template().map_err(|e| e.to_string()))
        .as_ref()
        .map_err(|e| Error::TemplateFailed(e.clone()))
}

fn init_template() -> Result<TempDir> {
    let initdb = bins::pg_binary("initdb")?;
    let owner = run_as()?;
    let dir = TempDir::new("pg-template")?;
    let data = dir.path().join("data");
    // Created by us and handed over, because initdb running as `postgres`
    // may not create entries in a root-owned directory.
    std::fs::create_dir(&data).map_err(|e| Error::io(format!("creating {}", data.display()), e))?;
    chown(&data, owner)?;

    let mut cmd = Command::new(initdb);
    cmd.arg("-D")
        .arg(&data)
        .args(["-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8"])
        // The C locale works with any encoding and makes sorting (and the
        // server's messages) identical on every machine.
        .args(["--locale", "C"])
        .current_dir(dir.path());
    as_owner(&mut cmd, owner);
    bins::run(&mut cmd)?;
    Ok(dir)
}

/// The `postgres` user's uid/gid when running as root, else `None`.
fn run_as() -> Result<Option<(u32, u32)>> {
    if bins::current_uid()? != 0 {
        return Ok(None);
    }
    bins::user_ids("postgres").map(Some).map_err(|e| {
        Error::InvalidArgument(format!(
            "running as root, but PostgreSQL refuses root and the `postgres` user is unusable: {e}"
        ))
    })
}

fn as_owner(cmd: &mut Command, owner: Option<(u32, u32)>) {
    if let Some((uid, gid)) = owner {
        // std also drops root's supplementary groups when changing uid.
        cmd.uid(uid).gid(gid);
    }
}

fn chown(path: &Path, owner: Option<(u32, u32)>) -> Result<()> {
    let Some((uid, gid)) = owner else {
        return Ok(());
    };
    std::os::unix::fs::chown(path, Some(uid), Some(gid))
        .map_err(|e| Error::io(format!("chown {} to {uid}:{gid}", path.display()), e))
}
