//! Scratch directories and free ports.
//!
//! Both are per-test resources: every server gets a directory nobody else
//! writes to and a port nobody else listens on, which is what lets `cargo
//! test` run tests in parallel against separate servers.

use std::collections::HashSet;
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, Once, PoisonError};

use crate::{Error, Result};

/// Every name [`TempDir`] creates ends with this, so that leftovers can be
/// recognised and swept (see [`sweep_stale`]).
const SUFFIX: &str = ".testkit";

/// Returns a TCP port on 127.0.0.1 that was free a moment ago.
///
/// Binds `127.0.0.1:0`, reads the port the kernel picked and drops the
/// listener. The port can in principle be taken by someone else before the
/// caller binds it; the server starters detect that through the server's own
/// log and retry. Within this process, a port is never handed out twice, so
/// two tests starting servers at the same instant cannot collide.
///
/// If binding fails (no loopback interface at all) this returns port 0 and
/// the subsequent server start fails with a readable error.
pub fn free_port() -> u16 {
    static HANDED_OUT: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(PoisonError::into_inner);
    let handed_out = handed_out.get_or_insert_with(HashSet::new);
    // The kernel rarely returns the same ephemeral port twice in a row, so a
    // handful of attempts is plenty; the last candidate is used regardless.
    let mut candidate = 0;
    for _ in 0..32 {
        candidate = match TcpListener::bind((Ipv4Addr::LOCALHOST, 0)) {
            Ok(listener) => listener.local_addr().map(|a| a.port()).unwrap_or(0),
            Err(_) => 0,
        };
        if candidate != 0 && handed_out.insert(candidate) {
            break;
        }
    }
    candidate
}

/// A unique directory, removed with all its contents on drop.
///
/// Created under `$TESTKIT_TMP` if set, otherwise [`std::env::temp_dir`].
/// The name is `<prefix>-<pid>-<n>.testkit`; the pid lets a later test
/// process recognise and delete directories left behind by a test process
/// that was killed before its destructors ran.
#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// Creates a new, empty directory whose name starts with `prefix`.
    pub fn new(prefix: &str) -> Result<TempDir> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        static SWEEP: Once = Once::new();

        if prefix.is_empty() || prefix.contains(['/', '\\']) {
            return Err(Error::InvalidArgument(format!(
                "temp dir prefix {prefix:?} must be a non-empty file name"
            )));
        }
        let base = base_dir();
        SWEEP.call_once(|| sweep_stale(&base));
        std::fs::create_dir_all(&base)
            .map_err(|e| Error::io(format!("creating {}", base.display()), e))?;

        let pid = std::process::id();
        loop {
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let path = base.join(format!("{prefix}-{pid}-{n}{SUFFIX}"));
            // create_dir (not create_dir_all) fails if the name exists, which
            // is exactly what makes the directory ours alone.
            match std::fs::create_dir(&path) {
                Ok(()) => return Ok(TempDir { path }),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(Error::io(format!("creating {}", path.display()), e)),
            }
        }
    }

    /// The directory's absolute path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        // Best effort: a failure to clean up must not turn a passing test
        // into a panic, and the next process's sweep gets another chance.
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

fn base_dir() -> PathBuf {
    match std::env::var_os("TESTKIT_TMP") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => std::env::temp_dir(),
    }
}

/// Removes `*.testkit` directories whose creating process no longer exists.
///
/// Statics are never dropped, so the PostgreSQL template directory (and
/// anything of a test binary that was SIGKILLed) would otherwise accumulate
/// in /tmp run after run. Liveness is judged through `/proc/<pid>`; without
/// a `/proc` (non-Linux) nothing is swept, because deleting a live
/// process's directory would be far worse than leaking one.
fn sweep_stale(base: &Path) {
    let proc_dir = Path::new("/proc");
    if !proc_dir.join("self").exists() {
        return;
    }
    let Ok(entries) = std::fs::read_dir(base) else {
        return;
    };
    let me = std::process::id();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(owner_pid) else {
            continue;
        };
        if pid != me && !proc_dir.join(pid.to_string()).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// Parses the pid out of `<prefix>-<pid>-<n>.testkit`.
fn owner_pid(name: &str) -> Option<u32> {
    let stem = name.strip_suffix(SUFFIX)?;
    let mut parts = stem.rsplitn(3, '-');
    let _n: u64 = parts.next()?.parse().ok()?;
    let pid = parts.next()?.parse().ok()?;
    parts.next()?;
    Some(pid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_owner_pid() {
        assert_eq!(owner_pid("redis-12-3.testkit"), Some(12));
        assert_eq!(owner_pid("pg-template-12-3.testkit"), Some(12));
        assert_eq!(owner_pid("12-3.testkit"), None);
        assert_eq!(owner_pid("redis-12-3"), None);
        assert_eq!(owner_pid("redis-x-3.testkit"), None);
    }

    #[test]
    fn temp_dir_is_unique_and_removed() {
        let a = TempDir::new("unit").unwrap();
        let b = TempDir::new("unit").unwrap();
        assert_ne!(a.path(), b.path());
        std::fs::write(a.path().join("f"), b"x").unwrap();
        let path = a.path().to_path_buf();
        drop(a);
        assert!(!path.exists());
    }

    #[test]
    fn free_ports_are_distinct() {
        let ports: HashSet<u16> = (0..20).map(|_| free_port()).collect();
        assert_eq!(ports.len(), 20);
        assert!(!ports.contains(&0));
    }
}
