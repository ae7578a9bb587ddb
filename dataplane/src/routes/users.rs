//! `POST /api/users`, `GET /api/users`, `PATCH /api/users/{id}`: accounts,
//! managed by administrators.

use std::time::SystemTime;

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
    auth::{Principal, Role, valid_username},
    config::MIN_PASSWORD_LEN,
    error::{ApiError, ErrorBody},
    extract::ApiJson,
    routes::{
        api_keys::{TokenBudgets, budget_text},
        rfc3339,
    },
    store::User,
};

/// An account to create.
#[derive(Debug, Deserialize, ToSchema)]
pub struct CreateUserRequest {
    /// 1–64 lower-case letters, digits or `._-@`.
    pub username: String,
    /// At least 12 characters.
    pub password: String,
    /// `admin` or `member` (email and AI only).
    pub role: Role,
}

/// An account as listed (never its password hash).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct UserInfo {
    /// Its id (`user:<id>` in the audit trail).
    pub id: String,
    /// Its name.
    pub username: String,
    /// `admin` or `member`.
    pub role: String,
    /// When it was created (RFC 3339).
    pub created_at: String,
    /// When it was disabled (RFC 3339); absent while it can sign in.
    pub disabled_at: Option<String>,
    /// Its own token budgets; `null` figures: the configured defaults.
    pub budget: TokenBudgets,
}

/// A change to an account: disable or enable it, set a new password
/// (which ends its sessions), or replace its own token budgets. Absent
/// fields stay as they are.
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct UpdateUserRequest {
    /// `true` disables the account and ends its sessions; `false` enables it.
    pub disabled: Option<bool>,
    /// A new password, at least 12 characters.
    pub password: Option<String>,
    /// Its own token budgets, both replaced (a figure left out or `null`
    /// returns to `AI_BUDGET_ACCOUNT_*_TOKENS`); they cover its sessions and
    /// every key acting for it.
    pub budget: Option<TokenBudgets>,
}

impl From<&User> for UserInfo {
    fn from(u: &User) -> Self {
        Self {
            id: u.id.clone(),
            username: u.username.clone(),
            role: u.role.clone(),
            created_at: rfc3339(u.created_at),
            disabled_at: u.disabled_at.map(rfc3339),
            budget: u.budget.into(),
        }
    }
}

/// Creates an account.
#[utoipa::path(
    post,
    path = "/api/users",
    tag = "auth",
    request_body = CreateUserRequest,
    responses(
        (status = 201, description = "Created", body = UserInfo),
        (status = 422, description = "A field is invalid or the name is taken", body = ErrorBody),
    )
)]
pub async fn create_user(
    State(state): State<AppState>,
    audit: audit::Context,
    ApiJson(request): ApiJson<CreateUserRequest>,
) -> Result<(StatusCode, Json<UserInfo>), ApiError> {
    let username = request.username.trim().to_owned();
    valid_username(&username).map_err(|message| ApiError::Validation {
        field: "username".into(),
        message,
    })?;
    check_password(&request.password)?;
    let hash = state.auth.passwords.hash(&request.password).await?;
    let user = state
        .store
        .insert_user(&username, &hash, request.role.as_str(), SystemTime::now())
        .await?
        .ok_or_else(|| ApiError::Validation {
            field: "username".into(),
            message: format!("the name {username:?} is taken"),
        })?;
    audit
        .record(
            &state.store,
            "user.create",
            Some(&username),
            Outcome::Success,
            Some(format!("role {}", user.role)),
        )
        .await;
    Ok((StatusCode::CREATED, Json(UserInfo::from(&user))))
}

/// Every account, oldest first.
#[utoipa::path(
    get,
    path = "/api/users",
    tag = "auth",
    responses((status = 200, description = "The accounts", body = [UserInfo]))
)]
pub async fn list_users(State(state): State<AppState>) -> Result<Json<Vec<UserInfo>>, ApiError> {
    let users = state.store.users().await?;
    Ok(Json(users.iter().map(UserInfo::from).collect()))
}

/// Disables or enables an account, sets its password, or replaces its own
/// token budgets (held from its next request on). An administrator
/// cannot disable their own account, nor the last administrator who can
/// sign in: nobody would be left to enable it again. Disabling an account
/// refuses its sessions and its API keys from the next request on. No
/// account enables itself, nor does a key acting for it: that is another
/// administrator's decision.
#[utoipa::path(
    patch,
    path = "/api/users/{id}",
    tag = "auth",
    params(("id" = String, Path, description = "The user's id")),
    request_body = UpdateUserRequest,
    responses(
        (status = 200, description = "The account as it now stands", body = UserInfo),
        (status = 403, description = "The caller would enable its own account", body = ErrorBody),
        (status = 404, description = "No such user", body = ErrorBody),
        (status = 422, description = "A field is invalid, or the change would lock everyone out", body = ErrorBody),
    )
)]
pub async fn update_user(
    State(state): State<AppState>,
    Extension(caller): Extension<Principal>,
    audit: audit::Context,
    Path(id): Path<String>,
    ApiJson(request): ApiJson<UpdateUserRequest>,
) -> Result<Json<UserInfo>, ApiError> {
    let user = state
        .store
        .user_by_id(&id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no user with id {id:?}")))?;
    if request.disabled.is_none() && request.password.is_none() && request.budget.is_none() {
        return Err(ApiError::Validation {
            field: "disabled".into(),
            message: "give `disabled`, `password` or `budget`".into(),
        });
    }
    let budget = request.budget.map(|b| b.checked("budget.")).transpose()?;
    // Checked before anything is written: a refused request changes nothing.
    // A disabled account's credentials are refused already; this holds even
    // in the second another replica may still remember one (auth/cache.rs).
    if request.disabled == Some(false) && caller.account == user.id {
        return Err(ApiError::Forbidden(
            "an account cannot enable itself: another administrator must do it".into(),
        ));
    }
    let now = SystemTime::now();
    if let Some(password) = &request.password {
        check_password(password)?;
        let hash = state.auth.passwords.hash(password).await?;
        state.store.set_password(&user.id, &hash, now).await?;
        audit
            .record(
                &state.store,
                "user.password_reset",
                Some(&user.username),
                Outcome::Success,
                Some("sessions ended".into()),
            )
            .await;
    }
    match request.disabled {
        Some(true) if user.disabled_at.is_none() => {
            if audit.actor == format!("user:{}", user.id) {
                return Err(ApiError::Validation {
                    field: "disabled".into(),
                    message: "you cannot disable your own account".into(),
                });
            }
            if user.role == Role::Admin.as_str() && state.store.enabled_admins().await? <= 1 {
                return Err(ApiError::Validation {
                    field: "disabled".into(),
                    message: "this is the last administrator who can sign in".into(),
                });
            }
            state.store.set_disabled(&user.id, Some(now), now).await?;
            audit
                .record(
                    &state.store,
                    "user.disable",
                    Some(&user.username),
                    Outcome::Success,
                    Some("sessions ended".into()),
                )
                .await;
        }
        Some(false) if user.disabled_at.is_some() => {
            state.store.set_disabled(&user.id, None, now).await?;
            audit
                .record(
                    &state.store,
                    "user.enable",
                    Some(&user.username),
                    Outcome::Success,
                    None,
                )
                .await;
        }
        _ => {}
    }
    if let Some(budget) = budget {
        state.store.set_user_budget(&user.id, budget, now).await?;
        audit
            .record(
                &state.store,
                "user.budget",
                Some(&user.username),
                Outcome::Success,
                Some(budget_text(budget).unwrap_or_else(|| "the defaults".into())),
            )
            .await;
    }
    // This replica forgets the account's sessions and keys now; the others
    // remember them for at most the cache's second (auth/cache.rs).
    state.auth.cache.forget_account(&user.id);
    let user = state
        .store
        .user_by_id(&id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no user with id {id:?}")))?;
    Ok(Json(UserInfo::from(&user)))
}

fn check_password(password: &str) -> Result<(), ApiError> {
    let length = password.chars().count();
    if !(MIN_PASSWORD_LEN..=1024).contains(&length) {
        return Err(ApiError::Validation {
            field: "password".into(),
            message: format!("expected {MIN_PASSWORD_LEN} to 1024 characters"),
        });
    }
    Ok(())
}
