//! Delivers queued webhook events: claims them like the email worker claims
//! emails, POSTs each with its Standard Webhooks headers, and records the
//! outcome. A 2xx answer delivers the event; a timeout, a connection error, a
//! 5xx, 408 or 429 is retried with backoff; any other 4xx means the receiver
//! refuses it, so it fails at once. After [`MAX_ATTEMPTS`] it fails too.
//!
//! Every attempt carries the same `webhook-id`, and a receiver that answered
//! but whose answer was lost gets the event again: receivers drop duplicates
//! by that id, as the Standard Webhooks specification asks.

use std::{
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use futures::future::join_all;
use reqwest::{StatusCode, header::CONTENT_TYPE};
use tokio::sync::Notify;

use super::{event, signature};
use crate::{
    config::WebhookConfig,
    email::worker::backoff,
    queue_loop::{self, Every},
    shutdown::Shutdown,
    store::{Outcome, Store, StoredEvent},
    telemetry::Metrics,
};

/// Events claimed and delivered concurrently per round.
const BATCH: i64 = 8;
/// Bound on one delivery: receivers should answer at once and work later.
pub const TIMEOUT: Duration = Duration::from_secs(15);
/// How long a claim holds: longer than one delivery can take.
const LEASE: Duration = Duration::from_secs(60);
/// After this many attempts (about an hour of backoff) an event fails.
pub const MAX_ATTEMPTS: i64 = 15;
/// How often an idle worker looks for due events.
const POLL: Duration = Duration::from_millis(500);
/// How often the backlog gauge is refreshed.
const GAUGE_EVERY: Duration = Duration::from_secs(5);

/// Why a client could not be made.
#[derive(Debug, thiserror::Error)]
#[error("webhook HTTP client: {0}")]
pub struct ClientError(#[from] reqwest::Error);

/// The webhook worker and what it needs.
pub struct Worker {
    /// The queue.
    pub store: Store,
    /// Where and how to deliver.
    pub config: WebhookConfig,
    /// Counters and the backlog gauge.
    pub metrics: Arc<Metrics>,
    /// Wakes the worker when an event was queued.
    pub wake: Arc<Notify>,
    /// This worker's name in claims.
    pub id: String,
    /// The HTTP client (connection pool).
    pub client: reqwest::Client,
}

/// An HTTP client for webhooks: bounded in time, and never following
/// redirects, so a receiver cannot bounce signed events elsewhere.
pub fn client() -> Result<reqwest::Client, ClientError> {
    crate::tls::install_crypto_provider();
    Ok(reqwest::Client::builder()
        .timeout(TIMEOUT)
        .connect_timeout(Duration::from_secs(5))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("SecureVault-Webhooks/", env!("CARGO_PKG_VERSION")))
        .build()?)
}

impl Worker {
    /// Delivers until `shutdown`; deliveries in flight finish first.
    pub async fn run(self, shutdown: Shutdown) {
        let gauges = &Every::new(GAUGE_EVERY);
        let this = &self;
        queue_loop::run(&shutdown, &self.wake, POLL, move || async move {
            if gauges.due() {
                match this.store.webhook_backlog().await {
                    Ok(n) => this.metrics.webhook_backlog.set(n),
                    Err(e) => tracing::warn!(error = %e, "reading the webhook backlog failed"),
                }
            }
            let batch = match this
                .store
                .claim_events(&this.id, BATCH, LEASE, SystemTime::now())
                .await
            {
                Ok(batch) => batch,
                Err(e) => {
                    tracing::warn!(error = %e, "claiming webhook events failed; retrying");
                    Vec::new()
                }
            };
            let full = batch.len() == BATCH as usize;
            join_all(batch.into_iter().map(|event| this.deliver(event))).await;
            full
        })
        .await;
    }

    async fn deliver(&self, event: StoredEvent) {
        let outcome = match self.post(&event).await {
            Ok(()) => Outcome::Delivered,
            Err(Failure { permanent, message }) if permanent || event.attempts >= MAX_ATTEMPTS => {
                tracing::warn!(event_id = %event.id, event = %event.event_type, attempts = event.attempts, error = %message, "webhook event failed");
                Outcome::Failed { error: message }
            }
            Err(Failure { message, .. }) => {
                let delay = backoff(event.attempts);
                tracing::info!(event_id = %event.id, event = %event.event_type, attempts = event.attempts, retry_in_ms = delay.as_millis() as u64, error = %message, "webhook delivery will be retried");
                Outcome::Retry {
                    error: message,
                    at: SystemTime::now() + delay,
                }
            }
        };
        let result = match &outcome {
            Outcome::Delivered => "delivered",
            Outcome::Retry { .. } => "retry",
            Outcome::Failed { .. } => "failed",
        };
        self.metrics
            .webhook_deliveries_total
            .with_label_values(&[event.event_type.as_str(), result])
            .inc();
        match self
            .store
            .finish_event(&event.id, &self.id, &outcome, SystemTime::now())
            .await
        {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!(event_id = %event.id, "the webhook claim was lost before the outcome was recorded")
            }
            Err(e) => {
                tracing::error!(event_id = %event.id, error = %e, "recording the webhook outcome failed")
            }
        }
    }

    /// One attempt. The timestamp is the attempt's, as receivers reject
    /// old ones to stop replays; the id is the event's, to drop duplicates.
    async fn post(&self, event: &StoredEvent) -> Result<(), Failure> {
        let body = event::render(
            self.config.format,
            &event.event_type,
            &event.data,
            event.created_at,
        )
        .to_string();
        let timestamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        let mut request = self
            .client
            .post(self.config.url.clone())
            .header(CONTENT_TYPE, "application/json")
            .header("webhook-id", &event.id)
            .header("webhook-timestamp", timestamp.to_string());
        if let Some(key) = &self.config.secret {
            request = request.header(
                "webhook-signature",
                signature::sign(key.expose(), &event.id, timestamp, body.as_bytes()),
            );
        }
        let response = request.body(body).send().await.map_err(|e| Failure {
            permanent: false,
            // The URL may hold a token (Slack's do): say what failed, not where.
            message: describe(&e.without_url()),
        })?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let retryable = status.is_server_error()
            || matches!(
                status,
                StatusCode::REQUEST_TIMEOUT | StatusCode::TOO_MANY_REQUESTS
            );
        Err(Failure {
            permanent: !retryable,
            message: format!("the receiver answered {status}"),
        })
    }
}

/// A failed attempt.
struct Failure {
    permanent: bool,
    message: String,
}

/// The error and its causes on one line (reqwest's own message is terse).
fn describe(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
