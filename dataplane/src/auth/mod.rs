//! Who is calling, and what they may do: accounts with passwords, sessions,
//! API keys, brute-force protection and the first administrator. Nothing
//! here knows HTTP; `middleware::auth` and `routes::auth` speak it.
//!
//! Credentials are random tokens handed out once ([`tokens`]): a session
//! token (`svs_…`) after a login, or an API key (`svk_…`) created by an
//! administrator. The store keeps only their SHA-256 digests, so a leaked
//! database does not let anyone in.
//!
//! Every credential acts for one account ([`Principal::account`]): a session
//! for its user, an API key for its owner (the user who created it, or the
//! owner of the key that did). Disabling the account refuses all of them
//! from the next request on.

pub mod api_keys;
pub mod bootstrap;
pub mod brute_force;
pub mod cache;
pub mod client_ip;
pub mod csrf;
pub mod passwords;
pub mod sessions;
pub mod tokens;

use std::{fmt, str::FromStr, sync::Arc};

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{
    config::AuthConfig,
    ratelimit::Limiter,
    store::{Store, StoreError, TokenBudget},
};

/// A permission. An administrator has them all; a member has `email` and
/// `ai`; an API key has those it was created with (`metrics` alone suits a
/// monitoring system reading the detailed health).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Send email and read its status.
    Email,
    /// Generate text and read generations.
    Ai,
    /// Manage accounts and keys, read the audit trail.
    Admin,
    /// Read the detailed health report.
    Metrics,
}

impl Scope {
    /// Every scope, in a stable order.
    pub const ALL: [Scope; 4] = [Scope::Email, Scope::Ai, Scope::Admin, Scope::Metrics];

    /// Its name, as in requests and the store.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Email => "email",
            Self::Ai => "ai",
            Self::Admin => "admin",
            Self::Metrics => "metrics",
        }
    }
}

impl FromStr for Scope {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|scope| scope.as_str() == s)
            .ok_or_else(|| format!("unknown scope `{s}`; expected email, ai, admin or metrics"))
    }
}

/// A user's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Every scope.
    Admin,
    /// `email` and `ai`.
    Member,
}

impl Role {
    /// Its name, as in requests and the store.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Member => "member",
        }
    }

    /// The scopes it grants.
    pub fn scopes(self) -> Vec<Scope> {
        match self {
            Self::Admin => Scope::ALL.to_vec(),
            Self::Member => vec![Scope::Email, Scope::Ai],
        }
    }
}

/// Who made a request, once authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// `user:<id>` or `key:<id>`: the rate-limit key, the audit actor and
    /// the `user_id` of log lines.
    pub id: String,
    /// The user name or the key's name.
    pub name: String,
    /// What it may do.
    pub scopes: Vec<Scope>,
    /// How it authenticated.
    pub via: Credential,
    /// The account it acts for (a `users.id`): the user's own for a
    /// session, the owner's for an API key. Disabling that account refuses
    /// every credential acting for it; an account never enables itself.
    pub account: String,
    /// That account's own token budgets, replacing the configured defaults.
    pub account_budget: TokenBudget,
}

/// How a principal authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// A session; the digest of its token and when it ends (Unix ms).
    Session {
        /// The token's digest, to end the session on logout.
        token_hash: String,
        /// When the session ends (Unix ms).
        expires_at: i64,
    },
    /// An API key: when it expires (Unix ms), if it does, and its own
    /// token budgets.
    ApiKey {
        /// When the key stops working (Unix ms); `None`: never.
        expires_at: Option<i64>,
        /// Its own budgets, replacing the configured defaults.
        budget: TokenBudget,
    },
}

impl Credential {
    /// When it stops working (Unix ms), if it ever does.
    pub fn ends_at(&self) -> Option<i64> {
        match self {
            Self::Session { expires_at, .. } => Some(*expires_at),
            Self::ApiKey { expires_at, .. } => *expires_at,
        }
    }
}

impl Principal {
    /// Whether it holds `scope`.
    pub fn has(&self, scope: Scope) -> bool {
        self.scopes.contains(&scope)
    }

    /// The author whose emails and generations alone it may see: `None` for
    /// an administrator, who sees everything; its own id otherwise. An API
    /// key is a principal of its own: it does not see its creator's objects,
    /// nor they its.
    pub fn author_filter(&self) -> Option<&str> {
        (!self.has(Scope::Admin)).then_some(self.id.as_str())
    }

    /// Whether it may see, and act on, an object written by `created_by`
    /// (`None` for rows older than authorship: administrators' only). The
    /// one rule behind every route and page that opens an email or a
    /// generation by id; a caller that may not see one answers as if it did
    /// not exist, so an id does not reveal that someone else's object exists.
    pub fn may_access(&self, created_by: Option<&str>) -> bool {
        match self.author_filter() {
            None => true,
            Some(me) => created_by == Some(me),
        }
    }
}

/// Why an authentication step failed.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Hashing failed (a bug or exhausted memory).
    #[error("password hashing: {0}")]
    Hash(String),
}

/// A user name is 1–64 characters of lower-case letters, digits and `._-@`.
pub fn valid_username(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-@".contains(&b));
    if ok {
        Ok(())
    } else {
        Err("expected 1 to 64 lower-case letters, digits or `._-@`".into())
    }
}

/// The authentication service: what the routes and the middleware call.
#[derive(Clone)]
pub struct Auth {
    /// The store of users, sessions and keys.
    pub store: Store,
    /// The settings.
    pub config: Arc<AuthConfig>,
    /// Failure counting for brute-force protection.
    pub limiter: Limiter,
    /// Hashing and verification, bounded.
    pub passwords: passwords::Passwords,
    /// Credentials checked in the last second.
    pub cache: cache::CredentialCache,
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Auth").finish_non_exhaustive()
    }
}

impl Auth {
    /// The principal a bearer token or session cookie stands for; `None`
    /// when it is unknown, expired or revoked.
    pub async fn authenticate(&self, token: &str) -> Result<Option<Principal>, AuthError> {
        let Some(kind) = tokens::kind(token) else {
            return Ok(None);
        };
        let token_hash = tokens::digest(token);
        if let Some(principal) = self.cache.get(&token_hash) {
            return Ok(Some(principal));
        }
        let principal = match kind {
            tokens::Kind::Session => sessions::resolve(&self.store, &token_hash).await?,
            tokens::Kind::ApiKey => api_keys::resolve(&self.store, &token_hash).await?,
        };
        if let Some(p) = &principal {
            self.cache.put(&token_hash, p);
        }
        Ok(principal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_parse_from_their_names_only() {
        for scope in Scope::ALL {
            assert_eq!(scope.as_str().parse::<Scope>(), Ok(scope));
        }
        assert!("Admin".parse::<Scope>().is_err());
        assert!(Role::Member.scopes().iter().all(|s| *s != Scope::Admin));
    }

    fn principal(id: &str, scopes: &[Scope]) -> Principal {
        Principal {
            id: id.into(),
            name: "p".into(),
            scopes: scopes.to_vec(),
            via: Credential::ApiKey {
                expires_at: None,
                budget: TokenBudget::default(),
            },
            account: "u".into(),
            account_budget: TokenBudget::default(),
        }
    }

    #[test]
    fn only_authors_and_administrators_access_an_object() {
        let member = principal("user:1", &[Scope::Email, Scope::Ai]);
        assert!(member.may_access(Some("user:1")));
        assert!(!member.may_access(Some("user:2")));
        assert!(
            !member.may_access(None),
            "older rows are administrators' only"
        );
        // A key is not its creator, nor a user whose id it happens to share.
        assert!(!principal("key:1", &[Scope::Email]).may_access(Some("user:1")));
        let admin = principal("key:9", &Scope::ALL);
        assert!(admin.may_access(Some("user:1")) && admin.may_access(None));
        assert_eq!(admin.author_filter(), None);
        assert_eq!(member.author_filter(), Some("user:1"));
    }

    #[test]
    fn user_names_are_plain_lower_case() {
        assert!(valid_username("ops.team-1@example.com").is_ok());
        for bad in ["", "Admin", "a b", "a\nb", &"x".repeat(65)] {
            assert!(valid_username(bad).is_err(), "{bad:?}");
        }
    }
}
