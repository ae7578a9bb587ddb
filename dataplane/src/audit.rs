//! The audit trail: who did what, when, from where, with what outcome, for
//! every security-relevant action (logins and their failures, blocks,
//! logouts, keys and accounts created or revoked, emails sent, generations,
//! configuration changes). Entries never hold secrets or message content.
//!
//! A failed write is logged, not turned into a failed request: the action
//! itself has already happened, and refusing to report it would be worse.

use std::{net::IpAddr, time::SystemTime};

use crate::{
    auth::Principal,
    store::{AuditEntry, Store, unix_millis},
};

/// The outcome of an audited action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// It was done.
    Success,
    /// It was attempted and failed (e.g. a wrong password).
    Failure,
    /// It was refused (e.g. a blocked login).
    Denied,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Failure => "failure",
            Self::Denied => "denied",
        }
    }
}

/// Who acts and from where: filled from the request by the extractor in
/// `extract.rs`, or [`Context::system`] for the process itself.
#[derive(Debug, Clone, Default)]
pub struct Context {
    /// `user:<id>`, `key:<id>`, `anonymous` or `system`.
    pub actor: String,
    /// The user or key name.
    pub actor_name: Option<String>,
    /// The client's address.
    pub ip: Option<IpAddr>,
    /// The request's id.
    pub request_id: Option<String>,
}

impl Context {
    /// The process itself (start-up, configuration).
    pub fn system() -> Self {
        Self {
            actor: "system".into(),
            ..Self::default()
        }
    }

    /// The same request, acting as `principal` (e.g. right after a login).
    pub fn as_principal(&self, principal: &Principal) -> Self {
        Self {
            actor: principal.id.clone(),
            actor_name: Some(principal.name.clone()),
            ..self.clone()
        }
    }

    /// Appends one entry to the trail.
    pub async fn record(
        &self,
        store: &Store,
        action: &str,
        target: Option<&str>,
        outcome: Outcome,
        detail: Option<String>,
    ) {
        let entry = self.entry(action, target, outcome, detail);
        if let Err(error) = store.append_audit(&entry).await {
            tracing::error!(%error, action, "could not write the audit entry");
        }
    }

    /// The entry for an action, for a store operation that writes it in
    /// the same transaction as the action itself.
    pub fn entry(
        &self,
        action: &str,
        target: Option<&str>,
        outcome: Outcome,
        detail: Option<String>,
    ) -> AuditEntry {
        AuditEntry {
            id: uuid::Uuid::now_v7().to_string(),
            at: unix_millis(SystemTime::now()),
            actor: self.actor.clone(),
            actor_name: self.actor_name.clone(),
            action: action.to_owned(),
            target: target.map(str::to_owned),
            outcome: outcome.as_str().to_owned(),
            ip: self.ip.map(|ip| ip.to_string()),
            request_id: self.request_id.clone(),
            detail,
        }
    }
}

/// Appends a `config.change` entry when the settings in force differ from
/// those of the last start, naming the variables that changed. Only
/// non-secret settings are compared (a secret's presence, never its value).
pub async fn record_configuration(store: &Store, config: &crate::config::Config) {
    let settings = settings_snapshot(config);
    let previous = match store.last_audit(CONFIG_CHANGE).await {
        Ok(entry) => entry
            .and_then(|e| e.detail)
            .and_then(|d| serde_json::from_str::<serde_json::Value>(&d).ok())
            .map(|d| d["settings"].clone()),
        Err(error) => {
            tracing::error!(%error, "could not read the last configuration from the audit trail");
            return;
        }
    };
    let changed: Vec<&String> = settings
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(k, v)| {
            previous
                .as_ref()
                .is_none_or(|p| p.get(k.as_str()) != Some(v))
        })
        .map(|(k, _)| k)
        .collect();
    if changed.is_empty() {
        return;
    }
    let detail = serde_json::json!({ "changed": changed, "settings": settings });
    Context::system()
        .record(
            store,
            CONFIG_CHANGE,
            None,
            Outcome::Success,
            Some(detail.to_string()),
        )
        .await;
}

const CONFIG_CHANGE: &str = "config.change";

/// A retention as its setting reads: whole days, or `off`.
fn days(age: Option<std::time::Duration>) -> String {
    age.map_or_else(|| "off".to_owned(), |a| (a.as_secs() / 86_400).to_string())
}

fn settings_snapshot(c: &crate::config::Config) -> serde_json::Value {
    let policy = |p: &crate::ratelimit::Policy| format!("{}/{}s", p.limit, p.period.as_secs());
    let smtp = c.smtp.as_ref();
    serde_json::json!({
        "SECUREVAULT_ENV": c.mode.as_str(),
        "TLS_CERT_FILE": c.tls.as_ref().map(|t| t.cert_file.display().to_string()),
        "DATABASE_URL": c.database.kind.as_str(),
        "REDIS_URL": c.redis_url.is_some(),
        "SMTP_HOST": smtp.map(|s| s.host.clone()),
        "SMTP_PORT": smtp.map(|s| s.port),
        "SMTP_TLS": smtp.map(|s| format!("{:?}", s.tls)),
        "SMTP_FROM": smtp.and_then(|s| s.from.clone()),
        // Name and URL of each model server; never their keys.
        "AI_UPSTREAMS": c.openai.configured.then(|| {
            c.openai
                .upstreams
                .iter()
                .map(|u| format!("{}={}", u.name, u.base_url))
                .collect::<Vec<_>>()
        }),
        "AI_MODELS": c.openai.models,
        "AI_TIMEOUT_SECS": c.openai.timeout.as_secs(),
        "WEBHOOK_FORMAT": c.webhook.as_ref().map(|w| format!("{:?}", w.format)),
        "ADMIN_USERNAME": c.auth.admin_username,
        "SESSION_TTL_SECS": c.auth.session_ttl.as_secs(),
        "SESSION_COOKIE_SECURE": c.auth.cookie_secure,
        "LOGIN_MAX_FAILURES": c.auth.login_max_failures,
        "LOGIN_WINDOW_SECS": c.auth.login_window.as_secs(),
        "LOGIN_BLOCK_SECS": c.auth.login_block.as_secs(),
        "TRUSTED_PROXIES": c.auth.trusted_proxies.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "RATE_LIMIT_API": policy(&c.rate_limits.api),
        "RATE_LIMIT_EMAIL": policy(&c.rate_limits.email),
        "RATE_LIMIT_AI": policy(&c.rate_limits.ai),
        "RATE_LIMIT_ON_REDIS_FAILURE": format!("{:?}", c.rate_limits.on_redis_failure).to_lowercase(),
        "REQUEST_TIMEOUT_SECS": c.request_timeout.as_secs(),
        "MAX_BODY_BYTES": c.max_body_bytes,
        "HEADER_READ_TIMEOUT_SECS": c.connections.header_read_timeout.as_secs(),
        "IDLE_TIMEOUT_SECS": c.connections.idle_timeout.as_secs(),
        "MAX_CONNECTIONS": c.connections.max_connections,
        "DKIM_KEYS_DIR": smtp.and_then(|s| s.dkim.keys_dir.as_ref()).map(|d| d.display().to_string()),
        "DKIM_ALLOW_UNSIGNED": smtp.map(|s| s.dkim.allow_unsigned),
        "RETENTION_EMAILS_DAYS": days(c.retention.emails),
        "RETENTION_GENERATIONS_DAYS": days(c.retention.generations),
        "RETENTION_AUDIT_DAYS": days(c.retention.audit),
    })
}
