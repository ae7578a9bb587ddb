//! `GET /api/usage`: tokens used per UTC day, account, credential and model,
//! and the caller's token budgets with what is spent of each.
//! Administrators see everyone's usage; an account its own (its sessions
//! and its keys); an API key its own.

use std::time::SystemTime;

use axum::{
    Extension, Json,
    extract::{Query, State},
};
use jiff::{Timestamp, civil::Date, tz::TimeZone};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::{
    app::AppState,
    auth::{Credential, Principal, Scope},
    error::{ApiError, ErrorBody, invalid},
    store::{DAY_MS, UsageRow, UsageScope},
};

/// Days covered unless `from` says otherwise, and the most one report covers.
const DEFAULT_DAYS: i64 = 30;
const MAX_DAYS: i64 = 366;

/// The days to cover, and whose usage.
#[derive(Debug, Default, Deserialize, IntoParams)]
pub struct UsageParams {
    /// The first day (UTC, `YYYY-MM-DD`); default: 29 days before `to`.
    pub from: Option<String>,
    /// The last day (UTC, `YYYY-MM-DD`); default: today.
    pub to: Option<String>,
    /// Only this account (a user id); administrators only.
    pub account: Option<String>,
}

/// Generations of one day, account, credential and model, added up.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct UsageEntry {
    /// The UTC day (`YYYY-MM-DD`).
    pub day: String,
    /// The account charged (a user id).
    pub account: Option<String>,
    /// Its user name.
    pub account_name: Option<String>,
    /// Who asked: `user:<id>` (signed in) or `key:<id>` (an API key).
    pub credential: Option<String>,
    /// The key's name, when `credential` is a key that still exists.
    pub key_name: Option<String>,
    /// The model that answered.
    pub model: String,
    /// Generations, succeeded and failed.
    pub requests: i64,
    /// Tokens in their prompts.
    pub prompt_tokens: i64,
    /// Tokens generated.
    pub completion_tokens: i64,
    /// Prompt and completion together: what budgets are charged.
    pub total_tokens: i64,
    /// Generations whose counts are SecureVault's estimate (about four
    /// bytes a token) because the model server reported none.
    pub estimated_requests: i64,
}

/// A token budget of the caller and what is spent of it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct BudgetStanding {
    /// `key_daily`, `key_monthly`, `account_daily` or `account_monthly`.
    pub budget: String,
    /// Tokens per period.
    pub limit: u64,
    /// Spent this period, with what generations in flight reserved.
    pub used: u64,
    /// What is left.
    pub remaining: u64,
    /// When the period ends (RFC 3339).
    pub resets_at: String,
}

/// Usage over a range of days.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct UsageReport {
    /// The first day covered (UTC, `YYYY-MM-DD`).
    pub from: String,
    /// The last day covered.
    pub to: String,
    /// By day, then account, credential and model.
    pub entries: Vec<UsageEntry>,
    /// The caller's token budgets (`AI_BUDGET_*_TOKENS`); empty when none
    /// applies.
    pub budgets: Vec<BudgetStanding>,
}

/// Token usage and budgets.
#[utoipa::path(
    get,
    path = "/api/usage",
    tag = "ai",
    params(UsageParams),
    responses(
        (status = 200, description = "Usage by day, account, credential and model, and the caller's budgets", body = UsageReport),
        (status = 403, description = "`account` names another account and the caller is not an administrator", body = ErrorBody),
        (status = 422, description = "A day is not `YYYY-MM-DD`, or the range is reversed or longer than 366 days", body = ErrorBody),
    )
)]
pub async fn get_usage(
    State(state): State<AppState>,
    Extension(caller): Extension<Principal>,
    Query(params): Query<UsageParams>,
) -> Result<Json<UsageReport>, ApiError> {
    report(&state, &caller, &params).await.map(Json)
}

/// The usage `caller` may see over `params`' days (also the console's
/// usage page).
pub async fn report(
    state: &AppState,
    caller: &Principal,
    params: &UsageParams,
) -> Result<UsageReport, ApiError> {
    let now = SystemTime::now();
    let today = day_number(now);
    let to = params
        .to
        .as_deref()
        .map(|d| parse_day(d, "to"))
        .transpose()?
        .unwrap_or(today);
    let from = params
        .from
        .as_deref()
        .map(|d| parse_day(d, "from"))
        .transpose()?
        .unwrap_or(to - (DEFAULT_DAYS - 1));
    if from > to {
        return Err(invalid("from", "must not be after `to`").into());
    }
    if to - from + 1 > MAX_DAYS {
        return Err(invalid("from", format!("a report covers at most {MAX_DAYS} days")).into());
    }
    let admin = caller.has(Scope::Admin);
    let scope = match (&params.account, admin) {
        (Some(account), true) => UsageScope::Account(account.clone()),
        (None, true) => UsageScope::All,
        (Some(account), false) if *account != caller.account => {
            return Err(ApiError::Forbidden(
                "only administrators see another account's usage".into(),
            ));
        }
        // An API key sees what it asked; a session its whole account's.
        (_, false) => match caller.via {
            Credential::ApiKey { .. } => UsageScope::Author(caller.id.clone()),
            Credential::Session { .. } => UsageScope::Account(caller.account.clone()),
        },
    };
    let rows = state.store.usage(&scope, from, to).await?;
    let budgets = state
        .budgets
        .standing(caller, now)
        .await?
        .into_iter()
        .map(|s| BudgetStanding {
            budget: s.budget.name.to_owned(),
            limit: s.budget.limit,
            used: s.used,
            remaining: s.budget.limit.saturating_sub(s.used),
            resets_at: s.budget.resets_at_rfc3339(),
        })
        .collect();
    Ok(UsageReport {
        from: day_label(from),
        to: day_label(to),
        entries: rows.into_iter().map(entry).collect(),
        budgets,
    })
}

fn entry(r: UsageRow) -> UsageEntry {
    UsageEntry {
        day: day_label(r.day),
        account: r.account,
        account_name: r.account_name,
        credential: r.credential,
        key_name: r.key_name,
        model: r.model,
        requests: r.requests,
        prompt_tokens: r.prompt_tokens,
        completion_tokens: r.completion_tokens,
        total_tokens: r.prompt_tokens + r.completion_tokens,
        estimated_requests: r.estimated,
    }
}

/// `YYYY-MM-DD` as days since the Unix epoch; the error names `field`.
pub fn parse_day(text: &str, field: &str) -> Result<i64, ApiError> {
    let date: Date = text
        .parse()
        .map_err(|_| invalid(field, "expected a day as YYYY-MM-DD, such as 2026-12-01"))?;
    let start = TimeZone::UTC
        .to_timestamp(date.to_datetime(jiff::civil::Time::midnight()))
        .map_err(|_| invalid(field, "expected a day as YYYY-MM-DD, such as 2026-12-01"))?;
    Ok(start.as_millisecond().div_euclid(DAY_MS))
}

fn day_number(t: SystemTime) -> i64 {
    crate::store::unix_millis(t).div_euclid(DAY_MS)
}

/// Days since the Unix epoch as `YYYY-MM-DD`.
pub fn day_label(day: i64) -> String {
    Timestamp::from_millisecond(day * DAY_MS)
        .map(|t| TimeZone::UTC.to_datetime(t).date().to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_read_and_print_as_utc_calendar_days() {
        let day = parse_day("2026-12-07", "from").expect("a day");
        assert_eq!(day, 20_794);
        assert_eq!(day_label(day), "2026-12-07");
        for bad in ["2026-13-01", "07/12/2026", "2026-12-07T00:00:00Z", ""] {
            assert!(parse_day(bad, "from").is_err(), "{bad}");
        }
    }
}
