//! Which keys sealed the store's values: checked at start, renewed by
//! `dataplane reencrypt`.

use std::time::SystemTime;

use sqlx::Row;

use super::{Store, StoreError, unix_millis};

/// Rows re-sealed per transaction.
const BATCH: i64 = 200;

/// What `dataplane reencrypt` did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Reencrypted {
    /// Emails sealed again under the current key.
    pub emails: u64,
    /// Generations sealed again.
    pub generations: u64,
    /// Key ids no value uses any more, forgotten.
    pub retired: Vec<String>,
}

impl Store {
    /// Refuses a store holding values sealed under a key this process
    /// lacks; then records the current key as one that seals here.
    pub async fn check_keys(&self) -> Result<(), StoreError> {
        let ids: Vec<String> = sqlx::query_scalar("SELECT id FROM encryption_keys")
            .fetch_all(&self.pool)
            .await?;
        if let Some(unknown) = ids.iter().find(|id| !self.keys.opens(id)) {
            return Err(StoreError::WrongKey(unknown.clone()));
        }
        sqlx::query(
            "INSERT INTO encryption_keys (id, first_used_at) VALUES ($1, $2) \
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(self.keys.current_id())
        .bind(unix_millis(SystemTime::now()))
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    /// Seals every email and generation again under the current key (those
    /// under `SECRET_KEY_PREVIOUS`, and those written before encryption),
    /// in batches, then forgets the keys no value uses.
    pub async fn reencrypt(&self) -> Result<Reencrypted, StoreError> {
        self.check_keys().await?;
        let mut done = Reencrypted::default();
        let mut after = String::new();
        loop {
            let rows = sqlx::query(
                "SELECT id, recipients, subject, body_text, body_html, reply_to, headers \
                 FROM emails WHERE id > $1 ORDER BY id LIMIT $2",
            )
            .bind(&after)
            .bind(BATCH)
            .fetch_all(&self.pool)
            .await?;
            let Some(last) = rows.last() else { break };
            after = last.try_get("id")?;
            let mut tx = self.writer.begin().await?;
            for row in &rows {
                let email = self.email_fields(row)?;
                if email.sealed_under_current {
                    continue;
                }
                let id: String = row.try_get("id")?;
                let sealed = self.seal_email(&id, &email.fields)?;
                sqlx::query(
                    "UPDATE emails SET recipients = $2, subject = $3, body_text = $4, \
                     body_html = $5, reply_to = $6, headers = $7, recipient_index = $8 \
                     WHERE id = $1",
                )
                .bind(&id)
                .bind(&sealed.recipients)
                .bind(&sealed.subject)
                .bind(&sealed.text)
                .bind(&sealed.html)
                .bind(&sealed.reply_to)
                .bind(&sealed.headers)
                .bind(&sealed.recipient_index)
                .execute(&mut *tx)
                .await?;
                done.emails += 1;
            }
            tx.commit().await?;
        }
        let mut after = String::new();
        loop {
            let rows = sqlx::query(
                "SELECT id, messages, output FROM generations WHERE id > $1 ORDER BY id LIMIT $2",
            )
            .bind(&after)
            .bind(BATCH)
            .fetch_all(&self.pool)
            .await?;
            let Some(last) = rows.last() else { break };
            after = last.try_get("id")?;
            let mut tx = self.writer.begin().await?;
            for row in &rows {
                let id: String = row.try_get("id")?;
                let messages: String = row.try_get("messages")?;
                let output: Option<String> = row.try_get("output")?;
                if self.keys.is_current(&messages)
                    && output.as_deref().is_none_or(|o| self.keys.is_current(o))
                {
                    continue;
                }
                let (messages, output) =
                    self.reseal_generation(&id, &messages, output.as_deref())?;
                sqlx::query("UPDATE generations SET messages = $2, output = $3 WHERE id = $1")
                    .bind(&id)
                    .bind(messages)
                    .bind(output)
                    .execute(&mut *tx)
                    .await?;
                done.generations += 1;
            }
            tx.commit().await?;
        }
        let retired: Vec<String> = sqlx::query("SELECT id FROM encryption_keys WHERE id <> $1")
            .bind(self.keys.current_id())
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| r.try_get("id"))
            .collect::<Result<_, _>>()?;
        sqlx::query("DELETE FROM encryption_keys WHERE id <> $1")
            .bind(self.keys.current_id())
            .execute(&self.writer)
            .await?;
        done.retired = retired;
        Ok(done)
    }
}
