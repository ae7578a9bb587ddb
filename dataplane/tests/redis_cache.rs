//! Redis as the cache: shared by replicas, and a Redis outage only degrades
//! the service, which recovers by itself when Redis returns.

mod common;

use std::time::Duration;

use common::*;
use reqwest::StatusCode;

#[tokio::test]
async fn detailed_health_turns_degraded_without_redis_and_healthy_when_it_returns() {
    let mut redis = Redis::start().unwrap();
    let dp = start(&[("REDIS_URL", &redis.url())]);

    let body = json(get(&dp, "/api/health/detailed").await).await;
    assert_eq!(body["status"], "healthy");
    assert_eq!(body["checks"]["cache"]["backend"], "redis");

    redis.stop().unwrap();
    // Degraded is still a 200: the service works without its cache. The
    // next round of background checks sees it.
    let body = wait_for(
        "the detailed health to report the cache down",
        Duration::from_secs(15),
        || async {
            let response = get(&dp, "/api/health/detailed").await;
            assert_eq!(response.status(), StatusCode::OK);
            let body = json(response).await;
            if body["status"] == "degraded" {
                Ok(body)
            } else {
                Err(body.to_string())
            }
        },
    )
    .await;
    assert_eq!(body["checks"]["cache"]["status"], "unhealthy");
    assert!(body["checks"]["cache"]["error"].is_string());
    assert_eq!(body["checks"]["database"]["status"], "healthy");

    // Stats still answer, counted in the store.
    let stats = get(&dp, "/api/stats").await;
    assert_eq!(stats.status(), StatusCode::OK);
    assert_eq!(stats.headers()["x-cache"], "miss");

    redis.restart().unwrap();
    eventually(
        Duration::from_secs(15),
        "healthy after Redis returns",
        || async { json(get(&dp, "/api/health/detailed").await).await["status"] == "healthy" },
    )
    .await;
}

#[tokio::test]
async fn replicas_share_the_stats_cache_in_redis() {
    let redis = Redis::start().unwrap();
    let pg = Postgres::start().unwrap();
    let url = pg.create_database("shared").unwrap();
    let env = [("REDIS_URL", redis.url()), ("DATABASE_URL", url)];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let a = start(&env);
    let b = start(&env);

    assert_eq!(get(&a, "/api/stats").await.headers()["x-cache"], "miss");
    // The other replica finds what the first one counted.
    assert_eq!(get(&b, "/api/stats").await.headers()["x-cache"], "hit");
    assert_eq!(metric(&b, "cache_hit_rate").await, Some(1.0));
}
