//! `POST /api/auth/login`, `POST /api/auth/logout`, `GET /api/auth/me`.

use std::time::Duration;

use axum::{
    Extension, Json,
    extract::State,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{
    app::AppState,
    audit::{self, Outcome},
    auth::{
        Credential, Principal, Scope,
        brute_force::{self, Gate},
        sessions,
    },
    error::{ApiError, ErrorBody},
    extract::ApiJson,
    middleware::{auth::session_cookie_name, client_ip::ClientIp},
    routes::rfc3339,
    store::unix_millis,
};

/// Longest password accepted at login: argon2 would hash a megabyte just as
/// willingly, at a cost we should not offer to strangers.
const MAX_PASSWORD_LEN: usize = 1024;

/// A login.
#[derive(Debug, Deserialize, ToSchema)]
pub struct LoginRequest {
    /// The user name (case does not matter).
    pub username: String,
    /// The password.
    pub password: String,
}

/// A session just opened.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct LoginResponse {
    /// The session token: also set as the session cookie
    /// (`__Host-sv_session`, or `sv_session` when it is not `Secure`); send
    /// it as `Authorization: Bearer <token>` from programs.
    pub token: String,
    /// When the session ends (RFC 3339).
    pub expires_at: String,
    /// Who signed in.
    pub user: Me,
}

/// The caller.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Me {
    /// `user:<id>` or `key:<id>`.
    pub id: String,
    /// The user name or key name.
    pub name: String,
    /// `session` or `api_key`.
    pub authenticated_by: String,
    /// What the caller may do.
    pub scopes: Vec<Scope>,
    /// When the session ends (RFC 3339); absent for API keys.
    pub session_expires_at: Option<String>,
}

impl From<&Principal> for Me {
    fn from(p: &Principal) -> Self {
        let (by, expires) = match &p.via {
            Credential::Session { expires_at, .. } => ("session", Some(rfc3339(*expires_at))),
            Credential::ApiKey { .. } => ("api_key", None),
        };
        Self {
            id: p.id.clone(),
            name: p.name.clone(),
            authenticated_by: by.into(),
            scopes: p.scopes.clone(),
            session_expires_at: expires,
        }
    }
}

/// Signs in with a user name and password. Five failures within five
/// minutes from one address, or for one account, block further logins from
/// it for five minutes (429), even with the right password.
#[utoipa::path(
    post,
    path = "/api/auth/login",
    tag = "auth",
    request_body = LoginRequest,
    responses(
        (status = 200, description = "Signed in; the token is also set as a cookie", body = LoginResponse),
        (status = 401, description = "Wrong user name or password", body = ErrorBody),
        (status = 429, description = "Too many failures: blocked until Retry-After", body = ErrorBody),
    )
)]
pub async fn login(
    State(state): State<AppState>,
    Extension(ClientIp(ip)): Extension<ClientIp>,
    audit: audit::Context,
    ApiJson(request): ApiJson<LoginRequest>,
) -> Result<Response, ApiError> {
    let SignedIn { session, principal } =
        sign_in(&state, ip, &audit, &request.username, &request.password).await?;
    let cookie = session_cookie(
        &session.token,
        state.auth.config.session_ttl,
        state.auth.config.cookie_secure,
    );
    let body = LoginResponse {
        token: session.token,
        expires_at: rfc3339(unix_millis(session.expires_at)),
        user: Me::from(&principal),
    };
    let mut response = (StatusCode::OK, Json(body)).into_response();
    response.headers_mut().insert(header::SET_COOKIE, cookie);
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// A session just opened, and who it is for.
pub struct SignedIn {
    /// The session (its token goes into the cookie).
    pub session: sessions::NewSession,
    /// The user, as a principal.
    pub principal: Principal,
}

/// Checks a user name and password and opens a session: the API's login
/// and the console's sign-in form both come here, so the brute-force block,
/// the audit trail and the metrics apply to both alike.
pub async fn sign_in(
    state: &AppState,
    ip: Option<std::net::IpAddr>,
    audit: &audit::Context,
    username: &str,
    password: &str,
) -> Result<SignedIn, ApiError> {
    let username = username.trim().to_lowercase();
    if username.is_empty() || username.len() > 64 {
        return Err(ApiError::Validation {
            field: "username".into(),
            message: "expected a user name of 1 to 64 characters".into(),
        });
    }
    if password.len() > MAX_PASSWORD_LEN {
        return Err(ApiError::Validation {
            field: "password".into(),
            message: format!("a password is at most {MAX_PASSWORD_LEN} bytes"),
        });
    }
    let auth = &state.auth;
    let metrics = &state.metrics.auth_logins_total;

    // The attempt takes its place in the counts before the password is
    // verified, so that logins sent at once cannot all be verified before
    // the first failure is counted.
    let attempt = match brute_force::admit(&auth.limiter, &auth.config, ip, &username).await? {
        Gate::Go(attempt) => attempt,
        Gate::Refused { wait, blocked } => {
            // Counted, not audited: the block was audited once, when it
            // started; a row per refused attempt would let anyone grow the
            // store.
            metrics.with_label_values(&["blocked"]).inc();
            return Err(refused(wait, blocked));
        }
    };
    let user = match verify(state, &username, password).await {
        Ok(user) => user,
        Err(e) => {
            // Not judged: the attempt gives its place back.
            if let Err(unavailable) =
                brute_force::abandoned(&auth.limiter, &auth.config, attempt).await
            {
                tracing::warn!(error = %unavailable, "could not release a login attempt");
            }
            return Err(e);
        }
    };
    let Some(user) = user else {
        let block = brute_force::failed(&auth.limiter, &auth.config, attempt).await?;
        metrics.with_label_values(&["failure"]).inc();
        audit
            .record(
                &state.store,
                "login",
                Some(&username),
                Outcome::Failure,
                Some("wrong user name or password".into()),
            )
            .await;
        if let Some(block) = block {
            tracing::warn!(
                block_seconds = block.as_secs(),
                "login blocked after repeated failures"
            );
            audit
                .record(
                    &state.store,
                    "login.block",
                    Some(&username),
                    Outcome::Success,
                    Some(format!(
                        "{} failures within {} s: blocked for {} s",
                        auth.config.login_max_failures,
                        auth.config.login_window.as_secs(),
                        block.as_secs()
                    )),
                )
                .await;
        }
        return Err(ApiError::Unauthorized("wrong user name or password".into()));
    };
    // Said only to whoever knows the password: it tells them nothing new.
    if user.disabled_at.is_some() {
        brute_force::abandoned(&auth.limiter, &auth.config, attempt).await?;
        metrics.with_label_values(&["disabled"]).inc();
        audit
            .record(
                &state.store,
                "login",
                Some(&username),
                Outcome::Denied,
                Some("the account is disabled".into()),
            )
            .await;
        return Err(ApiError::Forbidden(
            "this account is disabled; an administrator can enable it again".into(),
        ));
    }

    brute_force::succeeded(&auth.limiter, &auth.config, attempt).await?;
    let session = sessions::open(&state.store, &user, auth.config.session_ttl).await?;
    let principal = sessions::principal(
        &user,
        Credential::Session {
            token_hash: crate::auth::tokens::digest(&session.token),
            expires_at: unix_millis(session.expires_at),
        },
    );
    tracing::Span::current().record("user_id", principal.id.as_str());
    metrics.with_label_values(&["success"]).inc();
    audit
        .as_principal(&principal)
        .record(
            &state.store,
            "login",
            Some(&username),
            Outcome::Success,
            None,
        )
        .await;
    tracing::info!("signed in");
    Ok(SignedIn { session, principal })
}

/// Ends the caller's session and clears the cookie.
#[utoipa::path(
    post,
    path = "/api/auth/logout",
    tag = "auth",
    responses(
        (status = 204, description = "Signed out"),
        (status = 400, description = "The caller uses an API key, not a session", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
    )
)]
pub async fn logout(
    State(state): State<AppState>,
    Extension(caller): Extension<Principal>,
    audit: audit::Context,
) -> Result<Response, ApiError> {
    let Credential::Session { token_hash, .. } = &caller.via else {
        return Err(ApiError::BadRequest {
            message: "an API key has no session to end; an administrator revokes keys with DELETE /api/keys/{id}".into(),
            field: None,
        });
    };
    sessions::close(&state.store, token_hash).await?;
    state.auth.cache.forget_token(token_hash);
    audit
        .record(&state.store, "logout", None, Outcome::Success, None)
        .await;
    let cookie = session_cookie("", Duration::ZERO, state.auth.config.cookie_secure);
    let mut response = StatusCode::NO_CONTENT.into_response();
    response.headers_mut().insert(header::SET_COOKIE, cookie);
    Ok(response)
}

/// Who the caller is and what it may do.
#[utoipa::path(
    get,
    path = "/api/auth/me",
    tag = "auth",
    responses(
        (status = 200, description = "The caller", body = Me),
        (status = 401, description = "Not signed in", body = ErrorBody),
    )
)]
pub async fn me(Extension(caller): Extension<Principal>) -> Json<Me> {
    Json(Me::from(&caller))
}

/// The user `username` if `password` is theirs; `None` for a wrong name or
/// password (verified alike, so that timing does not tell them apart).
async fn verify(
    state: &AppState,
    username: &str,
    password: &str,
) -> Result<Option<crate::store::User>, ApiError> {
    let user = state.store.user_by_name(username).await?;
    let matches = state
        .auth
        .passwords
        .verify(password, user.as_ref().map(|u| u.password_hash.as_str()))
        .await?;
    state
        .metrics
        .auth_password_verifications_total
        .with_label_values(&[if matches { "match" } else { "mismatch" }])
        .inc();
    Ok(user.filter(|_| matches))
}

/// The 429 of a login refused before its password was verified: blocked,
/// or the count full of attempts still in flight.
fn refused(wait: Duration, blocked: bool) -> ApiError {
    let secs = (wait.as_secs_f64().ceil() as u64).max(1);
    let message = if blocked {
        format!("too many failed logins from this address or for this account; retry in {secs} s")
    } else {
        format!(
            "too many logins in progress from this address or for this account; retry in {secs} s"
        )
    };
    ApiError::TooManyRequests {
        message,
        retry_after_secs: secs,
    }
}

/// The session cookie: script-proof (`HttpOnly`), never sent cross-site
/// (`SameSite=Strict`; a sibling subdomain is same-site, hence the API's
/// `Origin` check in `middleware::csrf`), HTTPS-only unless
/// `SESSION_COOKIE_SECURE=false`, and then named `__Host-sv_session` (which
/// `Path=/` and no `Domain` allow). An empty token with no lifetime clears it.
pub fn session_cookie(token: &str, ttl: Duration, secure: bool) -> HeaderValue {
    let name = session_cookie_name(secure);
    let secure = if secure { "; Secure" } else { "" };
    let cookie = format!(
        "{name}={token}; Path=/; Max-Age={}; HttpOnly; SameSite=Strict{secure}",
        ttl.as_secs()
    );
    HeaderValue::from_str(&cookie).unwrap_or_else(|_| HeaderValue::from_static(""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cookie_is_http_only_strict_and_secure_when_asked() {
        let c = session_cookie("svs_x", Duration::from_secs(3600), true);
        assert_eq!(
            c,
            "__Host-sv_session=svs_x; Path=/; Max-Age=3600; HttpOnly; SameSite=Strict; Secure"
        );
        let local = session_cookie("svs_x", Duration::from_secs(60), false);
        assert!(!local.to_str().unwrap().contains("Secure"));
        assert!(local.to_str().unwrap().starts_with("sv_session=svs_x;"));
    }

    #[test]
    fn a_block_rounds_its_wait_up() {
        let ApiError::TooManyRequests {
            retry_after_secs, ..
        } = refused(Duration::from_millis(1500), true)
        else {
            panic!("not a 429");
        };
        assert_eq!(retry_after_secs, 2);
    }
}
