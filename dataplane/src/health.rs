//! Dependency checks and how they add up to one status. Each check is bounded
//! in time, so a hung dependency shows as failed instead of hanging the probe.
//!
//! The checks run in the background, one round every [`CHECK_INTERVAL`]
//! (every second while one fails) ([`HealthMonitor`]), and whoever wants
//! them reads the last round: the
//! detailed health report and the webhook monitor. A request never causes a
//! call to the model server or an SMTP connection, so asking for the report
//! in a loop cannot be turned against those servers (or against the
//! model server's API key and bill).

use std::{
    collections::BTreeMap,
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use utoipa::ToSchema;

use crate::{
    ai::generate::Generator, cache::Cache, email::smtp::Mailer, ratelimit::Limiter,
    shutdown::Shutdown, store::Store, telemetry::Metrics,
};

/// Time between two rounds of checks.
pub const CHECK_INTERVAL: Duration = Duration::from_secs(5);

/// Time between two rounds while a check fails: a dependency that comes
/// back is seen soon, and one that failed once on a busy moment is not
/// reported for long.
const RECHECK_INTERVAL: Duration = Duration::from_secs(1);

/// Bound on one check: a round never waits longer for a dependency. No
/// request waits on a round, so it can be generous.
const CHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// What the checks look at; `None` for what is not configured.
pub struct Dependencies {
    /// The SQL store (critical).
    pub store: Store,
    /// The cache.
    pub cache: Cache,
    /// The rate limiter.
    pub limiter: Limiter,
    /// The SMTP server, when email is configured.
    pub mailer: Option<Arc<Mailer>>,
    /// The model server, when AI is configured.
    pub generator: Option<Generator>,
}

/// One round of checks.
#[derive(Debug, Clone)]
pub struct Round {
    /// When it finished.
    pub at: SystemTime,
    /// One result per dependency: `database`, `cache`, `rate_limiter`, and
    /// `smtp` and `ai` when configured.
    pub checks: BTreeMap<String, CheckResult>,
}

/// The last round of checks, refreshed in the background.
#[derive(Clone)]
pub struct HealthMonitor {
    latest: watch::Receiver<Option<Arc<Round>>>,
}

impl HealthMonitor {
    /// Starts the rounds (the first at once) until `shutdown`.
    pub fn spawn(deps: Dependencies, metrics: Arc<Metrics>, shutdown: Shutdown) -> HealthMonitor {
        let (tx, latest) = watch::channel(None);
        tokio::spawn(async move {
            loop {
                let round = deps.check().await;
                metrics.health_check_rounds_total.inc();
                for (name, result) in &round.checks {
                    metrics
                        .health_check_status
                        .with_label_values(&[name])
                        .set(i64::from(result.status == CheckStatus::Healthy));
                }
                let failing = round
                    .checks
                    .values()
                    .any(|c| c.status != CheckStatus::Healthy);
                tx.send_replace(Some(Arc::new(round)));
                let next = if failing {
                    RECHECK_INTERVAL
                } else {
                    CHECK_INTERVAL
                };
                tokio::select! {
                    () = tokio::time::sleep(next) => {}
                    () = shutdown.wait() => return,
                }
            }
        });
        HealthMonitor { latest }
    }

    /// The last round; waits for the first one right after start.
    pub async fn latest(&self) -> Option<Arc<Round>> {
        let mut rx = self.latest.clone();
        rx.wait_for(Option::is_some).await.ok()?.clone()
    }

    /// A receiver that sees each new round.
    pub fn subscribe(&self) -> watch::Receiver<Option<Arc<Round>>> {
        self.latest.clone()
    }
}

impl Dependencies {
    /// One round: every check at once, so it takes as long as the slowest.
    async fn check(&self) -> Round {
        let (database, cache, rate_limiter, smtp, ai) = tokio::join!(
            check_store(&self.store, CHECK_TIMEOUT),
            check_cache(&self.cache, CHECK_TIMEOUT),
            check_rate_limiter(&self.limiter, CHECK_TIMEOUT),
            async {
                match &self.mailer {
                    Some(mailer) => Some(check_smtp(mailer, CHECK_TIMEOUT).await),
                    None => None,
                }
            },
            async {
                match &self.generator {
                    Some(generator) => check_ai(generator, CHECK_TIMEOUT).await,
                    None => Vec::new(),
                }
            }
        );
        let mut checks = BTreeMap::from([
            ("database".to_owned(), database),
            ("cache".to_owned(), cache),
            ("rate_limiter".to_owned(), rate_limiter),
        ]);
        checks.extend(smtp.map(|c| ("smtp".to_owned(), c)));
        checks.extend(ai);
        Round {
            at: SystemTime::now(),
            checks,
        }
    }
}

/// The status of one dependency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum CheckStatus {
    /// It answered.
    Healthy,
    /// It failed or did not answer in time.
    Unhealthy,
}

/// The status of the whole service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Overall {
    /// Everything answered.
    Healthy,
    /// A non-critical dependency failed; the service still works, slower or
    /// with less.
    Degraded,
    /// A critical dependency failed; requests will fail.
    Unhealthy,
}

/// One dependency's check.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CheckResult {
    /// Whether it answered.
    pub status: CheckStatus,
    /// Round-trip time of the check, in milliseconds.
    pub latency_ms: f64,
    /// What it is, e.g. `sqlite`, `postgres`, `redis`, `memory`.
    pub backend: String,
    /// Whether the service is unhealthy without it (else only degraded).
    pub critical: bool,
    /// Why it failed, when it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Unhealthy if a critical check failed, degraded if another did.
pub fn overall<'a>(checks: impl IntoIterator<Item = &'a CheckResult>) -> Overall {
    let mut status = Overall::Healthy;
    for check in checks {
        if check.status == CheckStatus::Unhealthy {
            if check.critical {
                return Overall::Unhealthy;
            }
            status = Overall::Degraded;
        }
    }
    status
}

/// The store is critical: without it nothing can be accepted.
pub async fn check_store(store: &Store, limit: Duration) -> CheckResult {
    timed(store.kind().as_str(), true, limit, store.ping()).await
}

/// SMTP is not critical either: emails wait in the outbox until it returns.
pub async fn check_smtp(mailer: &Mailer, limit: Duration) -> CheckResult {
    timed("smtp", false, limit, mailer.ping()).await
}

/// Nor are the model servers: only generation needs them. `ai` is
/// healthy while one of them answers; with several servers each has its
/// own check too, `ai:<name>`, which also says when one cools down.
pub async fn check_ai(generator: &Generator, limit: Duration) -> Vec<(String, CheckResult)> {
    let start = Instant::now();
    let reports = generator.check(limit).await;
    let latency_ms = start.elapsed().as_secs_f64() * 1000.0;
    let result = |error: Option<String>| CheckResult::new("openai", false, latency_ms, error);
    let mut checks = Vec::new();
    let answering = reports.iter().any(|r| r.ping.is_ok());
    let overall = match (answering, reports.as_slice()) {
        (true, _) => None,
        (false, []) => Some("no model server is configured".to_owned()),
        (false, [only]) => only.ping.clone().err(),
        (false, _) => Some("no model server answers".to_owned()),
    };
    checks.push(("ai".to_owned(), result(overall)));
    if reports.len() > 1 {
        for r in reports {
            let error = match (&r.ping, r.cooling) {
                (Err(e), true) => Some(format!("cooling down after failures; {e}")),
                (Err(e), false) => Some(e.clone()),
                (Ok(()), true) => Some("cooling down after failures; answers again".to_owned()),
                (Ok(()), false) => None,
            };
            checks.push((format!("ai:{}", r.name), result(error)));
        }
    }
    checks
}

/// The cache is not: without it answers are slower, not wrong.
pub async fn check_cache(cache: &Cache, limit: Duration) -> CheckResult {
    timed(cache.backend_name(), false, limit, cache.ping()).await
}

/// Nor are shared rate limits: without Redis each process enforces its own
/// (RATE_LIMIT_ON_REDIS_FAILURE says how), so the service is degraded.
pub async fn check_rate_limiter(limiter: &Limiter, limit: Duration) -> CheckResult {
    timed(limiter.backend_name(), false, limit, limiter.ping()).await
}

/// The certificate: critical while the configured one cannot be served (the
/// stand-in is), else a problem (expired, or new files that could not be
/// loaded) only degrades the service.
pub fn check_tls(certificates: &crate::tls::Certificates) -> CheckResult {
    let status = certificates.status(std::time::SystemTime::now());
    CheckResult::new("rustls", !status.serving_configured, 0.0, status.problem)
}

async fn timed<E: std::fmt::Display>(
    backend: &str,
    critical: bool,
    limit: Duration,
    check: impl Future<Output = Result<(), E>>,
) -> CheckResult {
    let start = Instant::now();
    let error = match tokio::time::timeout(limit, check).await {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(e.to_string()),
        Err(_) => Some(format!("no answer within {limit:?}")),
    };
    CheckResult::new(
        backend,
        critical,
        start.elapsed().as_secs_f64() * 1000.0,
        error,
    )
}

impl CheckResult {
    /// Healthy without an error, unhealthy with one.
    fn new(backend: &str, critical: bool, latency_ms: f64, error: Option<String>) -> Self {
        Self {
            status: if error.is_none() {
                CheckStatus::Healthy
            } else {
                CheckStatus::Unhealthy
            },
            latency_ms,
            backend: backend.to_owned(),
            critical,
            error,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(status: CheckStatus, critical: bool) -> CheckResult {
        CheckResult {
            status,
            latency_ms: 1.0,
            backend: "x".into(),
            critical,
            error: None,
        }
    }

    #[test]
    fn a_failed_critical_check_makes_the_service_unhealthy() {
        use CheckStatus::*;
        assert_eq!(
            overall(&[check(Healthy, true), check(Healthy, false)]),
            Overall::Healthy
        );
        assert_eq!(
            overall(&[check(Healthy, true), check(Unhealthy, false)]),
            Overall::Degraded
        );
        assert_eq!(
            overall(&[check(Unhealthy, true), check(Healthy, false)]),
            Overall::Unhealthy
        );
        assert_eq!(
            overall(&[check(Unhealthy, false), check(Unhealthy, true)]),
            Overall::Unhealthy
        );
    }

    #[tokio::test]
    async fn a_check_that_hangs_fails_at_its_deadline() {
        let result = timed(
            "slow",
            false,
            Duration::from_millis(20),
            std::future::pending::<Result<(), String>>(),
        )
        .await;
        assert_eq!(result.status, CheckStatus::Unhealthy);
        assert!(result.error.unwrap().contains("no answer within"));
    }
}
