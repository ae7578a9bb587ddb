//! `GET /api/openapi.json`: the OpenAPI 3 document of every route, for any
//! signed-in caller.

use std::sync::LazyLock;

use axum::{
    http::header,
    response::{IntoResponse, Response},
};
use utoipa::OpenApi;

use crate::error::{ApiError, ErrorBody};

/// The document's fixed parts; the paths come from the handlers.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "SecureVault data plane",
        description = "Transactional email and AI text generation. Every error answer is `{\"error\": {\"code\", \"message\", \"field\"}}`.",
    ),
    tags(
        (name = "health", description = "Liveness and readiness (anonymous), and the dependency report (the `metrics` scope)"),
        (name = "observability", description = "Usage statistics. Prometheus metrics are served on a port of their own (`METRICS_ADDR`, `GET /metrics`), never on this one"),
        (name = "auth", description = "Login, sessions, API keys, accounts and the audit trail. Every route but liveness, readiness and login needs a session (cookie or bearer token) or an API key (`Authorization: Bearer svk_…`)"),
        (name = "email", description = "Transactional email through the durable outbox"),
        (name = "ai", description = "Text generation through an OpenAI-compatible server"),
        (name = "meta", description = "This document"),
    ),
    components(schemas(ErrorBody))
)]
pub struct ApiDoc;

/// Rendered once: the document only changes with the binary.
static DOCUMENT: LazyLock<Result<String, String>> = LazyLock::new(|| {
    let (_, doc) = super::api().merged().split_for_parts();
    doc.to_pretty_json().map_err(|e| e.to_string())
});

/// The OpenAPI document of this API.
#[utoipa::path(
    get,
    path = "/api/openapi.json",
    tag = "meta",
    responses((status = 200, description = "OpenAPI 3 document", content_type = "application/json"))
)]
pub async fn document() -> Response {
    match &*DOCUMENT {
        Ok(json) => ([(header::CONTENT_TYPE, "application/json")], json.as_str()).into_response(),
        Err(e) => {
            ApiError::Internal(format!("rendering the OpenAPI document: {e}")).into_response()
        }
    }
}
