//! Counts of emails and generations by status and period, for `/api/stats`.

use std::{
    collections::BTreeMap,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{Store, StoreError};

const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(24 * 3600);

/// How many, over three periods ending now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PeriodCounts {
    /// Created in the last 60 minutes.
    pub last_hour: i64,
    /// Created in the last 24 hours.
    pub last_day: i64,
    /// Ever created.
    pub all_time: i64,
}

impl PeriodCounts {
    fn add(&mut self, other: PeriodCounts) {
        self.last_hour += other.last_hour;
        self.last_day += other.last_day;
        self.all_time += other.all_time;
    }
}

/// Counts for one kind of record (emails or generations).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct KindStats {
    /// Every status together.
    pub total: PeriodCounts,
    /// One entry per status; every known status is present, zeros included.
    pub by_status: BTreeMap<String, PeriodCounts>,
}

/// The answer of `/api/stats`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Stats {
    /// Emails by status: queued, sending, sent, failed.
    pub emails: KindStats,
    /// Text generations by status: succeeded, failed.
    pub generations: KindStats,
    /// When the counts were taken (RFC 3339, UTC); older than now when served from the cache.
    pub generated_at: String,
}

/// The statuses each table may hold, as in its CHECK constraint.
const EMAIL_STATUSES: &[&str] = &["queued", "sending", "sent", "failed"];
const GENERATION_STATUSES: &[&str] = &["succeeded", "failed"];

/// One query per table: a single pass counts every status and period.
const EMAILS_SQL: &str = "SELECT status, COUNT(*), \
     SUM(CASE WHEN created_at >= $1 THEN 1 ELSE 0 END), \
     SUM(CASE WHEN created_at >= $2 THEN 1 ELSE 0 END) \
     FROM emails GROUP BY status";
const GENERATIONS_SQL: &str = "SELECT status, COUNT(*), \
     SUM(CASE WHEN created_at >= $1 THEN 1 ELSE 0 END), \
     SUM(CASE WHEN created_at >= $2 THEN 1 ELSE 0 END) \
     FROM generations GROUP BY status";

impl Store {
    /// Counts emails and generations as of `now`.
    pub async fn stats(&self, now: SystemTime) -> Result<Stats, StoreError> {
        let emails = self.count(EMAILS_SQL, EMAIL_STATUSES, now).await?;
        let generations = self
            .count(GENERATIONS_SQL, GENERATION_STATUSES, now)
            .await?;
        Ok(Stats {
            emails,
            generations,
            generated_at: humantime::format_rfc3339_seconds(now).to_string(),
        })
    }

    async fn count(
        &self,
        sql: &'static str,
        statuses: &[&str],
        now: SystemTime,
    ) -> Result<KindStats, StoreError> {
        let since = |period: Duration| unix_millis(now.checked_sub(period).unwrap_or(UNIX_EPOCH));
        let rows: Vec<(String, i64, Option<i64>, Option<i64>)> = sqlx::query_as(sql)
            .bind(since(HOUR))
            .bind(since(DAY))
            .fetch_all(&self.pool)
            .await?;

        let mut stats = KindStats {
            total: PeriodCounts::default(),
            by_status: statuses
                .iter()
                .map(|s| ((*s).to_owned(), PeriodCounts::default()))
                .collect(),
        };
        for (status, all_time, last_hour, last_day) in rows {
            let counts = PeriodCounts {
                last_hour: last_hour.unwrap_or(0),
                last_day: last_day.unwrap_or(0),
                all_time,
            };
            stats.total.add(counts);
            stats.by_status.insert(status, counts);
        }
        Ok(stats)
    }
}

/// Milliseconds since the Unix epoch, the store's time format.
pub fn unix_millis(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
