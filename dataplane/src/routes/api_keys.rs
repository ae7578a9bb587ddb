//! `POST /api/keys`, `GET /api/keys`, `DELETE /api/keys/{id}`: API keys for
//! machines, managed by administrators. A key acts for its creator's
//! account and stops with it (see [`crate::auth::api_keys`]).

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
    store::StoredApiKey,
};

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
    let (stored, key) = api_keys::create(&state.store, name, &scopes, &caller, expires_at).await?;
    let until = stored
        .expires_at
        .map_or_else(String::new, |t| format!(", expiring {}", rfc3339(t)));
    audit
        .record(
            &state.store,
            "api_key.create",
            Some(&stored.id),
            Outcome::Success,
            Some(format!("{name:?} with scopes {}{until}", stored.scopes)),
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
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no API key with id {id:?}")))?;
    state.auth.cache.forget_principal(&format!("key:{id}"));
    audit
        .record(
            &state.store,
            "api_key.revoke",
            Some(&id),
            Outcome::Success,
            Some(format!("{:?}", key.name)),
        )
        .await;
    Ok(Json(ApiKeyInfo::from(&key)))
}
