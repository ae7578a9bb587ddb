//! `POST /api/generate-content` and `GET /api/generations/{id}`.

use std::{
    convert::Infallible,
    time::{Duration, Instant, SystemTime},
};

use async_openai::types::chat::ChatCompletionStreamOptions;
use axum::{
    Extension, Json,
    extract::{Path, State},
    http::{HeaderMap, header},
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

use crate::{
    ai::{
        generate::{self, AiError, Completion, Generator},
        validate::{GenerateRequest, Generation, validate},
    },
    app::AppState,
    audit,
    auth::Principal,
    error::{ApiError, ErrorBody},
    extract::ApiJson,
    routes::rfc3339,
    store::{NewGeneration, StoreError, StoredGeneration},
    telemetry::Metrics,
};

/// Token counts of one generation.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Usage {
    /// Tokens in the prompt.
    pub prompt_tokens: Option<u32>,
    /// Tokens generated.
    pub completion_tokens: Option<u32>,
}

/// A generation's result.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct GenerationResult {
    /// Under this id the generation is kept (`GET /api/generations/{id}`).
    pub id: String,
    /// `succeeded` or `failed`.
    pub status: String,
    /// The generated text.
    pub text: String,
    /// The model that answered.
    pub model: String,
    /// Why generation stopped: `stop`, `length`, …
    pub finish_reason: Option<String>,
    /// Token counts, as the model server reported them.
    pub usage: Usage,
    /// How long it took, in milliseconds.
    pub duration_ms: u64,
    /// Why it failed, when it did.
    pub error: Option<String>,
    /// When it was made (RFC 3339).
    pub created_at: String,
}

impl From<&StoredGeneration> for GenerationResult {
    fn from(s: &StoredGeneration) -> Self {
        let g = &s.generation;
        Self {
            id: s.id.clone(),
            status: s.status.clone(),
            text: g.output.clone().unwrap_or_default(),
            model: g.model.clone(),
            finish_reason: g.finish_reason.clone(),
            usage: Usage {
                prompt_tokens: g.prompt_tokens,
                completion_tokens: g.completion_tokens,
            },
            duration_ms: g.duration_ms,
            error: g.error.clone(),
            created_at: rfc3339(s.created_at),
        }
    }
}

impl From<AiError> for ApiError {
    fn from(e: AiError) -> Self {
        match e {
            AiError::Busy => Self::Unavailable(e.to_string()),
            AiError::Deadline(_) => Self::GatewayTimeout(e.to_string()),
            AiError::Upstream(_) => Self::BadGateway(e.to_string()),
            AiError::Cancelled => Self::BadRequest {
                message: e.to_string(),
                field: None,
            },
        }
    }
}

/// Generates text with the model server. With `"stream": true` (or
/// `Accept: text/event-stream`) the answer is server-sent events: `token`
/// events with `{"text"}` as the model writes, then one `done` event with the
/// whole result (or an `error` event). Prompts and answers are kept for
/// `GET /api/generations/{id}` and never logged.
#[utoipa::path(
    post,
    path = "/api/generate-content",
    tag = "ai",
    request_body = GenerateRequest,
    responses(
        (status = 200, description = "The generation (or an event stream)", body = GenerationResult),
        (status = 422, description = "A field is invalid", body = ErrorBody),
        (status = 502, description = "The model server failed", body = ErrorBody),
        (status = 503, description = "AI is not configured, or too many generations are in progress", body = ErrorBody),
        (status = 504, description = "The model server did not answer within AI_TIMEOUT_SECS", body = ErrorBody),
    )
)]
pub async fn generate_content(
    State(state): State<AppState>,
    audit: audit::Context,
    headers: HeaderMap,
    ApiJson(request): ApiJson<GenerateRequest>,
) -> Result<Response, ApiError> {
    let Some(generator) = state.generator.clone() else {
        return Err(ApiError::Unavailable(
            "text generation is not configured (set OPENAI_BASE_URL or OPENAI_API_KEY)".into(),
        ));
    };
    let wants_events = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/event-stream"));
    let stream = request.stream || wants_events;
    let g = validate(request, &state.config.openai.models)?;
    if stream {
        return stream_generation(state, audit, generator, g).await;
    }

    let started = Instant::now();
    let result = generator.complete(&g).await;
    let elapsed = started.elapsed();
    let completion = match result {
        Ok(c) => c,
        Err(AiError::Busy) => {
            observe(&state.metrics, &Err(AiError::Busy), elapsed);
            return Err(AiError::Busy.into());
        }
        Err(e) => return Err(failed(&state, &audit, &g, e, elapsed).await),
    };
    observe(&state.metrics, &Ok(()), elapsed);
    let id = keep(
        &state,
        &audit,
        &record(&g, Some(&completion), None, elapsed),
    )
    .await?;
    if let (Some(i), Some(o)) = (completion.prompt_tokens, completion.completion_tokens) {
        count_tokens(&state.metrics, i, o);
    }
    tracing::info!(generation_id = %id, model = %completion.model, duration_ms = elapsed.as_millis() as u64, "generation succeeded");
    Ok(Json(result_of(id, completion, elapsed)).into_response())
}

/// A generation's prompt, answer and outcome.
#[utoipa::path(
    get,
    path = "/api/generations/{id}",
    tag = "ai",
    params(("id" = String, Path, description = "The id returned by /api/generate-content")),
    responses(
        (status = 200, description = "The generation", body = GenerationResult),
        (status = 404, description = "No such generation, or one the caller did not ask for (only administrators see every generation)", body = ErrorBody),
    )
)]
pub async fn get_generation(
    State(state): State<AppState>,
    Extension(caller): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Json<GenerationResult>, ApiError> {
    // Someone else's generation answers as a missing one does.
    let stored = state
        .store
        .generation(&id)
        .await?
        .filter(|g| caller.may_access(g.created_by.as_deref()))
        .ok_or_else(|| ApiError::NotFound(format!("no generation with id {id:?}")))?;
    Ok(Json(GenerationResult::from(&stored)))
}

fn result_of(id: String, c: Completion, elapsed: Duration) -> GenerationResult {
    GenerationResult {
        id,
        status: "succeeded".into(),
        text: c.text,
        model: c.model,
        finish_reason: c.finish_reason,
        usage: Usage {
            prompt_tokens: c.prompt_tokens,
            completion_tokens: c.completion_tokens,
        },
        duration_ms: elapsed.as_millis() as u64,
        error: None,
        created_at: rfc3339(crate::store::unix_millis(SystemTime::now())),
    }
}

fn record(
    g: &Generation,
    c: Option<&Completion>,
    error: Option<String>,
    elapsed: Duration,
) -> NewGeneration {
    NewGeneration {
        model: c.map_or_else(|| g.model.clone(), |c| c.model.clone()),
        messages: serde_json::to_value(&g.messages).unwrap_or_default(),
        output: c.map(|c| c.text.clone()),
        finish_reason: c.and_then(|c| c.finish_reason.clone()),
        prompt_tokens: c.and_then(|c| c.prompt_tokens),
        completion_tokens: c.and_then(|c| c.completion_tokens),
        duration_ms: elapsed.as_millis() as u64,
        error,
    }
}

/// Counts and records a generation that failed upstream (it reached the
/// model server, so it is history and counts in `/api/stats`), and returns
/// the answer for it.
async fn failed(
    state: &AppState,
    audit: &audit::Context,
    g: &Generation,
    e: AiError,
    elapsed: Duration,
) -> ApiError {
    observe(&state.metrics, &Err(e.clone()), elapsed);
    let rec = record(g, None, Some(e.to_string()), elapsed);
    if let Err(store) = keep(state, audit, &rec).await {
        return store.into();
    }
    e.into()
}

/// Stores a finished generation in the history and the audit trail.
async fn keep(
    state: &AppState,
    audit: &audit::Context,
    rec: &NewGeneration,
) -> Result<String, StoreError> {
    let outcome = if rec.error.is_some() {
        audit::Outcome::Failure
    } else {
        audit::Outcome::Success
    };
    let detail = format!("model {}, {} ms", rec.model, rec.duration_ms);
    let entry = audit.entry("ai.generate", None, outcome, Some(detail));
    state
        .store
        .insert_generation(rec, SystemTime::now(), Some(entry))
        .await
}

fn observe(metrics: &Metrics, outcome: &Result<(), AiError>, elapsed: Duration) {
    let status = match outcome {
        Ok(()) => "succeeded",
        Err(AiError::Busy) => "rejected",
        Err(AiError::Cancelled) => "cancelled",
        Err(_) => "failed",
    };
    metrics
        .ai_generations_total
        .with_label_values(&[status])
        .inc();
    if !matches!(outcome, Err(AiError::Busy)) {
        metrics
            .ai_generation_duration_seconds
            .observe(elapsed.as_secs_f64());
    }
    if matches!(outcome, Err(AiError::Deadline(_))) {
        metrics.ai_timeouts_total.inc();
    }
}

fn count_tokens(metrics: &Metrics, prompt: u32, completion: u32) {
    metrics
        .ai_tokens_total
        .with_label_values(&["in"])
        .inc_by(u64::from(prompt));
    metrics
        .ai_tokens_total
        .with_label_values(&["out"])
        .inc_by(u64::from(completion));
}

/// Streams `g` as server-sent events. The upstream stream is read by a task
/// that owns the concurrency slot and the deadline; when the client goes
/// away the event channel closes, the task stops and drops the upstream
/// response, which closes its connection: the model server stops generating.
async fn stream_generation(
    state: AppState,
    audit: audit::Context,
    generator: Generator,
    g: Generation,
) -> Result<Response, ApiError> {
    let slot = match generator.slot() {
        Ok(slot) => slot,
        Err(e) => {
            observe(&state.metrics, &Err(e.clone()), Duration::ZERO);
            return Err(e.into());
        }
    };
    let started = Instant::now();
    let deadline = tokio::time::Instant::now() + generator.timeout();
    let mut request = generate::request(&g, true)?;
    request.stream_options = Some(ChatCompletionStreamOptions {
        include_usage: Some(true),
        include_obfuscation: None,
    });
    // Errors before the first byte still get a proper status code.
    let opened = tokio::time::timeout_at(deadline, generator.open_stream(request, deadline)).await;
    let upstream = match opened.unwrap_or(Err(AiError::Deadline(generator.timeout()))) {
        Ok(upstream) => upstream,
        Err(e) => return Err(failed(&state, &audit, &g, e, started.elapsed()).await),
    };

    let (tx, rx) = mpsc::channel::<Event>(32);
    tokio::spawn(async move {
        let _slot = slot;
        let mut upstream = upstream;
        let mut text = String::new();
        let mut model = g.model.clone();
        let mut finish_reason = None;
        let mut usage = (None, None);
        let mut first_token = true;
        let outcome: Result<(), AiError> = loop {
            let next = tokio::select! {
                next = tokio::time::timeout_at(deadline, upstream.next()) => next,
                () = tx.closed() => break Err(AiError::Cancelled),
            };
            let chunk = match next {
                Err(_) => break Err(AiError::Deadline(generator.timeout())),
                Ok(None) => break Ok(()),
                Ok(Some(Err(e))) => break Err(generate::describe(&e)),
                Ok(Some(Ok(chunk))) => chunk,
            };
            if !chunk.model.is_empty() {
                model = chunk.model.clone();
            }
            if let Some(u) = &chunk.usage {
                usage = (Some(u.prompt_tokens), Some(u.completion_tokens));
            }
            for choice in &chunk.choices {
                if let Some(reason) = choice.finish_reason {
                    finish_reason = generate::finish_reason_name(reason);
                }
                if let Some(piece) = choice.delta.content.as_deref().filter(|p| !p.is_empty()) {
                    if first_token {
                        first_token = false;
                        state
                            .metrics
                            .ai_time_to_first_token_seconds
                            .observe(started.elapsed().as_secs_f64());
                    }
                    text.push_str(piece);
                    let event = Event::default()
                        .event("token")
                        .data(json!({ "text": piece }).to_string());
                    // A send fails only when the client is gone, which the
                    // next turn of the loop sees as `tx.closed()`.
                    let _ = tx.send(event).await;
                }
            }
        };
        // Stop reading (and so generating) before the bookkeeping.
        drop(upstream);
        let elapsed = started.elapsed();
        observe(&state.metrics, &outcome, elapsed);
        let completion = Completion {
            text,
            model,
            finish_reason,
            prompt_tokens: usage.0,
            completion_tokens: usage.1,
        };
        if let (Some(i), Some(o)) = usage {
            count_tokens(&state.metrics, i, o);
        }
        let error = outcome.as_ref().err().map(ToString::to_string);
        let rec = record(&g, Some(&completion), error.clone(), elapsed);
        let id = match keep(&state, &audit, &rec).await {
            Ok(id) => id,
            Err(e) => {
                tracing::error!(error = %e, "recording a streamed generation failed");
                return;
            }
        };
        let last = match (outcome, error) {
            (Ok(()), _) => {
                tracing::info!(generation_id = %id, duration_ms = elapsed.as_millis() as u64, "streamed generation succeeded");
                let result = result_of(id, completion, elapsed);
                Event::default()
                    .event("done")
                    .data(serde_json::to_string(&result).unwrap_or_default())
            }
            (Err(e), message) => {
                tracing::warn!(generation_id = %id, error = %e, "streamed generation failed");
                let api: ApiError = e.into();
                Event::default().event("error").data(
                    json!({"error": {"code": api.code(), "message": message, "generation_id": id}})
                        .to_string(),
                )
            }
        };
        // The client may be gone already; then nobody reads this.
        let _ = tx.send(last).await;
    });

    let events = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|e| (Ok::<_, Infallible>(e), rx))
    });
    Ok(Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response())
}
