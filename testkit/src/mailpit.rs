//! A private mailpit (a real SMTP server with an HTTP API) per test.
//!
//! The code under test sends real mail over SMTP, and the test reads back
//! what arrived through mailpit's HTTP API, spoken with a few lines of HTTP
//! over a `TcpStream`; chaos triggers make the same server refuse senders,
//! recipients or logins on demand. The binary is `$TESTKIT_MAILPIT`, else
//! the one `tests/setup/mailpit.sh` builds from Go modules and caches.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde::{Deserialize, Deserializer};
use serde_json::json;

use crate::bins;
use crate::certs::Issued;
use crate::dirs::{TempDir, free_port};
use crate::process::Process;
use crate::{Error, Result};

/// How long a start or restart may take before it is reported as failed.
const START_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a graceful stop may take before the server is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one HTTP request may take.
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);
/// How many times a start is attempted when a port turns out to be taken.
const BIND_ATTEMPTS: usize = 5;
/// Messages fetched per `GET /api/v1/messages` page.
const PAGE: usize = 50;
/// The script that builds mailpit, relative to the workspace root.
const SCRIPT: &str = "tests/setup/mailpit.sh";

/// A private mailpit on two free 127.0.0.1 ports, stopped on drop.
///
/// Started as `mailpit --smtp 127.0.0.1:P1 --listen 127.0.0.1:P2 --database
/// <tempdir>/mailpit.db --enable-chaos --smtp-auth-accept-any
/// --smtp-auth-allow-insecure --smtp-disable-rdns --disable-version-check
/// --label <unique> --max 0`: every message is kept, any login is accepted
/// over plain SMTP, and no reverse DNS lookup or GitHub release check reaches
/// for the network. [`Mailpit::start_secured`] requires TLS and logins
/// instead.
#[derive(Debug)]
pub struct Mailpit {
    // Before `dir`: on drop, the server dies before its database goes.
    process: Option<Process>,
    dir: TempDir,
    smtp_port: u16,
    http_port: u16,
    binary: PathBuf,
    security: SmtpSecurity,
}

/// How a [`Mailpit`] guards its SMTP port (the default: plain SMTP, any
/// login or none).
#[derive(Debug, Clone, Default)]
pub struct SmtpSecurity {
    /// Certificate and private key, PEM: with them the server offers TLS.
    pub tls: Option<Issued>,
    /// With `tls`: clients must speak TLS from the first byte (SMTPS)
    /// instead of upgrading with STARTTLS, which is then required.
    pub implicit_tls: bool,
    /// The only logins accepted, as (user, password), neither with spaces
    /// or colons (mailpit reads them as htpasswd lines); empty: any login,
    /// including none.
    pub logins: Vec<(String, String)>,
}

/// Which SMTP stage a chaos trigger fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChaosTrigger {
    /// `MAIL FROM`.
    Sender,
    /// `RCPT TO` (To, Cc and Bcc alike).
    Recipient,
    /// `AUTH`.
    Authentication,
}

/// A message as listed by `GET /api/v1/messages`. Addresses are plain
/// `a@b.c`, without display names.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Message {
    /// mailpit's database id, for [`Mailpit::message`].
    #[serde(rename = "ID")]
    pub id: String,
    /// The `Message-ID` header, without angle brackets.
    #[serde(rename = "MessageID")]
    pub message_id: String,
    pub subject: String,
    /// Empty if the message had no parseable `From`.
    #[serde(deserialize_with = "address")]
    pub from: String,
    #[serde(deserialize_with = "addresses")]
    pub to: Vec<String>,
    #[serde(deserialize_with = "addresses")]
    pub cc: Vec<String>,
    /// Envelope recipients that were in neither `To` nor `Cc`.
    #[serde(deserialize_with = "addresses")]
    pub bcc: Vec<String>,
    #[serde(deserialize_with = "addresses")]
    pub reply_to: Vec<String>,
}

/// A whole message from `GET /api/v1/message/{ID}`: the fields of
/// [`Message`] plus the decoded text and HTML bodies (empty if absent).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct MessageDetail {
    #[serde(rename = "ID")]
    pub id: String,
    #[serde(rename = "MessageID")]
    pub message_id: String,
    pub subject: String,
    #[serde(deserialize_with = "address")]
    pub from: String,
    #[serde(deserialize_with = "addresses")]
    pub to: Vec<String>,
    #[serde(deserialize_with = "addresses")]
    pub cc: Vec<String>,
    #[serde(deserialize_with = "addresses")]
    pub bcc: Vec<String>,
    #[serde(deserialize_with = "addresses")]
    pub reply_to: Vec<String>,
    pub text: String,
    #[serde(rename = "HTML")]
    pub html: String,
}

impl Mailpit {
    /// Starts a new server on two free ports with an empty database and
    /// waits (up to 15 s) until `GET /readyz` answers 200.
    pub fn start() -> Result<Mailpit> {
        Mailpit::start_secured(SmtpSecurity::default())
    }

    /// Like [`Mailpit::start`], with TLS required and only the given
    /// logins accepted, as `security` says.
    pub fn start_secured(security: SmtpSecurity) -> Result<Mailpit> {
        let mut mailpit = Mailpit {
            process: None,
            binary: binary()?,
            dir: TempDir::new("mailpit")?,
            smtp_port: free_port(),
            http_port: free_port(),
            security,
        };
        mailpit.write_security_files()?;
        mailpit.launch()?;
        Ok(mailpit)
    }

    /// The certificate, key and password files `security` names, written
    /// once into the server's directory.
    fn write_security_files(&self) -> Result<()> {
        let write = |name: &str, text: &str| {
            let path = self.dir.path().join(name);
            std::fs::write(&path, text)
                .map_err(|e| Error::io(format!("writing {}", path.display()), e))
        };
        if let Some(tls) = &self.security.tls {
            write("smtp.crt", &tls.cert_pem)?;
            write("smtp.key", &tls.key_pem)?;
        }
        if !self.security.logins.is_empty() {
            // mailpit reads htpasswd lines; a plain password is accepted.
            let lines: String = self
                .security
                .logins
                .iter()
                .map(|(user, password)| format!("{user}:{password}\n"))
                .collect();
            write("smtp.passwords", &lines)?;
        }
        Ok(())
    }

    /// The settings that [`SmtpSecurity`] turns into.
    fn security_args(&self) -> Vec<std::ffi::OsString> {
        let file = |name: &str| self.dir.path().join(name).into_os_string();
        let mut args: Vec<std::ffi::OsString> = Vec::new();
        if self.security.logins.is_empty() {
            args.push("--smtp-auth-accept-any".into());
        } else {
            args.extend(["--smtp-auth-file".into(), file("smtp.passwords")]);
        }
        if self.security.tls.is_some() {
            args.extend(["--smtp-tls-cert".into(), file("smtp.crt")]);
            args.extend(["--smtp-tls-key".into(), file("smtp.key")]);
            args.push(if self.security.implicit_tls {
                "--smtp-require-tls".into()
            } else {
                "--smtp-require-starttls".into()
            });
        } else {
            args.push("--smtp-auth-allow-insecure".into());
        }
        args
    }

    /// The SMTP port (kept across restarts).
    pub fn smtp_port(&self) -> u16 {
        self.smtp_port
    }

    /// The web UI and API, `http://127.0.0.1:P` (kept across restarts).
    pub fn http_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.http_port)
    }

    /// The running server process, if any.
    pub fn process(&self) -> Option<&Process> {
        self.process.as_ref()
    }

    /// Every stored message, newest first (mailpit's order), page by page.
    pub fn messages(&self) -> Result<Vec<Message>> {
        let mut all = Vec::new();
        loop {
            let path = format!("/api/v1/messages?start={}&limit={PAGE}", all.len());
            let page: RawList = self.get_json(&path)?;
            let done = page.messages.len() < PAGE;
            all.extend(page.messages);
            if done || all.len() >= page.total {
                return Ok(all);
            }
        }
    }

    /// How many messages are stored.
    pub fn message_count(&self) -> Result<usize> {
        Ok(self.get_json::<RawList>("/api/v1/messages?limit=1")?.total)
    }

    /// One message by its mailpit id (this marks it read, as the UI does).
    pub fn message(&self, id: &str) -> Result<MessageDetail> {
        if id.is_empty() || !id.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(Error::InvalidArgument(format!("mailpit message id {id:?}")));
        }
        self.get_json(&format!("/api/v1/message/{id}"))
    }

    /// One message's source exactly as the SMTP server received it.
    pub fn raw(&self, id: &str) -> Result<String> {
        if id.is_empty() || !id.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(Error::InvalidArgument(format!("mailpit message id {id:?}")));
        }
        self.http("GET", &format!("/api/v1/message/{id}/raw"), "")
    }

    /// Deletes every stored message.
    pub fn delete_all(&self) -> Result<()> {
        self.http("DELETE", "/api/v1/messages", "{}").map(drop)
    }

    /// Makes `trigger`'s SMTP stage fail with `error_code` (400-599) in
    /// `probability` percent (0-100) of attempts (mailpit rejects other
    /// values). The other two triggers are switched off.
    pub fn set_chaos(&self, trigger: ChaosTrigger, error_code: u16, probability: u8) -> Result<()> {
        // The variants are named exactly as mailpit's JSON keys.
        let key = format!("{trigger:?}");
        let body = json!({ key: { "ErrorCode": error_code, "Probability": probability } });
        self.http("PUT", "/api/v1/chaos", &body.to_string())?;
        Ok(())
    }

    /// Switches every chaos trigger off (an empty configuration resets them).
    pub fn clear_chaos(&self) -> Result<()> {
        self.http("PUT", "/api/v1/chaos", "{}").map(drop)
    }

    /// Stops the server (SIGTERM, so it closes its database cleanly; SIGKILL
    /// after 10 s) and waits for it to exit, which closes both ports. Ports
    /// and database stay for [`Mailpit::restart`]; stopping twice is fine.
    pub fn stop(&mut self) -> Result<()> {
        let Some(mut process) = self.process.take() else {
            return Ok(());
        };
        let gone = |r| match r {
            Err(Error::NotRunning { .. }) => Ok(()),
            r => r,
        };
        gone(process.signal("TERM"))?;
        if process.wait_exit(STOP_TIMEOUT).is_err() {
            gone(process.signal("KILL"))?;
            process.wait_exit(STOP_TIMEOUT)?;
        }
        Ok(())
    }

    /// Starts the server again on the same ports with the same database
    /// (stopping it first if it runs): stored messages survive.
    pub fn restart(&mut self) -> Result<()> {
        self.stop()?;
        self.launch()
    }

    /// Spawns the server, retrying while a port is in use.
    fn launch(&mut self) -> Result<()> {
        let name = format!("mailpit:{}", self.smtp_port);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let (smtp, http) = (self.smtp_port, self.http_port);
            let mut cmd = Command::new(&self.binary);
            cmd.args(["--smtp", &format!("127.0.0.1:{smtp}")])
                .args(["--listen", &format!("127.0.0.1:{http}")])
                .arg("--database")
                .arg(self.dir.path().join("mailpit.db"))
                .arg("--enable-chaos")
                .args(self.security_args())
                .arg("--smtp-disable-rdns")
                .args(["--disable-version-check", "--label", &self.label()])
                // Keep every message: by default mailpit prunes to 500, and
                // tests count what arrived.
                .args(["--max", "0"]);
            // mailpit takes MP_* variables as settings too; nothing in the
            // caller's environment may change the test server.
            cmd.env_clear();
            let process = Process::spawn(&name, cmd)?;
            match self.wait_ready(&process) {
                Ok(()) => {
                    self.process = Some(process);
                    return Ok(());
                }
                Err(Error::Exited { ref log_tail, .. })
                    if attempt < BIND_ATTEMPTS && log_tail.contains("address already in use") =>
                {
                    std::thread::sleep(Duration::from_millis(200 * attempt as u64));
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// A label only this instance has: the HTTP API reporting it proves
    /// that the server answering is ours, not a stranger that took the port.
    fn label(&self) -> String {
        format!("testkit-{}-{}", std::process::id(), self.smtp_port)
    }

    /// Waits until `/readyz` answers 200 and the API reports our label;
    /// fails early if the process exits (e.g. because a port is taken).
    fn wait_ready(&self, process: &Process) -> Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let label = self.http("GET", "/readyz", "").and_then(|_| {
                let config: serde_json::Value = self.get_json("/api/v1/webui")?;
                Ok(config["Label"].as_str().map(str::to_owned))
            });
            if matches!(&label, Ok(Some(l)) if *l == self.label()) {
                return Ok(());
            }
            // Returns Exited at once if the process has died.
            match process.wait_for_line(|_| false, Duration::from_millis(50)) {
                Err(e @ Error::Exited { .. }) => return Err(e),
                _ if Instant::now() >= deadline => {
                    return Err(Error::Timeout {
                        what: format!("{} to be ready (last: {label:?})", self.http_url()),
                        waited: START_TIMEOUT,
                        log_tail: process.log_tail(),
                    });
                }
                _ => {}
            }
        }
    }

    fn get_json<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<T> {
        let body = self.http("GET", path, "")?;
        serde_json::from_str(&body)
            .map_err(|e| Error::io(format!("parsing GET {}{path}", self.http_url()), e.into()))
    }

    /// One request; a status other than 2xx is [`Error::CommandFailed`]
    /// carrying the response body (mailpit's error text).
    fn http(&self, method: &str, path: &str, body: &str) -> Result<String> {
        let what = format!("{method} {}{path}", self.http_url());
        let (status, response) =
            http(self.http_port, method, path, body).map_err(|e| Error::io(what.clone(), e))?;
        if (200..300).contains(&status) {
            return Ok(response);
        }
        Err(Error::CommandFailed {
            command: what,
            status: format!("HTTP {status}"),
            output: response,
        })
    }
}

#[derive(Deserialize)]
struct RawList {
    total: usize,
    messages: Vec<Message>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawAddress {
    address: String,
}

/// `{"Name": .., "Address": "a@b.c"}` (or `null`) as `a@b.c` (or "").
fn address<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(Option::<RawAddress>::deserialize(d)?.map_or_else(String::new, |a| a.address))
}

/// A list of addresses (`null` when empty: Go's nil slice) as `a@b.c`s.
fn addresses<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let list = Option::<Vec<RawAddress>>::deserialize(d)?.unwrap_or_default();
    Ok(list.into_iter().map(|a| a.address).collect())
}

/// The mailpit binary: `$TESTKIT_MAILPIT` (a wrong one fails to spawn,
/// naming it), else what the setup script builds, once per process (a
/// failure is remembered and repeated).
fn binary() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os("TESTKIT_MAILPIT").filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(path));
    }
    static BUILT: OnceLock<std::result::Result<PathBuf, String>> = OnceLock::new();
    BUILT
        .get_or_init(|| build().map_err(|e| e.to_string()))
        .clone()
        .map_err(|output| Error::CommandFailed {
            command: SCRIPT.to_owned(),
            status: "failed (once per test process)".to_owned(),
            output,
        })
}

/// Runs the setup script, whose last line of stdout is the binary's path.
/// A cold build (module downloads and compiling) takes a minute or two.
fn build() -> Result<PathBuf> {
    bins::built_by_script(SCRIPT, &[])
}

/// One request; returns the status and the body.
///
/// HTTP/1.0, so that the server (Go's, Python's) neither keeps the
/// connection open nor chunks the body: the response ends where the stream
/// does.
pub(crate) fn http(
    port: u16,
    method: &str,
    path: &str,
    body: &str,
) -> std::io::Result<(u16, String)> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut stream = TcpStream::connect_timeout(&addr, HTTP_TIMEOUT)?;
    stream.set_read_timeout(Some(HTTP_TIMEOUT))?;
    stream.set_write_timeout(Some(HTTP_TIMEOUT))?;
    // One write: `write!` straight to the socket would send each piece as a
    // packet, and Nagle's algorithm would hold them for a delayed ACK.
    let request = format!(
        "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\
         Accept: application/json\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes())?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let parsed = response.split_once("\r\n\r\n").and_then(|(head, body)| {
        Some((
            head.split_whitespace().nth(1)?.parse().ok()?,
            body.to_owned(),
        ))
    });
    parsed.ok_or_else(|| std::io::Error::other(format!("malformed HTTP response {response:?}")))
}
