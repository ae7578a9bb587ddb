//! The email outbox: rows written by the send route, claimed (see [`super::queue`])
//! and updated by the delivery workers.

use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use sqlx::Row;

use super::{
    AuditEntry, Store, StoreError,
    queue::{ClaimSql, claim_sql, int_column},
    stats::unix_millis,
    webhooks::insert_event,
};
use crate::webhooks::NewEvent;

/// The recipients of one email, stored as JSON.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recipients {
    /// `To:` addresses.
    pub to: Vec<String>,
    /// `Cc:` addresses.
    #[serde(default)]
    pub cc: Vec<String>,
    /// Blind copies: delivered to, never written in a header.
    #[serde(default)]
    pub bcc: Vec<String>,
}

/// An email as accepted, ready to be stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEmail {
    /// Who receives it.
    pub recipients: Recipients,
    /// Subject line.
    pub subject: String,
    /// Plain-text body.
    pub text: Option<String>,
    /// HTML body.
    pub html: Option<String>,
    /// `Reply-To:` address.
    pub reply_to: Option<String>,
    /// Extra headers, name -> value (already checked for CR/LF).
    pub headers: std::collections::BTreeMap<String, String>,
    /// The client's `Idempotency-Key`, if any.
    pub idempotency_key: Option<String>,
    /// Digest of the request, to refuse a key reused for another email.
    pub request_hash: String,
}

/// An email as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEmail {
    /// Its id.
    pub id: String,
    /// `queued`, `sending`, `sent` or `failed`.
    pub status: String,
    /// Who receives it.
    pub recipients: Recipients,
    /// Subject line.
    pub subject: String,
    /// Plain-text body.
    pub text: Option<String>,
    /// HTML body.
    pub html: Option<String>,
    /// `Reply-To:` address.
    pub reply_to: Option<String>,
    /// Extra headers.
    pub headers: std::collections::BTreeMap<String, String>,
    /// Delivery attempts so far.
    pub attempts: i64,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    /// Unix milliseconds.
    pub created_at: i64,
    /// Unix milliseconds.
    pub updated_at: i64,
    /// Unix milliseconds, once sent.
    pub sent_at: Option<i64>,
    /// Unix milliseconds of the next attempt, while queued.
    pub next_attempt_at: i64,
    /// The digest of the request that created it.
    pub request_hash: Option<String>,
}

/// The outcome of one delivery attempt, as a queue records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The receiver (the SMTP server, the webhook endpoint) accepted it.
    Delivered,
    /// A temporary failure: try again at `at`.
    Retry {
        /// What went wrong.
        error: String,
        /// When to try again.
        at: SystemTime,
    },
    /// A permanent failure, or too many attempts.
    Failed {
        /// What went wrong.
        error: String,
    },
}

/// What happened to an enqueue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Enqueued {
    /// A new email, stored.
    New(StoredEmail),
    /// The Idempotency-Key was seen before: the first email.
    Existing(StoredEmail),
}

/// The columns every query returns, as a literal so queries stay `&'static str`.
macro_rules! columns {
    () => {
        "id, status, recipients, subject, body_text, body_html, reply_to, headers, attempts, \
         last_error, created_at, updated_at, sent_at, next_attempt_at, request_hash"
    };
}

static CLAIM: ClaimSql = ClaimSql::new(
    || {
        claim_sql(
            "emails",
            "queued",
            "sending",
            columns!(),
            "FOR UPDATE SKIP LOCKED",
        )
    },
    || claim_sql("emails", "queued", "sending", columns!(), ""),
);

impl Store {
    /// Stores `email` as `queued`, or returns the email stored earlier under
    /// the same Idempotency-Key.
    pub async fn enqueue_email(
        &self,
        email: &NewEmail,
        now: SystemTime,
        audit: Option<AuditEntry>,
    ) -> Result<Enqueued, StoreError> {
        if let Some(key) = &email.idempotency_key
            && let Some(existing) = self.email_by_idempotency_key(key).await?
        {
            return Ok(Enqueued::Existing(existing));
        }
        let id = uuid::Uuid::new_v4().to_string();
        let now = unix_millis(now);
        let mut tx = self.writer.begin().await?;
        let result = sqlx::query(
            "INSERT INTO emails (id, status, recipients, subject, body_text, body_html, reply_to, headers, \
             idempotency_key, request_hash, attempts, next_attempt_at, created_at, updated_at) \
             VALUES ($1, 'queued', $2, $3, $4, $5, $6, $7, $8, $9, 0, $10, $10, $10)",
        )
        .bind(&id)
        .bind(to_json(&email.recipients))
        .bind(&email.subject)
        .bind(&email.text)
        .bind(&email.html)
        .bind(&email.reply_to)
        .bind(to_json(&email.headers))
        .bind(&email.idempotency_key)
        .bind(&email.request_hash)
        .bind(now)
        .execute(&mut *tx)
        .await;
        match result {
            Ok(_) => {
                // The audit entry commits with the email: one write, and
                // never an accepted email without its entry.
                if let Some(mut entry) = audit {
                    entry.target = Some(id.clone());
                    super::audit::insert(&entry).execute(&mut *tx).await?;
                }
                tx.commit().await?;
            }
            // Two requests with one key at once: the loser returns the winner's email.
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                drop(tx);
                if let Some(key) = &email.idempotency_key
                    && let Some(existing) = self.email_by_idempotency_key(key).await?
                {
                    return Ok(Enqueued::Existing(existing));
                }
                return Err(StoreError::Database(sqlx::Error::Database(e)));
            }
            Err(e) => return Err(e.into()),
        }
        // Built from what was written rather than read back: a worker may
        // claim the row at once, and the answer describes the email as accepted.
        Ok(Enqueued::New(StoredEmail {
            id,
            status: "queued".to_owned(),
            recipients: email.recipients.clone(),
            subject: email.subject.clone(),
            text: email.text.clone(),
            html: email.html.clone(),
            reply_to: email.reply_to.clone(),
            headers: email.headers.clone(),
            attempts: 0,
            last_error: None,
            created_at: now,
            updated_at: now,
            sent_at: None,
            next_attempt_at: now,
            request_hash: Some(email.request_hash.clone()),
        }))
    }

    /// The email `id`, if it exists.
    pub async fn email(&self, id: &str) -> Result<Option<StoredEmail>, StoreError> {
        let row = sqlx::query(concat!("SELECT ", columns!(), " FROM emails WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| from_row(&r)).transpose()
    }

    async fn email_by_idempotency_key(&self, key: &str) -> Result<Option<StoredEmail>, StoreError> {
        let row = sqlx::query(concat!(
            "SELECT ",
            columns!(),
            " FROM emails WHERE idempotency_key = $1"
        ))
        .bind(key)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| from_row(&r)).transpose()
    }

    /// Claims up to `limit` emails that are due (queued and past their next
    /// attempt time, or claimed by a worker whose lease expired) for
    /// `worker`, until `now + lease`. Each claim counts as an attempt.
    pub async fn claim_emails(
        &self,
        worker: &str,
        limit: i64,
        lease: Duration,
        now: SystemTime,
    ) -> Result<Vec<StoredEmail>, StoreError> {
        let rows = self.claim(&CLAIM, worker, limit, lease, now).await?;
        rows.iter().map(from_row).collect()
    }

    /// Records what became of a claimed email, queues `event` (the webhook
    /// that announces it) in the same transaction, and releases the claim.
    /// Only the worker holding the claim may: `false` means its lease expired
    /// and another worker took the email over (and nothing was written).
    pub async fn finish_email(
        &self,
        id: &str,
        worker: &str,
        outcome: &Outcome,
        event: Option<&NewEvent>,
        now: SystemTime,
    ) -> Result<bool, StoreError> {
        let now_ms = unix_millis(now);
        let (status, error, next_attempt_at, sent_at) = match outcome {
            Outcome::Delivered => ("sent", None, None, Some(now_ms)),
            Outcome::Retry { error, at } => {
                ("queued", Some(error.as_str()), Some(unix_millis(*at)), None)
            }
            Outcome::Failed { error } => ("failed", Some(error.as_str()), None, None),
        };
        let mut tx = self.writer.begin().await?;
        let done = sqlx::query(
            "UPDATE emails SET status = $1, last_error = $2, \
             next_attempt_at = COALESCE($3, next_attempt_at), sent_at = COALESCE($4, sent_at), \
             updated_at = $5, claimed_by = NULL, claim_expires_at = NULL \
             WHERE id = $6 AND claimed_by = $7",
        )
        .bind(status)
        .bind(error)
        .bind(next_attempt_at)
        .bind(sent_at)
        .bind(now_ms)
        .bind(id)
        .bind(worker)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() != 1 {
            tx.rollback().await?;
            return Ok(false);
        }
        if let Some(event) = event {
            insert_event(&mut tx, event, now).await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    /// Emails waiting (queued or being sent) and the creation time of the
    /// oldest, for the outbox metrics.
    pub async fn outbox_depth(&self) -> Result<(i64, Option<i64>), StoreError> {
        let row = sqlx::query(
            "SELECT COUNT(*), MIN(created_at) FROM emails WHERE status IN ('queued', 'sending')",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok((row.try_get(0)?, row.try_get(1)?))
    }
}

fn to_json<T: Serialize>(value: &T) -> String {
    // Vectors and maps of strings always serialise.
    serde_json::to_string(value).unwrap_or_else(|_| "{}".to_owned())
}

fn from_row(row: &sqlx::any::AnyRow) -> Result<StoredEmail, StoreError> {
    let recipients: String = row.try_get("recipients")?;
    let headers: String = row.try_get("headers")?;
    Ok(StoredEmail {
        id: row.try_get("id")?,
        status: row.try_get("status")?,
        recipients: serde_json::from_str(&recipients).unwrap_or_default(),
        subject: row.try_get("subject")?,
        text: row.try_get("body_text")?,
        html: row.try_get("body_html")?,
        reply_to: row.try_get("reply_to")?,
        headers: serde_json::from_str(&headers).unwrap_or_default(),
        attempts: int_column(row, "attempts")?,
        last_error: row.try_get("last_error")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        sent_at: row.try_get("sent_at")?,
        next_attempt_at: row.try_get("next_attempt_at")?,
        request_hash: row.try_get("request_hash")?,
    })
}
