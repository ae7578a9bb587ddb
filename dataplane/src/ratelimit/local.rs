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
    /// Key -> attempts in flight: (member, reserved at µs).
    pending: HashMap<String, Vec<(String, u64)>>,
    /// Key -> end of its block (µs).
    blocks: HashMap<String, u64>,
    /// Key -> (amount spent, when the counter expires, µs).
    counters: HashMap<String, (u64, u64)>,
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

    /// reserve.lua on this process: 0 when reserved under every key, the
    /// block's remaining ms when one is blocked, -1 when one is full.
    pub(super) fn reserve(
        &self,
        keys: &[String],
        window: u64,
        max: u32,
        hold: u64,
        member: &str,
    ) -> i64 {
        let now = self.now();
        let mut state = self.state();
        state.sweep(now, window, hold);
        for key in keys {
            if let Some(until) = state.blocks.get(key).filter(|until| **until > now) {
                return i64::try_from((until - now).div_ceil(1000)).unwrap_or(i64::MAX);
            }
            if let Some(times) = state.failures.get_mut(key) {
                while times.front().is_some_and(|t| t + window <= now) {
                    times.pop_front();
                }
            }
            if let Some(pending) = state.pending.get_mut(key) {
                pending.retain(|(_, at)| at + hold > now);
            }
            let held = state.failures.get(key).map_or(0, VecDeque::len)
                + state.pending.get(key).map_or(0, Vec::len);
            if held >= max as usize {
                return -1;
            }
        }
        for key in keys {
            state
                .pending
                .entry(key.clone())
                .or_default()
                .push((member.to_owned(), now));
        }
        0
    }

    /// settle.lua on this process: the block's length in ms when this
    /// failure starts one, else 0.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn settle(
        &self,
        keys: &[String],
        member: &str,
        failed: bool,
        clear: &[bool],
        window: u64,
        max: u32,
        block_ms: u64,
    ) -> u64 {
        let now = self.now();
        let mut state = self.state();
        let mut started = 0;
        for (i, key) in keys.iter().enumerate() {
            if let Some(pending) = state.pending.get_mut(key) {
                pending.retain(|(m, _)| m != member);
                if pending.is_empty() {
                    state.pending.remove(key);
                }
            }
            if failed {
                let times = state.failures.entry(key.clone()).or_default();
                while times.front().is_some_and(|t| t + window <= now) {
                    times.pop_front();
                }
                times.push_back(now);
                if times.len() >= max as usize {
                    state.failures.remove(key);
                    state.blocks.insert(
                        key.clone(),
                        now.saturating_add(block_ms.saturating_mul(1000)),
                    );
                    started = block_ms;
                }
            } else if clear.get(i).copied().unwrap_or(false) {
                state.failures.remove(key);
            }
        }
        started
    }

    /// spend.lua on this process: `None` when `amount` was added to every
    /// counter, `Some(i)` when counter `i` has no room for it (nothing added).
    pub(super) fn spend(&self, counters: &[super::Counter], amount: u64) -> Option<super::Full> {
        let now = self.now();
        let mut state = self.state();
        if state.counters.len() >= SWEEP_AT {
            state.counters.retain(|_, (_, expires)| *expires > now);
        }
        let used = |state: &State, key: &str| match state.counters.get(key) {
            Some(&(used, expires)) if expires > now => used,
            _ => 0,
        };
        if let Some(full) = counters.iter().enumerate().find_map(|(index, c)| {
            let used = used(&state, &c.key);
            (used.saturating_add(amount) > c.limit).then_some(super::Full { index, used })
        }) {
            return Some(full);
        }
        for c in counters {
            let total = used(&state, &c.key) + amount;
            let expires = now.saturating_add(u64::try_from(c.ttl.as_micros()).unwrap_or(u64::MAX));
            state.counters.insert(c.key.clone(), (total, expires));
        }
        None
    }

    /// adjust.lua on this process: adds `delta` to the counters that still
    /// exist, never below zero.
    pub(super) fn adjust(&self, keys: &[String], delta: i64) {
        let now = self.now();
        let mut state = self.state();
        for key in keys {
            if let Some((used, expires)) = state.counters.get_mut(key)
                && *expires > now
            {
                *used = used.saturating_add_signed(delta);
            }
        }
    }

    /// What each counter holds (0 for one that does not exist).
    pub(super) fn read(&self, keys: &[String]) -> Vec<u64> {
        let now = self.now();
        let state = self.state();
        keys.iter()
            .map(|k| match state.counters.get(k) {
                Some(&(used, expires)) if expires > now => used,
                _ => 0,
            })
            .collect()
    }
}

impl State {
    /// Drops what has expired once the maps grow large: bounds memory under
    /// a flood of distinct keys.
    fn sweep(&mut self, now: u64, window: u64, hold: u64) {
        if self.failures.len() + self.pending.len() < SWEEP_AT {
            return;
        }
        self.failures
            .retain(|_, times| times.back().is_some_and(|t| t + window > now));
        self.pending
            .retain(|_, pending| pending.iter().any(|(_, at)| at + hold > now));
        self.blocks.retain(|_, until| *until > now);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const SECOND: u64 = 1_000_000;

    fn keys(names: &[&str]) -> Vec<String> {
        names.iter().map(|k| (*k).to_owned()).collect()
    }

    /// Reserves and fails one attempt; the block it started, in ms.
    fn fail(l: &Local, key: &str) -> u64 {
        let k = keys(&[key]);
        assert_eq!(l.reserve(&k, 300 * SECOND, 5, 30 * SECOND, "m"), 0);
        l.settle(&k, "m", true, &[false], 300 * SECOND, 5, 60_000)
    }

    #[tokio::test(start_paused = true)]
    async fn failures_block_at_the_threshold_and_the_block_ends() {
        let l = Local::new();
        for _ in 0..4 {
            assert_eq!(fail(&l, "ip:1"), 0);
        }
        assert_eq!(fail(&l, "ip:1"), 60_000);
        let k = keys(&["ip:1"]);
        assert_eq!(l.reserve(&k, 300 * SECOND, 5, 30 * SECOND, "x"), 60_000);
        assert_eq!(
            l.reserve(&keys(&["ip:2"]), 300 * SECOND, 5, 30 * SECOND, "x"),
            0,
            "other keys are not blocked"
        );
        tokio::time::advance(Duration::from_secs(61)).await;
        assert_eq!(l.reserve(&k, 300 * SECOND, 5, 30 * SECOND, "y"), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn attempts_in_flight_take_their_places_before_they_are_judged() {
        let l = Local::new();
        let k = keys(&["ip:1", "account:a"]);
        for i in 0..5 {
            assert_eq!(
                l.reserve(&k, 300 * SECOND, 5, 30 * SECOND, &i.to_string()),
                0
            );
        }
        // Five in flight: the sixth waits, on either key.
        assert_eq!(l.reserve(&k, 300 * SECOND, 5, 30 * SECOND, "6"), -1);
        assert_eq!(
            l.reserve(&keys(&["account:a"]), 300 * SECOND, 5, 30 * SECOND, "6"),
            -1
        );
        // One succeeds and clears its account: one place frees on the IP,
        // the account's four others are still in flight.
        l.settle(&k, "0", false, &[false, true], 300 * SECOND, 5, 60_000);
        assert_eq!(l.reserve(&k, 300 * SECOND, 5, 30 * SECOND, "7"), 0);
        // The five left fail: the fifth failure blocks both keys.
        let started: Vec<u64> = ["1", "2", "3", "4", "7"]
            .iter()
            .map(|m| l.settle(&k, m, true, &[false, false], 300 * SECOND, 5, 60_000))
            .collect();
        assert_eq!(started, [0, 0, 0, 0, 60_000]);
        assert_eq!(l.reserve(&k, 300 * SECOND, 5, 30 * SECOND, "8"), 60_000);
    }

    #[tokio::test(start_paused = true)]
    async fn an_attempt_never_settled_frees_its_place_after_its_hold() {
        let l = Local::new();
        let k = keys(&["ip:1"]);
        for i in 0..5 {
            assert_eq!(
                l.reserve(&k, 300 * SECOND, 5, 30 * SECOND, &i.to_string()),
                0
            );
        }
        assert_eq!(l.reserve(&k, 300 * SECOND, 5, 30 * SECOND, "x"), -1);
        tokio::time::advance(Duration::from_secs(31)).await;
        assert_eq!(l.reserve(&k, 300 * SECOND, 5, 30 * SECOND, "x"), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn old_failures_leave_the_window_by_themselves() {
        let l = Local::new();
        for _ in 0..4 {
            fail(&l, "acct:a");
        }
        tokio::time::advance(Duration::from_secs(301)).await;
        assert_eq!(fail(&l, "acct:a"), 0);
        let k = keys(&["acct:a"]);
        assert_eq!(l.reserve(&k, 300 * SECOND, 5, 30 * SECOND, "s"), 0);
        l.settle(&k, "s", false, &[true], 300 * SECOND, 5, 60_000);
        for _ in 0..4 {
            assert_eq!(fail(&l, "acct:a"), 0);
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

    #[tokio::test(start_paused = true)]
    async fn counters_spend_all_or_none_and_expire() {
        let l = Local::new();
        let day = |key: &str, limit| super::super::Counter {
            key: key.into(),
            limit,
            ttl: Duration::from_secs(60),
        };
        let both = [day("k", 100), day("a", 150)];
        assert_eq!(l.spend(&both, 60), None);
        // The key's counter has 40 left: nothing is spent on either.
        let full = |index, used| Some(super::super::Full { index, used });
        assert_eq!(l.spend(&both, 50), full(0, 60));
        assert_eq!(l.read(&["k".into(), "a".into()]), [60, 60]);
        l.adjust(&["k".into(), "a".into()], -20);
        assert_eq!(l.spend(&both, 60), None);
        assert_eq!(l.read(&["k".into(), "a".into()]), [100, 100]);
        assert_eq!(l.spend(&both, 1), full(0, 100));
        tokio::time::advance(Duration::from_secs(61)).await;
        assert_eq!(l.read(&["k".into()]), [0]);
        // An expired counter is not brought back by an adjustment.
        l.adjust(&["k".into()], 5);
        assert_eq!(l.read(&["k".into()]), [0]);
    }
}
