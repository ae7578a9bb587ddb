//! Dependency checks and how they add up to one status. Each check is bounded
//! in time, so a hung dependency shows as failed instead of hanging the probe.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{cache::Cache, ratelimit::Limiter, store::Store};

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
pub async fn check_smtp(mailer: &crate::email::smtp::Mailer, limit: Duration) -> CheckResult {
    timed("smtp", false, limit, mailer.ping()).await
}

/// Nor is the model server: only generation needs it.
pub async fn check_ai(generator: &crate::ai::generate::Generator, limit: Duration) -> CheckResult {
    timed("openai", false, limit, generator.ping()).await
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
    CheckResult {
        status: if status.problem.is_none() {
            CheckStatus::Healthy
        } else {
            CheckStatus::Unhealthy
        },
        latency_ms: 0.0,
        backend: "rustls".to_owned(),
        critical: !status.serving_configured,
        error: status.problem,
    }
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
    CheckResult {
        status: if error.is_none() {
            CheckStatus::Healthy
        } else {
            CheckStatus::Unhealthy
        },
        latency_ms: start.elapsed().as_secs_f64() * 1000.0,
        backend: backend.to_owned(),
        critical,
        error,
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
