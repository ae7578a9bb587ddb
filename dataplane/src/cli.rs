//! The command line: subcommands and every setting, each readable from its
//! environment variable so that `dataplane --help` is the list of settings.
//!
//! Values are kept as strings here on purpose. clap's own type errors name the
//! flag (`--listen-addr`), while most users set the environment variable; so
//! [`crate::config::Config::from_settings`] parses and validates them and names
//! the variable in every error.

use clap::{Args, Parser, Subcommand};

/// SecureVault data plane: transactional email and AI text generation over HTTP.
#[derive(Debug, Parser)]
#[command(name = "dataplane", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    #[command(flatten)]
    pub settings: Settings,
}

/// What the binary does; `serve` when none is given.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Apply pending database migrations, then serve the HTTP API (the default).
    Serve,
    /// Apply pending database migrations and exit. Safe to run more than once.
    Migrate,
    /// Write a consistent snapshot of the store (SQLite: `VACUUM INTO`;
    /// PostgreSQL: one transaction's export) to the backup destination
    /// (BACKUP_S3_BUCKET or BACKUP_DIR), then delete the oldest beyond
    /// `--retain`. Safe while the data plane serves.
    Backup {
        /// Directory of the backups, instead of the configured destination
        /// [default: BACKUP_S3_BUCKET or BACKUP_DIR, else DATA_DIR/backups].
        #[arg(long)]
        output: Option<std::path::PathBuf>,
        /// How many backups to keep there [default: BACKUP_RETAIN].
        #[arg(long)]
        retain: Option<usize>,
    },
    /// Replace every table's rows with those of a backup, in one transaction
    /// (migrating the schema first). Stop the data plane first.
    Restore {
        /// The backup file (`securevault-<time>.sqlite` or `.pgjson`), or,
        /// with a backup destination configured, the name of a backup there
        /// or `latest`.
        source: String,
        /// Restore only into a store that holds no row yet, and succeed
        /// without touching it otherwise: what a pod's init container runs,
        /// so that a restart never rolls a serving store back.
        #[arg(long)]
        if_empty: bool,
    },
    /// Seal every stored email and generation again under SECRET_KEY (those
    /// under SECRET_KEY_PREVIOUS, and those written before encryption), then
    /// forget the keys no value uses. Safe while the data plane serves,
    /// once every replica runs with the new SECRET_KEY.
    Reencrypt,
    /// Ask the data plane serving on LISTEN_ADDR whether it is ready
    /// (`/api/health/ready`; 0.0.0.0 and [::] are asked on loopback) and
    /// exit 0 on a 200, 1 with a one-line reason otherwise: the container
    /// image's HEALTHCHECK, which has no shell or curl to ask with.
    Healthcheck,
}

/// Every setting, from a flag or its environment variable (the flag wins).
#[derive(Debug, Clone, Default, Args)]
pub struct Settings {
    /// `development` (default) or `production`. Production refuses to start
    /// without SECRET_KEY instead of generating a throwaway one.
    #[arg(long, env = "SECUREVAULT_ENV", global = true)]
    pub env: Option<String>,

    /// The seed's (Flask's) name for SECUREVAULT_ENV, read when that is
    /// unset, with a warning to rename it.
    #[arg(long, env = "FLASK_ENV", global = true, hide = true)]
    pub flask_env: Option<String>,

    /// The seed's Flask debug switch, `0` or `1`: SecureVault has no debug
    /// mode, so `1` only earns a warning pointing at LOG_LEVEL.
    #[arg(long, env = "FLASK_DEBUG", global = true, hide = true)]
    pub flask_debug: Option<String>,

    /// Address and port the HTTP API listens on [default: 127.0.0.1:8080].
    #[arg(long, env = "LISTEN_ADDR", global = true)]
    pub listen_addr: Option<String>,

    /// Address and port of the Prometheus metrics listener, `/metrics`:
    /// for the monitoring system, never for the Internet [default:
    /// 127.0.0.1:9464].
    #[arg(long, env = "METRICS_ADDR", global = true)]
    pub metrics_addr: Option<String>,

    /// Log level or tracing filter directive, e.g. `info` or `dataplane=debug,info` [default: info].
    #[arg(long, env = "LOG_LEVEL", global = true)]
    pub log_level: Option<String>,

    /// Directory for the SQLite database and other local state [default: ./data].
    #[arg(long, env = "DATA_DIR", global = true)]
    pub data_dir: Option<String>,

    /// `sqlite://…` or `postgres://…` [default: sqlite://DATA_DIR/securevault.db].
    #[arg(long, env = "DATABASE_URL", global = true, hide_env_values = true)]
    pub database_url: Option<String>,

    /// Largest number of pooled database connections [default: 10].
    #[arg(long, env = "DATABASE_MAX_CONNECTIONS", global = true)]
    pub database_max_connections: Option<String>,

    /// `redis://…` for a cache shared by every replica; an in-process cache when unset.
    #[arg(long, env = "REDIS_URL", global = true, hide_env_values = true)]
    pub redis_url: Option<String>,

    /// Key that seals emails and prompts at rest, at least 32 characters.
    /// Unset in development: one is kept in DATA_DIR/secret-key.
    #[arg(long, env = "SECRET_KEY", global = true, hide_env_values = true)]
    pub secret_key: Option<String>,

    /// The SECRET_KEY before a rotation: it only opens what it sealed,
    /// until `dataplane reencrypt` has sealed everything again.
    #[arg(
        long,
        env = "SECRET_KEY_PREVIOUS",
        global = true,
        hide_env_values = true
    )]
    pub secret_key_previous: Option<String>,

    /// API key of the OpenAI-compatible model server.
    #[arg(long, env = "OPENAI_API_KEY", global = true, hide_env_values = true)]
    pub openai_api_key: Option<String>,

    /// Base URL of the OpenAI-compatible model server [default: https://api.openai.com/v1].
    #[arg(long, env = "OPENAI_BASE_URL", global = true)]
    pub openai_base_url: Option<String>,

    /// The model used when a request names none [default: gpt-4o-mini].
    #[arg(long, env = "OPENAI_MODEL", global = true)]
    pub openai_model: Option<String>,

    /// Further models a request may name, comma-separated (OPENAI_MODEL is
    /// always allowed).
    #[arg(long, env = "AI_MODELS", global = true)]
    pub ai_models: Option<String>,

    /// Seconds one generation may take in all: connecting, retrying and
    /// streaming [default: 30].
    #[arg(long, env = "AI_TIMEOUT_SECS", global = true)]
    pub ai_timeout_secs: Option<String>,

    /// Most requests to the model server in flight; more are answered 503
    /// [default: 16].
    #[arg(long, env = "AI_MAX_CONCURRENCY", global = true)]
    pub ai_max_concurrency: Option<String>,

    /// Several model servers, tried in this order: comma-separated names
    /// (lower-case letters, digits and `-`), instead of OPENAI_BASE_URL and
    /// OPENAI_API_KEY. Each name N has AI_UPSTREAM_N_BASE_URL (required),
    /// AI_UPSTREAM_N_API_KEY, AI_UPSTREAM_N_MODELS (the models it serves,
    /// comma-separated; unset: all) and AI_UPSTREAM_N_TIMEOUT_SECS (one
    /// attempt on it; unset: AI_TIMEOUT_SECS), N in upper case with `_` for `-`.
    #[arg(long, env = "AI_UPSTREAMS", global = true)]
    pub ai_upstreams: Option<String>,

    /// Seconds a model server that failed three times in a row is skipped
    /// (tried only when every other one fails too) before the background
    /// check probes it again [default: 30].
    #[arg(long, env = "AI_COOLDOWN_SECS", global = true)]
    pub ai_cooldown_secs: Option<String>,

    /// Tokens (prompt and completion) each API key may use per UTC day;
    /// unset: no daily budget per key. A request over it answers 429
    /// `token_budget_exceeded`.
    #[arg(long, env = "AI_BUDGET_KEY_DAILY_TOKENS", global = true)]
    pub ai_budget_key_daily_tokens: Option<String>,

    /// Tokens each API key may use per UTC month; unset: none.
    #[arg(long, env = "AI_BUDGET_KEY_MONTHLY_TOKENS", global = true)]
    pub ai_budget_key_monthly_tokens: Option<String>,

    /// Tokens each account (its sessions and all its keys together) may use
    /// per UTC day; unset: none.
    #[arg(long, env = "AI_BUDGET_ACCOUNT_DAILY_TOKENS", global = true)]
    pub ai_budget_account_daily_tokens: Option<String>,

    /// Tokens each account may use per UTC month; unset: none.
    #[arg(long, env = "AI_BUDGET_ACCOUNT_MONTHLY_TOKENS", global = true)]
    pub ai_budget_account_monthly_tokens: Option<String>,

    /// The `AI_UPSTREAM_<NAME>_*` variables of the environment, which
    /// AI_UPSTREAMS names and so no fixed flag can list.
    #[arg(skip)]
    pub ai_upstream_vars: std::collections::BTreeMap<String, String>,

    /// URL that receives notifications (email sent or failed, system errors).
    #[arg(long, env = "WEBHOOK_URL", global = true, hide_env_values = true)]
    pub webhook_url: Option<String>,

    /// Standard Webhooks signing secret, `whsec_` followed by base64 of 24 to 64
    /// random bytes; required unless WEBHOOK_FORMAT is `slack`.
    #[arg(long, env = "WEBHOOK_SECRET", global = true, hide_env_values = true)]
    pub webhook_secret: Option<String>,

    /// Notification body: `standard` (Standard Webhooks JSON) or `slack` (a
    /// Slack incoming-webhook message) [default: `slack` for a URL on
    /// hooks.slack.com, else `standard`].
    #[arg(long, env = "WEBHOOK_FORMAT", global = true)]
    pub webhook_format: Option<String>,

    /// SMTP server host name; email sending is disabled when unset.
    #[arg(long, env = "SMTP_HOST", global = true)]
    pub smtp_host: Option<String>,

    /// SMTP server port [default: 587].
    #[arg(long, env = "SMTP_PORT", global = true)]
    pub smtp_port: Option<String>,

    /// SMTP user name, when the server requires authentication.
    #[arg(long, env = "SMTP_USERNAME", global = true)]
    pub smtp_username: Option<String>,

    /// SMTP password, when the server requires authentication.
    #[arg(long, env = "SMTP_PASSWORD", global = true, hide_env_values = true)]
    pub smtp_password: Option<String>,

    /// SMTP transport security: `starttls` (default), `tls` or `none`.
    #[arg(long, env = "SMTP_TLS", global = true)]
    pub smtp_tls: Option<String>,

    /// Sender address of outgoing email, e.g. `SecureVault <noreply@example.com>`.
    #[arg(long, env = "SMTP_FROM", global = true)]
    pub smtp_from: Option<String>,

    /// Days finished emails (sent or failed) are kept, 1-36500, or `off`
    /// [default: `off`, kept forever]. Queued emails are never deleted.
    #[arg(long, env = "RETENTION_EMAILS_DAYS", global = true)]
    pub retention_emails_days: Option<String>,

    /// Days AI generations are kept, 1-36500, or `off` [default: `off`].
    #[arg(long, env = "RETENTION_GENERATIONS_DAYS", global = true)]
    pub retention_generations_days: Option<String>,

    /// Days audit entries are kept, 1-36500, or `off` [default: `off`].
    #[arg(long, env = "RETENTION_AUDIT_DAYS", global = true)]
    pub retention_audit_days: Option<String>,

    /// Seconds between two retention runs [default: 3600].
    #[arg(long, env = "RETENTION_INTERVAL_SECS", global = true)]
    pub retention_interval_secs: Option<String>,

    /// Directory of DKIM private keys (PEM, RSA 2048-4096 bits or Ed25519),
    /// each file named `<selector>._domainkey.<domain>`: every key of
    /// SMTP_FROM's domain signs each message. Unset: messages go unsigned.
    #[arg(long, env = "DKIM_KEYS_DIR", global = true)]
    pub dkim_keys_dir: Option<String>,

    /// Whether a message may leave unsigned because DKIM_KEYS_DIR has no key
    /// for SMTP_FROM's domain [default: `false` when DKIM_KEYS_DIR is set,
    /// `true` when not]. `false` with no such key stops the start.
    #[arg(long, env = "DKIM_ALLOW_UNSIGNED", global = true)]
    pub dkim_allow_unsigned: Option<String>,

    /// PEM certificates the SMTP relay's TLS certificate may chain to, besides
    /// the public roots: a relay with a private CA.
    #[arg(long, env = "SMTP_CA_FILE", global = true)]
    pub smtp_ca_file: Option<String>,

    /// Seconds one SMTP exchange may take before it counts as a temporary
    /// failure [default: 30]. A claimed email is taken over by another worker
    /// after twice this.
    #[arg(long, env = "SMTP_TIMEOUT_SECS", global = true)]
    pub smtp_timeout_secs: Option<String>,

    /// Most SMTP connections open at once, which is how many emails are sent
    /// concurrently [default: 32].
    #[arg(long, env = "SMTP_MAX_CONNECTIONS", global = true)]
    pub smtp_max_connections: Option<String>,

    /// Seconds `/api/stats` answers from the cache before counting again [default: 60].
    #[arg(long, env = "STATS_CACHE_TTL_SECS", global = true)]
    pub stats_cache_ttl_secs: Option<String>,

    /// PEM certificate chain to serve HTTPS with (a mounted TLS Secret's
    /// `tls.crt`); with TLS_KEY_FILE. Unset: plain HTTP.
    #[arg(long, env = "TLS_CERT_FILE", global = true)]
    pub tls_cert_file: Option<String>,

    /// PEM private key of TLS_CERT_FILE (`tls.key`).
    #[arg(long, env = "TLS_KEY_FILE", global = true)]
    pub tls_key_file: Option<String>,

    /// Seconds between reads of the certificate files; a renewed certificate
    /// is served from the next connection on, without a restart [default: 10].
    #[arg(long, env = "TLS_RELOAD_SECS", global = true)]
    pub tls_reload_secs: Option<String>,

    /// Seconds a request may take before it is answered 503 [default: 30].
    #[arg(long, env = "REQUEST_TIMEOUT_SECS", global = true)]
    pub request_timeout_secs: Option<String>,

    /// Seconds requests in flight get to finish after SIGTERM [default: 25].
    #[arg(long, env = "SHUTDOWN_TIMEOUT_SECS", global = true)]
    pub shutdown_timeout_secs: Option<String>,

    /// Largest request body in bytes [default: 1048576].
    #[arg(long, env = "MAX_BODY_BYTES", global = true)]
    pub max_body_bytes: Option<String>,

    /// Seconds a client gets to finish its TLS handshake, and then to send
    /// a request's headers, once it started (a new connection: from its
    /// opening); after that it is closed [default: 10].
    #[arg(long, env = "HEADER_READ_TIMEOUT_SECS", global = true)]
    pub header_read_timeout_secs: Option<String>,

    /// Seconds a connection may stay open with no request in flight (HTTP/1.1
    /// keep-alive and HTTP/2); a request in flight is never cut by it
    /// [default: 75].
    #[arg(long, env = "IDLE_TIMEOUT_SECS", global = true)]
    pub idle_timeout_secs: Option<String>,

    /// Most client connections open at once; beyond it the server stops
    /// accepting until one closes [default: 1024].
    #[arg(long, env = "MAX_CONNECTIONS", global = true)]
    pub max_connections: Option<String>,

    /// Name of the first administrator [default: admin].
    #[arg(long, env = "ADMIN_USERNAME", global = true)]
    pub admin_username: Option<String>,

    /// Password of the first administrator (from a Secret); set on every
    /// start, so rotating the Secret rotates the password.
    #[arg(long, env = "ADMIN_PASSWORD", global = true, hide_env_values = true)]
    pub admin_password: Option<String>,

    /// Seconds a session lasts after login [default: 3600].
    #[arg(long, env = "SESSION_TTL_SECS", global = true)]
    pub session_ttl_secs: Option<String>,

    /// Whether the session cookie is marked `Secure` (HTTPS only) [default: true].
    #[arg(long, env = "SESSION_COOKIE_SECURE", global = true)]
    pub session_cookie_secure: Option<String>,

    /// Failed logins from one IP (or for one account) that trigger a block [default: 5].
    #[arg(long, env = "LOGIN_MAX_FAILURES", global = true)]
    pub login_max_failures: Option<String>,

    /// Seconds over which failed logins are counted [default: 300].
    #[arg(long, env = "LOGIN_WINDOW_SECS", global = true)]
    pub login_window_secs: Option<String>,

    /// Seconds a block lasts [default: 300].
    #[arg(long, env = "LOGIN_BLOCK_SECS", global = true)]
    pub login_block_secs: Option<String>,

    /// Comma-separated IPs or CIDR ranges of reverse proxies whose
    /// X-Forwarded-For is believed [default: none].
    #[arg(long, env = "TRUSTED_PROXIES", global = true)]
    pub trusted_proxies: Option<String>,

    /// Requests per principal to any API route, as COUNT/PERIOD (period 1s
    /// to 7d) [default: 60/1m].
    #[arg(long, env = "RATE_LIMIT_API", global = true)]
    pub rate_limit_api: Option<String>,

    /// Emails per principal, as COUNT/PERIOD [default: 10/1m].
    #[arg(long, env = "RATE_LIMIT_EMAIL", global = true)]
    pub rate_limit_email: Option<String>,

    /// Generations per principal, as COUNT/PERIOD [default: 5/1m].
    #[arg(long, env = "RATE_LIMIT_AI", global = true)]
    pub rate_limit_ai: Option<String>,

    /// While Redis does not answer: `local` (per-process limits) or `deny`
    /// (503) [default: local].
    #[arg(long, env = "RATE_LIMIT_ON_REDIS_FAILURE", global = true)]
    pub rate_limit_on_redis_failure: Option<String>,

    /// An S3-compatible bucket that backups go to; with it (or BACKUP_DIR)
    /// `serve` backs the store up every BACKUP_INTERVAL_SECS [default: none].
    #[arg(long, env = "BACKUP_S3_BUCKET", global = true)]
    pub backup_s3_bucket: Option<String>,

    /// The bucket's S3 endpoint, `http(s)://HOST[:PORT]` [default: AWS S3
    /// of BACKUP_S3_REGION].
    #[arg(long, env = "BACKUP_S3_ENDPOINT", global = true)]
    pub backup_s3_endpoint: Option<String>,

    /// Region the bucket is in [default: us-east-1].
    #[arg(long, env = "BACKUP_S3_REGION", global = true)]
    pub backup_s3_region: Option<String>,

    /// Folder of the backups in the bucket, such as `team-a/mail/` [default:
    /// the bucket's top].
    #[arg(long, env = "BACKUP_S3_PREFIX", global = true)]
    pub backup_s3_prefix: Option<String>,

    /// Access key id for the bucket.
    #[arg(
        long,
        env = "BACKUP_S3_ACCESS_KEY_ID",
        global = true,
        hide_env_values = true
    )]
    pub backup_s3_access_key_id: Option<String>,

    /// Secret access key for the bucket.
    #[arg(
        long,
        env = "BACKUP_S3_SECRET_ACCESS_KEY",
        global = true,
        hide_env_values = true
    )]
    pub backup_s3_secret_access_key: Option<String>,

    /// A directory that backups go to when no bucket is set (a second
    /// volume: a copy on the store's own disk survives little) [default:
    /// none].
    #[arg(long, env = "BACKUP_DIR", global = true)]
    pub backup_dir: Option<String>,

    /// Seconds between two scheduled backups, counted from the last one in
    /// the destination, so a restart neither skips nor repeats one
    /// [default: 3600].
    #[arg(long, env = "BACKUP_INTERVAL_SECS", global = true)]
    pub backup_interval_secs: Option<String>,

    /// Backups kept in the destination; older ones are deleted [default: 24].
    #[arg(long, env = "BACKUP_RETAIN", global = true)]
    pub backup_retain: Option<String>,
}
