//! One generation against the model servers, bounded in time and in
//! concurrency, moving to the next server when one fails.
//!
//! Every request gets one deadline (`AI_TIMEOUT_SECS`) that covers
//! connecting, the answer, and every server tried. The servers serving the
//! request's model are tried in their configured order (`AI_UPSTREAMS`),
//! each for at most its own timeout: on a connection error, a 5xx, a 429, a
//! 408 or that timeout, the next one gets the request. A stream moves on
//! only while it is being opened, never after a token reached the client.
//! With a single server, the failure is instead retried once on it, after
//! the server's `Retry-After` when it gave one, if that wait ends before the
//! deadline.
//!
//! A server that fails [`FAILURES_TO_COOL`] times in a row cools down: it is
//! tried only after every other one, until the background health check,
//! once the cool-down (`AI_COOLDOWN_SECS`) has passed, finds it answering.
//! A bound on requests in flight (`AI_MAX_CONCURRENCY`) answers 503 at once
//! when full rather than queueing callers behind a slow model.

use std::{
    future::Future,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

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
    client::{self, ClientError, ModelServer, upstream_status},
    validate::{Generation, Role},
};
use crate::{config::OpenAiConfig, telemetry::Metrics};

/// Wait before the one retry when the server did not say how long.
const RETRY_PAUSE: Duration = Duration::from_millis(250);
/// Failures in a row after which a model server cools down.
pub const FAILURES_TO_COOL: u32 = 3;

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
    /// Whether the counts are our estimate: the server reported none.
    pub tokens_estimated: bool,
}

impl Completion {
    /// Prompt and completion tokens together (what a budget is charged).
    pub fn tokens(&self) -> u64 {
        u64::from(self.prompt_tokens.unwrap_or(0)) + u64::from(self.completion_tokens.unwrap_or(0))
    }
}

/// Sends generations to the model servers.
#[derive(Clone)]
pub struct Generator {
    upstreams: Arc<[Upstream]>,
    slots: Arc<Semaphore>,
    timeout: Duration,
    cooldown: Duration,
    metrics: Arc<Metrics>,
}

/// One model server and how it has been answering.
struct Upstream {
    name: String,
    server: ModelServer,
    /// The models it serves; empty: all.
    models: Vec<String>,
    timeout: Duration,
    health: Mutex<Health>,
}

#[derive(Debug, Default)]
struct Health {
    /// Failed attempts since the last success.
    failures: u32,
    /// Since when it cools down, if it does.
    cooling_since: Option<Instant>,
}

/// How a model server is doing, for the health report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamReport {
    /// Its name in `AI_UPSTREAMS` (`default` for OPENAI_BASE_URL).
    pub name: String,
    /// Whether it cools down after failures.
    pub cooling: bool,
    /// What `GET /models` said.
    pub ping: Result<(), String>,
}

impl Upstream {
    fn lock(&self) -> std::sync::MutexGuard<'_, Health> {
        // Two counters, never half changed: a poisoned lock is used as is.
        self.health.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn serves(&self, model: &str) -> bool {
        self.models.is_empty() || self.models.iter().any(|m| m == model)
    }

    fn cooling(&self) -> bool {
        self.lock().cooling_since.is_some()
    }

    fn succeeded(&self, metrics: &Metrics) {
        let mut health = self.lock();
        if health.cooling_since.take().is_some() {
            tracing::info!(upstream = %self.name, "model server answers again");
        }
        health.failures = 0;
        metrics
            .ai_upstream_up
            .with_label_values(&[&self.name])
            .set(1);
    }

    fn failed(&self, metrics: &Metrics, error: &AiError) {
        metrics
            .ai_upstream_failures_total
            .with_label_values(&[&self.name])
            .inc();
        let mut health = self.lock();
        health.failures = health.failures.saturating_add(1);
        if health.failures >= FAILURES_TO_COOL && health.cooling_since.is_none() {
            health.cooling_since = Some(Instant::now());
            metrics
                .ai_upstream_up
                .with_label_values(&[&self.name])
                .set(0);
            tracing::warn!(upstream = %self.name, failures = health.failures, error = %error, "model server cools down");
        }
    }
}

/// What went wrong with one attempt: an answer to pass on as is, or a
/// failure of the server that another server (or a retry) may not have.
enum Attempt {
    Final(AiError),
    ServerFailed {
        error: AiError,
        /// The server's `Retry-After`, or our pause, for a retry on it.
        pause: Duration,
    },
}

impl Generator {
    /// A generator over `config`'s servers, with its concurrency slots and
    /// one deadline per request.
    pub fn new(config: &OpenAiConfig, metrics: Arc<Metrics>) -> Result<Self, ClientError> {
        let upstreams = config
            .upstreams
            .iter()
            .map(|u| {
                metrics.ai_upstream_up.with_label_values(&[&u.name]).set(1);
                Ok(Upstream {
                    name: u.name.clone(),
                    server: client::client(u)?,
                    models: u.models.clone(),
                    timeout: u.timeout,
                    health: Mutex::new(Health::default()),
                })
            })
            .collect::<Result<Vec<_>, ClientError>>()?;
        Ok(Self {
            upstreams: upstreams.into(),
            slots: Arc::new(Semaphore::new(config.max_concurrency)),
            timeout: config.timeout,
            cooldown: config.cooldown,
            metrics,
        })
    }

    /// The deadline given to each request.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Asks every server `GET /models`, each for at most `limit`; a server
    /// whose cool-down has passed and that answers is taken in its turn
    /// again. The background health check calls this.
    pub async fn check(&self, limit: Duration) -> Vec<UpstreamReport> {
        let pings = futures::future::join_all(self.upstreams.iter().map(|u| async move {
            tokio::time::timeout(limit, u.server.ping())
                .await
                .unwrap_or_else(|_| Err(format!("no answer within {limit:?}")))
        }))
        .await;
        self.upstreams
            .iter()
            .zip(pings)
            .map(|(u, ping)| {
                let cooled = u
                    .lock()
                    .cooling_since
                    .is_some_and(|since| since.elapsed() >= self.cooldown);
                if cooled && ping.is_ok() {
                    u.succeeded(&self.metrics);
                }
                UpstreamReport {
                    name: u.name.clone(),
                    cooling: u.cooling(),
                    ping,
                }
            })
            .collect()
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
        let response = self
            .with_fallback(&g.model, deadline, |server| {
                let request = request.clone();
                async move { server.chat.chat().create(request).await }
            })
            .await?;
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
            tokens_estimated: false,
        })
    }

    /// Opens a stream for `request` (built with `stream: true`), moving on
    /// like [`Generator::complete`] until one server has answered with its
    /// headers. The caller holds a [`slot`] and bounds the reading with its
    /// deadline.
    ///
    /// [`slot`]: Generator::slot
    pub async fn open_stream(
        &self,
        request: CreateChatCompletionRequest,
        deadline: Instant,
    ) -> Result<ChatCompletionResponseStream, AiError> {
        let model = request.model.clone();
        self.with_fallback(&model, deadline, |server| {
            let request = request.clone();
            async move { server.chat.chat().create_stream(request).await }
        })
        .await
    }

    /// The servers for `model` in the order to try them: those taken in
    /// their turn first, then those cooling down, as a last resort.
    fn candidates(&self, model: &str) -> Vec<&Upstream> {
        let (warm, cooling): (Vec<&Upstream>, Vec<&Upstream>) = self
            .upstreams
            .iter()
            .filter(|u| u.serves(model))
            .partition(|u| !u.cooling());
        warm.into_iter().chain(cooling).collect()
    }

    /// Runs `call` on the servers for `model` until one answers, within
    /// `deadline`; with one server, retries once on it instead.
    async fn with_fallback<T, F, Fut>(
        &self,
        model: &str,
        deadline: Instant,
        call: F,
    ) -> Result<T, AiError>
    where
        F: Fn(ModelServer) -> Fut,
        Fut: Future<Output = Result<T, OpenAIError>>,
    {
        let mut order = self.candidates(model);
        let single = order.len() == 1;
        if single {
            // One retry on the only server.
            order.push(order[0]);
        }
        let mut last = AiError::Upstream(format!("no model server serves the model {model:?}"));
        for (i, upstream) in order.iter().enumerate() {
            if i > 0 && !single {
                self.metrics.ai_fallbacks_total.inc();
                tracing::info!(upstream = %upstream.name, error = %last, "trying the next model server");
            }
            let attempt_deadline = deadline.min(Instant::now() + upstream.timeout);
            let result = match tokio::time::timeout_at(
                attempt_deadline,
                call(upstream.server.clone()),
            )
            .await
            {
                Ok(Ok(answer)) => {
                    upstream.succeeded(&self.metrics);
                    return Ok(answer);
                }
                Ok(Err(e)) => classify(&e),
                Err(_) if Instant::now() >= deadline => {
                    upstream.failed(&self.metrics, &AiError::Deadline(self.timeout));
                    return Err(AiError::Deadline(self.timeout));
                }
                Err(_) => Attempt::ServerFailed {
                    error: AiError::Deadline(upstream.timeout),
                    pause: Duration::ZERO,
                },
            };
            match result {
                Attempt::Final(error) => return Err(error),
                Attempt::ServerFailed { error, pause } => {
                    upstream.failed(&self.metrics, &error);
                    if single && i == 0 {
                        if Instant::now() + pause >= deadline {
                            return Err(error);
                        }
                        tokio::time::sleep(pause).await;
                    }
                    last = error;
                }
            }
        }
        Err(last)
    }
}

/// Whether another try (on this server or the next) may help with `e`.
fn classify(e: &OpenAIError) -> Attempt {
    match retry_pause(e) {
        Some(pause) => Attempt::ServerFailed {
            error: describe(e),
            pause,
        },
        None => Attempt::Final(describe(e)),
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
        // Refused, reset or cut off before the answer was complete: the
        // server failed, not the request.
        OpenAIError::Reqwest(_) => Some(RETRY_PAUSE),
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
