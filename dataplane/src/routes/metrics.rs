//! `GET /api/metrics`: Prometheus text format.

use axum::{
    extract::State,
    http::header,
    response::{IntoResponse, Response},
};

use crate::{app::AppState, error::ApiError};

/// The content type of the Prometheus text exposition format.
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Every metric of this process, for Prometheus to scrape.
#[utoipa::path(
    get,
    path = "/api/metrics",
    tag = "observability",
    responses((status = 200, description = "Prometheus text exposition format", content_type = "text/plain"))
)]
pub async fn export(State(state): State<AppState>) -> Result<Response, ApiError> {
    let text = state
        .metrics
        .encode()
        .map_err(|e| ApiError::Internal(format!("encoding metrics: {e}")))?;
    Ok(([(header::CONTENT_TYPE, PROMETHEUS_TEXT)], text).into_response())
}
