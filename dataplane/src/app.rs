//! The router and its state. [`app`] is a plain function of the state so tests
//! can call it without a server (`app(state).oneshot(request)`).

use std::{sync::Arc, time::Instant};

use tokio::sync::Notify;

use axum::{
    Router,
    extract::DefaultBodyLimit,
    http::StatusCode,
    middleware::{from_fn, from_fn_with_state},
    response::IntoResponse,
};
use tower::ServiceBuilder;
use tower_http::{limit::RequestBodyLimitLayer, timeout::TimeoutLayer};

use crate::{
    ai::generate::Generator,
    auth::Auth,
    cache::Cache,
    config::Config,
    email::smtp::Mailer,
    error::ApiError,
    middleware::{
        auth::{Guard, require},
        edge::{Edge, edge},
        http_metrics::expose_matched_path,
        json_errors::Limits,
    },
    ratelimit::Limiter,
    routes,
    store::Store,
    telemetry::Metrics,
};

/// What every handler can reach: one shared [`Services`].
///
/// One `Arc`, not the services side by side: axum clones the state into
/// every layer and handler a request passes, and cloning a dozen handles
/// (each an atomic increment, and a decrement on drop, on cache lines both
/// cores fight over) was 14 % of the CPU a `GET /api/health` took under
/// load (docs/benchmarks.md, "AI gateway at load").
#[derive(Clone)]
pub struct AppState(Arc<Services>);

impl AppState {
    /// The state of a serving process.
    pub fn new(services: Services) -> Self {
        Self(Arc::new(services))
    }
}

impl std::ops::Deref for AppState {
    type Target = Services;

    fn deref(&self) -> &Services {
        &self.0
    }
}

/// The services a request may use; reached through [`AppState`].
pub struct Services {
    /// The validated configuration.
    pub config: Arc<Config>,
    /// The SQL store.
    pub store: Store,
    /// The cache (Redis or in-process).
    pub cache: Cache,
    /// The Prometheus registry.
    pub metrics: Arc<Metrics>,
    /// When the process started, for uptime.
    pub started: Instant,
    /// The SMTP sender, when SMTP is configured.
    pub mailer: Option<Arc<Mailer>>,
    /// Wakes the delivery worker after an email is stored; `None` when SMTP
    /// is not configured (and sending is refused).
    pub email_wake: Option<Arc<Notify>>,
    /// Generations against the model server; `None` when AI is not
    /// configured (and the route answers 503).
    pub generator: Option<Generator>,
    /// Accounts, sessions, API keys and login protection.
    pub auth: Auth,
    /// Per-principal request budgets (shared through Redis when configured).
    pub limiter: Limiter,
    /// Token budgets per key and account, over the limiter's counters.
    pub budgets: crate::ai::budget::Budgets,
    /// The certificate served, with HTTPS; `None` for plain HTTP.
    pub tls: Option<Arc<crate::tls::Certificates>>,
    /// The last round of background dependency checks.
    pub health: crate::health::HealthMonitor,
}

/// The whole HTTP API with its middleware.
pub fn app(state: AppState) -> Router {
    let limits = Limits {
        max_body_bytes: state.config.max_body_bytes,
        request_timeout_secs: state.config.request_timeout.as_secs(),
    };
    let routes::Api { public, guarded } = routes::api();
    let api = guarded.into_iter().fold(public, |api, (access, group)| {
        let guard = Guard {
            state: state.clone(),
            access,
        };
        api.merge(group.route_layer(from_fn_with_state(guard, require)))
    });
    let (api, _) = api.split_for_parts();
    let edge_state = Arc::new(Edge {
        trusted_proxies: state.config.auth.trusted_proxies.clone(),
        metrics: state.metrics.clone(),
        limits,
    });

    // Layers listed outermost first: a request passes them top to bottom, the
    // response bottom to top. The order matters:
    // - the edge outermost: request id, span, client address, JSON errors,
    //   metrics and security headers for everything below (its module doc
    //   says in what order), so it sees and rewrites what the timeout, the
    //   body limit and the router answer on their own;
    // - the timeout bounds the handler, the body limit refuses large bodies
    //   before a handler reads them.
    let middleware = ServiceBuilder::new()
        .layer(from_fn_with_state(edge_state, edge))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            state.config.request_timeout,
        ))
        .layer(RequestBodyLimitLayer::new(state.config.max_body_bytes))
        // One limit, ours: axum's own default (2 MB) would otherwise apply too.
        .layer(DefaultBodyLimit::disable());

    api.merge(crate::console::router(&state))
        .route_layer(from_fn(expose_matched_path))
        .fallback(not_found)
        .layer(middleware)
        .with_state(state)
}

async fn not_found() -> impl IntoResponse {
    ApiError::NotFound("no such route; GET /api/openapi.json lists them".into())
}
