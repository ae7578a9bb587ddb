//! The audit trail (administrators): who did what and when, filtered by
//! person, action and time, newest first.

use axum::{
    Extension,
    extract::{Query, State},
    http::StatusCode,
    response::Response,
};
use maud::html;
use serde::Deserialize;

use crate::{
    app::AppState,
    console::{guard::Viewer, layout},
    error::ApiError,
    store::AuditQuery,
};

/// Rows per page.
pub const PAGE_SIZE: u32 = 50;

/// The filters, from the query string.
#[derive(Debug, Default, Deserialize)]
pub struct AuditFilters {
    /// A user or key name.
    pub actor: Option<String>,
    /// An action, e.g. `login`.
    pub action: Option<String>,
    /// At or after (datetime-local, UTC).
    pub since: Option<String>,
    /// Before (datetime-local, UTC).
    pub until: Option<String>,
    /// The previous page's last id.
    pub before: Option<String>,
}

/// `GET /console/audit`.
pub async fn page(
    State(state): State<AppState>,
    Extension(viewer): Extension<Viewer>,
    Query(f): Query<AuditFilters>,
) -> Response {
    let query = layout::filter_time("since", &f.since).and_then(|since| {
        Ok(AuditQuery {
            actor: None,
            actor_name: layout::filter_text(&f.actor).map(|a| a.to_lowercase()),
            action: layout::filter_text(&f.action),
            since,
            until: layout::filter_time("until", &f.until)?,
            before: layout::filter_text(&f.before),
            limit: PAGE_SIZE,
        })
    });
    let (entries, error) = match query {
        Ok(q) => match state.store.audit(&q).await {
            Ok(e) => (e, None),
            Err(e) => return layout::failure(&ApiError::from(e)),
        },
        Err(e) => (Vec::new(), Some(e)),
    };
    let next = (entries.len() == PAGE_SIZE as usize)
        .then(|| entries.last().map(|e| e.id.clone()))
        .flatten();
    let link = |before: Option<&str>| {
        format!(
            "/console/audit{}",
            layout::query(&[
                ("actor", f.actor.as_deref()),
                ("action", f.action.as_deref()),
                ("since", f.since.as_deref()),
                ("until", f.until.as_deref()),
                ("before", before),
            ])
        )
    };
    let status = if error.is_some() {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    let body = html! {
        form.filters method="get" action="/console/audit" {
            div {
                label for="actor" { "Who (user or key name)" }
                input #actor name="actor" type="search" value=(f.actor.as_deref().unwrap_or(""));
            }
            div {
                label for="action" { "Action" }
                input #action name="action" type="search" list="actions" value=(f.action.as_deref().unwrap_or(""));
                datalist #actions {
                    @for a in ["login", "login.block", "logout", "email.send", "email.retry", "ai.generate", "api_key.create", "api_key.revoke", "api_key.budget", "user.create", "user.budget", "user.disable", "user.enable", "user.password_reset", "config.change"] {
                        option value=(a) {}
                    }
                }
            }
            div {
                label for="since" { "From (UTC)" }
                input #since name="since" type="datetime-local" value=(f.since.as_deref().unwrap_or(""));
            }
            div {
                label for="until" { "Until (UTC)" }
                input #until name="until" type="datetime-local" value=(f.until.as_deref().unwrap_or(""));
            }
            button type="submit" { "Filter" }
        }
        @if let Some(e) = &error { (layout::action_error(e)) }
        (layout::table("Audit trail", html! {
            table {
                thead { tr {
                    th scope="col" { "When" } th scope="col" { "Who" } th scope="col" { "Action" }
                    th scope="col" { "Target" } th scope="col" { "Outcome" } th scope="col" { "From" } th scope="col" { "Detail" }
                } }
                tbody {
                    @for e in &entries {
                        tr {
                            td { (layout::time(e.at)) }
                            td { (e.actor_name.as_deref().unwrap_or(&e.actor)) br; small { (e.actor) } }
                            td { code { (e.action) } }
                            td { (e.target.as_deref().unwrap_or("—")) }
                            td { (layout::badge(&e.outcome)) }
                            td { (e.ip.as_deref().unwrap_or("—")) }
                            td { (e.detail.as_deref().unwrap_or("")) }
                        }
                    }
                }
            }
        }))
        nav.pager aria-label="Pages" {
            @if f.before.is_some() { a href=(link(None)) { "Newest" } }
            @if let Some(id) = &next { a href=(link(Some(id))) { "Older" } }
        }
    };
    layout::respond(
        status,
        layout::page(&viewer, "Audit trail", "Audit trail", body),
    )
}
