//! Rate limits and failure counting, shared by every replica through Redis,
//! or kept in this process.
//!
//! Two primitives serve the API:
//! - [`Limiter::check`]: a GCRA budget per key (see [`gcra`]), for the
//!   per-principal request limits;
//! - [`Limiter::reserve`] / [`Limiter::settle`]: attempts counted in a
//!   sliding window *before* they are judged, failures that turn into a
//!   timed block, for brute-force protection (see `auth::brute_force`);
//! - [`Limiter::spend`] / [`Limiter::adjust`]: amounts taken from several
//!   capped counters at once, all or none, then corrected, for the token
//!   budgets (see `ai::budget`).
//!
//! With Redis, each primitive is one Lua script run atomically on the server,
//! so N replicas spend one budget. Redis going away must neither fail
//! requests (no 500) nor lift the limits: after a failed call the limiter
//! answers from its in-process state for [`RETRY_REDIS_AFTER`], then tries
//! Redis again (or, with [`OnRedisFailure::Deny`], refuses with 503). The
//! detailed health reports the fallback as `degraded`, and
//! `rate_limiter_fallback_total` counts the decisions taken without Redis.
//!
//! A restarted Redis leaves every replica holding a dead connection. The
//! first call on it fails at once and the connection manager reconnects, so
//! that call is tried once more before falling back: otherwise each replica
//! would count on its own for [`RETRY_REDIS_AFTER`] after every restart,
//! and failures spread over replicas would not add up.

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

/// What a counted attempt is held to (see `auth::brute_force`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttemptPolicy {
    /// The sliding window failures are counted in.
    pub window: Duration,
    /// Failures (and attempts in flight) a key may hold within the window.
    pub max: u32,
    /// How long a key stays blocked once its failures reach `max`.
    pub block: Duration,
    /// How long an attempt may stay in flight before its place is freed
    /// anyway (its process may have died).
    pub hold: Duration,
}

/// An attempt's place in the counts of its keys, taken by
/// [`Limiter::reserve`]; hand it to [`Limiter::settle`] once judged.
#[derive(Debug)]
#[must_use = "an attempt holds its place until it is settled (or its hold runs out)"]
pub struct Attempt {
    member: String,
    keys: Vec<String>,
}

/// What [`Limiter::reserve`] decided.
#[derive(Debug)]
pub enum Admission {
    /// Go ahead, then settle it.
    Admitted(Attempt),
    /// A key is blocked for this long.
    Blocked(Duration),
    /// A key's count is full of attempts still in flight.
    Busy,
}

/// Redis is down and the policy says to refuse.
#[derive(Debug, thiserror::Error)]
#[error("the shared rate limiter (Redis) is unavailable; retry in {retry_after:?}")]
pub struct Unavailable {
    /// When to try again.
    pub retry_after: Duration,
}

/// A capped counter [`Limiter::spend`] takes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counter {
    /// Its key (in Redis, as it is).
    pub key: String,
    /// The most it may hold.
    pub limit: u64,
    /// How long it lives after it is last spent from.
    pub ttl: Duration,
}

/// The counter that refused a [`Limiter::spend`], and what it held then.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Full {
    /// Its place in the counters given.
    pub index: usize,
    /// What it held.
    pub used: u64,
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
    reserve: Script,
    settle: Script,
    spend: Script,
    adjust: Script,
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
            reserve: Script::new(include_str!("reserve.lua")),
            settle: Script::new(include_str!("settle.lua")),
            spend: Script::new(include_str!("spend.lua")),
            adjust: Script::new(include_str!("adjust.lua")),
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

    /// Reserves one attempt under every key of `keys`, before it is judged:
    /// all or none, refused while a key is blocked or already holds
    /// `policy.max` failures and attempts in flight within the window.
    pub async fn reserve(
        &self,
        keys: &[String],
        policy: &AttemptPolicy,
    ) -> Result<Admission, Unavailable> {
        let member = uuid::Uuid::new_v4().to_string();
        let redis_keys = attempt_keys(keys);
        let (window, hold) = (micros(policy.window), micros(policy.hold));
        let answer = self
            .run(
                |r| {
                    let mut conn = r.conn.clone();
                    let mut call = r.reserve.prepare_invoke();
                    for key in &redis_keys {
                        call.key(key);
                    }
                    call.arg(window).arg(policy.max).arg(hold).arg(&member);
                    async move { call.invoke_async::<i64>(&mut conn).await }
                },
                |l| l.reserve(keys, window, policy.max, hold, &member),
            )
            .await?;
        Ok(match answer {
            0 => Admission::Admitted(Attempt {
                member,
                keys: keys.to_vec(),
            }),
            ms if ms > 0 => Admission::Blocked(Duration::from_millis(ms.unsigned_abs())),
            _ => Admission::Busy,
        })
    }

    /// Settles an attempt [`Limiter::reserve`] admitted: when it `failed`,
    /// it counts as a failure under each key, and the failure that reaches
    /// `policy.max` blocks that key for `policy.block` (the block's length
    /// is returned); otherwise its place is freed, and the failures of the
    /// keys flagged in `clear` (in the order of the attempt's keys) are
    /// forgotten.
    pub async fn settle(
        &self,
        attempt: Attempt,
        failed: bool,
        clear: &[bool],
        policy: &AttemptPolicy,
    ) -> Result<Option<Duration>, Unavailable> {
        let redis_keys = attempt_keys(&attempt.keys);
        let window = micros(policy.window);
        let block_ms = u64::try_from(policy.block.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        let clear: Vec<bool> = (0..attempt.keys.len())
            .map(|i| clear.get(i).copied().unwrap_or(false))
            .collect();
        let blocked_ms = self
            .run(
                |r| {
                    let mut conn = r.conn.clone();
                    let mut call = r.settle.prepare_invoke();
                    for key in &redis_keys {
                        call.key(key);
                    }
                    call.arg(&attempt.member)
                        .arg(u8::from(failed))
                        .arg(window)
                        .arg(policy.max)
                        .arg(block_ms);
                    for flag in &clear {
                        call.arg(u8::from(*flag));
                    }
                    async move { call.invoke_async::<u64>(&mut conn).await }
                },
                |l| {
                    l.settle(
                        &attempt.keys,
                        &attempt.member,
                        failed,
                        &clear,
                        window,
                        policy.max,
                        block_ms,
                    )
                },
            )
            .await?;
        Ok((blocked_ms > 0).then(|| Duration::from_millis(blocked_ms)))
    }

    /// Adds `amount` to every counter of `counters` if none would pass its
    /// limit: `Ok(None)` when added, `Ok(Some(full))` when one has no room
    /// for it (then nothing is added).
    pub async fn spend(
        &self,
        counters: &[Counter],
        amount: u64,
    ) -> Result<Option<Full>, Unavailable> {
        let full = self
            .run(
                |r| {
                    let mut conn = r.conn.clone();
                    let mut call = r.spend.prepare_invoke();
                    for c in counters {
                        call.key(&c.key);
                    }
                    call.arg(amount);
                    for c in counters {
                        call.arg(c.limit);
                    }
                    for c in counters {
                        call.arg(u64::try_from(c.ttl.as_millis()).unwrap_or(u64::MAX).max(1));
                    }
                    async move {
                        let (i, used): (usize, u64) = call.invoke_async(&mut conn).await?;
                        Ok(i.checked_sub(1).map(|index| Full { index, used }))
                    }
                },
                |l| l.spend(counters, amount),
            )
            .await?;
        Ok(full)
    }

    /// Adds `delta` (negative: gives back) to the counters of `keys` that
    /// still exist, none going below zero.
    pub async fn adjust(&self, keys: &[String], delta: i64) -> Result<(), Unavailable> {
        if delta == 0 {
            return Ok(());
        }
        self.run(
            |r| {
                let mut conn = r.conn.clone();
                let mut call = r.adjust.prepare_invoke();
                for key in keys {
                    call.key(key);
                }
                call.arg(delta);
                async move { call.invoke_async::<()>(&mut conn).await }
            },
            |l| l.adjust(keys, delta),
        )
        .await
    }

    /// What each counter of `keys` holds (0 for one that does not exist).
    pub async fn read(&self, keys: &[String]) -> Result<Vec<u64>, Unavailable> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        self.run(
            |r| {
                let mut conn = r.conn.clone();
                let mut call = redis::cmd("MGET");
                for key in keys {
                    call.arg(key);
                }
                async move {
                    let values: Vec<Option<u64>> = call.query_async(&mut conn).await?;
                    Ok(values.into_iter().map(Option::unwrap_or_default).collect())
                }
            },
            |l| l.read(keys),
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
    /// is failing (and the policy allows). A call that meets a dropped
    /// connection (Redis restarted) is tried once more on the connection
    /// the manager makes anew, before falling back.
    async fn run<'a, T, F>(
        &'a self,
        remote: impl Fn(&'a Remote) -> F,
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
            let mut answer = timeout(REDIS_TIMEOUT, remote(r)).await;
            if let Ok(Err(e)) = &answer
                && (e.is_connection_dropped() || e.is_io_error())
            {
                tracing::debug!(error = %e, "the Redis connection was dropped; trying again on a new one");
                answer = timeout(REDIS_TIMEOUT, remote(r)).await;
            }
            match answer {
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
        self.inner.metrics.rate_limiter_fallback_total.inc();
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

/// The three Redis keys of each attempt key: failures, attempts in
/// flight, block flag (the order reserve.lua and settle.lua read them in).
fn attempt_keys(keys: &[String]) -> Vec<String> {
    keys.iter()
        .flat_map(|k| {
            [
                format!("sv:bf:{k}"),
                format!("sv:bf:pending:{k}"),
                format!("sv:bf:block:{k}"),
            ]
        })
        .collect()
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

impl Remote {
    fn now_us(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_micros()).unwrap_or(u64::MAX)
    }
}
