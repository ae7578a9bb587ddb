//! Watches the dependencies a request does not fail without (SMTP, the
//! cache) and queues a `system.error` event when one stops answering. One
//! event per outage: nothing more is sent until the dependency has answered
//! again, so a long outage does not flood the receiver. The store is not
//! watched here: without it no event can be queued, and the readiness probe
//! already takes the pod out of service.

use std::sync::Arc;

use tokio::sync::Notify;

use super::NewEvent;
use crate::{
    cache::Cache,
    health::{CheckResult, CheckStatus, HealthMonitor},
    shutdown::Shutdown,
    store::Store,
};

/// What the monitor watches and where it reports.
pub struct Monitor {
    /// Where `system.error` events are queued.
    pub store: Store,
    /// The rounds of dependency checks it reads (it runs none of its own).
    pub health: HealthMonitor,
    /// The cache; watched only when it is a separate server (Redis).
    pub cache: Cache,
    /// Wakes the webhook worker after an event was queued.
    pub wake: Arc<Notify>,
}

/// Which dependencies were failing at the last round, so only a change from
/// answering to failing is reported.
#[derive(Debug, Default)]
struct Failing {
    smtp: bool,
    cache: bool,
}

impl Monitor {
    /// Reads each round of checks until `shutdown`.
    pub async fn run(self, shutdown: Shutdown) {
        let mut failing = Failing::default();
        let mut rounds = self.health.subscribe();
        loop {
            let round = rounds.borrow_and_update().clone();
            if let Some(round) = round {
                if let Some(result) = round.checks.get("smtp") {
                    self.observe("smtp", result, &mut failing.smtp).await;
                }
                if self.cache.is_remote()
                    && let Some(result) = round.checks.get("cache")
                {
                    self.observe("cache", result, &mut failing.cache).await;
                }
            }
            tokio::select! {
                changed = rounds.changed() => if changed.is_err() { return },
                () = shutdown.wait() => return,
            }
        }
    }

    async fn observe(&self, component: &str, result: &CheckResult, was_failing: &mut bool) {
        let now_failing = result.status == CheckStatus::Unhealthy;
        if now_failing && !*was_failing {
            let error = result.error.as_deref().unwrap_or("unhealthy");
            tracing::error!(component, error, "a dependency stopped answering");
            let event = NewEvent::system_error(component, error);
            match self
                .store
                .enqueue_event(&event, std::time::SystemTime::now())
                .await
            {
                Ok(_) => self.wake.notify_one(),
                Err(e) => {
                    tracing::error!(component, error = %e, "queueing the system.error event failed")
                }
            }
        } else if !now_failing && *was_failing {
            tracing::info!(component, "a dependency answers again");
        }
        *was_failing = now_failing;
    }
}
