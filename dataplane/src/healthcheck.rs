//! `dataplane healthcheck`: the container image's HEALTHCHECK. The image is
//! `FROM scratch`, with no shell and no curl, so the binary probes itself:
//! it asks `/api/health/ready` of the process serving on the configured
//! LISTEN_ADDR (the container's own environment) and exits 0 when it
//! answers 200.
//!
//! Readiness rather than liveness: `make docker-prod` waits for "healthy"
//! before saying the service is usable, and ready means the store answers
//! with its schema migrated.

use std::{
    error::Error as _,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    time::Duration,
};

use dataplane::config::Config;

/// Shorter than the image's HEALTHCHECK timeout, so that a hung server is
/// reported by this message rather than by Docker killing the probe.
const TIMEOUT: Duration = Duration::from_secs(3);

/// Why the data plane is not healthy, in one line for `docker inspect`.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// The probe could not even start.
    #[error("cannot start the probe: {0}")]
    Setup(String),
    /// No answer: refused, reset or timed out.
    #[error("no answer from {url}: {reason}")]
    Unreachable {
        /// What was asked.
        url: String,
        /// The error and its causes, on one line.
        reason: String,
    },
    /// An answer other than 200.
    #[error("{url} answered {status}: {body}")]
    NotReady {
        /// What was asked.
        url: String,
        /// Its status.
        status: u16,
        /// The start of the answer (the readiness JSON names the reason).
        body: String,
    },
}

/// The readiness URL of the server `config` describes. A server listening on
/// every address (0.0.0.0, [::]) is asked on loopback, the address the probe
/// is sure to reach from inside its own network namespace.
pub fn ready_url(config: &Config) -> String {
    let mut addr: SocketAddr = config.listen_addr;
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr.ip() {
            IpAddr::V4(_) => Ipv4Addr::LOCALHOST.into(),
            IpAddr::V6(_) => Ipv6Addr::LOCALHOST.into(),
        });
    }
    let scheme = if config.tls.is_some() {
        "https"
    } else {
        "http"
    };
    format!("{scheme}://{addr}/api/health/ready")
}

/// Asks once; `Ok` on a 200.
pub fn probe(config: &Config) -> Result<(), ProbeError> {
    let url = ready_url(config);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| ProbeError::Setup(e.to_string()))?;
    runtime.block_on(ask(url, config.tls.is_some()))
}

async fn ask(url: String, tls: bool) -> Result<(), ProbeError> {
    dataplane::tls::install_crypto_provider();
    let client = reqwest::Client::builder()
        .timeout(TIMEOUT)
        // The certificate names the service's public host, not loopback,
        // and may be the stand-in one; the probe sends no credential and
        // only reads a status, from its own process. /api/health/ready
        // itself answers 503 while no usable certificate is served.
        .danger_accept_invalid_certs(tls)
        .no_proxy()
        .build()
        .map_err(|e| ProbeError::Setup(one_line(&e)))?;
    let response = client
        .get(&url)
        .send()
        .await
        .map_err(|e| ProbeError::Unreachable {
            url: url.clone(),
            reason: one_line(&e.without_url()),
        })?;
    let status = response.status();
    if status == reqwest::StatusCode::OK {
        return Ok(());
    }
    let body = response.text().await.unwrap_or_default();
    Err(ProbeError::NotReady {
        url,
        status: status.as_u16(),
        body: body
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .chars()
            .take(200)
            .collect(),
    })
}

/// The error and its causes (reqwest's own message says only "error
/// sending request"; "Connection refused" is a cause).
fn one_line(e: &reqwest::Error) -> String {
    let mut line = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        line.push_str(": ");
        line.push_str(&cause.to_string());
        source = cause.source();
    }
    line
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use dataplane::cli::Settings;

    use super::*;

    fn config(listen: &str) -> Config {
        Config::from_settings(&Settings {
            listen_addr: Some(listen.into()),
            ..Settings::default()
        })
        .unwrap()
    }

    #[test]
    fn asks_loopback_when_listening_everywhere() {
        assert_eq!(
            ready_url(&config("0.0.0.0:8080")),
            "http://127.0.0.1:8080/api/health/ready"
        );
        assert_eq!(
            ready_url(&config("[::]:9000")),
            "http://[::1]:9000/api/health/ready"
        );
        assert_eq!(
            ready_url(&config("10.1.2.3:80")),
            "http://10.1.2.3:80/api/health/ready"
        );
    }

    #[test]
    fn nobody_listening_is_a_one_line_failure() {
        // Bound then dropped: a port nobody listens on.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let err = probe(&config(&format!("127.0.0.1:{port}")))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("no answer from http://127.0.0.1:"), "{err}");
        assert!(!err.contains('\n'), "{err}");
    }
}
