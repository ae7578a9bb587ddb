//! What the two queues in the store (the email outbox and the webhook events)
//! share: claiming due rows under a lease.
//!
//! A claim moves due rows to the working status, names the worker and sets a
//! lease; a row whose lease expired (its worker died) is due again. This is
//! the one place SQLite and PostgreSQL need different SQL: PostgreSQL's
//! `FOR UPDATE SKIP LOCKED` lets several replicas claim from one table without
//! waiting on or taking each other's rows; SQLite has one writer at a time, so
//! the plain form is already exclusive.

use std::{
    sync::LazyLock,
    time::{Duration, SystemTime},
};

use super::{Store, StoreError, stats::unix_millis};
use crate::config::DatabaseKind;

/// The claim statement of one queue table, for each database.
pub(super) struct ClaimSql {
    postgres: LazyLock<String>,
    sqlite: LazyLock<String>,
}

impl ClaimSql {
    /// Rows of `table` in status `waiting` whose `next_attempt_at` has come,
    /// or in `working` whose lease expired, become `working`; `columns` are
    /// returned.
    pub(super) const fn new(postgres: fn() -> String, sqlite: fn() -> String) -> Self {
        Self {
            postgres: LazyLock::new(postgres),
            sqlite: LazyLock::new(sqlite),
        }
    }
}

/// The statement behind [`ClaimSql`]; `lock` is PostgreSQL's row-lock clause
/// or empty.
///
/// The two kinds of due row are found apart, each through the queue's
/// `(status, next_attempt_at)` index: with one `OR` the database gathers every
/// due row and sorts them all to return the first few, so each claim would
/// cost more the deeper the backlog (after a relay outage, exactly when the
/// queue must drain), and on SQLite that time is the one writer's. Rows
/// whose lease expired come first: they were due before any queued one.
pub(super) fn claim_sql(
    table: &str,
    waiting: &str,
    working: &str,
    columns: &str,
    lock: &str,
) -> String {
    format!(
        "WITH expired AS (SELECT id FROM {table} \
             WHERE status = '{working}' AND claim_expires_at < $3 LIMIT $4 {lock}), \
         due AS (SELECT id FROM {table} \
             WHERE status = '{waiting}' AND next_attempt_at <= $3 \
             ORDER BY next_attempt_at LIMIT $4 {lock}) \
         UPDATE {table} SET status = '{working}', claimed_by = $1, claim_expires_at = $2, \
         attempts = attempts + 1, updated_at = $3 \
         WHERE id IN (SELECT id FROM expired UNION ALL SELECT id FROM due LIMIT $4) \
         RETURNING {columns}"
    )
}

impl Store {
    /// Claims up to `limit` due rows for `worker` until `now + lease`. Each
    /// claim counts as an attempt.
    pub(super) async fn claim(
        &self,
        sql: &'static ClaimSql,
        worker: &str,
        limit: i64,
        lease: Duration,
        now: SystemTime,
    ) -> Result<Vec<sqlx::any::AnyRow>, StoreError> {
        let sql: &'static str = match self.kind {
            DatabaseKind::Postgres => sql.postgres.as_str(),
            DatabaseKind::Sqlite => sql.sqlite.as_str(),
        };
        let now_ms = unix_millis(now);
        Ok(sqlx::query(sql)
            .bind(worker)
            .bind(now_ms + i64::try_from(lease.as_millis()).unwrap_or(i64::MAX / 2))
            .bind(now_ms)
            .bind(limit)
            .fetch_all(&self.writer)
            .await?)
    }
}

/// An integer column: PostgreSQL's `INTEGER` arrives as i32, SQLite's as i64.
pub(super) fn int_column(row: &sqlx::any::AnyRow, name: &str) -> Result<i64, sqlx::Error> {
    use sqlx::Row;
    row.try_get::<i64, _>(name)
        .or_else(|_| row.try_get::<i32, _>(name).map(i64::from))
}

#[cfg(test)]
mod tests {
    use sqlx::{AssertSqlSafe, Connection, SqliteConnection};

    use super::claim_sql;

    #[tokio::test]
    async fn a_claim_reads_the_due_index_without_sorting_the_backlog() {
        let mut db = SqliteConnection::connect("sqlite::memory:").await.unwrap();
        crate::store::MIGRATOR.run(&mut db).await.unwrap();
        for (table, waiting, working) in [
            ("emails", "queued", "sending"),
            ("webhook_events", "pending", "delivering"),
        ] {
            let sql = claim_sql(table, waiting, working, "id", "");
            let steps: Vec<(i64, i64, i64, String)> =
                sqlx::query_as(AssertSqlSafe(format!("EXPLAIN QUERY PLAN {sql}")))
                    .bind("worker")
                    .bind(2_i64)
                    .bind(1_i64)
                    .bind(32_i64)
                    .fetch_all(&mut db)
                    .await
                    .unwrap();
            let plan: Vec<&str> = steps.iter().map(|s| s.3.as_str()).collect();
            // A sort here would be of every due row, to return 32 of them.
            assert!(!plan.iter().any(|s| s.contains("TEMP B-TREE")), "{plan:#?}");
            assert!(
                plan.iter().any(|s| s.contains(&format!(
                    "SEARCH {table} USING INDEX {table}_due (status=? AND next_attempt_at<?)"
                ))),
                "{plan:#?}"
            );
        }
    }
}
