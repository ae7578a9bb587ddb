//! The data plane's environment variables, as the operator renders them.
//! The names are the data plane's (see `dataplane --help`); the contract test
//! starts the real binary with what the operator renders.

/// `development` or `production`.
pub const SECUREVAULT_ENV: &str = "SECUREVAULT_ENV";
/// Address the HTTP API listens on.
pub const LISTEN_ADDR: &str = "LISTEN_ADDR";
/// Address the metrics listener listens on.
pub const METRICS_ADDR: &str = "METRICS_ADDR";
/// Log level.
pub const LOG_LEVEL: &str = "LOG_LEVEL";
/// The PEM certificate served over HTTPS.
pub const TLS_CERT_FILE: &str = "TLS_CERT_FILE";
/// Its private key.
pub const TLS_KEY_FILE: &str = "TLS_KEY_FILE";
/// Local state directory.
pub const DATA_DIR: &str = "DATA_DIR";
/// SQL store URL (secret).
pub const DATABASE_URL: &str = "DATABASE_URL";
/// Redis URL (secret).
pub const REDIS_URL: &str = "REDIS_URL";
/// The key emails and prompts are sealed with at rest (secret).
pub const SECRET_KEY: &str = "SECRET_KEY";
/// The key before a rotation: it only opens what it sealed (secret).
pub const SECRET_KEY_PREVIOUS: &str = "SECRET_KEY_PREVIOUS";
/// The first administrator's password.
pub const ADMIN_PASSWORD: &str = "ADMIN_PASSWORD";
/// How long a session lasts.
pub const SESSION_TTL_SECS: &str = "SESSION_TTL_SECS";
/// Proxies whose `X-Forwarded-For` is believed.
pub const TRUSTED_PROXIES: &str = "TRUSTED_PROXIES";
/// Failed logins that block.
pub const LOGIN_MAX_FAILURES: &str = "LOGIN_MAX_FAILURES";
/// The window failed logins are counted in.
pub const LOGIN_WINDOW_SECS: &str = "LOGIN_WINDOW_SECS";
/// How long a block lasts.
pub const LOGIN_BLOCK_SECS: &str = "LOGIN_BLOCK_SECS";
/// The API budget.
pub const RATE_LIMIT_API: &str = "RATE_LIMIT_API";
/// The email budget.
pub const RATE_LIMIT_EMAIL: &str = "RATE_LIMIT_EMAIL";
/// The AI budget.
pub const RATE_LIMIT_AI: &str = "RATE_LIMIT_AI";
/// Rate limiting while Redis is away.
pub const RATE_LIMIT_ON_REDIS_FAILURE: &str = "RATE_LIMIT_ON_REDIS_FAILURE";
/// Model server API key (secret).
pub const OPENAI_API_KEY: &str = "OPENAI_API_KEY";
/// Model server base URL.
pub const OPENAI_BASE_URL: &str = "OPENAI_BASE_URL";
/// Notification URL (secret).
pub const WEBHOOK_URL: &str = "WEBHOOK_URL";
/// Notification signing secret (secret).
pub const WEBHOOK_SECRET: &str = "WEBHOOK_SECRET";
/// Notification body format.
pub const WEBHOOK_FORMAT: &str = "WEBHOOK_FORMAT";
/// SMTP relay host.
pub const SMTP_HOST: &str = "SMTP_HOST";
/// SMTP relay port.
pub const SMTP_PORT: &str = "SMTP_PORT";
/// SMTP transport security.
pub const SMTP_TLS: &str = "SMTP_TLS";
/// Sender address.
pub const SMTP_FROM: &str = "SMTP_FROM";
/// SMTP user name (secret).
pub const SMTP_USERNAME: &str = "SMTP_USERNAME";
/// SMTP password (secret).
pub const SMTP_PASSWORD: &str = "SMTP_PASSWORD";
/// The model a request that names none gets.
pub const OPENAI_MODEL: &str = "OPENAI_MODEL";
/// The other models a request may name, comma-separated.
pub const AI_MODELS: &str = "AI_MODELS";
/// The model servers, in order, when `spec.ai.fallbacks` lists more.
pub const AI_UPSTREAMS: &str = "AI_UPSTREAMS";
/// How the variables of one server of [`AI_UPSTREAMS`] begin:
/// `AI_UPSTREAM_<NAME>_BASE_URL`, `_API_KEY`, `_TIMEOUT_SECS`.
pub const AI_UPSTREAM_PREFIX: &str = "AI_UPSTREAM_";
/// Token budgets per key and account, per UTC day and month.
pub const AI_BUDGET_KEY_DAILY_TOKENS: &str = "AI_BUDGET_KEY_DAILY_TOKENS";
/// See [`AI_BUDGET_KEY_DAILY_TOKENS`].
pub const AI_BUDGET_KEY_MONTHLY_TOKENS: &str = "AI_BUDGET_KEY_MONTHLY_TOKENS";
/// See [`AI_BUDGET_KEY_DAILY_TOKENS`].
pub const AI_BUDGET_ACCOUNT_DAILY_TOKENS: &str = "AI_BUDGET_ACCOUNT_DAILY_TOKENS";
/// See [`AI_BUDGET_KEY_DAILY_TOKENS`].
pub const AI_BUDGET_ACCOUNT_MONTHLY_TOKENS: &str = "AI_BUDGET_ACCOUNT_MONTHLY_TOKENS";
/// PEM certificates the relay's TLS certificate may chain to.
pub const SMTP_CA_FILE: &str = "SMTP_CA_FILE";
/// Directory of DKIM private keys, one file per `<selector>._domainkey.<domain>`.
pub const DKIM_KEYS_DIR: &str = "DKIM_KEYS_DIR";
/// Whether email may go out unsigned when no key is for the sender's domain.
pub const DKIM_ALLOW_UNSIGNED: &str = "DKIM_ALLOW_UNSIGNED";
/// Days finished emails are kept (`off`, the default, keeps them forever).
pub const RETENTION_EMAILS_DAYS: &str = "RETENTION_EMAILS_DAYS";
/// Days generations are kept.
pub const RETENTION_GENERATIONS_DAYS: &str = "RETENTION_GENERATIONS_DAYS";
/// Days audit entries are kept.
pub const RETENTION_AUDIT_DAYS: &str = "RETENTION_AUDIT_DAYS";
