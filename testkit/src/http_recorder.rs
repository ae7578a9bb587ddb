//! [`HttpRecorder`]: a plain HTTP server on a free loopback port that answers
//! every request 200 and keeps it, for tests that check what another real
//! server (an Alertmanager notifying PagerDuty or Slack) sent, and where.

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{TcpListener, TcpStream},
    sync::{Arc, Mutex, PoisonError},
    thread,
    time::{Duration, Instant},
};

use crate::{Error, Result};

/// One request as it arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    /// `POST`, `GET`…
    pub method: String,
    /// The request target, e.g. `/v2/enqueue`.
    pub path: String,
    /// The body, as text.
    pub body: String,
    /// When it arrived.
    pub at: Instant,
}

/// The recorder; it stops accepting when dropped.
pub struct HttpRecorder {
    port: u16,
    requests: Arc<Mutex<Vec<Recorded>>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl HttpRecorder {
    /// Starts listening on a free 127.0.0.1 port.
    pub fn start() -> Result<HttpRecorder> {
        let listener =
            TcpListener::bind("127.0.0.1:0").map_err(|e| Error::io("binding a port", e))?;
        let port = listener
            .local_addr()
            .map_err(|e| Error::io("reading the bound port", e))?
            .port();
        listener
            .set_nonblocking(true)
            .map_err(|e| Error::io("non-blocking accept", e))?;
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (kept, stopping) = (requests.clone(), stop.clone());
        thread::spawn(move || {
            while !stopping.load(std::sync::atomic::Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let kept = kept.clone();
                        thread::spawn(move || serve(stream, &kept));
                    }
                    Err(_) => thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        Ok(HttpRecorder {
            port,
            requests,
            stop,
        })
    }

    /// `http://127.0.0.1:P{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Every request so far, oldest first.
    pub fn requests(&self) -> Vec<Recorded> {
        self.requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl Drop for HttpRecorder {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Reads requests off one connection (keep-alive) until it closes.
fn serve(stream: TcpStream, kept: &Mutex<Vec<Recorded>>) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut parts = line.split_whitespace();
        let (method, path) = (
            parts.next().unwrap_or_default().to_owned(),
            parts.next().unwrap_or_default().to_owned(),
        );
        let mut length = 0usize;
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header).unwrap_or(0) == 0 {
                return;
            }
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        kept.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Recorded {
                method,
                path,
                body: String::from_utf8_lossy(&body).into_owned(),
                at: Instant::now(),
            });
        let answer =
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}";
        if writer.write_all(answer.as_bytes()).is_err() {
            return;
        }
    }
}
