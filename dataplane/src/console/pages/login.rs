//! The sign-in page and signing out. Sign-in goes through the API's own
//! `sign_in`, so the brute-force block, the audit trail and the login
//! metrics count the console's attempts like the API's.

use axum::{
    Extension,
    extract::{Query, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Redirect, Response},
};
use maud::{DOCTYPE, html};
use serde::Deserialize;

use crate::{
    app::AppState,
    audit,
    auth::{Principal, csrf::same_token, tokens::hex},
    console::{
        form::{CSRF_FIELD, CsrfForm},
        guard::session_cookie,
        layout,
    },
    error::ApiError,
    middleware::{auth::cookie, client_ip::ClientIp},
    routes::{
        self,
        auth::{SignedIn, session_cookie as session_set_cookie, sign_in},
    },
};

/// The sign-in form's own CSRF cookie (there is no session to derive from).
const LOGIN_CSRF_COOKIE: &str = "sv_login_csrf";

/// What the sign-in page is told by its URL.
#[derive(Debug, Default, Deserialize)]
pub struct LoginParams {
    /// Where to go after signing in (a console path).
    pub next: Option<String>,
    /// The session ended.
    pub expired: Option<String>,
    /// The user signed out.
    pub signed_out: Option<String>,
}

/// The sign-in form as posted.
#[derive(Debug, Deserialize)]
pub struct LoginForm {
    /// The user name.
    #[serde(default)]
    pub username: String,
    /// The password.
    #[serde(default)]
    pub password: String,
    /// Where to go afterwards.
    #[serde(default)]
    pub next: String,
    /// The double-submitted token.
    #[serde(default)]
    pub csrf: String,
}

/// `GET /console/login`.
pub async fn page(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(params): Query<LoginParams>,
) -> Response {
    // Already signed in: straight to where they were going.
    if let Some(token) = session_cookie(&headers, state.auth.config.cookie_secure)
        && let Ok(Some(_)) = state.auth.authenticate(token).await
    {
        return Redirect::to(&safe_next(params.next.as_deref())).into_response();
    }
    let notice = if params.expired.is_some() {
        Some("Your session has ended; sign in again.")
    } else if params.signed_out.is_some() {
        Some("You have signed out.")
    } else {
        None
    };
    form_page(
        &state,
        StatusCode::OK,
        "",
        params.next.as_deref().unwrap_or(""),
        notice,
        None,
    )
}

/// `POST /console/login`.
pub async fn submit(
    State(state): State<AppState>,
    Extension(ClientIp(ip)): Extension<ClientIp>,
    audit: audit::Context,
    headers: HeaderMap,
    axum::Form(form): axum::Form<LoginForm>,
) -> Response {
    let expected = cookie(&headers, LOGIN_CSRF_COOKIE).unwrap_or("");
    if !same_token(&form.csrf, expected) {
        return form_page(
            &state,
            StatusCode::FORBIDDEN,
            &form.username,
            &form.next,
            None,
            Some("The form had expired; please sign in again.".to_owned()),
        );
    }
    match sign_in(&state, ip, &audit, &form.username, &form.password).await {
        Ok(SignedIn { session, .. }) => {
            let mut res = Redirect::to(&safe_next(Some(&form.next))).into_response();
            let headers = res.headers_mut();
            headers.append(
                header::SET_COOKIE,
                session_set_cookie(
                    &session.token,
                    state.auth.config.session_ttl,
                    state.auth.config.cookie_secure,
                ),
            );
            headers.append(header::SET_COOKIE, login_csrf_cookie("", 0, &state));
            res
        }
        Err(error) => {
            let (status, message) = match &error {
                ApiError::Unauthorized(_) => (
                    StatusCode::UNAUTHORIZED,
                    "Wrong user name or password.".to_owned(),
                ),
                ApiError::TooManyRequests {
                    retry_after_secs, ..
                } => (
                    StatusCode::TOO_MANY_REQUESTS,
                    format!(
                        "Too many failed sign-ins from this address or for this account; \
                         try again in {retry_after_secs} s."
                    ),
                ),
                ApiError::Internal(_) => (
                    error.status(),
                    "Something went wrong on our side; try again.".to_owned(),
                ),
                other => (other.status(), format!("{other}.")),
            };
            form_page(
                &state,
                status,
                &form.username,
                &form.next,
                None,
                Some(message),
            )
        }
    }
}

/// Nothing to read from a sign-out form but its CSRF token.
#[derive(Debug, Deserialize)]
pub struct Empty {}

/// `POST /console/logout`.
pub async fn logout(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    audit: audit::Context,
    CsrfForm(Empty {}): CsrfForm<Empty>,
) -> Response {
    // The API's own logout ends the session and clears the cookie; the
    // console only turns its answer into a way back to the sign-in page.
    match routes::auth::logout(State(state), Extension(principal), audit).await {
        Ok(ended) => {
            let mut res = Redirect::to("/console/login?signed_out=1").into_response();
            if let Some(cookie) = ended.headers().get(header::SET_COOKIE) {
                res.headers_mut().insert(header::SET_COOKIE, cookie.clone());
            }
            res
        }
        Err(e) => layout::failure(&e),
    }
}

/// The sign-in form, with a fresh double-submit token.
fn form_page(
    state: &AppState,
    status: StatusCode,
    username: &str,
    next: &str,
    notice: Option<&str>,
    error: Option<String>,
) -> Response {
    let mut token = [0u8; 32];
    if getrandom::fill(&mut token).is_err() {
        return layout::failure(&ApiError::Internal("no randomness for a CSRF token".into()));
    }
    let token = hex(&token);
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            (layout::head("Sign in"))
            body.signin {
                main #main {
                    h1 { "Sign in to SecureVault" }
                    @if let Some(notice) = notice { p.notice role="status" { (notice) } }
                    @if let Some(error) = &error { p.error role="alert" { (error) } }
                    form method="post" action="/console/login" {
                        input type="hidden" name=(CSRF_FIELD) value=(token);
                        input type="hidden" name="next" value=(next);
                        label for="username" { "User name" }
                        input #username name="username" type="text" autocomplete="username"
                            autocapitalize="none" spellcheck="false" required value=(username)
                            autofocus[username.is_empty()];
                        label for="password" { "Password" }
                        input #password name="password" type="password"
                            autocomplete="current-password" required
                            autofocus[!username.is_empty()];
                        button type="submit" { "Sign in" }
                    }
                }
            }
        }
    };
    let mut res = layout::respond(status, markup);
    res.headers_mut()
        .append(header::SET_COOKIE, login_csrf_cookie(&token, 3600, state));
    res
}

fn login_csrf_cookie(token: &str, max_age: u64, state: &AppState) -> HeaderValue {
    let secure = if state.auth.config.cookie_secure {
        "; Secure"
    } else {
        ""
    };
    HeaderValue::from_str(&format!(
        "{LOGIN_CSRF_COOKIE}={token}; Path=/console/login; Max-Age={max_age}; HttpOnly; SameSite=Strict{secure}"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// `next` if it is a console path, so the sign-in page cannot be used to
/// send people to another site.
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n) if n.starts_with("/console") && !n.starts_with("/console/login") => n.to_owned(),
        _ => "/console".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_console_paths_are_followed_after_sign_in() {
        assert_eq!(
            safe_next(Some("/console/emails?status=failed")),
            "/console/emails?status=failed"
        );
        for bad in [
            "https://evil.example/",
            "//evil.example",
            "/api/keys",
            "/console/login?next=x",
        ] {
            assert_eq!(safe_next(Some(bad)), "/console", "{bad}");
        }
        assert_eq!(safe_next(None), "/console");
    }
}
