//! Per-principal rate limits shared by two data-plane processes through a
//! real Redis (and a real PostgreSQL for the accounts they share), and what
//! happens while Redis is gone.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use reqwest::{Response, StatusCode};
use serde_json::json;

/// Two data planes on one PostgreSQL and one Redis, with `env` on top.
fn pair(pg: &Postgres, redis: &Redis, db: &str, env: &[(&str, &str)]) -> (DataPlane, DataPlane) {
    let url = pg.create_database(db).unwrap();
    let redis_url = redis.url();
    let mut all = vec![
        ("DATABASE_URL", url.as_str()),
        ("REDIS_URL", redis_url.as_str()),
    ];
    all.extend_from_slice(env);
    (start(&all), start(&all))
}

/// An API key with every scope, created on `dp`: a principal both replicas know.
async fn key(dp: &DataPlane) -> reqwest::Client {
    let r = authed(dp)
        .await
        .post(dp.url("/api/keys"))
        .json(&json!({ "name": "load", "scopes": ["email", "ai", "admin"] }))
        .send()
        .await
        .unwrap();
    bearer(json(r).await["key"].as_str().unwrap())
}

/// Calls `call` on the two data planes in turn until one is refused;
/// returns how many passed, the refusal, and how long it took.
async fn until_refused<F, Fut>(mut call: F) -> (u32, Response, Duration)
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = reqwest::Result<Response>>,
{
    let started = Instant::now();
    for i in 0..10_000 {
        let r = call(i).await.unwrap();
        assert_ne!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
        if r.status() == StatusCode::TOO_MANY_REQUESTS {
            return (i, r, started.elapsed());
        }
        assert!(
            r.headers().contains_key("ratelimit"),
            "no RateLimit header on {}",
            r.status()
        );
    }
    panic!("never refused");
}

/// A GCRA budget of `limit` per `period` refills one request every
/// `period / limit`: while `n` requests took `elapsed`, at most that many
/// more than `limit` can pass. Fewer than `limit` must never be refused.
fn within_budget(passed: u32, limit: u32, period: Duration, elapsed: Duration) -> bool {
    let refill = (elapsed.as_secs_f64() / (period.as_secs_f64() / f64::from(limit))).ceil() as u32;
    passed >= limit && passed <= limit + refill
}

#[tokio::test]
async fn two_replicas_share_one_budget_per_principal() {
    let pg = Postgres::start().unwrap();
    let redis = Redis::start().unwrap();
    let (a, b) = pair(
        &pg,
        &redis,
        "shared",
        &[
            ("RATE_LIMIT_API", "60/1m"),
            ("RATE_LIMIT_EMAIL", "10/1m"),
            ("RATE_LIMIT_AI", "5/1m"),
        ],
    );
    let caller = key(&a).await;

    // API: 60 per minute across both replicas, the 61st refused on either.
    let (passed, refused, elapsed) = until_refused(|i| {
        let dp = if i % 2 == 0 { &a } else { &b };
        caller.get(dp.url("/api/auth/me")).send()
    })
    .await;
    assert!(
        within_budget(passed, 60, Duration::from_secs(60), elapsed),
        "{passed} passed in {elapsed:?}"
    );
    assert_eq!(refused.headers()["ratelimit-policy"], "\"api\";q=60;w=60");
    assert!(
        refused.headers()["ratelimit"]
            .to_str()
            .unwrap()
            .starts_with("\"api\";r=0;")
    );
    let retry: u64 = refused.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(retry, 1, "one request refills every second");
    assert_eq!(json(refused).await["error"]["code"], "rate_limited");
    for dp in [&a, &b] {
        let r = caller.get(dp.url("/api/auth/me")).send().await.unwrap();
        assert_eq!(
            r.status(),
            StatusCode::TOO_MANY_REQUESTS,
            "on {}",
            dp.addr()
        );
    }
    // Another principal has its own budget.
    let admin = authed(&b).await;
    assert_eq!(
        admin
            .get(b.url("/api/auth/me"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    // The budget refills: one request per second.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let r = caller.get(b.url("/api/auth/me")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(
        r.headers()["ratelimit"]
            .to_str()
            .unwrap()
            .starts_with("\"api\";r=0;")
    );
}

#[tokio::test]
async fn sending_and_generating_have_their_own_shared_budgets() {
    let pg = Postgres::start().unwrap();
    let redis = Redis::start().unwrap();
    let mailpit = Mailpit::start().unwrap();
    let smtp_port = mailpit.smtp_port().to_string();
    // AI is not configured, so each generation the guard admits is answered
    // 503 by the route: the budget is spent at the guard, before the model
    // server would be asked, which is what this test is about.
    let (a, b) = pair(
        &pg,
        &redis,
        "budgets",
        &[
            ("RATE_LIMIT_API", "1000/1m"),
            ("RATE_LIMIT_EMAIL", "10/1m"),
            ("RATE_LIMIT_AI", "5/1m"),
            ("SMTP_HOST", "127.0.0.1"),
            ("SMTP_PORT", &smtp_port),
            ("SMTP_TLS", "none"),
            ("SMTP_FROM", "vault@example.com"),
        ],
    );
    let caller = key(&a).await;

    let (sent, refused, elapsed) = until_refused(|i| {
        let dp = if i % 2 == 0 { &a } else { &b };
        caller
            .post(dp.url("/api/send-email"))
            .json(&json!({"to": "a@example.com", "subject": format!("n{i}"), "text": "t"}))
            .send()
    })
    .await;
    assert!(
        within_budget(sent, 10, Duration::from_secs(60), elapsed),
        "{sent} sent in {elapsed:?}"
    );
    assert_eq!(
        refused.headers()["ratelimit-policy"],
        "\"api\";q=1000;w=60, \"email\";q=10;w=60"
    );
    let retry: u64 = refused.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((5..=6).contains(&retry), "Retry-After {retry}");
    // Reading status is not sending: it stays allowed.
    let status = caller.get(a.url("/api/emails/nope")).send().await.unwrap();
    assert_eq!(status.status(), StatusCode::NOT_FOUND);
    eventually(
        Duration::from_secs(10),
        "the accepted emails to arrive",
        || async { mailpit.message_count().unwrap() == sent as usize },
    )
    .await;

    let (generated, refused, elapsed) = until_refused(|i| {
        let dp = if i % 2 == 0 { &a } else { &b };
        caller
            .post(dp.url("/api/generate-content"))
            .json(&json!({"prompt": "Hi"}))
            .send()
    })
    .await;
    assert!(
        within_budget(generated, 5, Duration::from_secs(60), elapsed),
        "{generated} in {elapsed:?}"
    );
    assert!(
        refused.headers()["ratelimit-policy"]
            .to_str()
            .unwrap()
            .ends_with("\"ai\";q=5;w=60")
    );
}

#[tokio::test]
async fn without_redis_each_process_keeps_its_own_limits_and_says_so() {
    let pg = Postgres::start().unwrap();
    let mut redis = Redis::start().unwrap();
    let (a, b) = pair(&pg, &redis, "fallback", &[("RATE_LIMIT_API", "20/1m")]);
    let caller = key(&a).await;
    async fn health(dp: &DataPlane) -> serde_json::Value {
        json(get(dp, "/api/health/detailed").await).await
    }
    assert_eq!(
        health(&a).await["checks"]["rate_limiter"]["status"],
        "healthy"
    );

    redis.stop().unwrap();
    // Never a 500, and never unlimited: each process enforces the limit on
    // its own (so at most twice the budget passes across the two).
    for dp in [&a, &b] {
        let (passed, refused, elapsed) =
            until_refused(|_| caller.get(dp.url("/api/auth/me")).send()).await;
        assert!(
            within_budget(passed, 20, Duration::from_secs(60), elapsed),
            "{passed} passed on {}",
            dp.addr()
        );
        assert!(refused.headers().contains_key("retry-after"));
    }
    // The next round of background checks sees it.
    let report = wait_for(
        "the detailed health to report the fallback",
        Duration::from_secs(15),
        || async {
            let report = health(&a).await;
            if report["checks"]["rate_limiter"]["status"] == "unhealthy" {
                Ok(report)
            } else {
                Err(report.to_string())
            }
        },
    )
    .await;
    assert_eq!(report["status"], "degraded", "{report}");
    assert!(
        report["checks"]["rate_limiter"]["error"]
            .as_str()
            .unwrap()
            .contains("per-process")
    );
    assert_eq!(metric(&a, "rate_limiter_redis_up").await, Some(0.0));

    // Redis back (empty: no persistence): shared limiting resumes, one
    // budget for both again.
    redis.restart().unwrap();
    eventually(
        Duration::from_secs(20),
        "the limiter to use Redis again",
        || async {
            health(&a).await["checks"]["rate_limiter"]["status"] == "healthy"
                && health(&b).await["checks"]["rate_limiter"]["status"] == "healthy"
        },
    )
    .await;
    let (passed, _, elapsed) = until_refused(|i| {
        let dp = if i % 2 == 0 { &a } else { &b };
        caller.get(dp.url("/api/auth/me")).send()
    })
    .await;
    assert!(
        within_budget(passed, 20, Duration::from_secs(60), elapsed),
        "{passed} passed across both"
    );
    assert_eq!(metric(&a, "rate_limiter_redis_up").await, Some(1.0));
}

#[tokio::test]
async fn the_deny_policy_answers_503_while_redis_is_gone() {
    let mut redis = Redis::start().unwrap();
    let redis_url = redis.url();
    let dp = start(&[
        ("REDIS_URL", &redis_url),
        ("RATE_LIMIT_ON_REDIS_FAILURE", "deny"),
    ]);
    let admin = authed(&dp).await;
    assert_eq!(
        admin
            .get(dp.url("/api/auth/me"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    redis.stop().unwrap();
    let r = admin.get(dp.url("/api/auth/me")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(r.headers().contains_key("retry-after"));
    // Health and metrics are never limited.
    let health = client().get(dp.url("/api/health")).send().await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    redis.restart().unwrap();
    eventually(
        Duration::from_secs(10),
        "requests to pass again",
        || async {
            admin
                .get(dp.url("/api/auth/me"))
                .send()
                .await
                .unwrap()
                .status()
                == StatusCode::OK
        },
    )
    .await;
}
