//! The frame every console page shares (head, skip link, navigation, sign
//! out) and the small pieces pages are made of.

use axum::{
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use maud::{DOCTYPE, Markup, html};

use super::{assets, form::CSRF_FIELD, guard::Viewer};
use crate::{error::ApiError, middleware::auth::Access, routes::rfc3339};

/// The pages of the navigation: label, path, what they need.
const NAV: [(&str, &str, Access); 8] = [
    ("Overview", "/console", Access::SignedIn),
    ("Emails", "/console/emails", Access::EmailRead),
    ("Generations", "/console/generations", Access::AiRead),
    ("Usage", "/console/usage", Access::AiRead),
    ("API keys", "/console/keys", Access::Admin),
    ("Users", "/console/users", Access::Admin),
    ("Suppressions", "/console/suppressions", Access::Admin),
    ("Audit trail", "/console/audit", Access::Admin),
];

/// A whole page: `title` is the `h1` and the tab's title; `current` the
/// navigation entry to mark.
pub fn page(viewer: &Viewer, title: &str, current: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body {
                a.skip href="#main" { "Skip to the content" }
                header.top {
                    a.brand href="/console" { "SecureVault" }
                    nav aria-label="Console" {
                        ul {
                            @for (label, path, access) in NAV {
                                @if viewer.may(access) {
                                    li {
                                        @if label == current {
                                            a href=(path) aria-current="page" { (label) }
                                        } @else {
                                            a href=(path) { (label) }
                                        }
                                    }
                                }
                            }
                        }
                    }
                    form.signout method="post" action="/console/logout" {
                        (csrf(viewer))
                        span.who { (viewer.principal.name) }
                        button type="submit" { "Sign out" }
                    }
                }
                main #main {
                    h1 { (title) }
                    (body)
                }
            }
        }
    }
}

/// The page's `<head>`: stylesheet and script by their hashed names.
pub fn head(title: &str) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            title { (title) " · SecureVault" }
            link rel="icon" type="image/svg+xml" href=(assets::ICON.path());
            link rel="stylesheet" href=(assets::CSS.path());
            script src=(assets::JS.path()) defer {}
        }
    }
}

/// The hidden CSRF field of a form.
pub fn csrf(viewer: &Viewer) -> Markup {
    html! { input type="hidden" name=(CSRF_FIELD) value=(viewer.csrf); }
}

/// A rendered page as a response: never cached, it is someone's data.
pub fn respond(status: StatusCode, markup: Markup) -> Response {
    let mut res = (status, markup).into_response();
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

/// A page that only says what went wrong.
pub fn error_page(viewer: &Viewer, status: StatusCode, title: &str, message: &str) -> Response {
    respond(
        status,
        page(
            viewer,
            title,
            "",
            html! { p role="alert" { (message) } p { a href="/console" { "Back to the overview" } } },
        ),
    )
}

/// An error before anyone is known (the store failed during sign-in…):
/// a bare page with the API's message and status.
pub fn failure(error: &ApiError) -> Response {
    let message = match error {
        ApiError::Internal(_) => "Something went wrong on our side; try again.".to_owned(),
        other => other.to_string(),
    };
    respond(
        error.status(),
        html! {
            (DOCTYPE)
            html lang="en" {
                (head("Error"))
                body { main #main { h1 { "Error" } p role="alert" { (message) } } }
            }
        },
    )
}

/// A failed action on a page: the API's message, naming the field at fault.
pub fn action_error(error: &ApiError) -> Markup {
    let text = match error {
        ApiError::Validation { field, message } if !field.is_empty() => {
            format!("{}: {message}", field_label(field))
        }
        ApiError::Internal(_) => "Something went wrong on our side; try again.".to_owned(),
        other => other.to_string(),
    };
    html! { p.error role="alert" { (text) } }
}

/// The label a form shows for an API field.
fn field_label(field: &str) -> String {
    let mut chars = field.chars();
    match chars.next() {
        Some(first) => first
            .to_uppercase()
            .chain(chars)
            .collect::<String>()
            .replace('_', " "),
        None => String::new(),
    }
}

/// A table that scrolls sideways on a narrow screen, focusable so a
/// keyboard can scroll it too.
pub fn table(label: &str, table: Markup) -> Markup {
    html! {
        div.table-wrap role="region" aria-label=(label) tabindex="0" { (table) }
    }
}

/// A status as a badge; the word itself carries the meaning, the colour
/// only repeats it.
pub fn badge(status: &str) -> Markup {
    html! { span class={ "badge " (status) } { (status) } }
}

/// A store time (Unix ms), as RFC 3339 in UTC.
pub fn time(millis: i64) -> Markup {
    time_text(&rfc3339(millis))
}

/// An RFC 3339 time (as the API's answers give it), to the second, in UTC.
pub fn time_text(text: &str) -> Markup {
    let shown: String = text.replace('T', " ").chars().take(19).collect();
    html! { time datetime=(text) { (shown) " UTC" } }
}

/// An optional store time.
pub fn maybe_time(millis: Option<i64>) -> Markup {
    match millis {
        Some(m) => time(m),
        None => html! { "—" },
    }
}

/// `text` percent-encoded for a query string.
pub fn encode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

/// A query string of the non-empty `pairs` (`?a=1&b=2`, or nothing).
pub fn query(pairs: &[(&str, Option<&str>)]) -> String {
    let parts: Vec<String> = pairs
        .iter()
        .filter_map(|(k, v)| {
            v.filter(|v| !v.is_empty())
                .map(|v| format!("{k}={}", encode(v)))
        })
        .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!("?{}", parts.join("&"))
    }
}

/// A datetime-local input's value (`2026-12-01T10:30`, read as UTC) as
/// Unix ms; `Err` names what is wrong.
pub fn parse_time(text: &str) -> Result<i64, String> {
    let full = if text.len() == 16 {
        format!("{text}:00Z")
    } else {
        format!("{text}Z")
    };
    humantime::parse_rfc3339(&full)
        .map(crate::store::unix_millis)
        .map_err(|_| format!("{text:?} is not a date and time like 2026-12-01T10:30"))
}

/// A filter's text, trimmed; `None` when empty.
pub fn filter_text(value: &Option<String>) -> Option<String> {
    value
        .as_deref()
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
}

/// A filter's time (datetime-local, UTC) as Unix ms; the error names `field`.
pub fn filter_time(field: &str, value: &Option<String>) -> Result<Option<i64>, ApiError> {
    filter_text(value)
        .map(|t| {
            parse_time(&t).map_err(|message| ApiError::Validation {
                field: field.into(),
                message,
            })
        })
        .transpose()
}

/// Unix ms as a datetime-local value, to refill a filter.
pub fn time_input(millis: i64) -> String {
    rfc3339(millis).chars().take(16).collect()
}

/// Text shortened to `max` characters, for a table cell.
pub fn short(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_owned()
    } else {
        let cut: String = text.chars().take(max.saturating_sub(1)).collect();
        format!("{cut}…")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_round_trip_through_the_filter_inputs() {
        let ms = parse_time("2026-12-01T10:30").unwrap();
        assert_eq!(time_input(ms), "2026-12-01T10:30");
        assert!(parse_time("yesterday").unwrap_err().contains("yesterday"));
    }

    #[test]
    fn queries_keep_only_what_is_set() {
        assert_eq!(query(&[("a", None), ("b", Some(""))]), "");
        assert_eq!(
            query(&[("status", Some("sent")), ("recipient", Some("a b&c"))]),
            "?status=sent&recipient=a+b%26c"
        );
        assert_eq!(short("abcdef", 4), "abc…");
        assert_eq!(field_label("max_tokens"), "Max tokens");
    }
}
