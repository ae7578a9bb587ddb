//! How generation handles 429 and 5xx answers, with and without Retry-After.
//!
//! A real model server cannot be made to give these replies on demand, so
//! these tests use a scripted stand-in (`tests/ai/scripted_upstream.py`,
//! Python's standard library only) that answers what each test queues.
//! Everything else about generation is tested against the real llama.cpp
//! server in `ai.rs`.

// Test support below the tests: a failure is a failed test, so panicking is the point.
#![allow(clippy::unwrap_used, clippy::panic)]

mod common;

use std::{
    process::Command,
    time::{Duration, Instant},
};

use common::*;
use reqwest::StatusCode;
use serde_json::{Value, json};
use testkit::{Process, bins::workspace_script, free_port};

struct Scripted {
    _process: Process,
    port: u16,
}

impl Scripted {
    fn start() -> Self {
        let port = free_port();
        let mut cmd = Command::new("python3");
        cmd.arg(workspace_script("tests/ai/scripted_upstream.py").unwrap())
            .arg(port.to_string());
        let process = Process::spawn(&format!("scripted:{port}"), cmd).unwrap();
        process
            .wait_for_line(|l| l.contains("listening on"), Duration::from_secs(10))
            .unwrap();
        Self {
            _process: process,
            port,
        }
    }

    fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}/v1", self.port)
    }

    async fn script(&self, replies: Value) {
        let r = client()
            .post(format!("http://127.0.0.1:{}/_script", self.port))
            .json(&json!({ "replies": replies }))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success());
    }

    async fn hits(&self) -> u64 {
        let r = client()
            .get(format!("http://127.0.0.1:{}/_hits", self.port))
            .send()
            .await
            .unwrap();
        json(r).await["hits"].as_u64().unwrap()
    }
}

fn start_against(upstream: &Scripted, timeout_secs: &str) -> DataPlane {
    let base = upstream.base_url();
    start(&[
        ("OPENAI_BASE_URL", base.as_str()),
        ("OPENAI_MODEL", "scripted"),
        ("AI_TIMEOUT_SECS", timeout_secs),
    ])
}

async fn generate(dp: &DataPlane) -> (StatusCode, Value, Duration) {
    let started = Instant::now();
    let r = authed(dp)
        .await
        .post(dp.url("/api/generate-content"))
        .json(&json!({"prompt": "Hi"}))
        .send()
        .await
        .unwrap();
    let status = r.status();
    (status, json(r).await, started.elapsed())
}

#[tokio::test]
async fn a_failing_answer_is_retried_once() {
    let upstream = Scripted::start();
    let dp = start_against(&upstream, "10");

    upstream.script(json!([{"status": 503}])).await;
    let (status, body, _) = generate(&dp).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["text"], "scripted answer");
    assert_eq!(upstream.hits().await, 2);

    // Twice failing: one retry only, then 502.
    upstream
        .script(json!([{"status": 500}, {"status": 500}, {"status": 500}]))
        .await;
    let (status, body, _) = generate(&dp).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert_eq!(body["error"]["code"], "bad_gateway");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("500"),
        "{body}"
    );
    assert_eq!(upstream.hits().await, 4);

    // A client error is not retried.
    upstream.script(json!([{"status": 400}])).await;
    let (status, _, _) = generate(&dp).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert_eq!(upstream.hits().await, 5);
}

#[tokio::test]
async fn retry_after_is_honoured_only_within_the_deadline() {
    let upstream = Scripted::start();
    let dp = start_against(&upstream, "5");

    // Within the deadline: waited for, then retried.
    upstream
        .script(json!([{"status": 429, "retry_after": "1"}]))
        .await;
    let (status, body, took) = generate(&dp).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(
        took >= Duration::from_secs(1),
        "Retry-After not waited for: {took:?}"
    );
    assert_eq!(upstream.hits().await, 2);

    // Beyond it: no waiting past the deadline, the failure at once.
    upstream
        .script(json!([{"status": 429, "retry_after": "60"}]))
        .await;
    let (status, body, took) = generate(&dp).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("429"),
        "{body}"
    );
    assert!(took < Duration::from_secs(5), "waited {took:?}");
    assert_eq!(upstream.hits().await, 3);
    assert_eq!(
        metric(&dp, r#"ai_generations_total{status="failed"}"#).await,
        Some(1.0)
    );
}
