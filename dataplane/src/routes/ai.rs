//! `POST /api/generate-content` and `GET /api/generations/{id}`.

use std::{convert::Infallible, time::SystemTime};

use axum::{
    Extension, Json,
    extract::{Path, State},
    http::{HeaderMap, header},
    response::{
        IntoResponse, Response,
        sse::{Event, KeepAlive, Sse},
    },
};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::mpsc;
use utoipa::ToSchema;

use crate::{
    ai::{
        budget::BudgetError,
        generate::AiError,
        pipeline::{GenerationError, Generations, Kept, StreamEvent},
        validate::{GenerateRequest, validate},
    },
    app::AppState,
    audit,
    auth::Principal,
    error::{ApiError, ErrorBody},
    extract::ApiJson,
    routes::rfc3339,
    store::StoredGeneration,
};

/// Token counts of one generation.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Usage {
    /// Tokens in the prompt.
    pub prompt_tokens: Option<u32>,
    /// Tokens generated.
    pub completion_tokens: Option<u32>,
    /// Whether the counts are SecureVault's estimate (about four bytes a
    /// token) because the model server reported none; budgets are charged
    /// these counts either way.
    pub estimated: bool,
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
                estimated: g.tokens_estimated,
            },
            duration_ms: g.duration_ms,
            error: g.error.clone(),
            created_at: rfc3339(s.created_at),
        }
    }
}

impl From<BudgetError> for ApiError {
    fn from(e: BudgetError) -> Self {
        match e {
            BudgetError::Exceeded { ref budget, .. } => {
                let retry = budget
                    .resets_at
                    .duration_since(SystemTime::now())
                    .unwrap_or_default();
                Self::BudgetExceeded {
                    budget: budget.name,
                    resets_at: budget.resets_at_rfc3339(),
                    retry_after_secs: retry.as_secs().max(1),
                    message: e.to_string(),
                }
            }
            BudgetError::Unavailable(e) => e.into(),
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
        (status = 429, description = "A rate limit, or a token budget of the key or account (`token_budget_exceeded`, naming the budget and when it resets)", body = ErrorBody),
        (status = 502, description = "The model server failed", body = ErrorBody),
        (status = 503, description = "AI is not configured, or too many generations are in progress", body = ErrorBody),
        (status = 504, description = "The model server did not answer within AI_TIMEOUT_SECS", body = ErrorBody),
    )
)]
pub async fn generate_content(
    State(state): State<AppState>,
    Extension(caller): Extension<Principal>,
    audit: audit::Context,
    headers: HeaderMap,
    ApiJson(request): ApiJson<GenerateRequest>,
) -> Result<Response, ApiError> {
    let generations = generations(&state)?;
    let wants_events = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/event-stream"));
    let stream = request.stream || wants_events;
    let g = validate(request, &state.config.openai.models)?;
    if stream {
        let (_, events) = generations.stream(caller, audit, g).await?;
        return Ok(sse(events));
    }
    let kept = generations.complete(&caller, &audit, &g).await?;
    Ok(Json(GenerationResult::from(kept)).into_response())
}

/// The generation pipeline, or 503 when no model server is configured.
pub(crate) fn generations(state: &AppState) -> Result<Generations, ApiError> {
    let Some(generator) = state.generator.clone() else {
        return Err(ApiError::Unavailable(
            "text generation is not configured (set OPENAI_BASE_URL, OPENAI_API_KEY or AI_UPSTREAMS)".into(),
        ));
    };
    Ok(Generations {
        generator,
        store: state.store.clone(),
        metrics: state.metrics.clone(),
        budgets: state.budgets.clone(),
    })
}

impl From<GenerationError> for ApiError {
    fn from(e: GenerationError) -> Self {
        match e {
            GenerationError::Ai(e) => e.into(),
            GenerationError::Store(e) => e.into(),
            GenerationError::Budget(e) => e.into(),
        }
    }
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

impl From<Kept> for GenerationResult {
    fn from(kept: Kept) -> Self {
        let Kept {
            id,
            completion: c,
            elapsed,
        } = kept;
        GenerationResult {
            id,
            status: "succeeded".into(),
            text: c.text,
            model: c.model,
            finish_reason: c.finish_reason,
            usage: Usage {
                prompt_tokens: c.prompt_tokens,
                completion_tokens: c.completion_tokens,
                estimated: c.tokens_estimated,
            },
            duration_ms: elapsed.as_millis() as u64,
            error: None,
            created_at: rfc3339(crate::store::unix_millis(SystemTime::now())),
        }
    }
}

/// SecureVault's events: `token` with `{"text"}` per piece, then `done`
/// with the whole result, or `error` with the code, the message and the
/// id the failed generation is kept under.
fn sse(events: mpsc::Receiver<StreamEvent>) -> Response {
    let events = futures::stream::unfold(events, |mut rx| async move {
        let event = match rx.recv().await? {
            StreamEvent::Token(piece) => Event::default()
                .event("token")
                .data(json!({ "text": piece }).to_string()),
            StreamEvent::Done(kept) => Event::default()
                .event("done")
                .data(serde_json::to_string(&GenerationResult::from(kept)).unwrap_or_default()),
            StreamEvent::Failed { id, error } => {
                let message = error.to_string();
                let api: ApiError = error.into();
                Event::default().event("error").data(
                    json!({"error": {"code": api.code(), "message": message, "generation_id": id}})
                        .to_string(),
                )
            }
        };
        Some((Ok::<_, Infallible>(event), rx))
    });
    Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response()
}
