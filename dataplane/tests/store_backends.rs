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

    // The detailed report needs a credential, which the store holds: the
    // monitoring system reads the checks from the metrics listener instead.
    eventually(
        Duration::from_secs(15),
        "the database check failing in the metrics",
        || async {
            metric(&dp, r#"health_check_status{check="database"}"#).await == Some(0.0)
                && metric(&dp, r#"health_check_status{check="cache"}"#).await == Some(1.0)
        },
    )
    .await;

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
    let list = console_page(dp, &token, "/console/emails?recipient=ANN").await;
    assert!(
        list.contains("subject c1") && list.contains("subject c3"),
        "{list}"
    );
    assert!(!list.contains("subject c2"));
    // `%` and `_` are the text typed, not patterns.
    let list = console_page(dp, &token, "/console/emails?recipient=b_100%25").await;
    assert!(
        list.contains("subject c2") && !list.contains("subject c1"),
        "{list}"
    );
    let list = console_page(dp, &token, "/console/emails?status=sent").await;
    assert!(
        list.contains("subject c1") && list.contains("subject c3") && !list.contains("subject c4")
    );
    let overview = console_page(dp, &token, "/console").await;
    assert!(overview.contains("2 sent, 1 failed"), "{overview}");
    assert!(overview.contains("1 succeeded, 0 failed"), "{overview}");
    // An administrator's history holds every generation, authored or not.
    let history = console_page(dp, &token, "/console/generations").await;
    assert!(
        history.contains("Every generation") && history.contains("badge succeeded"),
        "{history}"
    );

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

/// The API keys' queries (owner, expiry, last use) through the API, on one
/// store: a key acts for its owner's account, and dies with it; an expired
/// key is refused; a use is recorded once, not per request.
async fn key_queries(dp: &DataPlane, store_url: &str) {
    let admin = authed(dp).await;
    let r = admin
        .post(dp.url("/api/users"))
        .json(&serde_json::json!({"username": "kim", "password": "kim-password-1234", "role": "admin"}))
        .send()
        .await
        .unwrap();
    let kim_id = json(r).await["id"].as_str().unwrap().to_owned();
    let kim = bearer(&login(dp, "kim", "kim-password-1234").await);
    let created = kim
        .post(dp.url("/api/keys"))
        .json(&serde_json::json!({"name": "kim-ops", "scopes": ["admin"], "expires_at": "2099-01-01T00:00:00Z"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    let created = json(created).await;
    let key = created["key"].as_str().unwrap().to_owned();
    let machine = bearer(&key);
    let sub = machine
        .post(dp.url("/api/keys"))
        .json(&serde_json::json!({"name": "kim-sub", "scopes": ["email"]}))
        .send()
        .await
        .unwrap();
    let sub = json(sub).await;
    let listed = json(get(dp, "/api/keys").await).await;
    let find = |name: &str| {
        listed
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["name"] == name)
            .unwrap()
            .clone()
    };
    let ops = find("kim-ops");
    assert_eq!(ops["owner_id"], kim_id.as_str());
    assert_eq!(ops["expires_at"], "2099-01-01T00:00:00.000Z");
    assert!(ops["last_used_at"].is_string(), "{ops}");
    assert_eq!(find("kim-sub")["owner_id"], kim_id.as_str());
    assert!(find("kim-sub")["last_used_at"].is_null());

    // Expired in the store: refused (it was never used, so never cached).
    let pool = store_pool(store_url).await;
    sqlx::query("UPDATE api_keys SET expires_at = $1 WHERE id = $2")
        .bind(millis_ago(Duration::from_secs(1)))
        .bind(sub["id"].as_str().unwrap())
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    let r = bearer(sub["key"].as_str().unwrap())
        .get(dp.url("/api/auth/me"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    let r = admin
        .patch(dp.url(&format!("/api/users/{kim_id}")))
        .json(&serde_json::json!({"disabled": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = machine.get(dp.url("/api/users")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn key_queries_on_sqlite() {
    let dp = start(&[]);
    key_queries(&dp, &dp.sqlite_url()).await;
}

#[tokio::test]
async fn key_queries_on_postgres() {
    let pg = Postgres::start().unwrap();
    let url = pg.create_database("keys").unwrap();
    let dp = start(&[("DATABASE_URL", &url)]);
    key_queries(&dp, &url).await;
}

/// Keys made before owners were recorded get theirs from the migration: the
/// user who made them, or who made the key that made them.
async fn legacy_keys_get_their_owners(url: &str) {
    let legacy = legacy_key_store(url).await;
    let dp = start(&[("DATABASE_URL", url)]);
    check_legacy_keys(&dp, &legacy).await;
    let r = authed(&dp)
        .await
        .patch(dp.url(&format!("/api/users/{LEGACY_OWNER}")))
        .json(&serde_json::json!({"disabled": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    for key in &legacy {
        let r = bearer(&key.token)
            .get(dp.url("/api/auth/me"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "key {}", key.id);
    }
}

#[tokio::test]
async fn legacy_keys_get_their_owners_on_sqlite() {
    let dir = TempDir::new("legacy").unwrap();
    let url = format!("sqlite://{}", dir.path().join("securevault.db").display());
    legacy_keys_get_their_owners(&url).await;
}

#[tokio::test]
async fn legacy_keys_get_their_owners_on_postgres() {
    let pg = Postgres::start().unwrap();
    let url = pg.create_database("legacy").unwrap();
    legacy_keys_get_their_owners(&url).await;
}
