//! The history of generations: each request's messages and the model's answer,
//! for `GET /api/generations/{id}` and `/api/stats`. Never logged.

use std::time::SystemTime;

use sqlx::Row;

use super::{
    AuditEntry, Store, StoreError,
    group_commit::AnyQuery,
    group_commit::{Accepted, Record},
    unix_millis,
};

/// A generation to record, finished or failed.
#[derive(Debug, Clone, PartialEq)]
pub struct NewGeneration {
    /// The model asked.
    pub model: String,
    /// The messages sent, as JSON (`[{"role", "content"}]`).
    pub messages: serde_json::Value,
    /// The answer, when there is one (a failed stream keeps what arrived).
    pub output: Option<String>,
    /// Why generation stopped, as the server said.
    pub finish_reason: Option<String>,
    /// Tokens in the prompt.
    pub prompt_tokens: Option<u32>,
    /// Tokens generated.
    pub completion_tokens: Option<u32>,
    /// Whether the counts are our estimate (the server reported none).
    pub tokens_estimated: bool,
    /// How long it took, in milliseconds.
    pub duration_ms: u64,
    /// Why it failed, when it did.
    pub error: Option<String>,
}

/// A generation as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredGeneration {
    /// Its id.
    pub id: String,
    /// `succeeded` or `failed`.
    pub status: String,
    /// The rest, as recorded.
    pub generation: NewGeneration,
    /// When it was recorded (Unix ms).
    pub created_at: i64,
    /// Who asked (`user:<id>` or `key:<id>`); `None` for older rows.
    pub created_by: Option<String>,
}

/// A generation's row, sealed and bound by [`Store::insert_generation`],
/// written by the group commit.
pub(super) struct GenerationRow {
    id: String,
    status: &'static str,
    created_at: i64,
    model: String,
    messages: String,
    output: Option<String>,
    finish_reason: Option<String>,
    prompt_tokens: Option<i64>,
    completion_tokens: Option<i64>,
    tokens_estimated: i32,
    duration_ms: i64,
    error: Option<String>,
    created_by: Option<String>,
    account: String,
}

impl super::group_commit::Insert for GenerationRow {
    const INTO: &'static str = "generations (id, status, created_at, model, messages, output, \
         finish_reason, prompt_tokens, completion_tokens, tokens_estimated, duration_ms, error, \
         created_by, account_id)";

    fn bind<'q>(&'q self, q: AnyQuery<'q>) -> AnyQuery<'q> {
        q.bind(&self.id)
            .bind(self.status)
            .bind(self.created_at)
            .bind(&self.model)
            .bind(&self.messages)
            .bind(&self.output)
            .bind(&self.finish_reason)
            .bind(self.prompt_tokens)
            .bind(self.completion_tokens)
            .bind(self.tokens_estimated)
            .bind(self.duration_ms)
            .bind(&self.error)
            .bind(&self.created_by)
            .bind(&self.account)
    }
}

/// The columns every query returns, as a literal so queries stay `&'static str`.
macro_rules! columns {
    () => {
        "id, status, created_at, model, messages, output, finish_reason, prompt_tokens, \
         completion_tokens, tokens_estimated, duration_ms, error, created_by"
    };
}

impl Store {
    /// Records `g`, charged to `account` (a `users.id`), and returns its
    /// id; `audit`, when given, is appended in the same transaction with the
    /// generation as its target.
    pub async fn insert_generation(
        &self,
        id: &str,
        g: &NewGeneration,
        account: &str,
        now: SystemTime,
        audit: Option<AuditEntry>,
    ) -> Result<String, StoreError> {
        let id = id.to_owned();
        let status = if g.error.is_some() {
            "failed"
        } else {
            "succeeded"
        };
        let (messages, output) =
            self.seal_generation(&id, &g.messages.to_string(), g.output.as_deref())?;
        let row = GenerationRow {
            id: id.clone(),
            status,
            created_at: unix_millis(now),
            model: g.model.clone(),
            messages,
            output,
            finish_reason: g.finish_reason.clone(),
            prompt_tokens: g.prompt_tokens.map(i64::from),
            completion_tokens: g.completion_tokens.map(i64::from),
            tokens_estimated: i32::from(g.tokens_estimated),
            duration_ms: i64::try_from(g.duration_ms).unwrap_or(i64::MAX),
            error: g.error.clone(),
            // The audit entry names who asked; it is the author too.
            created_by: audit.as_ref().map(|a| a.actor.clone()),
            account: account.to_owned(),
        };
        let audit = audit.map(|mut entry| {
            entry.target = Some(id.clone());
            entry
        });
        // With the emails' records, in the next group commit: the answer
        // waits for the COMMIT that holds this generation and its entry.
        self.accepted
            .write(Accepted {
                row: Record::Generation(row),
                audit,
            })
            .await?;
        Ok(id)
    }

    /// The generation `id`, if it exists.
    pub async fn generation(&self, id: &str) -> Result<Option<StoredGeneration>, StoreError> {
        let row = sqlx::query(concat!(
            "SELECT ",
            columns!(),
            " FROM generations WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref()
            .map(|r| self.generation_from_row(r))
            .transpose()
    }

    /// Generations newest first, `author`'s only when given (every one
    /// otherwise): at most `limit`, created before `before` (Unix ms) when
    /// given.
    pub async fn generations_by(
        &self,
        author: Option<&str>,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<StoredGeneration>, StoreError> {
        // Two statements rather than one with `$1 IS NULL OR …`: each then
        // reads one index range (by author, or by time) on both stores.
        let query = match author {
            Some(author) => sqlx::query(concat!(
                "SELECT ",
                columns!(),
                " FROM generations WHERE created_by = $1 \
                 AND (CAST($2 AS BIGINT) IS NULL OR created_at < CAST($2 AS BIGINT)) \
                 ORDER BY created_at DESC, id DESC LIMIT $3"
            ))
            .bind(author),
            None => sqlx::query(concat!(
                "SELECT ",
                columns!(),
                " FROM generations \
                 WHERE (CAST($1 AS BIGINT) IS NULL OR created_at < CAST($1 AS BIGINT)) \
                 ORDER BY created_at DESC, id DESC LIMIT $2"
            )),
        };
        let rows = query
            .bind(before)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(|r| self.generation_from_row(r)).collect()
    }
}

impl Store {
    /// The prompt (messages as JSON) and answer of generation `id`, sealed.
    fn seal_generation(
        &self,
        id: &str,
        messages: &str,
        output: Option<&str>,
    ) -> Result<(String, Option<String>), StoreError> {
        Ok((
            self.keys
                .seal(&format!("generations.messages:{id}"), messages)?,
            output
                .map(|o| self.keys.seal(&format!("generations.output:{id}"), o))
                .transpose()?,
        ))
    }

    /// The stored prompt and answer of `id`, opened and sealed again under
    /// the current key (`dataplane reencrypt`).
    pub(super) fn reseal_generation(
        &self,
        id: &str,
        messages: &str,
        output: Option<&str>,
    ) -> Result<(String, Option<String>), StoreError> {
        let messages = self
            .keys
            .open(&format!("generations.messages:{id}"), messages)?;
        let output = output
            .map(|o| self.keys.open(&format!("generations.output:{id}"), o))
            .transpose()?;
        self.seal_generation(id, &messages, output.as_deref())
    }

    fn generation_from_row(&self, row: &sqlx::any::AnyRow) -> Result<StoredGeneration, StoreError> {
        let id: String = row.try_get("id")?;
        let messages: String = row.try_get("messages")?;
        let messages = self
            .keys
            .open(&format!("generations.messages:{id}"), &messages)?;
        let output: Option<String> = row.try_get("output")?;
        let output = output
            .map(|o| self.keys.open(&format!("generations.output:{id}"), &o))
            .transpose()?;
        let tokens = |name: &str| -> Result<Option<u32>, StoreError> {
            let n: Option<i64> = row.try_get(name)?;
            Ok(n.and_then(|n| u32::try_from(n).ok()))
        };
        let duration_ms: i64 = row.try_get("duration_ms")?;
        Ok(StoredGeneration {
            id,
            status: row.try_get("status")?,
            created_at: row.try_get("created_at")?,
            created_by: row.try_get("created_by")?,
            generation: NewGeneration {
                model: row.try_get("model")?,
                messages: serde_json::from_str(&messages).unwrap_or_default(),
                output,
                finish_reason: row.try_get("finish_reason")?,
                prompt_tokens: tokens("prompt_tokens")?,
                completion_tokens: tokens("completion_tokens")?,
                tokens_estimated: row.try_get::<i32, _>("tokens_estimated")? != 0,
                duration_ms: u64::try_from(duration_ms).unwrap_or(0),
                error: row.try_get("error")?,
            },
        })
    }
}
