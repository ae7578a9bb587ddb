//! Retention: rows older than `RETENTION_*_DAYS` are deleted by the data
//! plane's own schedule, on SQLite and on a real PostgreSQL; queued mail and
//! younger rows stay, and with the defaults nothing is ever deleted.

// Test support below the tests: a failure is a failed test, so panicking is the point.
#![allow(clippy::unwrap_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::*;
use sqlx::{AnyPool, Row};

const DAY: Duration = Duration::from_secs(86_400);

/// Retention on, a run every second.
const RETAIN: [(&str, &str); 4] = [
    ("RETENTION_EMAILS_DAYS", "30"),
    ("RETENTION_GENERATIONS_DAYS", "7"),
    ("RETENTION_AUDIT_DAYS", "90"),
    ("RETENTION_INTERVAL_SECS", "1"),
];

async fn insert_audit(pool: &AnyPool, id: &str, ago: Duration) {
    sqlx::query(
        "INSERT INTO audit_log (id, at, actor, action, outcome) \
         VALUES ($1, $2, 'system', 'test.old', 'success')",
    )
    .bind(id)
    .bind(millis_ago(ago))
    .execute(pool)
    .await
    .unwrap();
}

async fn ids(pool: &AnyPool, sql: &'static str) -> Vec<String> {
    let mut ids: Vec<String> = sqlx::query(sql)
        .fetch_all(pool)
        .await
        .unwrap()
        .iter()
        .map(|r| r.get::<String, _>(0))
        .collect();
    ids.sort();
    ids
}

/// Rows of every kind on either side of their age, then what is left.
async fn only_rows_past_their_age_go(dp: &DataPlane, url: &str) {
    let pool = store_pool(url).await;
    for (id, status, age) in [
        ("old-sent", "sent", 40),
        ("old-failed", "failed", 40),
        ("old-queued", "queued", 40),
        ("old-sending", "sending", 40),
        ("young-sent", "sent", 29),
    ] {
        insert_email(&pool, id, status, DAY * age).await;
    }
    insert_generation(&pool, "old-generation", "succeeded", DAY * 8).await;
    insert_generation(&pool, "young-generation", "failed", DAY * 6).await;
    insert_audit(&pool, "old-audit", DAY * 91).await;
    insert_audit(&pool, "young-audit", DAY * 89).await;

    for (kind, deleted) in [("emails", 2.0), ("generations", 1.0), ("audit", 1.0)] {
        let sample = format!("retention_deleted_total{{kind=\"{kind}\"}}");
        wait_for(&sample, Duration::from_secs(20), || async {
            match metric(dp, &sample).await {
                Some(n) if n == deleted => Ok(()),
                other => Err(format!("{other:?}")),
            }
        })
        .await;
    }
    assert_eq!(
        ids(&pool, "SELECT id FROM emails").await,
        ["old-queued", "old-sending", "young-sent"]
    );
    assert_eq!(
        ids(&pool, "SELECT id FROM generations").await,
        ["young-generation"]
    );
    let audit = ids(&pool, "SELECT id FROM audit_log WHERE action = 'test.old'").await;
    assert_eq!(audit, ["young-audit"]);
    // The trail says what went, by the system, never what it was.
    let said = ids(
        &pool,
        "SELECT detail FROM audit_log WHERE action = 'retention.delete' AND actor = 'system'",
    )
    .await;
    assert_eq!(
        said,
        [
            "1 audit older than 90 days",
            "1 generations older than 7 days",
            "2 emails older than 30 days",
        ]
    );
    assert_eq!(
        metric(dp, "retention_failures_total{kind=\"emails\"}").await,
        None
    );
}

#[tokio::test]
async fn retention_on_sqlite() {
    let dp = start(&RETAIN);
    only_rows_past_their_age_go(&dp, &dp.sqlite_url()).await;
}

#[tokio::test]
async fn retention_on_postgres() {
    let pg = Postgres::start().unwrap();
    let url = pg.create_database("retention").unwrap();
    let dp = start(&[&RETAIN[..], &[("DATABASE_URL", url.as_str())]].concat());
    only_rows_past_their_age_go(&dp, &url).await;
}

#[tokio::test]
async fn by_default_nothing_is_ever_deleted() {
    // Runs would be every second, but no age is set.
    let dp = start(&[("RETENTION_INTERVAL_SECS", "1")]);
    let pool = store_pool(&dp.sqlite_url()).await;
    insert_email(&pool, "ancient", "sent", DAY * 3650).await;
    insert_generation(&pool, "ancient", "succeeded", DAY * 3650).await;
    insert_audit(&pool, "ancient", DAY * 3650).await;
    // Longer than the first run's delay and several intervals.
    tokio::time::sleep(Duration::from_secs(7)).await;
    assert_eq!(ids(&pool, "SELECT id FROM emails").await, ["ancient"]);
    assert_eq!(ids(&pool, "SELECT id FROM generations").await, ["ancient"]);
    assert_eq!(
        ids(&pool, "SELECT id FROM audit_log WHERE action = 'test.old'").await,
        ["ancient"]
    );
    assert!(!metrics_text(&dp).await.contains("retention_deleted_total{"));
}

#[test]
fn a_retention_that_is_not_whole_days_is_refused_naming_it() {
    for (var, value) in [
        ("RETENTION_EMAILS_DAYS", "0"),
        ("RETENTION_GENERATIONS_DAYS", "2w"),
        ("RETENTION_AUDIT_DAYS", "36501"),
    ] {
        let out = run(&[(var, value)], &["serve"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{var}={value} was accepted");
        assert!(
            stderr.contains(&format!("{var}=\"{value}\""))
                && stderr.contains("expected whole days from 1 to 36500, or `off`"),
            "{stderr}"
        );
    }
}
