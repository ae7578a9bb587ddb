//! Path -> handler maps, one file per area. Each handler carries its OpenAPI
//! description (`#[utoipa::path]`), and [`api`] registers route and
//! description together, so `/api/openapi.json` cannot drift from the router.

pub mod ai;
pub mod email;
pub mod health;
pub mod metrics;
pub mod openapi;
pub mod stats;

use utoipa::OpenApi;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::app::AppState;

/// A store timestamp (Unix milliseconds) as RFC 3339, as answers show it.
fn rfc3339(millis: i64) -> String {
    let t = std::time::SystemTime::UNIX_EPOCH
        + std::time::Duration::from_millis(u64::try_from(millis).unwrap_or(0));
    humantime::format_rfc3339_millis(t).to_string()
}

/// Every route of the API with its OpenAPI description.
pub fn api() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .routes(routes!(health::live))
        .routes(routes!(health::ready))
        .routes(routes!(health::detailed))
        .routes(routes!(metrics::export))
        .routes(routes!(stats::get_stats))
        .routes(routes!(email::send_email))
        .routes(routes!(email::get_email))
        .routes(routes!(ai::generate_content))
        .routes(routes!(ai::get_generation))
        .routes(routes!(openapi::document))
}
