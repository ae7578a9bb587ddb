//! The webhook events queue: written beside what each event reports, claimed
//! (see [`super::queue`]) and updated by the webhook worker.

use std::time::{Duration, SystemTime};

use sqlx::{Any, Row, Transaction};

use super::{
    Outcome, Store, StoreError,
    queue::{ClaimSql, claim_sql, int_column},
    stats::unix_millis,
};
use crate::webhooks::NewEvent;

/// An event as queued.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    /// Its id, sent as `webhook-id` on every attempt (`msg_…`).
    pub id: String,
    /// `email.sent`, `email.failed` or `system.error`.
    pub event_type: String,
    /// The payload's `data`.
    pub data: serde_json::Value,
    /// `pending`, `delivering`, `delivered` or `failed`.
    pub status: String,
    /// Delivery attempts so far.
    pub attempts: i64,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    /// Unix milliseconds.
    pub created_at: i64,
}

/// The columns every query returns, as a literal so queries stay `&'static str`.
macro_rules! columns {
    () => {
        "id, event_type, data, status, attempts, last_error, created_at"
    };
}

static CLAIM: ClaimSql = ClaimSql::new(
    || {
        claim_sql(
            "webhook_events",
            "pending",
            "delivering",
            columns!(),
            "FOR UPDATE SKIP LOCKED",
        )
    },
    || claim_sql("webhook_events", "pending", "delivering", columns!(), ""),
);

const INSERT: &str = "INSERT INTO webhook_events \
     (id, event_type, data, status, attempts, next_attempt_at, created_at, updated_at) \
     VALUES ($1, $2, $3, 'pending', 0, $4, $4, $4)";

/// Queues `event` inside `tx`, so it is written if and only if what it
/// reports is.
pub(super) async fn insert_event(
    tx: &mut Transaction<'static, Any>,
    event: &NewEvent,
    now: SystemTime,
) -> Result<String, StoreError> {
    let id = new_id();
    sqlx::query(INSERT)
        .bind(&id)
        .bind(event.event_type.as_str())
        .bind(event.data.to_string())
        .bind(unix_millis(now))
        .execute(&mut **tx)
        .await?;
    Ok(id)
}

/// Standard Webhooks ids look like `msg_…`; a UUID keeps them unique across
/// replicas.
fn new_id() -> String {
    format!("msg_{}", uuid::Uuid::new_v4().simple())
}

impl Store {
    /// Queues an event that reports nothing else written (`system.error`).
    pub async fn enqueue_event(
        &self,
        event: &NewEvent,
        now: SystemTime,
    ) -> Result<String, StoreError> {
        let id = new_id();
        sqlx::query(INSERT)
            .bind(&id)
            .bind(event.event_type.as_str())
            .bind(event.data.to_string())
            .bind(unix_millis(now))
            .execute(&self.writer)
            .await?;
        Ok(id)
    }

    /// Claims up to `limit` events due for delivery; see [`Store::claim_emails`].
    pub async fn claim_events(
        &self,
        worker: &str,
        limit: i64,
        lease: Duration,
        now: SystemTime,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let rows = self.claim(&CLAIM, worker, limit, lease, now).await?;
        rows.iter().map(from_row).collect()
    }

    /// Records what became of a claimed event; `false` when the claim was
    /// lost to another worker.
    pub async fn finish_event(
        &self,
        id: &str,
        worker: &str,
        outcome: &Outcome,
        now: SystemTime,
    ) -> Result<bool, StoreError> {
        let now = unix_millis(now);
        let (status, error, next_attempt_at, delivered_at) = match outcome {
            Outcome::Delivered => ("delivered", None, None, Some(now)),
            Outcome::Retry { error, at } => (
                "pending",
                Some(error.as_str()),
                Some(unix_millis(*at)),
                None,
            ),
            Outcome::Failed { error } => ("failed", Some(error.as_str()), None, None),
        };
        let done = sqlx::query(
            "UPDATE webhook_events SET status = $1, last_error = $2, \
             next_attempt_at = COALESCE($3, next_attempt_at), \
             delivered_at = COALESCE($4, delivered_at), \
             updated_at = $5, claimed_by = NULL, claim_expires_at = NULL \
             WHERE id = $6 AND claimed_by = $7",
        )
        .bind(status)
        .bind(error)
        .bind(next_attempt_at)
        .bind(delivered_at)
        .bind(now)
        .bind(id)
        .bind(worker)
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Events not yet delivered (pending or being delivered).
    pub async fn webhook_backlog(&self) -> Result<i64, StoreError> {
        let row = sqlx::query(
            "SELECT COUNT(*) FROM webhook_events WHERE status IN ('pending', 'delivering')",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(row.try_get(0)?)
    }

    /// The event `id`, if it exists.
    pub async fn event(&self, id: &str) -> Result<Option<StoredEvent>, StoreError> {
        let row = sqlx::query(concat!(
            "SELECT ",
            columns!(),
            " FROM webhook_events WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| from_row(&r)).transpose()
    }
}

fn from_row(row: &sqlx::any::AnyRow) -> Result<StoredEvent, StoreError> {
    let data: String = row.try_get("data")?;
    Ok(StoredEvent {
        id: row.try_get("id")?,
        event_type: row.try_get("event_type")?,
        data: serde_json::from_str(&data).unwrap_or(serde_json::Value::Null),
        status: row.try_get("status")?,
        attempts: int_column(row, "attempts")?,
        last_error: row.try_get("last_error")?,
        created_at: row.try_get("created_at")?,
    })
}
