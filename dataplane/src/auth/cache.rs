//! A short-lived, in-process memory of credentials already checked.
//!
//! Without it every request looks its token up in the SQL store, which on
//! this service's hot path costs more than everything else together (see
//! the "Authenticated routes" benchmark). A credential is remembered for
//! [`TTL`]; within that time a session that ends, a key that is revoked, or
//! an account that is disabled (with every session and key acting for it)
//! is forgotten at once by the replica that did it, and by the others when
//! their entry expires. A credential's own end (a session's, or a key's
//! expiry) is checked on every hit, so a remembered one never outlives it.
//! Unknown tokens are never remembered: each one goes to the store.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use tokio::time::Instant;

use super::Principal;
use crate::store::unix_millis;

/// How long a checked credential is trusted without asking the store again:
/// the longest a revocation or a disabled account on one replica takes to
/// reach the others.
pub const TTL: Duration = Duration::from_secs(1);

/// Entries kept before expired ones are swept.
const CAPACITY: usize = 10_000;

/// Token digest -> principal, for [`TTL`].
#[derive(Clone, Default)]
pub struct CredentialCache {
    entries: Arc<Mutex<HashMap<String, (Instant, Principal)>>>,
}

impl CredentialCache {
    /// The principal remembered for `token_hash`, if still fresh and its
    /// credential not past its end.
    pub fn get(&self, token_hash: &str) -> Option<Principal> {
        let entries = self.lock();
        let (checked, principal) = entries.get(token_hash)?;
        if checked.elapsed() >= TTL {
            return None;
        }
        if let Some(ends_at) = principal.via.ends_at()
            && ends_at <= unix_millis(std::time::SystemTime::now())
        {
            return None;
        }
        Some(principal.clone())
    }

    /// Remembers `principal` for `token_hash`.
    pub fn put(&self, token_hash: &str, principal: &Principal) {
        let mut entries = self.lock();
        if entries.len() >= CAPACITY {
            entries.retain(|_, (checked, _)| checked.elapsed() < TTL);
        }
        if entries.len() < CAPACITY {
            entries.insert(token_hash.to_owned(), (Instant::now(), principal.clone()));
        }
    }

    /// Forgets the credential `token_hash` (a logout).
    pub fn forget_token(&self, token_hash: &str) {
        self.lock().remove(token_hash);
    }

    /// Forgets every credential of the principal `id` (a revoked key).
    pub fn forget_principal(&self, id: &str) {
        self.lock().retain(|_, (_, p)| p.id != id);
    }

    /// Forgets every credential acting for the account `user_id`: its
    /// sessions and its keys (a disabled account, a changed password).
    pub fn forget_account(&self, user_id: &str) {
        self.lock().retain(|_, (_, p)| p.account != user_id);
    }

    /// A poisoned lock only means a panic elsewhere mid-update; the map is
    /// still a valid (at worst stale, and so short-lived) cache.
    fn lock(&self) -> MutexGuard<'_, HashMap<String, (Instant, Principal)>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{Credential, Scope};

    fn key(id: &str) -> Principal {
        Principal {
            id: id.into(),
            name: "k".into(),
            scopes: vec![Scope::Email],
            via: Credential::ApiKey {
                expires_at: None,
                budget: Default::default(),
            },
            account: "owner".into(),
            account_budget: Default::default(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn entries_last_one_ttl() {
        let c = CredentialCache::default();
        c.put("h", &key("key:1"));
        assert_eq!(c.get("h"), Some(key("key:1")));
        tokio::time::advance(TTL).await;
        assert_eq!(c.get("h"), None);
    }

    #[test]
    fn revocation_and_logout_forget_at_once() {
        let c = CredentialCache::default();
        c.put("a", &key("key:1"));
        c.put("b", &key("key:2"));
        c.forget_principal("key:1");
        assert_eq!(c.get("a"), None);
        assert!(c.get("b").is_some());
        c.forget_token("b");
        assert_eq!(c.get("b"), None);
    }

    #[test]
    fn a_disabled_account_forgets_its_sessions_and_keys_only() {
        let c = CredentialCache::default();
        let mut session = key("user:owner");
        session.via = Credential::Session {
            token_hash: "s".into(),
            expires_at: i64::MAX,
        };
        c.put("s", &session);
        c.put("k", &key("key:1"));
        let mut other = key("key:2");
        other.account = "someone-else".into();
        c.put("o", &other);
        c.forget_account("owner");
        assert_eq!((c.get("s"), c.get("k")), (None, None));
        assert!(c.get("o").is_some());
    }

    #[test]
    fn an_expired_key_is_never_served() {
        let c = CredentialCache::default();
        let mut p = key("key:1");
        p.via = Credential::ApiKey {
            expires_at: Some(unix_millis(std::time::SystemTime::now()) - 1),
            budget: Default::default(),
        };
        c.put("k", &p);
        assert_eq!(c.get("k"), None);
    }

    #[test]
    fn an_expired_session_is_never_served() {
        let c = CredentialCache::default();
        let mut p = key("user:1");
        p.via = Credential::Session {
            token_hash: "s".into(),
            expires_at: unix_millis(std::time::SystemTime::now()) - 1,
        };
        c.put("s", &p);
        assert_eq!(c.get("s"), None);
    }
}
