//! The suppression list (administrators): search it, add an address, lift
//! one. Each action goes through the API's own handlers, so it is checked
//! and audited exactly as `POST /api/suppressions` and `DELETE
//! /api/suppressions/{address}` are.

use axum::{
    Extension,
    extract::{Path, Query, State},
    http::StatusCode,
    response::{IntoResponse, Redirect, Response},
};
use maud::html;
use serde::Deserialize;

use crate::{
    app::AppState,
    audit,
    console::{form::CsrfForm, guard::Viewer, layout},
    error::ApiError,
    extract::ApiJson,
    routes::suppressions::{
        NewSuppression, SuppressionPage, SuppressionParams, add as add_suppression,
        lift as lift_suppression, list,
    },
};

/// Rows per page.
const PAGE_SIZE: u32 = 50;

/// The search, from the query string.
#[derive(Debug, Default, Deserialize)]
pub struct Search {
    /// Part of an address.
    pub q: Option<String>,
    /// The previous page's last address.
    pub after: Option<String>,
}

/// The add form.
#[derive(Debug, Default, Deserialize)]
pub struct AddForm {
    /// The address.
    #[serde(default)]
    pub address: String,
    /// `complaint`, `unsubscribe` or `manual`.
    #[serde(default)]
    pub reason: String,
    /// A note.
    #[serde(default)]
    pub detail: String,
}

/// The lift button's form.
#[derive(Debug, Deserialize)]
pub struct LiftForm {
    /// The address to lift.
    pub address: String,
}

/// `GET /console/suppressions`.
pub async fn page(
    State(state): State<AppState>,
    Extension(viewer): Extension<Viewer>,
    Query(search): Query<Search>,
) -> Response {
    render(
        &state,
        &viewer,
        StatusCode::OK,
        &search,
        &AddForm::default(),
        None,
    )
    .await
}

/// `POST /console/suppressions`: adds an address.
pub async fn add(
    State(state): State<AppState>,
    Extension(viewer): Extension<Viewer>,
    audit: audit::Context,
    CsrfForm(form): CsrfForm<AddForm>,
) -> Response {
    let new = NewSuppression {
        address: form.address.trim().to_owned(),
        reason: form.reason.clone(),
        detail: Some(form.detail.trim().to_owned()).filter(|d| !d.is_empty()),
    };
    match add_suppression(State(state.clone()), audit, ApiJson(new)).await {
        Ok(_) => Redirect::to("/console/suppressions").into_response(),
        Err(e) => {
            render(
                &state,
                &viewer,
                e.status(),
                &Search::default(),
                &form,
                Some(e),
            )
            .await
        }
    }
}

/// `POST /console/suppressions/lift`.
pub async fn lift(
    State(state): State<AppState>,
    Extension(viewer): Extension<Viewer>,
    audit: audit::Context,
    CsrfForm(form): CsrfForm<LiftForm>,
) -> Response {
    match lift_suppression(State(state.clone()), audit, Path(form.address)).await {
        Ok(_) => Redirect::to("/console/suppressions").into_response(),
        Err(e) => {
            render(
                &state,
                &viewer,
                e.status(),
                &Search::default(),
                &AddForm::default(),
                Some(e),
            )
            .await
        }
    }
}

async fn render(
    state: &AppState,
    viewer: &Viewer,
    status: StatusCode,
    search: &Search,
    form: &AddForm,
    error: Option<ApiError>,
) -> Response {
    let params = SuppressionParams {
        q: layout::filter_text(&search.q),
        after: layout::filter_text(&search.after),
        limit: Some(PAGE_SIZE),
    };
    let SuppressionPage { entries, next } = match list(State(state.clone()), Query(params)).await {
        Ok(axum::Json(page)) => page,
        Err(e) => return layout::failure(&e),
    };
    let link = |after: Option<&str>| {
        format!(
            "/console/suppressions{}",
            layout::query(&[("q", search.q.as_deref()), ("after", after)])
        )
    };
    let body = html! {
        p { "No email is sent to these addresses. A permanent refusal of a recipient's mailbox by the SMTP server adds it; an application adds complaints and unsubscribes through the API." }
        form.filters method="get" action="/console/suppressions" {
            div {
                label for="q" { "Address contains" }
                input #q name="q" type="search" value=(search.q.as_deref().unwrap_or(""));
            }
            button type="submit" { "Search" }
        }
        @if let Some(e) = &error { (layout::action_error(e)) }
        (layout::table("Suppressed addresses", html! {
            table {
                thead { tr {
                    th scope="col" { "Address" } th scope="col" { "Reason" } th scope="col" { "Since" }
                    th scope="col" { "By" } th scope="col" { "Detail" } th scope="col" { span.visually-hidden { "Action" } }
                } }
                tbody {
                    @for s in &entries {
                        tr {
                            td { (s.address) }
                            td { (layout::badge(&s.reason)) }
                            td { (layout::time_text(&s.created_at)) }
                            td { code { (s.created_by) } }
                            td {
                                (layout::short(s.detail.as_deref().unwrap_or(""), 120))
                                @if let Some(id) = &s.email_id { " " a href={ "/console/emails/" (id) } { "email" } }
                            }
                            td {
                                form method="post" action="/console/suppressions/lift" {
                                    (layout::csrf(viewer))
                                    input type="hidden" name="address" value=(s.address);
                                    button.danger type="submit" aria-label={ "Lift " (s.address) } { "Lift" }
                                }
                            }
                        }
                    }
                }
            }
        }))
        nav.pager aria-label="Pages" {
            @if search.after.is_some() { a href=(link(None)) { "First" } }
            @if let Some(after) = &next { a href=(link(Some(after))) { "Next" } }
        }
        h2 { "Suppress an address" }
        form.stack method="post" action="/console/suppressions" {
            (layout::csrf(viewer))
            label for="address" { "Address" }
            input #address name="address" type="email" required value=(form.address);
            label for="reason" { "Reason" }
            select #reason name="reason" {
                @for r in ["unsubscribe", "complaint", "manual"] {
                    option value=(r) selected[form.reason == r] { (r) }
                }
            }
            label for="detail" { "Note (optional)" }
            input #detail name="detail" type="text" maxlength="500" value=(form.detail);
            button type="submit" { "Suppress" }
        }
    };
    layout::respond(
        status,
        layout::page(viewer, "Suppressions", "Suppressions", body),
    )
}
