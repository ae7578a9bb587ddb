//! API keys for machines: created by an administrator with a name and
//! scopes, shown once, revoked at any time. A revoked key is refused from
//! the next request on: at once on the replica that revoked it, within a
//! second on the others (see [`super::cache`]).

use std::time::SystemTime;

use super::{AuthError, Credential, Principal, Scope, tokens};
use crate::store::{Store, StoredApiKey, unix_millis};

/// Characters of the key kept in clear for display (`svk_` and 8 more).
const SHOWN_PREFIX_LEN: usize = 12;

/// Creates a key; returns it as stored and the key itself, to show once.
pub async fn create(
    store: &Store,
    name: &str,
    scopes: &[Scope],
    created_by: &str,
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
        created_by: created_by.to_owned(),
        created_at: unix_millis(SystemTime::now()),
        revoked_at: None,
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

/// The principal of the unrevoked key whose digest is `token_hash`.
pub async fn resolve(store: &Store, token_hash: &str) -> Result<Option<Principal>, AuthError> {
    let Some(stored) = store.live_api_key(token_hash).await? else {
        return Ok(None);
    };
    Ok(Some(Principal {
        id: format!("key:{}", stored.id),
        name: stored.name.clone(),
        scopes: scopes(&stored),
        via: Credential::ApiKey,
    }))
}
