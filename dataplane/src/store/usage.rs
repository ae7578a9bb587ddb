//! Token usage from the history of generations, per UTC day, account,
//! credential and model, for `GET /api/usage` and the console's usage page.
//! Computed from the rows each generation leaves, so it is as durable as
//! they are (backups, replicas on PostgreSQL) and needs no counter of its own.

use sqlx::Row;

use super::{Store, StoreError};

/// Whose usage a query covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UsageScope {
    /// Everyone's (administrators).
    All,
    /// One account's: its sessions and every key acting for it.
    Account(String),
    /// One credential's (`key:<id>`): an API key sees its own.
    Author(String),
}

/// Generations of one day, account, credential and model, added up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageRow {
    /// Days since the Unix epoch (UTC).
    pub day: i64,
    /// The account charged (a `users.id`); `None` for rows from before
    /// accounts were recorded whose author is gone.
    pub account: Option<String>,
    /// Its user name, if the account still exists.
    pub account_name: Option<String>,
    /// The credential that asked: `user:<id>` (a session) or `key:<id>`.
    pub credential: Option<String>,
    /// The key's name, for a key that still exists.
    pub key_name: Option<String>,
    /// The model that answered.
    pub model: String,
    /// Generations (succeeded and failed).
    pub requests: i64,
    /// Tokens in their prompts.
    pub prompt_tokens: i64,
    /// Tokens generated.
    pub completion_tokens: i64,
    /// Generations whose counts are estimates (the server reported none).
    pub estimated: i64,
}

// SUM of BIGINT is NUMERIC on PostgreSQL: cast back so both stores answer
// integers. The names come from the live tables, so a key deleted since
// shows by its id. `$1`, `$2`: the range in Unix ms; `$3`: the scope's id.
macro_rules! select {
    () => {
        "SELECT g.created_at / 86400000 AS day, g.account_id, u.username, \
         g.created_by, k.name AS key_name, g.model, COUNT(*) AS requests, \
         CAST(SUM(COALESCE(g.prompt_tokens, 0)) AS BIGINT) AS prompt_tokens, \
         CAST(SUM(COALESCE(g.completion_tokens, 0)) AS BIGINT) AS completion_tokens, \
         CAST(SUM(g.tokens_estimated) AS BIGINT) AS estimated \
         FROM generations g \
         LEFT JOIN users u ON u.id = g.account_id \
         LEFT JOIN api_keys k ON 'key:' || k.id = g.created_by \
         WHERE g.created_at >= $1 AND g.created_at < $2"
    };
}
macro_rules! group {
    () => {
        " GROUP BY g.created_at / 86400000, g.account_id, u.username, g.created_by, k.name, \
         g.model ORDER BY day, g.account_id, g.created_by, g.model"
    };
}

/// One UTC day in milliseconds.
pub const DAY_MS: i64 = 86_400_000;

impl Store {
    /// Usage of `scope` from the start of day `from` to the end of day
    /// `to` (days since the epoch), by day, account, credential and model.
    pub async fn usage(
        &self,
        scope: &UsageScope,
        from: i64,
        to: i64,
    ) -> Result<Vec<UsageRow>, StoreError> {
        let range = (from * DAY_MS, (to + 1) * DAY_MS);
        let (sql, id) = match scope {
            UsageScope::All => (concat!(select!(), group!()), None),
            UsageScope::Account(id) => (
                concat!(select!(), " AND g.account_id = $3", group!()),
                Some(id),
            ),
            UsageScope::Author(id) => (
                concat!(select!(), " AND g.created_by = $3", group!()),
                Some(id),
            ),
        };
        let mut query = sqlx::query(sql).bind(range.0).bind(range.1);
        if let Some(id) = id {
            query = query.bind(id);
        }
        let rows = query.fetch_all(&self.pool).await?;
        rows.iter()
            .map(|r| {
                Ok(UsageRow {
                    day: r.try_get("day")?,
                    account: r.try_get("account_id")?,
                    account_name: r.try_get("username")?,
                    credential: r.try_get("created_by")?,
                    key_name: r.try_get("key_name")?,
                    model: r.try_get("model")?,
                    requests: r.try_get("requests")?,
                    prompt_tokens: r.try_get("prompt_tokens")?,
                    completion_tokens: r.try_get("completion_tokens")?,
                    estimated: r.try_get("estimated")?,
                })
            })
            .collect()
    }
}
