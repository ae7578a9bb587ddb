//! A child process with captured output.
//!
//! Servers announce readiness (and explain failures) in their logs, so the
//! one thing every starter needs is "wait until the child prints X, but give
//! up if it dies or takes too long, and tell me what it said". [`Process`]
//! provides exactly that, and guarantees on drop that the child is gone and
//! reaped.

use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::bins::{self, command_line};
use crate::{Error, Result};

/// How many trailing lines of output go into error messages.
const TAIL_LINES: usize = 20;

/// How often waiting loops re-check whether the child has exited. Output
/// arrival wakes waiters immediately; this only bounds how late an exit
/// without output is noticed.
const POLL: Duration = Duration::from_millis(25);

/// A child process whose stdout and stderr are captured line by line.
///
/// Two background threads read the pipes into a shared buffer and also echo
/// each line to stderr prefixed with `[name]`, so `cargo test --
/// --nocapture` shows the server logs interleaved with the test's own
/// output (and a failing test shows them without `--nocapture`).
///
/// On drop, a child that is still running is killed with SIGKILL and then
/// waited for, so neither a stray server nor a zombie remains.
#[derive(Debug)]
pub struct Process {
    name: String,
    pid: u32,
    // A Mutex, not a bare Child, so that `wait_for_line(&self)` can poll for
    // exit; contention is nil because only the owner touches it.
    child: Mutex<Child>,
    output: Arc<Output>,
}

#[derive(Debug, Default)]
struct Output {
    state: Mutex<OutputState>,
    changed: Condvar,
}

#[derive(Debug, Default)]
struct OutputState {
    lines: Vec<String>,
    /// Pipes not yet at EOF. Once a child has exited, waiting for this to
    /// reach zero makes sure its last words have been read.
    open_pipes: usize,
}

impl Process {
    /// Spawns `cmd` with stdin closed and stdout/stderr captured.
    ///
    /// `name` prefixes echoed lines and appears in errors; use something
    /// that tells servers apart, like `redis:6390`.
    pub fn spawn(name: &str, mut cmd: Command) -> Result<Process> {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(|e| Error::Spawn {
            name: name.to_owned(),
            program: command_line(&cmd),
            source: e,
        })?;

        let output = Arc::new(Output::default());
        if let Some(stdout) = child.stdout.take() {
            start_reader(name, stdout, &output);
        }
        if let Some(stderr) = child.stderr.take() {
            start_reader(name, stderr, &output);
        }
        Ok(Process {
            name: name.to_owned(),
            pid: child.id(),
            child: Mutex::new(child),
            output,
        })
    }

    /// The operating-system process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The name given at spawn time.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Every line captured so far, stdout and stderr interleaved in arrival
    /// order.
    pub fn output_lines(&self) -> Vec<String> {
        self.output.lock().lines.clone()
    }

    /// The last 20 captured lines joined with newlines, for error messages.
    pub fn log_tail(&self) -> String {
        let state = self.output.lock();
        let start = state.lines.len().saturating_sub(TAIL_LINES);
        state.lines[start..].join("\n")
    }

    /// Waits for the first line (already captured or yet to come) for which
    /// `pred` returns true, and returns it.
    ///
    /// Fails with [`Error::Exited`] if the process exits without printing
    /// such a line, or [`Error::Timeout`] after `timeout`; both include the
    /// last 20 lines of output.
    pub fn wait_for_line(&self, pred: impl Fn(&str) -> bool, timeout: Duration) -> Result<String> {
        let deadline = Instant::now() + timeout;
        let mut scanned = 0;
        loop {
            {
                let state = self.output.lock();
                if let Some(line) = state.lines[scanned..].iter().find(|l| pred(l)) {
                    return Ok(line.clone());
                }
                scanned = state.lines.len();
            }

            if let Some(status) = self.try_status() {
                // The child is gone, but its final lines may still be in the
                // pipe; read them before declaring failure.
                self.output.wait_closed(Duration::from_millis(500));
                let state = self.output.lock();
                if let Some(line) = state.lines[scanned..].iter().find(|l| pred(l)) {
                    return Ok(line.clone());
                }
                drop(state);
                return Err(Error::Exited {
                    name: self.name.clone(),
                    what: "a matching output line".to_owned(),
                    status: status.to_string(),
                    log_tail: self.log_tail(),
                });
            }

            let now = Instant::now();
            if now >= deadline {
                return Err(Error::Timeout {
                    what: format!("a matching output line from `{}`", self.name),
                    waited: timeout,
                    log_tail: self.log_tail(),
                });
            }
            let state = self.output.lock();
            if state.lines.len() == scanned {
                let wait = POLL.min(deadline - now);
                let _ = self
                    .output
                    .changed
                    .wait_timeout(state, wait)
                    .unwrap_or_else(PoisonError::into_inner);
            }
        }
    }

    /// Sends a signal by name (`"TERM"`, `"KILL"`, `"INT"`, `"STOP"`,
    /// `"CONT"`, ... with or without the `SIG` prefix) using the `kill`
    /// command.
    ///
    /// Fails with [`Error::NotRunning`] once the child has exited and been
    /// reaped, since its pid may already belong to another process.
    pub fn signal(&self, sig: &str) -> Result<()> {
        let sig = sig.strip_prefix("SIG").unwrap_or(sig);
        if sig.is_empty() || !sig.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(Error::InvalidArgument(format!("signal name {sig:?}")));
        }
        // Hold the child lock across the kill so the pid cannot be reaped
        // (and recycled) between the check and the signal.
        let mut child = self.child.lock().unwrap_or_else(PoisonError::into_inner);
        if matches!(child.try_wait(), Ok(Some(_))) {
            return Err(Error::NotRunning {
                name: self.name.clone(),
            });
        }
        let mut kill = Command::new("kill");
        kill.args(["-s", sig, &self.pid.to_string()]);
        bins::run(&mut kill).map(drop)
    }

    /// Waits up to `timeout` for the child to exit and returns its status.
    ///
    /// A process killed by a signal reports it through
    /// [`ExitStatusExt::signal`].
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_status() {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                return Err(Error::Timeout {
                    what: format!("`{}` (pid {}) to exit", self.name, self.pid),
                    waited: timeout,
                    log_tail: self.log_tail(),
                });
            }
            std::thread::sleep(POLL);
        }
    }

    /// Whether the child is still running (a stopped child counts as
    /// running).
    pub fn is_running(&mut self) -> bool {
        self.try_status().is_none()
    }

    /// Non-blocking exit check. Errors from `try_wait` (which only happen
    /// if the child was reaped behind std's back) count as "exited".
    fn try_status(&self) -> Option<ExitStatus> {
        let mut child = self.child.lock().unwrap_or_else(PoisonError::into_inner);
        match child.try_wait() {
            Ok(status) => status,
            Err(_) => Some(ExitStatus::from_raw(0)),
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let child = self.child.get_mut().unwrap_or_else(PoisonError::into_inner);
        if matches!(child.try_wait(), Ok(None)) {
            // SIGKILL cannot be caught, and a SIGSTOPped child still dies
            // from it, so the blocking wait below always returns.
            let _ = child.kill();
            let _ = child.wait();
        }
        // The reader threads are not joined: a grandchild that inherited the
        // pipes could keep them open indefinitely. They end on their own at
        // EOF and only hold an Arc to the buffer.
    }
}

impl Output {
    fn lock(&self) -> MutexGuard<'_, OutputState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits until both pipes reached EOF, or `timeout` passed.
    fn wait_closed(&self, timeout: Duration) {
        let state = self.lock();
        let _ = self
            .changed
            .wait_timeout_while(state, timeout, |s| s.open_pipes > 0)
            .unwrap_or_else(PoisonError::into_inner);
    }
}

fn start_reader(name: &str, pipe: impl Read + Send + 'static, output: &Arc<Output>) {
    output.lock().open_pipes += 1;
    let name = name.to_owned();
    let reader_output = Arc::clone(output);
    let spawned = std::thread::Builder::new()
        .name(format!("testkit-log-{name}"))
        .spawn(move || read_lines(&name, pipe, &reader_output));
    if spawned.is_err() {
        // Without a reader the child may block on a full pipe, but failing
        // to start a thread means the machine is in deep trouble anyway;
        // at least don't leave waiters expecting this pipe's EOF.
        output.lock().open_pipes -= 1;
    }
}

fn read_lines(name: &str, pipe: impl Read, output: &Output) {
    let mut reader = BufReader::new(pipe);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        // read_until + lossy conversion rather than lines(): one stray
        // non-UTF-8 byte in a server log must not end the capture.
        match reader.read_until(b'\n', &mut buf) {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                let line = String::from_utf8_lossy(&buf);
                let line = line.trim_end_matches(['\n', '\r']).to_owned();
                output.lock().lines.push(line.clone());
                output.changed.notify_all();
                // eprintln (not a raw stderr write) so libtest's capture,
                // which spawned threads inherit, applies to server logs too.
                eprintln!("[{name}] {line}");
            }
        }
    }
    output.lock().open_pipes -= 1;
    output.changed.notify_all();
}
