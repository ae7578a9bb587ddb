//! SQLite's checkpoints, out of the writer's way.
//!
//! In WAL mode every commit appends pages to the write-ahead log, and a
//! checkpoint copies them back into the database file and syncs both. Left
//! to SQLite, the checkpoint runs inside the COMMIT that takes the log past
//! 1,000 pages, on the one writing connection: at 2,000 generations a second
//! that was about every 80th group, a few megabytes copied and synced while
//! every answer queued behind it waited (docs/benchmarks.md, "AI gateway at
//! load": with `fsync` made a no-op, p99 fell from 10 ms to 4–6).
//!
//! So the writing connection never checkpoints on its own
//! (`wal_autocheckpoint = 0`), and a connection of this module's does the
//! copying: passive checkpoints, which never block the writer, back to back
//! while the log is long. A passive checkpoint alone cannot bound the log,
//! though: SQLite starts the log over only when a writer finds every frame
//! copied, and under constant writes new frames always arrive during the
//! copy (an earlier try let the log reach 1 GB in 10 s). So once a pass had
//! little left to copy, this module asks the writer to finish: between two
//! groups, the writer runs one passive checkpoint itself, which copies only
//! the frames that came since, and its next transaction starts the log
//! over. The writer pays for a few frames and two small syncs instead of
//! the whole checkpoint; if the passes fall behind the writes, the writer
//! finishes anyway once a pass finds the log [`LONGEST`] pages long, so the
//! log's length follows the write rate, never what was written in total.

use std::{
    sync::{
        Arc, Weak,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use sqlx::{AnyConnection, AnyPool, Connection};

/// A log at least this long (in pages) is worth starting over; SQLite's own
/// threshold.
const RESTART_AT: i64 = 1000;
/// A pass that copied at most this many pages leaves the writer little to
/// finish.
const FEW: i64 = 200;
/// A log this long is finished by the writer however much is left, when
/// the passes fall behind the writes. Not a hard cap: the log also grows by
/// what arrives during the pass that finds it this long.
const LONGEST: i64 = 4 * RESTART_AT;
/// The pause between passes while the log is short or the writer has been
/// asked to finish.
const PAUSE: Duration = Duration::from_millis(100);
/// The pause before trying again when the checkpointing connection failed.
const RETRY: Duration = Duration::from_secs(1);

/// The writer's side: whether it has been asked to finish a checkpoint.
#[derive(Debug)]
pub(super) struct Finish(Arc<AtomicBool>);

impl Finish {
    /// Starts checkpointing the SQLite database at `url`, which `writer`
    /// writes, from a connection of its own; it stops when the returned
    /// handle is dropped or `writer` is closed.
    pub(super) fn spawn(url: String, writer: AnyPool) -> Self {
        let asked = Arc::new(AtomicBool::new(false));
        tokio::spawn(checkpoint_loop(url, writer, Arc::downgrade(&asked)));
        Self(asked)
    }

    /// Finishes a checkpoint through `writer` if asked to; called between
    /// two groups.
    pub(super) async fn if_asked(&self, writer: &AnyPool) {
        if self.0.swap(false, Ordering::AcqRel)
            && let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
                .execute(writer)
                .await
        {
            tracing::warn!(error = %e, "finishing a checkpoint failed; the next pass asks again");
        }
    }
}

/// Passes until the writer is gone.
async fn checkpoint_loop(url: String, writer: AnyPool, asked: Weak<AtomicBool>) {
    while asked.strong_count() > 0 && !writer.is_closed() {
        let mut conn = match AnyConnection::connect(&url).await {
            Ok(conn) => conn,
            Err(e) => {
                tracing::error!(error = %e, "opening the checkpointing connection failed; the write-ahead log grows until it opens");
                tokio::time::sleep(RETRY).await;
                continue;
            }
        };
        if let Err(e) = passes(&mut conn, &writer, &asked).await {
            tracing::error!(error = %e, "checkpointing failed; starting again");
            tokio::time::sleep(RETRY).await;
        }
        let _ = conn.close().await;
    }
}

/// Runs passive checkpoints on `conn` until the writer is gone or one fails.
async fn passes(
    conn: &mut AnyConnection,
    writer: &AnyPool,
    asked: &Weak<AtomicBool>,
) -> Result<(), sqlx::Error> {
    sqlx::raw_sql(super::SQLITE_PRAGMAS)
        .execute(&mut *conn)
        .await?;
    // Pages copied as of the last pass, to tell what this one copied.
    let mut copied_before = 0_i64;
    loop {
        let Some(asked) = asked.upgrade().filter(|_| !writer.is_closed()) else {
            return Ok(());
        };
        // (busy, pages in the log, pages copied so far); -1 for both
        // counts when the database is not in WAL mode.
        let (_, log, copied): (i32, i64, i64) = sqlx::query_as("PRAGMA wal_checkpoint(PASSIVE)")
            .fetch_one(&mut *conn)
            .await?;
        // The log started over since the last pass when it is shorter.
        let this_pass = if copied >= copied_before {
            copied - copied_before
        } else {
            copied
        };
        copied_before = copied;
        if log >= RESTART_AT && (this_pass <= FEW || log >= LONGEST) {
            asked.store(true, Ordering::Release);
        }
        drop(asked);
        if log < RESTART_AT || this_pass <= FEW {
            tokio::time::sleep(PAUSE).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Instant, SystemTime};

    use super::*;
    use crate::{
        config::{DatabaseConfig, DatabaseKind, Secret},
        store::{Store, generations::NewGeneration, sealed::Keyring},
    };

    /// The checkpoint sequence number in a log's header: SQLite adds one
    /// each time the log starts over.
    fn restarts(wal: &std::path::Path) -> u32 {
        let header = std::fs::read(wal).unwrap_or_default();
        header
            .get(12..16)
            .map_or(0, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn generation() -> NewGeneration {
        NewGeneration {
            model: "m".into(),
            messages: serde_json::json!([{"role": "user", "content": "Say hello."}]),
            output: Some("Hello there!".into()),
            finish_reason: Some("stop".into()),
            prompt_tokens: Some(12),
            completion_tokens: Some(3),
            tokens_estimated: false,
            duration_ms: 1,
            error: None,
        }
    }

    /// Writes that never pause still let the log start over, again and
    /// again: passive checkpoints alone never restart it under constant
    /// writes, so this fails without the writer's finish (0 restarts, 951 MB
    /// of log in 6 s here). How long it gets in between depends on how fast
    /// the passes run beside the writes: 21 MB on an idle machine, 56 MB
    /// with the rest of `make test` running beside it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn under_constant_writes_the_log_starts_over_and_stays_short() {
        let dir = std::env::temp_dir().join(format!("sv-checkpoint-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("store.db");
        let config = DatabaseConfig {
            url: Secret::new(format!("sqlite://{}?mode=rwc", file.display())),
            kind: DatabaseKind::Sqlite,
            max_connections: 4,
        };
        let keys = Keyring::new("a secret key of at least thirty-two characters", None);
        let store = Store::connect(&config, keys).await.unwrap();
        store.migrate().await.unwrap();
        let wal = dir.join("store.db-wal");

        let until = Instant::now() + Duration::from_secs(6);
        let writers: Vec<_> = (0..8)
            .map(|w| {
                let store = store.clone();
                tokio::spawn(async move {
                    let mut written = 0_u64;
                    while Instant::now() < until {
                        let id = format!("g-{w}-{written}");
                        store
                            .insert_generation(
                                &id,
                                &generation(),
                                "account",
                                SystemTime::now(),
                                None,
                            )
                            .await
                            .unwrap();
                        written += 1;
                    }
                    written
                })
            })
            .collect();
        let first = restarts(&wal);
        let mut longest = 0;
        while Instant::now() < until {
            longest = longest.max(std::fs::metadata(&wal).map_or(0, |m| m.len()));
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let mut written = 0;
        for w in writers {
            written += w.await.unwrap();
        }
        let restarted = restarts(&wal) - first;
        eprintln!(
            "{written} generations; the log started over {restarted} times; longest {longest} bytes"
        );
        assert!(
            restarted >= 3,
            "the log started over {restarted} times in {written} writes"
        );
        // Far above what the log reaches with the finish, far below what it
        // reaches without it.
        assert!(longest < 256 << 20, "the log reached {longest} bytes");
        store.close().await;
        let _ = std::fs::remove_dir_all(&dir);
    }
}
