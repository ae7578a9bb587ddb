//! Rate limits and failure counting, shared by every replica through Redis,
//! or kept in this process.
//!
//! Two primitives serve the API:
//! - [`Limiter::check`]: a GCRA budget per key (see [`gcra`]), for the
//!   per-principal request limits;
//! - [`Limiter::fail`] / [`Limiter::blocked`]: failures counted in a sliding
//!   window that turn into a timed block, for brute-force protection.
//!
//! With Redis, each primitive is one Lua script run atomically on the server,
//! so N replicas spend one budget. Redis going away must neither fail
//! requests (no 500) nor lift the limits: after a failed call the limiter
//! answers from its in-process state for [`RETRY_REDIS_AFTER`], then tries
//! Redis again (or, with [`OnRedisFailure::Deny`], refuses with 503). The
//! detailed health reports the fallback as `degraded`.

pub mod gcra;
mod local;

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use redis::{Script, aio::ConnectionManager};
use tokio::time::{Instant, timeout};

use crate::telemetry::Metrics;

/// Upper bound of one Redis call. A limiter that makes requests slow is worse
/// than one that falls back, so this is much shorter than the cache's.
const REDIS_TIMEOUT: Duration = Duration::from_millis(250);

/// How long the limiter stays on its fallback after a failed Redis call
/// before it tries Redis again.
pub const RETRY_REDIS_AFTER: Duration = Duration::from_secs(2);

/// A named budget: `limit` requests per `period`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// `api`, `email` or `ai`: the policy's name in headers and metrics.
    pub name: &'static str,
    /// Requests per period (> 0).
    pub limit: u32,
    /// The period (> 0).
    pub period: Duration,
}

impl Policy {
    /// Microseconds between two requests at the sustained rate.
    fn interval_us(&self) -> u64 {
        let period = u64::try_from(self.period.as_micros()).unwrap_or(u64::MAX);
        (period / u64::from(self.limit.max(1))).max(1)
    }
}

/// What [`Limiter::check`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// The policy applied.
    pub policy: Policy,
    /// Whether the request may go on.
    pub allowed: bool,
    /// Requests still admissible now.
    pub remaining: u64,
    /// When refused: how long until one would be admitted.
    pub retry_after: Duration,
    /// How long until the whole budget is back.
    pub reset: Duration,
}

/// What to do while Redis does not answer (`RATE_LIMIT_ON_REDIS_FAILURE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnRedisFailure {
    /// Enforce the same limits per process: with N replicas at most N times
    /// the budget passes, never an unbounded amount.
    Local,
    /// Refuse limited requests with 503 until Redis is back.
    Deny,
}

/// Redis is down and the policy says to refuse.
#[derive(Debug, thiserror::Error)]
#[error("the shared rate limiter (Redis) is unavailable; retry in {retry_after:?}")]
pub struct Unavailable {
    /// When to try again.
    pub retry_after: Duration,
}

/// The limiter, cheap to clone.
#[derive(Clone)]
pub struct Limiter {
    inner: Arc<Inner>,
}

struct Inner {
    redis: Option<Remote>,
    local: local::Local,
    on_failure: OnRedisFailure,
    metrics: Arc<Metrics>,
}

struct Remote {
    conn: ConnectionManager,
    gcra: Script,
    attempts: Script,
    /// `Instant` (as µs since `epoch`) until which Redis is not tried.
    down_until: AtomicU64,
    /// Whether the last call failed; logs only the transitions.
    down: AtomicBool,
    epoch: Instant,
}

impl Limiter {
    /// A limiter of this process only (no `REDIS_URL`).
    pub fn local(metrics: Arc<Metrics>) -> Self {
        metrics.rate_limiter_redis_up.set(0);
        Self::new(None, OnRedisFailure::Local, metrics)
    }

    /// A limiter shared through Redis at `url`. It connects on first use and
    /// reconnects by itself.
    pub fn redis(
        url: &str,
        on_failure: OnRedisFailure,
        metrics: Arc<Metrics>,
    ) -> Result<Self, redis::RedisError> {
        let client = redis::Client::open(url)?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(REDIS_TIMEOUT))
            .set_response_timeout(Some(REDIS_TIMEOUT))
            .set_number_of_retries(0);
        let conn = ConnectionManager::new_lazy_with_config(client, config)?;
        metrics.rate_limiter_redis_up.set(1);
        let remote = Remote {
            conn,
            gcra: Script::new(include_str!("gcra.lua")),
            attempts: Script::new(include_str!("attempts.lua")),
            down_until: AtomicU64::new(0),
            down: AtomicBool::new(false),
            epoch: Instant::now(),
        };
        Ok(Self::new(Some(remote), on_failure, metrics))
    }

    fn new(redis: Option<Remote>, on_failure: OnRedisFailure, metrics: Arc<Metrics>) -> Self {
        Self {
            inner: Arc::new(Inner {
                redis,
                local: local::Local::new(),
                on_failure,
                metrics,
            }),
        }
    }

    /// Spends one request of `policy`'s budget under `key`.
    pub async fn check(&self, key: &str, policy: Policy) -> Result<Decision, Unavailable> {
        let interval = policy.interval_us();
        let limit = u64::from(policy.limit);
        let redis_key = format!("sv:rl:{}:{key}", policy.name);
        let step = self
            .run(
                |r| {
                    let mut conn = r.conn.clone();
                    let mut call = r.gcra.key(&redis_key);
                    call.arg(interval).arg(limit);
                    async move {
                        let (allowed, remaining, retry_after, reset): (u8, u64, u64, u64) =
                            call.invoke_async(&mut conn).await?;
                        Ok(gcra::Step {
                            allowed: allowed == 1,
                            remaining,
                            retry_after,
                            reset,
                            tat: 0,
                        })
                    }
                },
                |l| l.gcra(&redis_key, interval, limit),
            )
            .await?;
        if !step.allowed {
            self.inner
                .metrics
                .rate_limited_total
                .with_label_values(&[policy.name])
                .inc();
        }
        Ok(Decision {
            policy,
            allowed: step.allowed,
            remaining: step.remaining,
            retry_after: Duration::from_micros(step.retry_after),
            reset: Duration::from_micros(step.reset),
        })
    }

    /// Counts one failure under `key`; once `max` fall within `window`, the
    /// key is blocked for `block`. Returns the block's length when this
    /// failure started one.
    pub async fn fail(
        &self,
        key: &str,
        window: Duration,
        max: u32,
        block: Duration,
    ) -> Result<Option<Duration>, Unavailable> {
        let (attempts, flag) = (format!("sv:bf:{key}"), format!("sv:bf:block:{key}"));
        let window_us = u64::try_from(window.as_micros()).unwrap_or(u64::MAX);
        let block_ms = u64::try_from(block.as_millis()).unwrap_or(u64::MAX).max(1);
        let blocked_ms = self
            .run(
                |r| {
                    let mut conn = r.conn.clone();
                    let mut call = r.attempts.key(&attempts);
                    call.key(&flag).arg(window_us).arg(max).arg(block_ms);
                    async move { call.invoke_async::<u64>(&mut conn).await }
                },
                |l| l.fail(key, window_us, max, block_ms),
            )
            .await?;
        Ok((blocked_ms > 0).then(|| Duration::from_millis(blocked_ms)))
    }

    /// How long `key` stays blocked, if it is.
    pub async fn blocked(&self, key: &str) -> Result<Option<Duration>, Unavailable> {
        let flag = format!("sv:bf:block:{key}");
        let ms = self
            .run(
                |r| {
                    let mut conn = r.conn.clone();
                    let flag = flag.clone();
                    async move {
                        redis::cmd("PTTL")
                            .arg(&flag)
                            .query_async::<i64>(&mut conn)
                            .await
                    }
                },
                |l| l.blocked(key),
            )
            .await?;
        Ok((ms > 0).then(|| Duration::from_millis(ms.unsigned_abs())))
    }

    /// Forgets the failures counted under `key` (a successful login clears
    /// its account's count).
    pub async fn forget(&self, key: &str) -> Result<(), Unavailable> {
        let attempts = format!("sv:bf:{key}");
        self.run(
            |r| {
                let mut conn = r.conn.clone();
                let attempts = attempts.clone();
                async move {
                    redis::cmd("DEL")
                        .arg(&attempts)
                        .query_async::<()>(&mut conn)
                        .await
                }
            },
            |l| l.forget(key),
        )
        .await
    }

    /// `redis` or `memory`, for health reports.
    pub fn backend_name(&self) -> &'static str {
        if self.inner.redis.is_some() {
            "redis"
        } else {
            "memory"
        }
    }

    /// Whether the limits in force are shared: `Ok` with Redis answering (or
    /// without Redis, where per-process limits are the configuration), `Err`
    /// saying what is in force while Redis does not answer.
    pub async fn ping(&self) -> Result<(), String> {
        let Some(remote) = &self.inner.redis else {
            return Ok(());
        };
        let mut conn = remote.conn.clone();
        let answer = timeout(
            REDIS_TIMEOUT,
            redis::cmd("PING").query_async::<String>(&mut conn),
        )
        .await;
        match answer {
            Ok(Ok(_)) => {
                self.mark_up(remote);
                Ok(())
            }
            Ok(Err(e)) => Err(self.mark_down(remote, &e.to_string())),
            Err(_) => Err(self.mark_down(remote, "no answer in time")),
        }
    }

    /// Runs `remote` against Redis, or `local` when there is no Redis or it
    /// is failing (and the policy allows).
    async fn run<'a, T, F>(
        &'a self,
        remote: impl FnOnce(&'a Remote) -> F,
        local: impl FnOnce(&local::Local) -> T,
    ) -> Result<T, Unavailable>
    where
        F: Future<Output = redis::RedisResult<T>>,
    {
        let Some(r) = &self.inner.redis else {
            return Ok(local(&self.inner.local));
        };
        let now = r.now_us();
        if now >= r.down_until.load(Ordering::Relaxed) {
            match timeout(REDIS_TIMEOUT, remote(r)).await {
                Ok(Ok(value)) => {
                    self.mark_up(r);
                    return Ok(value);
                }
                Ok(Err(e)) => {
                    self.mark_down(r, &e.to_string());
                }
                Err(_) => {
                    self.mark_down(r, "no answer in time");
                }
            }
        }
        match self.inner.on_failure {
            OnRedisFailure::Local => Ok(local(&self.inner.local)),
            OnRedisFailure::Deny => Err(Unavailable {
                retry_after: RETRY_REDIS_AFTER,
            }),
        }
    }

    fn mark_up(&self, r: &Remote) {
        // A successful ping ends the wait at once, not at `down_until`.
        r.down_until.store(0, Ordering::Relaxed);
        if r.down.swap(false, Ordering::Relaxed) {
            tracing::info!("Redis answers again: rate limits are shared again");
            self.inner.metrics.rate_limiter_redis_up.set(1);
        }
    }

    /// Records the failure and returns what is in force meanwhile.
    fn mark_down(&self, r: &Remote, error: &str) -> String {
        let retry = u64::try_from(RETRY_REDIS_AFTER.as_micros()).unwrap_or(u64::MAX);
        r.down_until.store(r.now_us() + retry, Ordering::Relaxed);
        let fallback = match self.inner.on_failure {
            OnRedisFailure::Local => "per-process limits in force",
            OnRedisFailure::Deny => "limited requests refused",
        };
        if !r.down.swap(true, Ordering::Relaxed) {
            tracing::warn!(error, "Redis does not answer: {fallback} until it does");
            self.inner.metrics.rate_limiter_redis_up.set(0);
        }
        format!("redis: {error}; {fallback}")
    }
}

impl Remote {
    fn now_us(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_micros()).unwrap_or(u64::MAX)
    }
}
