//! Retention: what is older than its configured age (`RETENTION_*_DAYS`) is
//! deleted on a schedule, in batches, and counted
//! (`retention_deleted_total{kind}`).
//!
//! Every replica runs it: the deletes are idempotent, so two replicas at
//! once only share the work. The first run is shortly after start, not an
//! interval later, so a pod that is replaced often still deletes.

use std::{
    sync::Arc,
    time::{Duration, SystemTime},
};

use crate::{
    audit::{Context, Outcome},
    config::RetentionConfig,
    shutdown::Shutdown,
    store::{Retained, Store, StoreError, unix_millis},
    telemetry::Metrics,
};

/// Rows deleted per transaction.
const BATCH: i64 = 500;
/// Delay before the first run: the start's own writes go first.
const FIRST_RUN: Duration = Duration::from_secs(5);

/// Deletes on `config`'s schedule until `shutdown`.
pub async fn run(config: RetentionConfig, store: Store, metrics: Arc<Metrics>, shutdown: Shutdown) {
    let mut wait = FIRST_RUN.min(config.interval);
    loop {
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = shutdown.wait() => return,
        }
        wait = config.interval;
        for kind in Retained::ALL {
            let Some(age) = config.age(kind) else {
                continue;
            };
            let cutoff = unix_millis(
                SystemTime::now()
                    .checked_sub(age)
                    .unwrap_or(SystemTime::UNIX_EPOCH),
            );
            match delete_all(&store, kind, cutoff, &shutdown).await {
                Ok(0) => {}
                Ok(deleted) => {
                    metrics
                        .retention_deleted_total
                        .with_label_values(&[kind.as_str()])
                        .inc_by(deleted);
                    tracing::info!(
                        kind = kind.as_str(),
                        deleted,
                        older_than_days = age.as_secs() / 86_400,
                        "retention deleted rows"
                    );
                    record(&store, kind, deleted, age).await;
                }
                Err(e) => {
                    metrics
                        .retention_failures_total
                        .with_label_values(&[kind.as_str()])
                        .inc();
                    tracing::warn!(kind = kind.as_str(), error = %e, "retention: deleting failed; trying again at the next run");
                }
            }
        }
    }
}

/// Deletes batch after batch until one comes back short (or shutdown).
async fn delete_all(
    store: &Store,
    kind: Retained,
    cutoff: i64,
    shutdown: &Shutdown,
) -> Result<u64, StoreError> {
    let mut total = 0;
    loop {
        let deleted = store.delete_expired(kind, cutoff, BATCH).await?;
        total += deleted;
        if deleted < BATCH as u64 || shutdown.is_fired() {
            return Ok(total);
        }
        // Requests waiting for the writer go between two batches.
        tokio::task::yield_now().await;
    }
}

/// The trail says what retention removed (never what it was).
async fn record(store: &Store, kind: Retained, deleted: u64, age: Duration) {
    let detail = format!(
        "{deleted} {} older than {} days",
        kind.as_str(),
        age.as_secs() / 86_400
    );
    Context::system()
        .record(
            store,
            "retention.delete",
            Some(kind.as_str()),
            Outcome::Success,
            Some(detail),
        )
        .await;
}
