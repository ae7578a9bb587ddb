//! Usage statistics, counted in the store and kept in the cache for a while:
//! counting scans whole tables, and dashboards ask often.

use std::time::{Duration, SystemTime};

use crate::{
    cache::Cache,
    store::{Store, StoreError},
};

/// Cache key; the version changes with the answer's shape so replicas of two
/// versions never read each other's entries.
const CACHE_KEY: &str = "securevault:stats:v1";

/// Why the stats could not be produced.
#[derive(Debug, thiserror::Error)]
pub enum StatsError {
    /// Counting in the store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The counts could not be encoded as JSON.
    #[error("encoding stats: {0}")]
    Encode(#[from] serde_json::Error),
}

/// Whether an answer came from the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheOutcome {
    /// Served from the cache.
    Hit,
    /// Counted in the store now (and cached).
    Miss,
}

/// The stats as JSON, from the cache if fresh, else counted and cached for `ttl`.
/// A cache that fails only costs a count in the store.
pub async fn cached_stats(
    store: &Store,
    cache: &Cache,
    ttl: Duration,
) -> Result<(String, CacheOutcome), StatsError> {
    match cache.get(CACHE_KEY).await {
        Ok(Some(json)) => return Ok((json, CacheOutcome::Hit)),
        Ok(None) => {}
        Err(e) => tracing::warn!(error = %e, "stats cache unavailable; counting in the store"),
    }
    let stats = store.stats(SystemTime::now()).await?;
    let json = serde_json::to_string(&stats)?;
    if let Err(e) = cache.set(CACHE_KEY, &json, ttl).await {
        tracing::warn!(error = %e, "could not cache stats");
    }
    Ok((json, CacheOutcome::Miss))
}
