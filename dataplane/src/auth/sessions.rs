//! Sessions: a random token handed out at login, valid for a fixed time
//! (`SESSION_TTL_SECS`, one hour by default) and ended by logout.

use std::time::{Duration, SystemTime};

use super::{AuthError, Credential, Principal, Role, tokens};
use crate::store::{Store, User};

/// A session just opened: the token is shown to the client once.
#[derive(Debug, Clone)]
pub struct NewSession {
    /// The token, for the cookie and the answer.
    pub token: String,
    /// When it ends.
    pub expires_at: SystemTime,
}

/// Opens a session for `user`.
pub async fn open(store: &Store, user: &User, ttl: Duration) -> Result<NewSession, AuthError> {
    let token =
        tokens::generate(tokens::Kind::Session).map_err(|e| AuthError::Hash(e.to_string()))?;
    let now = SystemTime::now();
    let expires_at = now + ttl;
    store
        .insert_session(&tokens::digest(&token), &user.id, now, expires_at)
        .await?;
    Ok(NewSession { token, expires_at })
}

/// The principal of the live session whose token digest is `token_hash`.
pub async fn resolve(store: &Store, token_hash: &str) -> Result<Option<Principal>, AuthError> {
    let token_hash = token_hash.to_owned();
    let Some((user, expires_at)) = store.session_user(&token_hash, SystemTime::now()).await? else {
        return Ok(None);
    };
    Ok(Some(principal(
        &user,
        Credential::Session {
            token_hash,
            expires_at,
        },
    )))
}

/// The principal a user is, authenticated `via`.
pub fn principal(user: &User, via: Credential) -> Principal {
    let role = if user.role == Role::Admin.as_str() {
        Role::Admin
    } else {
        Role::Member
    };
    Principal {
        id: format!("user:{}", user.id),
        name: user.username.clone(),
        scopes: role.scopes(),
        via,
        account: user.id.clone(),
        account_budget: user.budget,
    }
}

/// Ends the session whose token digest is `token_hash`.
pub async fn close(store: &Store, token_hash: &str) -> Result<bool, AuthError> {
    Ok(store.delete_session(token_hash).await?)
}
