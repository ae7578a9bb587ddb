//! Form posts and their CSRF protection.
//!
//! Every form of a signed-in page carries a token derived from the session:
//! `SHA-256("sv-console-csrf:" ‖ digest of the session token)`. Another site
//! cannot read it (it never sees the page, and the cookie is `HttpOnly`), so
//! a post without it, or with another session's, is refused. Nothing is
//! stored: any replica derives the same token from the same session, and
//! the token dies with the session. The sign-in form, which has no session
//! yet, uses a random token in a short-lived cookie instead (double submit).

use axum::{
    body::Bytes,
    extract::{FromRequest, Request},
    http::StatusCode,
    response::{IntoResponse, Response},
};
use serde::{Deserialize, de::DeserializeOwned};
use sha2::{Digest, Sha256};

use super::{guard::Viewer, layout};
use crate::auth::{Credential, Principal};

/// The hidden field every form carries.
pub const CSRF_FIELD: &str = "csrf";

/// The CSRF token of `principal`'s session (empty for an API key, which
/// never opens the console).
pub fn csrf_token(principal: &Principal) -> String {
    match &principal.via {
        Credential::Session { token_hash, .. } => {
            hex(&Sha256::digest(format!("sv-console-csrf:{token_hash}")))
        }
        Credential::ApiKey { .. } => String::new(),
    }
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether two tokens are equal, in time that does not depend on where they
/// differ.
pub fn same_token(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && !a.is_empty()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

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

#[cfg(test)]
mod tests {
    use super::*;

    fn session(hash: &str) -> Principal {
        Principal {
            id: "user:1".into(),
            name: "a".into(),
            scopes: vec![],
            via: Credential::Session {
                token_hash: hash.into(),
                expires_at: 0,
            },
            account: "1".into(),
        }
    }

    #[test]
    fn each_session_has_its_own_token() {
        let a = csrf_token(&session("aaa"));
        assert_eq!(a.len(), 64);
        assert_eq!(a, csrf_token(&session("aaa")));
        assert_ne!(a, csrf_token(&session("aab")));
        assert!(!a.contains("aaa"), "the token must not reveal the session");
    }

    #[test]
    fn tokens_compare_whole() {
        assert!(same_token("abc", "abc"));
        assert!(!same_token("abc", "abd"));
        assert!(!same_token("abc", "ab"));
        assert!(!same_token("", ""), "an empty token never matches");
    }
}
