//! Connections to the SMTP relay: opened by us, spoken over by lettre, and
//! kept in a small pool.
//!
//! Why not lettre's own transport: it opens its sockets with Nagle's
//! algorithm on, and it writes a message's body and the final `.` line as
//! two writes. The second, small write then waits until the relay has
//! acknowledged the first, and relays delay that acknowledgement (up to
//! 40 ms on Linux). Once per message, that stall held delivery to 40 % of
//! what the relay takes (docs/benchmarks.md). So the socket is ours, with
//! `TCP_NODELAY`, and lettre's `AsyncSmtpConnection` speaks SMTP over it:
//! EHLO, STARTTLS, AUTH, MAIL, RCPT and DATA are still lettre's.
//!
//! Implicit TLS (`SMTP_TLS=tls`) is a rustls session we start on that
//! socket; STARTTLS is lettre's upgrade of it. Both trust the public roots
//! (webpki-roots) and the certificates of `SMTP_CA_FILE`.
//!
//! The pool hands out the most recently used connection. One used within
//! [`FRESH`] is reused as is; one idle for longer is asked NOOP first, since
//! relays close idle connections (a restarted relay closes all of them), and
//! one idle past [`MAX_IDLE`] is closed. A connection that failed in any way
//! is never reused: lettre has already sent QUIT on it.

use std::{
    io,
    net::SocketAddr,
    pin::Pin,
    sync::{Arc, Mutex, PoisonError},
    task::{Context, Poll},
    time::{Duration, Instant},
};

use lettre::{
    address::Envelope,
    transport::smtp::{
        authentication::{Credentials, Mechanism},
        client::{AsyncSmtpConnection, AsyncTokioStream, Certificate, TlsParameters},
        extension::ClientId,
        response::Response,
    },
};
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::TcpStream,
    sync::Semaphore,
};

use prometheus::IntCounter;

use crate::config::SmtpTls;

/// A connection used this recently is reused without a round trip.
const FRESH: Duration = Duration::from_secs(5);
/// A connection idle this long is closed rather than reused: relays close
/// theirs after a few minutes (RFC 5321 asks for at least five).
const MAX_IDLE: Duration = Duration::from_secs(60);
/// The AUTH mechanisms tried, in this order (as lettre's transport does).
const MECHANISMS: [Mechanism; 2] = [Mechanism::Plain, Mechanism::Login];

/// What went wrong talking to the relay. Only [`RelayError::Refused`] can
/// be about the message; the rest is about the relay or our settings, and
/// retrying the message later may succeed.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// No TCP connection could be made.
    #[error("connecting to {addr}: {source}")]
    Connect {
        /// `host:port`.
        addr: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The implicit TLS handshake failed (an untrusted certificate, say).
    #[error("TLS with {addr}: {source}")]
    Tls {
        /// `host:port`.
        addr: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// Greeting, EHLO, STARTTLS or AUTH failed. A refused login is a
    /// setting to fix, not a reason to give up on the message.
    #[error("opening the SMTP session: {0}")]
    Session(#[source] lettre::transport::smtp::Error),
    /// MAIL, RCPT or DATA was refused or cut short.
    #[error("{0}")]
    Refused(#[source] lettre::transport::smtp::Error),
    /// The whole exchange took longer than `SMTP_TIMEOUT_SECS`.
    #[error("SMTP timeout after {0:?}")]
    Timeout(Duration),
}

impl RelayError {
    /// Whether the relay refused the message for good (5xx to MAIL, RCPT or
    /// DATA): retrying cannot help.
    pub fn is_permanent(&self) -> bool {
        matches!(self, RelayError::Refused(e) if e.is_permanent())
    }

    /// The relay's reply code, if it gave one.
    pub fn status(&self) -> Option<lettre::transport::smtp::response::Code> {
        match self {
            RelayError::Session(e) | RelayError::Refused(e) => e.status(),
            _ => None,
        }
    }
}

/// Why the relay settings cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum RelaySetupError {
    /// `SMTP_CA_FILE` cannot be read or holds no usable certificate.
    #[error("SMTP_CA_FILE {path}: {reason}")]
    CaFile {
        /// The file.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// `SMTP_HOST` is not a name TLS can verify.
    #[error("SMTP_HOST {0:?} is not a DNS name or IP address TLS can verify")]
    ServerName(String),
    /// lettre refused the TLS parameters.
    #[error("SMTP TLS settings")]
    Lettre(#[from] lettre::transport::smtp::Error),
    /// rustls refused the TLS parameters.
    #[error("SMTP TLS settings")]
    Rustls(#[from] rustls::Error),
}

/// Where and how to reach the relay.
pub struct RelaySettings<'a> {
    /// Host name or IP address.
    pub host: &'a str,
    /// Port.
    pub port: u16,
    /// Transport security.
    pub tls: SmtpTls,
    /// Certificates trusted besides the public roots (PEM, `SMTP_CA_FILE`).
    pub ca_pem: Option<(&'a str, &'a [u8])>,
    /// AUTH user and password.
    pub credentials: Option<Credentials>,
    /// How long one exchange may take, connecting included.
    pub timeout: Duration,
    /// Most connections open at once.
    pub connections: u32,
    /// Counts the connections opened (`smtp_connections_opened_total`).
    pub opened: IntCounter,
}

/// The relay and a pool of open connections to it.
pub struct Relay {
    host: String,
    port: u16,
    security: Security,
    credentials: Option<Credentials>,
    hello: ClientId,
    timeout: Duration,
    idle: Mutex<Vec<Idle>>,
    permits: Semaphore,
    opened: IntCounter,
}

enum Security {
    None,
    StartTls(Box<TlsParameters>),
    Implicit {
        config: Arc<rustls::ClientConfig>,
        name: ServerName<'static>,
    },
}

struct Idle {
    conn: AsyncSmtpConnection,
    since: Instant,
}

impl Relay {
    /// A relay reached as `settings` say; nothing connects until the first
    /// send or ping.
    pub fn new(settings: RelaySettings<'_>) -> Result<Self, RelaySetupError> {
        let extra_roots = match settings.ca_pem {
            Some((path, pem)) => ca_certificates(path, pem)?,
            None => Vec::new(),
        };
        let security = match settings.tls {
            SmtpTls::None => Security::None,
            SmtpTls::StartTls => {
                let mut builder = TlsParameters::builder(settings.host.to_owned());
                for der in &extra_roots {
                    builder = builder.add_root_certificate(Certificate::from_der(der.to_vec())?);
                }
                Security::StartTls(Box::new(builder.build_rustls()?))
            }
            SmtpTls::Tls => {
                let mut roots = rustls::RootCertStore::empty();
                roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
                for der in extra_roots {
                    roots.add(der)?;
                }
                let provider = Arc::new(rustls::crypto::ring::default_provider());
                let config = rustls::ClientConfig::builder_with_provider(provider)
                    .with_safe_default_protocol_versions()?
                    .with_root_certificates(roots)
                    .with_no_client_auth();
                let name = ServerName::try_from(settings.host.to_owned())
                    .map_err(|_| RelaySetupError::ServerName(settings.host.to_owned()))?;
                Security::Implicit {
                    config: Arc::new(config),
                    name,
                }
            }
        };
        Ok(Self {
            host: settings.host.to_owned(),
            port: settings.port,
            security,
            credentials: settings.credentials,
            hello: ClientId::default(),
            timeout: settings.timeout,
            idle: Mutex::new(Vec::new()),
            permits: Semaphore::new(settings.connections as usize),
            opened: settings.opened,
        })
    }

    /// Sends `message` (the exact bytes, signed) to `envelope`'s recipients
    /// on a pooled connection and returns the relay's final answer.
    pub async fn send(&self, envelope: &Envelope, message: &[u8]) -> Result<Response, RelayError> {
        // Never closed, so waiting fails only if it is: then send unpooled.
        let _permit = self.permits.acquire().await.ok();
        let exchange = async {
            let mut conn = match self.checkout().await {
                Some(conn) => conn,
                None => self.open().await?,
            };
            // On failure lettre has already sent QUIT: the connection is dropped.
            let response = conn
                .send(envelope, message)
                .await
                .map_err(RelayError::Refused)?;
            self.checkin(conn);
            Ok(response)
        };
        // A send cut short by the deadline drops its connection mid-exchange,
        // so it never returns to the pool.
        tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| RelayError::Timeout(self.timeout))?
    }

    /// Is the relay reachable, and do our TLS and login work with it? Asked
    /// NOOP on a pooled connection when there is one, on a new one (then
    /// pooled) when there is none.
    ///
    /// The health check asks every five seconds: a new connection each time
    /// was a TLS handshake and a login at the relay every five seconds per
    /// replica, which providers count and may throttle. A pooled connection
    /// answering proves the same (its TLS and login worked, and the relay
    /// still answers). It goes back with its last use unchanged, so the
    /// pool's [`MAX_IDLE`] still retires it: without mail, one login a
    /// minute.
    pub async fn ping(&self) -> Result<(), RelayError> {
        let exchange = async {
            while let Some(Idle { mut conn, since }) = self.take_idle() {
                if since.elapsed() < MAX_IDLE && conn.test_connected().await {
                    self.lock_idle().push(Idle { conn, since });
                    return Ok(());
                }
                conn.abort().await;
            }
            let mut conn = self.open().await?;
            conn.command(lettre::transport::smtp::commands::Noop)
                .await
                .map_err(RelayError::Session)?;
            self.checkin(conn);
            Ok(())
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| RelayError::Timeout(self.timeout))?
    }

    /// The most recently used idle connection, if any.
    fn take_idle(&self) -> Option<Idle> {
        self.lock_idle().pop()
    }

    /// A pooled connection that still works, most recently used first.
    async fn checkout(&self) -> Option<AsyncSmtpConnection> {
        loop {
            let Idle { mut conn, since } = self.take_idle()?;
            let idle = since.elapsed();
            if idle < FRESH {
                return Some(conn);
            }
            if idle < MAX_IDLE && conn.test_connected().await {
                return Some(conn);
            }
            conn.abort().await;
        }
    }

    fn checkin(&self, conn: AsyncSmtpConnection) {
        if !conn.has_broken() {
            self.lock_idle().push(Idle {
                conn,
                since: Instant::now(),
            });
        }
    }

    /// The idle list; a panic while it was held cannot leave it half
    /// changed (push and pop), so a poisoned lock is used as is.
    fn lock_idle(&self) -> std::sync::MutexGuard<'_, Vec<Idle>> {
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Connects, sets `TCP_NODELAY`, starts TLS as configured, reads the
    /// greeting, says EHLO and logs in.
    async fn open(&self) -> Result<AsyncSmtpConnection, RelayError> {
        let addr = format!("{}:{}", self.host, self.port);
        let connect_error = |source| RelayError::Connect {
            addr: addr.clone(),
            source,
        };
        let tcp = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(connect_error)?;
        tcp.set_nodelay(true).map_err(connect_error)?;
        let mut conn = match &self.security {
            Security::Implicit { config, name } => {
                let tls = tokio_rustls::TlsConnector::from(Arc::clone(config))
                    .connect(name.clone(), tcp)
                    .await
                    .map_err(|source| RelayError::Tls {
                        addr: addr.clone(),
                        source,
                    })?;
                AsyncSmtpConnection::connect_with_transport(Box::new(ImplicitTls(tls)), &self.hello)
                    .await
            }
            Security::None | Security::StartTls(_) => {
                AsyncSmtpConnection::connect_with_transport(Box::new(tcp), &self.hello).await
            }
        }
        .map_err(RelayError::Session)?;
        if let Security::StartTls(parameters) = &self.security {
            conn.starttls((**parameters).clone(), &self.hello)
                .await
                .map_err(RelayError::Session)?;
        }
        if let Some(credentials) = &self.credentials {
            conn.auth(&MECHANISMS, credentials)
                .await
                .map_err(RelayError::Session)?;
        }
        self.opened.inc();
        Ok(conn)
    }
}

/// Every certificate in `pem`; none at all is an error, as a file that is
/// meant to add trust and adds none is surely the wrong file.
fn ca_certificates(
    path: &str,
    pem: &[u8],
) -> Result<Vec<CertificateDer<'static>>, RelaySetupError> {
    use rustls::pki_types::pem::PemObject;
    let error = |reason: String| RelaySetupError::CaFile {
        path: path.to_owned(),
        reason,
    };
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| error(format!("not PEM certificates: {e}")))?;
    if certs.is_empty() {
        return Err(error("no certificate in the file".into()));
    }
    Ok(certs)
}

/// A rustls session over our socket, as lettre takes streams.
#[derive(Debug)]
struct ImplicitTls(tokio_rustls::client::TlsStream<TcpStream>);

impl AsyncTokioStream for ImplicitTls {
    fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.0.get_ref().0.peer_addr()
    }
}

impl AsyncRead for ImplicitTls {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_read(cx, buf)
    }
}

impl AsyncWrite for ImplicitTls {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ca_file_must_hold_certificates() {
        let ca = rcgen::generate_simple_self_signed(vec!["relay.test".to_owned()]).unwrap();
        let pem = format!("{}{}", ca.cert.pem(), ca.cert.pem());
        assert_eq!(ca_certificates("ca.pem", pem.as_bytes()).unwrap().len(), 2);
        for (pem, reason) in [
            ("", "no certificate"),
            ("just some text\n", "no certificate"),
            (
                "-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n",
                "not PEM",
            ),
        ] {
            let e = ca_certificates("ca.pem", pem.as_bytes())
                .unwrap_err()
                .to_string();
            assert!(
                e.starts_with("SMTP_CA_FILE ca.pem: ") && e.contains(reason),
                "{e}"
            );
        }
    }
}
