//! The suppression list: `GET /api/suppressions` (search, page by page) and
//! `DELETE /api/suppressions/{address}` (lift) for administrators; `POST
//! /api/suppressions` for any caller that may send email, so an application
//! can record an unsubscribe or a complaint where it receives them.

use std::time::SystemTime;

use axum::{
    Json,
    extract::{Path, Query, State},
    http::StatusCode,
};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::{
    app::AppState,
    audit,
    email::{
        suppression::{Reason, bare_address},
        validate::check_mailbox,
    },
    error::{ApiError, ErrorBody},
    extract::ApiJson,
    routes::rfc3339,
    store::{Suppression, unix_millis},
};

const DEFAULT_LIMIT: u32 = 50;
const MAX_LIMIT: u32 = 500;

/// One suppressed address.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SuppressionRecord {
    /// The address, lower case.
    pub address: String,
    /// `bounce`, `complaint`, `unsubscribe` or `manual`.
    pub reason: String,
    /// A bounce's SMTP answer, or the note given with the entry.
    pub detail: Option<String>,
    /// The email that bounced.
    pub email_id: Option<String>,
    /// Since when (RFC 3339).
    pub created_at: String,
    /// Who added it: `user:<id>`, `key:<id>` or `system`.
    pub created_by: String,
}

impl From<Suppression> for SuppressionRecord {
    fn from(s: Suppression) -> Self {
        Self {
            address: s.address,
            reason: s.reason,
            detail: s.detail,
            email_id: s.email_id,
            created_at: rfc3339(s.created_at),
            created_by: s.created_by,
        }
    }
}

/// Search and paging.
#[derive(Debug, Deserialize, IntoParams)]
pub struct SuppressionParams {
    /// Only addresses containing this (case-insensitive).
    pub q: Option<String>,
    /// The `next` cursor of the previous page.
    pub after: Option<String>,
    /// Entries per page, 1 to 500 (default 50).
    pub limit: Option<u32>,
}

/// A page of the list, in address order.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SuppressionPage {
    /// The entries.
    pub entries: Vec<SuppressionRecord>,
    /// Pass as `after` for the next page; absent on the last.
    pub next: Option<String>,
}

/// What a caller suppresses.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewSuppression {
    /// The address.
    pub address: String,
    /// `complaint`, `unsubscribe` or `manual` (bounces are found by the
    /// delivery worker).
    pub reason: String,
    /// A note, up to 500 characters.
    pub detail: Option<String>,
}

/// The suppressed addresses, searched and paginated.
#[utoipa::path(
    get,
    path = "/api/suppressions",
    tag = "email",
    params(SuppressionParams),
    responses(
        (status = 200, description = "A page of entries", body = SuppressionPage),
        (status = 403, description = "Not an administrator", body = ErrorBody),
        (status = 422, description = "`limit` is out of range", body = ErrorBody),
    )
)]
pub async fn list(
    State(state): State<AppState>,
    Query(p): Query<SuppressionParams>,
) -> Result<Json<SuppressionPage>, ApiError> {
    let limit = p.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::Validation {
            field: "limit".into(),
            message: format!("expected 1 to {MAX_LIMIT}"),
        });
    }
    let search = p.q.as_deref().map(str::trim).filter(|q| !q.is_empty());
    let entries = state
        .store
        .suppressions(search, p.after.as_deref(), limit)
        .await?;
    let next = (entries.len() == limit as usize)
        .then(|| entries.last().map(|e| e.address.clone()))
        .flatten();
    Ok(Json(SuppressionPage {
        entries: entries.into_iter().map(Into::into).collect(),
        next,
    }))
}

/// Suppresses an address: no email is sent to it until an administrator
/// lifts it. Answers 201 when added, 200 with the existing entry when the
/// address was already suppressed (its first reason stays).
#[utoipa::path(
    post,
    path = "/api/suppressions",
    tag = "email",
    request_body = NewSuppression,
    responses(
        (status = 201, description = "Added", body = SuppressionRecord),
        (status = 200, description = "Already suppressed", body = SuppressionRecord),
        (status = 422, description = "A field is invalid", body = ErrorBody),
    )
)]
pub async fn add(
    State(state): State<AppState>,
    audit: audit::Context,
    ApiJson(new): ApiJson<NewSuppression>,
) -> Result<(StatusCode, Json<SuppressionRecord>), ApiError> {
    let invalid = |field: &str, message: String| ApiError::Validation {
        field: field.into(),
        message,
    };
    check_mailbox("address", &new.address).map_err(|e| invalid(&e.field, e.message))?;
    let Some(reason) = Reason::from_caller(&new.reason) else {
        return Err(invalid(
            "reason",
            "expected `complaint`, `unsubscribe` or `manual`".into(),
        ));
    };
    if new.detail.as_ref().is_some_and(|d| d.chars().count() > 500) {
        return Err(invalid("detail", "at most 500 characters".into()));
    }
    let entry = Suppression {
        address: bare_address(&new.address).to_lowercase(),
        reason: reason.as_str().to_owned(),
        detail: new.detail,
        email_id: None,
        created_at: unix_millis(SystemTime::now()),
        created_by: audit.actor.clone(),
    };
    let trail = audit.entry(
        "suppression.add",
        Some(&entry.address),
        audit::Outcome::Success,
        Some(reason.as_str().to_owned()),
    );
    if state.store.suppress(&entry, Some(trail)).await? {
        state
            .metrics
            .email_suppressions_total
            .with_label_values(&[reason.as_str()])
            .inc();
        return Ok((StatusCode::CREATED, Json(entry.into())));
    }
    let existing = state
        .store
        .suppressed(&[entry.address.as_str()])
        .await?
        .pop()
        // Lifted between the two statements: what was asked now holds.
        .unwrap_or(entry);
    Ok((StatusCode::OK, Json(existing.into())))
}

/// Lifts a suppression: email to the address is sent again.
#[utoipa::path(
    delete,
    path = "/api/suppressions/{address}",
    tag = "email",
    params(("address" = String, Path, description = "The suppressed address")),
    responses(
        (status = 204, description = "Lifted"),
        (status = 403, description = "Not an administrator", body = ErrorBody),
        (status = 404, description = "The address is not suppressed", body = ErrorBody),
    )
)]
pub async fn lift(
    State(state): State<AppState>,
    audit: audit::Context,
    Path(address): Path<String>,
) -> Result<StatusCode, ApiError> {
    let address = address.trim().to_lowercase();
    let trail = audit.entry(
        "suppression.lift",
        Some(&address),
        audit::Outcome::Success,
        None,
    );
    if state.store.lift_suppression(&address, Some(trail)).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound(format!("{address} is not suppressed")))
    }
}
