//! The guard in front of every route but health, metrics, OpenAPI and login:
//! who is calling (a session or an API key), may they call this route (its
//! scope), and is it within their budget (the rate limits).
//!
//! Credentials come as `Authorization: Bearer <token>` or as the session
//! cookie; a call by the cookie that changes something must also come from
//! our own origin ([`super::csrf`]). Answers: 401 without valid
//! credentials, 403 from another origin or without the scope, 429 over a
//! limit. Every answer that passed the guard carries the IETF
//! `RateLimit-Policy` and `RateLimit` headers of the budgets it spent.

use std::net::SocketAddr;

use axum::{
    extract::{ConnectInfo, Request, State},
    http::{HeaderMap, HeaderValue, header},
    middleware::Next,
    response::{IntoResponse, Response},
};

use crate::{
    app::AppState,
    auth::{Principal, Scope, client_ip, csrf::token as csrf_token},
    error::ApiError,
    middleware::csrf::{self, Arrival, Refusal},
    ratelimit::{Decision, Limiter, Policy},
};

/// The session cookie's name over plain HTTP (`SESSION_COOKIE_SECURE=false`).
pub const SESSION_COOKIE: &str = "sv_session";

/// The session cookie's name when it is `Secure`. A browser keeps a
/// `__Host-` cookie only if it came over HTTPS with `Path=/` and no
/// `Domain`, so no other host (a sibling subdomain) can plant or overwrite
/// one: a session fixed by someone else cannot arrive under this name.
pub const SECURE_SESSION_COOKIE: &str = "__Host-sv_session";

/// The session cookie's name, by whether it is `Secure`. Only this name is
/// read: when it is `Secure`, an unprefixed `sv_session` may have been set by
/// any subdomain, so it is ignored.
pub fn session_cookie_name(secure: bool) -> &'static str {
    if secure {
        SECURE_SESSION_COOKIE
    } else {
        SESSION_COOKIE
    }
}

/// What a group of routes requires. Every guarded request spends the API
/// budget; sending and generating spend their own budget too (reading an
/// email's status or a generation does not).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Any principal.
    SignedIn,
    /// The `email` scope.
    EmailRead,
    /// The `email` scope and the email budget.
    EmailSend,
    /// The `ai` scope.
    AiRead,
    /// The `ai` scope and the AI budget.
    AiGenerate,
    /// The `admin` scope.
    Admin,
    /// The `metrics` scope (administrators have it).
    Metrics,
}

impl Access {
    /// The scope it needs, if any.
    pub fn scope(self) -> Option<Scope> {
        match self {
            Self::SignedIn => None,
            Self::EmailRead | Self::EmailSend => Some(Scope::Email),
            Self::AiRead | Self::AiGenerate => Some(Scope::Ai),
            Self::Admin => Some(Scope::Admin),
            Self::Metrics => Some(Scope::Metrics),
        }
    }
}

/// The guard's state: the app and what the guarded routes require.
#[derive(Clone)]
pub struct Guard {
    /// The application.
    pub state: AppState,
    /// What the routes behind this guard require.
    pub access: Access,
}

/// Authenticates, authorises and rate-limits, then runs the route.
pub async fn require(State(guard): State<Guard>, mut req: Request, next: Next) -> Response {
    let cookie_name = session_cookie_name(guard.state.auth.config.cookie_secure);
    let principal = match authenticate(&guard.state, req.headers(), cookie_name).await {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    tracing::Span::current().record("user_id", principal.id.as_str());
    // Before any budget is spent: a forged call must not drain the victim's.
    if let Err(refusal) = same_origin(&guard.state, &req, &principal) {
        return ApiError::from(refusal).into_response();
    }
    if let Some(scope) = guard.access.scope()
        && !principal.has(scope)
    {
        let held: Vec<&str> = principal.scopes.iter().map(|s| s.as_str()).collect();
        return ApiError::Forbidden(format!(
            "this route needs the `{}` scope; this caller has: {}",
            scope.as_str(),
            if held.is_empty() {
                "none".to_owned()
            } else {
                held.join(", ")
            }
        ))
        .into_response();
    }

    let limits = &guard.state.config.rate_limits;
    let mut policies = vec![limits.api];
    match guard.access {
        Access::EmailSend => policies.push(limits.email),
        Access::AiGenerate => policies.push(limits.ai),
        _ => {}
    }
    let mut decisions = Vec::with_capacity(policies.len());
    for policy in policies {
        let decision = match guard.state.limiter.check(&principal.id, policy).await {
            Ok(d) => d,
            Err(unavailable) => {
                let secs = unavailable.retry_after.as_secs().max(1);
                let mut res = ApiError::from(unavailable).into_response();
                res.headers_mut().insert(header::RETRY_AFTER, secs.into());
                return res;
            }
        };
        decisions.push(decision);
        if !decision.allowed {
            let mut res = refused(&decision).into_response();
            rate_limit_headers(res.headers_mut(), &decisions);
            return res;
        }
    }

    req.extensions_mut().insert(principal);
    let mut res = next.run(req).await;
    rate_limit_headers(res.headers_mut(), &decisions);
    res
}

async fn authenticate(
    state: &AppState,
    headers: &HeaderMap,
    cookie_name: &str,
) -> Result<Principal, ApiError> {
    let Some(token) = credentials(headers, cookie_name) else {
        return Err(ApiError::Unauthorized(
            "sign in first (POST /api/auth/login) or send an API key as `Authorization: Bearer svk_…`"
                .into(),
        ));
    };
    state.auth.authenticate(token).await?.ok_or_else(|| {
        ApiError::Unauthorized(
            "the session has ended or the API key is unknown or revoked; sign in again".into(),
        )
    })
}

/// The cross-site check of a call that authenticated by the session cookie;
/// a bearer token needs none ([`credentials`] reads the cookie only when
/// there is no `Authorization` header).
fn same_origin(state: &AppState, req: &Request, principal: &Principal) -> Result<(), Refusal> {
    if req.headers().contains_key(header::AUTHORIZATION) {
        return Ok(());
    }
    let via_trusted_proxy = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .is_some_and(|ConnectInfo(peer)| {
            client_ip::is_trusted(peer.ip(), &state.config.auth.trusted_proxies)
        });
    let arrival = Arrival {
        tls: state.tls.is_some(),
        via_trusted_proxy,
        uri_authority: req.uri().authority().map(|a| a.as_str()),
    };
    csrf::check(
        req.method(),
        req.headers(),
        arrival,
        &csrf_token(&principal.via),
    )
}

/// The bearer token, or else the session cookie named `cookie_name`.
pub fn credentials<'a>(headers: &'a HeaderMap, cookie_name: &str) -> Option<&'a str> {
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        return value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
    }
    cookie(headers, cookie_name)
}

/// The value of cookie `name`, if the request has a non-empty one.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, value)| value)
        .filter(|v| !v.is_empty())
}

/// Spends one request of `policy` under `key`: the decision, or the error
/// to answer (429 over the budget, 503 while the shared limiter is away).
/// For callers outside the guard that spend a budget themselves (the
/// console's pages and forms).
pub async fn spend(limiter: &Limiter, key: &str, policy: Policy) -> Result<Decision, ApiError> {
    let decision = limiter.check(key, policy).await?;
    if decision.allowed {
        Ok(decision)
    } else {
        Err(refused(&decision))
    }
}

/// The 429 for a refused decision.
fn refused(d: &Decision) -> ApiError {
    let retry = d.retry_after.as_secs_f64().ceil() as u64;
    ApiError::TooManyRequests {
        message: format!(
            "rate limit `{}` ({} per {}) exceeded; retry in {} s",
            d.policy.name,
            d.policy.limit,
            period(&d.policy),
            retry.max(1)
        ),
        retry_after_secs: retry,
    }
}

fn period(p: &Policy) -> String {
    humantime::format_duration(p.period).to_string()
}

/// `RateLimit-Policy: "api";q=60;w=60` and `RateLimit: "api";r=59;t=1`
/// (draft-ietf-httpapi-ratelimit-headers), one item per budget spent.
fn rate_limit_headers(headers: &mut HeaderMap, decisions: &[Decision]) {
    let policies: Vec<String> = decisions
        .iter()
        .map(|d| {
            format!(
                "\"{}\";q={};w={}",
                d.policy.name,
                d.policy.limit,
                d.policy.period.as_secs()
            )
        })
        .collect();
    let states: Vec<String> = decisions
        .iter()
        .map(|d| {
            format!(
                "\"{}\";r={};t={}",
                d.policy.name,
                d.remaining,
                d.reset.as_secs_f64().ceil() as u64
            )
        })
        .collect();
    for (name, items) in [("ratelimit-policy", policies), ("ratelimit", states)] {
        if let Ok(value) = HeaderValue::from_str(&items.join(", ")) {
            headers.insert(name, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn the_bearer_token_wins_over_the_cookie() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            "theme=dark; sv_session=svs_cookie".parse().unwrap(),
        );
        assert_eq!(credentials(&h, SESSION_COOKIE), Some("svs_cookie"));
        h.insert(header::AUTHORIZATION, "Bearer svk_key".parse().unwrap());
        assert_eq!(credentials(&h, SESSION_COOKIE), Some("svk_key"));
        h.insert(header::AUTHORIZATION, "Basic abc".parse().unwrap());
        assert_eq!(
            credentials(&h, SESSION_COOKIE),
            None,
            "a non-bearer Authorization is not a cookie fallback"
        );
    }

    #[test]
    fn a_secure_cookie_is_read_only_under_its_host_prefixed_name() {
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, "sv_session=svs_planted".parse().unwrap());
        let secure = session_cookie_name(true);
        assert_eq!(secure, "__Host-sv_session");
        assert_eq!(credentials(&h, secure), None);
        h.insert(
            header::COOKIE,
            "sv_session=svs_planted; __Host-sv_session=svs_ours"
                .parse()
                .unwrap(),
        );
        assert_eq!(credentials(&h, secure), Some("svs_ours"));
        assert_eq!(
            credentials(&h, session_cookie_name(false)),
            Some("svs_planted")
        );
    }

    #[test]
    fn headers_list_every_budget_spent() {
        let policy = |name, limit| Policy {
            name,
            limit,
            period: Duration::from_secs(60),
        };
        let decision = |p, remaining, reset| Decision {
            policy: p,
            allowed: true,
            remaining,
            retry_after: Duration::ZERO,
            reset: Duration::from_millis(reset),
        };
        let mut h = HeaderMap::new();
        rate_limit_headers(
            &mut h,
            &[
                decision(policy("api", 60), 59, 1000),
                decision(policy("email", 10), 9, 5500),
            ],
        );
        assert_eq!(
            h["ratelimit-policy"],
            "\"api\";q=60;w=60, \"email\";q=10;w=60"
        );
        assert_eq!(h["ratelimit"], "\"api\";r=59;t=1, \"email\";r=9;t=6");
    }
}
