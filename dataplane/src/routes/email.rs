//! `POST /api/send-email`, `GET /api/emails/{id}` and
//! `POST /api/emails/{id}/retry`. An email is read and retried by the
//! principal that sent it and by administrators
//! ([`Principal::may_access`]); to anyone else it does not exist.

use std::time::{Duration, SystemTime};

use axum::{
    Extension, Json,
    extract::{Path, Query, State},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::{
    app::AppState,
    audit,
    auth::Principal,
    email::{
        suppression,
        validate::{SendEmailRequest, validate},
    },
    error::{ApiError, ErrorBody},
    extract::ApiJson,
    routes::rfc3339,
    store::{Enqueued, Recipients, StoredEmail},
};

/// Longest `?wait=` a client may ask for, in seconds.
const MAX_WAIT_SECS: u64 = 30;

/// Options of the send route.
#[derive(Debug, Deserialize, IntoParams)]
pub struct SendOptions {
    /// Wait up to this many seconds (at most 30) for the delivery outcome and
    /// answer 200 with it; without it the answer is 202 as soon as the email
    /// is stored.
    pub wait: Option<u64>,
}

/// An email's delivery state.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct EmailStatus {
    /// The email's id.
    pub id: String,
    /// `queued`, `sending`, `sent` or `failed`.
    pub status: String,
    /// Delivery attempts so far.
    pub attempts: i64,
    /// Why the last attempt failed, if it did.
    pub last_error: Option<String>,
    /// Recipients (to, cc, bcc).
    pub to: Vec<String>,
    /// Subject line.
    pub subject: String,
    /// When it was accepted (RFC 3339).
    pub created_at: String,
    /// When its state last changed (RFC 3339).
    pub updated_at: String,
    /// When the SMTP server accepted it (RFC 3339).
    pub sent_at: Option<String>,
    /// When the next attempt is due, while queued (RFC 3339).
    pub next_attempt_at: Option<String>,
}

impl From<&StoredEmail> for EmailStatus {
    fn from(e: &StoredEmail) -> Self {
        Self {
            id: e.id.clone(),
            status: e.status.clone(),
            attempts: e.attempts,
            last_error: e.last_error.clone(),
            to: e.recipients.to.clone(),
            subject: e.subject.clone(),
            created_at: rfc3339(e.created_at),
            updated_at: rfc3339(e.updated_at),
            sent_at: e.sent_at.map(rfc3339),
            next_attempt_at: (e.status == "queued").then(|| rfc3339(e.next_attempt_at)),
        }
    }
}

/// Accepts an email for delivery. It is stored in the outbox before the
/// answer, so an accepted email survives a crash. With an `Idempotency-Key`
/// header, a retried request returns the first answer instead of sending
/// twice.
#[utoipa::path(
    post,
    path = "/api/send-email",
    tag = "email",
    params(SendOptions, ("Idempotency-Key" = Option<String>, Header, description = "Makes retries safe")),
    request_body = SendEmailRequest,
    responses(
        (status = 202, description = "Stored; delivery follows", body = EmailStatus),
        (status = 200, description = "With ?wait=: the outcome", body = EmailStatus),
        (status = 422, description = "A field is invalid, or a recipient is suppressed (`recipient_suppressed`)", body = ErrorBody),
        (status = 503, description = "SMTP is not configured", body = ErrorBody),
    )
)]
pub async fn send_email(
    State(state): State<AppState>,
    Extension(caller): Extension<Principal>,
    audit: audit::Context,
    Query(options): Query<SendOptions>,
    headers: HeaderMap,
    ApiJson(request): ApiJson<SendEmailRequest>,
) -> Result<Response, ApiError> {
    if state.email_wake.is_none() {
        return Err(ApiError::Unavailable(
            "email sending is not configured (set SMTP_HOST and SMTP_FROM)".into(),
        ));
    }
    let key = match headers.get("idempotency-key") {
        None => None,
        Some(v) => Some(
            v.to_str()
                .map_err(|_| ApiError::Validation {
                    field: "Idempotency-Key".into(),
                    message: "the Idempotency-Key header must be printable ASCII".into(),
                })?
                .to_owned(),
        ),
    };
    let mut email = validate(request, key).map_err(|e| ApiError::Validation {
        field: e.field,
        message: e.message,
    })?;
    // Nothing goes to a suppressed address, and nothing is queued for it.
    refuse_suppressed(&state, &email.recipients).await?;
    // Keys are the caller's own: another caller's key must neither replay
    // that caller's email nor collide with it.
    email.idempotency_key = email
        .idempotency_key
        .map(|key| format!("{}:{key}", caller.id));
    let recipients =
        email.recipients.to.len() + email.recipients.cc.len() + email.recipients.bcc.len();
    let entry = audit.entry(
        "email.send",
        None,
        audit::Outcome::Success,
        Some(format!("{recipients} recipient(s)")),
    );
    let enqueued = state
        .store
        .enqueue_email(&email, SystemTime::now(), Some(entry))
        .await?;
    let (stored, replayed) = match enqueued {
        Enqueued::New(stored) => (stored, false),
        Enqueued::Existing(stored)
            if stored.request_hash.as_deref() == Some(email.request_hash.as_str()) =>
        {
            (stored, true)
        }
        Enqueued::Existing(_) => {
            return Err(ApiError::Validation {
                field: "Idempotency-Key".into(),
                message: "this Idempotency-Key was used for a different email".into(),
            });
        }
    };
    if !replayed && let Some(wake) = &state.email_wake {
        wake.notify_one();
    }
    let (code, stored) = match options.wait {
        Some(wait) if wait > 0 => {
            wait_for_outcome(&state, stored, Duration::from_secs(wait.min(MAX_WAIT_SECS))).await?
        }
        _ => (StatusCode::ACCEPTED, stored),
    };
    let mut response = (code, Json(EmailStatus::from(&stored))).into_response();
    if let Ok(location) = format!("/api/emails/{}", stored.id).parse() {
        response.headers_mut().insert(header::LOCATION, location);
    }
    if replayed {
        response.headers_mut().insert(
            "idempotent-replayed",
            axum::http::HeaderValue::from_static("true"),
        );
    }
    Ok(response)
}

async fn wait_for_outcome(
    state: &AppState,
    mut email: StoredEmail,
    limit: Duration,
) -> Result<(StatusCode, StoredEmail), ApiError> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if matches!(email.status.as_str(), "sent" | "failed") {
            return Ok((StatusCode::OK, email));
        }
        if tokio::time::Instant::now() >= deadline {
            return Ok((StatusCode::ACCEPTED, email));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        if let Some(latest) = state.store.email(&email.id).await? {
            email = latest;
        }
    }
}

/// An email's delivery state.
#[utoipa::path(
    get,
    path = "/api/emails/{id}",
    tag = "email",
    params(("id" = String, Path, description = "The id returned by /api/send-email")),
    responses(
        (status = 200, description = "Its state", body = EmailStatus),
        (status = 404, description = "No such email, or one the caller did not send (only administrators see every email)", body = ErrorBody),
    )
)]
pub async fn get_email(
    State(state): State<AppState>,
    Extension(caller): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Json<EmailStatus>, ApiError> {
    let email = visible_email(&state, &caller, &id).await?;
    Ok(Json(EmailStatus::from(&email)))
}

/// The email `id` if `caller` may see it; otherwise the very answer a
/// missing id gets, so that someone else's id reveals nothing.
async fn visible_email(
    state: &AppState,
    caller: &Principal,
    id: &str,
) -> Result<StoredEmail, ApiError> {
    state
        .store
        .email(id)
        .await?
        .filter(|e| caller.may_access(e.created_by.as_deref()))
        .ok_or_else(|| email_not_found(id))
}

/// 422 `recipient_suppressed` naming the first suppressed recipient.
async fn refuse_suppressed(state: &AppState, recipients: &Recipients) -> Result<(), ApiError> {
    match suppression::first_suppressed(&state.store, recipients).await? {
        None => Ok(()),
        Some((index, entry)) => Err(ApiError::Suppressed {
            field: suppression::field_of(recipients, index),
            message: format!(
                "{} is suppressed ({} on {}): no email is sent to it until an administrator lifts it (DELETE /api/suppressions/{})",
                entry.address,
                entry.reason,
                rfc3339(entry.created_at),
                entry.address
            ),
        }),
    }
}

fn email_not_found(id: &str) -> ApiError {
    ApiError::NotFound(format!("no email with id {id:?}"))
}

/// Queues a failed email again, now, with a fresh retry schedule.
#[utoipa::path(
    post,
    path = "/api/emails/{id}/retry",
    tag = "email",
    params(("id" = String, Path, description = "The email's id")),
    responses(
        (status = 202, description = "Queued again", body = EmailStatus),
        (status = 404, description = "No such email, or one the caller did not send (only administrators see every email)", body = ErrorBody),
        (status = 409, description = "The email has not failed", body = ErrorBody),
        (status = 422, description = "A recipient is suppressed (`recipient_suppressed`)", body = ErrorBody),
    )
)]
pub async fn retry_email(
    State(state): State<AppState>,
    Extension(caller): Extension<Principal>,
    audit: audit::Context,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<EmailStatus>), ApiError> {
    // Authorship never changes, so checking it before the update is as good
    // as checking it in the same statement.
    let email = visible_email(&state, &caller, &id).await?;
    // A retry would fail again at once: say why now.
    refuse_suppressed(&state, &email.recipients).await?;
    let not_found = || email_not_found(&id);
    match state.store.retry_email(&id, SystemTime::now()).await? {
        None => return Err(not_found()),
        Some(false) => {
            return Err(ApiError::Conflict(
                "only a failed email can be retried; this one has not failed".into(),
            ));
        }
        Some(true) => {}
    }
    audit
        .record(
            &state.store,
            "email.retry",
            Some(&id),
            audit::Outcome::Success,
            None,
        )
        .await;
    if let Some(wake) = &state.email_wake {
        wake.notify_one();
    }
    tracing::info!(email_id = %id, "failed email queued again");
    let email = state.store.email(&id).await?.ok_or_else(not_found)?;
    Ok((StatusCode::ACCEPTED, Json(EmailStatus::from(&email))))
}
