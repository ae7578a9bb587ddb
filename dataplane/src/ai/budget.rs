//! Token budgets: how many tokens (prompt and completion) an API key and an
//! account may use per UTC day and per UTC month, shared by every replica
//! through the rate limiter's counters (Redis, with the same failure policy
//! as the request limits: `RATE_LIMIT_ON_REDIS_FAILURE`).
//!
//! A generation's cost is known only once it ends, but a budget checked
//! before and charged after lets every replica's requests in flight pass it
//! together. So a generation *reserves* first: its [`ceiling`], an upper
//! bound of what it can cost, taken from every budget that applies at once,
//! all or none, atomically. When it ends the reservation is corrected to
//! what the model server reported (or to an [`estimate`] when it reported
//! nothing, and the history says so). A budget is therefore never passed,
//! and what it refuses is a request it could not have afforded at its
//! worst; a refused request costs nothing.

use std::time::{Duration, SystemTime};

use jiff::{
    Timestamp,
    civil::{Date, Time},
    tz::TimeZone,
};

use super::validate::Generation;
use crate::{
    auth::{Credential, Principal},
    config::BudgetConfig,
    ratelimit::{Counter, Limiter, Unavailable},
};

/// Tokens allowed for the chat template a server wraps the messages in
/// (role markers, a default system prompt): SmolLM2's adds about 40.
const TEMPLATE_TOKENS: u64 = 64;
/// Tokens allowed per message for its role markers.
const MESSAGE_TOKENS: u64 = 8;
/// How long a counter outlives its period: a generation reserved at
/// 23:59:59 is still corrected after midnight.
const GRACE: Duration = Duration::from_secs(86_400);

/// Whose budget: the API key's or the account's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Holder {
    /// One API key.
    Key,
    /// One account: its sessions and every key acting for it, together.
    Account,
}

/// The period a budget counts over, in UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    /// A calendar day.
    Day,
    /// A calendar month.
    Month,
}

/// A budget that applies to a request, as of its start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// `key_daily`, `key_monthly`, `account_daily` or `account_monthly`.
    pub name: &'static str,
    /// Tokens per period.
    pub limit: u64,
    /// When the period ends and the budget is whole again.
    pub resets_at: SystemTime,
    /// Its counter for this period.
    counter: Counter,
}

/// A budget and what is spent of it, for `GET /api/usage`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Standing {
    /// The budget.
    pub budget: Applied,
    /// Tokens spent (and reserved by generations in flight) this period.
    pub used: u64,
}

/// A reservation [`Budgets::reserve`] took; hand it to [`Budgets::settle`].
#[derive(Debug)]
#[must_use = "a reservation holds its tokens until it is settled"]
pub struct Hold {
    counters: Vec<String>,
    reserved: u64,
}

/// Why a generation may not start.
#[derive(Debug, thiserror::Error)]
pub enum BudgetError {
    /// A budget has no room for the request's ceiling.
    #[error(
        "the {} token budget has no room for this request: {left} of {} tokens are left {}, and it may use up to {needed} (its prompt and max_tokens; a lower max_tokens needs less); it resets at {}",
        budget.name,
        budget.limit,
        period_word(budget.name),
        rfc3339_of(budget.resets_at)
    )]
    Exceeded {
        /// The budget that is spent.
        budget: Applied,
        /// Tokens left in it.
        left: u64,
        /// The request's ceiling.
        needed: u64,
    },
    /// The shared counters are unavailable and the policy says to refuse.
    #[error(transparent)]
    Unavailable(#[from] Unavailable),
}

/// The budgets in force, over the shared counters.
#[derive(Clone)]
pub struct Budgets {
    limiter: Limiter,
    config: BudgetConfig,
}

impl Budgets {
    /// Budgets from `config`, counted through `limiter`.
    pub fn new(limiter: Limiter, config: BudgetConfig) -> Self {
        Self { limiter, config }
    }

    /// The budgets that apply to `who` at `now`: the key's for a request
    /// made with an API key, the account's for every request; each the
    /// key's or the account's own where it has one, the configured default
    /// otherwise.
    pub fn applying(&self, who: &Principal, now: SystemTime) -> Vec<Applied> {
        let c = &self.config;
        let key = match &who.via {
            Credential::ApiKey { budget, .. } => Some(budget),
            Credential::Session { .. } => None,
        };
        [
            (
                Holder::Key,
                Period::Day,
                key.and_then(|b| b.daily.or(c.key_daily)),
            ),
            (
                Holder::Key,
                Period::Month,
                key.and_then(|b| b.monthly.or(c.key_monthly)),
            ),
            (
                Holder::Account,
                Period::Day,
                who.account_budget.daily.or(c.account_daily),
            ),
            (
                Holder::Account,
                Period::Month,
                who.account_budget.monthly.or(c.account_monthly),
            ),
        ]
        .into_iter()
        .filter_map(|(holder, period, limit)| {
            let limit = limit?;
            let (label, resets_at) = period_of(period, now);
            let (name, owner) = match (holder, period) {
                (Holder::Key, Period::Day) => ("key_daily", who.id.as_str()),
                (Holder::Key, Period::Month) => ("key_monthly", who.id.as_str()),
                (Holder::Account, Period::Day) => ("account_daily", who.account.as_str()),
                (Holder::Account, Period::Month) => ("account_monthly", who.account.as_str()),
            };
            let owner = match holder {
                Holder::Key => owner.to_owned(),
                Holder::Account => format!("account:{owner}"),
            };
            let ttl = resets_at
                .duration_since(now)
                .unwrap_or_default()
                .saturating_add(GRACE);
            Some(Applied {
                name,
                limit,
                resets_at,
                counter: Counter {
                    key: format!("sv:budget:{owner}:{label}"),
                    limit,
                    ttl,
                },
            })
        })
        .collect()
    }

    /// Reserves `ceiling` tokens from every budget that applies to `who`, all
    /// or none.
    pub async fn reserve(
        &self,
        who: &Principal,
        ceiling: u64,
        now: SystemTime,
    ) -> Result<Hold, BudgetError> {
        let applied = self.applying(who, now);
        if applied.is_empty() {
            return Ok(Hold {
                counters: Vec::new(),
                reserved: 0,
            });
        }
        let counters: Vec<Counter> = applied.iter().map(|a| a.counter.clone()).collect();
        let Some(full) = self.limiter.spend(&counters, ceiling).await? else {
            return Ok(Hold {
                counters: counters.into_iter().map(|c| c.key).collect(),
                reserved: ceiling,
            });
        };
        let budget = applied[full.index].clone();
        let left = budget.limit.saturating_sub(full.used);
        Err(BudgetError::Exceeded {
            budget,
            left,
            needed: ceiling,
        })
    }

    /// Corrects `hold` to the `used` tokens the generation really cost. A
    /// failure is logged, not returned: the answer is already made, and the
    /// reservation stays counted (the budget errs on the side of less).
    pub async fn settle(&self, hold: Hold, used: u64) {
        if hold.counters.is_empty() {
            return;
        }
        let delta = i128::from(used) - i128::from(hold.reserved);
        let delta = i64::try_from(delta).unwrap_or(if delta < 0 { i64::MIN } else { i64::MAX });
        if let Err(e) = self.limiter.adjust(&hold.counters, delta).await {
            tracing::warn!(error = %e, "a token budget could not be corrected; the reservation stays counted");
        }
    }

    /// The budgets of `who` and what is spent of each, at `now`.
    pub async fn standing(
        &self,
        who: &Principal,
        now: SystemTime,
    ) -> Result<Vec<Standing>, Unavailable> {
        let applied = self.applying(who, now);
        let keys: Vec<String> = applied.iter().map(|a| a.counter.key.clone()).collect();
        let used = self.limiter.read(&keys).await?;
        Ok(applied
            .into_iter()
            .zip(used)
            .map(|(budget, used)| Standing { budget, used })
            .collect())
    }
}

/// The most tokens `g` can cost: its prompt's bytes (no token of a
/// byte-level tokenizer covers less than one byte), an allowance for the
/// chat template, and `max_tokens`.
pub fn ceiling(g: &Generation) -> u64 {
    let prompt: u64 = g
        .messages
        .iter()
        .map(|m| m.content.len() as u64 + MESSAGE_TOKENS)
        .sum();
    prompt + TEMPLATE_TOKENS + u64::from(g.max_tokens)
}

/// Tokens of `text` by the usual rule of thumb (four bytes a token), for a
/// server that reports no usage.
pub fn estimate(text: &str) -> u32 {
    u32::try_from(text.len().div_ceil(4)).unwrap_or(u32::MAX)
}

/// The prompt tokens of `g` by the same rule, with its role markers.
pub fn estimate_prompt(g: &Generation) -> u32 {
    g.messages
        .iter()
        .map(|m| estimate(&m.content).saturating_add(MESSAGE_TOKENS as u32))
        .fold(0, u32::saturating_add)
}

/// The label of `now`'s period in counter keys (`day:2026-12-07`,
/// `month:2026-12`) and when that period ends.
fn period_of(period: Period, now: SystemTime) -> (String, SystemTime) {
    let utc = TimeZone::UTC;
    let today = Timestamp::try_from(now)
        .map(|t| utc.to_datetime(t).date())
        .unwrap_or(Date::constant(1970, 1, 1));
    let (label, next) = match period {
        Period::Day => (format!("day:{today}"), today.tomorrow()),
        Period::Month => (
            format!("month:{:04}-{:02}", today.year(), today.month()),
            today.last_of_month().tomorrow(),
        ),
    };
    let resets_at = next
        .ok()
        .and_then(|d| utc.to_timestamp(d.to_datetime(Time::midnight())).ok())
        .map_or(now + Duration::from_secs(86_400), SystemTime::from);
    (label, resets_at)
}

fn period_word(name: &str) -> &'static str {
    if name.ends_with("daily") {
        "today"
    } else {
        "this month"
    }
}

fn rfc3339_of(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

impl Applied {
    /// When it resets, as RFC 3339.
    pub fn resets_at_rfc3339(&self) -> String {
        rfc3339_of(self.resets_at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        ai::validate::{Message, Role},
        store::TokenBudget,
    };

    fn at(text: &str) -> SystemTime {
        SystemTime::from(text.parse::<Timestamp>().expect("a timestamp"))
    }

    fn principal(via: Credential) -> Principal {
        Principal {
            id: "key:k1".into(),
            name: "k".into(),
            scopes: Vec::new(),
            via,
            account: "u1".into(),
            account_budget: TokenBudget::default(),
        }
    }

    #[test]
    fn periods_end_at_the_next_utc_midnight_and_month() {
        let now = at("2026-12-31T23:59:59Z");
        assert_eq!(
            period_of(Period::Day, now),
            ("day:2026-12-31".into(), at("2027-01-01T00:00:00Z"))
        );
        assert_eq!(
            period_of(Period::Month, at("2026-02-10T08:00:00Z")),
            ("month:2026-02".into(), at("2026-03-01T00:00:00Z"))
        );
    }

    #[test]
    fn a_key_has_its_own_budgets_and_its_account_s_a_session_only_the_account_s() {
        let budgets = Budgets::new(
            Limiter::local(std::sync::Arc::new(
                crate::telemetry::Metrics::new().expect("metrics"),
            )),
            BudgetConfig {
                key_daily: Some(100),
                key_monthly: None,
                account_daily: None,
                account_monthly: Some(1000),
            },
        );
        let now = at("2026-12-07T10:00:00Z");
        let by_key = budgets.applying(
            &principal(Credential::ApiKey {
                expires_at: None,
                budget: TokenBudget::default(),
            }),
            now,
        );
        let names: Vec<_> = by_key.iter().map(|a| a.name).collect();
        assert_eq!(names, ["key_daily", "account_monthly"]);
        assert_eq!(by_key[0].counter.key, "sv:budget:key:k1:day:2026-12-07");
        assert_eq!(by_key[1].counter.key, "sv:budget:account:u1:month:2026-12");
        // Each counter outlives its period by a day.
        assert_eq!(
            by_key[0].counter.ttl,
            Duration::from_secs(14 * 3600 + 86_400)
        );
        let by_session = budgets.applying(
            &principal(Credential::Session {
                token_hash: String::new(),
                expires_at: 0,
            }),
            now,
        );
        assert_eq!(by_session.len(), 1);
        assert_eq!(by_session[0].name, "account_monthly");
        // A key's own budget replaces the default, and adds one where
        // there is none.
        let own = budgets.applying(
            &principal(Credential::ApiKey {
                expires_at: None,
                budget: TokenBudget {
                    daily: Some(7),
                    monthly: Some(70),
                },
            }),
            now,
        );
        let limits: Vec<_> = own.iter().map(|a| (a.name, a.limit)).collect();
        assert_eq!(
            limits,
            [
                ("key_daily", 7),
                ("key_monthly", 70),
                ("account_monthly", 1000)
            ]
        );
    }

    #[test]
    fn the_ceiling_bounds_the_prompt_by_its_bytes_and_adds_max_tokens() {
        let g = Generation {
            messages: vec![Message {
                role: Role::User,
                content: "Say hi".into(),
            }],
            model: "m".into(),
            max_tokens: 16,
            temperature: None,
        };
        assert_eq!(ceiling(&g), 6 + MESSAGE_TOKENS + TEMPLATE_TOKENS + 16);
        assert_eq!(estimate("Say hi"), 2);
    }

    #[tokio::test]
    async fn a_refusal_names_the_budget_what_is_left_and_when_it_resets() {
        let budgets = Budgets::new(
            Limiter::local(std::sync::Arc::new(
                crate::telemetry::Metrics::new().expect("metrics"),
            )),
            BudgetConfig {
                key_daily: Some(100),
                ..BudgetConfig::default()
            },
        );
        let who = principal(Credential::ApiKey {
            expires_at: None,
            budget: TokenBudget::default(),
        });
        let now = at("2026-12-07T10:00:00Z");
        let hold = budgets.reserve(&who, 90, now).await.expect("room");
        budgets.settle(hold, 30).await;
        let err = budgets.reserve(&who, 80, now).await.expect_err("no room");
        assert_eq!(
            err.to_string(),
            "the key_daily token budget has no room for this request: 70 of 100 tokens are left today, and it may use up to 80 (its prompt and max_tokens; a lower max_tokens needs less); it resets at 2026-12-08T00:00:00.000Z"
        );
        // A refusal spends nothing: what is left still fits.
        let hold = budgets.reserve(&who, 70, now).await.expect("room");
        budgets.settle(hold, 70).await;
        let standing = budgets.standing(&who, now).await.expect("standing");
        assert_eq!(standing[0].used, 100);
    }
}
