//! Brute-force protection for logins.
//!
//! Failed logins are counted twice: per client IP and per account. When
//! either count reaches `LOGIN_MAX_FAILURES` within `LOGIN_WINDOW_SECS`,
//! that IP or account is blocked for `LOGIN_BLOCK_SECS`, and every login
//! it attempts meanwhile is refused before the password is even checked,
//! a correct one included. The per-account count stops an attacker who
//! spreads guesses over many addresses; its price is that such an attacker
//! can lock an account out for the block's length (logins only: sessions
//! and API keys keep working).
//!
//! The counts live in the shared limiter (Redis when configured), so every
//! replica sees the same failures, and old failures expire by themselves.

use std::{net::IpAddr, time::Duration};

use crate::{
    config::AuthConfig,
    ratelimit::{Limiter, Unavailable},
};

fn ip_key(ip: Option<IpAddr>) -> String {
    ip.map_or_else(|| "ip:unknown".to_owned(), |ip| format!("ip:{ip}"))
}

fn account_key(username: &str) -> String {
    format!("account:{username}")
}

/// How long the login of `username` from `ip` stays refused, if it does.
pub async fn blocked(
    limiter: &Limiter,
    ip: Option<IpAddr>,
    username: &str,
) -> Result<Option<Duration>, Unavailable> {
    let by_ip = limiter.blocked(&ip_key(ip)).await?;
    let by_account = limiter.blocked(&account_key(username)).await?;
    Ok(by_ip.max(by_account))
}

/// Counts a failed login; returns the block it started, if it did.
pub async fn failed(
    limiter: &Limiter,
    config: &AuthConfig,
    ip: Option<IpAddr>,
    username: &str,
) -> Result<Option<Duration>, Unavailable> {
    let count = |key: String| async move {
        limiter
            .fail(
                &key,
                config.login_window,
                config.login_max_failures,
                config.login_block,
            )
            .await
    };
    let by_ip = count(ip_key(ip)).await?;
    let by_account = count(account_key(username)).await?;
    Ok(by_ip.max(by_account))
}

/// A successful login clears its account's failures. Its IP's stay: a
/// guesser who also owns an account must not reset its own count.
pub async fn succeeded(limiter: &Limiter, username: &str) -> Result<(), Unavailable> {
    limiter.forget(&account_key(username)).await
}
