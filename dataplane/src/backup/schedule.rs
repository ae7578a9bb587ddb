//! The backup schedule `serve` runs while a destination is configured.
//!
//! It runs in the data plane's own process, beside the store, rather than in
//! a Job: the embedded store lives on a ReadWriteOnce claim that only this
//! pod mounts (a second pod would need the same node, and a
//! ReadWriteOncePod claim would refuse it outright), and a snapshot through
//! the serving process's own pool is consistent without stopping anything.
//!
//! The next backup is due one interval after the newest one in the
//! destination, not after the process started: a pod replaced every half
//! hour still backs up every hour, and one that starts after a long outage
//! backs up at once. A failed backup is retried sooner than the interval,
//! never in a tight loop.

use std::{
    sync::Arc,
    time::{Duration, SystemTime},
};

use super::Plan;
use crate::{shutdown::Shutdown, store::Store, telemetry::Metrics};

/// Shortest time between a failed backup and the next try.
const FIRST_RETRY: Duration = Duration::from_secs(30);

/// Longest time between a failed backup and the next try (or the interval,
/// when shorter).
const LAST_RETRY: Duration = Duration::from_secs(15 * 60);

/// Runs backups on the plan's schedule until `shutdown`. A backup in
/// progress at shutdown is abandoned: its staged file is removed by the next
/// one, and the previous backups are intact.
pub async fn run(plan: Plan, store: Store, metrics: Arc<Metrics>, shutdown: Shutdown) {
    let destination = plan.destination.describe();
    let interval = plan.interval;
    let mut wait = match plan.destination.list().await {
        Ok(listed) => match listed.last() {
            Some(newest) => {
                metrics
                    .backup_last_success_timestamp_seconds
                    .set(unix_seconds(newest.taken_at));
                let age = SystemTime::now()
                    .duration_since(newest.taken_at)
                    .unwrap_or_default();
                interval.saturating_sub(age)
            }
            None => Duration::ZERO,
        },
        Err(e) => {
            tracing::warn!(%destination, reason = e.reason(), error = %e, "cannot list the backups; backing up now");
            Duration::ZERO
        }
    };
    tracing::info!(%destination, interval_secs = interval.as_secs(), first_in_secs = wait.as_secs(), "scheduled backups");
    let mut retry = FIRST_RETRY;
    loop {
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = shutdown.wait() => return,
        }
        let taken = tokio::select! {
            taken = plan.destination.take(&store, plan.retain) => taken,
            () = shutdown.wait() => return,
        };
        match taken {
            Ok(t) => {
                metrics
                    .backup_runs_total
                    .with_label_values(&["success"])
                    .inc();
                metrics
                    .backup_last_success_timestamp_seconds
                    .set(unix_seconds(t.taken_at));
                metrics
                    .backup_last_size_bytes
                    .set(i64::try_from(t.bytes).unwrap_or(i64::MAX));
                metrics
                    .backup_last_duration_seconds
                    .set(t.took.as_secs_f64());
                tracing::info!(%destination, name = %t.name, bytes = t.bytes, took_ms = t.took.as_millis() as u64, pruned = t.pruned, "backup taken");
                wait = interval;
                retry = FIRST_RETRY;
            }
            Err(e) => {
                metrics
                    .backup_runs_total
                    .with_label_values(&[e.reason()])
                    .inc();
                tracing::error!(%destination, reason = e.reason(), error = %e, retry_in_secs = retry.min(interval).as_secs(), "backup failed; serving is not affected");
                wait = retry.min(interval);
                retry = (retry * 2).min(LAST_RETRY);
            }
        }
    }
}

fn unix_seconds(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}
