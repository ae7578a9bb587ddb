//! `POST /api/users`, `GET /api/users`: accounts, managed by administrators.

use std::time::SystemTime;

use axum::{Json, extract::State, http::StatusCode};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{
    app::AppState,
    audit::{self, Outcome},
    auth::{Role, valid_username},
    config::MIN_PASSWORD_LEN,
    error::{ApiError, ErrorBody},
    extract::ApiJson,
    routes::rfc3339,
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
}

impl From<&User> for UserInfo {
    fn from(u: &User) -> Self {
        Self {
            id: u.id.clone(),
            username: u.username.clone(),
            role: u.role.clone(),
            created_at: rfc3339(u.created_at),
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
    let length = request.password.chars().count();
    if !(MIN_PASSWORD_LEN..=1024).contains(&length) {
        return Err(ApiError::Validation {
            field: "password".into(),
            message: format!("expected {MIN_PASSWORD_LEN} to 1024 characters"),
        });
    }
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
