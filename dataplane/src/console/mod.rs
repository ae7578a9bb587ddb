//! The web console under `/console`: the same accounts, scopes, audit trail
//! and handlers as the JSON API, as HTML pages for people.
//!
//! How it is built, and why:
//!
//! - Pages are rendered on the server with [maud]: the templates are Rust,
//!   checked by the compiler, and escape every value by default. A page is a
//!   function from what the store says to HTML, so a handler test can check
//!   it without a browser, and the console needs no JavaScript to work.
//! - Actions call the API's own handlers (`routes::…`) rather than a copy of
//!   their logic: creating a key in the console validates, audits and counts
//!   exactly as `POST /api/keys` does.
//! - The page follows the seed's `Content-Security-Policy: default-src
//!   'self'`: no inline script or style, no other host. One stylesheet and
//!   one small script ([`assets`]) are compiled into the binary and served
//!   under content-hashed names with a year-long cache. The script only adds
//!   to pages that work without it: the streamed answer of a prompt and the
//!   live status of an email in flight. Charts are SVG drawn on the server.
//! - Only sessions open the console (an API key is for programs). Each form
//!   carries a CSRF token derived from the session ([`form`]), and the
//!   script sends it to the API as `X-CSRF-Token` (`middleware::csrf`); the
//!   session cookie is also `SameSite=Strict`. No secret is ever put in a page, a
//!   URL or the browser's storage: an API key is shown once, in the answer
//!   to the form that created it, which is never cached.

pub mod assets;
pub mod charts;
pub mod form;
pub mod guard;
pub mod layout;
pub mod pages;

use axum::{
    Router,
    middleware::from_fn_with_state,
    routing::{get, post},
};

use tower_http::compression::CompressionLayer;

use crate::{app::AppState, middleware::auth::Access};

/// Where the console lives.
pub const ROOT: &str = "/console";

/// The console's routes, each group behind the guard with what it requires.
pub fn router(state: &AppState) -> Router<AppState> {
    use pages::{audit, emails, generations, keys, login, overview, suppressions, usage, users};

    let public = Router::new()
        .route("/console/login", get(login::page).post(login::submit))
        // Only the assets are compressed: a page compressed with a secret
        // (the CSRF token) beside text from the URL would leak the secret
        // to an attacker measuring sizes (BREACH).
        .route(
            "/console/assets/{name}",
            get(assets::serve).layer(CompressionLayer::new().gzip(true)),
        );
    let groups: [(Access, Router<AppState>); 6] = [
        (
            Access::SignedIn,
            Router::new()
                .route("/console", get(overview::page))
                .route("/console/logout", post(login::logout)),
        ),
        (
            Access::EmailRead,
            Router::new()
                .route("/console/emails", get(emails::list))
                .route("/console/emails/{id}", get(emails::detail)),
        ),
        (
            Access::EmailSend,
            Router::new()
                .route(
                    "/console/emails/test",
                    get(emails::test_form).post(emails::send_test),
                )
                .route("/console/emails/{id}/retry", post(emails::retry)),
        ),
        (
            Access::AiRead,
            Router::new()
                .route("/console/generations", get(generations::page))
                .route("/console/usage", get(usage::page)),
        ),
        (
            Access::AiGenerate,
            Router::new().route("/console/generations", post(generations::generate)),
        ),
        (
            Access::Admin,
            Router::new()
                .route("/console/keys", get(keys::page).post(keys::create))
                .route("/console/keys/{id}/revoke", post(keys::revoke))
                .route("/console/users", get(users::page).post(users::create))
                .route("/console/users/{id}", post(users::update))
                .route("/console/audit", get(audit::page))
                .route(
                    "/console/suppressions",
                    get(suppressions::page).post(suppressions::add),
                )
                .route("/console/suppressions/lift", post(suppressions::lift)),
        ),
    ];
    groups.into_iter().fold(public, |router, (access, group)| {
        let guard = guard::Guard {
            state: state.clone(),
            access,
        };
        router.merge(group.route_layer(from_fn_with_state(guard, guard::require)))
    })
}
