//! The overview: is everything up, what went through in the last day, how
//! full the outbox is, and how much of the rate limits is in use.

use std::time::SystemTime;

use axum::{Extension, extract::State, http::StatusCode, response::Response};
use maud::html;

use crate::{
    app::AppState,
    console::{
        charts::{Series, hourly_bars, meter},
        guard::Viewer,
        layout,
    },
    error::ApiError,
    health::CheckStatus,
    routes::health,
};

/// Hours the charts cover.
pub const HOURS: usize = 24;

/// `GET /console`.
pub async fn page(State(state): State<AppState>, Extension(viewer): Extension<Viewer>) -> Response {
    let (health, series, outbox) = tokio::join!(
        health::detailed(State(state.clone())),
        state.store.hourly_series(HOURS, SystemTime::now()),
        state.store.outbox_depth(),
    );
    let (series, (depth, oldest)) = match (series, outbox) {
        (Ok(s), Ok(o)) => (s, o),
        (Err(e), _) | (_, Err(e)) => return layout::failure(&ApiError::from(e)),
    };
    let report = health.1.0;
    let now = crate::store::unix_millis(SystemTime::now());
    let oldest_age = oldest.map(|t| ((now - t).max(0)) / 1000);
    let limits = &state.config.rate_limits;
    let budget = viewer.api_budget;
    let refused = |policy: &str| {
        state
            .metrics
            .rate_limited_total
            .with_label_values(&[policy])
            .get()
    };

    let body = html! {
        section aria-labelledby="health-h" {
            h2 #health-h { "Health: " (layout::badge(overall_name(report.status))) }
            (layout::table("Dependencies", html! {
                table {
                    thead { tr {
                        th scope="col" { "Dependency" } th scope="col" { "Status" }
                        th scope="col" { "Backend" } th scope="col" { "Latency" } th scope="col" { "Problem" }
                    } }
                    tbody {
                        @for (name, check) in &report.checks {
                            tr {
                                th scope="row" { (name) }
                                td { (layout::badge(match check.status { CheckStatus::Healthy => "healthy", CheckStatus::Unhealthy => "unhealthy" })) }
                                td { (check.backend) }
                                td { (format!("{:.1} ms", check.latency_ms)) }
                                td { (check.error.as_deref().unwrap_or("—")) }
                            }
                        }
                    }
                }
            }))
        }
        section.grid aria-labelledby="traffic-h" {
            h2 #traffic-h { "Last " (HOURS) " hours" }
            (hourly_bars("Emails", series.start, &[
                Series { name: "sent", class: "ok", values: &series.sent },
                Series { name: "failed", class: "bad", values: &series.failed },
            ]))
            (hourly_bars("Generations", series.start, &[
                Series { name: "succeeded", class: "ok", values: &series.generated },
                Series { name: "failed", class: "bad", values: &series.generation_failures },
            ]))
        }
        section aria-labelledby="outbox-h" {
            h2 #outbox-h { "Outbox" }
            dl.facts {
                dt { "Waiting to be sent" } dd { (depth) }
                dt { "Oldest waiting for" }
                dd { @match oldest_age { Some(s) => { (humantime::format_duration(std::time::Duration::from_secs(u64::try_from(s).unwrap_or(0)))) }, None => { "—" } } }
            }
            p { a href="/console/emails?status=queued" { "Emails waiting" } " · " a href="/console/emails?status=failed" { "Failed emails" } }
        }
        section aria-labelledby="limits-h" {
            h2 #limits-h { "Rate limits" }
            p { "Your budget right now (per " (viewer.principal.name) "):" }
            (meter(
                &format!("API requests per {} s", budget.policy.period.as_secs()),
                u64::from(budget.policy.limit).saturating_sub(budget.remaining),
                u64::from(budget.policy.limit),
            ))
            (layout::table("Budgets and refusals", html! {
                table {
                    thead { tr { th scope="col" { "Limit" } th scope="col" { "Budget" } th scope="col" { "Refused since this replica started" } } }
                    tbody {
                        @for policy in [limits.api, limits.email, limits.ai] {
                            tr {
                                th scope="row" { (policy.name) }
                                td { (policy.limit) " per " (humantime::format_duration(policy.period)) }
                                td { (refused(policy.name)) }
                            }
                        }
                    }
                }
            }))
        }
    };
    layout::respond(
        StatusCode::OK,
        layout::page(&viewer, "Overview", "Overview", body),
    )
}

fn overall_name(o: crate::health::Overall) -> &'static str {
    match o {
        crate::health::Overall::Healthy => "healthy",
        crate::health::Overall::Degraded => "degraded",
        crate::health::Overall::Unhealthy => "unhealthy",
    }
}
