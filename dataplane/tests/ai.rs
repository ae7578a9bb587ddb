//! Text generation against a real model server: llama.cpp's server running
//! SmolLM2-135M (testkit::LlamaServer), offline on 127.0.0.1.

// Test support below the tests: a failure is a failed test, so panicking is the point.
#![allow(clippy::unwrap_used, clippy::panic)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use futures::StreamExt;
use reqwest::StatusCode;
use serde_json::{Value, json};
use testkit::LlamaServer;

fn start_with_ai(llama: &LlamaServer, extra: &[(&str, &str)]) -> DataPlane {
    let base = llama.base_url();
    let mut env = vec![
        ("OPENAI_BASE_URL", base.as_str()),
        ("OPENAI_MODEL", testkit::llama::MODEL),
    ];
    env.extend_from_slice(extra);
    start(&env)
}

async fn generate(dp: &DataPlane, body: Value) -> reqwest::Response {
    authed(dp)
        .await
        .post(dp.url("/api/generate-content"))
        .json(&body)
        .send()
        .await
        .unwrap()
}

/// The server-sent events of `response`, as (event, data) pairs, reading at
/// most `limit` of them.
async fn events(response: reqwest::Response, limit: usize) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    let mut buffer = String::new();
    let mut body = response.bytes_stream();
    while out.len() < limit {
        let Some(chunk) = body.next().await else {
            break;
        };
        buffer.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
        while let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            let mut event = String::from("message");
            let mut data = String::new();
            for line in block.lines() {
                if let Some(e) = line.strip_prefix("event:") {
                    event = e.trim().to_owned();
                } else if let Some(d) = line.strip_prefix("data:") {
                    data.push_str(d.trim_start());
                }
            }
            if !data.is_empty() {
                out.push((event, serde_json::from_str(&data).unwrap()));
            }
        }
    }
    out
}

#[tokio::test]
async fn a_generation_returns_text_and_usage_and_is_kept() {
    let llama = LlamaServer::start().unwrap();
    let dp = start_with_ai(&llama, &[]);
    let response = generate(
        &dp,
        json!({"prompt": "Name three colours.", "max_tokens": 24, "temperature": 0}),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    let result = json(response).await;
    assert!(
        !result["text"].as_str().unwrap().trim().is_empty(),
        "{result}"
    );
    assert_eq!(result["status"], "succeeded");
    assert!(
        result["usage"]["prompt_tokens"].as_u64().unwrap() > 0,
        "{result}"
    );
    let out = result["usage"]["completion_tokens"].as_u64().unwrap();
    assert!((1..=24).contains(&out), "{result}");
    assert!(["stop", "length"].contains(&result["finish_reason"].as_str().unwrap()));

    let id = result["id"].as_str().unwrap();
    let kept = json(get(&dp, &format!("/api/generations/{id}")).await).await;
    assert_eq!(kept["text"], result["text"]);
    assert_eq!(kept["usage"], result["usage"]);
    // The audit trail has it, without the prompt or the answer.
    let audit = json(get(&dp, "/api/audit?action=ai.generate").await).await;
    let entry = &audit["entries"][0];
    assert_eq!(
        (entry["target"].as_str(), entry["outcome"].as_str()),
        (Some(id), Some("success"))
    );
    assert!(entry["actor"].as_str().unwrap().starts_with("user:"));
    assert!(!audit.to_string().contains("colours"));
    // Neither is in the store's files: both are sealed at rest.
    let answer = result["text"].as_str().unwrap().trim().to_lowercase();
    let mut files = String::new();
    for entry in std::fs::read_dir(dp.data_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            files.push_str(&String::from_utf8_lossy(&std::fs::read(&path).unwrap()).to_lowercase());
        }
    }
    assert!(files.contains("sv1:"), "sealed values are there");
    assert!(
        !files.contains("name three colours"),
        "the prompt is in the store's files"
    );
    if answer.len() >= 8 {
        assert!(
            !files.contains(&answer),
            "the answer is in the store's files"
        );
    }

    assert_eq!(
        metric(&dp, r#"ai_generations_total{status="succeeded"}"#).await,
        Some(1.0)
    );
    assert_eq!(
        metric(&dp, r#"ai_tokens_total{direction="out"}"#).await,
        Some(out as f64)
    );
    let health = json(get(&dp, "/api/health/detailed").await).await;
    assert_eq!(health["checks"]["ai"]["status"], "healthy", "{health}");
    let stats = json(get(&dp, "/api/stats").await).await;
    assert_eq!(
        counts(&stats["generations"]["by_status"]["succeeded"]),
        (1, 1, 1),
        "{stats}"
    );
}

#[tokio::test]
async fn the_detailed_health_asks_the_model_server_in_the_background_not_per_request() {
    let mut llama = LlamaServer::start().unwrap();
    let dp = start_with_ai(&llama, &[]);
    // What the model server saw: its access log, one line per request.
    let asked = |llama: &mut LlamaServer| {
        llama
            .process()
            .output_lines()
            .iter()
            .filter(|l| l.contains("GET /v1/models"))
            .count()
    };
    eventually(
        Duration::from_secs(15),
        "a first round of checks",
        || async { metric(&dp, "health_check_rounds_total").await >= Some(1.0) },
    )
    .await;
    let before = asked(&mut llama);
    assert!(before >= 1, "the round asked the model server");
    let started = Instant::now();
    for _ in 0..30 {
        let r = get(&dp, "/api/health/detailed").await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(json(r).await["checks"]["ai"]["status"], "healthy");
    }
    // A round every 5 s while all is well, whatever the number of requests.
    let rounds = (started.elapsed().as_secs_f64() / 5.0).ceil() as usize + 1;
    let during = asked(&mut llama) - before;
    assert!(
        during <= rounds,
        "30 reports asked the model server {during} times (at most {rounds} rounds)"
    );
}

#[tokio::test]
async fn a_stream_yields_tokens_then_the_result() {
    let llama = LlamaServer::start().unwrap();
    let dp = start_with_ai(&llama, &[]);
    let response = generate(
        &dp,
        json!({"prompt": "Count from one to ten in words.", "max_tokens": 40, "stream": true}),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response.headers()[reqwest::header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let all = events(response, 1000).await;
    let tokens: Vec<&str> = all
        .iter()
        .filter(|(e, _)| e == "token")
        .map(|(_, d)| d["text"].as_str().unwrap())
        .collect();
    assert!(tokens.len() > 3, "few token events: {all:?}");
    let (last, done) = all.last().unwrap();
    assert_eq!(last, "done", "{all:?}");
    assert_eq!(done["text"].as_str().unwrap(), tokens.concat());
    assert_eq!(done["status"], "succeeded");
    assert!(
        ["stop", "length"].contains(&done["finish_reason"].as_str().unwrap()),
        "{done}"
    );
    // Usage is passed on when the server reports it in the stream (OpenAI
    // does; llama-cpp-python's server does not, and then it is null).
    if let Some(n) = done["usage"]["completion_tokens"].as_u64() {
        assert!(n > 0, "{done}");
    }
    let kept = json(
        get(
            &dp,
            &format!("/api/generations/{}", done["id"].as_str().unwrap()),
        )
        .await,
    )
    .await;
    assert_eq!(kept["text"], done["text"]);
}

#[tokio::test]
async fn a_client_leaving_a_stream_cancels_the_upstream_generation() {
    let mut llama = LlamaServer::start().unwrap();
    let dp = start_with_ai(&llama, &[]);
    let response = generate(
        &dp,
        json!({"prompt": "Write a very long story about the sea.", "max_tokens": 1500, "temperature": 0, "stream": true}),
    )
    .await;
    let first = events(response, 3).await; // dropping the response disconnects
    assert_eq!(first.len(), 3);
    // The model server itself saw the connection go (llama-cpp-python logs
    // it when it stops generating for a client that left). Polled without
    // blocking: this runtime's thread is what closes our side.
    let process = llama.process();
    wait_for(
        "the model server to see the client leave",
        Duration::from_secs(10),
        || {
            let seen = process
                .wait_for_line(|l| l.contains("Disconnected from client"), Duration::ZERO)
                .map(drop)
                .map_err(|e| e.to_string());
            async move { seen }
        },
    )
    .await;
    eventually(
        Duration::from_secs(10),
        "the stream recorded as cancelled",
        || async { metric(&dp, r#"ai_generations_total{status="cancelled"}"#).await == Some(1.0) },
    )
    .await;
}

#[tokio::test]
async fn a_slow_or_paused_model_server_gives_504_within_the_deadline() {
    let mut llama = LlamaServer::start().unwrap();
    let dp = start_with_ai(&llama, &[("AI_TIMEOUT_SECS", "1")]);

    // Too slow: 2000 tokens do not fit in one second.
    let started = Instant::now();
    let response = generate(
        &dp,
        json!({"prompt": "Write a long essay.", "max_tokens": 2000}),
    )
    .await;
    assert_eq!(response.status(), StatusCode::GATEWAY_TIMEOUT);
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(json(response).await["error"]["code"], "gateway_timeout");

    // Paused: the connection is accepted, nothing answers.
    llama.process().signal("STOP").unwrap();
    let started = Instant::now();
    let response = generate(&dp, json!({"prompt": "Hi", "max_tokens": 4})).await;
    let elapsed = started.elapsed();
    llama.process().signal("CONT").unwrap();
    assert_eq!(response.status(), StatusCode::GATEWAY_TIMEOUT);
    assert!(elapsed < Duration::from_secs(5), "took {elapsed:?}");
    assert_eq!(metric(&dp, "ai_timeouts_total").await, Some(2.0));
}

#[tokio::test]
async fn a_stopped_model_server_gives_502() {
    let mut llama = LlamaServer::start().unwrap();
    let dp = start_with_ai(&llama, &[]);
    llama.process().signal("KILL").unwrap();
    llama.process().wait_exit(Duration::from_secs(10)).unwrap();
    let response = generate(&dp, json!({"prompt": "Hi"})).await;
    assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
    let body = json(response).await;
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("unreachable"),
        "{body}"
    );
    // The next round of background checks sees it.
    let health = wait_for(
        "the detailed health to report the model server down",
        Duration::from_secs(15),
        || async {
            let health = json(get(&dp, "/api/health/detailed").await).await;
            if health["checks"]["ai"]["status"] == "unhealthy" {
                Ok(health)
            } else {
                Err(health.to_string())
            }
        },
    )
    .await;
    assert_eq!(health["status"], "degraded");
}

#[tokio::test]
async fn a_full_concurrency_limit_answers_503() {
    let llama = LlamaServer::start().unwrap();
    let dp = start_with_ai(&llama, &[("AI_MAX_CONCURRENCY", "1")]);
    // A stream holds the only slot while it runs.
    let long = generate(
        &dp,
        json!({"prompt": "Write a long story.", "max_tokens": 400, "stream": true}),
    )
    .await;
    let response = generate(&dp, json!({"prompt": "Hi", "max_tokens": 4})).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        metric(&dp, r#"ai_generations_total{status="rejected"}"#).await,
        Some(1.0)
    );
    drop(long);
}

#[tokio::test]
async fn invalid_requests_are_refused_naming_the_field() {
    let llama = LlamaServer::start().unwrap();
    let dp = start_with_ai(&llama, &[("AI_MODELS", "other-model")]);
    for (body, field) in [
        (json!({}), "prompt"),
        (json!({"prompt": ""}), "prompt"),
        (json!({"prompt": "a", "max_tokens": 0}), "max_tokens"),
        (json!({"prompt": "a", "temperature": 3}), "temperature"),
        (json!({"prompt": "a", "model": "gpt-5"}), "model"),
    ] {
        let response = generate(&dp, body.clone()).await;
        assert_eq!(
            response.status(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body}"
        );
        assert_eq!(json(response).await["error"]["field"], field, "{body}");
    }
}

#[tokio::test]
async fn without_a_model_server_generation_is_refused() {
    let dp = start(&[]);
    let response = generate(&dp, json!({"prompt": "Hi"})).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
}

/// OpenAI's own Python library (`openai` from PyPI), pointed at
/// `/v1/chat/completions` with a SecureVault API key, as an existing
/// OpenAI client would be: plain and streamed answers, each kept in the
/// history under the id it reports, and the library's own errors for a
/// model that is not served and a wrong key.
#[tokio::test]
async fn an_openai_client_library_talks_to_v1_chat_completions() {
    let llama = LlamaServer::start().unwrap();
    let dp = start_with_ai(&llama, &[]);
    let created = authed(&dp)
        .await
        .post(dp.url("/api/keys"))
        .json(&json!({"name": "openai-sdk", "scopes": ["ai"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    let key = json(created).await["key"].as_str().unwrap().to_owned();

    let python =
        testkit::bins::built_by_script("tests/setup/python-venv.sh", &["openai==3.63.0"]).unwrap();
    let script = testkit::bins::workspace_script("tests/ai/openai_client.py").unwrap();
    let base = dp.url("/v1");
    let model = testkit::llama::MODEL;
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(python)
            .arg(script)
            .args([base.as_str(), key.as_str(), model])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "openai_client.py: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: Value = serde_json::from_slice(&out.stdout).unwrap();

    let plain = &seen["plain"];
    assert_eq!(plain["object"], "chat.completion");
    assert_eq!(plain["role"], "assistant");
    assert!(
        !plain["text"].as_str().unwrap().trim().is_empty(),
        "{plain}"
    );
    assert!(["stop", "length"].contains(&plain["finish_reason"].as_str().unwrap()));
    let usage = &plain["usage"];
    assert_eq!(
        usage["total_tokens"].as_u64().unwrap(),
        usage["prompt_tokens"].as_u64().unwrap() + usage["completion_tokens"].as_u64().unwrap()
    );
    let id = plain["id"]
        .as_str()
        .unwrap()
        .strip_prefix("chatcmpl-")
        .unwrap();
    let kept = json(get(&dp, &format!("/api/generations/{id}")).await).await;
    assert_eq!(kept["text"], plain["text"], "{kept}");

    let stream = &seen["stream"];
    let ids = stream["ids"].as_array().unwrap();
    assert_eq!(ids.len(), 1, "one id for every chunk: {stream}");
    assert_eq!(stream["roles"], json!(["assistant"]), "{stream}");
    assert!(!stream["pieces"].as_array().unwrap().is_empty(), "{stream}");
    assert!(["stop", "length"].contains(&stream["finish_reason"].as_str().unwrap()));
    let id = ids[0].as_str().unwrap().strip_prefix("chatcmpl-").unwrap();
    let kept = json(get(&dp, &format!("/api/generations/{id}")).await).await;
    let text: String = stream["pieces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    assert_eq!(kept["text"], text.as_str(), "{kept}");

    assert_eq!(seen["bad_model"]["status"], 422, "{seen}");
    assert_eq!(seen["bad_model"]["body"]["field"], "model", "{seen}");
    assert_eq!(seen["bad_key"]["status"], 401, "{seen}");
}
