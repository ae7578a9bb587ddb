//! The audit trail: appended to, read page by page, never changed.

use sqlx::{Row, any::AnyRow};

use super::{Store, StoreError, group_commit::AnyQuery};

/// One entry of the trail.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AuditEntry {
    /// UUIDv7: sorts by time; the pagination cursor.
    pub id: String,
    /// When (Unix ms).
    pub at: i64,
    /// `user:<id>`, `key:<id>`, `anonymous` or `system`.
    pub actor: String,
    /// The user or key name, when known.
    pub actor_name: Option<String>,
    /// What was done, e.g. `login`, `api_key.create`, `email.send`.
    pub action: String,
    /// What it was done to (an email id, a key id, a user name…).
    pub target: Option<String>,
    /// `success`, `failure` or `denied`.
    pub outcome: String,
    /// The client's address.
    pub ip: Option<String>,
    /// The request that did it.
    pub request_id: Option<String>,
    /// A short, secret-free explanation.
    pub detail: Option<String>,
}

/// Which entries to read, newest first.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    /// Only this actor.
    pub actor: Option<String>,
    /// Only this action.
    pub action: Option<String>,
    /// Only actors of this name (the console's filter: people know names).
    pub actor_name: Option<String>,
    /// Only entries at or after this time (Unix ms).
    pub since: Option<i64>,
    /// Only entries before this time (Unix ms).
    pub until: Option<i64>,
    /// Only entries older than this id (the previous page's cursor).
    pub before: Option<String>,
    /// At most this many.
    pub limit: u32,
}

fn entry(row: &AnyRow) -> Result<AuditEntry, StoreError> {
    Ok(AuditEntry {
        id: row.try_get("id")?,
        at: row.try_get("at")?,
        actor: row.try_get("actor")?,
        actor_name: row.try_get("actor_name")?,
        action: row.try_get("action")?,
        target: row.try_get("target")?,
        outcome: row.try_get("outcome")?,
        ip: row.try_get("ip")?,
        request_id: row.try_get("request_id")?,
        detail: row.try_get("detail")?,
    })
}

impl super::group_commit::Insert for AuditEntry {
    const INTO: &'static str =
        "audit_log (id, at, actor, actor_name, action, target, outcome, ip, request_id, detail)";

    fn bind<'q>(&'q self, q: AnyQuery<'q>) -> AnyQuery<'q> {
        q.bind(&self.id)
            .bind(self.at)
            .bind(&self.actor)
            .bind(&self.actor_name)
            .bind(&self.action)
            .bind(&self.target)
            .bind(&self.outcome)
            .bind(&self.ip)
            .bind(&self.request_id)
            .bind(&self.detail)
    }
}

/// The statement appending `e`: run alone, or inside the transaction of
/// the action it records (one commit instead of two on the single writer).
pub(super) fn insert(e: &AuditEntry) -> AnyQuery<'_> {
    super::group_commit::insert_one(e)
}

impl Store {
    /// Appends `e` to the trail.
    pub async fn append_audit(&self, e: &AuditEntry) -> Result<(), StoreError> {
        insert(e).execute(&self.writer).await?;
        Ok(())
    }

    /// The entries `q` selects, newest first.
    pub async fn audit(&self, q: &AuditQuery) -> Result<Vec<AuditEntry>, StoreError> {
        // Each filter is always bound; a NULL parameter switches it off. The
        // casts give PostgreSQL the parameter types it cannot infer from NULL.
        let rows = sqlx::query(
            "SELECT id, at, actor, actor_name, action, target, outcome, ip, request_id, detail \
             FROM audit_log \
             WHERE (CAST($1 AS TEXT) IS NULL OR actor = CAST($1 AS TEXT)) \
               AND (CAST($2 AS TEXT) IS NULL OR action = CAST($2 AS TEXT)) \
               AND (CAST($3 AS BIGINT) IS NULL OR at >= CAST($3 AS BIGINT)) \
               AND (CAST($4 AS BIGINT) IS NULL OR at < CAST($4 AS BIGINT)) \
               AND (CAST($5 AS TEXT) IS NULL OR id < CAST($5 AS TEXT)) \
               AND (CAST($7 AS TEXT) IS NULL OR actor_name = CAST($7 AS TEXT)) \
             ORDER BY id DESC LIMIT $6",
        )
        .bind(&q.actor)
        .bind(&q.action)
        .bind(q.since)
        .bind(q.until)
        .bind(&q.before)
        .bind(i64::from(q.limit))
        .bind(&q.actor_name)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(entry).collect()
    }

    /// The most recent entry of `action`, if any.
    pub async fn last_audit(&self, action: &str) -> Result<Option<AuditEntry>, StoreError> {
        Ok(self
            .audit(&AuditQuery {
                action: Some(action.to_owned()),
                limit: 1,
                ..AuditQuery::default()
            })
            .await?
            .pop())
    }
}
