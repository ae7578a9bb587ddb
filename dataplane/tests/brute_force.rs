//! Brute-force protection under concurrency, against the real binary: the
//! attempt is counted before the password is verified, so no burst of
//! logins sent at once gets more than `LOGIN_MAX_FAILURES` wrong passwords
//! verified, on one replica or on two sharing a real Redis; a Redis restart
//! does not split the count; a block writes one audit row, not one per
//! refused attempt.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::*;
use reqwest::StatusCode;
use serde_json::json;

const MAX_FAILURES: u32 = 5;

async fn try_login(dp: &DataPlane, username: &str, password: &str) -> StatusCode {
    client()
        .post(dp.url("/api/auth/login"))
        .json(&json!({ "username": username, "password": password }))
        .send()
        .await
        .unwrap()
        .status()
}

/// Wrong passwords the replica verified (the metric of its argon2 calls
/// that did not match).
async fn wrong_verified(dp: &DataPlane) -> f64 {
    metric(
        dp,
        r#"auth_password_verifications_total{result="mismatch"}"#,
    )
    .await
    .unwrap_or(0.0)
}

/// 39 wrong passwords for the administrator sent at once, then the right
/// one while they are still in flight, spread over `replicas` in turn.
/// Returns every status, the right one's last.
async fn burst(replicas: &[&DataPlane]) -> Vec<StatusCode> {
    let mut wrong = Vec::new();
    for i in 0..39 {
        let dp = replicas[i % replicas.len()];
        wrong.push(try_login(dp, testkit::ADMIN_USERNAME, "not the password"));
    }
    let wrong = futures::future::join_all(wrong);
    let right = async {
        // Sent last: after the 39 are on their way.
        tokio::time::sleep(Duration::from_millis(50)).await;
        try_login(
            replicas[replicas.len() - 1],
            testkit::ADMIN_USERNAME,
            testkit::ADMIN_PASSWORD,
        )
        .await
    };
    let (mut statuses, right) = tokio::join!(wrong, right);
    statuses.push(right);
    statuses
}

fn assert_held(statuses: &[StatusCode], verified: f64) {
    assert!(
        statuses
            .iter()
            .all(|s| *s == StatusCode::UNAUTHORIZED || *s == StatusCode::TOO_MANY_REQUESTS),
        "every login refused, the right one included: {statuses:?}"
    );
    let refused = statuses
        .iter()
        .filter(|s| **s == StatusCode::UNAUTHORIZED)
        .count();
    assert!(
        refused <= MAX_FAILURES as usize,
        "{refused} wrong passwords judged (401), at most {MAX_FAILURES}: {statuses:?}"
    );
    assert!(
        verified <= f64::from(MAX_FAILURES),
        "{verified} wrong passwords verified, at most {MAX_FAILURES}"
    );
    assert!(verified >= 1.0, "the metric counts verifications");
}

#[tokio::test]
async fn forty_logins_at_once_verify_at_most_the_limit_on_one_replica() {
    let dp = start(&[("LOGIN_BLOCK_SECS", "60")]);
    // The metric exists before anything was verified.
    assert_eq!(wrong_verified(&dp).await, 0.0);
    let statuses = burst(&[&dp]).await;
    assert_held(&statuses, wrong_verified(&dp).await);
    // And the block holds afterwards.
    assert_eq!(
        try_login(&dp, testkit::ADMIN_USERNAME, testkit::ADMIN_PASSWORD).await,
        StatusCode::TOO_MANY_REQUESTS
    );
}

#[tokio::test]
async fn forty_logins_at_once_split_over_two_replicas_share_the_limit() {
    let pg = Postgres::start().unwrap();
    let redis = Redis::start().unwrap();
    let url = pg.create_database("burst").unwrap();
    let redis_url = redis.url();
    let env = [
        ("DATABASE_URL", url.as_str()),
        ("REDIS_URL", redis_url.as_str()),
        ("LOGIN_BLOCK_SECS", "60"),
    ];
    let (a, b) = (start(&env), start(&env));
    // Both know the administrator (one store) before the burst.
    assert_eq!(wrong_verified(&a).await + wrong_verified(&b).await, 0.0);
    let statuses = burst(&[&a, &b]).await;
    let verified = wrong_verified(&a).await + wrong_verified(&b).await;
    assert_held(&statuses, verified);
    for dp in [&a, &b] {
        assert_eq!(
            try_login(dp, testkit::ADMIN_USERNAME, testkit::ADMIN_PASSWORD).await,
            StatusCode::TOO_MANY_REQUESTS
        );
    }
}

#[tokio::test]
async fn after_a_redis_restart_both_replicas_count_in_redis_at_once() {
    let pg = Postgres::start().unwrap();
    let mut redis = Redis::start().unwrap();
    let url = pg.create_database("restart").unwrap();
    let redis_url = redis.url();
    let env = [
        ("DATABASE_URL", url.as_str()),
        ("REDIS_URL", redis_url.as_str()),
        ("LOGIN_BLOCK_SECS", "60"),
    ];
    let (a, b) = (start(&env), start(&env));
    // Both replicas hold a connection to Redis (and the administrator signs
    // in now, to read the metrics once this address is blocked too)...
    for dp in [&a, &b] {
        token(dp).await;
        assert_eq!(
            try_login(dp, "warm-up", "wrong").await,
            StatusCode::UNAUTHORIZED
        );
    }
    // ...which the restart breaks (and empties: the warm-up failures go).
    redis.restart().unwrap();
    // Failures for one account spread over both replicas right away: each
    // replica's first call meets its stale connection.
    for i in 0..MAX_FAILURES as usize {
        let dp = if i % 2 == 0 { &a } else { &b };
        assert_eq!(
            try_login(dp, "alice", "guess").await,
            StatusCode::UNAUTHORIZED,
            "failure {i}"
        );
    }
    // One count in Redis: the account is blocked on both.
    for dp in [&a, &b] {
        assert_eq!(
            try_login(dp, "alice", "still guessing").await,
            StatusCode::TOO_MANY_REQUESTS
        );
        assert_eq!(
            metric(dp, "rate_limiter_fallback_total").await,
            Some(0.0),
            "no decision was taken from the replica's own counts"
        );
    }
}

#[tokio::test]
async fn a_block_writes_one_audit_row_not_one_per_refused_attempt() {
    let dp = start(&[("LOGIN_BLOCK_SECS", "60")]);
    // Signed in before the address is blocked, to read the trail after.
    token(&dp).await;
    for _ in 0..MAX_FAILURES {
        assert_eq!(
            try_login(&dp, "mallory", "guess").await,
            StatusCode::UNAUTHORIZED
        );
    }
    for _ in 0..50 {
        assert_eq!(
            try_login(&dp, "mallory", "guess").await,
            StatusCode::TOO_MANY_REQUESTS
        );
    }
    let page = json(get(&dp, "/api/audit?limit=500").await).await;
    let about_mallory: Vec<_> = page["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["target"] == "mallory")
        .map(|e| format!("{} {}", e["action"], e["outcome"]))
        .collect();
    let failures = about_mallory
        .iter()
        .filter(|e| *e == r#""login" "failure""#)
        .count();
    let blocks = about_mallory
        .iter()
        .filter(|e| e.starts_with(r#""login.block""#))
        .count();
    assert_eq!(
        (failures, blocks, about_mallory.len()),
        (MAX_FAILURES as usize, 1, MAX_FAILURES as usize + 1),
        "{about_mallory:?}"
    );
    // The refusals are still counted, in the metric.
    assert_eq!(
        metric(&dp, r#"auth_logins_total{outcome="blocked"}"#).await,
        Some(50.0)
    );
}
