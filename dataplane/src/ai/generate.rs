//! One generation against the model server, bounded in time and in
//! concurrency.
//!
//! Every request gets one deadline (`AI_TIMEOUT_SECS`) that covers connecting,
//! the answer and at most one retry: a retryable failure (connection refused,
//! 408, 429, 5xx) is tried again once, after the server's `Retry-After` when
//! it gave one, but only if that wait ends before the deadline. A bound on
//! requests in flight (`AI_MAX_CONCURRENCY`) answers 503 at once when full
//! rather than queueing callers behind a slow model.

use std::{sync::Arc, time::Duration};

use async_openai::{
    error::OpenAIError,
    types::chat::{
        ChatCompletionRequestAssistantMessageArgs, ChatCompletionRequestMessage,
        ChatCompletionRequestSystemMessageArgs, ChatCompletionRequestUserMessageArgs,
        ChatCompletionResponseStream, CreateChatCompletionRequest, CreateChatCompletionRequestArgs,
        FinishReason,
    },
};
use tokio::{
    sync::{OwnedSemaphorePermit, Semaphore},
    time::Instant,
};

use super::{
    client::{ModelServer, upstream_status},
    validate::{Generation, Role},
};

/// Wait before the one retry when the server did not say how long.
const RETRY_PAUSE: Duration = Duration::from_millis(250);

/// Why a generation did not happen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AiError {
    /// Every slot for upstream requests is taken (503).
    #[error("too many generations in progress; try again shortly")]
    Busy,
    /// The deadline passed (504).
    #[error("the model server did not answer within {0:?}")]
    Deadline(Duration),
    /// The model server failed or answered something unusable (502).
    #[error("{0}")]
    Upstream(String),
    /// The client disconnected from a stream; the upstream request was
    /// cancelled.
    #[error("the client closed the stream")]
    Cancelled,
}

/// A finished generation.
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    /// The generated text.
    pub text: String,
    /// The model that answered, as the server names it.
    pub model: String,
    /// Why generation stopped (`stop`, `length`, …), if the server said.
    pub finish_reason: Option<String>,
    /// Tokens in the prompt, if the server counted them.
    pub prompt_tokens: Option<u32>,
    /// Tokens generated, if the server counted them.
    pub completion_tokens: Option<u32>,
}

/// Sends generations to the model server.
#[derive(Clone)]
pub struct Generator {
    server: ModelServer,
    slots: Arc<Semaphore>,
    timeout: Duration,
}

impl Generator {
    /// A generator over `server` with `concurrency` slots and one `timeout`
    /// per request.
    pub fn new(server: ModelServer, concurrency: usize, timeout: Duration) -> Self {
        Self {
            server,
            slots: Arc::new(Semaphore::new(concurrency)),
            timeout,
        }
    }

    /// The deadline given to each request.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Is the model server there? (`GET /models`.)
    pub async fn ping(&self) -> Result<(), String> {
        self.server.ping().await
    }

    /// A slot for one upstream request, or [`AiError::Busy`] when all are taken.
    pub fn slot(&self) -> Result<OwnedSemaphorePermit, AiError> {
        self.slots
            .clone()
            .try_acquire_owned()
            .map_err(|_| AiError::Busy)
    }

    /// Generates a whole answer for `g` within the deadline.
    pub async fn complete(&self, g: &Generation) -> Result<Completion, AiError> {
        let _slot = self.slot()?;
        let deadline = Instant::now() + self.timeout;
        let request = request(g, false)?;
        tokio::time::timeout_at(deadline, self.complete_retrying(&request, deadline))
            .await
            .map_err(|_| AiError::Deadline(self.timeout))?
    }

    /// Opens a stream for `request` (built with `stream: true`), retrying
    /// once like [`Generator::complete`]. The caller holds a [`slot`] and
    /// bounds this and the reading with its deadline.
    ///
    /// [`slot`]: Generator::slot
    pub async fn open_stream(
        &self,
        request: CreateChatCompletionRequest,
        deadline: Instant,
    ) -> Result<ChatCompletionResponseStream, AiError> {
        let first = self.server.chat.chat().create_stream(request.clone()).await;
        match first {
            Err(e) if let Some(pause) = retry_pause(&e) => {
                if Instant::now() + pause >= deadline {
                    return Err(describe(&e));
                }
                tokio::time::sleep(pause).await;
                self.server.chat.chat().create_stream(request).await
            }
            other => other,
        }
        .map_err(|e| describe(&e))
    }

    async fn complete_retrying(
        &self,
        request: &CreateChatCompletionRequest,
        deadline: Instant,
    ) -> Result<Completion, AiError> {
        let first = self.server.chat.chat().create(request.clone()).await;
        let response = match first {
            Err(e) if let Some(pause) = retry_pause(&e) => {
                if Instant::now() + pause >= deadline {
                    return Err(describe(&e));
                }
                tokio::time::sleep(pause).await;
                self.server.chat.chat().create(request.clone()).await
            }
            other => other,
        }
        .map_err(|e| describe(&e))?;
        let choice = response
            .choices
            .into_iter()
            .next()
            .ok_or_else(|| AiError::Upstream("the model server answered no choice".into()))?;
        Ok(Completion {
            text: choice.message.content.unwrap_or_default(),
            model: response.model,
            finish_reason: choice.finish_reason.and_then(finish_reason_name),
            prompt_tokens: response.usage.as_ref().map(|u| u.prompt_tokens),
            completion_tokens: response.usage.as_ref().map(|u| u.completion_tokens),
        })
    }
}

/// The wire name of a finish reason (`stop`, `length`, …).
pub fn finish_reason_name(reason: FinishReason) -> Option<String> {
    serde_json::to_value(reason)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
}

/// The chat request for `g`.
pub fn request(g: &Generation, stream: bool) -> Result<CreateChatCompletionRequest, AiError> {
    let build = |e: OpenAIError| AiError::Upstream(format!("building the request: {e}"));
    let mut messages: Vec<ChatCompletionRequestMessage> = Vec::new();
    for m in &g.messages {
        let content = m.content.clone();
        messages.push(match m.role {
            Role::System => ChatCompletionRequestSystemMessageArgs::default()
                .content(content)
                .build()
                .map_err(build)?
                .into(),
            Role::User => ChatCompletionRequestUserMessageArgs::default()
                .content(content)
                .build()
                .map_err(build)?
                .into(),
            Role::Assistant => ChatCompletionRequestAssistantMessageArgs::default()
                .content(content)
                .build()
                .map_err(build)?
                .into(),
        });
    }
    let mut args = CreateChatCompletionRequestArgs::default();
    // `max_tokens` is what every compatible server reads (llama.cpp before
    // 2026 ignores `max_completion_tokens`).
    #[allow(deprecated)]
    args.model(g.model.clone())
        .messages(messages)
        .max_tokens(g.max_tokens)
        .stream(stream);
    if let Some(t) = g.temperature {
        args.temperature(t);
    }
    args.build().map_err(build)
}

/// How long to wait before the one retry, if `e` is worth retrying.
fn retry_pause(e: &OpenAIError) -> Option<Duration> {
    if let Some(status) = upstream_status(e) {
        return status
            .is_retryable()
            .then(|| status.retry_after.unwrap_or(RETRY_PAUSE));
    }
    match e {
        OpenAIError::Reqwest(r) if r.is_connect() => Some(RETRY_PAUSE),
        _ => None,
    }
}

/// The client-facing description of an upstream failure (no prompt in it).
pub fn describe(e: &OpenAIError) -> AiError {
    if let Some(status) = upstream_status(e) {
        return AiError::Upstream(status.to_string());
    }
    AiError::Upstream(match e {
        OpenAIError::Reqwest(r) if r.is_connect() => {
            format!("the model server is unreachable: {r}")
        }
        OpenAIError::Reqwest(r) => format!("talking to the model server failed: {r}"),
        OpenAIError::JSONDeserialize(err, _) => {
            format!("the model server's answer is not a chat completion: {err}")
        }
        other => format!("the model server failed: {other}"),
    })
}
