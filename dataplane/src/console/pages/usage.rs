//! Token usage: the viewer's budgets as meters, tokens per day as a chart,
//! and a table per account, credential and model. The numbers are
//! `GET /api/usage`'s ([`routes::usage::report`]): administrators see
//! everyone's (or one account's), a member their own.

use std::collections::BTreeMap;

use axum::{
    Extension,
    extract::{Query, State},
    http::StatusCode,
    response::Response,
};
use maud::html;

use crate::{
    app::AppState,
    auth::Scope,
    console::{
        charts::{Series, bars, meter},
        guard::Viewer,
        layout,
    },
    routes::usage::{UsageEntry, UsageParams, UsageReport, day_label, parse_day, report},
};

/// `GET /console/usage`.
pub async fn page(
    State(state): State<AppState>,
    Extension(viewer): Extension<Viewer>,
    Query(filters): Query<UsageParams>,
) -> Response {
    let filters = UsageParams {
        from: layout::filter_text(&filters.from),
        to: layout::filter_text(&filters.to),
        account: layout::filter_text(&filters.account),
    };
    let (usage, error) = match report(&state, &viewer.principal, &filters).await {
        Ok(usage) => (Some(usage), None),
        // A bad filter is shown beside the form; anything else is the page's failure.
        Err(e) if e.status().is_client_error() => (None, Some(e)),
        Err(e) => return layout::failure(&e),
    };
    let status = if error.is_some() {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    let admin = viewer.principal.has(Scope::Admin);
    let body = html! {
        form.filters method="get" action="/console/usage" {
            div {
                label for="from" { "From (UTC day)" }
                input #from name="from" type="date" value=(filters.from.as_deref().unwrap_or(""));
            }
            div {
                label for="to" { "To (UTC day)" }
                input #to name="to" type="date" value=(filters.to.as_deref().unwrap_or(""));
            }
            @if admin {
                div {
                    label for="account" { "Account (user id; empty: everyone)" }
                    input #account name="account" type="search" value=(filters.account.as_deref().unwrap_or(""));
                }
            }
            button type="submit" { "Show" }
        }
        @if let Some(e) = &error { (layout::action_error(e)) }
        @if let Some(usage) = &usage {
            section aria-labelledby="budgets-h" {
                h2 #budgets-h { "Budgets" }
                @if usage.budgets.is_empty() {
                    p { "No token budget applies to you (AI_BUDGET_*_TOKENS)." }
                }
                @for b in &usage.budgets {
                    (meter(&budget_label(&b.budget), b.used, b.limit))
                    p { small { "Resets " (layout::time_text(&b.resets_at)) } }
                }
            }
            section aria-labelledby="days-h" {
                h2 #days-h { "Tokens per day, " (usage.from) " to " (usage.to) }
                (daily_chart(usage))
            }
            section aria-labelledby="by-h" {
                h2 #by-h { "By account, credential and model" }
                (by_credential(&usage.entries))
            }
        }
    };
    layout::respond(status, layout::page(&viewer, "Usage", "Usage", body))
}

/// A budget's name in words.
fn budget_label(name: &str) -> String {
    let (who, period) = name.split_once('_').unwrap_or((name, ""));
    let who = if who == "key" {
        "This key"
    } else {
        "Your account"
    };
    format!("{who}, {period} tokens")
}

/// Prompt and completion tokens stacked, one bar per day of the range.
fn daily_chart(usage: &UsageReport) -> maud::Markup {
    // The report's own days, so they always parse.
    let day = |label: &str| parse_day(label, "day").unwrap_or(0);
    let first = day(&usage.from);
    let days = usize::try_from(day(&usage.to) - first + 1).unwrap_or(0);
    let labels: Vec<String> = (0..days).map(|d| day_label(first + d as i64)).collect();
    let (mut prompt, mut completion) = (vec![0; days], vec![0; days]);
    for e in &usage.entries {
        if let Some(i) = labels.iter().position(|l| *l == e.day) {
            prompt[i] += e.prompt_tokens;
            completion[i] += e.completion_tokens;
        }
    }
    bars(
        "Tokens",
        "day",
        &labels,
        &[
            Series {
                name: "prompt",
                class: "info",
                values: &prompt,
            },
            Series {
                name: "completion",
                class: "ok",
                values: &completion,
            },
        ],
    )
}

/// The range's entries added up per account, credential and model.
fn by_credential(entries: &[UsageEntry]) -> maud::Markup {
    #[derive(Default)]
    struct Sum {
        account: String,
        credential: String,
        requests: i64,
        prompt: i64,
        completion: i64,
        estimated: i64,
    }
    let mut sums: BTreeMap<(Option<&str>, Option<&str>, &str), Sum> = BTreeMap::new();
    for e in entries {
        let sum = sums
            .entry((e.account.as_deref(), e.credential.as_deref(), &e.model))
            .or_default();
        sum.account = e
            .account_name
            .clone()
            .or_else(|| e.account.clone())
            .unwrap_or_else(|| "—".into());
        sum.credential = match (&e.key_name, &e.credential) {
            (Some(name), _) => format!("key {name}"),
            (None, Some(c)) if c.starts_with("user:") => "signed in".into(),
            (None, Some(c)) => c.clone(),
            (None, None) => "—".into(),
        };
        sum.requests += e.requests;
        sum.prompt += e.prompt_tokens;
        sum.completion += e.completion_tokens;
        sum.estimated += e.estimated_requests;
    }
    html! {
        @if sums.is_empty() {
            p { "No generation in this range." }
        } @else {
            (layout::table("Usage by account, credential and model", html! {
                table {
                    thead { tr {
                        th scope="col" { "Account" } th scope="col" { "Credential" } th scope="col" { "Model" }
                        th scope="col" { "Requests" } th scope="col" { "Prompt tokens" }
                        th scope="col" { "Completion tokens" } th scope="col" { "Total" }
                    } }
                    tbody {
                        @for ((_, _, model), s) in &sums {
                            tr {
                                td { (s.account) }
                                td { (s.credential) }
                                td { code { (model) } }
                                td { (s.requests) }
                                td { (s.prompt) }
                                td { (s.completion) }
                                td {
                                    (s.prompt + s.completion)
                                    @if s.estimated > 0 {
                                        br; small { (s.estimated) " estimated (the server reported no usage)" }
                                    }
                                }
                            }
                        }
                    }
                }
            }))
        }
    }
}
