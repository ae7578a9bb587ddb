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
pub(super) fn claim_sql(
    table: &str,
    waiting: &str,
    working: &str,
    columns: &str,
    lock: &str,
) -> String {
    format!(
        "UPDATE {table} SET status = '{working}', claimed_by = $1, claim_expires_at = $2, \
         attempts = attempts + 1, updated_at = $3 \
         WHERE id IN (SELECT id FROM {table} \
             WHERE (status = '{waiting}' AND next_attempt_at <= $3) \
                OR (status = '{working}' AND claim_expires_at < $3) \
             ORDER BY next_attempt_at LIMIT $4 {lock}) \
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
