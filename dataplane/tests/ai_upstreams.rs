//! Several model servers behind one route (`AI_UPSTREAMS`): two real
//! llama.cpp servers (testkit::LlamaServer, SmolLM2-135M). One is killed
//! mid-run, or frozen with SIGSTOP; requests move to the other within the
//! request's deadline, and the first is taken again once it answers after
//! its cool-down.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use common::*;
use reqwest::StatusCode;
use serde_json::{Value, json};
use testkit::LlamaServer;

fn start_with(first: &LlamaServer, second: &LlamaServer, extra: &[(&str, &str)]) -> DataPlane {
    let (a, b) = (first.base_url(), second.base_url());
    let mut env = vec![
        ("AI_UPSTREAMS", "first,second"),
        ("AI_UPSTREAM_FIRST_BASE_URL", a.as_str()),
        ("AI_UPSTREAM_SECOND_BASE_URL", b.as_str()),
        ("OPENAI_MODEL", testkit::llama::MODEL),
        ("AI_COOLDOWN_SECS", "1"),
    ];
    env.extend_from_slice(extra);
    start(&env)
}

async fn generate(client: &reqwest::Client, dp: &DataPlane, stream: bool) -> reqwest::Response {
    client
        .post(dp.url("/api/generate-content"))
        .json(&json!({"prompt": "Say hello.", "max_tokens": 4, "temperature": 0, "stream": stream}))
        .send()
        .await
        .unwrap()
}

/// Chat completions a llama server logged (uvicorn's access log).
fn answered(llama: &mut LlamaServer) -> usize {
    llama
        .process()
        .output_lines()
        .iter()
        .filter(|l| l.contains("POST /v1/chat/completions"))
        .count()
}

#[tokio::test]
async fn a_killed_first_server_moves_every_request_to_the_second_and_returns_after_its_cooldown() {
    let mut first = LlamaServer::start().unwrap();
    let mut second = LlamaServer::start().unwrap();
    let dp = start_with(&first, &second, &[]);
    let client = authed(&dp).await;

    // Two callers, 12 generations each; the first server is killed after
    // the fourth answer, while the others are in flight.
    let done = Arc::new(AtomicUsize::new(0));
    let callers: Vec<_> = (0..2)
        .map(|_| {
            let (client, url, done) = (
                client.clone(),
                dp.url("/api/generate-content"),
                done.clone(),
            );
            tokio::spawn(async move {
                let mut statuses = Vec::new();
                for _ in 0..12 {
                    let response = client
                        .post(&url)
                        .json(&json!({"prompt": "Say hello.", "max_tokens": 4, "temperature": 0}))
                        .send()
                        .await
                        .unwrap();
                    statuses.push(response.status());
                    done.fetch_add(1, Ordering::SeqCst);
                }
                statuses
            })
        })
        .collect();
    while done.load(Ordering::SeqCst) < 4 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    first.kill().unwrap();
    for caller in callers {
        let statuses = caller.await.unwrap();
        assert!(
            statuses.iter().all(|s| *s == StatusCode::OK),
            "{statuses:?}"
        );
    }
    assert!(metric(&dp, "ai_fallbacks_total").await.unwrap() >= 1.0);
    assert_eq!(
        metric(&dp, "ai_upstream_up{upstream=\"first\"}").await,
        Some(0.0),
        "three failures in a row cool the first server down"
    );
    let cooling = wait_for(
        "ai:first reported cooling",
        Duration::from_secs(15),
        || async {
            let health = json(get(&dp, "/api/health/detailed").await).await;
            let check = health["checks"]["ai:first"].clone();
            match check["error"].as_str() {
                Some(e) if e.contains("cooling down") => Ok(health),
                _ => Err(health.to_string()),
            }
        },
    )
    .await;
    assert_eq!(cooling["checks"]["ai"]["status"], "healthy", "{cooling}");
    assert_eq!(
        cooling["checks"]["ai:second"]["status"], "healthy",
        "{cooling}"
    );

    // A stream opens on the second server too.
    let stream = generate(&client, &dp, true).await;
    assert_eq!(stream.status(), StatusCode::OK);
    let body = stream.text().await.unwrap();
    assert!(
        body.contains("event: done") && body.contains("succeeded"),
        "{body}"
    );

    // Back: after the cool-down the background check finds it answering,
    // and it is first in line again.
    first.restart().unwrap();
    wait_for(
        "the first server taken again",
        Duration::from_secs(30),
        || async {
            match metric(&dp, "ai_upstream_up{upstream=\"first\"}").await {
                Some(1.0) => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;
    let (before_first, before_second) = (answered(&mut first), answered(&mut second));
    let response = generate(&client, &dp, false).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(answered(&mut first), before_first + 1);
    assert_eq!(answered(&mut second), before_second);
}

#[tokio::test]
async fn a_frozen_first_server_costs_its_own_timeout_and_never_the_deadline() {
    let mut first = LlamaServer::start().unwrap();
    let second = LlamaServer::start().unwrap();
    first.process().signal("STOP").unwrap();

    // Its own timeout (2 s) is within the deadline: the second answers.
    let dp = start_with(
        &first,
        &second,
        &[
            ("AI_UPSTREAM_FIRST_TIMEOUT_SECS", "2"),
            ("AI_TIMEOUT_SECS", "20"),
        ],
    );
    let client = authed(&dp).await;
    let started = Instant::now();
    let response = generate(&client, &dp, false).await;
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "{}",
        json(response).await
    );
    assert!(started.elapsed() >= Duration::from_secs(2));
    assert_eq!(metric(&dp, "ai_fallbacks_total").await, Some(1.0));
    drop(dp);

    // Its own timeout (10 s) outlasts the request's deadline (3 s): the
    // deadline wins, and the answer is a 504 at that deadline.
    let dp = start_with(
        &first,
        &second,
        &[
            ("AI_UPSTREAM_FIRST_TIMEOUT_SECS", "10"),
            ("AI_TIMEOUT_SECS", "3"),
        ],
    );
    let client = authed(&dp).await;
    let started = Instant::now();
    let response = generate(&client, &dp, false).await;
    let waited = started.elapsed();
    assert_eq!(response.status(), StatusCode::GATEWAY_TIMEOUT);
    let body: Value = json(response).await;
    assert!(body.to_string().contains("3s"), "{body}");
    assert!(waited < Duration::from_secs(10), "{waited:?}");
    first.process().signal("CONT").unwrap();
}
