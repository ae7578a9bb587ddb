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

use sqlx::AnyPool;
use tokio::sync::{mpsc, oneshot};

use super::{AuditEntry, StoreError};

/// Most records in one transaction.
const MAX_GROUP: usize = 64;
/// Accepts that may wait for the writer task before senders wait to queue.
const QUEUE: usize = 1024;

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
    /// Starts the task that writes through `writer`. It ends when the last
    /// handle is dropped, after writing what was queued.
    pub(super) fn spawn(writer: AnyPool) -> Self {
        let (queue, mut rx) = mpsc::channel::<Waiting>(QUEUE);
        tokio::spawn(async move {
            let mut group = Vec::with_capacity(MAX_GROUP);
            while rx.recv_many(&mut group, MAX_GROUP).await > 0 {
                write_group(&writer, std::mem::take(&mut group)).await;
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

async fn write_group(writer: &AnyPool, group: Vec<Waiting>) {
    if group.len() > 1 {
        match insert_all(writer, group.iter().map(|(a, _)| a)).await {
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
        let _ = done.send(insert_all(writer, std::iter::once(&accepted)).await);
    }
}

/// Every row of `accepted` in one transaction.
async fn insert_all<'a>(
    writer: &AnyPool,
    accepted: impl Iterator<Item = &'a Accepted>,
) -> Result<(), StoreError> {
    let mut tx = writer.begin().await?;
    for a in accepted {
        match &a.row {
            Record::Email(email) => email.insert().execute(&mut *tx).await?,
            Record::Generation(generation) => generation.insert().execute(&mut *tx).await?,
        };
        if let Some(entry) = &a.audit {
            super::audit::insert(entry).execute(&mut *tx).await?;
        }
    }
    tx.commit().await?;
    Ok(())
}
