//! Settings -> validated [`Config`], in one place.
//!
//! Every value is checked before anything starts; a wrong one stops the process
//! with a [`ConfigError`] that names the environment variable to fix. Values of
//! secret variables are never repeated in errors or `Debug` output.

use std::{fmt, net::SocketAddr, path::PathBuf, str::FromStr, time::Duration};

use tracing_subscriber::EnvFilter;
use url::Url;

pub use backup_bucket::{BucketConfig, Credentials};

use crate::{
    cli::Settings,
    ratelimit::{OnRedisFailure, Policy},
};

/// A setting that is wrong, named by its environment variable.
#[derive(Debug, thiserror::Error)]
#[error("invalid {var}{shown}: {reason}", shown = display_value(value))]
pub struct ConfigError {
    /// The environment variable, e.g. `LISTEN_ADDR`.
    pub var: std::borrow::Cow<'static, str>,
    /// The offending value, `None` for secrets.
    pub value: Option<String>,
    /// What is expected instead.
    pub reason: String,
}

fn display_value(value: &Option<String>) -> String {
    value
        .as_ref()
        .map(|v| format!("={v:?}"))
        .unwrap_or_default()
}

impl ConfigError {
    fn new(
        var: impl Into<std::borrow::Cow<'static, str>>,
        value: &str,
        reason: impl Into<String>,
    ) -> Self {
        Self {
            var: var.into(),
            value: Some(value.to_owned()),
            reason: reason.into(),
        }
    }

    /// For secrets: the value stays out of the message.
    fn secret(var: impl Into<std::borrow::Cow<'static, str>>, reason: impl Into<String>) -> Self {
        Self {
            var: var.into(),
            value: None,
            reason: reason.into(),
        }
    }
}

/// A value (a string by default) that never shows up in logs or `Debug` output.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret<T = String>(T);

impl<T> Secret<T> {
    /// Wraps `value`, which from now on shows as `***`.
    pub fn new(value: T) -> Self {
        Self(value)
    }

    /// The secret itself, for the one place that needs it.
    pub fn expose(&self) -> &T {
        &self.0
    }
}

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// How strict start-up is about missing secrets (`SECUREVAULT_ENV`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Local use: missing secrets are generated, with a warning.
    Development,
    /// Production: every secret must be given.
    Production,
}

/// Which SQL server the store talks to; decided by the `DATABASE_URL` scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatabaseKind {
    /// A file under the data directory; one replica only.
    Sqlite,
    /// PostgreSQL, required when several replicas share the store.
    Postgres,
}

impl DatabaseKind {
    /// `sqlite` or `postgres`, as in logs and health reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgres",
        }
    }
}

impl Mode {
    /// `development` or `production`, as `SECUREVAULT_ENV` spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Development => "development",
            Self::Production => "production",
        }
    }
}

/// HTTPS: the certificate and key files (a mounted `kubernetes.io/tls`
/// Secret in Kubernetes) and how often they are read again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    /// PEM certificate chain, leaf first (`TLS_CERT_FILE`).
    pub cert_file: PathBuf,
    /// PEM private key (`TLS_KEY_FILE`).
    pub key_file: PathBuf,
    /// How often the files are read again (`TLS_RELOAD_SECS`).
    pub reload_interval: Duration,
}

/// The SQL store's settings.
#[derive(Debug, Clone)]
pub struct DatabaseConfig {
    /// The full connection URL (it may carry a password).
    pub url: Secret,
    /// The server type, from the URL's scheme.
    pub kind: DatabaseKind,
    /// Upper bound of pooled connections.
    pub max_connections: u32,
}

/// Where notifications go and how they look; present only when
/// `WEBHOOK_URL` is set.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    /// The receiver (it may embed a token, as Slack's URLs do).
    pub url: Url,
    /// The decoded signing key, when one is configured.
    pub secret: Option<Secret<Vec<u8>>>,
    /// The body's shape.
    pub format: WebhookFormat,
}

/// The body of a notification (`WEBHOOK_FORMAT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookFormat {
    /// `{"type", "timestamp", "data"}`, signed per Standard Webhooks.
    Standard,
    /// `{"text"}`, what a Slack incoming webhook posts in a channel.
    Slack,
}

/// SMTP settings; present only when `SMTP_HOST` is set.
#[derive(Debug, Clone)]
pub struct SmtpConfig {
    /// Server host name.
    pub host: String,
    /// Server port.
    pub port: u16,
    /// User name and password, when the server wants them.
    pub credentials: Option<(String, Secret)>,
    /// Transport security.
    pub tls: SmtpTls,
    /// Certificates trusted besides the public roots (`SMTP_CA_FILE`):
    /// a relay with a private CA.
    pub ca_file: Option<std::path::PathBuf>,
    /// Sender address of outgoing email.
    pub from: Option<String>,
    /// How long one SMTP exchange may take (`SMTP_TIMEOUT_SECS`).
    pub timeout: Duration,
    /// Most connections open to the server at once (`SMTP_MAX_CONNECTIONS`).
    pub connections: u32,
    /// DKIM signing.
    pub dkim: DkimConfig,
}

/// How long stored rows are kept (`RETENTION_*`); `None` keeps forever.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetentionConfig {
    /// Finished emails (`RETENTION_EMAILS_DAYS`).
    pub emails: Option<Duration>,
    /// Generations (`RETENTION_GENERATIONS_DAYS`).
    pub generations: Option<Duration>,
    /// Audit entries (`RETENTION_AUDIT_DAYS`).
    pub audit: Option<Duration>,
    /// Time between two runs (`RETENTION_INTERVAL_SECS`).
    pub interval: Duration,
}

impl RetentionConfig {
    /// The age past which `kind` is deleted, if it ever is.
    pub fn age(&self, kind: crate::store::Retained) -> Option<Duration> {
        match kind {
            crate::store::Retained::Emails => self.emails,
            crate::store::Retained::Generations => self.generations,
            crate::store::Retained::Audit => self.audit,
        }
    }

    /// Whether anything is ever deleted.
    pub fn enabled(&self) -> bool {
        self.emails.is_some() || self.generations.is_some() || self.audit.is_some()
    }
}

fn retention_config(s: &Settings) -> Result<RetentionConfig, ConfigError> {
    let days = |v: &Option<String>, var: &'static str| {
        parse_or(v, var, "off", |v| match v {
            "off" => Ok(None),
            v => bounded_u64(v, 1, 36_500)
                .map(|d| Some(Duration::from_secs(d * 86_400)))
                .map_err(|_| {
                    "expected whole days from 1 to 36500, or `off` (kept forever)".to_owned()
                }),
        })
    };
    Ok(RetentionConfig {
        emails: days(&s.retention_emails_days, "RETENTION_EMAILS_DAYS")?,
        generations: days(&s.retention_generations_days, "RETENTION_GENERATIONS_DAYS")?,
        audit: days(&s.retention_audit_days, "RETENTION_AUDIT_DAYS")?,
        interval: Duration::from_secs(parse_or(
            &s.retention_interval_secs,
            "RETENTION_INTERVAL_SECS",
            "3600",
            |v| bounded_u64(v, 1, 86_400),
        )?),
    })
}

/// DKIM signing of outgoing email (`DKIM_*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DkimConfig {
    /// Where the keys are (`DKIM_KEYS_DIR`); read at start.
    pub keys_dir: Option<std::path::PathBuf>,
    /// Whether mail may leave unsigned (`DKIM_ALLOW_UNSIGNED`).
    pub allow_unsigned: bool,
}

/// SMTP transport security (`SMTP_TLS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpTls {
    /// Plain connection upgraded with STARTTLS (required).
    StartTls,
    /// TLS from the first byte (SMTPS).
    Tls,
    /// No encryption, for a relay on a trusted network or tests.
    None,
}

/// The variables of one model server in AI_UPSTREAMS begin so.
pub const UPSTREAM_PREFIX: &str = "AI_UPSTREAM_";

/// One OpenAI-compatible model server.
#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    /// Its name in AI_UPSTREAMS, or `default` for OPENAI_BASE_URL.
    pub name: String,
    /// Its base URL, e.g. `https://api.openai.com/v1`.
    pub base_url: Url,
    /// Its API key, if it wants one.
    pub api_key: Option<Secret>,
    /// The models it serves; empty: every model a request may name.
    pub models: Vec<String>,
    /// How long one attempt on it may take, within the generation's deadline.
    pub timeout: Duration,
}

impl UpstreamConfig {
    /// Whether it serves `model`.
    pub fn serves(&self, model: &str) -> bool {
        self.models.is_empty() || self.models.iter().any(|m| m == model)
    }
}

/// Text generation: the model servers and the limits on their use.
#[derive(Debug, Clone)]
pub struct OpenAiConfig {
    /// The model servers, in the order they are tried (`AI_UPSTREAMS`, or
    /// one from OPENAI_BASE_URL and OPENAI_API_KEY).
    pub upstreams: Vec<UpstreamConfig>,
    /// Whether generation is on: `OPENAI_BASE_URL`, `OPENAI_API_KEY` or
    /// `AI_UPSTREAMS` is set.
    pub configured: bool,
    /// How long a failing model server is skipped (`AI_COOLDOWN_SECS`).
    pub cooldown: Duration,
    /// The models a request may name; the first is the default
    /// (`OPENAI_MODEL`, then the rest of `AI_MODELS`).
    pub models: Vec<String>,
    /// One deadline per generation, retries and streaming included
    /// (`AI_TIMEOUT_SECS`).
    pub timeout: Duration,
    /// Most requests to the model server in flight (`AI_MAX_CONCURRENCY`).
    pub max_concurrency: usize,
    /// Token budgets per key and per account (`AI_BUDGET_*_TOKENS`).
    pub budgets: BudgetConfig,
}

/// Tokens (prompt and completion) a key or an account may use per UTC day
/// and month; `None`: no such budget.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BudgetConfig {
    /// Per API key and day (`AI_BUDGET_KEY_DAILY_TOKENS`).
    pub key_daily: Option<u64>,
    /// Per API key and month (`AI_BUDGET_KEY_MONTHLY_TOKENS`).
    pub key_monthly: Option<u64>,
    /// Per account and day (`AI_BUDGET_ACCOUNT_DAILY_TOKENS`).
    pub account_daily: Option<u64>,
    /// Per account and month (`AI_BUDGET_ACCOUNT_MONTHLY_TOKENS`).
    pub account_monthly: Option<u64>,
}

/// Accounts, sessions and login protection.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    /// The first administrator's name (lower-cased).
    pub admin_username: String,
    /// Its password, when configured (`ADMIN_PASSWORD`).
    pub admin_password: Option<Secret>,
    /// How long a session lasts (`SESSION_TTL_SECS`).
    pub session_ttl: Duration,
    /// Whether the session cookie is `Secure` (`SESSION_COOKIE_SECURE`).
    pub cookie_secure: bool,
    /// Failures that trigger a block (`LOGIN_MAX_FAILURES`).
    pub login_max_failures: u32,
    /// The window failures are counted in (`LOGIN_WINDOW_SECS`).
    pub login_window: Duration,
    /// How long a block lasts (`LOGIN_BLOCK_SECS`).
    pub login_block: Duration,
    /// Proxies whose `X-Forwarded-For` is believed (`TRUSTED_PROXIES`).
    pub trusted_proxies: Vec<ipnet::IpNet>,
}

/// Per-principal request budgets.
#[derive(Debug, Clone, Copy)]
pub struct RateLimitConfig {
    /// Every guarded route (`RATE_LIMIT_API`).
    pub api: Policy,
    /// Sending email (`RATE_LIMIT_EMAIL`).
    pub email: Policy,
    /// Generating text (`RATE_LIMIT_AI`).
    pub ai: Policy,
    /// What to do while Redis does not answer.
    pub on_redis_failure: OnRedisFailure,
}

/// What one client connection may hold (see [`crate::connections`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Time for a TLS handshake, and for a request's headers from their
    /// first byte, or from the opening of a new connection
    /// (`HEADER_READ_TIMEOUT_SECS`).
    pub header_read_timeout: Duration,
    /// Time a connection may stay open with no request in flight
    /// (`IDLE_TIMEOUT_SECS`).
    pub idle_timeout: Duration,
    /// Most connections open at once (`MAX_CONNECTIONS`).
    pub max_connections: usize,
}

/// Shortest accepted password, for `ADMIN_PASSWORD` and new accounts.
pub const MIN_PASSWORD_LEN: usize = 12;

/// The validated configuration the whole process runs on.
#[derive(Debug, Clone)]
pub struct Config {
    /// Development or production.
    pub mode: Mode,
    /// Where the HTTP API listens.
    pub listen_addr: SocketAddr,
    /// Where the metrics listener (`/metrics`) listens: a port of its own,
    /// which the Service's scrape port reaches and no Ingress routes.
    pub metrics_addr: SocketAddr,
    /// HTTPS on `listen_addr` (and `metrics_addr`) instead of plain HTTP,
    /// when set.
    pub tls: Option<TlsConfig>,
    /// A valid tracing filter directive.
    pub log_filter: String,
    /// Local state (the SQLite file).
    pub data_dir: PathBuf,
    /// The SQL store.
    pub database: DatabaseConfig,
    /// Redis, when a cache shared between replicas is wanted.
    pub redis_url: Option<Secret>,
    /// Signing key for sessions and webhooks.
    pub secret_key: Secret,
    /// True when `secret_key` was generated because none was given: the
    /// one kept in `DATA_DIR/secret-key` is used instead, if there is one
    /// (see `server::keyring`).
    pub secret_key_generated: bool,
    /// `SECRET_KEY_PREVIOUS`, during a rotation.
    pub secret_key_previous: Option<Secret>,
    /// What start-up should warn about once logging is up: settings read
    /// under the seed's names, and what they cannot mean here.
    pub notices: Vec<String>,
    /// The model server.
    pub openai: OpenAiConfig,
    /// Where notifications go, when they are wanted.
    pub webhook: Option<WebhookConfig>,
    /// SMTP, when configured.
    pub smtp: Option<SmtpConfig>,
    /// How long `/api/stats` is served from the cache.
    pub stats_cache_ttl: Duration,
    /// Upper bound of one request's handling time.
    pub request_timeout: Duration,
    /// How long requests in flight get after SIGTERM.
    pub shutdown_timeout: Duration,
    /// Largest accepted request body.
    pub max_body_bytes: usize,
    /// Timeouts and the cap of client connections.
    pub connections: ConnectionLimits,
    /// Accounts, sessions and login protection.
    pub auth: AuthConfig,
    /// Request budgets.
    pub rate_limits: RateLimitConfig,
    /// Where backups go and how often, when a destination is set.
    pub backup: Option<BackupConfig>,
    /// How long emails, generations and audit entries are kept.
    pub retention: RetentionConfig,
}

/// Scheduled backups (`BACKUP_*`).
#[derive(Debug, Clone)]
pub struct BackupConfig {
    /// Where they go.
    pub destination: BackupDestination,
    /// Time between two backups.
    pub interval: Duration,
    /// Backups kept.
    pub retain: usize,
}

/// Where backups go.
#[derive(Debug, Clone)]
pub enum BackupDestination {
    /// An S3-compatible bucket.
    Bucket(BucketConfig),
    /// A directory (a second volume).
    Directory(PathBuf),
}

/// Smallest accepted `SECRET_KEY`, in characters: 32 random characters carry
/// enough entropy for HMAC keys.
const MIN_SECRET_KEY_LEN: usize = 32;

impl Config {
    /// Checks every setting and fills in the defaults.
    pub fn from_settings(s: &Settings) -> Result<Self, ConfigError> {
        let (mode, notices) = mode(s)?;

        let listen_addr = parse_or(&s.listen_addr, "LISTEN_ADDR", "127.0.0.1:8080", |v| {
            SocketAddr::from_str(v).map_err(|_| "expected IP:PORT, such as 0.0.0.0:8080".into())
        })?;
        let metrics_addr = parse_or(&s.metrics_addr, "METRICS_ADDR", "127.0.0.1:9464", |v| {
            SocketAddr::from_str(v).map_err(|_| "expected IP:PORT, such as 0.0.0.0:9464".into())
        })?;
        if metrics_addr == listen_addr && listen_addr.port() != 0 {
            return Err(ConfigError::new(
                "METRICS_ADDR",
                &metrics_addr.to_string(),
                "must differ from LISTEN_ADDR: the metrics have a port of their own, which no Ingress routes",
            ));
        }

        let log_filter = non_empty(&s.log_level).unwrap_or("info").to_owned();
        EnvFilter::try_new(&log_filter).map_err(|e| {
            ConfigError::new(
                "LOG_LEVEL",
                &log_filter,
                format!(
                    "expected a level (error, warn, info, debug, trace) or a filter directive: {e}"
                ),
            )
        })?;

        let data_dir = PathBuf::from(non_empty(&s.data_dir).unwrap_or("./data"));
        let database = database_config(s, &data_dir)?;

        let redis_url = match non_empty(&s.redis_url) {
            None => None,
            Some(v) => {
                let url = Url::parse(v)
                    .map_err(|e| ConfigError::secret("REDIS_URL", format!("not a URL: {e}")))?;
                if !matches!(url.scheme(), "redis" | "rediss") || url.host_str().is_none() {
                    return Err(ConfigError::secret(
                        "REDIS_URL",
                        "expected redis://HOST:PORT/ or rediss://HOST:PORT/",
                    ));
                }
                Some(Secret(v.to_owned()))
            }
        };

        let (secret_key, secret_key_generated) = match non_empty(&s.secret_key) {
            Some(key) if key.chars().count() < MIN_SECRET_KEY_LEN => {
                return Err(ConfigError::secret(
                    "SECRET_KEY",
                    format!("must be at least {MIN_SECRET_KEY_LEN} characters long"),
                ));
            }
            Some(key) => (Secret(key.to_owned()), false),
            None if mode == Mode::Production => {
                return Err(ConfigError::secret(
                    "SECRET_KEY",
                    "required when SECUREVAULT_ENV=production (generate one with `openssl rand -hex 32`)",
                ));
            }
            None => (Secret(generate_key()?), true),
        };
        let secret_key_previous = match non_empty(&s.secret_key_previous) {
            Some(key) if key.chars().count() < MIN_SECRET_KEY_LEN => {
                return Err(ConfigError::secret(
                    "SECRET_KEY_PREVIOUS",
                    format!("must be at least {MIN_SECRET_KEY_LEN} characters long"),
                ));
            }
            Some(key) if Some(key) == non_empty(&s.secret_key) => {
                return Err(ConfigError::secret(
                    "SECRET_KEY_PREVIOUS",
                    "is SECRET_KEY itself: give the key used before the rotation",
                ));
            }
            Some(key) => Some(Secret(key.to_owned())),
            None => None,
        };

        let openai = ai_config(s)?;

        Ok(Self {
            mode,
            listen_addr,
            metrics_addr,
            tls: tls_config(s)?,
            log_filter,
            data_dir,
            database,
            redis_url,
            secret_key,
            secret_key_generated,
            secret_key_previous,
            notices,
            openai,
            webhook: webhook_config(s)?,
            smtp: smtp_config(s)?,
            stats_cache_ttl: Duration::from_secs(parse_or(
                &s.stats_cache_ttl_secs,
                "STATS_CACHE_TTL_SECS",
                "60",
                |v| bounded_u64(v, 1, 3600),
            )?),
            request_timeout: Duration::from_secs(parse_or(
                &s.request_timeout_secs,
                "REQUEST_TIMEOUT_SECS",
                "30",
                |v| bounded_u64(v, 1, 600),
            )?),
            shutdown_timeout: Duration::from_secs(parse_or(
                &s.shutdown_timeout_secs,
                "SHUTDOWN_TIMEOUT_SECS",
                "25",
                |v| bounded_u64(v, 0, 600),
            )?),
            max_body_bytes: parse_or(&s.max_body_bytes, "MAX_BODY_BYTES", "1048576", |v| {
                bounded_u64(v, 1024, 64 * 1024 * 1024).map(|n| n as usize)
            })?,
            connections: connection_limits(s)?,
            auth: auth_config(s)?,
            rate_limits: rate_limit_config(s)?,
            backup: backup_config(s)?,
            retention: retention_config(s)?,
        })
    }
}

/// The mode, from SECUREVAULT_ENV or, where only the seed's settings are
/// given, from Flask's FLASK_ENV; FLASK_DEBUG is answered too. The seed's
/// `.env.prod` must start production mode as written.
fn mode(s: &Settings) -> Result<(Mode, Vec<String>), ConfigError> {
    fn parse(var: &'static str, value: &str) -> Result<Mode, ConfigError> {
        match value {
            "development" => Ok(Mode::Development),
            "production" => Ok(Mode::Production),
            other => Err(ConfigError::new(
                var,
                other,
                "expected `development` or `production`",
            )),
        }
    }
    let mut notices = Vec::new();
    let flask = non_empty(&s.flask_env)
        .map(|v| parse("FLASK_ENV", v))
        .transpose()?;
    let mode = match (non_empty(&s.env), flask) {
        (None, None) => Mode::Development,
        (Some(v), None) => parse("SECUREVAULT_ENV", v)?,
        (None, Some(flask)) => {
            notices.push(format!(
                "FLASK_ENV is the seed's (Flask's) name: read as SECUREVAULT_ENV={}; \
                 rename it to SECUREVAULT_ENV",
                flask.as_str()
            ));
            flask
        }
        (Some(v), Some(flask)) => {
            let mode = parse("SECUREVAULT_ENV", v)?;
            if mode != flask {
                return Err(ConfigError::new(
                    "FLASK_ENV",
                    flask.as_str(),
                    format!(
                        "disagrees with SECUREVAULT_ENV={}, which SecureVault reads: remove FLASK_ENV",
                        mode.as_str()
                    ),
                ));
            }
            mode
        }
    };
    match non_empty(&s.flask_debug) {
        None | Some("0" | "false" | "False") => {}
        Some("1" | "true" | "True") => notices.push(
            "FLASK_DEBUG is on, but SecureVault has no debug mode (it would show internals \
             to clients); for detailed logs set LOG_LEVEL=debug"
                .to_owned(),
        ),
        Some(other) => {
            return Err(ConfigError::new(
                "FLASK_DEBUG",
                other,
                "expected 0 or 1 (SecureVault has no debug mode; for detailed logs set LOG_LEVEL=debug)",
            ));
        }
    }
    Ok((mode, notices))
}

fn backup_config(s: &Settings) -> Result<Option<BackupConfig>, ConfigError> {
    let destination = match (non_empty(&s.backup_s3_bucket), non_empty(&s.backup_dir)) {
        (Some(_), Some(dir)) => {
            return Err(ConfigError::new(
                "BACKUP_DIR",
                dir,
                "set BACKUP_DIR or BACKUP_S3_BUCKET, not both",
            ));
        }
        (Some(bucket), None) => BackupDestination::Bucket(bucket_config(s, bucket)?),
        (None, Some(dir)) => BackupDestination::Directory(PathBuf::from(dir)),
        (None, None) => {
            for (var, value) in [
                ("BACKUP_S3_ENDPOINT", &s.backup_s3_endpoint),
                ("BACKUP_S3_PREFIX", &s.backup_s3_prefix),
                ("BACKUP_S3_ACCESS_KEY_ID", &s.backup_s3_access_key_id),
            ] {
                if non_empty(value).is_some() {
                    return Err(ConfigError::secret(
                        var,
                        "has no effect without BACKUP_S3_BUCKET: set the bucket too",
                    ));
                }
            }
            return Ok(None);
        }
    };
    Ok(Some(BackupConfig {
        destination,
        interval: Duration::from_secs(parse_or(
            &s.backup_interval_secs,
            "BACKUP_INTERVAL_SECS",
            "3600",
            |v| bounded_u64(v, 1, 7 * 24 * 3600),
        )?),
        retain: parse_or(&s.backup_retain, "BACKUP_RETAIN", "24", |v| {
            bounded_u64(v, 1, 10_000).map(|n| n as usize)
        })?,
    }))
}

fn bucket_config(s: &Settings, bucket: &str) -> Result<BucketConfig, ConfigError> {
    // S3's own rule for bucket names (3 to 63 lowercase letters, digits,
    // dots and hyphens): a wrong one is named here, not by a signature
    // error at the first backup an hour later.
    let valid = (3..=63).contains(&bucket.len())
        && bucket
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-')
        && bucket.starts_with(|c: char| c.is_ascii_alphanumeric())
        && bucket.ends_with(|c: char| c.is_ascii_alphanumeric());
    if !valid {
        return Err(ConfigError::new(
            "BACKUP_S3_BUCKET",
            bucket,
            "expected an S3 bucket name: 3 to 63 lowercase letters, digits, dots and hyphens",
        ));
    }
    let endpoint = match non_empty(&s.backup_s3_endpoint) {
        None => None,
        Some(v) => {
            let url = http_url(v).map_err(|r| ConfigError::new("BACKUP_S3_ENDPOINT", v, r))?;
            if url.path() != "/" || url.query().is_some() {
                return Err(ConfigError::new(
                    "BACKUP_S3_ENDPOINT",
                    v,
                    "expected the server alone, http(s)://HOST[:PORT], without a path: the bucket is BACKUP_S3_BUCKET",
                ));
            }
            Some(url)
        }
    };
    let prefix = match non_empty(&s.backup_s3_prefix).map(|p| p.trim_matches('/')) {
        None | Some("") => String::new(),
        Some(p)
            if p.split('/')
                .any(|part| part.is_empty() || part == "." || part == "..") =>
        {
            return Err(ConfigError::new(
                "BACKUP_S3_PREFIX",
                p,
                "expected folder names separated by `/`, such as `team-a/mail`",
            ));
        }
        Some(p) => format!("{p}/"),
    };
    let credentials = match (
        non_empty(&s.backup_s3_access_key_id),
        non_empty(&s.backup_s3_secret_access_key),
    ) {
        (Some(id), Some(key)) => Some(Credentials {
            access_key_id: id.to_owned(),
            secret_access_key: key.to_owned(),
        }),
        (None, None) => None,
        (Some(_), None) => {
            return Err(ConfigError::secret(
                "BACKUP_S3_SECRET_ACCESS_KEY",
                "required when BACKUP_S3_ACCESS_KEY_ID is set",
            ));
        }
        (None, Some(_)) => {
            return Err(ConfigError::secret(
                "BACKUP_S3_ACCESS_KEY_ID",
                "required when BACKUP_S3_SECRET_ACCESS_KEY is set",
            ));
        }
    };
    Ok(BucketConfig {
        endpoint,
        bucket: bucket.to_owned(),
        region: non_empty(&s.backup_s3_region)
            .unwrap_or("us-east-1")
            .to_owned(),
        prefix,
        credentials,
    })
}

fn connection_limits(s: &Settings) -> Result<ConnectionLimits, ConfigError> {
    Ok(ConnectionLimits {
        // A client sends its headers in one packet, milliseconds after it
        // connected; 10 s leave room for a bad mobile link and cap what a
        // client that sends nothing, or a byte at a time, can hold.
        header_read_timeout: Duration::from_secs(parse_or(
            &s.header_read_timeout_secs,
            "HEADER_READ_TIMEOUT_SECS",
            "10",
            |v| bounded_u64(v, 1, 300),
        )?),
        // Longer than the 60 s after which what usually stands in front of
        // us closes an idle connection (ingress-nginx's upstream keep-alive,
        // AWS load balancers): the proxy must close first, or a request it
        // sends just as we close fails with a 502. 75 s is nginx's own.
        idle_timeout: Duration::from_secs(parse_or(
            &s.idle_timeout_secs,
            "IDLE_TIMEOUT_SECS",
            "75",
            |v| bounded_u64(v, 1, 3600),
        )?),
        // A proxy in front keeps a few pooled connections, direct clients
        // one or two each: 1024 is far more than a healthy pod sees, and far
        // less than its memory allows (an idle connection costs a socket and
        // a few KiB of buffers). The timeouts above do the real work against
        // a flood; this cap bounds what is left of one. Keep it below the
        // open-file limit (`ulimit -n`) minus the store's and SMTP's pools.
        max_connections: parse_or(&s.max_connections, "MAX_CONNECTIONS", "1024", |v| {
            bounded_u64(v, 1, 65536).map(|n| n as usize)
        })?,
    })
}

fn database_config(
    s: &Settings,
    data_dir: &std::path::Path,
) -> Result<DatabaseConfig, ConfigError> {
    let default_url = format!("sqlite://{}", data_dir.join("securevault.db").display());
    let raw = non_empty(&s.database_url)
        .map(str::to_owned)
        .unwrap_or(default_url);
    let (kind, url) = if let Some(rest) = raw.strip_prefix("sqlite:") {
        if rest.trim_start_matches('/').is_empty() {
            return Err(ConfigError::secret(
                "DATABASE_URL",
                "a sqlite:// URL needs a file path",
            ));
        }
        // The file is created on first start; `mode=rwc` asks SQLite for that.
        let url = if raw.contains("mode=") {
            raw.clone()
        } else if raw.contains('?') {
            format!("{raw}&mode=rwc")
        } else {
            format!("{raw}?mode=rwc")
        };
        (DatabaseKind::Sqlite, url)
    } else if raw.starts_with("postgres://") || raw.starts_with("postgresql://") {
        let parsed = Url::parse(&raw)
            .map_err(|e| ConfigError::secret("DATABASE_URL", format!("not a URL: {e}")))?;
        if parsed.host_str().is_none_or(str::is_empty) {
            return Err(ConfigError::secret(
                "DATABASE_URL",
                "a postgres:// URL needs a host",
            ));
        }
        (DatabaseKind::Postgres, raw.clone())
    } else {
        return Err(ConfigError::secret(
            "DATABASE_URL",
            "expected sqlite://PATH or postgres://USER:PASSWORD@HOST:PORT/DATABASE",
        ));
    };
    let max_connections = parse_or(
        &s.database_max_connections,
        "DATABASE_MAX_CONNECTIONS",
        "10",
        |v| bounded_u64(v, 1, 1000).map(|n| n as u32),
    )?;
    Ok(DatabaseConfig {
        url: Secret(url),
        kind,
        max_connections,
    })
}

fn tls_config(s: &Settings) -> Result<Option<TlsConfig>, ConfigError> {
    let (cert_file, key_file) = match (non_empty(&s.tls_cert_file), non_empty(&s.tls_key_file)) {
        (None, None) => return Ok(None),
        // `secret` only because there is no value to show: the variable is unset.
        (Some(cert), Some(key)) => (PathBuf::from(cert), PathBuf::from(key)),
        (Some(cert), None) => {
            return Err(ConfigError::secret(
                "TLS_KEY_FILE",
                format!("required with TLS_CERT_FILE={cert}: the private key of that certificate"),
            ));
        }
        (None, Some(key)) => {
            return Err(ConfigError::secret(
                "TLS_CERT_FILE",
                format!("required with TLS_KEY_FILE={key}: the certificate of that key"),
            ));
        }
    };
    for (var, path, what) in [
        ("TLS_CERT_FILE", &cert_file, "a PEM certificate chain"),
        ("TLS_KEY_FILE", &key_file, "a PEM private key"),
    ] {
        if !path.is_file() {
            return Err(ConfigError::new(
                var,
                &path.display().to_string(),
                format!("no such file: expected {what}"),
            ));
        }
    }
    let reload_interval = Duration::from_secs(parse_or(
        &s.tls_reload_secs,
        "TLS_RELOAD_SECS",
        "10",
        |v| bounded_u64(v, 1, 3600),
    )?);
    Ok(Some(TlsConfig {
        cert_file,
        key_file,
        reload_interval,
    }))
}

fn auth_config(s: &Settings) -> Result<AuthConfig, ConfigError> {
    let admin_username = non_empty(&s.admin_username)
        .unwrap_or("admin")
        .to_lowercase();
    crate::auth::valid_username(&admin_username)
        .map_err(|reason| ConfigError::new("ADMIN_USERNAME", &admin_username, reason))?;
    let admin_password = match s.admin_password.as_deref().filter(|p| !p.is_empty()) {
        Some(p) if p.chars().count() < MIN_PASSWORD_LEN => {
            return Err(ConfigError::secret(
                "ADMIN_PASSWORD",
                format!("must be at least {MIN_PASSWORD_LEN} characters long"),
            ));
        }
        Some(p) => Some(Secret(p.to_owned())),
        None => None,
    };
    let secs = |v: &Option<String>, var, default, min, max| -> Result<Duration, ConfigError> {
        Ok(Duration::from_secs(parse_or(v, var, default, |v| {
            bounded_u64(v, min, max)
        })?))
    };
    let trusted_proxies = non_empty(&s.trusted_proxies)
        .map(|list| {
            list.split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(|p| {
                    p.parse::<ipnet::IpNet>()
                        .or_else(|_| p.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                        .map_err(|_| {
                            ConfigError::new(
                                "TRUSTED_PROXIES",
                                p,
                                "expected comma-separated IP addresses or CIDR ranges, such as 10.0.0.0/8",
                            )
                        })
                })
                .collect::<Result<Vec<_>, _>>()
        })
        .transpose()?
        .unwrap_or_default();
    Ok(AuthConfig {
        admin_username,
        admin_password,
        session_ttl: secs(
            &s.session_ttl_secs,
            "SESSION_TTL_SECS",
            "3600",
            1,
            30 * 86400,
        )?,
        cookie_secure: parse_or(
            &s.session_cookie_secure,
            "SESSION_COOKIE_SECURE",
            "true",
            boolean,
        )?,
        login_max_failures: parse_or(&s.login_max_failures, "LOGIN_MAX_FAILURES", "5", |v| {
            bounded_u64(v, 1, 1000).map(|n| n as u32)
        })?,
        login_window: secs(&s.login_window_secs, "LOGIN_WINDOW_SECS", "300", 1, 86400)?,
        login_block: secs(&s.login_block_secs, "LOGIN_BLOCK_SECS", "300", 1, 86400)?,
        trusted_proxies,
    })
}

fn rate_limit_config(s: &Settings) -> Result<RateLimitConfig, ConfigError> {
    Ok(RateLimitConfig {
        api: parse_or(&s.rate_limit_api, "RATE_LIMIT_API", "60/1m", |v| {
            policy("api", v)
        })?,
        email: parse_or(&s.rate_limit_email, "RATE_LIMIT_EMAIL", "10/1m", |v| {
            policy("email", v)
        })?,
        ai: parse_or(&s.rate_limit_ai, "RATE_LIMIT_AI", "5/1m", |v| {
            policy("ai", v)
        })?,
        on_redis_failure: parse_or(
            &s.rate_limit_on_redis_failure,
            "RATE_LIMIT_ON_REDIS_FAILURE",
            "local",
            |v| match v {
                "local" => Ok(OnRedisFailure::Local),
                "deny" => Ok(OnRedisFailure::Deny),
                _ => Err("expected `local` or `deny`".to_owned()),
            },
        )?,
    })
}

/// `COUNT/PERIOD`, e.g. `60/1m`, `10/30s` or `1000/1h`.
fn policy(name: &'static str, v: &str) -> Result<Policy, String> {
    let expected = || "expected COUNT/PERIOD, such as 60/1m, 10/30s or 1000/1h".to_owned();
    let (count, period) = v.split_once('/').ok_or_else(expected)?;
    let limit = count
        .trim()
        .parse::<u32>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(expected)?;
    let period = humantime::parse_duration(period.trim()).map_err(|_| expected())?;
    if period < Duration::from_secs(1) || period > Duration::from_secs(7 * 86400) {
        return Err("the period must be from 1s to 7 days".to_owned());
    }
    Ok(Policy {
        name,
        limit,
        period,
    })
}

fn smtp_config(s: &Settings) -> Result<Option<SmtpConfig>, ConfigError> {
    let Some(host) = non_empty(&s.smtp_host) else {
        return Ok(None);
    };
    if host.contains(|c: char| c.is_whitespace() || c == '/') {
        return Err(ConfigError::new(
            "SMTP_HOST",
            host,
            "expected a host name or IP address",
        ));
    }
    let port = parse_or(&s.smtp_port, "SMTP_PORT", "587", |v| {
        bounded_u64(v, 1, 65535).map(|n| n as u16)
    })?;
    let tls = match non_empty(&s.smtp_tls).unwrap_or("starttls") {
        "starttls" => SmtpTls::StartTls,
        "tls" => SmtpTls::Tls,
        "none" => SmtpTls::None,
        other => {
            return Err(ConfigError::new(
                "SMTP_TLS",
                other,
                "expected `starttls`, `tls` or `none`",
            ));
        }
    };
    let credentials = match (non_empty(&s.smtp_username), non_empty(&s.smtp_password)) {
        (Some(user), Some(password)) => Some((user.to_owned(), Secret(password.to_owned()))),
        (None, None) => None,
        (Some(_), None) => {
            return Err(ConfigError::secret(
                "SMTP_PASSWORD",
                "required when SMTP_USERNAME is set",
            ));
        }
        (None, Some(_)) => {
            return Err(ConfigError::secret(
                "SMTP_USERNAME",
                "required when SMTP_PASSWORD is set",
            ));
        }
    };
    let from = match non_empty(&s.smtp_from) {
        None => {
            return Err(ConfigError::secret(
                "SMTP_FROM",
                "required when SMTP_HOST is set: the sender address of outgoing email",
            ));
        }
        Some(from) if from.parse::<lettre::message::Mailbox>().is_err() => {
            return Err(ConfigError::new(
                "SMTP_FROM",
                from,
                "expected an email address such as `SecureVault <noreply@example.com>`",
            ));
        }
        Some(from) => Some(from.to_owned()),
    };
    Ok(Some(SmtpConfig {
        host: host.to_owned(),
        port,
        credentials,
        tls,
        ca_file: non_empty(&s.smtp_ca_file).map(std::path::PathBuf::from),
        from,
        timeout: Duration::from_secs(parse_or(
            &s.smtp_timeout_secs,
            "SMTP_TIMEOUT_SECS",
            "30",
            |v| bounded_u64(v, 1, 300),
        )?),
        connections: parse_or(&s.smtp_max_connections, "SMTP_MAX_CONNECTIONS", "32", |v| {
            bounded_u64(v, 1, 256).map(|n| n as u32)
        })?,
        dkim: dkim_config(s)?,
    }))
}

/// Whether the keys sign for SMTP_FROM's domain is known once they are read
/// (`Mailer::new`); here only the values themselves are checked.
fn dkim_config(s: &Settings) -> Result<DkimConfig, ConfigError> {
    let keys_dir = non_empty(&s.dkim_keys_dir).map(std::path::PathBuf::from);
    let default = if keys_dir.is_some() { "false" } else { "true" };
    let allow_unsigned = parse_or(
        &s.dkim_allow_unsigned,
        "DKIM_ALLOW_UNSIGNED",
        default,
        boolean,
    )?;
    if !allow_unsigned && keys_dir.is_none() {
        return Err(ConfigError::new(
            "DKIM_ALLOW_UNSIGNED",
            "false",
            "nothing could sign: set DKIM_KEYS_DIR to a directory of DKIM keys",
        ));
    }
    Ok(DkimConfig {
        keys_dir,
        allow_unsigned,
    })
}

fn webhook_config(s: &Settings) -> Result<Option<WebhookConfig>, ConfigError> {
    let Some(url) = non_empty(&s.webhook_url) else {
        return Ok(None);
    };
    let url = http_url(url).map_err(|reason| ConfigError::secret("WEBHOOK_URL", reason))?;
    let format = match non_empty(&s.webhook_format) {
        Some("standard") => WebhookFormat::Standard,
        Some("slack") => WebhookFormat::Slack,
        // Slack's incoming webhooks take only their own body, so one of
        // their URLs says the format (the seed's .env.prod has no other).
        None if url.host_str() == Some("hooks.slack.com") => WebhookFormat::Slack,
        None => WebhookFormat::Standard,
        Some(other) => {
            return Err(ConfigError::new(
                "WEBHOOK_FORMAT",
                other,
                "expected `standard` or `slack`",
            ));
        }
    };
    let secret = match non_empty(&s.webhook_secret) {
        Some(v) => Some(Secret(
            crate::webhooks::signature::decode_secret(v)
                .map_err(|reason| ConfigError::secret("WEBHOOK_SECRET", reason))?,
        )),
        None if format == WebhookFormat::Standard => {
            return Err(ConfigError::secret(
                "WEBHOOK_SECRET",
                "required when WEBHOOK_URL is set and WEBHOOK_FORMAT is `standard`: \
                 receivers verify the signature with it (`whsec_` + base64 of 32 random bytes)",
            ));
        }
        None => None,
    };
    Ok(Some(WebhookConfig {
        url,
        secret,
        format,
    }))
}

/// The model servers and generation limits: AI_UPSTREAMS with its
/// `AI_UPSTREAM_<NAME>_*` variables, or the one server of OPENAI_BASE_URL
/// and OPENAI_API_KEY.
fn ai_config(s: &Settings) -> Result<OpenAiConfig, ConfigError> {
    let models = ai_models(s)?;
    let timeout = Duration::from_secs(parse_or(
        &s.ai_timeout_secs,
        "AI_TIMEOUT_SECS",
        "30",
        |v| bounded_u64(v, 1, 600),
    )?);
    let upstreams = match non_empty(&s.ai_upstreams) {
        None => {
            if let Some((var, _)) = s.ai_upstream_vars.iter().next() {
                return Err(ConfigError::secret(
                    var.clone(),
                    "AI_UPSTREAMS is not set: list the model servers there, or unset this",
                ));
            }
            vec![UpstreamConfig {
                name: "default".to_owned(),
                base_url: parse_or(
                    &s.openai_base_url,
                    "OPENAI_BASE_URL",
                    "https://api.openai.com/v1",
                    http_url,
                )?,
                api_key: non_empty(&s.openai_api_key).map(|k| Secret(k.to_owned())),
                models: Vec::new(),
                timeout,
            }]
        }
        Some(list) => {
            for (var, set) in [
                ("OPENAI_BASE_URL", &s.openai_base_url),
                ("OPENAI_API_KEY", &s.openai_api_key),
            ] {
                if non_empty(set).is_some() {
                    return Err(ConfigError::secret(
                        var,
                        "cannot be set with AI_UPSTREAMS: give each server's as AI_UPSTREAM_<NAME>_*",
                    ));
                }
            }
            upstreams(list, &s.ai_upstream_vars, &models, timeout)?
        }
    };
    Ok(OpenAiConfig {
        configured: non_empty(&s.openai_base_url).is_some()
            || non_empty(&s.openai_api_key).is_some()
            || non_empty(&s.ai_upstreams).is_some(),
        upstreams,
        cooldown: Duration::from_secs(parse_or(
            &s.ai_cooldown_secs,
            "AI_COOLDOWN_SECS",
            "30",
            |v| bounded_u64(v, 1, 3600),
        )?),
        models,
        timeout,
        max_concurrency: parse_or(&s.ai_max_concurrency, "AI_MAX_CONCURRENCY", "16", |v| {
            bounded_u64(v, 1, 1024).map(|n| n as usize)
        })?,
        budgets: budget_config(s)?,
    })
}

fn budget_config(s: &Settings) -> Result<BudgetConfig, ConfigError> {
    // A trillion tokens: far above any real budget, far below overflowing
    // the counters.
    let tokens = |v: &Option<String>, var: &'static str| match non_empty(v) {
        None => Ok(None),
        Some(raw) => bounded_u64(raw, 1, 1_000_000_000_000)
            .map(Some)
            .map_err(|why| ConfigError::new(var, raw, format!("{why} (tokens)"))),
    };
    Ok(BudgetConfig {
        key_daily: tokens(&s.ai_budget_key_daily_tokens, "AI_BUDGET_KEY_DAILY_TOKENS")?,
        key_monthly: tokens(
            &s.ai_budget_key_monthly_tokens,
            "AI_BUDGET_KEY_MONTHLY_TOKENS",
        )?,
        account_daily: tokens(
            &s.ai_budget_account_daily_tokens,
            "AI_BUDGET_ACCOUNT_DAILY_TOKENS",
        )?,
        account_monthly: tokens(
            &s.ai_budget_account_monthly_tokens,
            "AI_BUDGET_ACCOUNT_MONTHLY_TOKENS",
        )?,
    })
}

/// The servers AI_UPSTREAMS names, from their variables in `vars`; a
/// variable of a server it does not name is refused (a typo would
/// otherwise leave a server without its key).
fn upstreams(
    list: &str,
    vars: &std::collections::BTreeMap<String, String>,
    models: &[String],
    default_timeout: Duration,
) -> Result<Vec<UpstreamConfig>, ConfigError> {
    const FIELDS: [&str; 4] = ["BASE_URL", "API_KEY", "MODELS", "TIMEOUT_SECS"];
    let mut out: Vec<UpstreamConfig> = Vec::new();
    let mut known = std::collections::BTreeSet::new();
    for name in list.split(',').map(str::trim) {
        let valid = !name.is_empty()
            && name.len() <= 32
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !valid || out.iter().any(|u| u.name == name) {
            return Err(ConfigError::new(
                "AI_UPSTREAMS",
                list,
                "expected distinct comma-separated names of lower-case letters, digits and `-`, such as `primary,backup`",
            ));
        }
        let var = |field: &str| {
            format!(
                "{UPSTREAM_PREFIX}{}_{field}",
                name.to_ascii_uppercase().replace('-', "_")
            )
        };
        for field in FIELDS {
            known.insert(var(field));
        }
        let value = |field: &str| {
            vars.get(&var(field))
                .map(String::as_str)
                .map(str::trim)
                .filter(|v| !v.is_empty())
        };
        let base_url_var = var("BASE_URL");
        let base_url = match value("BASE_URL") {
            None => {
                return Err(ConfigError::secret(
                    base_url_var,
                    format!("required: the base URL of the model server `{name}` in AI_UPSTREAMS"),
                ));
            }
            Some(v) => http_url(v).map_err(|e| ConfigError::new(base_url_var, v, e))?,
        };
        let mut served = Vec::new();
        if let Some(list) = value("MODELS") {
            for model in list.split(',').map(str::trim).filter(|m| !m.is_empty()) {
                if !models.iter().any(|m| m == model) {
                    return Err(ConfigError::new(
                        var("MODELS"),
                        list,
                        format!("`{model}` is not a model a request may name: add it to AI_MODELS"),
                    ));
                }
                served.push(model.to_owned());
            }
        }
        let timeout = match value("TIMEOUT_SECS") {
            None => default_timeout,
            Some(v) => Duration::from_secs(
                bounded_u64(v, 1, 600).map_err(|e| ConfigError::new(var("TIMEOUT_SECS"), v, e))?,
            ),
        };
        out.push(UpstreamConfig {
            name: name.to_owned(),
            base_url,
            api_key: value("API_KEY").map(|k| Secret(k.to_owned())),
            models: served,
            timeout,
        });
    }
    if let Some(stray) = vars.keys().find(|k| !known.contains(*k)) {
        return Err(ConfigError::secret(
            stray.clone(),
            format!(
                "names no server of AI_UPSTREAMS ({list}) or no setting of one (expected {})",
                FIELDS
                    .map(|f| format!("{UPSTREAM_PREFIX}<NAME>_{f}"))
                    .join(", ")
            ),
        ));
    }
    for model in models {
        if !out.iter().any(|u| u.serves(model)) {
            return Err(ConfigError::new(
                "AI_UPSTREAMS",
                list,
                format!("no server serves the model `{model}` (OPENAI_MODEL or AI_MODELS)"),
            ));
        }
    }
    Ok(out)
}

/// `OPENAI_MODEL` first (the default), then the other names of `AI_MODELS`.
fn ai_models(s: &Settings) -> Result<Vec<String>, ConfigError> {
    let valid = |name: &str| {
        !name.is_empty()
            && name.len() <= 128
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.:/@".contains(c))
    };
    let default = non_empty(&s.openai_model).unwrap_or("gpt-4o-mini");
    if !valid(default) {
        return Err(ConfigError::new(
            "OPENAI_MODEL",
            default,
            "expected a model name such as `gpt-4o-mini` (letters, digits and -_.:/@)",
        ));
    }
    let mut models = vec![default.to_owned()];
    for name in non_empty(&s.ai_models).unwrap_or_default().split(',') {
        let name = name.trim();
        if name.is_empty() {
            continue;
        }
        if !valid(name) {
            return Err(ConfigError::new(
                "AI_MODELS",
                name,
                "expected comma-separated model names (letters, digits and -_.:/@)",
            ));
        }
        if !models.iter().any(|m| m == name) {
            models.push(name.to_owned());
        }
    }
    Ok(models)
}

/// An unset or blank variable counts as unset, as most deployment tools
/// render optional values as empty strings.
fn non_empty(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

fn parse_or<T>(
    v: &Option<String>,
    var: &'static str,
    default: &str,
    parse: impl Fn(&str) -> Result<T, String>,
) -> Result<T, ConfigError> {
    let raw = non_empty(v).unwrap_or(default);
    parse(raw).map_err(|reason| ConfigError::new(var, raw, reason))
}

fn boolean(v: &str) -> Result<bool, String> {
    match v {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err("expected `true` or `false`".to_owned()),
    }
}

fn bounded_u64(v: &str, min: u64, max: u64) -> Result<u64, String> {
    match v.parse::<u64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(format!("expected a whole number from {min} to {max}")),
    }
}

fn http_url(v: &str) -> Result<Url, String> {
    let url = Url::parse(v).map_err(|e| format!("not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err("expected an http:// or https:// URL".into());
    }
    Ok(url)
}

/// A throwaway development key: 32 random bytes, hex encoded.
fn generate_key() -> Result<String, ConfigError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| {
        ConfigError::secret(
            "SECRET_KEY",
            format!("could not generate a development key: {e}"),
        )
    })?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> Settings {
        Settings::default()
    }

    fn with_upstreams(list: &str, vars: &[(&str, &str)]) -> Settings {
        Settings {
            ai_upstreams: Some(list.into()),
            openai_model: Some("small".into()),
            ai_models: Some("large".into()),
            ai_upstream_vars: vars
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            ..settings()
        }
    }

    #[test]
    fn model_servers_come_in_order_with_their_own_settings() {
        let c = Config::from_settings(&with_upstreams(
            "primary, back-up",
            &[
                ("AI_UPSTREAM_PRIMARY_BASE_URL", "http://gpu-1:8080/v1"),
                ("AI_UPSTREAM_PRIMARY_MODELS", "small"),
                ("AI_UPSTREAM_PRIMARY_TIMEOUT_SECS", "5"),
                ("AI_UPSTREAM_BACK_UP_BASE_URL", "https://api.example.com/v1"),
                ("AI_UPSTREAM_BACK_UP_API_KEY", "sk-backup"),
            ],
        ))
        .unwrap();
        let ai = &c.openai;
        assert!(ai.configured);
        let names: Vec<&str> = ai.upstreams.iter().map(|u| u.name.as_str()).collect();
        assert_eq!(names, ["primary", "back-up"]);
        let (primary, backup) = (&ai.upstreams[0], &ai.upstreams[1]);
        assert!(primary.serves("small") && !primary.serves("large"));
        assert!(backup.serves("small") && backup.serves("large"));
        assert_eq!(primary.timeout, Duration::from_secs(5));
        assert_eq!(backup.timeout, ai.timeout, "AI_TIMEOUT_SECS by default");
        assert_eq!(
            backup
                .api_key
                .as_ref()
                .map(Secret::expose)
                .map(String::as_str),
            Some("sk-backup")
        );
        assert!(primary.api_key.is_none());
        assert_eq!(ai.cooldown, Duration::from_secs(30));

        // Without AI_UPSTREAMS: the one server of OPENAI_BASE_URL, as before.
        let c = Config::from_settings(&Settings {
            openai_base_url: Some("http://llama:8080/v1".into()),
            ..settings()
        })
        .unwrap();
        assert_eq!(c.openai.upstreams.len(), 1);
        assert_eq!(c.openai.upstreams[0].name, "default");
        assert!(c.openai.upstreams[0].serves("anything"));
    }

    #[test]
    fn a_wrong_model_server_setting_is_named() {
        let url = ("AI_UPSTREAM_A_BASE_URL", "http://a/v1");
        for (settings, var, says) in [
            (with_upstreams("a,A", &[url]), "AI_UPSTREAMS", "distinct"),
            (
                with_upstreams("a", &[]),
                "AI_UPSTREAM_A_BASE_URL",
                "required",
            ),
            (
                with_upstreams("a", &[("AI_UPSTREAM_A_BASE_URL", "ftp://a")]),
                "AI_UPSTREAM_A_BASE_URL",
                "http",
            ),
            (
                with_upstreams("a", &[url, ("AI_UPSTREAM_A_MODELS", "small,huge")]),
                "AI_UPSTREAM_A_MODELS",
                "`huge` is not a model",
            ),
            (
                with_upstreams("a", &[url, ("AI_UPSTREAM_A_TIMEOUT_SECS", "0")]),
                "AI_UPSTREAM_A_TIMEOUT_SECS",
                "1 to 600",
            ),
            (
                with_upstreams("a", &[url, ("AI_UPSTREAM_B_API_KEY", "sk-typo")]),
                "AI_UPSTREAM_B_API_KEY",
                "names no server",
            ),
            (
                with_upstreams("a", &[url, ("AI_UPSTREAM_A_MODELS", "small")]),
                "AI_UPSTREAMS",
                "no server serves the model `large`",
            ),
            (
                Settings {
                    openai_api_key: Some("sk-x".into()),
                    ..with_upstreams("a", &[url])
                },
                "OPENAI_API_KEY",
                "cannot be set with AI_UPSTREAMS",
            ),
            (
                Settings {
                    ai_upstream_vars: [(
                        "AI_UPSTREAM_A_BASE_URL".to_owned(),
                        "http://a".to_owned(),
                    )]
                    .into(),
                    ..settings()
                },
                "AI_UPSTREAM_A_BASE_URL",
                "AI_UPSTREAMS is not set",
            ),
        ] {
            let e = Config::from_settings(&settings).unwrap_err();
            assert_eq!(e.var, var, "{e}");
            assert!(e.to_string().contains(says), "{e}");
            assert!(
                !e.to_string().contains("sk-typo") && !e.to_string().contains("sk-x"),
                "{e}"
            );
        }
    }

    #[test]
    fn defaults_need_no_environment() {
        let c = Config::from_settings(&settings()).unwrap();
        assert_eq!(c.mode, Mode::Development);
        assert_eq!(c.listen_addr.to_string(), "127.0.0.1:8080");
        assert_eq!(c.metrics_addr.to_string(), "127.0.0.1:9464");
        assert_eq!(c.database.kind, DatabaseKind::Sqlite);
        assert_eq!(
            c.database.url.expose(),
            "sqlite://./data/securevault.db?mode=rwc"
        );
        assert!(c.secret_key_generated);
        assert_eq!(c.secret_key.expose().len(), 64);
        assert_eq!(c.stats_cache_ttl, Duration::from_secs(60));
        assert_eq!(
            c.connections,
            ConnectionLimits {
                header_read_timeout: Duration::from_secs(10),
                idle_timeout: Duration::from_secs(75),
                max_connections: 1024,
            }
        );
        assert!(c.redis_url.is_none() && c.smtp.is_none());
    }

    #[test]
    fn production_without_secret_key_is_refused() {
        let s = Settings {
            env: Some("production".into()),
            ..settings()
        };
        let err = Config::from_settings(&s).unwrap_err();
        assert_eq!(err.var, "SECRET_KEY");
        assert!(err.to_string().contains("SECUREVAULT_ENV=production"));
    }

    #[test]
    fn the_seed_s_flask_names_are_read_and_answered() {
        let key = Some("k".repeat(MIN_SECRET_KEY_LEN));
        let with = |env: Option<&str>, flask_env: Option<&str>, flask_debug: Option<&str>| {
            Config::from_settings(&Settings {
                env: env.map(Into::into),
                flask_env: flask_env.map(Into::into),
                flask_debug: flask_debug.map(Into::into),
                secret_key: key.clone(),
                ..settings()
            })
        };
        // The seed's pair alone: production, with a word to rename it.
        let c = with(None, Some("production"), Some("0")).unwrap();
        assert_eq!(c.mode, Mode::Production);
        assert_eq!(c.notices.len(), 1);
        assert!(
            c.notices[0].contains("SECUREVAULT_ENV=production"),
            "{:?}",
            c.notices
        );
        // SECUREVAULT_ENV decides; an agreeing FLASK_ENV is harmless.
        assert!(
            with(Some("production"), Some("production"), None)
                .unwrap()
                .notices
                .is_empty()
        );
        assert!(
            with(Some("development"), None, None)
                .unwrap()
                .notices
                .is_empty()
        );
        let e = with(Some("production"), Some("development"), None).unwrap_err();
        assert_eq!(e.var, "FLASK_ENV");
        assert!(e.to_string().contains("SECUREVAULT_ENV=production"), "{e}");
        let e = with(None, Some("staging"), None).unwrap_err();
        assert_eq!(e.var, "FLASK_ENV");
        // FLASK_DEBUG: 0 is fine, 1 is answered, anything else refused.
        let c = with(None, None, Some("1")).unwrap();
        assert!(c.notices[0].contains("LOG_LEVEL=debug"), "{:?}", c.notices);
        let e = with(None, None, Some("yes")).unwrap_err();
        assert_eq!(e.var, "FLASK_DEBUG");
    }

    #[test]
    fn a_slack_url_means_the_slack_format_unless_told_otherwise() {
        let with = |url: &str, format: Option<&str>| {
            Config::from_settings(&Settings {
                webhook_url: Some(url.into()),
                webhook_format: format.map(Into::into),
                ..settings()
            })
        };
        let c = with("https://hooks.slack.com/services/T/B/X", None).unwrap();
        assert_eq!(c.webhook.unwrap().format, WebhookFormat::Slack);
        // Elsewhere the standard format, which needs its signing secret.
        let e = with("https://hooks.example.com/in", None).unwrap_err();
        assert_eq!(e.var, "WEBHOOK_SECRET");
        let e = with("https://hooks.slack.com/services/T/B/X", Some("standard")).unwrap_err();
        assert_eq!(e.var, "WEBHOOK_SECRET");
    }

    #[test]
    fn secret_values_never_appear_in_errors_or_debug() {
        let s = Settings {
            secret_key: Some("short-but-secret".into()),
            ..settings()
        };
        let err = Config::from_settings(&s).unwrap_err();
        assert_eq!(err.var, "SECRET_KEY");
        assert!(!err.to_string().contains("short-but-secret"));

        let s = Settings {
            secret_key: Some("k".repeat(40)),
            database_url: Some("postgres://u:hunter2@db:5432/sv".into()),
            ..settings()
        };
        let c = Config::from_settings(&s).unwrap();
        let debug = format!("{c:?}");
        assert!(!debug.contains("hunter2") && !debug.contains(&"k".repeat(40)));
    }

    #[test]
    fn each_bad_value_names_its_variable() {
        let bucket = || Settings {
            backup_s3_bucket: Some("backups".into()),
            ..settings()
        };
        let cases: Vec<(&str, Settings)> = vec![
            (
                "BACKUP_S3_BUCKET",
                Settings {
                    backup_s3_bucket: Some("My_Backups".into()),
                    ..settings()
                },
            ),
            (
                "BACKUP_S3_ENDPOINT",
                Settings {
                    backup_s3_endpoint: Some("http://s3.local:8333/backups".into()),
                    ..bucket()
                },
            ),
            (
                "BACKUP_S3_ENDPOINT",
                Settings {
                    backup_s3_endpoint: Some("http://s3.local:8333".into()),
                    ..settings()
                },
            ),
            (
                "BACKUP_S3_PREFIX",
                Settings {
                    backup_s3_prefix: Some("team/../other".into()),
                    ..bucket()
                },
            ),
            (
                "BACKUP_S3_SECRET_ACCESS_KEY",
                Settings {
                    backup_s3_access_key_id: Some("id".into()),
                    ..bucket()
                },
            ),
            (
                "BACKUP_DIR",
                Settings {
                    backup_dir: Some("/backups".into()),
                    ..bucket()
                },
            ),
            (
                "BACKUP_INTERVAL_SECS",
                Settings {
                    backup_interval_secs: Some("0".into()),
                    ..bucket()
                },
            ),
            (
                "BACKUP_RETAIN",
                Settings {
                    backup_retain: Some("0".into()),
                    ..bucket()
                },
            ),
            (
                "SECUREVAULT_ENV",
                Settings {
                    env: Some("staging".into()),
                    ..settings()
                },
            ),
            (
                "LISTEN_ADDR",
                Settings {
                    listen_addr: Some("localhost".into()),
                    ..settings()
                },
            ),
            (
                "METRICS_ADDR",
                Settings {
                    metrics_addr: Some("9464".into()),
                    ..settings()
                },
            ),
            (
                "METRICS_ADDR",
                Settings {
                    listen_addr: Some("0.0.0.0:8080".into()),
                    metrics_addr: Some("0.0.0.0:8080".into()),
                    ..settings()
                },
            ),
            (
                "LOG_LEVEL",
                Settings {
                    log_level: Some("loud[".into()),
                    ..settings()
                },
            ),
            (
                "DATABASE_URL",
                Settings {
                    database_url: Some("mysql://x".into()),
                    ..settings()
                },
            ),
            (
                "DATABASE_MAX_CONNECTIONS",
                Settings {
                    database_max_connections: Some("0".into()),
                    ..settings()
                },
            ),
            (
                "REDIS_URL",
                Settings {
                    redis_url: Some("http://cache".into()),
                    ..settings()
                },
            ),
            (
                "OPENAI_BASE_URL",
                Settings {
                    openai_base_url: Some("ftp://x".into()),
                    ..settings()
                },
            ),
            (
                "WEBHOOK_URL",
                Settings {
                    webhook_url: Some("not a url".into()),
                    ..settings()
                },
            ),
            (
                "WEBHOOK_SECRET",
                Settings {
                    webhook_url: Some("https://hooks.example.com/a".into()),
                    ..settings()
                },
            ),
            (
                "WEBHOOK_SECRET",
                Settings {
                    webhook_url: Some("https://hooks.example.com/a".into()),
                    webhook_secret: Some("plain-text".into()),
                    ..settings()
                },
            ),
            (
                "WEBHOOK_FORMAT",
                Settings {
                    webhook_url: Some("https://hooks.example.com/a".into()),
                    webhook_format: Some("teams".into()),
                    ..settings()
                },
            ),
            (
                "SMTP_PORT",
                Settings {
                    smtp_host: Some("mail".into()),
                    smtp_port: Some("70000".into()),
                    ..settings()
                },
            ),
            (
                "SMTP_TLS",
                Settings {
                    smtp_host: Some("mail".into()),
                    smtp_tls: Some("ssl".into()),
                    ..settings()
                },
            ),
            (
                "SMTP_PASSWORD",
                Settings {
                    smtp_host: Some("mail".into()),
                    smtp_username: Some("u".into()),
                    ..settings()
                },
            ),
            (
                "SMTP_FROM",
                Settings {
                    smtp_host: Some("mail".into()),
                    smtp_from: Some("nobody".into()),
                    ..settings()
                },
            ),
            (
                "SMTP_FROM",
                Settings {
                    smtp_host: Some("mail".into()),
                    ..settings()
                },
            ),
            (
                "DKIM_ALLOW_UNSIGNED",
                Settings {
                    smtp_host: Some("mail".into()),
                    smtp_from: Some("a@example.com".into()),
                    dkim_allow_unsigned: Some("yes".into()),
                    ..settings()
                },
            ),
            (
                "SMTP_TIMEOUT_SECS",
                Settings {
                    smtp_host: Some("mail".into()),
                    smtp_from: Some("a@example.com".into()),
                    smtp_timeout_secs: Some("0".into()),
                    ..settings()
                },
            ),
            (
                "SMTP_MAX_CONNECTIONS",
                Settings {
                    smtp_host: Some("mail".into()),
                    smtp_from: Some("a@example.com".into()),
                    smtp_max_connections: Some("0".into()),
                    ..settings()
                },
            ),
            (
                "OPENAI_MODEL",
                Settings {
                    openai_model: Some("gpt 4".into()),
                    ..settings()
                },
            ),
            (
                "AI_MODELS",
                Settings {
                    ai_models: Some("smollm2, bad model".into()),
                    ..settings()
                },
            ),
            (
                "AI_TIMEOUT_SECS",
                Settings {
                    ai_timeout_secs: Some("0".into()),
                    ..settings()
                },
            ),
            (
                "AI_MAX_CONCURRENCY",
                Settings {
                    ai_max_concurrency: Some("many".into()),
                    ..settings()
                },
            ),
            (
                "STATS_CACHE_TTL_SECS",
                Settings {
                    stats_cache_ttl_secs: Some("-1".into()),
                    ..settings()
                },
            ),
            (
                "REQUEST_TIMEOUT_SECS",
                Settings {
                    request_timeout_secs: Some("0".into()),
                    ..settings()
                },
            ),
            (
                "SHUTDOWN_TIMEOUT_SECS",
                Settings {
                    shutdown_timeout_secs: Some("ten".into()),
                    ..settings()
                },
            ),
            (
                "MAX_BODY_BYTES",
                Settings {
                    max_body_bytes: Some("12".into()),
                    ..settings()
                },
            ),
            (
                "HEADER_READ_TIMEOUT_SECS",
                Settings {
                    header_read_timeout_secs: Some("0".into()),
                    ..settings()
                },
            ),
            (
                "IDLE_TIMEOUT_SECS",
                Settings {
                    idle_timeout_secs: Some("3601".into()),
                    ..settings()
                },
            ),
            (
                "MAX_CONNECTIONS",
                Settings {
                    max_connections: Some("none".into()),
                    ..settings()
                },
            ),
        ];
        for (var, s) in cases {
            let err = Config::from_settings(&s).unwrap_err();
            assert_eq!(err.var, var);
            assert!(
                err.to_string().starts_with(&format!("invalid {var}")),
                "{err}"
            );
        }
    }

    #[test]
    fn sqlite_url_keeps_an_explicit_mode_and_postgres_is_detected() {
        let s = Settings {
            database_url: Some("sqlite:///var/lib/sv/db.sqlite?mode=rw".into()),
            ..settings()
        };
        assert_eq!(
            Config::from_settings(&s).unwrap().database.url.expose(),
            "sqlite:///var/lib/sv/db.sqlite?mode=rw"
        );
        let s = Settings {
            database_url: Some("postgresql://sv@127.0.0.1:5432/sv".into()),
            ..settings()
        };
        assert_eq!(
            Config::from_settings(&s).unwrap().database.kind,
            DatabaseKind::Postgres
        );
    }

    #[test]
    fn slack_webhooks_need_no_secret_and_standard_ones_decode_theirs() {
        let slack = Config::from_settings(&Settings {
            webhook_url: Some("https://hooks.slack.com/services/T/B/X".into()),
            webhook_format: Some("slack".into()),
            ..settings()
        })
        .unwrap()
        .webhook
        .unwrap();
        assert_eq!(slack.format, WebhookFormat::Slack);
        assert!(slack.secret.is_none());

        let standard = Config::from_settings(&Settings {
            webhook_url: Some("https://receiver.example.com/hook".into()),
            webhook_secret: Some("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into()),
            ..settings()
        })
        .unwrap()
        .webhook
        .unwrap();
        assert_eq!(standard.format, WebhookFormat::Standard);
        assert_eq!(standard.secret.unwrap().expose().len(), 24);
    }

    #[test]
    fn blank_values_count_as_unset() {
        let s = Settings {
            redis_url: Some("  ".into()),
            smtp_host: Some(String::new()),
            ..settings()
        };
        let c = Config::from_settings(&s).unwrap();
        assert!(c.redis_url.is_none() && c.smtp.is_none());
    }
}
