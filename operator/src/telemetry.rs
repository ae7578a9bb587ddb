//! The operator's own telemetry: JSON logs, Prometheus metrics, and the
//! `/metrics`, `/healthz` and `/readyz` endpoints (`/metrics` behind
//! [`crate::metrics_auth`] unless that is off).

use std::{net::SocketAddr, sync::Arc};

use axum::{
    Router,
    extract::State,
    http::{StatusCode, header},
    middleware,
    response::IntoResponse,
    routing::get,
};
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramTimer, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};
use tokio::net::TcpListener;

use crate::metrics_auth::{self, Authorizer};

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
    unchanged: IntCounter,
    /// Every request sent to the API server, by verb and resource (see
    /// [`crate::client`]).
    pub api_requests: IntCounterVec,
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
        let unchanged = IntCounter::new(
            "securevault_reconciles_unchanged_total",
            "Reconciles that found nothing changed since the last settled one and sent no request",
        )?;
        let api_requests = IntCounterVec::new(
            Opts::new(
                "securevault_api_requests_total",
                "Requests sent to the API server, by verb (get, list, watch, create, patch, update, delete) and resource",
            ),
            &["verb", "resource"],
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
        registry.register(Box::new(unchanged.clone()))?;
        registry.register(Box::new(api_requests.clone()))?;
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
            unchanged,
            api_requests,
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

    /// Counts a reconcile answered from the watch caches alone.
    pub fn count_unchanged(&self) {
        self.unchanged.inc();
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

/// `/metrics`, `/healthz` and `/readyz`; with `auth`, every path but the
/// probes' needs a token allowed to `get` `/metrics`.
pub fn app(metrics: Arc<Metrics>, auth: Option<Arc<Authorizer>>) -> Router {
    let routes = Router::new()
        .route("/metrics", get(export))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(|| async { "ok" }))
        .with_state(metrics);
    match auth {
        // Around the whole router, not one route: a path added later is
        // guarded unless `metrics_auth::ANONYMOUS_PATHS` lists it.
        Some(auth) => routes.layer(middleware::from_fn_with_state(auth, metrics_auth::guard)),
        None => routes,
    }
}

/// Serves [`app`] on `listener` until `shutdown`.
pub async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    auth: Option<Arc<Authorizer>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(
        listener,
        app(metrics, auth).into_make_service_with_connect_info::<SocketAddr>(),
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

#[cfg(test)]
mod tests {
    use axum::{body::Body, http::Request};
    use tower::ServiceExt as _;

    use super::*;
    use crate::metrics_auth::testing::Counting;

    async fn get(app: &Router, path: &str, token: Option<&str>) -> (StatusCode, String) {
        let mut request = Request::get(path);
        if let Some(token) = token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let response = app
            .clone()
            .oneshot(request.body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn with_auth_metrics_need_an_allowed_token_and_the_probes_none() {
        let metrics = Arc::new(Metrics::new().unwrap());
        let app = app(
            metrics,
            Some(Arc::new(Authorizer::new(Counting(Default::default())))),
        );
        assert_eq!(
            get(&app, "/metrics", None).await.0,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            get(&app, "/metrics", Some("junk")).await.0,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            get(&app, "/metrics", Some("nobody")).await.0,
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            get(&app, "/metrics", Some("down")).await.0,
            StatusCode::SERVICE_UNAVAILABLE
        );
        let (status, body) = get(&app, "/metrics", Some("reader")).await;
        assert_eq!(status, StatusCode::OK);
        assert!(body.contains("securevault_reconciles_total"), "{body}");
        for probe in ["/healthz", "/readyz"] {
            assert_eq!(
                get(&app, probe, None).await,
                (StatusCode::OK, "ok".to_owned())
            );
        }
        // Deny by default: an unknown path says nothing without a token.
        assert_eq!(get(&app, "/debug", None).await.0, StatusCode::UNAUTHORIZED);
        assert_eq!(
            get(&app, "/debug", Some("reader")).await.0,
            StatusCode::NOT_FOUND
        );
    }

    #[tokio::test]
    async fn without_auth_metrics_are_served_to_anyone() {
        let app = app(Arc::new(Metrics::new().unwrap()), None);
        assert_eq!(get(&app, "/metrics", None).await.0, StatusCode::OK);
    }
}
