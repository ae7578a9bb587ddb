//! Emails: the outbox as a filtered, paged list; one email with every
//! delivery attempt; retrying a failed one; sending a test email.
//!
//! Administrators see every email; members see the emails they sent. The
//! body of an email is never shown (it may hold a recipient's secret, a
//! password-reset link for one), only its envelope and its delivery.

use axum::{
    Extension,
    extract::{Path, Query, State},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Redirect, Response},
};
use maud::{Markup, html};
use serde::Deserialize;

use crate::{
    app::AppState,
    audit,
    console::{form::CsrfForm, guard::Viewer, layout},
    email::validate::{OneOrMany, SendEmailRequest},
    error::ApiError,
    middleware::auth::spend,
    routes::email::{SendOptions, retry_email, send_email},
    store::{Cursor, EmailQuery, StoredEmail},
};

/// Rows per page.
pub const PAGE_SIZE: u32 = 50;

const STATUSES: [&str; 4] = ["queued", "sending", "sent", "failed"];

/// The list's filters and position, from the query string.
#[derive(Debug, Default, Deserialize)]
pub struct ListParams {
    /// `queued`, `sending`, `sent` or `failed`.
    pub status: Option<String>,
    /// Part of a recipient's address.
    pub recipient: Option<String>,
    /// Created at or after (datetime-local, UTC).
    pub since: Option<String>,
    /// Created before (datetime-local, UTC).
    pub until: Option<String>,
    /// The cursor of the previous page's last row.
    pub before: Option<String>,
}

/// Turns the filters into a store query, or says which field is wrong.
fn email_query(viewer: &Viewer, p: &ListParams) -> Result<EmailQuery, ApiError> {
    let invalid = |field: &str, message: String| ApiError::Validation {
        field: field.into(),
        message,
    };
    let status = layout::filter_text(&p.status);
    if let Some(s) = &status
        && !STATUSES.contains(&s.as_str())
    {
        return Err(invalid(
            "status",
            format!("{s:?} is not one of {}", STATUSES.join(", ")),
        ));
    }
    let before = match layout::filter_text(&p.before) {
        Some(c) => Some(
            Cursor::decode(&c).ok_or_else(|| invalid("before", "not a page position".into()))?,
        ),
        None => None,
    };
    Ok(EmailQuery {
        status,
        recipient: layout::filter_text(&p.recipient),
        // Members see what they sent; administrators everything.
        created_by: viewer.principal.author_filter().map(str::to_owned),
        since: layout::filter_time("since", &p.since)?,
        until: layout::filter_time("until", &p.until)?,
        before,
        limit: PAGE_SIZE,
    })
}

/// `GET /console/emails`.
pub async fn list(
    State(state): State<AppState>,
    Extension(viewer): Extension<Viewer>,
    Query(params): Query<ListParams>,
) -> Response {
    let (emails, error) = match email_query(&viewer, &params) {
        Ok(q) => match state.store.emails(&q).await {
            Ok(rows) => (rows, None),
            Err(e) => return layout::failure(&ApiError::from(e)),
        },
        Err(e) => (Vec::new(), Some(e)),
    };
    let filters = |before: Option<&str>| {
        layout::query(&[
            ("status", params.status.as_deref()),
            ("recipient", params.recipient.as_deref()),
            ("since", params.since.as_deref()),
            ("until", params.until.as_deref()),
            ("before", before),
        ])
    };
    let next = (emails.len() == PAGE_SIZE as usize)
        .then(|| emails.last())
        .flatten()
        .map(|e| {
            Cursor {
                created_at: e.created_at,
                id: e.id.clone(),
            }
            .encode()
        });
    let status = if error.is_some() {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    let body = html! {
        @if viewer.may(crate::middleware::auth::Access::EmailSend) {
            p { a.button href="/console/emails/test" { "Send a test email" } }
        }
        form.filters method="get" action="/console/emails" {
            div {
                label for="status" { "Status" }
                select #status name="status" {
                    option value="" { "Any" }
                    @for s in STATUSES {
                        option value=(s) selected[params.status.as_deref() == Some(s)] { (s) }
                    }
                }
            }
            div {
                label for="recipient" { "Recipient" }
                input #recipient name="recipient" type="search" value=(params.recipient.as_deref().unwrap_or(""));
            }
            div {
                label for="since" { "From (UTC)" }
                input #since name="since" type="datetime-local" value=(params.since.as_deref().unwrap_or(""));
            }
            div {
                label for="until" { "Until (UTC)" }
                input #until name="until" type="datetime-local" value=(params.until.as_deref().unwrap_or(""));
            }
            button type="submit" { "Filter" }
        }
        @if let Some(e) = &error { (layout::action_error(e)) }
        (layout::table("Emails", html! {
            table {
                caption { (emails.len()) " email(s)" @if params.before.is_some() { ", older page" } }
                thead { tr {
                    th scope="col" { "Created" } th scope="col" { "Status" } th scope="col" { "To" }
                    th scope="col" { "Subject" } th scope="col" { "Attempts" }
                } }
                tbody {
                    @for e in &emails {
                        tr {
                            td { (layout::time(e.created_at)) }
                            td { (layout::badge(&e.status)) }
                            td { (layout::short(&e.recipients.to.join(", "), 60)) }
                            td { a href={ "/console/emails/" (e.id) } { (subject(e)) } }
                            td { (e.attempts) }
                        }
                    }
                }
            }
        }))
        nav.pager aria-label="Pages" {
            @if params.before.is_some() { a href={ "/console/emails" (filters(None)) } { "Newest" } }
            @if let Some(cursor) = &next { a href={ "/console/emails" (filters(Some(cursor))) } { "Older" } }
        }
    };
    layout::respond(status, layout::page(&viewer, "Emails", "Emails", body))
}

fn subject(e: &StoredEmail) -> String {
    if e.subject.trim().is_empty() {
        "(no subject)".to_owned()
    } else {
        layout::short(&e.subject, 80)
    }
}

/// The email `id` if the viewer may see it.
async fn visible(state: &AppState, viewer: &Viewer, id: &str) -> Result<StoredEmail, Response> {
    match state.store.email(id).await {
        Ok(Some(e)) if viewer.principal.may_access(e.created_by.as_deref()) => Ok(e),
        Ok(_) => Err(layout::error_page(
            viewer,
            StatusCode::NOT_FOUND,
            "No such email",
            "There is no email with this id, or it is not one of yours.",
        )),
        Err(e) => Err(layout::failure(&ApiError::from(e))),
    }
}

/// `GET /console/emails/{id}`.
pub async fn detail(
    State(state): State<AppState>,
    Extension(viewer): Extension<Viewer>,
    Path(id): Path<String>,
) -> Response {
    match visible(&state, &viewer, &id).await {
        Ok(email) => {
            let author = author(&state, &email).await;
            layout::respond(StatusCode::OK, detail_page(&viewer, &email, &author, None))
        }
        Err(res) => res,
    }
}

/// Who sent `e`, as people read it: a user's name, else the principal id.
async fn author(state: &AppState, e: &StoredEmail) -> String {
    let Some(by) = e.created_by.as_deref() else {
        return "—".to_owned();
    };
    match by.strip_prefix("user:") {
        Some(id) => match state.store.user_by_id(id).await {
            Ok(Some(user)) => user.username,
            _ => by.to_owned(),
        },
        None => by.to_owned(),
    }
}

fn detail_page(viewer: &Viewer, e: &StoredEmail, author: &str, error: Option<&ApiError>) -> Markup {
    let in_flight = matches!(e.status.as_str(), "queued" | "sending");
    let last_answer = e
        .attempt_log
        .last()
        .map(|a| a.answer.clone())
        .or_else(|| e.last_error.clone())
        .unwrap_or_else(|| "—".to_owned());
    let body = html! {
        @if let Some(err) = error { (layout::action_error(err)) }
        // The script refreshes this part while the email is in flight.
        div #email-state data-refresh=[in_flight.then_some("2000")] aria-live="polite" {
            dl.facts {
                dt { "Status" } dd { span data-field="status" class={ "badge " (e.status) } { (e.status) } }
                dt { "Subject" } dd { (subject(e)) }
                dt { "To" } dd { (e.recipients.to.join(", ")) }
                @if !e.recipients.cc.is_empty() { dt { "Cc" } dd { (e.recipients.cc.join(", ")) } }
                @if !e.recipients.bcc.is_empty() { dt { "Bcc" } dd { (e.recipients.bcc.len()) " hidden recipient(s)" } }
                dt { "Created" } dd { (layout::time(e.created_at)) }
                dt { "Updated" } dd { (layout::time(e.updated_at)) }
                dt { "Sent" } dd { (layout::maybe_time(e.sent_at)) }
                @if e.status == "queued" { dt { "Next attempt" } dd { (layout::time(e.next_attempt_at)) } }
                dt { "Attempts" } dd { (e.attempts) }
                dt { "Last SMTP answer" } dd data-field="smtp-answer" { (last_answer) }
                dt { "Sent by" } dd { (author) }
                dt { "Id" } dd { code { (e.id) } }
            }
            @if e.status == "failed" && viewer.may(crate::middleware::auth::Access::EmailSend) {
                form method="post" action={ "/console/emails/" (e.id) "/retry" } {
                    (layout::csrf(viewer))
                    button type="submit" { "Retry" }
                }
            }
            h2 { "Delivery attempts" }
            @if e.attempt_log.is_empty() {
                p { "No attempt has finished yet." }
            } @else {
                (layout::table("Delivery attempts", html! {
                    table {
                        thead { tr { th scope="col" { "When" } th scope="col" { "Outcome" } th scope="col" { "SMTP answer" } th scope="col" { "Took" } } }
                        tbody {
                            @for a in e.attempt_log.iter().rev() {
                                tr {
                                    td { (layout::time(a.at)) }
                                    td { (layout::badge(&a.outcome)) }
                                    td { (a.answer) }
                                    td { (a.duration_ms) " ms" }
                                }
                            }
                        }
                    }
                }))
            }
        }
        p { a href="/console/emails" { "All emails" } }
    };
    layout::page(viewer, "Email", "Emails", body)
}

/// `POST /console/emails/{id}/retry`.
pub async fn retry(
    State(state): State<AppState>,
    Extension(viewer): Extension<Viewer>,
    audit: audit::Context,
    Path(id): Path<String>,
    CsrfForm(super::login::Empty {}): CsrfForm<super::login::Empty>,
) -> Response {
    let email = match visible(&state, &viewer, &id).await {
        Ok(e) => e,
        Err(res) => return res,
    };
    match retry_email(
        State(state.clone()),
        Extension(viewer.principal.clone()),
        audit,
        Path(id.clone()),
    )
    .await
    {
        Ok(_) => Redirect::to(&format!("/console/emails/{id}")).into_response(),
        Err(e) => {
            let author = author(&state, &email).await;
            layout::respond(e.status(), detail_page(&viewer, &email, &author, Some(&e)))
        }
    }
}

/// The test email form as posted.
#[derive(Debug, Default, Deserialize)]
pub struct TestEmail {
    /// One address.
    #[serde(default)]
    pub to: String,
    /// Subject line.
    #[serde(default)]
    pub subject: String,
    /// Plain-text body.
    #[serde(default)]
    pub text: String,
}

/// `GET /console/emails/test`.
pub async fn test_form(Extension(viewer): Extension<Viewer>) -> Response {
    let form = TestEmail {
        to: String::new(),
        subject: "SecureVault test email".into(),
        text: "This is a test email sent from the SecureVault console.".into(),
    };
    layout::respond(StatusCode::OK, test_page(&viewer, &form, None))
}

fn test_page(viewer: &Viewer, form: &TestEmail, error: Option<&ApiError>) -> Markup {
    let body = html! {
        p { "The email goes through the outbox like any other: you can follow its delivery on the next page." }
        @if let Some(e) = error { (layout::action_error(e)) }
        form.stack method="post" action="/console/emails/test" {
            (layout::csrf(viewer))
            label for="to" { "To" }
            input #to name="to" type="email" required autocomplete="email" value=(form.to);
            label for="subject" { "Subject" }
            input #subject name="subject" type="text" required value=(form.subject);
            label for="text" { "Message" }
            textarea #text name="text" rows="5" required { (form.text) }
            button type="submit" { "Send test email" }
        }
    };
    layout::page(viewer, "Send a test email", "Emails", body)
}

/// `POST /console/emails/test`: through the send route's own handler, after
/// spending the `email` budget as the API would.
pub async fn send_test(
    State(state): State<AppState>,
    Extension(viewer): Extension<Viewer>,
    audit: audit::Context,
    CsrfForm(form): CsrfForm<TestEmail>,
) -> Response {
    let fail = |e: ApiError| layout::respond(e.status(), test_page(&viewer, &form, Some(&e)));
    let email_budget = state.config.rate_limits.email;
    if let Err(refused) = spend(&state.limiter, &viewer.principal.id, email_budget).await {
        return fail(refused);
    }
    let request = SendEmailRequest {
        to: OneOrMany::One(form.to.trim().to_owned()),
        cc: OneOrMany::default(),
        bcc: OneOrMany::default(),
        subject: form.subject.clone(),
        text: Some(form.text.clone()),
        html: None,
        reply_to: None,
        headers: Default::default(),
    };
    let sent = send_email(
        State(state.clone()),
        Extension(viewer.principal.clone()),
        audit,
        Query(SendOptions { wait: None }),
        HeaderMap::new(),
        crate::extract::ApiJson(request),
    )
    .await;
    match sent {
        Ok(res) => {
            let id = res
                .headers()
                .get(header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|l| l.rsplit('/').next())
                .unwrap_or_default()
                .to_owned();
            Redirect::to(&format!("/console/emails/{id}")).into_response()
        }
        Err(e) => fail(e),
    }
}
