//! Servers that `make benchmark` measures SecureVault against; never
//! shipped, never in a test.
//!
//! - `bench-servers upstream PORT`: an OpenAI-compatible model server that
//!   answers every chat completion at once with the same short completion
//!   (with usage; streamed when asked). Against it, a gateway's latency is
//!   all that is measured: the method TensorZero publishes its overhead by.
//! - `bench-servers health PORT`: a bare axum server answering
//!   `GET /api/health` with the data plane's JSON, and nothing else: the
//!   floor that the data plane's middleware stack is compared to.
//! - `bench-servers proxy PORT UPSTREAM_URL`: a bare pass-through proxy that
//!   forwards `POST /v1/chat/completions` to `UPSTREAM_URL/chat/completions`
//!   (`UPSTREAM_URL` as `OPENAI_BASE_URL` takes it, with its `/v1`; a pooled
//!   keep-alive client, the body and the bearer header as they came) and
//!   answers what it got back: the least any gateway does, so its latency
//!   over the direct path is the floor of what a gateway adds on this
//!   machine, the one the data plane's gateway overhead is judged against.
//!
//! All listen on 127.0.0.1 and run until killed.

use std::net::{Ipv4Addr, SocketAddr};

use anyhow::{Context, bail};
use axum::{
    Json, Router,
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde_json::{Value, json};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (mode, port, upstream) = match args.as_slice() {
        [mode, port] => (mode, port, None),
        [mode, port, upstream] => (mode, port, Some(upstream)),
        _ => bail!(
            "usage: bench-servers upstream|health PORT, or bench-servers proxy PORT UPSTREAM_URL"
        ),
    };
    let port: u16 = port.parse().context("PORT must be a port number")?;
    let app = match (mode.as_str(), upstream) {
        ("upstream", None) => Router::new()
            .route("/v1/chat/completions", post(completion))
            .route("/v1/models", get(models)),
        ("health", None) => Router::new().route("/api/health", get(health)),
        ("proxy", Some(upstream)) => {
            // Plain HTTP only, but reqwest builds its TLS settings anyway.
            let _ = rustls::crypto::ring::default_provider().install_default();
            let target = Upstream {
                client: reqwest::Client::new(),
                url: format!("{}/chat/completions", upstream.trim_end_matches('/')),
            };
            Router::new()
                .route("/v1/chat/completions", post(forward))
                .with_state(target)
        }
        (other, _) => bail!(
            "unknown mode {other:?} or wrong arguments: upstream PORT, health PORT or proxy PORT UPSTREAM_URL"
        ),
    };
    let listener = tokio::net::TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
        .await
        .with_context(|| format!("binding 127.0.0.1:{port}"))?;
    axum::serve(listener, app).await?;
    Ok(())
}

/// The same answer to every request; `"stream": true` gets it as
/// server-sent chunks, a usage chunk and `[DONE]`.
async fn completion(body: Bytes) -> Response {
    let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let model = request["model"].as_str().unwrap_or("instant").to_owned();
    let usage = json!({"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15});
    if request["stream"].as_bool() == Some(true) {
        let chunk = |delta: Value, finish: Value, usage: Value| {
            json!({"id": "chatcmpl-instant", "object": "chat.completion.chunk", "created": 0,
                   "model": model, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
                   "usage": usage})
        };
        let events = [
            chunk(
                json!({"role": "assistant", "content": "Hello"}),
                Value::Null,
                Value::Null,
            ),
            chunk(json!({"content": " there!"}), json!("stop"), Value::Null),
            json!({"id": "chatcmpl-instant", "object": "chat.completion.chunk", "created": 0,
                   "model": model, "choices": [], "usage": usage}),
        ];
        let mut text = String::new();
        for e in events {
            text.push_str(&format!("data: {e}\n\n"));
        }
        text.push_str("data: [DONE]\n\n");
        return ([(header::CONTENT_TYPE, "text/event-stream")], text).into_response();
    }
    Json(json!({
        "id": "chatcmpl-instant", "object": "chat.completion", "created": 0, "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello there!"},
                     "finish_reason": "stop"}],
        "usage": usage,
    }))
    .into_response()
}

async fn models() -> Json<Value> {
    Json(
        json!({"object": "list", "data": [{"id": "instant", "object": "model", "owned_by": "bench"}]}),
    )
}

async fn health() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// Where `proxy` forwards to, with its connection pool.
#[derive(Clone)]
struct Upstream {
    client: reqwest::Client,
    url: String,
}

/// Forwards a chat completion as it came and answers what came back; a
/// failed upstream call is a 502.
async fn forward(State(upstream): State<Upstream>, headers: HeaderMap, body: Bytes) -> Response {
    let mut request = upstream
        .client
        .post(&upstream.url)
        .header(header::CONTENT_TYPE, "application/json")
        .body(body);
    if let Some(auth) = headers.get(header::AUTHORIZATION) {
        request = request.header(header::AUTHORIZATION, auth);
    }
    let answer = match request.send().await {
        Ok(answer) => answer,
        Err(e) => return (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    };
    let status = answer.status();
    let content_type = answer.headers().get(header::CONTENT_TYPE).cloned();
    match answer.bytes().await {
        Ok(bytes) => {
            let mut response = (status, bytes).into_response();
            if let Some(content_type) = content_type {
                response
                    .headers_mut()
                    .insert(header::CONTENT_TYPE, content_type);
            }
            response
        }
        Err(e) => (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    }
}
