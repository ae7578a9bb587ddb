//! When the SMTP relay comes back after an outage, the emails it failed go
//! at once instead of at their retry time.
//!
//! A failed attempt puts an email back in the outbox with an exponential
//! backoff (1 s, doubling, up to five minutes), which spares a relay that is
//! struggling. After a real outage that backoff only delays mail: the
//! relay is answering again, yet the email waits minutes. The health
//! checks already ask the relay every second while it fails
//! ([`crate::health`]); the first round that finds it healthy again makes
//! every queued email due now and wakes the delivery worker. The worker's
//! connection cap (`SMTP_MAX_CONNECTIONS`) still bounds the burst.

use std::{sync::Arc, time::SystemTime};

use tokio::sync::Notify;

use crate::{
    health::{CheckStatus, HealthMonitor},
    shutdown::Shutdown,
    store::Store,
};

/// Watches the health rounds until `shutdown`; on the relay's return,
/// makes the queued emails due and wakes the worker (`wake`).
pub async fn run(health: HealthMonitor, store: Store, wake: Arc<Notify>, shutdown: Shutdown) {
    let mut rounds = health.subscribe();
    let mut was_down = false;
    loop {
        tokio::select! {
            changed = rounds.changed() => if changed.is_err() { return },
            () = shutdown.wait() => return,
        }
        let healthy = match rounds.borrow_and_update().as_ref() {
            Some(round) => round
                .checks
                .get("smtp")
                .map(|c| c.status == CheckStatus::Healthy),
            None => None,
        };
        match healthy {
            Some(false) => was_down = true,
            Some(true) if was_down => {
                was_down = false;
                match store.retry_queued_now(SystemTime::now()).await {
                    Ok(n) => {
                        tracing::info!(
                            emails = n,
                            "the SMTP relay is back: queued emails retried now"
                        );
                        wake.notify_one();
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "the SMTP relay is back, but the queued emails could not be made due; they go at their retry time")
                    }
                }
            }
            _ => {}
        }
    }
}
