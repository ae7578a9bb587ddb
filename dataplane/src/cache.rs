//! A small key/value cache with expiry: Redis when `REDIS_URL` is set (shared
//! by every replica), an in-process map otherwise.
//!
//! The cache is an optimisation, never the source of truth: callers treat an
//! error like a miss and go to the store. Each look-up feeds the
//! `cache_requests_total` and `cache_hit_rate` metrics.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use redis::{AsyncCommands, aio::ConnectionManager};
use tokio::time::{Instant, timeout};

use crate::telemetry::Metrics;

/// Upper bound of one Redis round trip. The cache must never be what makes a
/// request slow: past this the caller falls back to the store.
const REDIS_TIMEOUT: Duration = Duration::from_millis(1000);

/// Entries the in-process cache holds before it evicts expired ones.
const LOCAL_CAPACITY: usize = 10_000;

/// Why a cache operation failed.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// Redis answered with an error or the connection broke.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// Redis did not answer in time.
    #[error("redis did not answer within {0:?}")]
    Timeout(Duration),
}

/// The cache, cheap to clone.
#[derive(Clone)]
pub struct Cache {
    backend: Backend,
    metrics: Arc<Metrics>,
}

#[derive(Clone)]
enum Backend {
    Local(Arc<Mutex<HashMap<String, (Instant, String)>>>),
    Redis(ConnectionManager),
}

impl Cache {
    /// An in-process cache, for a single replica or when Redis is not wanted.
    pub fn local(metrics: Arc<Metrics>) -> Self {
        Self {
            backend: Backend::Local(Arc::default()),
            metrics,
        }
    }

    /// A Redis cache. It connects on first use and reconnects by itself, so a
    /// Redis that is down at start-up or restarts later only degrades service.
    pub fn redis(url: &str, metrics: Arc<Metrics>) -> Result<Self, CacheError> {
        let client = redis::Client::open(url)?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(REDIS_TIMEOUT))
            .set_response_timeout(Some(REDIS_TIMEOUT))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_secs(1));
        let manager = ConnectionManager::new_lazy_with_config(client, config)?;
        Ok(Self {
            backend: Backend::Redis(manager),
            metrics,
        })
    }

    /// Whether the cache is a separate server that can go away (Redis).
    pub fn is_remote(&self) -> bool {
        matches!(self.backend, Backend::Redis(_))
    }

    /// `redis` or `memory`, for health reports.
    pub fn backend_name(&self) -> &'static str {
        match self.backend {
            Backend::Local(_) => "memory",
            Backend::Redis(_) => "redis",
        }
    }

    /// The value under `key`, if present and not expired. Counted as a hit or
    /// a miss; an error counts as a miss.
    pub async fn get(&self, key: &str) -> Result<Option<String>, CacheError> {
        let result = match &self.backend {
            Backend::Local(map) => {
                let map = lock(map);
                Ok(map
                    .get(key)
                    .filter(|(expires, _)| *expires > Instant::now())
                    .map(|(_, v)| v.clone()))
            }
            Backend::Redis(conn) => {
                let mut conn = conn.clone();
                bounded(conn.get::<_, Option<String>>(key)).await
            }
        };
        self.metrics
            .record_cache_lookup(matches!(result, Ok(Some(_))));
        result
    }

    /// Stores `value` under `key` for `ttl`.
    pub async fn set(&self, key: &str, value: &str, ttl: Duration) -> Result<(), CacheError> {
        match &self.backend {
            Backend::Local(map) => {
                let mut map = lock(map);
                let now = Instant::now();
                if map.len() >= LOCAL_CAPACITY {
                    map.retain(|_, (expires, _)| *expires > now);
                }
                if map.len() < LOCAL_CAPACITY || map.contains_key(key) {
                    map.insert(key.to_owned(), (now + ttl, value.to_owned()));
                }
                Ok(())
            }
            Backend::Redis(conn) => {
                let mut conn = conn.clone();
                let millis = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
                bounded(conn.pset_ex::<_, _, ()>(key, value, millis)).await
            }
        }
    }

    /// A round trip to the cache server; always fine for the in-process cache.
    pub async fn ping(&self) -> Result<(), CacheError> {
        match &self.backend {
            Backend::Local(_) => Ok(()),
            Backend::Redis(conn) => {
                let mut conn = conn.clone();
                bounded(redis::cmd("PING").query_async::<String>(&mut conn))
                    .await
                    .map(drop)
            }
        }
    }
}

async fn bounded<T>(op: impl Future<Output = redis::RedisResult<T>>) -> Result<T, CacheError> {
    match timeout(REDIS_TIMEOUT, op).await {
        Ok(result) => Ok(result?),
        Err(_) => Err(CacheError::Timeout(REDIS_TIMEOUT)),
    }
}

/// A poisoned lock only means another thread panicked mid-update of a cache
/// entry; the map itself is still usable, and at worst holds a stale value.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache() -> Cache {
        Cache::local(Arc::new(Metrics::new().unwrap()))
    }

    #[tokio::test(start_paused = true)]
    async fn local_entries_expire_after_their_ttl() {
        let c = cache();
        c.set("k", "v", Duration::from_secs(60)).await.unwrap();
        assert_eq!(c.get("k").await.unwrap().as_deref(), Some("v"));
        tokio::time::advance(Duration::from_secs(59)).await;
        assert_eq!(c.get("k").await.unwrap().as_deref(), Some("v"));
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(c.get("k").await.unwrap(), None);
    }

    #[tokio::test]
    async fn lookups_feed_the_hit_rate() {
        let c = cache();
        assert_eq!(c.get("absent").await.unwrap(), None);
        c.set("k", "v", Duration::from_secs(60)).await.unwrap();
        c.get("k").await.unwrap();
        assert_eq!(c.metrics.cache_hit_rate.get(), 0.5);
        assert_eq!(c.backend_name(), "memory");
        c.ping().await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_local_cache_makes_room_from_expired_entries_only() {
        let c = cache();
        for i in 0..LOCAL_CAPACITY {
            c.set(&i.to_string(), "v", Duration::from_secs(1))
                .await
                .unwrap();
        }
        c.set("late", "v", Duration::from_secs(60)).await.unwrap();
        assert_eq!(
            c.get("late").await.unwrap(),
            None,
            "no room while all entries live"
        );
        tokio::time::advance(Duration::from_secs(2)).await;
        c.set("late", "v", Duration::from_secs(60)).await.unwrap();
        assert_eq!(c.get("late").await.unwrap().as_deref(), Some("v"));
    }
}
