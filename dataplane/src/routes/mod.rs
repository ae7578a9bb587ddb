//! Path -> handler maps, one file per area. Each handler carries its OpenAPI
//! description (`#[utoipa::path]`), and [`api`] registers route and
//! description together, so `/api/openapi.json` cannot drift from the router.

pub mod ai;
pub mod api_keys;
pub mod audit;
pub mod auth;
pub mod dkim;
pub mod email;
pub mod health;
pub mod metrics;
pub mod openai;
pub mod openapi;
pub mod stats;
pub mod suppressions;
pub mod usage;
pub mod users;

use utoipa::{
    OpenApi,
    openapi::security::{
        ApiKey, ApiKeyValue, Http, HttpAuthScheme, SecurityRequirement, SecurityScheme,
    },
};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{app::AppState, middleware::auth::Access};

/// A store timestamp (Unix milliseconds) as RFC 3339, as answers show it.
pub fn rfc3339(millis: i64) -> String {
    let t = std::time::SystemTime::UNIX_EPOCH
        + std::time::Duration::from_millis(u64::try_from(millis).unwrap_or(0));
    humantime::format_rfc3339_millis(t).to_string()
}

/// An RFC 3339 time as a request gives it (`2026-12-01T10:30:00Z`, with
/// `+02:00`-style offsets and fractions of a second), as Unix ms; `None` if
/// it is not one.
pub fn parse_rfc3339(text: &str) -> Option<i64> {
    let text = text.trim();
    // humantime reads UTC only (`Z`): an offset is taken off and applied here.
    let (utc, offset_minutes) = match text.len().checked_sub(6).map(|at| text.split_at(at)) {
        Some((time, offset))
            if (offset.starts_with('+') || offset.starts_with('-'))
                && offset.as_bytes().get(3) == Some(&b':') =>
        {
            let hours: i64 = offset.get(1..3)?.parse().ok()?;
            let minutes: i64 = offset.get(4..6)?.parse().ok()?;
            if hours > 23 || minutes > 59 {
                return None;
            }
            let sign = if offset.starts_with('-') { -1 } else { 1 };
            (format!("{time}Z"), sign * (hours * 60 + minutes))
        }
        _ => (text.to_owned(), 0),
    };
    if !utc.ends_with('Z') && !utc.ends_with('z') {
        return None;
    }
    let t = humantime::parse_rfc3339(&utc.replace('z', "Z")).ok()?;
    Some(crate::store::unix_millis(t) - offset_minutes * 60_000)
}

/// Every route, grouped by who may call it. `app` puts the guard in front
/// of each group but `public`; the OpenAPI document marks the guarded
/// operations with the credentials and scope they need.
pub struct Api {
    /// No credentials: liveness, readiness, login. Nothing else answers
    /// an anonymous caller from the Internet.
    pub public: OpenApiRouter<AppState>,
    /// Guarded groups, each with what it requires.
    pub guarded: Vec<(Access, OpenApiRouter<AppState>)>,
}

impl Api {
    /// All routes in one router, without the guard (for the document).
    pub fn merged(self) -> OpenApiRouter<AppState> {
        self.guarded
            .into_iter()
            .fold(self.public, |all, (_, group)| all.merge(group))
    }
}

/// Every route of the API with its OpenAPI description.
pub fn api() -> Api {
    let public = OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .routes(routes!(health::live))
        .routes(routes!(health::ready))
        .routes(routes!(auth::login));
    let signed_in = OpenApiRouter::new()
        .routes(routes!(auth::logout))
        .routes(routes!(auth::me))
        .routes(routes!(openapi::document))
        .routes(routes!(stats::get_stats));
    let health = OpenApiRouter::new().routes(routes!(health::detailed));
    let send_email = OpenApiRouter::new()
        .routes(routes!(email::send_email))
        .routes(routes!(suppressions::add))
        .routes(routes!(email::retry_email));
    let read_email = OpenApiRouter::new().routes(routes!(email::get_email));
    let generate = OpenApiRouter::new()
        .routes(routes!(ai::generate_content))
        .routes(routes!(openai::chat_completions));
    let read_generation = OpenApiRouter::new()
        .routes(routes!(ai::get_generation))
        .routes(routes!(usage::get_usage));
    let admin = OpenApiRouter::new()
        .routes(routes!(api_keys::create_key, api_keys::list_keys))
        .routes(routes!(api_keys::revoke_key))
        .routes(routes!(api_keys::set_budget))
        .routes(routes!(users::create_user, users::list_users))
        .routes(routes!(users::update_user))
        .routes(routes!(audit::list))
        .routes(routes!(dkim::records))
        .routes(routes!(suppressions::list))
        .routes(routes!(suppressions::lift));
    let guarded = [
        (Access::SignedIn, signed_in),
        (Access::EmailSend, send_email),
        (Access::EmailRead, read_email),
        (Access::AiGenerate, generate),
        (Access::AiRead, read_generation),
        (Access::Admin, admin),
        (Access::Metrics, health),
    ]
    .into_iter()
    .map(|(access, group)| (access, secured(group, access)))
    .collect();
    Api { public, guarded }
}

/// Marks every operation of `group` as needing a session or an API key
/// (with the scope of `access`), and declares both schemes.
fn secured(mut group: OpenApiRouter<AppState>, access: Access) -> OpenApiRouter<AppState> {
    let scopes: Vec<&str> = access.scope().map(|s| s.as_str()).into_iter().collect();
    let doc = group.get_openapi_mut();
    for item in doc.paths.paths.values_mut() {
        for op in [
            &mut item.get,
            &mut item.post,
            &mut item.put,
            &mut item.delete,
            &mut item.patch,
        ]
        .into_iter()
        .flatten()
        {
            op.security = Some(vec![
                SecurityRequirement::new("bearer", scopes.clone()),
                SecurityRequirement::new("session_cookie", scopes.clone()),
            ]);
        }
    }
    let components = doc.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        "bearer",
        SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
    );
    components.add_security_scheme(
        "session_cookie",
        SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
            crate::middleware::auth::SECURE_SESSION_COOKIE,
            "Set by POST /api/auth/login; named `sv_session` when served with \
             SESSION_COOKIE_SECURE=false. POST, PUT, PATCH and DELETE with the cookie \
             also need a same-origin `Origin` or, without one, the session's CSRF token \
             in `X-CSRF-Token`.",
        ))),
    );
    group
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_times_are_read_with_any_offset() {
        let utc = parse_rfc3339("2099-01-01T00:00:00Z").unwrap();
        assert_eq!(parse_rfc3339("2099-01-01T02:00:00+02:00"), Some(utc));
        assert_eq!(parse_rfc3339("2098-12-31T22:30:00-01:30"), Some(utc));
        assert_eq!(parse_rfc3339("2099-01-01T00:00:00.250Z"), Some(utc + 250));
        assert_eq!(rfc3339(utc), "2099-01-01T00:00:00.000Z");
        for bad in [
            "next tuesday",
            "2099-01-01",
            "2099-01-01T00:00:00",
            "2099-01-01T00:00:00+25:00",
            "2099-01-01T00:00:00+0200",
            "",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }
}
