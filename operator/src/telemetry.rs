//! The operator's own telemetry: JSON logs, Prometheus metrics, and the
//! `/metrics`, `/healthz` and `/readyz` endpoints.

use std::{net::SocketAddr, sync::Arc};

use axum::{
    Router,
    extract::State,
    http::{StatusCode, header},
    response::IntoResponse,
    routing::get,
};
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramTimer, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};
use tokio::net::TcpListener;

/// Installs JSON logs on stdout with the given filter (e.g. `info`).
pub fn init_logging(filter: &str) -> Result<(), String> {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .map_err(|e| format!("invalid LOG_LEVEL {filter:?}: {e}"))?;
    tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_env_filter(filter)
        .try_init()
        .map_err(|e| e.to_string())
}

/// Reconcile metrics.
pub struct Metrics {
    registry: Registry,
    reconciles: IntCounter,
    failures: IntCounterVec,
    duration: Histogram,
    writes: IntCounterVec,
    optional_kinds: IntGaugeVec,
    /// 1 while this process holds the leader lease.
    pub leader: IntGauge,
}

impl Metrics {
    /// Creates and registers the metrics.
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let reconciles = IntCounter::new("securevault_reconciles_total", "Reconciles started")?;
        let failures = IntCounterVec::new(
            Opts::new(
                "securevault_reconcile_errors_total",
                "Failed reconciles by reason",
            ),
            &["reason"],
        )?;
        let duration = Histogram::with_opts(
            HistogramOpts::new(
                "securevault_reconcile_duration_seconds",
                "Time one reconcile took",
            )
            .buckets(vec![
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
        )?;
        let writes = IntCounterVec::new(
            Opts::new(
                "securevault_api_writes_total",
                "Writes that changed an object in the API server, by kind",
            ),
            &["kind"],
        )?;
        let optional_kinds = IntGaugeVec::new(
            Opts::new(
                "securevault_optional_kind_served",
                "1 when the API server serves this optional kind (its CRD is installed), 0 when not, as discovery last said",
            ),
            &["kind"],
        )?;
        let leader = IntGauge::new(
            "securevault_leader",
            "1 while this operator process is the leader",
        )?;
        registry.register(Box::new(reconciles.clone()))?;
        registry.register(Box::new(failures.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        registry.register(Box::new(writes.clone()))?;
        registry.register(Box::new(optional_kinds.clone()))?;
        registry.register(Box::new(leader.clone()))?;
        registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))?;
        Ok(Self {
            registry,
            reconciles,
            failures,
            duration,
            writes,
            optional_kinds,
            leader,
        })
    }

    /// Counts a reconcile and times it until the guard drops.
    pub fn reconcile_timer(&self) -> HistogramTimer {
        self.reconciles.inc();
        self.duration.start_timer()
    }

    /// Counts a failed reconcile.
    pub fn count_failure(&self, reason: &'static str) {
        self.failures.with_label_values(&[reason]).inc();
    }

    /// Counts a write that changed an object.
    pub fn count_write(&self, kind: &'static str) {
        self.writes.with_label_values(&[kind]).inc();
    }

    /// Records whether the optional kind `kind` is served.
    pub fn set_optional_kind_served(&self, kind: &str, served: bool) {
        self.optional_kinds
            .with_label_values(&[kind])
            .set(i64::from(served));
    }

    fn encode(&self) -> Result<String, String> {
        let mut buf = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .map_err(|e| e.to_string())?;
        String::from_utf8(buf).map_err(|e| e.to_string())
    }
}

/// Serves `/metrics`, `/healthz` and `/readyz` on `listener` until `shutdown`.
pub async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/metrics", get(export))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(|| async { "ok" }))
        .with_state(metrics);
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}

async fn export(State(metrics): State<Arc<Metrics>>) -> impl IntoResponse {
    match metrics.encode() {
        Ok(text) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
            text,
        )
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e).into_response(),
    }
}
