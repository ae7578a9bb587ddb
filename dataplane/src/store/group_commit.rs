//! Group commit for accepted emails and finished generations.
//!
//! An accepted email is two rows (the email and its `email.send` audit
//! entry) that must commit together before the 202 leaves; a generation
//! likewise (the generation and its `ai.generate` entry) before its answer. Written one
//! email per transaction, every accept queued for SQLite's one writing
//! connection, and each held it for four round trips to the thread that
//! connection lives on (BEGIN, two INSERTs, COMMIT): under load the queue,
//! not the work, set the accept latency (docs/benchmarks.md).
//!
//! Here one task owns these writes. It takes the first record that waits,
//! then every other one already waiting (up to [`MAX_GROUP`]), and writes
//! them all in one transaction. Nobody waits for a group to fill: a lone
//! record is written at once, and under load the records that queued during
//! one commit share the next. Each request is answered only after the
//! COMMIT that holds its record, so "202 means stored" (and "an answer means
//! its generation is in the history") is unchanged. If a group fails, its
//! records are written again one per transaction, so a bad row costs only
//! its own answer.
//!
//! A group is one `INSERT` per table, whatever its size. On SQLite the whole
//! transaction (`BEGIN IMMEDIATE`, the inserts, `COMMIT`) goes to the
//! connection's thread as one multi-statement query: each statement sent on
//! its own was a round trip to that thread, a futex wake and a task switch
//! each way, and with five of them per group the switching, not SQLite, was
//! half the data plane's CPU at 2,000 generations a second
//! (docs/benchmarks.md, "AI gateway at load"). PostgreSQL refuses several
//! statements with parameters in one query, so there the inserts run one
//! after the other inside a transaction.

use sqlx::{Any, AnyPool, AssertSqlSafe, any::AnyArguments, query::Query};
use tokio::sync::{mpsc, oneshot};

use super::{AuditEntry, StoreError};
use crate::config::DatabaseKind;

/// Most records in one transaction.
const MAX_GROUP: usize = 64;
/// Accepts that may wait for the writer task before senders wait to queue.
const QUEUE: usize = 1024;

/// A query over either database.
pub(super) type AnyQuery<'q> = Query<'q, Any, AnyArguments>;

/// A row one `INSERT` writes: its table and columns, and its values, bound
/// in the columns' order. The statement itself is made here, for one row or
/// for many.
pub(super) trait Insert {
    /// `table (column, ...)`.
    const INTO: &'static str;
    /// Binds one value per column of [`Self::INTO`], in order.
    fn bind<'q>(&'q self, q: AnyQuery<'q>) -> AnyQuery<'q>;
}

/// `INSERT INTO` one row of `T` alone.
pub(super) fn insert_one<T: Insert>(row: &T) -> AnyQuery<'_> {
    let mut sql = String::new();
    let mut numbered = 0;
    push_insert::<T>(&mut sql, 1, &mut numbered);
    row.bind(sqlx::query(AssertSqlSafe(sql)))
}

/// Appends `INSERT INTO T VALUES (...), ...` for `rows` rows to `sql`, its
/// parameters numbered on from `numbered` (`$N` means the same argument on
/// both databases, and on SQLite across the statements of one query).
fn push_insert<T: Insert>(sql: &mut String, rows: usize, numbered: &mut usize) {
    let columns = T::INTO.matches(',').count() + 1;
    sql.push_str("INSERT INTO ");
    sql.push_str(T::INTO);
    sql.push_str(" VALUES ");
    for row in 0..rows {
        sql.push_str(if row == 0 { "(" } else { ", (" });
        for column in 0..columns {
            *numbered += 1;
            let sep = if column == 0 { "" } else { ", " };
            sql.push_str(&format!("{sep}${numbered}"));
        }
        sql.push(')');
    }
}

/// One record's rows.
pub(super) struct Accepted {
    /// The email or generation.
    pub(super) row: Record,
    /// Its audit entry, committed with it.
    pub(super) audit: Option<AuditEntry>,
}

/// What a record inserts.
pub(super) enum Record {
    /// `INSERT INTO emails`, bound.
    Email(super::emails::EmailRow),
    /// `INSERT INTO generations`, bound.
    Generation(super::generations::GenerationRow),
}

type Waiting = (Accepted, oneshot::Sender<Result<(), StoreError>>);

/// The handle on the writer task; cheap to clone.
#[derive(Clone, Debug)]
pub(super) struct GroupCommit {
    queue: mpsc::Sender<Waiting>,
}

impl GroupCommit {
    /// Starts the task that writes through `writer`, a `kind` database. It
    /// ends when the last handle is dropped, after writing what was queued.
    /// With `checkpoints` (a SQLite file), it finishes the checkpoints that
    /// module asks for between two groups, after their answers went out.
    pub(super) fn spawn(
        writer: AnyPool,
        kind: DatabaseKind,
        checkpoints: Option<super::checkpoint::Finish>,
    ) -> Self {
        let (queue, mut rx) = mpsc::channel::<Waiting>(QUEUE);
        tokio::spawn(async move {
            let mut group = Vec::with_capacity(MAX_GROUP);
            while rx.recv_many(&mut group, MAX_GROUP).await > 0 {
                write_group(&writer, kind, std::mem::take(&mut group)).await;
                if let Some(checkpoints) = &checkpoints {
                    checkpoints.if_asked(&writer).await;
                }
            }
        });
        Self { queue }
    }

    /// Writes `accepted` with whatever else is waiting; returns once it is
    /// committed (or failed).
    pub(super) async fn write(&self, accepted: Accepted) -> Result<(), StoreError> {
        let (done, result) = oneshot::channel();
        self.queue
            .send((accepted, done))
            .await
            .map_err(|_| StoreError::WriterStopped)?;
        result.await.map_err(|_| StoreError::WriterStopped)?
    }
}

async fn write_group(writer: &AnyPool, kind: DatabaseKind, group: Vec<Waiting>) {
    if group.len() > 1 {
        let all: Vec<&Accepted> = group.iter().map(|(a, _)| a).collect();
        match insert_all(writer, kind, &all).await {
            Ok(()) => {
                for (_, done) in group {
                    // The caller may have gone (its request was cancelled);
                    // the record is stored all the same.
                    let _ = done.send(Ok(()));
                }
                return;
            }
            Err(e) => {
                tracing::warn!(records = group.len(), error = %e, "writing a group of emails and generations failed; writing them one by one");
            }
        }
    }
    for (accepted, done) in group {
        let _ = done.send(insert_all(writer, kind, &[&accepted]).await);
    }
}

/// The rows of a group, by table: one `INSERT` each.
#[derive(Default)]
struct Tables<'a> {
    emails: Vec<&'a super::emails::EmailRow>,
    generations: Vec<&'a super::generations::GenerationRow>,
    audit: Vec<&'a AuditEntry>,
}

impl<'a> Tables<'a> {
    fn of(accepted: &[&'a Accepted]) -> Self {
        let mut t = Self::default();
        for a in accepted {
            match &a.row {
                Record::Email(email) => t.emails.push(email),
                Record::Generation(generation) => t.generations.push(generation),
            }
            t.audit.extend(&a.audit);
        }
        t
    }
}

/// Appends `INSERT INTO T ...; ` for `rows`, or nothing when there is none.
fn push_rows<T: Insert>(sql: &mut String, rows: &[&T], numbered: &mut usize) {
    if !rows.is_empty() {
        push_insert::<T>(sql, rows.len(), numbered);
        sql.push_str("; ");
    }
}

/// Binds `rows` in order.
fn bind_rows<'q, T: Insert>(q: AnyQuery<'q>, rows: &[&'q T]) -> AnyQuery<'q> {
    rows.iter().fold(q, |q, row| row.bind(q))
}

/// Every row of `accepted` in one transaction.
async fn insert_all(
    writer: &AnyPool,
    kind: DatabaseKind,
    accepted: &[&Accepted],
) -> Result<(), StoreError> {
    let tables = Tables::of(accepted);
    match kind {
        DatabaseKind::Sqlite => {
            // IMMEDIATE takes the write lock at BEGIN, so a busy database
            // fails (or waits) before any row is written.
            let mut sql = String::from("BEGIN IMMEDIATE; ");
            let mut numbered = 0;
            push_rows(&mut sql, &tables.emails, &mut numbered);
            push_rows(&mut sql, &tables.generations, &mut numbered);
            push_rows(&mut sql, &tables.audit, &mut numbered);
            sql.push_str("COMMIT");
            // Its text changes with the group's make-up: not worth a place
            // in the statement cache.
            let query = sqlx::query(AssertSqlSafe(sql)).persistent(false);
            let query = bind_rows(query, &tables.emails);
            let query = bind_rows(query, &tables.generations);
            let query = bind_rows(query, &tables.audit);
            let mut conn = writer.acquire().await?;
            if let Err(e) = query.execute(&mut *conn).await {
                // The statement that failed left the transaction open on
                // this connection; whatever this says, it ends it.
                let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
                return Err(e.into());
            }
        }
        DatabaseKind::Postgres => {
            let mut tx = writer.begin().await?;
            for statement in [
                many(&tables.emails),
                many(&tables.generations),
                many(&tables.audit),
            ]
            .into_iter()
            .flatten()
            {
                statement.execute(&mut *tx).await?;
            }
            tx.commit().await?;
        }
    }
    Ok(())
}

/// `INSERT INTO` every row of `rows`, or nothing when there is none.
fn many<'q, T: Insert>(rows: &[&'q T]) -> Option<AnyQuery<'q>> {
    let mut sql = String::new();
    push_rows(&mut sql, rows, &mut 0);
    (!sql.is_empty()).then(|| bind_rows(sqlx::query(AssertSqlSafe(sql)), rows))
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Pair;

    impl Insert for Pair {
        const INTO: &'static str = "t (a, b)";
        fn bind<'q>(&'q self, q: AnyQuery<'q>) -> AnyQuery<'q> {
            q.bind(1_i64).bind(2_i64)
        }
    }

    #[test]
    fn rows_are_numbered_on_across_statements() {
        let mut sql = String::new();
        let mut numbered = 0;
        push_insert::<Pair>(&mut sql, 2, &mut numbered);
        sql.push_str("; ");
        push_insert::<Pair>(&mut sql, 1, &mut numbered);
        assert_eq!(
            sql,
            "INSERT INTO t (a, b) VALUES ($1, $2), ($3, $4); INSERT INTO t (a, b) VALUES ($5, $6)"
        );
        assert_eq!(numbered, 6);
    }
}
