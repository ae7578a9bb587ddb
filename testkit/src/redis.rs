//! A private `redis-server` per test.
//!
//! The server runs without a config file and without persistence, so it
//! starts in milliseconds and leaves nothing behind but its (temporary)
//! working directory. Readiness is judged by an actual `PING` round trip
//! spoken in RESP over a plain `TcpStream`, which needs no client library.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::dirs::{TempDir, free_port};
use crate::process::Process;
use crate::{Error, Result, bins};

/// How long a start or restart may take before it is reported as failed.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// How many times a start is attempted when the port turns out to be taken
/// (e.g. still held by the previous instance's lingering socket).
const BIND_ATTEMPTS: usize = 5;

/// A private redis-server on a free 127.0.0.1 port, killed on drop.
///
/// Started as `redis-server --port P --bind 127.0.0.1 --save '' --appendonly
/// no --dir <tempdir>`; [`Redis::start`] returns once it answers `PING`.
#[derive(Debug)]
pub struct Redis {
    // Declared before `dir` so that on drop the server is killed before its
    // working directory is removed.
    process: Option<Process>,
    dir: TempDir,
    port: u16,
    binary: PathBuf,
}

impl Redis {
    /// Starts a new server on a free port and waits (up to 10 s) until it
    /// answers `PING`.
    pub fn start() -> Result<Redis> {
        let mut redis = Redis {
            process: None,
            binary: bins::redis_server()?,
            dir: TempDir::new("redis")?,
            port: free_port(),
        };
        redis.launch()?;
        Ok(redis)
    }

    /// The TCP port the server listens on (it keeps it across restarts).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The connection URL, `redis://127.0.0.1:P/`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Sends one `PING` and checks for `+PONG`: a client-library-free way
    /// for tests to check that the server is up.
    pub fn ping(&self) -> Result<()> {
        ping(self.port).map_err(|e| Error::io(format!("PING redis on port {}", self.port), e))
    }

    /// The running server process, if any, e.g. to inspect its log or to
    /// `signal("STOP")` it for a hung-server test.
    pub fn process(&self) -> Option<&Process> {
        self.process.as_ref()
    }

    /// Kills the server (SIGKILL, as a crash would) and waits until it is
    /// gone and the port refuses connections. The port is kept, so
    /// [`Redis::restart`] comes back at the same URL. Stopping a stopped
    /// server does nothing.
    pub fn stop(&mut self) -> Result<()> {
        let Some(mut process) = self.process.take() else {
            return Ok(());
        };
        match process.signal("KILL") {
            Ok(()) | Err(Error::NotRunning { .. }) => {}
            Err(e) => return Err(e),
        }
        process.wait_exit(START_TIMEOUT)?;
        // The kernel closes the listener when the process dies, which has
        // happened by now; this only confirms it for the caller's benefit.
        let deadline = Instant::now() + START_TIMEOUT;
        while connect(self.port, Duration::from_millis(200)).is_ok() {
            if Instant::now() >= deadline {
                return Err(Error::Timeout {
                    what: format!("port {} to close after stopping redis", self.port),
                    waited: START_TIMEOUT,
                    log_tail: process.log_tail(),
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// Starts the server again on the same port (stopping it first if it is
    /// running) and waits until it answers `PING`. The data is gone:
    /// persistence is off, exactly like a cache node that crashed.
    pub fn restart(&mut self) -> Result<()> {
        self.stop()?;
        self.launch()
    }

    /// Spawns the server on `self.port`, retrying while the port is in use.
    fn launch(&mut self) -> Result<()> {
        let name = format!("redis:{}", self.port);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut cmd = Command::new(&self.binary);
            cmd.arg("--port")
                .arg(self.port.to_string())
                .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
                .args(["--daemonize", "no", "--dir"])
                .arg(self.dir.path());
            let process = Process::spawn(&name, cmd)?;
            match wait_ready(&process, self.port) {
                Ok(()) => {
                    self.process = Some(process);
                    return Ok(());
                }
                Err(Error::Exited { ref log_tail, .. })
                    if attempt < BIND_ATTEMPTS && log_tail.contains("Address already in use") =>
                {
                    std::thread::sleep(Duration::from_millis(200 * attempt as u64));
                }
                Err(e) => return Err(e),
            }
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        // Dropping the Process kills and reaps the server; without
        // persistence there is nothing to shut down gracefully.
        self.process = None;
    }
}

/// Waits until *our* process logged readiness (so a foreign server that
/// grabbed the port cannot fool us) and then answers `PING`.
fn wait_ready(process: &Process, port: u16) -> Result<()> {
    let deadline = Instant::now() + START_TIMEOUT;
    process.wait_for_line(|l| l.contains("Ready to accept connections"), START_TIMEOUT)?;
    loop {
        let last_error = match ping(port) {
            Ok(()) => return Ok(()),
            Err(e) => e,
        };
        if Instant::now() >= deadline {
            return Err(Error::Timeout {
                what: format!("redis on port {port} to answer PING (last error: {last_error})"),
                waited: START_TIMEOUT,
                log_tail: process.log_tail(),
            });
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One `PING` round trip in RESP; succeeds only on `+PONG`.
fn ping(port: u16) -> std::io::Result<()> {
    let mut stream = connect(port, Duration::from_secs(1))?;
    stream.set_read_timeout(Some(Duration::from_secs(1)))?;
    stream.set_write_timeout(Some(Duration::from_secs(1)))?;
    stream.write_all(b"*1\r\n$4\r\nPING\r\n")?;
    let mut reply = Vec::new();
    let mut buf = [0u8; 64];
    while !reply.ends_with(b"\r\n") {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            break;
        }
        reply.extend_from_slice(&buf[..n]);
    }
    if reply.starts_with(b"+PONG") {
        Ok(())
    } else {
        Err(std::io::Error::other(format!(
            "unexpected reply {:?}",
            String::from_utf8_lossy(&reply)
        )))
    }
}

fn connect(port: u16, timeout: Duration) -> std::io::Result<TcpStream> {
    TcpStream::connect_timeout(&SocketAddr::from((Ipv4Addr::LOCALHOST, port)), timeout)
}
