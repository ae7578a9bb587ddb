//! The console's guard: the API guard's rules, answered for people. A
//! visitor without a live session is sent to the sign-in page (and back
//! afterwards); one without the page's scope gets a 403 page; every page
//! spends the caller's `api` budget like any API request.

use axum::{
    extract::{Request, State},
    http::{HeaderValue, Method, StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Redirect, Response},
};

use super::layout;
use crate::{
    app::AppState,
    auth::{Credential, Principal, csrf},
    middleware::auth::{Access, cookie, session_cookie_name, spend},
    ratelimit::Decision,
};

/// The guard's state: the app and what the pages behind it require.
#[derive(Clone)]
pub struct Guard {
    /// The application.
    pub state: AppState,
    /// What the pages behind this guard require.
    pub access: Access,
}

/// Who is looking at a page: set by the guard for every console handler.
#[derive(Debug, Clone)]
pub struct Viewer {
    /// The signed-in user.
    pub principal: Principal,
    /// The CSRF token every form of this session carries.
    pub csrf: String,
    /// This request's spend of the `api` budget, for the overview.
    pub api_budget: Decision,
}

impl Viewer {
    /// Whether the viewer may open pages that need `access`.
    pub fn may(&self, access: Access) -> bool {
        access.scope().is_none_or(|s| self.principal.has(s))
    }
}

/// Authenticates (session cookie only), authorises and rate-limits.
pub async fn require(State(guard): State<Guard>, mut req: Request, next: Next) -> Response {
    let state = &guard.state;
    let cookie = session_cookie(req.headers(), state.auth.config.cookie_secure);
    let principal = match cookie {
        Some(token) => match state.auth.authenticate(token).await {
            Ok(p) => p.filter(|p| matches!(p.via, Credential::Session { .. })),
            Err(e) => return layout::failure(&crate::error::ApiError::from(e)),
        },
        None => None,
    };
    let Some(principal) = principal else {
        return to_sign_in(&req, cookie.is_some());
    };
    tracing::Span::current().record("user_id", principal.id.as_str());

    let decision = match spend(&state.limiter, &principal.id, state.config.rate_limits.api).await {
        Ok(d) => d,
        Err(refused) => return layout::failure(&refused),
    };
    let viewer = Viewer {
        csrf: csrf::token(&principal.via),
        principal,
        api_budget: decision,
    };
    if !viewer.may(guard.access) {
        let scope = guard.access.scope().map_or("", |s| s.as_str());
        return layout::error_page(
            &viewer,
            StatusCode::FORBIDDEN,
            "Not allowed",
            &format!(
                "This page needs the `{scope}` scope, which your account does not have. \
                 An administrator can change your role."
            ),
        );
    }
    req.extensions_mut().insert(viewer.principal.clone());
    req.extensions_mut().insert(viewer);
    next.run(req).await
}

/// The session token from the cookie (named by whether it is `Secure`); the
/// console never reads the `Authorization` header (a browser does not send
/// one).
pub fn session_cookie(headers: &axum::http::HeaderMap, secure: bool) -> Option<&str> {
    cookie(headers, session_cookie_name(secure))
}

/// To the sign-in page, coming back to this page afterwards (for a GET; a
/// form posted with an ended session cannot be replayed, so it goes back to
/// the overview).
fn to_sign_in(req: &Request, had_cookie: bool) -> Response {
    let mut target = String::from("/console/login");
    let mut params = Vec::new();
    if req.method() == Method::GET {
        let path = req
            .uri()
            .path_and_query()
            .map_or("/console", |p| p.as_str());
        params.push(format!("next={}", layout::encode(path)));
    }
    if had_cookie {
        params.push("expired=1".to_owned());
    }
    if !params.is_empty() {
        target.push('?');
        target.push_str(&params.join("&"));
    }
    let mut res = Redirect::to(&target).into_response();
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}
