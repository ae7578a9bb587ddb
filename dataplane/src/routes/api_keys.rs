//! `POST /api/keys`, `GET /api/keys`, `DELETE /api/keys/{id}`,
//! `PUT /api/keys/{id}/budget`: API keys for machines, managed by
//! administrators. A key acts for its creator's account and stops with it
//! (see [`crate::auth::api_keys`]).

use std::time::{Duration, SystemTime};

use axum::{
    Extension, Json,
    extract::{Path, State},
    http::StatusCode,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{
    app::AppState,
    audit::{self, Outcome},
    auth::{Principal, Scope, api_keys},
    error::{ApiError, ErrorBody},
    extract::ApiJson,
    routes::{parse_rfc3339, rfc3339},
    store::{StoredApiKey, TokenBudget},
};

/// The most tokens a budget may name: a trillion, as for the configured
/// defaults (far above any real budget, far below overflowing a counter).
const MAX_BUDGET_TOKENS: u64 = 1_000_000_000_000;

/// A key to create.
#[derive(Debug, Deserialize, ToSchema)]
pub struct CreateKeyRequest {
    /// What it is for, e.g. `billing-service` (1–100 characters).
    pub name: String,
    /// What it may do: any of `email`, `ai`, `admin`, `metrics`.
    pub scopes: Vec<String>,
    /// When it stops working (RFC 3339, in the future, e.g.
    /// `2027-01-01T00:00:00Z`); without it, the key works until revoked.
    #[serde(default)]
    pub expires_at: Option<String>,
    /// Its own token budgets, replacing `AI_BUDGET_KEY_*_TOKENS` for it;
    /// without them the defaults hold.
    #[serde(default)]
    pub budget: Option<TokenBudgets>,
}

/// A key's or an account's own token budgets (prompt and completion
/// together, per UTC day and month). A budget left out or `null` is the
/// configured default (`AI_BUDGET_KEY_*_TOKENS` for a key,
/// `AI_BUDGET_ACCOUNT_*_TOKENS` for an account), which may be none.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenBudgets {
    /// Tokens per UTC day, 1 to 10^12.
    #[serde(default)]
    #[schema(minimum = 1, maximum = 1_000_000_000_000_u64)]
    pub daily_tokens: Option<u64>,
    /// Tokens per UTC month, 1 to 10^12.
    #[serde(default)]
    #[schema(minimum = 1, maximum = 1_000_000_000_000_u64)]
    pub monthly_tokens: Option<u64>,
}

impl TokenBudgets {
    /// The budget to store, each figure checked; errors name the field
    /// under `prefix` (`budget.` in a creation, nothing in a replacement).
    pub(crate) fn checked(self, prefix: &str) -> Result<TokenBudget, ApiError> {
        let check = |tokens: Option<u64>, name: &str| match tokens {
            Some(t) if !(1..=MAX_BUDGET_TOKENS).contains(&t) => Err(ApiError::Validation {
                field: format!("{prefix}{name}"),
                message: format!(
                    "expected 1 to {MAX_BUDGET_TOKENS} tokens, or null for the configured default"
                ),
            }),
            _ => Ok(tokens),
        };
        Ok(TokenBudget {
            daily: check(self.daily_tokens, "daily_tokens")?,
            monthly: check(self.monthly_tokens, "monthly_tokens")?,
        })
    }
}

impl From<TokenBudget> for TokenBudgets {
    fn from(b: TokenBudget) -> Self {
        Self {
            daily_tokens: b.daily,
            monthly_tokens: b.monthly,
        }
    }
}

/// A key as listed (the key itself is never shown again).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ApiKeyInfo {
    /// Its id, for revocation.
    pub id: String,
    /// Its name.
    pub name: String,
    /// Its first characters, to recognise it.
    pub prefix: String,
    /// What it may do.
    pub scopes: Vec<Scope>,
    /// Who created it (`user:<id>` or `key:<id>`).
    pub created_by: String,
    /// The account it acts for (a user id): its creator's, or its creating
    /// key's owner. The key is refused while that account is disabled.
    pub owner_id: Option<String>,
    /// When (RFC 3339).
    pub created_at: String,
    /// When it stops working (RFC 3339); absent: never.
    pub expires_at: Option<String>,
    /// When it was last used (RFC 3339), to within five minutes; absent:
    /// never.
    pub last_used_at: Option<String>,
    /// When it was revoked (RFC 3339), if it was.
    pub revoked_at: Option<String>,
    /// Its own token budgets; `null` figures: the configured defaults.
    pub budget: TokenBudgets,
}

impl From<&StoredApiKey> for ApiKeyInfo {
    fn from(k: &StoredApiKey) -> Self {
        Self {
            id: k.id.clone(),
            name: k.name.clone(),
            prefix: k.prefix.clone(),
            scopes: api_keys::scopes(k),
            created_by: k.created_by.clone(),
            owner_id: k.owner_id.clone(),
            created_at: rfc3339(k.created_at),
            expires_at: k.expires_at.map(rfc3339),
            last_used_at: k.last_used_at.map(rfc3339),
            revoked_at: k.revoked_at.map(rfc3339),
            budget: k.budget.into(),
        }
    }
}

/// A key just created: the only answer that shows it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CreatedKey {
    /// Send it as `Authorization: Bearer <key>`. Store it now: it is shown
    /// only once.
    pub key: String,
    /// The rest.
    #[serde(flatten)]
    pub info: ApiKeyInfo,
}

/// Creates an API key acting for the caller's account (for a key, its
/// owner's); the answer is the only time the key is shown.
#[utoipa::path(
    post,
    path = "/api/keys",
    tag = "auth",
    request_body = CreateKeyRequest,
    responses(
        (status = 201, description = "Created", body = CreatedKey),
        (status = 422, description = "A field is invalid", body = ErrorBody),
    )
)]
pub async fn create_key(
    State(state): State<AppState>,
    Extension(caller): Extension<Principal>,
    audit: audit::Context,
    ApiJson(request): ApiJson<CreateKeyRequest>,
) -> Result<(StatusCode, Json<CreatedKey>), ApiError> {
    let name = request.name.trim();
    if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
        return Err(ApiError::Validation {
            field: "name".into(),
            message: "expected 1 to 100 printable characters".into(),
        });
    }
    if request.scopes.is_empty() {
        return Err(ApiError::Validation {
            field: "scopes".into(),
            message: "give at least one scope: email, ai, admin or metrics".into(),
        });
    }
    let scopes = request
        .scopes
        .iter()
        .enumerate()
        .map(|(i, s)| {
            s.parse::<Scope>().map_err(|message| ApiError::Validation {
                field: format!("scopes[{i}]"),
                message,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let expires_at = request.expires_at.as_deref().map(future_time).transpose()?;
    let budget = request.budget.unwrap_or_default().checked("budget.")?;
    let (stored, key) =
        api_keys::create(&state.store, name, &scopes, &caller, expires_at, budget).await?;
    let mut detail = format!("{name:?} with scopes {}", stored.scopes);
    if let Some(t) = stored.expires_at {
        detail.push_str(&format!(", expiring {}", rfc3339(t)));
    }
    if let Some(b) = budget_text(budget) {
        detail.push_str(&format!(", budget {b}"));
    }
    audit
        .record(
            &state.store,
            "api_key.create",
            Some(&stored.id),
            Outcome::Success,
            Some(detail),
        )
        .await;
    Ok((
        StatusCode::CREATED,
        Json(CreatedKey {
            key,
            info: ApiKeyInfo::from(&stored),
        }),
    ))
}

/// The `expires_at` of a request: an RFC 3339 time in the future.
fn future_time(text: &str) -> Result<SystemTime, ApiError> {
    let invalid = |message: &str| ApiError::Validation {
        field: "expires_at".into(),
        message: message.into(),
    };
    let millis = parse_rfc3339(text)
        .ok_or_else(|| invalid("expected an RFC 3339 time, such as 2027-01-01T00:00:00Z"))?;
    let at = u64::try_from(millis)
        .ok()
        .map(|ms| SystemTime::UNIX_EPOCH + Duration::from_millis(ms))
        .filter(|at| *at > SystemTime::now())
        .ok_or_else(|| invalid("expected a time in the future"))?;
    Ok(at)
}

/// Every API key, revoked ones included, newest first.
#[utoipa::path(
    get,
    path = "/api/keys",
    tag = "auth",
    responses((status = 200, description = "The keys", body = [ApiKeyInfo]))
)]
pub async fn list_keys(State(state): State<AppState>) -> Result<Json<Vec<ApiKeyInfo>>, ApiError> {
    let keys = state.store.api_keys().await?;
    Ok(Json(keys.iter().map(ApiKeyInfo::from).collect()))
}

/// Revokes a key: refused from the next request on, on every replica.
#[utoipa::path(
    delete,
    path = "/api/keys/{id}",
    tag = "auth",
    params(("id" = String, Path, description = "The key's id")),
    responses(
        (status = 200, description = "Revoked (or already was)", body = ApiKeyInfo),
        (status = 404, description = "No such key", body = ErrorBody),
    )
)]
pub async fn revoke_key(
    State(state): State<AppState>,
    audit: audit::Context,
    Path(id): Path<String>,
) -> Result<Json<ApiKeyInfo>, ApiError> {
    let key = state
        .store
        .revoke_api_key(&id, std::time::SystemTime::now())
        .await?;
    changed(&state, audit, "api_key.revoke", &id, key, |key| {
        format!("{:?}", key.name)
    })
    .await
}

/// The answer to a change of key `id`, `key` as it now stands: 404 when
/// there is none; else its cached principal, which carries what changed, is
/// forgotten, and the change audited as `action` with `detail`.
async fn changed(
    state: &AppState,
    audit: audit::Context,
    action: &'static str,
    id: &str,
    key: Option<StoredApiKey>,
    detail: impl FnOnce(&StoredApiKey) -> String,
) -> Result<Json<ApiKeyInfo>, ApiError> {
    let key = key.ok_or_else(|| ApiError::NotFound(format!("no API key with id {id:?}")))?;
    state.auth.cache.forget_principal(&format!("key:{id}"));
    audit
        .record(
            &state.store,
            action,
            Some(id),
            Outcome::Success,
            Some(detail(&key)),
        )
        .await;
    Ok(Json(ApiKeyInfo::from(&key)))
}

/// Replaces a key's own token budgets (both: a figure left out or `null`
/// returns to the configured default). It holds from the key's next request
/// on this replica, within a second on the others; what the key has
/// already spent this day and month still counts.
#[utoipa::path(
    put,
    path = "/api/keys/{id}/budget",
    tag = "auth",
    params(("id" = String, Path, description = "The key's id")),
    request_body = TokenBudgets,
    responses(
        (status = 200, description = "The key with its new budgets", body = ApiKeyInfo),
        (status = 404, description = "No such key", body = ErrorBody),
        (status = 422, description = "A figure is out of range", body = ErrorBody),
    )
)]
pub async fn set_budget(
    State(state): State<AppState>,
    audit: audit::Context,
    Path(id): Path<String>,
    ApiJson(request): ApiJson<TokenBudgets>,
) -> Result<Json<ApiKeyInfo>, ApiError> {
    let budget = request.checked("")?;
    let key = state.store.set_api_key_budget(&id, budget).await?;
    changed(&state, audit, "api_key.budget", &id, key, |key| {
        format!(
            "{:?}: {}",
            key.name,
            budget_text(budget).unwrap_or_else(|| "the defaults".into())
        )
    })
    .await
}

/// `5000 tokens/day, 100000 tokens/month` for the audit log; `None` when
/// the key has no budget of its own.
pub(crate) fn budget_text(b: TokenBudget) -> Option<String> {
    let parts: Vec<String> = [(b.daily, "day"), (b.monthly, "month")]
        .into_iter()
        .filter_map(|(t, per)| t.map(|t| format!("{t} tokens/{per}")))
        .collect();
    (!parts.is_empty()).then(|| parts.join(", "))
}
