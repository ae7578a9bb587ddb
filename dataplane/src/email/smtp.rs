//! Sending one stored email: the message built with lettre, signed with
//! DKIM, and handed to the relay (`relay.rs`: pooled connections, the
//! configured TLS mode and credentials, the seed's 30 s timeout). Errors are
//! sorted into permanent (the relay refused the message with a 5xx: do not
//! retry) and temporary (4xx, connection, TLS, login or timeout: retry later).

use std::{
    sync::Arc,
    time::{Duration, SystemTime},
};

use lettre::{
    Message,
    message::{Mailbox, MultiPart, SinglePart, header},
    transport::smtp::authentication::Credentials,
};

use super::{
    dkim::{DkimError, DkimKeys},
    relay::{Relay, RelayError, RelaySettings, RelaySetupError},
};
use crate::{config::SmtpConfig, store::StoredEmail, telemetry::Metrics};

/// Why the mailer could not be built from the configuration.
#[derive(Debug, thiserror::Error)]
pub enum MailerError {
    /// The relay settings cannot be used.
    #[error(transparent)]
    Relay(#[from] RelaySetupError),
    /// `SMTP_CA_FILE` cannot be read.
    #[error("SMTP_CA_FILE {path}")]
    CaFile {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// `SMTP_FROM` is not a mailbox.
    #[error("SMTP_FROM {0:?} is not an email address")]
    From(String),
    /// A DKIM key cannot be used.
    #[error(transparent)]
    Dkim(#[from] DkimError),
    /// Mail would leave unsigned and that is not allowed.
    #[error(
        "DKIM_KEYS_DIR {dir} has no key for {domain}, the domain of SMTP_FROM: add \
         <selector>._domainkey.{domain}, or set DKIM_ALLOW_UNSIGNED=true to send unsigned"
    )]
    NoDkimKey {
        /// The keys' directory.
        dir: String,
        /// SMTP_FROM's domain.
        domain: String,
    },
}

/// A failed delivery attempt.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct SendError {
    /// The server refused for good (5xx) or the message cannot be built:
    /// retrying cannot help.
    pub permanent: bool,
    /// What happened, for `last_error` (never the body).
    pub message: String,
}

/// Sends stored emails through the configured relay.
pub struct Mailer {
    relay: Relay,
    from: Mailbox,
    domain: String,
    timeout: Duration,
    connections: u32,
    dkim: Arc<DkimKeys>,
    signers: tokio::sync::Semaphore,
}

impl Mailer {
    /// A mailer for `config`; connections open on first use and are counted
    /// in `metrics`.
    pub fn new(config: &SmtpConfig, metrics: &Metrics) -> Result<Self, MailerError> {
        let ca_pem = match &config.ca_file {
            Some(path) => Some(std::fs::read(path).map_err(|source| MailerError::CaFile {
                path: path.display().to_string(),
                source,
            })?),
            None => None,
        };
        let ca_path = config
            .ca_file
            .as_deref()
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        let relay = Relay::new(RelaySettings {
            host: &config.host,
            port: config.port,
            tls: config.tls,
            ca_pem: ca_pem.as_deref().map(|pem| (ca_path.as_str(), pem)),
            credentials: config.credentials.as_ref().map(|(user, password)| {
                Credentials::new(user.clone(), password.expose().to_owned())
            }),
            timeout: config.timeout,
            connections: config.connections,
            opened: metrics.smtp_connections_opened_total.clone(),
        })?;
        let from_text = config.from.clone().unwrap_or_default();
        let from: Mailbox = from_text
            .parse()
            .map_err(|_| MailerError::From(from_text.clone()))?;
        let domain = from.email.domain().to_ascii_lowercase();
        let dkim = match &config.dkim.keys_dir {
            Some(dir) => DkimKeys::load(dir)?,
            None => DkimKeys::default(),
        };
        if !config.dkim.allow_unsigned && !dkim.signs_for(&domain) {
            return Err(MailerError::NoDkimKey {
                dir: config
                    .dkim
                    .keys_dir
                    .as_deref()
                    .unwrap_or(std::path::Path::new(""))
                    .display()
                    .to_string(),
                domain,
            });
        }
        Ok(Self {
            relay,
            from,
            domain,
            timeout: config.timeout,
            connections: config.connections,
            dkim: Arc::new(dkim),
            signers: tokio::sync::Semaphore::new(signers()),
        })
    }

    /// The DKIM keys, for `GET /api/dkim`.
    pub fn dkim(&self) -> &DkimKeys {
        &self.dkim
    }

    /// The domain of the sender address, which the DKIM keys sign for.
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// Whether messages leave with a DKIM signature.
    pub fn signs(&self) -> bool {
        self.dkim.signs_for(&self.domain)
    }

    /// Delivers `email` and returns the server's final answer (`250 …`).
    /// Its `Message-ID` derives from its id, so a duplicate delivery (see
    /// the README on the crash window) is recognisable.
    pub async fn send(&self, email: &StoredEmail) -> Result<String, SendError> {
        let permanent = |message| SendError {
            permanent: true,
            message,
        };
        let message = self.build(email).map_err(permanent)?;
        let raw = message.formatted();
        // Signed over the exact bytes the relay receives. An RSA signature
        // takes about a millisecond of CPU: on the blocking pool, so the
        // runtime's threads keep answering requests meanwhile.
        let (dkim, domain) = (Arc::clone(&self.dkim), self.domain.clone());
        let _signer = self.signers.acquire().await.ok();
        let signed = tokio::task::spawn_blocking(move || {
            dkim.sign(&domain, &raw, SystemTime::now())
                .unwrap_or(Ok(raw))
        })
        .await
        .map_err(|e| SendError {
            permanent: false,
            message: format!("DKIM signing stopped: {e}"),
        })?;
        let raw = signed.map_err(permanent)?;
        match self.relay.send(message.envelope(), &raw).await {
            Ok(response) => Ok(format!(
                "{} {}",
                response.code(),
                response.message().collect::<Vec<_>>().join(" ")
            )),
            Err(e) => Err(SendError {
                permanent: e.is_permanent(),
                message: describe(&e, self.timeout),
            }),
        }
    }

    /// Most SMTP connections open at once: the worker sends this many emails
    /// concurrently.
    pub fn connections(&self) -> u32 {
        self.connections
    }

    /// How long one SMTP exchange may take; a claim lasts twice this.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Says NOOP to the relay (on a pooled connection, or a new one with TLS
    /// and login): is it reachable and are our settings right?
    pub async fn ping(&self) -> Result<(), String> {
        self.relay
            .ping()
            .await
            .map_err(|e| describe(&e, self.timeout))
    }

    fn build(&self, email: &StoredEmail) -> Result<Message, String> {
        let parse = |a: &str| {
            a.parse::<Mailbox>()
                .map_err(|e| format!("bad address {a:?}: {e}"))
        };
        let mut builder = Message::builder()
            .from(self.from.clone())
            .subject(email.subject.clone())
            .message_id(Some(format!("<{}@{}>", email.id, self.domain)));
        for a in &email.recipients.to {
            builder = builder.to(parse(a)?);
        }
        for a in &email.recipients.cc {
            builder = builder.cc(parse(a)?);
        }
        for a in &email.recipients.bcc {
            builder = builder.bcc(parse(a)?);
        }
        if let Some(r) = &email.reply_to {
            builder = builder.reply_to(parse(r)?);
        }
        for (name, value) in &email.headers {
            let name = header::HeaderName::new_from_ascii(name.clone())
                .map_err(|e| format!("bad header name {name:?}: {e}"))?;
            builder = builder.raw_header(header::HeaderValue::new(name, value.clone()));
        }
        let message = match (&email.text, &email.html) {
            (Some(text), Some(html)) => builder.multipart(MultiPart::alternative_plain_html(
                text.clone(),
                html.clone(),
            )),
            (Some(text), None) => builder.singlepart(SinglePart::plain(text.clone())),
            (None, Some(html)) => builder.singlepart(SinglePart::html(html.clone())),
            (None, None) => return Err("the email has no body".into()),
        };
        message.map_err(|e| format!("building the message: {e}"))
    }
}

/// How many messages are signed at once: one per core. A signature is pure
/// CPU, so more threads than cores would only queue on the CPU ahead of the
/// API and the store (measured: unbounded, the accept p99 rose by half).
fn signers() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
}

/// The error without the message content (lettre never includes it),
/// with the relay's reply code first when there is one: the suppression
/// rules read it.
fn describe(e: &RelayError, timeout: Duration) -> String {
    match (e, e.status()) {
        (_, Some(code)) => format!("SMTP {code}: {e}"),
        (RelayError::Timeout(_), None) => format!("SMTP timeout after {timeout:?}"),
        (_, None) => e.to_string(),
    }
}
