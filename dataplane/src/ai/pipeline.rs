//! A generation from validated request to record: the model servers
//! ([`super::generate`]), the metrics, and the history (the `generations`
//! table with its `ai.generate` audit entry). Both routes that generate,
//! SecureVault's own `POST /api/generate-content` and the OpenAI-compatible
//! `POST /v1/chat/completions`, call this and differ only in the shape of
//! their answers.

use std::{
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};

use async_openai::types::chat::ChatCompletionStreamOptions;
use futures::StreamExt;
use tokio::sync::mpsc;

use super::{
    budget::{self, BudgetError, Budgets},
    generate::{self, AiError, Completion, Generator},
    validate::Generation,
};
use crate::{
    audit,
    auth::Principal,
    store::{NewGeneration, Store, StoreError},
    telemetry::Metrics,
};

/// Generations and what they are recorded in.
#[derive(Clone)]
pub struct Generations {
    /// The model servers.
    pub generator: Generator,
    /// The history.
    pub store: Store,
    /// Counters and histograms.
    pub metrics: Arc<Metrics>,
    /// The token budgets per key and account.
    pub budgets: Budgets,
}

/// A generation that succeeded, as kept.
#[derive(Debug, Clone)]
pub struct Kept {
    /// Its id in the history (`GET /api/generations/{id}`).
    pub id: String,
    /// What the model answered.
    pub completion: Completion,
    /// How long it took.
    pub elapsed: Duration,
}

/// Why a generation has no answer.
#[derive(Debug, thiserror::Error)]
pub enum GenerationError {
    /// The model servers did not answer, or not in time (recorded as a
    /// failed generation, except [`AiError::Busy`], which never reached them).
    #[error(transparent)]
    Ai(#[from] AiError),
    /// The generation could not be recorded.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A token budget has no room for it (it never started).
    #[error(transparent)]
    Budget(#[from] BudgetError),
}

/// What a streamed generation yields, in order: tokens, then one end.
#[derive(Debug)]
pub enum StreamEvent {
    /// A piece of the answer, as the model wrote it.
    Token(String),
    /// The whole answer, kept.
    Done(Kept),
    /// It failed after the stream opened; the partial answer is kept under `id`.
    Failed {
        /// The history entry of the failed generation.
        id: String,
        /// What went wrong.
        error: AiError,
    },
}

impl Generations {
    /// Generates a whole answer for `g`, asked by `who`, and keeps it.
    pub async fn complete(
        &self,
        who: &Principal,
        audit: &audit::Context,
        g: &Generation,
    ) -> Result<Kept, GenerationError> {
        let id = new_id();
        let hold = self
            .budgets
            .reserve(who, budget::ceiling(g), SystemTime::now())
            .await?;
        let started = Instant::now();
        let result = self.generator.complete(g).await;
        let elapsed = started.elapsed();
        let completion = match result {
            Ok(c) => with_usage(g, c),
            Err(AiError::Busy) => {
                self.budgets.settle(hold, 0).await;
                self.observe(&Err(AiError::Busy), elapsed);
                return Err(AiError::Busy.into());
            }
            Err(e) => {
                self.budgets.settle(hold, 0).await;
                return Err(self.failed(&id, who, audit, g, e, elapsed).await);
            }
        };
        self.budgets.settle(hold, completion.tokens()).await;
        self.observe(&Ok(()), elapsed);
        self.keep(
            &id,
            who,
            audit,
            &record(g, Some(&completion), None, elapsed),
        )
        .await?;
        self.count_tokens(&completion);
        tracing::info!(generation_id = %id, model = %completion.model, duration_ms = elapsed.as_millis() as u64, "generation succeeded");
        Ok(Kept {
            id,
            completion,
            elapsed,
        })
    }

    /// Streams `g`: errors before the stream opens are returned (with their
    /// status); after, the id it will be kept under and a receiver that
    /// yields tokens and then one end. A task
    /// owns the concurrency slot and the deadline and reads the model
    /// server; when the caller drops the receiver (its client went away)
    /// the task stops and drops the upstream response, which closes its
    /// connection: the model server stops generating.
    pub async fn stream(
        &self,
        who: Principal,
        audit: audit::Context,
        g: Generation,
    ) -> Result<(String, mpsc::Receiver<StreamEvent>), GenerationError> {
        let id = new_id();
        let hold = self
            .budgets
            .reserve(&who, budget::ceiling(&g), SystemTime::now())
            .await?;
        let slot = match self.generator.slot() {
            Ok(slot) => slot,
            Err(e) => {
                self.budgets.settle(hold, 0).await;
                self.observe(&Err(e.clone()), Duration::ZERO);
                return Err(e.into());
            }
        };
        let started = Instant::now();
        let timeout = self.generator.timeout();
        let deadline = tokio::time::Instant::now() + timeout;
        let mut request = match generate::request(&g, true) {
            Ok(request) => request,
            Err(e) => {
                self.budgets.settle(hold, 0).await;
                return Err(e.into());
            }
        };
        request.stream_options = Some(ChatCompletionStreamOptions {
            include_usage: Some(true),
            include_obfuscation: None,
        });
        let opened =
            tokio::time::timeout_at(deadline, self.generator.open_stream(request, deadline)).await;
        let mut upstream = match opened.unwrap_or(Err(AiError::Deadline(timeout))) {
            Ok(upstream) => upstream,
            Err(e) => {
                self.budgets.settle(hold, 0).await;
                return Err(self
                    .failed(&id, &who, &audit, &g, e, started.elapsed())
                    .await);
            }
        };

        let (tx, rx) = mpsc::channel::<StreamEvent>(32);
        let this = self.clone();
        let kept_as = id.clone();
        tokio::spawn(async move {
            let _slot = slot;
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
                    Err(_) => break Err(AiError::Deadline(timeout)),
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
                            this.metrics
                                .ai_time_to_first_token_seconds
                                .observe(started.elapsed().as_secs_f64());
                        }
                        text.push_str(piece);
                        // A send fails only when the client is gone, which the
                        // next turn of the loop sees as `tx.closed()`.
                        let _ = tx.send(StreamEvent::Token(piece.to_owned())).await;
                    }
                }
            };
            // Stop reading (and so generating) before the bookkeeping.
            drop(upstream);
            let elapsed = started.elapsed();
            this.observe(&outcome, elapsed);
            let completion = with_usage(
                &g,
                Completion {
                    text,
                    model,
                    finish_reason,
                    prompt_tokens: usage.0,
                    completion_tokens: usage.1,
                    tokens_estimated: false,
                },
            );
            // What streamed was generated, and is charged, even when the
            // client left or the deadline cut it.
            this.budgets.settle(hold, completion.tokens()).await;
            this.count_tokens(&completion);
            let error = outcome.as_ref().err().map(ToString::to_string);
            let id = kept_as;
            if let Err(e) = this
                .keep(
                    &id,
                    &who,
                    &audit,
                    &record(&g, Some(&completion), error, elapsed),
                )
                .await
            {
                tracing::error!(error = %e, "recording a streamed generation failed");
                return;
            }
            let last = match outcome {
                Ok(()) => {
                    tracing::info!(generation_id = %id, duration_ms = elapsed.as_millis() as u64, "streamed generation succeeded");
                    StreamEvent::Done(Kept {
                        id,
                        completion,
                        elapsed,
                    })
                }
                Err(error) => {
                    tracing::warn!(generation_id = %id, error = %error, "streamed generation failed");
                    StreamEvent::Failed { id, error }
                }
            };
            // The client may be gone already; then nobody reads this.
            let _ = tx.send(last).await;
        });
        Ok((id, rx))
    }

    /// Counts and records a generation that failed upstream (it reached the
    /// model server, so it is history and counts in `/api/stats`).
    async fn failed(
        &self,
        id: &str,
        who: &Principal,
        audit: &audit::Context,
        g: &Generation,
        e: AiError,
        elapsed: Duration,
    ) -> GenerationError {
        self.observe(&Err(e.clone()), elapsed);
        let rec = record(g, None, Some(e.to_string()), elapsed);
        match self.keep(id, who, audit, &rec).await {
            Ok(_) => e.into(),
            Err(store) => store.into(),
        }
    }

    /// Stores a finished generation in the history and the audit trail.
    async fn keep(
        &self,
        id: &str,
        who: &Principal,
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
        self.store
            .insert_generation(id, rec, &who.account, SystemTime::now(), Some(entry))
            .await
    }

    fn observe(&self, outcome: &Result<(), AiError>, elapsed: Duration) {
        let status = match outcome {
            Ok(()) => "succeeded",
            Err(AiError::Busy) => "rejected",
            Err(AiError::Cancelled) => "cancelled",
            Err(_) => "failed",
        };
        self.metrics
            .ai_generations_total
            .with_label_values(&[status])
            .inc();
        if !matches!(outcome, Err(AiError::Busy)) {
            self.metrics
                .ai_generation_duration_seconds
                .observe(elapsed.as_secs_f64());
        }
        if matches!(outcome, Err(AiError::Deadline(_))) {
            self.metrics.ai_timeouts_total.inc();
        }
    }

    fn count_tokens(&self, c: &Completion) {
        if let (Some(prompt), Some(completion)) = (c.prompt_tokens, c.completion_tokens) {
            let tokens = &self.metrics.ai_tokens_total;
            tokens.with_label_values(&["in"]).inc_by(u64::from(prompt));
            tokens
                .with_label_values(&["out"])
                .inc_by(u64::from(completion));
        }
    }
}

/// `c` with token counts: the server's, or estimates (flagged) when it
/// reported none.
fn with_usage(g: &Generation, mut c: Completion) -> Completion {
    if c.prompt_tokens.is_none() || c.completion_tokens.is_none() {
        c.prompt_tokens = Some(budget::estimate_prompt(g));
        c.completion_tokens = Some(budget::estimate(&c.text));
        c.tokens_estimated = true;
    }
    c
}

/// A generation's id, chosen before it starts so that a stream can name it
/// from its first event.
fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
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
        tokens_estimated: c.is_some_and(|c| c.tokens_estimated),
        duration_ms: elapsed.as_millis() as u64,
        error,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ai::validate::{Message, Role};

    fn asked() -> Generation {
        Generation {
            messages: vec![Message {
                role: Role::User,
                content: "Write twelve words.".into(),
            }],
            model: "m".into(),
            max_tokens: 16,
            temperature: None,
        }
    }

    fn answered(prompt: Option<u32>, completion: Option<u32>) -> Completion {
        Completion {
            text: "Twelve words would go here, and here they are, all of them.".into(),
            model: "m".into(),
            finish_reason: Some("stop".into()),
            prompt_tokens: prompt,
            completion_tokens: completion,
            tokens_estimated: false,
        }
    }

    #[test]
    fn the_server_s_counts_are_kept_and_missing_ones_estimated_and_flagged() {
        let kept = with_usage(&asked(), answered(Some(30), Some(12)));
        assert_eq!((kept.tokens(), kept.tokens_estimated), (42, false));
        // No usage, or half of it: both counts are ours, and flagged. The
        // prompt's 19 bytes are 5 tokens, plus 8 for its role markers; the
        // answer's 60 bytes, 15.
        for (prompt, completion) in [(None, None), (Some(30), None)] {
            let estimated = with_usage(&asked(), answered(prompt, completion));
            assert!(estimated.tokens_estimated);
            assert_eq!(
                (estimated.prompt_tokens, estimated.completion_tokens),
                (Some(13), Some(15))
            );
        }
    }
}
