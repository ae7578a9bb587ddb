//! The delivery worker: claims due emails from the outbox, sends them, and
//! records the outcome. Several workers (in one process or across replicas
//! sharing PostgreSQL) never send one email twice at the same time: a claim
//! is a lease in the row; a worker that dies leaves a lease that expires, and
//! another worker picks the email up again.
//!
//! The one duplicate no outbox can rule out: the SMTP server accepted the
//! email, then the worker died before writing `sent`. That email is sent
//! again after its lease expires (the same Message-ID lets receivers spot it).

use std::{
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};

use futures::future::join_all;
use tokio::sync::Notify;

use super::{
    smtp::{Mailer, SendError},
    suppression,
};
use crate::{
    queue_loop::{self, Every},
    shutdown::Shutdown,
    store::{Attempt, Finish, Outcome, Store, StoredEmail},
    telemetry::Metrics,
    webhooks::{EventType, NewEvent},
};

/// After this many attempts an email fails for good.
pub const MAX_ATTEMPTS: i64 = 12;
/// How often an idle worker looks for due emails (new ones wake it at once).
const POLL: Duration = Duration::from_millis(500);
/// First retry delay; doubles with each attempt, up to [`MAX_BACKOFF`].
const BASE_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// Pauses between attempts to record an outcome.
const RECORD_RETRY_PAUSES: [Duration; 3] = [
    Duration::from_millis(100),
    Duration::from_millis(500),
    Duration::from_secs(2),
];
/// How often the outbox gauges are refreshed.
const GAUGE_EVERY: Duration = Duration::from_secs(5);

/// A worker and what it needs.
pub struct Worker {
    /// The outbox.
    pub store: Store,
    /// The SMTP sender.
    pub mailer: Arc<Mailer>,
    /// Counters and gauges.
    pub metrics: Arc<Metrics>,
    /// Wakes the worker when the send route stored an email.
    pub wake: Arc<Notify>,
    /// This worker's name in claims (unique per process).
    pub id: String,
    /// When a webhook is configured: `email.sent` and `email.failed` events
    /// are queued, and this wakes the webhook worker.
    pub notify: Option<Arc<Notify>>,
}

impl Worker {
    /// Delivers until `shutdown`; sends in flight finish first.
    pub async fn run(self, shutdown: Shutdown) {
        let gauges = &Every::new(GAUGE_EVERY);
        let this = &self;
        queue_loop::run(&shutdown, &self.wake, POLL, move || async move {
            if gauges.due() {
                this.refresh_gauges().await;
            }
            // A claim outlasts the longest SMTP exchange, so a live worker
            // never loses an email it is still sending.
            let lease = this.mailer.timeout() * 2;
            let batch = match this
                .store
                .claim_emails(
                    &this.id,
                    i64::from(this.mailer.connections()),
                    lease,
                    SystemTime::now(),
                )
                .await
            {
                Ok(batch) => batch,
                Err(e) => {
                    tracing::warn!(error = %e, "claiming emails failed; retrying");
                    Vec::new()
                }
            };
            let full = batch.len() == this.mailer.connections() as usize;
            let attempted = join_all(batch.into_iter().map(|email| this.attempt(email))).await;
            this.record(&attempted).await;
            full
        })
        .await;
    }

    /// Sends `email` once (unless a recipient is suppressed) and says what
    /// to record.
    async fn attempt(&self, email: StoredEmail) -> Attempted {
        let start = Instant::now();
        // An address suppressed after this email was queued gets nothing.
        let result = match suppression::first_suppressed(&self.store, &email.recipients).await {
            Ok(None) => {
                let sent = self.mailer.send(&email).await;
                if let Err(e) = &sent
                    && e.permanent
                    && suppression::is_hard_bounce(&e.message)
                {
                    self.suppress_bounced(&email, &e.message).await;
                }
                sent
            }
            Ok(Some((_, s))) => Err(SendError {
                permanent: true,
                message: format!("not sent: {} is suppressed ({})", s.address, s.reason),
            }),
            Err(e) => Err(SendError {
                permanent: false,
                message: format!("checking the suppression list failed: {e}"),
            }),
        };
        self.metrics
            .email_send_duration_seconds
            .observe(start.elapsed().as_secs_f64());
        let now = SystemTime::now();
        let (outcome_name, answer) = match &result {
            Ok(reply) => ("sent", reply.clone()),
            Err(e) if e.permanent || email.attempts >= MAX_ATTEMPTS => {
                ("failed", e.message.clone())
            }
            Err(e) => ("retry", e.message.clone()),
        };
        let mut attempt_log = email.attempt_log.clone();
        attempt_log.push(Attempt {
            at: crate::store::unix_millis(now),
            outcome: outcome_name.to_owned(),
            answer,
            duration_ms: u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX),
        });
        let outcome = match result {
            Ok(_) => {
                self.metrics.emails_sent_total.inc();
                if !self.mailer.signs() {
                    self.metrics.emails_unsigned_total.inc();
                }
                tracing::info!(email_id = %email.id, attempts = email.attempts, "email sent");
                Outcome::Delivered
            }
            Err(SendError { permanent, message })
                if permanent || email.attempts >= MAX_ATTEMPTS =>
            {
                self.metrics.emails_failed_total.inc();
                tracing::warn!(email_id = %email.id, attempts = email.attempts, error = %message, "email failed");
                Outcome::Failed { error: message }
            }
            Err(SendError { message, .. }) => {
                let delay = backoff(email.attempts);
                tracing::info!(email_id = %email.id, attempts = email.attempts, retry_in_ms = delay.as_millis() as u64, error = %message, "email delivery will be retried");
                Outcome::Retry {
                    error: message,
                    at: now + delay,
                }
            }
        };
        let event = match &outcome {
            Outcome::Delivered => Some((EventType::EmailSent, None)),
            Outcome::Failed { error } => Some((EventType::EmailFailed, Some(error.as_str()))),
            Outcome::Retry { .. } => None,
        }
        .filter(|_| self.notify.is_some())
        .map(|(kind, error)| {
            NewEvent::email(kind, &email.id, &email.recipients.to, email.attempts, error)
        });
        Attempted {
            id: email.id,
            outcome,
            attempt_log,
            event,
        }
    }

    /// Records a batch's outcomes in one transaction. An outcome that is not
    /// recorded leaves its email claimed, and it is sent again once the lease
    /// expires: worth a few tries while the store is briefly unavailable.
    async fn record(&self, attempted: &[Attempted]) {
        if attempted.is_empty() {
            return;
        }
        let finishes: Vec<Finish<'_>> = attempted
            .iter()
            .map(|a| Finish {
                id: &a.id,
                outcome: &a.outcome,
                attempt_log: &a.attempt_log,
                event: a.event.as_ref(),
            })
            .collect();
        let mut pauses = RECORD_RETRY_PAUSES.iter();
        let recorded = loop {
            let result = self
                .store
                .finish_emails(&self.id, &finishes, SystemTime::now())
                .await;
            match (result, pauses.next()) {
                (Err(e), Some(pause)) => {
                    tracing::warn!(emails = finishes.len(), error = %e, "recording delivery outcomes failed; retrying");
                    tokio::time::sleep(*pause).await;
                }
                (result, _) => break result,
            }
        };
        match recorded {
            Ok(recorded) => {
                let mut events = false;
                for (a, ours) in attempted.iter().zip(recorded) {
                    if ours {
                        events |= a.event.is_some();
                    } else {
                        // Our lease expired and another worker took the email over.
                        tracing::warn!(email_id = %a.id, "the claim was lost before the outcome was recorded");
                    }
                }
                if let (Some(wake), true) = (&self.notify, events) {
                    wake.notify_one();
                }
            }
            Err(e) => {
                for a in attempted {
                    tracing::error!(email_id = %a.id, error = %e, "recording the delivery outcome failed");
                }
            }
        }
    }

    /// Suppresses the recipients a hard bounce names (or the only one).
    async fn suppress_bounced(&self, email: &StoredEmail, answer: &str) {
        let bounced = suppression::bounced(&email.recipients, answer);
        if bounced.is_empty() {
            tracing::warn!(email_id = %email.id, "a hard bounce names none of the email's recipients: none suppressed");
        }
        for address in bounced {
            let entry = suppression::bounce_entry(address, &email.id, answer, SystemTime::now());
            let audit = crate::audit::Context::system().entry(
                "suppression.add",
                Some(&entry.address),
                crate::audit::Outcome::Success,
                Some(format!("bounce of email {}", email.id)),
            );
            match self.store.suppress(&entry, Some(audit)).await {
                Ok(true) => {
                    self.metrics
                        .email_suppressions_total
                        .with_label_values(&["bounce"])
                        .inc();
                    tracing::info!(email_id = %email.id, "a hard bounce suppressed a recipient");
                }
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(email_id = %email.id, error = %e, "suppressing a bounced address failed")
                }
            }
        }
    }

    async fn refresh_gauges(&self) {
        match self.store.outbox_depth().await {
            Ok((depth, oldest)) => {
                self.metrics.email_outbox_depth.set(depth);
                let age = oldest
                    .map(|created| {
                        (crate::store::unix_millis(SystemTime::now()) - created).max(0) as f64
                            / 1000.0
                    })
                    .unwrap_or(0.0);
                self.metrics.email_outbox_oldest_age_seconds.set(age);
            }
            Err(e) => tracing::warn!(error = %e, "reading the outbox depth failed"),
        }
    }
}

/// One attempt's result, waiting to be recorded with its batch.
struct Attempted {
    id: String,
    outcome: Outcome,
    attempt_log: Vec<Attempt>,
    event: Option<NewEvent>,
}

/// Exponential backoff with ±20 % jitter, so retries of many emails after an
/// outage do not hit the relay all at once.
pub fn backoff(attempts: i64) -> Duration {
    let exponent = u32::try_from(attempts.saturating_sub(1).clamp(0, 16)).unwrap_or(16);
    let base = BASE_BACKOFF
        .saturating_mul(2u32.saturating_pow(exponent))
        .min(MAX_BACKOFF);
    let jitter = 0.8 + fastrand::f64() * 0.4;
    base.mul_f64(jitter)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_and_caps() {
        for _ in 0..100 {
            let first = backoff(1);
            assert!(
                first >= Duration::from_millis(800) && first <= Duration::from_millis(1200),
                "{first:?}"
            );
            let fourth = backoff(4);
            assert!(
                fourth >= Duration::from_millis(6400) && fourth <= Duration::from_millis(9600),
                "{fourth:?}"
            );
            assert!(backoff(40) <= MAX_BACKOFF.mul_f64(1.2));
        }
    }
}
