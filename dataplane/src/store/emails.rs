//! The email outbox: rows written by the send route, claimed (see [`super::queue`])
//! and updated by the delivery workers.

use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use sqlx::Row;

use super::{
    AuditEntry, Store, StoreError,
    group_commit::{Accepted, AnyQuery, Record},
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
    /// Who sent it (`user:<id>` or `key:<id>`); `None` for older emails.
    pub created_by: Option<String>,
    /// Every delivery attempt, oldest first (at most [`ATTEMPT_LOG_LEN`]).
    pub attempt_log: Vec<Attempt>,
}

/// The longest attempt log kept per email: the newest attempts win.
pub const ATTEMPT_LOG_LEN: usize = 20;

/// One delivery attempt, as the console shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    /// When it ended (Unix ms).
    pub at: i64,
    /// `sent`, `retry` or `failed`.
    pub outcome: String,
    /// What the SMTP server answered (or why there was no answer).
    pub answer: String,
    /// How long the SMTP exchange took.
    pub duration_ms: u64,
}

/// Which emails to list, newest first.
#[derive(Debug, Clone, Default)]
pub struct EmailQuery {
    /// Only this status.
    pub status: Option<String>,
    /// Only emails to this address (To, Cc or Bcc), ignoring case. Sealed
    /// recipients are found by their blind index, so by the whole address;
    /// emails written before encryption (until `dataplane reencrypt`) also
    /// by part of one.
    pub recipient: Option<String>,
    /// Only emails sent by this principal.
    pub created_by: Option<String>,
    /// Only emails created at or after this time (Unix ms).
    pub since: Option<i64>,
    /// Only emails created before this time (Unix ms).
    pub until: Option<i64>,
    /// Only emails older than this one (the previous page's last row).
    pub before: Option<Cursor>,
    /// At most this many.
    pub limit: u32,
}

/// A position in the newest-first list: `(created_at, id)` of a row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    /// The row's creation time (Unix ms).
    pub created_at: i64,
    /// The row's id (ties within one millisecond).
    pub id: String,
}

impl Cursor {
    /// `created_at.id`, as pages put it in links.
    pub fn encode(&self) -> String {
        format!("{}.{}", self.created_at, self.id)
    }

    /// The cursor of [`Cursor::encode`]'s text; `None` if it is not one.
    pub fn decode(text: &str) -> Option<Self> {
        let (at, id) = text.split_once('.')?;
        Some(Self {
            created_at: at.parse().ok()?,
            id: id.to_owned(),
        })
    }
}

/// Emails sent and failed, and generations, per hour.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HourlySeries {
    /// The first hour's start (Unix ms, a multiple of an hour).
    pub start: i64,
    /// Emails sent, by the hour they were sent.
    pub sent: Vec<i64>,
    /// Emails failed for good, by the hour they failed.
    pub failed: Vec<i64>,
    /// Generations that succeeded, by the hour they finished.
    pub generated: Vec<i64>,
    /// Generations that failed.
    pub generation_failures: Vec<i64>,
}

/// An accepted email's row, sealed, ready to insert.
pub(super) struct EmailRow {
    pub(super) id: String,
    pub(super) sealed: SealedEmail,
    pub(super) idempotency_key: Option<String>,
    pub(super) request_hash: String,
    /// Accepted at, Unix milliseconds.
    pub(super) now: i64,
    pub(super) created_by: Option<String>,
}

impl super::group_commit::Insert for EmailRow {
    const INTO: &'static str = "emails (id, status, recipients, subject, body_text, body_html, \
         reply_to, headers, idempotency_key, request_hash, attempts, next_attempt_at, created_at, \
         updated_at, created_by, recipient_index)";

    /// Queued, and due at once.
    fn bind<'q>(&'q self, q: AnyQuery<'q>) -> AnyQuery<'q> {
        q.bind(&self.id)
            .bind("queued")
            .bind(&self.sealed.recipients)
            .bind(&self.sealed.subject)
            .bind(&self.sealed.text)
            .bind(&self.sealed.html)
            .bind(&self.sealed.reply_to)
            .bind(&self.sealed.headers)
            .bind(&self.idempotency_key)
            .bind(&self.request_hash)
            .bind(0_i32)
            .bind(self.now)
            .bind(self.now)
            .bind(self.now)
            // The audit entry names who sent it; it is the author too.
            .bind(&self.created_by)
            .bind(&self.sealed.recipient_index)
    }
}

/// One claimed email's outcome, for [`Store::finish_emails`].
#[derive(Debug)]
pub struct Finish<'a> {
    /// The email.
    pub id: &'a str,
    /// What became of it.
    pub outcome: &'a Outcome,
    /// Its attempts, this one included (the store keeps the last few).
    pub attempt_log: &'a [Attempt],
    /// The webhook event that announces it, queued in the same transaction.
    pub event: Option<&'a NewEvent>,
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
         last_error, created_at, updated_at, sent_at, next_attempt_at, request_hash, created_by, \
         attempt_log"
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
        let created_by = audit.as_ref().map(|a| a.actor.clone());
        let sealed = self.seal_email(
            &id,
            &EmailFields {
                recipients: email.recipients.clone(),
                subject: email.subject.clone(),
                text: email.text.clone(),
                html: email.html.clone(),
                reply_to: email.reply_to.clone(),
                headers: email.headers.clone(),
            },
        )?;
        let mut audit = audit;
        if let Some(entry) = &mut audit {
            entry.target = Some(id.clone());
        }
        let accepted = Accepted {
            row: Record::Email(EmailRow {
                id: id.clone(),
                sealed,
                idempotency_key: email.idempotency_key.clone(),
                request_hash: email.request_hash.clone(),
                now,
                created_by: created_by.clone(),
            }),
            // The audit entry commits with the email: never an accepted
            // email without its entry.
            audit,
        };
        match self.accepted.write(accepted).await {
            Ok(()) => {}
            // Two requests with one key at once: the loser returns the winner's email.
            Err(StoreError::Database(sqlx::Error::Database(e))) if e.is_unique_violation() => {
                if let Some(key) = &email.idempotency_key
                    && let Some(existing) = self.email_by_idempotency_key(key).await?
                {
                    return Ok(Enqueued::Existing(existing));
                }
                return Err(StoreError::Database(sqlx::Error::Database(e)));
            }
            Err(e) => return Err(e),
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
            created_by,
            attempt_log: Vec::new(),
        }))
    }

    /// The email `id`, if it exists.
    pub async fn email(&self, id: &str) -> Result<Option<StoredEmail>, StoreError> {
        let row = sqlx::query(concat!("SELECT ", columns!(), " FROM emails WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| self.email_from_row(&r)).transpose()
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
        row.map(|r| self.email_from_row(&r)).transpose()
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
        rows.iter().map(|r| self.email_from_row(r)).collect()
    }

    /// Makes every queued email that waits for a retry due at `now`, and
    /// returns how many: the relay that failed them is back, and waiting
    /// out each one's backoff (up to five minutes) would only delay mail.
    /// Claimed emails are left to their worker.
    pub async fn retry_queued_now(&self, now: SystemTime) -> Result<u64, StoreError> {
        let now = unix_millis(now);
        let done = sqlx::query(
            "UPDATE emails SET next_attempt_at = $1 \
             WHERE status = 'queued' AND next_attempt_at > $1 AND claimed_by IS NULL",
        )
        .bind(now)
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected())
    }

    /// Records the outcomes of emails `worker` claimed, in one transaction:
    /// a batch costs SQLite's single writer one commit, not one per email.
    /// Returns, per finish, whether the claim was still `worker`'s; a lost
    /// claim (the lease expired and another worker took the email over)
    /// writes nothing for that email.
    pub async fn finish_emails(
        &self,
        worker: &str,
        finishes: &[Finish<'_>],
        now: SystemTime,
    ) -> Result<Vec<bool>, StoreError> {
        let now_ms = unix_millis(now);
        let mut tx = self.writer.begin().await?;
        let mut recorded = Vec::with_capacity(finishes.len());
        for finish in finishes {
            let log = finish.attempt_log;
            let keep_from = log.len().saturating_sub(ATTEMPT_LOG_LEN);
            let (status, error, next_attempt_at, sent_at) = match finish.outcome {
                Outcome::Delivered => ("sent", None, None, Some(now_ms)),
                Outcome::Retry { error, at } => {
                    ("queued", Some(error.as_str()), Some(unix_millis(*at)), None)
                }
                Outcome::Failed { error } => ("failed", Some(error.as_str()), None, None),
            };
            let done = sqlx::query(
                "UPDATE emails SET status = $1, last_error = $2, \
                 next_attempt_at = COALESCE($3, next_attempt_at), sent_at = COALESCE($4, sent_at), \
                 updated_at = $5, claimed_by = NULL, claim_expires_at = NULL, attempt_log = $8 \
                 WHERE id = $6 AND claimed_by = $7",
            )
            .bind(status)
            .bind(error)
            .bind(next_attempt_at)
            .bind(sent_at)
            .bind(now_ms)
            .bind(finish.id)
            .bind(worker)
            .bind(to_json(&log[keep_from..]))
            .execute(&mut *tx)
            .await?;
            let ours = done.rows_affected() == 1;
            if ours && let Some(event) = finish.event {
                insert_event(&mut tx, event, now).await?;
            }
            recorded.push(ours);
        }
        tx.commit().await?;
        Ok(recorded)
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

    /// The emails `q` selects, newest first.
    pub async fn emails(&self, q: &EmailQuery) -> Result<Vec<StoredEmail>, StoreError> {
        // As in `audit`: every filter is bound, and NULL switches it off.
        let recipient = q.recipient.as_deref().map(|r| {
            let escaped = r
                .to_lowercase()
                .replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_");
            format!("%{escaped}%")
        });
        // Its blind index under each key (both during a rotation).
        let indexes = q.recipient.as_deref().map(|r| self.keys.indexes(r));
        let index = |i: usize| {
            indexes.as_ref().map(|all| {
                format!(
                    "%{}%",
                    all.get(i).or(all.first()).map_or("", |s| s.as_str())
                )
            })
        };
        let (cursor_at, cursor_id) = match &q.before {
            Some(c) => (Some(c.created_at), Some(c.id.clone())),
            None => (None, None),
        };
        let rows = sqlx::query(concat!(
            "SELECT ",
            columns!(),
            " FROM emails \
             WHERE (CAST($1 AS TEXT) IS NULL OR status = CAST($1 AS TEXT)) \
               AND (CAST($2 AS TEXT) IS NULL OR LOWER(recipients) LIKE CAST($2 AS TEXT) ESCAPE '\\' \
                    OR recipient_index LIKE CAST($9 AS TEXT) OR recipient_index LIKE CAST($10 AS TEXT)) \
               AND (CAST($3 AS TEXT) IS NULL OR created_by = CAST($3 AS TEXT)) \
               AND (CAST($4 AS BIGINT) IS NULL OR created_at >= CAST($4 AS BIGINT)) \
               AND (CAST($5 AS BIGINT) IS NULL OR created_at < CAST($5 AS BIGINT)) \
               AND (CAST($6 AS BIGINT) IS NULL OR created_at < CAST($6 AS BIGINT) \
                    OR (created_at = CAST($6 AS BIGINT) AND id < CAST($7 AS TEXT))) \
             ORDER BY created_at DESC, id DESC LIMIT $8"
        ))
        .bind(&q.status)
        .bind(recipient)
        .bind(&q.created_by)
        .bind(q.since)
        .bind(q.until)
        .bind(cursor_at)
        .bind(cursor_id)
        .bind(i64::from(q.limit))
        .bind(index(0))
        .bind(index(1))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| self.email_from_row(r)).collect()
    }

    /// Queues a failed email again, now, with a fresh retry schedule (its
    /// attempt log keeps the earlier attempts). `None` when there is no such
    /// email; `Some(false)` when it is not `failed`.
    pub async fn retry_email(&self, id: &str, now: SystemTime) -> Result<Option<bool>, StoreError> {
        let now = unix_millis(now);
        let done = sqlx::query(
            "UPDATE emails SET status = 'queued', attempts = 0, next_attempt_at = $1, \
             updated_at = $1 WHERE id = $2 AND status = 'failed'",
        )
        .bind(now)
        .bind(id)
        .execute(&self.writer)
        .await?;
        if done.rows_affected() == 1 {
            return Ok(Some(true));
        }
        Ok(self.email(id).await?.map(|_| false))
    }

    /// Emails sent and failed, and generations, for each of the `hours`
    /// hours up to the one holding `now`.
    pub async fn hourly_series(
        &self,
        hours: usize,
        now: SystemTime,
    ) -> Result<HourlySeries, StoreError> {
        const HOUR_MS: i64 = 3_600_000;
        let span = i64::try_from(hours).unwrap_or(i64::MAX).saturating_sub(1);
        let start = (unix_millis(now) / HOUR_MS - span) * HOUR_MS;
        let mut series = HourlySeries {
            start,
            sent: vec![0; hours],
            failed: vec![0; hours],
            generated: vec![0; hours],
            generation_failures: vec![0; hours],
        };
        // One COUNT per hour and series, each a range of one index: with a
        // day of 100,000 emails this is several times faster than one
        // GROUP BY, which has to sort what it counts.
        const SENT: &str = "SELECT COUNT(*) FROM emails WHERE sent_at >= $1 AND sent_at < $2";
        const FAILED: &str = "SELECT COUNT(*) FROM emails \
             WHERE status = 'failed' AND updated_at >= $1 AND updated_at < $2";
        const GENERATED: &str = "SELECT COUNT(*) FROM generations \
             WHERE status = 'succeeded' AND created_at >= $1 AND created_at < $2";
        const GENERATION_FAILED: &str = "SELECT COUNT(*) FROM generations \
             WHERE status = 'failed' AND created_at >= $1 AND created_at < $2";
        let mut conn = self.pool.acquire().await?;
        for (sql, target) in [
            (SENT, &mut series.sent),
            (FAILED, &mut series.failed),
            (GENERATED, &mut series.generated),
            (GENERATION_FAILED, &mut series.generation_failures),
        ] {
            for (hour, slot) in target.iter_mut().enumerate() {
                let from = start + HOUR_MS * i64::try_from(hour).unwrap_or(0);
                *slot = sqlx::query_scalar(sql)
                    .bind(from)
                    .bind(from + HOUR_MS)
                    .fetch_one(&mut *conn)
                    .await?;
            }
        }
        Ok(series)
    }
}

fn to_json<T: Serialize + ?Sized>(value: &T) -> String {
    // Vectors and maps of strings always serialise.
    serde_json::to_string(value).unwrap_or_else(|_| "{}".to_owned())
}

/// What people wrote in an email, as plaintext.
pub(super) struct EmailFields {
    pub(super) recipients: Recipients,
    pub(super) subject: String,
    pub(super) text: Option<String>,
    pub(super) html: Option<String>,
    pub(super) reply_to: Option<String>,
    pub(super) headers: std::collections::BTreeMap<String, String>,
}

/// [`EmailFields`] as stored: sealed, with the recipients' blind index.
pub(super) struct SealedEmail {
    pub(super) recipients: String,
    pub(super) subject: String,
    pub(super) text: Option<String>,
    pub(super) html: Option<String>,
    pub(super) reply_to: Option<String>,
    pub(super) headers: String,
    pub(super) recipient_index: String,
}

/// [`EmailFields`] read back, and whether the current key sealed them all.
pub(super) struct OpenedEmail {
    pub(super) fields: EmailFields,
    pub(super) sealed_under_current: bool,
}

impl Store {
    /// Seals `f` for the email `id`.
    pub(super) fn seal_email(&self, id: &str, f: &EmailFields) -> Result<SealedEmail, StoreError> {
        let seal =
            |column: &str, value: &str| self.keys.seal(&format!("emails.{column}:{id}"), value);
        let optional = |column: &str, value: &Option<String>| {
            value.as_deref().map(|v| seal(column, v)).transpose()
        };
        let index = crate::email::suppression::all_recipients(&f.recipients)
            .iter()
            .map(|a| self.keys.index(a))
            .collect::<Vec<_>>()
            .join(" ");
        Ok(SealedEmail {
            recipients: seal("recipients", &to_json(&f.recipients))?,
            subject: seal("subject", &f.subject)?,
            text: optional("body_text", &f.text)?,
            html: optional("body_html", &f.html)?,
            reply_to: optional("reply_to", &f.reply_to)?,
            headers: seal("headers", &to_json(&f.headers))?,
            recipient_index: index,
        })
    }

    /// Opens the sealed columns of an email row.
    pub(super) fn email_fields(&self, row: &sqlx::any::AnyRow) -> Result<OpenedEmail, StoreError> {
        let id: String = row.try_get("id")?;
        let mut current = true;
        let mut open = |column: &str, stored: String| -> Result<String, StoreError> {
            current &= self.keys.is_current(&stored);
            Ok(self.keys.open(&format!("emails.{column}:{id}"), &stored)?)
        };
        let mut optional = |column: &str| -> Result<Option<String>, StoreError> {
            let stored: Option<String> = row.try_get(column)?;
            stored.map(|v| open(column, v)).transpose()
        };
        let text = optional("body_text")?;
        let html = optional("body_html")?;
        let reply_to = optional("reply_to")?;
        let recipients = open("recipients", row.try_get("recipients")?)?;
        let subject = open("subject", row.try_get("subject")?)?;
        let headers = open("headers", row.try_get("headers")?)?;
        Ok(OpenedEmail {
            fields: EmailFields {
                recipients: serde_json::from_str(&recipients).unwrap_or_default(),
                subject,
                text,
                html,
                reply_to,
                headers: serde_json::from_str(&headers).unwrap_or_default(),
            },
            sealed_under_current: current,
        })
    }

    fn email_from_row(&self, row: &sqlx::any::AnyRow) -> Result<StoredEmail, StoreError> {
        let attempt_log: String = row.try_get("attempt_log")?;
        let EmailFields {
            recipients,
            subject,
            text,
            html,
            reply_to,
            headers,
        } = self.email_fields(row)?.fields;
        Ok(StoredEmail {
            id: row.try_get("id")?,
            status: row.try_get("status")?,
            recipients,
            subject,
            text,
            html,
            reply_to,
            headers,
            attempts: int_column(row, "attempts")?,
            last_error: row.try_get("last_error")?,
            created_at: row.try_get("created_at")?,
            updated_at: row.try_get("updated_at")?,
            sent_at: row.try_get("sent_at")?,
            next_attempt_at: row.try_get("next_attempt_at")?,
            request_hash: row.try_get("request_hash")?,
            created_by: row.try_get("created_by")?,
            attempt_log: serde_json::from_str(&attempt_log).unwrap_or_default(),
        })
    }
}
