//! Sending one stored email over SMTP with lettre: a pooled async transport,
//! the configured TLS mode and credentials, and the seed's 30 s timeout.
//! Errors are sorted into permanent (the server said 5xx: do not retry) and
//! temporary (4xx, connection or timeout: retry later).

use std::time::{Duration, SystemTime};

use lettre::{
    AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor,
    message::{Mailbox, MultiPart, SinglePart, header},
    transport::smtp::{PoolConfig, authentication::Credentials},
};

use super::dkim::{DkimError, DkimKeys};
use crate::{
    config::{SmtpConfig, SmtpTls},
    store::StoredEmail,
};

/// Why the mailer could not be built from the configuration.
#[derive(Debug, thiserror::Error)]
pub enum MailerError {
    /// The relay host does not work with the chosen TLS mode.
    #[error("SMTP relay {host}: {source}")]
    Relay {
        /// The host.
        host: String,
        /// Why.
        #[source]
        source: lettre::transport::smtp::Error,
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
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    domain: String,
    timeout: Duration,
    connections: u32,
    dkim: DkimKeys,
}

impl Mailer {
    /// A mailer for `config`; connections open on first use.
    pub fn new(config: &SmtpConfig) -> Result<Self, MailerError> {
        let relay_error = |source| MailerError::Relay {
            host: config.host.clone(),
            source,
        };
        let builder = match config.tls {
            SmtpTls::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&config.host),
            SmtpTls::StartTls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&config.host)
                .map_err(relay_error)?,
            SmtpTls::Tls => {
                AsyncSmtpTransport::<Tokio1Executor>::relay(&config.host).map_err(relay_error)?
            }
        };
        let mut builder = builder
            .port(config.port)
            .timeout(Some(config.timeout))
            .pool_config(PoolConfig::new().max_size(config.connections));
        if let Some((user, password)) = &config.credentials {
            builder =
                builder.credentials(Credentials::new(user.clone(), password.expose().to_owned()));
        }
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
            transport: builder.build(),
            from,
            domain,
            timeout: config.timeout,
            connections: config.connections,
            dkim,
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
        // Signed over the exact bytes the relay receives.
        let raw = match self.dkim.sign(&self.domain, &raw, SystemTime::now()) {
            Some(signed) => signed.map_err(permanent)?,
            None => raw,
        };
        match self.transport.send_raw(message.envelope(), &raw).await {
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

    /// Opens a connection and says NOOP: is the relay reachable?
    pub async fn ping(&self) -> Result<(), String> {
        match self.transport.test_connection().await {
            Ok(true) => Ok(()),
            Ok(false) => Err("the SMTP server did not accept a connection".into()),
            Err(e) => Err(describe(&e, self.timeout)),
        }
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

/// The SMTP error without the message content (lettre never includes it).
fn describe(e: &lettre::transport::smtp::Error, timeout: Duration) -> String {
    match e.status() {
        Some(code) => format!("SMTP {code}: {e}"),
        None if e.is_timeout() => format!("SMTP timeout after {timeout:?}: {e}"),
        None => e.to_string(),
    }
}
