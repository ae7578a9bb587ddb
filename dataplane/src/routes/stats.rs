//! `GET /api/stats`: counts of emails and generations, from the cache.

use axum::{
    extract::State,
    http::{HeaderName, header},
    response::{IntoResponse, Response},
};

use crate::{
    app::AppState,
    error::{ApiError, ErrorBody},
    stats::{CacheOutcome, cached_stats},
    store::Stats,
};

/// `hit` when the answer came from the cache, `miss` when it was counted now.
static X_CACHE: HeaderName = HeaderName::from_static("x-cache");

/// Emails and generations by status and period. Counted at most once per
/// `STATS_CACHE_TTL_SECS` (shared by every replica when Redis is configured).
#[utoipa::path(
    get,
    path = "/api/stats",
    tag = "observability",
    responses(
        (status = 200, description = "Counts by status and period", body = Stats,
         headers(("x-cache" = String, description = "`hit` or `miss`"))),
        (status = 500, description = "The store failed", body = ErrorBody),
    )
)]
pub async fn get_stats(State(state): State<AppState>) -> Result<Response, ApiError> {
    let (json, outcome) =
        cached_stats(&state.store, &state.cache, state.config.stats_cache_ttl).await?;
    let cache = match outcome {
        CacheOutcome::Hit => "hit",
        CacheOutcome::Miss => "miss",
    };
    Ok((
        [
            (header::CONTENT_TYPE, "application/json"),
            (X_CACHE.clone(), cache),
        ],
        json,
    )
        .into_response())
}
