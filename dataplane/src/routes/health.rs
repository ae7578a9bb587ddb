//! Health: liveness, readiness and the detailed dependency report.

use std::{collections::BTreeMap, time::Duration};

use axum::{Json, extract::State, http::StatusCode};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{
    app::AppState,
    health::{CheckResult, Overall, check_tls, overall},
};

/// Longest a readiness or dependency check may take before it counts as failed.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// Liveness answer.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Liveness {
    /// Always `ok`: the process answers.
    pub status: String,
}

/// Readiness answer.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Readiness {
    /// `ready` or `not_ready`.
    pub status: String,
    /// Why not ready, when not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// CPU and memory, from the background sampler.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SystemUsage {
    /// CPU use of the host or container, in percent.
    pub cpu_percent: f64,
    /// Memory use of the host or container, in percent.
    pub memory_percent: f64,
}

/// The detailed health report.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DetailedHealth {
    /// `healthy`, `degraded` (a non-critical dependency failed) or
    /// `unhealthy` (a critical one failed; the answer is then a 503).
    pub status: Overall,
    /// Version of this binary.
    pub version: String,
    /// Seconds since the process started.
    pub uptime_seconds: u64,
    /// CPU and memory.
    pub system: SystemUsage,
    /// One entry per dependency: `database`, `cache`, and `smtp`, `ai` and
    /// `tls` (the certificate served) when configured.
    pub checks: BTreeMap<String, CheckResult>,
}

/// Liveness: the process answers. Touches no dependency, so a slow database
/// never gets a healthy pod restarted.
#[utoipa::path(get, path = "/api/health", tag = "health",
    responses((status = 200, description = "The process is alive", body = Liveness)))]
pub async fn live() -> Json<Liveness> {
    Json(Liveness {
        status: "ok".to_owned(),
    })
}

/// Readiness: the store answers and its schema is up to date. Kubernetes
/// sends traffic only to ready pods.
#[utoipa::path(get, path = "/api/health/ready", tag = "health",
    responses(
        (status = 200, description = "Ready for traffic", body = Readiness),
        (status = 503, description = "Not ready", body = Readiness),
    ))]
pub async fn ready(State(state): State<AppState>) -> (StatusCode, Json<Readiness>) {
    // Serving the stand-in certificate: no client could trust this pod.
    let tls = state
        .tls
        .as_ref()
        .map(|certificates| certificates.status(std::time::SystemTime::now()))
        .filter(|status| !status.serving_configured);
    let reason = if let Some(tls) = tls {
        Some(format!(
            "no usable TLS certificate: {}",
            tls.problem.unwrap_or_default()
        ))
    } else {
        match tokio::time::timeout(CHECK_TIMEOUT, state.store.migrations_applied()).await {
            Ok(Ok(true)) => None,
            Ok(Ok(false)) => Some("database migrations are not applied yet".to_owned()),
            Ok(Err(e)) => Some(format!("database unreachable: {e}")),
            Err(_) => Some(format!("database did not answer within {CHECK_TIMEOUT:?}")),
        }
    };
    match reason {
        None => (
            StatusCode::OK,
            Json(Readiness {
                status: "ready".into(),
                reason: None,
            }),
        ),
        Some(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(Readiness {
                status: "not_ready".into(),
                reason: Some(reason),
            }),
        ),
    }
}

/// Every dependency with its status and latency, plus CPU and memory, from
/// the last round of background checks (at most a few seconds old): a
/// request never reaches the model server or the SMTP server itself. Needs
/// the `metrics` scope (administrators have it): the report names internal
/// hosts and their errors.
#[utoipa::path(get, path = "/api/health/detailed", tag = "health",
    responses(
        (status = 200, description = "Healthy or degraded", body = DetailedHealth),
        (status = 503, description = "Unhealthy: a critical dependency failed", body = DetailedHealth),
    ))]
pub async fn detailed(State(state): State<AppState>) -> (StatusCode, Json<DetailedHealth>) {
    let mut checks = state
        .health
        .latest()
        .await
        .map(|round| round.checks.clone())
        .unwrap_or_default();
    // Reading the certificate's state costs nothing: always current.
    if let Some(certificates) = &state.tls {
        checks.insert("tls".to_owned(), check_tls(certificates));
    }
    let status = overall(checks.values());
    let code = if status == Overall::Unhealthy {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    let report = DetailedHealth {
        status,
        version: env!("CARGO_PKG_VERSION").to_owned(),
        uptime_seconds: state.started.elapsed().as_secs(),
        system: SystemUsage {
            cpu_percent: state.metrics.system_cpu_percent.get(),
            memory_percent: state.metrics.system_memory_percent.get(),
        },
        checks,
    };
    (code, Json(report))
}
