//! `GET /api/audit`: the audit trail, newest first, page by page.

use axum::{
    Json,
    extract::{Query, State},
};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::{
    app::AppState,
    error::{ApiError, ErrorBody},
    routes::rfc3339,
    store::{AuditEntry, AuditQuery, unix_millis},
};

/// Entries per page unless `limit` says otherwise, and the most allowed.
const DEFAULT_LIMIT: u32 = 50;
const MAX_LIMIT: u32 = 500;

/// Filters and paging.
#[derive(Debug, Deserialize, IntoParams)]
pub struct AuditParams {
    /// Only this actor (`user:<id>`, `key:<id>`, `anonymous`, `system`).
    pub actor: Option<String>,
    /// Only this action (`login`, `login.block`, `logout`, `api_key.create`,
    /// `api_key.revoke`, `api_key.budget`, `user.create`, `user.budget`, `user.password_change`,
    /// `email.send`, `ai.generate`, `config.change`).
    pub action: Option<String>,
    /// Only entries at or after this time (RFC 3339).
    pub since: Option<String>,
    /// Only entries before this time (RFC 3339).
    pub until: Option<String>,
    /// The `next` cursor of the previous page.
    pub before: Option<String>,
    /// Entries per page, 1 to 500 (default 50).
    pub limit: Option<u32>,
}

/// One entry.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AuditRecord {
    /// Its id.
    pub id: String,
    /// When (RFC 3339).
    pub at: String,
    /// Who.
    pub actor: String,
    /// The user or key name at the time.
    pub actor_name: Option<String>,
    /// What.
    pub action: String,
    /// To what.
    pub target: Option<String>,
    /// `success`, `failure` or `denied`.
    pub outcome: String,
    /// From where.
    pub ip: Option<String>,
    /// The request's `X-Request-Id`.
    pub request_id: Option<String>,
    /// More, free of secrets.
    pub detail: Option<String>,
}

impl From<AuditEntry> for AuditRecord {
    fn from(e: AuditEntry) -> Self {
        Self {
            id: e.id,
            at: rfc3339(e.at),
            actor: e.actor,
            actor_name: e.actor_name,
            action: e.action,
            target: e.target,
            outcome: e.outcome,
            ip: e.ip,
            request_id: e.request_id,
            detail: e.detail,
        }
    }
}

/// A page of the trail.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AuditPage {
    /// Newest first.
    pub entries: Vec<AuditRecord>,
    /// Pass as `before` for the next page; absent on the last.
    pub next: Option<String>,
}

/// The audit trail, filtered and paginated. Read-only: no route changes or
/// deletes an entry.
#[utoipa::path(
    get,
    path = "/api/audit",
    tag = "auth",
    params(AuditParams),
    responses(
        (status = 200, description = "A page of entries", body = AuditPage),
        (status = 403, description = "Not an administrator", body = ErrorBody),
        (status = 422, description = "A filter is invalid", body = ErrorBody),
    )
)]
pub async fn list(
    State(state): State<AppState>,
    Query(p): Query<AuditParams>,
) -> Result<Json<AuditPage>, ApiError> {
    let limit = p.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::Validation {
            field: "limit".into(),
            message: format!("expected 1 to {MAX_LIMIT}"),
        });
    }
    let query = AuditQuery {
        actor: p.actor,
        action: p.action,
        since: time(p.since.as_deref(), "since")?,
        until: time(p.until.as_deref(), "until")?,
        before: p.before,
        limit,
        actor_name: None,
    };
    let entries = state.store.audit(&query).await?;
    let next = (entries.len() == limit as usize)
        .then(|| entries.last().map(|e| e.id.clone()))
        .flatten();
    Ok(Json(AuditPage {
        entries: entries.into_iter().map(AuditRecord::from).collect(),
        next,
    }))
}

fn time(v: Option<&str>, field: &str) -> Result<Option<i64>, ApiError> {
    v.map(|v| {
        humantime::parse_rfc3339_weak(v)
            .map(unix_millis)
            .map_err(|_| ApiError::Validation {
                field: field.into(),
                message: "expected an RFC 3339 time, such as 2026-11-30T12:00:00Z".into(),
            })
    })
    .transpose()
}
