//! Users, sessions and API keys. Only digests of tokens and keys are stored
//! (see the migration); this module never sees a token in clear.

use std::time::SystemTime;

use sqlx::{Row, any::AnyRow};

use super::{Store, StoreError, unix_millis};

/// A user account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// Its id.
    pub id: String,
    /// Its (lower-cased) name.
    pub username: String,
    /// Its argon2id PHC string.
    pub password_hash: String,
    /// `admin` or `member`.
    pub role: String,
    /// When it was created (Unix ms).
    pub created_at: i64,
    /// When it was disabled (Unix ms); a disabled account cannot sign in.
    pub disabled_at: Option<i64>,
    /// Its own token budgets, replacing the configured account defaults.
    pub budget: TokenBudget,
}

/// The user columns every query returns.
macro_rules! user_columns {
    () => {
        "u.id, u.username, u.password_hash, u.role, u.created_at, u.disabled_at, \
         u.budget_daily_tokens, u.budget_monthly_tokens"
    };
}

/// An API key as stored (without the key itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredApiKey {
    /// Its id.
    pub id: String,
    /// What its creator called it.
    pub name: String,
    /// The first characters of the key.
    pub prefix: String,
    /// Comma-separated scopes.
    pub scopes: String,
    /// The principal that created it (`user:<id>` or `key:<id>`).
    pub created_by: String,
    /// When it was created (Unix ms).
    pub created_at: i64,
    /// When it was revoked (Unix ms), if it was.
    pub revoked_at: Option<i64>,
    /// The account it acts for (a `users.id`): its creator's, or its
    /// creating key's owner. `None` only for an old key whose chain of
    /// creators ends at no user; such a key is refused.
    pub owner_id: Option<String>,
    /// When it stops working (Unix ms); `None`: never.
    pub expires_at: Option<i64>,
    /// When it was last used (Unix ms), to a few minutes (see
    /// [`Store::touch_api_key`]).
    pub last_used_at: Option<i64>,
    /// Its own token budgets, replacing the configured defaults for it.
    pub budget: TokenBudget,
}

/// A key's own token budgets (prompt and completion, per UTC day and
/// month); `None`: the configured default (`AI_BUDGET_KEY_*_TOKENS`) holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TokenBudget {
    /// Tokens per day.
    pub daily: Option<u64>,
    /// Tokens per month.
    pub monthly: Option<u64>,
}

impl TokenBudget {
    /// A stored column: `BIGINT`, so a budget above `i64::MAX` (refused
    /// before it gets here) is stored as the largest it can hold.
    fn column(tokens: Option<u64>) -> Option<i64> {
        tokens.map(|t| i64::try_from(t).unwrap_or(i64::MAX))
    }

    /// A column read back; a negative value (never written by us) counts as
    /// no budget of its own.
    fn from_column(tokens: Option<i64>) -> Option<u64> {
        tokens.and_then(|t| u64::try_from(t).ok())
    }
}

/// The key columns every query returns.
macro_rules! key_columns {
    () => {
        "k.id, k.name, k.prefix, k.scopes, k.created_by, k.created_at, k.revoked_at, \
         k.owner_id, k.expires_at, k.last_used_at, k.budget_daily_tokens, k.budget_monthly_tokens"
    };
}

fn user(row: &AnyRow) -> Result<User, StoreError> {
    Ok(User {
        id: row.try_get("id")?,
        username: row.try_get("username")?,
        password_hash: row.try_get("password_hash")?,
        role: row.try_get("role")?,
        created_at: row.try_get("created_at")?,
        disabled_at: row.try_get("disabled_at")?,
        budget: TokenBudget {
            daily: TokenBudget::from_column(row.try_get("budget_daily_tokens")?),
            monthly: TokenBudget::from_column(row.try_get("budget_monthly_tokens")?),
        },
    })
}

fn api_key(row: &AnyRow) -> Result<StoredApiKey, StoreError> {
    Ok(StoredApiKey {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        prefix: row.try_get("prefix")?,
        scopes: row.try_get("scopes")?,
        created_by: row.try_get("created_by")?,
        created_at: row.try_get("created_at")?,
        revoked_at: row.try_get("revoked_at")?,
        owner_id: row.try_get("owner_id")?,
        expires_at: row.try_get("expires_at")?,
        last_used_at: row.try_get("last_used_at")?,
        budget: TokenBudget {
            daily: TokenBudget::from_column(row.try_get("budget_daily_tokens")?),
            monthly: TokenBudget::from_column(row.try_get("budget_monthly_tokens")?),
        },
    })
}

impl Store {
    /// Creates a user; `None` when the name is taken.
    pub async fn insert_user(
        &self,
        username: &str,
        password_hash: &str,
        role: &str,
        now: SystemTime,
    ) -> Result<Option<User>, StoreError> {
        let id = uuid::Uuid::new_v4().to_string();
        let at = unix_millis(now);
        let inserted = sqlx::query(
            "INSERT INTO users (id, username, password_hash, role, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $5) ON CONFLICT (username) DO NOTHING",
        )
        .bind(&id)
        .bind(username)
        .bind(password_hash)
        .bind(role)
        .bind(at)
        .execute(&self.writer)
        .await?
        .rows_affected();
        Ok((inserted == 1).then(|| User {
            id,
            username: username.to_owned(),
            password_hash: password_hash.to_owned(),
            role: role.to_owned(),
            created_at: at,
            disabled_at: None,
            budget: TokenBudget::default(),
        }))
    }

    /// The user called `username` (already lower-cased), if any.
    pub async fn user_by_name(&self, username: &str) -> Result<Option<User>, StoreError> {
        let row = sqlx::query(concat!(
            "SELECT ",
            user_columns!(),
            " FROM users u WHERE u.username = $1"
        ))
        .bind(username)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(user).transpose()
    }

    /// The user with this id, if any.
    pub async fn user_by_id(&self, id: &str) -> Result<Option<User>, StoreError> {
        let row = sqlx::query(concat!(
            "SELECT ",
            user_columns!(),
            " FROM users u WHERE u.id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(user).transpose()
    }

    /// Disables (with the time it happened) or enables a user. Disabling
    /// ends its sessions in the same transaction. `false` when there is no
    /// such user; the caller decides who may be disabled.
    pub async fn set_disabled(
        &self,
        user_id: &str,
        disabled_at: Option<SystemTime>,
        now: SystemTime,
    ) -> Result<bool, StoreError> {
        let mut tx = self.writer.begin().await?;
        let n = sqlx::query("UPDATE users SET disabled_at = $1, updated_at = $2 WHERE id = $3")
            .bind(disabled_at.map(unix_millis))
            .bind(unix_millis(now))
            .bind(user_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if disabled_at.is_some() {
            sqlx::query("DELETE FROM sessions WHERE user_id = $1")
                .bind(user_id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(n == 1)
    }

    /// Replaces user `id`'s own budgets; `false` when there is no such user.
    pub async fn set_user_budget(
        &self,
        id: &str,
        budget: TokenBudget,
        now: SystemTime,
    ) -> Result<bool, StoreError> {
        let n = sqlx::query(
            "UPDATE users SET budget_daily_tokens = $1, budget_monthly_tokens = $2, \
             updated_at = $3 WHERE id = $4",
        )
        .bind(TokenBudget::column(budget.daily))
        .bind(TokenBudget::column(budget.monthly))
        .bind(unix_millis(now))
        .bind(id)
        .execute(&self.writer)
        .await?
        .rows_affected();
        Ok(n == 1)
    }

    /// How many administrators can sign in.
    pub async fn enabled_admins(&self) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT COUNT(*) FROM users WHERE role = 'admin' AND disabled_at IS NULL",
        )
        .fetch_one(&self.pool)
        .await?)
    }

    /// Every user, oldest first.
    pub async fn users(&self) -> Result<Vec<User>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            user_columns!(),
            " FROM users u ORDER BY u.created_at, u.id"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(user).collect()
    }

    /// Whether any administrator exists.
    pub async fn admin_exists(&self) -> Result<bool, StoreError> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users WHERE role = 'admin'")
            .fetch_one(&self.pool)
            .await?;
        Ok(n > 0)
    }

    /// Replaces a user's password and ends its sessions: whoever knew the
    /// old password must not stay signed in.
    pub async fn set_password(
        &self,
        user_id: &str,
        password_hash: &str,
        now: SystemTime,
    ) -> Result<(), StoreError> {
        let mut tx = self.writer.begin().await?;
        sqlx::query("UPDATE users SET password_hash = $1, updated_at = $2 WHERE id = $3")
            .bind(password_hash)
            .bind(unix_millis(now))
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM sessions WHERE user_id = $1")
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Stores a new session and, in the same write, drops expired ones so
    /// the table does not grow without bound.
    pub async fn insert_session(
        &self,
        token_hash: &str,
        user_id: &str,
        now: SystemTime,
        expires: SystemTime,
    ) -> Result<(), StoreError> {
        let mut tx = self.writer.begin().await?;
        sqlx::query("DELETE FROM sessions WHERE expires_at <= $1")
            .bind(unix_millis(now))
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO sessions (token_hash, user_id, created_at, expires_at) \
             VALUES ($1, $2, $3, $4)",
        )
        .bind(token_hash)
        .bind(user_id)
        .bind(unix_millis(now))
        .bind(unix_millis(expires))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The user of the live session with this token digest, and when the
    /// session ends (Unix ms).
    pub async fn session_user(
        &self,
        token_hash: &str,
        now: SystemTime,
    ) -> Result<Option<(User, i64)>, StoreError> {
        let row = sqlx::query(concat!(
            "SELECT ",
            user_columns!(),
            ", s.expires_at FROM sessions s JOIN users u ON u.id = s.user_id \
                 WHERE s.token_hash = $1 AND s.expires_at > $2 AND u.disabled_at IS NULL"
        ))
        .bind(token_hash)
        .bind(unix_millis(now))
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| Ok((user(&row)?, row.try_get("expires_at")?)))
            .transpose()
    }

    /// Ends a session; `false` if there was none.
    pub async fn delete_session(&self, token_hash: &str) -> Result<bool, StoreError> {
        let n = sqlx::query("DELETE FROM sessions WHERE token_hash = $1")
            .bind(token_hash)
            .execute(&self.writer)
            .await?
            .rows_affected();
        Ok(n > 0)
    }

    /// Stores a new API key.
    pub async fn insert_api_key(
        &self,
        key: &StoredApiKey,
        token_hash: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO api_keys (id, name, token_hash, prefix, scopes, created_by, created_at, \
             owner_id, expires_at, budget_daily_tokens, budget_monthly_tokens) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(&key.id)
        .bind(&key.name)
        .bind(token_hash)
        .bind(&key.prefix)
        .bind(&key.scopes)
        .bind(&key.created_by)
        .bind(key.created_at)
        .bind(&key.owner_id)
        .bind(key.expires_at)
        .bind(TokenBudget::column(key.budget.daily))
        .bind(TokenBudget::column(key.budget.monthly))
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    /// The key with this digest, and its owner's own budgets, if it works at
    /// `now`: not revoked, not expired, and acting for an account that exists
    /// and is enabled. One query, so a disabled owner is refused on the very
    /// lookup.
    pub async fn live_api_key(
        &self,
        token_hash: &str,
        now: SystemTime,
    ) -> Result<Option<(StoredApiKey, TokenBudget)>, StoreError> {
        let row = sqlx::query(concat!(
            "SELECT ",
            key_columns!(),
            ", u.budget_daily_tokens AS owner_daily, u.budget_monthly_tokens AS owner_monthly \
             FROM api_keys k JOIN users u ON u.id = k.owner_id \
             WHERE k.token_hash = $1 AND k.revoked_at IS NULL \
               AND (k.expires_at IS NULL OR k.expires_at > $2) AND u.disabled_at IS NULL"
        ))
        .bind(token_hash)
        .bind(unix_millis(now))
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref()
            .map(|row| {
                let owner = TokenBudget {
                    daily: TokenBudget::from_column(row.try_get("owner_daily")?),
                    monthly: TokenBudget::from_column(row.try_get("owner_monthly")?),
                };
                Ok((api_key(row)?, owner))
            })
            .transpose()
    }

    /// Records that key `id` was used at `now`, unless a use at or after
    /// `fresh_since` is already recorded (another replica may have written
    /// one meanwhile); whether it wrote.
    pub async fn touch_api_key(
        &self,
        id: &str,
        now: SystemTime,
        fresh_since: SystemTime,
    ) -> Result<bool, StoreError> {
        let n = sqlx::query(
            "UPDATE api_keys SET last_used_at = $1 \
             WHERE id = $2 AND (last_used_at IS NULL OR last_used_at < $3)",
        )
        .bind(unix_millis(now))
        .bind(id)
        .bind(unix_millis(fresh_since))
        .execute(&self.writer)
        .await?
        .rows_affected();
        Ok(n == 1)
    }

    /// Every key, revoked ones included, newest first.
    pub async fn api_keys(&self) -> Result<Vec<StoredApiKey>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            key_columns!(),
            " FROM api_keys k ORDER BY k.created_at DESC, k.id"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(api_key).collect()
    }

    /// Revokes key `id`; the key as it now stands, or `None` if there is no
    /// such key. Revoking twice keeps the first time.
    pub async fn revoke_api_key(
        &self,
        id: &str,
        now: SystemTime,
    ) -> Result<Option<StoredApiKey>, StoreError> {
        sqlx::query("UPDATE api_keys SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
            .bind(unix_millis(now))
            .bind(id)
            .execute(&self.writer)
            .await?;
        self.api_key_by_id(id).await
    }

    /// Replaces key `id`'s own budgets; the key as it now stands, or `None`
    /// if there is no such key.
    pub async fn set_api_key_budget(
        &self,
        id: &str,
        budget: TokenBudget,
    ) -> Result<Option<StoredApiKey>, StoreError> {
        sqlx::query(
            "UPDATE api_keys SET budget_daily_tokens = $1, budget_monthly_tokens = $2 WHERE id = $3",
        )
        .bind(TokenBudget::column(budget.daily))
        .bind(TokenBudget::column(budget.monthly))
        .bind(id)
        .execute(&self.writer)
        .await?;
        self.api_key_by_id(id).await
    }

    /// Key `id` as stored, read from the writer so that it shows a change
    /// just made.
    async fn api_key_by_id(&self, id: &str) -> Result<Option<StoredApiKey>, StoreError> {
        let row = sqlx::query(concat!(
            "SELECT ",
            key_columns!(),
            " FROM api_keys k WHERE k.id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.writer)
        .await?;
        row.as_ref().map(api_key).transpose()
    }
}
