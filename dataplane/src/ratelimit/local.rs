//! The in-process state behind [`super::Limiter`]: without Redis, or while
//! Redis does not answer. Same algorithms as the Lua scripts, on this
//! process's clock.

use std::{
    collections::{HashMap, VecDeque},
    sync::{Mutex, MutexGuard},
};

use tokio::time::Instant;

use super::gcra;

/// Keys kept before expired ones are swept; bounds memory under a flood of
/// distinct keys.
const SWEEP_AT: usize = 100_000;

pub(super) struct Local {
    epoch: Instant,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Key -> TAT (µs since `epoch`).
    budgets: HashMap<String, u64>,
    /// Key -> failure times (µs), oldest first.
    failures: HashMap<String, VecDeque<u64>>,
    /// Key -> end of its block (µs).
    blocks: HashMap<String, u64>,
}

impl Local {
    pub(super) fn new() -> Self {
        Self {
            epoch: Instant::now(),
            state: Mutex::default(),
        }
    }

    fn now(&self) -> u64 {
        // +1: a TAT of 0 must not look like "never used" at the first instant.
        u64::try_from(self.epoch.elapsed().as_micros()).unwrap_or(u64::MAX - 1) + 1
    }

    /// A poisoned lock only means a panic elsewhere mid-update; the maps
    /// still hold valid (at worst slightly stale) numbers.
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn gcra(&self, key: &str, interval: u64, limit: u64) -> gcra::Step {
        let now = self.now();
        let mut state = self.state();
        if state.budgets.len() >= SWEEP_AT {
            state.budgets.retain(|_, tat| *tat > now);
        }
        let step = gcra::step(state.budgets.get(key).copied(), now, interval, limit);
        if step.allowed {
            state.budgets.insert(key.to_owned(), step.tat);
        }
        step
    }

    /// Counts a failure; the block's length in ms when this one starts it.
    pub(super) fn fail(&self, key: &str, window: u64, max: u32, block_ms: u64) -> u64 {
        let now = self.now();
        let mut state = self.state();
        if state.failures.len() >= SWEEP_AT {
            state
                .failures
                .retain(|_, times| times.back().is_some_and(|t| t + window > now));
            state.blocks.retain(|_, until| *until > now);
        }
        let times = state.failures.entry(key.to_owned()).or_default();
        while times.front().is_some_and(|t| t + window <= now) {
            times.pop_front();
        }
        times.push_back(now);
        if times.len() < max as usize {
            return 0;
        }
        state.failures.remove(key);
        state.blocks.insert(
            key.to_owned(),
            now.saturating_add(block_ms.saturating_mul(1000)),
        );
        block_ms
    }

    /// The block's remaining time in ms, 0 when not blocked.
    pub(super) fn blocked(&self, key: &str) -> i64 {
        let now = self.now();
        let state = self.state();
        state
            .blocks
            .get(key)
            .filter(|until| **until > now)
            .map_or(0, |until| {
                i64::try_from((until - now).div_ceil(1000)).unwrap_or(i64::MAX)
            })
    }

    pub(super) fn forget(&self, key: &str) {
        self.state().failures.remove(key);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const SECOND: u64 = 1_000_000;

    #[tokio::test(start_paused = true)]
    async fn failures_block_at_the_threshold_and_the_block_ends() {
        let l = Local::new();
        for _ in 0..4 {
            assert_eq!(l.fail("ip:1", 300 * SECOND, 5, 60_000), 0);
        }
        assert_eq!(l.blocked("ip:1"), 0);
        assert_eq!(l.fail("ip:1", 300 * SECOND, 5, 60_000), 60_000);
        assert_eq!(l.blocked("ip:1"), 60_000);
        assert_eq!(l.blocked("ip:2"), 0, "other keys are not blocked");
        tokio::time::advance(Duration::from_secs(61)).await;
        assert_eq!(l.blocked("ip:1"), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn old_failures_leave_the_window_by_themselves() {
        let l = Local::new();
        for _ in 0..4 {
            l.fail("acct:a", 300 * SECOND, 5, 60_000);
        }
        tokio::time::advance(Duration::from_secs(301)).await;
        assert_eq!(l.fail("acct:a", 300 * SECOND, 5, 60_000), 0);
        l.forget("acct:a");
        for _ in 0..4 {
            assert_eq!(l.fail("acct:a", 300 * SECOND, 5, 60_000), 0);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn budgets_are_per_key() {
        let l = Local::new();
        assert!(l.gcra("a", SECOND, 1).allowed);
        assert!(!l.gcra("a", SECOND, 1).allowed);
        assert!(l.gcra("b", SECOND, 1).allowed);
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(l.gcra("a", SECOND, 1).allowed);
    }
}
