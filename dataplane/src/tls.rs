//! HTTPS: the certificate we serve, reloaded from its files without a
//! restart, and the listener that does TLS handshakes off the accept path.
//!
//! In Kubernetes the certificate is a Secret mounted as a directory; when
//! cert-manager renews it (or a user replaces it) the kubelet swaps the files
//! under the running process. [`Certificates::watch`] reads them again every
//! `TLS_RELOAD_SECS`; a new pair is used from the next handshake on, while
//! connections already open keep theirs. Nothing is dropped.
//!
//! A pair that cannot be served (a key that is not the certificate's, a file
//! that is not PEM) never replaces a good one: the process keeps the
//! certificate it served, and `/api/health/detailed` says what is wrong with
//! the new files. If the very first pair is unusable, the process still starts
//! and serves a self-signed stand-in, so that the problem can be read from
//! `/api/health/detailed`; readiness stays false meanwhile, so Kubernetes sends
//! no client to a pod no client could trust.

use std::{
    io,
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::{Arc, PoisonError, RwLock},
    time::{Duration, SystemTime},
};

use axum::serve::Listener;
use rustls::{
    ServerConfig,
    server::{ClientHello, ResolvesServerCert},
    sign::CertifiedKey,
};
use tls_check::Pair;
use tokio::{net::TcpStream, sync::mpsc};
use tokio_rustls::{TlsAcceptor, server::TlsStream};

use crate::{
    connections::{Counted, LimitedListener},
    shutdown::Shutdown,
};

/// Handshakes done but not yet taken by the server; beyond this, accepting
/// waits, which pushes back on a flood instead of queueing it in memory.
const ACCEPTED_BACKLOG: usize = 256;

/// Why HTTPS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A certificate or key file could not be read.
    #[error("cannot read {var}={path}: {source}")]
    Read {
        /// `TLS_CERT_FILE` or `TLS_KEY_FILE`.
        var: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The stand-in certificate could not be made (a bug or no entropy).
    #[error("cannot make a stand-in certificate: {0}")]
    StandIn(#[from] rcgen::Error),
    /// rustls refused its own settings (a bug).
    #[error("TLS settings: {0}")]
    Rustls(#[from] rustls::Error),
}

/// What a health check or a log line needs to know about the certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsStatus {
    /// Whether the configured certificate is served (false: the stand-in).
    pub serving_configured: bool,
    /// What is wrong, if anything: with the files as last read, or with the
    /// dates of the certificate served.
    pub problem: Option<String>,
    /// `notAfter` of the certificate served, RFC 3339.
    pub not_after: Option<String>,
}

/// The certificate served and the files it comes from.
#[derive(Debug)]
pub struct Certificates {
    cert_file: PathBuf,
    key_file: PathBuf,
    state: RwLock<State>,
}

#[derive(Debug)]
struct State {
    served: Arc<CertifiedKey>,
    /// The configured pair being served; `None` while the stand-in is.
    pair: Option<Pair>,
    /// What was wrong with the files' contents when last read.
    unusable: Option<String>,
    /// Why the files could not be read at the last try (mid-swap, deleted);
    /// cleared by the next read that works.
    unreadable: Option<String>,
    /// The files' bytes when last read, to notice a change.
    seen: (Vec<u8>, Vec<u8>),
}

impl Certificates {
    /// Reads the pair. Files that cannot be read are an error (a wrong
    /// path); contents that cannot be served are not (see the module doc).
    pub fn load(cert_file: &Path, key_file: &Path) -> Result<Arc<Certificates>, TlsError> {
        let seen = read_pair(cert_file, key_file)?;
        let (served, pair, unusable) = match Pair::from_pem(&seen.0, &seen.1) {
            Ok(pair) => (pair.key.clone(), Some(pair), None),
            Err(problem) => {
                tracing::error!(cert_file = %cert_file.display(), key_file = %key_file.display(),
                    error = %problem, "TLS certificate unusable: serving a self-signed stand-in and reporting not ready");
                (stand_in()?, None, Some(problem.to_string()))
            }
        };
        let certificates = Certificates {
            cert_file: cert_file.to_owned(),
            key_file: key_file.to_owned(),
            state: RwLock::new(State {
                served,
                pair,
                unusable,
                unreadable: None,
                seen,
            }),
        };
        certificates.log_validity();
        Ok(Arc::new(certificates))
    }

    /// Reads the files again and serves the new pair if it is usable.
    /// Returns whether the certificate served changed.
    pub fn reload(&self) -> bool {
        let seen = match read_pair(&self.cert_file, &self.key_file) {
            Ok(seen) => seen,
            // Mid-swap or deleted: keep serving, say so, try again later.
            Err(e) => {
                self.write().unreadable = Some(e.to_string());
                return false;
            }
        };
        let unchanged = {
            let mut state = self.write();
            state.unreadable = None;
            seen == state.seen
        };
        if unchanged {
            return false;
        }
        let result = Pair::from_pem(&seen.0, &seen.1);
        let mut state = self.write();
        state.seen = seen;
        match result {
            Ok(pair) => {
                state.served = pair.key.clone();
                tracing::info!(subject = %pair.subject, not_after = %pair.not_after_rfc3339(),
                    "TLS certificate reloaded: new connections get it");
                state.pair = Some(pair);
                state.unusable = None;
                drop(state);
                self.log_validity();
                true
            }
            Err(problem) => {
                let keeping = if state.pair.is_some() {
                    "the previous certificate is still served"
                } else {
                    "the self-signed stand-in is still served"
                };
                tracing::error!(cert_file = %self.cert_file.display(), error = %problem,
                    "new TLS certificate unusable; {keeping}");
                state.unusable = Some(format!("{problem}; {keeping}"));
                false
            }
        }
    }

    /// What is served and what is wrong, at `now`.
    pub fn status(&self, now: SystemTime) -> TlsStatus {
        let state = self.read();
        let invalid = state
            .pair
            .as_ref()
            .and_then(|pair| pair.validity(now).err())
            .map(|e| e.to_string());
        let problems: Vec<String> = [invalid, state.unusable.clone(), state.unreadable.clone()]
            .into_iter()
            .flatten()
            .collect();
        let problem = (!problems.is_empty()).then(|| problems.join("; "));
        TlsStatus {
            serving_configured: state.pair.is_some(),
            problem: problem.map(|p| {
                format!(
                    "{p} (TLS_CERT_FILE={}, TLS_KEY_FILE={})",
                    self.cert_file.display(),
                    self.key_file.display()
                )
            }),
            not_after: state.pair.as_ref().map(Pair::not_after_rfc3339),
        }
    }

    /// Reloads every `interval` until shutdown.
    pub async fn watch(self: Arc<Self>, interval: Duration, shutdown: Shutdown) {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => { self.reload(); }
                () = shutdown.wait() => return,
            }
        }
    }

    fn log_validity(&self) {
        if let Some(problem) = self.status(SystemTime::now()).problem {
            tracing::warn!(error = %problem, "TLS certificate problem");
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        // A panic while holding the lock cannot leave `State` half-written
        // (every write is a plain assignment), so a poisoned lock is usable.
        self.state.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(PoisonError::into_inner)
    }
}

impl ResolvesServerCert for Certificates {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.read().served.clone())
    }
}

fn read_pair(cert_file: &Path, key_file: &Path) -> Result<(Vec<u8>, Vec<u8>), TlsError> {
    let read = |var, path: &Path| {
        std::fs::read(path).map_err(|source| TlsError::Read {
            var,
            path: path.to_owned(),
            source,
        })
    };
    Ok((
        read("TLS_CERT_FILE", cert_file)?,
        read("TLS_KEY_FILE", key_file)?,
    ))
}

/// A throwaway self-signed pair, served only while the configured one is
/// unusable. No client trusts it, which is the point: the pod answers its
/// health routes over TLS but is never mistaken for a working one.
fn stand_in() -> Result<Arc<CertifiedKey>, TlsError> {
    let key = rcgen::KeyPair::generate()?;
    let cert = rcgen::CertificateParams::new(vec!["securevault-certificate-unusable".to_owned()])?
        .self_signed(&key)?;
    let pair = Pair::from_pem(cert.pem().as_bytes(), key.serialize_pem().as_bytes())
        .map_err(|e| rustls::Error::General(e.to_string()))?;
    Ok(pair.key)
}

/// TLS 1.3 and 1.2 only, with the ring provider's suites (AEAD only: AES-GCM
/// and ChaCha20-Poly1305, ECDHE key exchange). HTTP/2 and HTTP/1.1 by ALPN.
pub fn server_config(certificates: Arc<Certificates>) -> Result<Arc<ServerConfig>, TlsError> {
    let mut config =
        ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
            .with_no_client_auth()
            .with_cert_resolver(certificates);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A TLS connection, holding its place under `MAX_CONNECTIONS`.
pub type TlsConnection = TlsStream<Counted<TcpStream>>;

/// Accepts TCP connections and hands the server only those whose TLS
/// handshake succeeded. Each handshake runs in its own task, so a slow
/// client delays nobody else's.
pub struct TlsListener {
    accepted: mpsc::Receiver<(TlsConnection, SocketAddr)>,
    local_addr: SocketAddr,
}

impl TlsListener {
    /// Starts accepting on `tcp` until `shutdown`. A client gets
    /// `handshake_timeout` (`HEADER_READ_TIMEOUT_SECS`) to finish its
    /// handshake: a slow or silent one must not hold a socket for ever,
    /// and a connection place under `MAX_CONNECTIONS` with it.
    pub fn new(
        mut tcp: LimitedListener,
        config: Arc<ServerConfig>,
        handshake_timeout: Duration,
        shutdown: Shutdown,
    ) -> io::Result<TlsListener> {
        let local_addr = tcp.local_addr()?;
        let (tx, accepted) = mpsc::channel(ACCEPTED_BACKLOG);
        let acceptor = TlsAcceptor::from(config);
        tokio::spawn(async move {
            loop {
                let (stream, peer) = tokio::select! {
                    accepted = tcp.accept() => accepted,
                    () = shutdown.wait() => return,
                };
                let acceptor = acceptor.clone();
                let tx = tx.clone();
                tokio::spawn(async move {
                    match tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => {
                            let _ = tx.send((tls, peer)).await;
                        }
                        // Plain HTTP on the TLS port, an old protocol, a client
                        // that does not trust us: their problem, not an error here.
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(TlsListener {
            accepted,
            local_addr,
        })
    }
}

impl Listener for TlsListener {
    type Io = TlsConnection;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.accepted.recv().await {
            Some(conn) => conn,
            // The accept task stopped at shutdown; the server stops accepting
            // at the same signal, so waiting here is never observed.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.local_addr)
    }
}

/// Makes ring the process's TLS provider for outgoing HTTPS. reqwest is
/// built without one (`rustls-no-provider`): ring, which lettre already
/// links, serves every client (model server, webhooks, backup bucket).
/// Called where each client is built, so the library works wherever it is
/// embedded; a second install is a no-op.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
