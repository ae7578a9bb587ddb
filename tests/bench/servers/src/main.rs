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
//!
//! Both listen on 127.0.0.1 and run until killed.

use std::net::{Ipv4Addr, SocketAddr};

use anyhow::{Context, bail};
use axum::{
    Json, Router,
    body::Bytes,
    http::header,
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde_json::{Value, json};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [mode, port] = args.as_slice() else {
        bail!("usage: bench-servers upstream|health PORT");
    };
    let port: u16 = port.parse().context("PORT must be a port number")?;
    let app = match mode.as_str() {
        "upstream" => Router::new()
            .route("/v1/chat/completions", post(completion))
            .route("/v1/models", get(models)),
        "health" => Router::new().route("/api/health", get(health)),
        other => bail!("unknown mode {other:?}: upstream or health"),
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
