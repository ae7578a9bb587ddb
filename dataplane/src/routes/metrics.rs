//! The metrics listener: `GET /metrics` in the Prometheus text format, on a
//! port of its own (`METRICS_ADDR`). The API's port, which an Ingress
//! exposes, does not serve metrics: what requests cost and how many failed
//! is for the monitoring system, not for the Internet.

use std::sync::Arc;

use axum::{
    Router,
    extract::State,
    http::header,
    middleware::map_response,
    response::{IntoResponse, Response},
    routing::get,
};

use crate::{error::ApiError, middleware::security_headers::security_headers, telemetry::Metrics};

/// The content type of the Prometheus text exposition format.
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The metrics listener's router: `/metrics`, and 404 for anything else.
pub fn router(metrics: Arc<Metrics>) -> Router {
    Router::new()
        .route("/metrics", get(export))
        .fallback(|| async { ApiError::NotFound("this port serves GET /metrics only".into()) })
        .layer(map_response(security_headers))
        .with_state(metrics)
}

/// Every metric of this process, for Prometheus to scrape.
async fn export(State(metrics): State<Arc<Metrics>>) -> Result<Response, ApiError> {
    let text = metrics
        .encode()
        .map_err(|e| ApiError::Internal(format!("encoding metrics: {e}")))?;
    Ok(([(header::CONTENT_TYPE, PROMETHEUS_TEXT)], text).into_response())
}
