//! Form posts and their CSRF protection.
//!
//! Every form of a signed-in page carries the session's CSRF token
//! ([`crate::auth::csrf`]); a post without it, or with another session's, is
//! refused. The sign-in form, which has no session yet, uses a random token
//! in a short-lived cookie instead (double submit).

use axum::{
    body::Bytes,
    extract::{FromRequest, Request},
    http::StatusCode,
    response::{IntoResponse, Response},
};
use serde::{Deserialize, de::DeserializeOwned};

use super::{guard::Viewer, layout};
use crate::auth::csrf::same_token;

/// The hidden field every form carries.
pub const CSRF_FIELD: &str = "csrf";

#[derive(Deserialize)]
struct CsrfOnly {
    #[serde(default)]
    csrf: String,
}

/// A form post from a signed-in page whose CSRF token matched, decoded
/// into `T`.
pub struct CsrfForm<T>(pub T);

impl<T, S> FromRequest<S> for CsrfForm<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Response;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let Some(viewer) = req.extensions().get::<Viewer>().cloned() else {
            // Only reachable if a route forgot its guard: refuse, loudly.
            tracing::error!("a console form route has no guard");
            return Err(StatusCode::FORBIDDEN.into_response());
        };
        let body = Bytes::from_request(req, state)
            .await
            .map_err(IntoResponse::into_response)?;
        let sent: CsrfOnly = serde_urlencoded::from_bytes(&body).unwrap_or(CsrfOnly {
            csrf: String::new(),
        });
        if !same_token(&sent.csrf, &viewer.csrf) {
            return Err(layout::error_page(
                &viewer,
                StatusCode::FORBIDDEN,
                "Form expired",
                "This form did not come from your current session (it may be older than \
                 your last sign-in). Open the page again and resend it.",
            ));
        }
        serde_urlencoded::from_bytes(&body)
            .map(CsrfForm)
            .map_err(|e| {
                layout::error_page(
                    &viewer,
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "Form not understood",
                    &format!("The form could not be read: {e}."),
                )
            })
    }
}
