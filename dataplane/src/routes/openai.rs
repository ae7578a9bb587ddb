//! `POST /v1/chat/completions`: the OpenAI chat API, so that an OpenAI
//! client library points at SecureVault unchanged (base URL
//! `https://<vault>/v1`, a SecureVault API key as its key). Same guard,
//! scope (`ai:generate`), limits, model servers and history as
//! `/api/generate-content`: only the shapes of the request and the answer
//! differ. The answer's `id` is `chatcmpl-<generation id>`, the id of
//! `GET /api/generations/{id}`.

use std::{convert::Infallible, time::SystemTime};

use axum::{
    Extension, Json,
    extract::State,
    response::{
        IntoResponse, Response,
        sse::{Event, KeepAlive, Sse},
    },
};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::mpsc;
use utoipa::ToSchema;

use super::ai::generations;
use crate::{
    ai::{
        generate::Completion,
        pipeline::StreamEvent,
        validate::{GenerateRequest, Message, Role, validate},
    },
    app::AppState,
    audit,
    auth::Principal,
    error::{ApiError, ErrorBody, invalid},
    extract::ApiJson,
};

/// The body of `POST /v1/chat/completions`: the fields of OpenAI's that
/// SecureVault honours. Any other field is refused (422 naming it) rather
/// than silently ignored.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChatRequest {
    /// A model from the server's allow-list.
    pub model: String,
    /// The conversation, oldest first; the last message is the user's.
    pub messages: Vec<ChatMessage>,
    /// Most tokens to generate, 1 to 4096 [default: 256].
    pub max_completion_tokens: Option<u32>,
    /// The older name of `max_completion_tokens`.
    pub max_tokens: Option<u32>,
    /// Sampling temperature, 0 to 2.
    pub temperature: Option<f32>,
    /// Stream chunks as server-sent events, ending with `data: [DONE]`.
    #[serde(default)]
    pub stream: bool,
    /// With `include_usage`, a last chunk carries the token counts.
    pub stream_options: Option<StreamOptions>,
    /// How many answers: only 1.
    pub n: Option<u32>,
    /// The caller's own end-user id; accepted and not used.
    pub user: Option<String>,
}

/// `stream_options`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct StreamOptions {
    /// Send the usage in a last chunk.
    pub include_usage: Option<bool>,
}

/// One message: `content` is text, or a list of text parts.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ChatMessage {
    /// `system` (or `developer`), `user` or `assistant`.
    pub role: String,
    /// Text, or `[{"type": "text", "text": …}]`.
    pub content: Content,
    /// A participant's name; accepted and not used.
    pub name: Option<String>,
}

/// Message content as OpenAI takes it.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum Content {
    /// Plain text.
    Text(String),
    /// Parts; only `text` parts are supported.
    Parts(Vec<ContentPart>),
}

/// One part of a message.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ContentPart {
    /// `text`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The text of a `text` part.
    pub text: Option<String>,
}

/// A chat completion, as OpenAI answers it.
#[derive(Debug, Serialize, ToSchema)]
pub struct ChatCompletion {
    /// `chatcmpl-<generation id>`.
    pub id: String,
    /// `chat.completion`.
    pub object: &'static str,
    /// Unix seconds.
    pub created: u64,
    /// The model that answered.
    pub model: String,
    /// One choice.
    pub choices: Vec<Choice>,
    /// Token counts, when the model server reported them.
    pub usage: Option<ChatUsage>,
}

/// The one answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct Choice {
    /// 0.
    pub index: u32,
    /// The assistant's message.
    pub message: AssistantMessage,
    /// `stop`, `length`, …
    pub finish_reason: Option<String>,
}

/// What the model wrote.
#[derive(Debug, Serialize, ToSchema)]
pub struct AssistantMessage {
    /// `assistant`.
    pub role: &'static str,
    /// The text.
    pub content: String,
}

/// Token counts.
#[derive(Debug, Serialize, ToSchema)]
pub struct ChatUsage {
    /// In the prompt.
    pub prompt_tokens: u32,
    /// Generated.
    pub completion_tokens: u32,
    /// Both.
    pub total_tokens: u32,
}

/// Generates a chat completion, OpenAI-compatible.
#[utoipa::path(
    post,
    path = "/v1/chat/completions",
    tag = "ai",
    request_body = ChatRequest,
    responses(
        (status = 200, description = "The completion (or, with `stream`, chunks as server-sent events ending with `data: [DONE]`)", body = ChatCompletion),
        (status = 422, description = "A field is invalid or not supported", body = ErrorBody),
        (status = 429, description = "A rate limit, or a token budget of the key or account (`token_budget_exceeded`, naming the budget and when it resets)", body = ErrorBody),
        (status = 502, description = "The model servers failed", body = ErrorBody),
        (status = 503, description = "AI is not configured, or too many generations are in progress", body = ErrorBody),
        (status = 504, description = "No model server answered within AI_TIMEOUT_SECS", body = ErrorBody),
    )
)]
pub async fn chat_completions(
    State(state): State<AppState>,
    Extension(caller): Extension<Principal>,
    audit: audit::Context,
    ApiJson(request): ApiJson<ChatRequest>,
) -> Result<Response, ApiError> {
    let generations = generations(&state)?;
    let stream = request.stream;
    let usage_chunk = request
        .stream_options
        .as_ref()
        .and_then(|o| o.include_usage)
        .unwrap_or(false);
    let g = validate(native(request)?, &state.config.openai.models)?;
    let created = unix_seconds();
    if stream {
        let (id, events) = generations.stream(caller, audit, g.clone()).await?;
        let chunks = Chunks {
            id: format!("chatcmpl-{id}"),
            created,
            model: g.model,
            usage_chunk,
        };
        return Ok(sse(chunks, events));
    }
    let kept = generations.complete(&caller, &audit, &g).await?;
    let c = kept.completion;
    Ok(Json(ChatCompletion {
        id: format!("chatcmpl-{}", kept.id),
        object: "chat.completion",
        created,
        usage: usage(&c),
        choices: vec![Choice {
            index: 0,
            message: AssistantMessage {
                role: "assistant",
                content: c.text,
            },
            finish_reason: c.finish_reason.or(Some("stop".into())),
        }],
        model: c.model,
    })
    .into_response())
}

/// The same request as `/api/generate-content` takes, to be checked by the
/// same rules.
fn native(r: ChatRequest) -> Result<GenerateRequest, ApiError> {
    if r.n.is_some_and(|n| n != 1) {
        return Err(invalid("n", "only one choice (n = 1) is supported").into());
    }
    let mut messages = Vec::with_capacity(r.messages.len());
    for (i, m) in r.messages.into_iter().enumerate() {
        let role = match m.role.as_str() {
            "system" | "developer" => Role::System,
            "user" => Role::User,
            "assistant" => Role::Assistant,
            other => {
                return Err(invalid(
                    format!("messages[{i}].role"),
                    format!("`{other}` is not supported: system, developer, user or assistant"),
                )
                .into());
            }
        };
        let content = match m.content {
            Content::Text(text) => text,
            Content::Parts(parts) => {
                let mut text = String::new();
                for (j, part) in parts.into_iter().enumerate() {
                    match (part.kind.as_str(), part.text) {
                        ("text", Some(t)) => text.push_str(&t),
                        _ => {
                            return Err(invalid(
                                format!("messages[{i}].content[{j}]"),
                                "only text parts (`{\"type\": \"text\", \"text\": …}`) are supported",
                            )
                            .into());
                        }
                    }
                }
                text
            }
        };
        messages.push(Message { role, content });
    }
    Ok(GenerateRequest {
        prompt: None,
        messages: Some(messages),
        system: None,
        max_tokens: r.max_completion_tokens.or(r.max_tokens),
        temperature: r.temperature,
        model: Some(r.model),
        stream: r.stream,
    })
}

fn usage(c: &Completion) -> Option<ChatUsage> {
    let (prompt_tokens, completion_tokens) = (c.prompt_tokens?, c.completion_tokens?);
    Some(ChatUsage {
        prompt_tokens,
        completion_tokens,
        total_tokens: prompt_tokens.saturating_add(completion_tokens),
    })
}

fn unix_seconds() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// What every chunk of one stream repeats.
struct Chunks {
    id: String,
    created: u64,
    model: String,
    usage_chunk: bool,
}

impl Chunks {
    /// A chunk with one choice: a piece of the answer, or its end.
    fn chunk(&self, delta: serde_json::Value, finish_reason: Option<&str>) -> Event {
        self.envelope(
            json!([{"index": 0, "delta": delta, "finish_reason": finish_reason}]),
            None,
        )
    }

    /// The chunk after the last, with no choice and the usage.
    fn usage(&self, usage: Option<ChatUsage>) -> Event {
        self.envelope(json!([]), Some(usage))
    }

    fn envelope(&self, choices: serde_json::Value, usage: Option<Option<ChatUsage>>) -> Event {
        let mut chunk = json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": choices,
        });
        if let Some(usage) = usage {
            chunk["usage"] = json!(usage);
        }
        Event::default().data(chunk.to_string())
    }
}

/// OpenAI's stream: a chunk per piece (the first with the role), a last
/// chunk with the finish reason (and, when asked, one with the usage), then
/// `data: [DONE]`. A failure after the first chunk is a chunk with
/// `error`, as OpenAI sends it, and no `[DONE]`.
fn sse(chunks: Chunks, events: mpsc::Receiver<StreamEvent>) -> Response {
    let state = (chunks, events, true, false);
    let stream = futures::stream::unfold(state, |(chunks, mut rx, first, ended)| async move {
        if ended {
            return None;
        }
        let out: Vec<Event> = match rx.recv().await {
            None => return None,
            Some(StreamEvent::Token(piece)) => {
                let delta = if first {
                    json!({"role": "assistant", "content": piece})
                } else {
                    json!({"content": piece})
                };
                vec![chunks.chunk(delta, None)]
            }
            Some(StreamEvent::Done(kept)) => {
                let c = &kept.completion;
                let mut out = vec![chunks.chunk(
                    json!({}),
                    Some(c.finish_reason.as_deref().unwrap_or("stop")),
                )];
                if chunks.usage_chunk {
                    out.push(chunks.usage(usage(c)));
                }
                out.push(Event::default().data("[DONE]"));
                let events = futures::stream::iter(out.into_iter().map(Ok::<_, Infallible>));
                return Some((events.boxed(), (chunks, rx, false, true)));
            }
            Some(StreamEvent::Failed { error, .. }) => {
                let message = error.to_string();
                let api: ApiError = error.into();
                let event = Event::default()
                    .data(json!({"error": {"code": api.code(), "message": message}}).to_string());
                let events = futures::stream::iter([Ok::<_, Infallible>(event)]);
                return Some((events.boxed(), (chunks, rx, false, true)));
            }
        };
        let events = futures::stream::iter(out.into_iter().map(Ok::<_, Infallible>));
        Some((events.boxed(), (chunks, rx, false, false)))
    });
    Sse::new(stream.flatten())
        .keep_alive(KeepAlive::default())
        .into_response()
}
