//! The generic cell rate algorithm (GCRA), as one pure step.
//!
//! A policy of `limit` requests per `period` admits one request every
//! `interval = period / limit`, with bursts of up to `limit`. The only state
//! is the theoretical arrival time (TAT): when the bucket would be empty
//! again had every admitted request arrived on schedule. A request at `now`
//! is admitted if, once counted, the TAT lies at most one `period` ahead.
//!
//! `gcra.lua` runs the same step inside Redis (the shared budget); the
//! in-process limiter calls [`step`] directly. Times are microseconds.

/// What one step decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    /// Whether the request is admitted.
    pub allowed: bool,
    /// Requests still admissible right now.
    pub remaining: u64,
    /// When refused: how long until a request would be admitted (µs).
    pub retry_after: u64,
    /// How long until the whole budget is back (µs).
    pub reset: u64,
    /// The TAT to store (unchanged when refused).
    pub tat: u64,
}

/// One GCRA step for a request at `now`, given the stored TAT (if any), the
/// emission `interval` and the burst `limit` (both > 0).
pub fn step(tat: Option<u64>, now: u64, interval: u64, limit: u64) -> Step {
    let period = interval.saturating_mul(limit);
    let tat = tat.unwrap_or(now).max(now);
    let new_tat = tat.saturating_add(interval);
    let allow_at = new_tat.saturating_sub(period);
    if allow_at > now {
        return Step {
            allowed: false,
            remaining: 0,
            retry_after: allow_at - now,
            reset: tat - now,
            tat,
        };
    }
    Step {
        allowed: true,
        remaining: (period - (new_tat - now)) / interval,
        retry_after: 0,
        reset: new_tat - now,
        tat: new_tat,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: u64 = 1_000_000;

    /// Runs `n` requests at `now` against `tat`, returning how many passed.
    fn burst(tat: &mut Option<u64>, now: u64, n: usize, interval: u64, limit: u64) -> usize {
        (0..n)
            .filter(|_| {
                let s = step(*tat, now, interval, limit);
                *tat = Some(s.tat);
                s.allowed
            })
            .count()
    }

    #[test]
    fn a_full_budget_admits_exactly_limit_at_once() {
        let mut tat = None;
        assert_eq!(burst(&mut tat, 0, 61, SECOND, 60), 60);
    }

    #[test]
    fn remaining_counts_down_and_refusals_say_when_to_retry() {
        let mut tat = None;
        let first = step(tat, 0, SECOND, 3);
        assert_eq!(
            (first.allowed, first.remaining, first.reset),
            (true, 2, SECOND)
        );
        tat = Some(first.tat);
        tat = Some(step(tat, 0, SECOND, 3).tat);
        let third = step(tat, 0, SECOND, 3);
        assert_eq!((third.allowed, third.remaining), (true, 0));
        tat = Some(third.tat);
        let refused = step(tat, 0, SECOND, 3);
        assert!(!refused.allowed);
        assert_eq!(refused.retry_after, SECOND);
        assert_eq!(refused.reset, 3 * SECOND);
        assert_eq!(refused.tat, 3 * SECOND, "a refusal does not use budget");
    }

    #[test]
    fn the_budget_refills_one_request_per_interval() {
        let mut tat = None;
        assert_eq!(burst(&mut tat, 0, 10, 6 * SECOND, 10), 10);
        assert_eq!(burst(&mut tat, 5 * SECOND, 1, 6 * SECOND, 10), 0);
        assert_eq!(burst(&mut tat, 6 * SECOND, 2, 6 * SECOND, 10), 1);
        // A whole period later the whole budget is back, not more.
        assert_eq!(burst(&mut tat, 200 * SECOND, 20, 6 * SECOND, 10), 10);
    }
}
