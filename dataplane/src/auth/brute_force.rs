//! Brute-force protection for logins.
//!
//! Every login attempt is counted twice: per client IP and per account.
//! The attempt takes its place in both counts *before* the password is
//! verified ([`admit`]), atomically, and is refused when either count is
//! full: `LOGIN_MAX_FAILURES` failures and attempts in flight within
//! `LOGIN_WINDOW_SECS`. Checking "is it blocked?", verifying, then counting
//! would let a burst of logins sent at once all pass the check before the
//! first failure is counted; reserving first means at most
//! `LOGIN_MAX_FAILURES` wrong passwords are ever verified per window,
//! whatever the concurrency.
//!
//! Once verified, the attempt is settled: a failure stays counted, and the
//! one that fills a count blocks that IP or account for `LOGIN_BLOCK_SECS`,
//! during which every login it attempts is refused before the password is
//! even checked, a correct one included. A success frees its place and
//! clears its account's count. The per-account count stops an attacker who
//! spreads guesses over many addresses; its price is that such an attacker
//! can lock an account out for the block's length (logins only: sessions
//! and API keys keep working).
//!
//! The counts live in the shared limiter (Redis when configured), so every
//! replica sees the same attempts, and old ones expire by themselves.

use std::{net::IpAddr, time::Duration};

use crate::{
    config::AuthConfig,
    ratelimit::{Admission, Attempt, AttemptPolicy, Limiter, Unavailable},
};

/// How long an attempt may stay in flight before its place is freed
/// anyway: a replica that dies between reserving and settling must not
/// hold a place for the whole window.
const IN_FLIGHT_HOLD: Duration = Duration::from_secs(30);

/// How long a login refused because the count is full of attempts still in
/// flight is told to wait: they settle within a verification's time.
const BUSY_RETRY: Duration = Duration::from_secs(1);

fn ip_key(ip: Option<IpAddr>) -> String {
    ip.map_or_else(|| "ip:unknown".to_owned(), |ip| format!("ip:{ip}"))
}

fn account_key(username: &str) -> String {
    format!("account:{username}")
}

fn policy(config: &AuthConfig) -> AttemptPolicy {
    AttemptPolicy {
        window: config.login_window,
        max: config.login_max_failures,
        block: config.login_block,
        hold: IN_FLIGHT_HOLD,
    }
}

/// What [`admit`] decided.
#[derive(Debug)]
pub enum Gate {
    /// Verify the password, then settle the attempt.
    Go(Attempt),
    /// Refused without verifying: retry after this long.
    Refused {
        /// How long to wait.
        wait: Duration,
        /// Whether a block is in force (rather than attempts in flight).
        blocked: bool,
    },
}

/// Reserves the login of `username` from `ip`, or says how long it stays
/// refused.
pub async fn admit(
    limiter: &Limiter,
    config: &AuthConfig,
    ip: Option<IpAddr>,
    username: &str,
) -> Result<Gate, Unavailable> {
    let keys = [ip_key(ip), account_key(username)];
    Ok(match limiter.reserve(&keys, &policy(config)).await? {
        Admission::Admitted(attempt) => Gate::Go(attempt),
        Admission::Blocked(wait) => Gate::Refused {
            wait,
            blocked: true,
        },
        Admission::Busy => Gate::Refused {
            wait: BUSY_RETRY,
            blocked: false,
        },
    })
}

/// The attempt's password was wrong: it counts as a failure. Returns the
/// block it started, if it did.
pub async fn failed(
    limiter: &Limiter,
    config: &AuthConfig,
    attempt: Attempt,
) -> Result<Option<Duration>, Unavailable> {
    limiter
        .settle(attempt, true, &[false, false], &policy(config))
        .await
}

/// The attempt signed in: its place is freed and its account's failures
/// are cleared. Its IP's stay: a guesser who also owns an account must not
/// reset its own count.
pub async fn succeeded(
    limiter: &Limiter,
    config: &AuthConfig,
    attempt: Attempt,
) -> Result<(), Unavailable> {
    limiter
        .settle(attempt, false, &[false, true], &policy(config))
        .await
        .map(drop)
}

/// The attempt could not be judged (the store failed): its place is freed,
/// nothing is counted.
pub async fn abandoned(
    limiter: &Limiter,
    config: &AuthConfig,
    attempt: Attempt,
) -> Result<(), Unavailable> {
    limiter
        .settle(attempt, false, &[false, false], &policy(config))
        .await
        .map(drop)
}
