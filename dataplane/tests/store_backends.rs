//! The same migrations and queries on both stores: SQLite (the default file in
//! the data directory) and a real PostgreSQL 15. Stats are counted right by
//! status and period, served from the cache, and a store that goes away turns
//! into 5xx answers that still carry the security headers.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::*;
use reqwest::StatusCode;

const MINUTE: Duration = Duration::from_secs(60);
const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(24 * 3600);

/// Arranges rows of every age and status, then checks `/api/stats` counts
/// them right. Runs unchanged against both stores.
async fn stats_count_by_status_and_period(dp: &DataPlane, store_url: &str) {
    let pool = store_pool(store_url).await;
    insert_email(&pool, "e1", "sent", MINUTE).await;
    insert_email(&pool, "e2", "sent", 2 * HOUR).await;
    insert_email(&pool, "e3", "sent", 2 * DAY).await;
    insert_email(&pool, "e4", "failed", 5 * MINUTE).await;
    insert_email(&pool, "e5", "queued", Duration::ZERO).await;
    insert_generation(&pool, "g1", "succeeded", 10 * MINUTE).await;
    insert_generation(&pool, "g2", "failed", 3 * DAY).await;

    let response = get(dp, "/api/stats").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["x-cache"], "miss");
    let stats = json(response).await;
    assert_eq!(counts(&stats["emails"]["by_status"]["sent"]), (1, 2, 3));
    assert_eq!(counts(&stats["emails"]["by_status"]["failed"]), (1, 1, 1));
    assert_eq!(counts(&stats["emails"]["by_status"]["queued"]), (1, 1, 1));
    assert_eq!(counts(&stats["emails"]["by_status"]["sending"]), (0, 0, 0));
    assert_eq!(counts(&stats["emails"]["total"]), (3, 4, 5));
    assert_eq!(
        counts(&stats["generations"]["by_status"]["succeeded"]),
        (1, 1, 1)
    );
    assert_eq!(counts(&stats["generations"]["total"]), (1, 1, 2));
    pool.close().await;
}

#[tokio::test]
async fn stats_on_sqlite() {
    let dp = start(&[]);
    stats_count_by_status_and_period(&dp, &dp.sqlite_url()).await;
}

#[tokio::test]
async fn stats_on_postgres() {
    let pg = Postgres::start().unwrap();
    let url = pg.create_database("stats").unwrap();
    let dp = start(&[("DATABASE_URL", &url)]);
    let detailed = json(get(&dp, "/api/health/detailed").await).await;
    assert_eq!(detailed["checks"]["database"]["backend"], "postgres");
    stats_count_by_status_and_period(&dp, &url).await;
}

#[tokio::test]
async fn stats_are_served_from_the_cache_until_the_ttl_passes() {
    let dp = start(&[("STATS_CACHE_TTL_SECS", "2")]);
    let pool = store_pool(&dp.sqlite_url()).await;

    let first = get(&dp, "/api/stats").await;
    assert_eq!(first.headers()["x-cache"], "miss");
    assert_eq!(json(first).await["emails"]["total"]["all_time"], 0);
    assert_eq!(metric(&dp, "cache_hit_rate").await, Some(0.0));

    // A row added now is not seen: the second answer does not touch the store.
    insert_email(&pool, "late", "sent", Duration::ZERO).await;
    let second = get(&dp, "/api/stats").await;
    assert_eq!(second.headers()["x-cache"], "hit");
    assert_eq!(json(second).await["emails"]["total"]["all_time"], 0);
    assert_eq!(metric(&dp, "cache_hit_rate").await, Some(0.5));
    assert_eq!(
        metric(&dp, r#"cache_requests_total{result="hit"}"#).await,
        Some(1.0)
    );

    tokio::time::sleep(Duration::from_millis(2100)).await;
    let third = get(&dp, "/api/stats").await;
    assert_eq!(third.headers()["x-cache"], "miss");
    assert_eq!(json(third).await["emails"]["total"]["all_time"], 1);
}

#[tokio::test]
async fn a_store_that_goes_away_gives_5xx_answers_with_the_headers_and_no_internals() {
    let mut pg = Postgres::start().unwrap();
    let url = pg.create_database("outage").unwrap();
    let dp = start(&[("DATABASE_URL", &url)]);
    assert_eq!(get(&dp, "/api/health/ready").await.status(), StatusCode::OK);

    pg.stop().unwrap();

    let ready = get(&dp, "/api/health/ready").await;
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_security_headers(ready.headers());
    assert_eq!(json(ready).await["status"], "not_ready");

    let detailed = get(&dp, "/api/health/detailed").await;
    assert_eq!(detailed.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_security_headers(detailed.headers());
    let body = json(detailed).await;
    assert_eq!(body["status"], "unhealthy");
    assert_eq!(body["checks"]["database"]["status"], "unhealthy");
    assert_eq!(body["checks"]["cache"]["status"], "healthy");

    let stats = get(&dp, "/api/stats").await;
    assert_eq!(stats.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_security_headers(stats.headers());
    let request_id = stats.headers()["x-request-id"].to_str().unwrap().to_owned();
    let body = json(stats).await;
    assert_eq!(body["error"]["code"], "internal_error");
    let text = body.to_string();
    assert!(
        !text.contains("127.0.0.1") && !text.contains("sqlx") && !text.contains("database error"),
        "{text}"
    );

    // Liveness touches no dependency: the pod is not restarted for an outage.
    assert_eq!(get(&dp, "/api/health").await.status(), StatusCode::OK);

    // The detail is in the log, under the request's id.
    let mut dp = dp;
    let line = dp
        .process()
        .wait_for_line(
            |l| l.contains(&request_id) && l.contains("request failed"),
            Duration::from_secs(5),
        )
        .unwrap();
    assert!(line.contains("database error"), "{line}");

    pg.restart().unwrap();
    eventually(
        Duration::from_secs(15),
        "readiness after PostgreSQL returns",
        || async { get(&dp, "/api/health/ready").await.status() == StatusCode::OK },
    )
    .await;
}

/// The console's queries (filtered, paged email list; hourly series; retry;
/// disabling an account) through the API and the console's pages, on one
/// store.
async fn console_queries(dp: &DataPlane, store_url: &str) {
    let pool = store_pool(store_url).await;
    for (id, status, ago, to) in [
        ("c1", "sent", MINUTE, "ann@example.com"),
        ("c2", "failed", 2 * MINUTE, "bob_100%@example.com"),
        ("c3", "sent", 2 * HOUR, "Ann.Other@example.com"),
        ("c4", "queued", Duration::ZERO, "carl@example.com"),
    ] {
        insert_email(&pool, id, status, ago).await;
        sqlx::query(
            "UPDATE emails SET recipients = $1, subject = $2, \
             sent_at = CASE WHEN status = 'sent' THEN created_at ELSE NULL END WHERE id = $3",
        )
        .bind(serde_json::json!({ "to": [to] }).to_string())
        .bind(format!("subject {id}"))
        .bind(id)
        .execute(&pool)
        .await
        .unwrap();
    }
    insert_generation(&pool, "g1", "succeeded", MINUTE).await;
    pool.close().await;

    let admin = authed(dp).await;
    // The console takes the session cookie, not a bearer token.
    let token = token(dp).await;
    let cookie_client = |path: String| {
        let token = token.clone();
        async move {
            client()
                .get(path)
                .header("cookie", format!("__Host-sv_session={token}"))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap()
        }
    };
    let list = cookie_client(dp.url("/console/emails?recipient=ANN")).await;
    assert!(
        list.contains("subject c1") && list.contains("subject c3"),
        "{list}"
    );
    assert!(!list.contains("subject c2"));
    // `%` and `_` are the text typed, not patterns.
    let list = cookie_client(dp.url("/console/emails?recipient=b_100%25")).await;
    assert!(
        list.contains("subject c2") && !list.contains("subject c1"),
        "{list}"
    );
    let list = cookie_client(dp.url("/console/emails?status=sent")).await;
    assert!(
        list.contains("subject c1") && list.contains("subject c3") && !list.contains("subject c4")
    );
    let overview = cookie_client(dp.url("/console")).await;
    assert!(overview.contains("2 sent, 1 failed"), "{overview}");
    assert!(overview.contains("1 succeeded, 0 failed"), "{overview}");

    let retried = admin
        .post(dp.url("/api/emails/c2/retry"))
        .send()
        .await
        .unwrap();
    assert_eq!(retried.status(), StatusCode::ACCEPTED);
    assert_eq!(json(retried).await["status"], "queued");
    let again = admin
        .post(dp.url("/api/emails/c1/retry"))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::CONFLICT);

    let user = json(
        admin
            .post(dp.url("/api/users"))
            .json(&serde_json::json!({"username": "dora", "password": "dora-password-123", "role": "member"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let id = user["id"].as_str().unwrap();
    let disabled = admin
        .patch(dp.url(&format!("/api/users/{id}")))
        .json(&serde_json::json!({"disabled": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(disabled.status(), StatusCode::OK);
    assert!(json(disabled).await["disabled_at"].is_string());
    let refused = client()
        .post(dp.url("/api/auth/login"))
        .json(&serde_json::json!({"username": "dora", "password": "dora-password-123"}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn console_queries_on_sqlite() {
    let dp = start(&[]);
    console_queries(&dp, &dp.sqlite_url()).await;
}

#[tokio::test]
async fn console_queries_on_postgres() {
    let pg = Postgres::start().unwrap();
    let url = pg.create_database("console").unwrap();
    let dp = start(&[("DATABASE_URL", &url)]);
    console_queries(&dp, &url).await;
}
