//! API keys for machines: created by an administrator with a name, scopes,
//! an optional expiry and optional token budgets of their own, shown once,
//! revoked at any time.
//!
//! A key acts for an account, its owner: the user who created it, or, for a
//! key created by another key, that key's owner. It works only while that
//! account exists and is enabled, so disabling an account stops its keys
//! with its sessions. A key that is revoked, expires or loses its owner is
//! refused from the next request on: at once on the replica that did it (or
//! at the expiry, everywhere), within a second on the others (see
//! [`super::cache`]).

use std::time::{Duration, SystemTime};

use super::{AuthError, Credential, Principal, Scope, tokens};
use crate::store::{Store, StoredApiKey, TokenBudget, unix_millis};

/// Characters of the key kept in clear for display (`svk_` and 8 more).
const SHOWN_PREFIX_LEN: usize = 12;

/// How stale a key's recorded last use may get before a use writes it
/// again: the last use is for people ("unused for months?"), and writing it
/// per request would put a store write on every authenticated call.
pub const LAST_USE_PRECISION: Duration = Duration::from_secs(5 * 60);

/// Creates a key for `creator`, acting for `creator`'s account; returns it
/// as stored and the key itself, to show once.
pub async fn create(
    store: &Store,
    name: &str,
    scopes: &[Scope],
    creator: &Principal,
    expires_at: Option<SystemTime>,
    budget: TokenBudget,
) -> Result<(StoredApiKey, String), AuthError> {
    let key = tokens::generate(tokens::Kind::ApiKey).map_err(|e| AuthError::Hash(e.to_string()))?;
    let mut names: Vec<&str> = scopes.iter().map(|s| s.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    let stored = StoredApiKey {
        id: uuid::Uuid::new_v4().to_string(),
        name: name.to_owned(),
        prefix: key[..SHOWN_PREFIX_LEN].to_owned(),
        scopes: names.join(","),
        created_by: creator.id.clone(),
        created_at: unix_millis(SystemTime::now()),
        revoked_at: None,
        // A key made by a key acts for the same account: the chain always
        // ends at a person, who answers for it.
        owner_id: Some(creator.account.clone()),
        expires_at: expires_at.map(unix_millis),
        last_used_at: None,
        budget,
    };
    store.insert_api_key(&stored, &tokens::digest(&key)).await?;
    Ok((stored, key))
}

/// The scopes of a stored key.
pub fn scopes(key: &StoredApiKey) -> Vec<Scope> {
    key.scopes
        .split(',')
        .filter_map(|s| s.parse().ok())
        .collect()
}

/// The principal of the working key whose digest is `token_hash` (not
/// revoked, not expired, its owner enabled), recording its use when the
/// recorded one is older than [`LAST_USE_PRECISION`].
pub async fn resolve(store: &Store, token_hash: &str) -> Result<Option<Principal>, AuthError> {
    let now = SystemTime::now();
    let Some((stored, account_budget)) = store.live_api_key(token_hash, now).await? else {
        return Ok(None);
    };
    let Some(account) = stored.owner_id.clone() else {
        // The store's join already refuses a key without an owner.
        return Ok(None);
    };
    let fresh_since = now.checked_sub(LAST_USE_PRECISION).unwrap_or(now);
    if stored
        .last_used_at
        .is_none_or(|at| at < unix_millis(fresh_since))
        && let Err(error) = store.touch_api_key(&stored.id, now, fresh_since).await
    {
        // A bookkeeping write; the key itself is fine, so the request goes on.
        tracing::warn!(%error, key_id = %stored.id, "could not record an API key's last use");
    }
    Ok(Some(Principal {
        id: format!("key:{}", stored.id),
        name: stored.name.clone(),
        scopes: scopes(&stored),
        via: Credential::ApiKey {
            expires_at: stored.expires_at,
            budget: stored.budget,
        },
        account,
        account_budget,
    }))
}
