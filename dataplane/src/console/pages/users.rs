//! Users (administrators): create an account, disable or enable one, set a
//! new password. Every action goes through the API's own handlers.

use axum::{
    Extension,
    extract::{Path, State},
    http::StatusCode,
    response::{IntoResponse, Redirect, Response},
};
use maud::html;
use serde::Deserialize;

use crate::{
    app::AppState,
    audit,
    auth::Role,
    console::{form::CsrfForm, guard::Viewer, layout},
    error::ApiError,
    routes::users::{
        CreateUserRequest, UpdateUserRequest, UserInfo, create_user, list_users, update_user,
    },
};

/// The creation form as posted.
#[derive(Debug, Default, Deserialize)]
pub struct NewUser {
    /// The user name.
    #[serde(default)]
    pub username: String,
    /// The first password.
    #[serde(default)]
    pub password: String,
    /// `admin` or `member`.
    #[serde(default)]
    pub role: String,
}

/// A change to one account, as posted by its row's buttons.
#[derive(Debug, Default, Deserialize)]
pub struct Change {
    /// `disable`, `enable` or `password`.
    #[serde(default)]
    pub action: String,
    /// The new password, for `password`.
    #[serde(default)]
    pub password: String,
}

/// `GET /console/users`.
pub async fn page(State(state): State<AppState>, Extension(viewer): Extension<Viewer>) -> Response {
    render(
        &state,
        &viewer,
        StatusCode::OK,
        &NewUser::default(),
        None,
        None,
    )
    .await
}

/// `POST /console/users`.
pub async fn create(
    State(state): State<AppState>,
    Extension(viewer): Extension<Viewer>,
    audit: audit::Context,
    CsrfForm(form): CsrfForm<NewUser>,
) -> Response {
    let role = match form.role.as_str() {
        "admin" => Role::Admin,
        _ => Role::Member,
    };
    let request = CreateUserRequest {
        username: form.username.clone(),
        password: form.password.clone(),
        role,
    };
    match create_user(
        State(state.clone()),
        audit,
        crate::extract::ApiJson(request),
    )
    .await
    {
        Ok((_, axum::Json(user))) => {
            let done = format!("Account “{}” created.", user.username);
            render(
                &state,
                &viewer,
                StatusCode::CREATED,
                &NewUser::default(),
                Some(done),
                None,
            )
            .await
        }
        Err(e) => {
            // The password is never sent back into the page.
            let form = NewUser {
                password: String::new(),
                ..form
            };
            render(&state, &viewer, e.status(), &form, None, Some(e)).await
        }
    }
}

/// `POST /console/users/{id}`.
pub async fn update(
    State(state): State<AppState>,
    Extension(viewer): Extension<Viewer>,
    audit: audit::Context,
    Path(id): Path<String>,
    CsrfForm(change): CsrfForm<Change>,
) -> Response {
    let request = match change.action.as_str() {
        "disable" => UpdateUserRequest {
            disabled: Some(true),
            ..UpdateUserRequest::default()
        },
        "enable" => UpdateUserRequest {
            disabled: Some(false),
            ..UpdateUserRequest::default()
        },
        "password" => UpdateUserRequest {
            password: Some(change.password),
            ..UpdateUserRequest::default()
        },
        other => {
            let e = ApiError::Validation {
                field: "action".into(),
                message: format!("{other:?} is not disable, enable or password"),
            };
            return render(
                &state,
                &viewer,
                e.status(),
                &NewUser::default(),
                None,
                Some(e),
            )
            .await;
        }
    };
    match update_user(
        State(state.clone()),
        Extension(viewer.principal.clone()),
        audit,
        Path(id),
        crate::extract::ApiJson(request),
    )
    .await
    {
        Ok(_) => Redirect::to("/console/users").into_response(),
        Err(e) => {
            render(
                &state,
                &viewer,
                e.status(),
                &NewUser::default(),
                None,
                Some(e),
            )
            .await
        }
    }
}

async fn render(
    state: &AppState,
    viewer: &Viewer,
    status: StatusCode,
    form: &NewUser,
    done: Option<String>,
    error: Option<ApiError>,
) -> Response {
    let users: Vec<UserInfo> = match list_users(State(state.clone())).await {
        Ok(axum::Json(users)) => users,
        Err(e) => return layout::failure(&e),
    };
    let body = html! {
        @if let Some(done) = &done { p.notice role="status" { (done) } }
        @if let Some(e) = &error { (layout::action_error(e)) }
        section aria-labelledby="create-h" {
            h2 #create-h { "Create an account" }
            form.stack method="post" action="/console/users" {
                (layout::csrf(viewer))
                label for="username" { "User name" }
                input #username name="username" type="text" required autocomplete="off" autocapitalize="none" value=(form.username);
                label for="password" { "Password" }
                input #password name="password" type="password" required minlength="12" autocomplete="new-password";
                label for="role" { "Role" }
                select #role name="role" {
                    option value="member" selected[form.role != "admin"] { "member (email and AI)" }
                    option value="admin" selected[form.role == "admin"] { "admin (everything)" }
                }
                button type="submit" { "Create user" }
            }
        }
        section aria-labelledby="users-h" {
            h2 #users-h { "Accounts" }
            (layout::table("All accounts", html! {
                table {
                    thead { tr {
                        th scope="col" { "User name" } th scope="col" { "Role" } th scope="col" { "Created" } th scope="col" { "Token budget" }
                        th scope="col" { "State" } th scope="col" { span.visually-hidden { "Actions" } }
                    } }
                    tbody {
                        @for u in &users {
                            tr {
                                th scope="row" { (u.username) }
                                td { (u.role) }
                                td { (layout::time_text(&u.created_at)) }
                                td { (super::keys::budget_text(&u.budget)) }
                                td { @if u.disabled_at.is_some() { (layout::badge("disabled")) } @else { (layout::badge("active")) } }
                                td.actions {
                                    form method="post" action={ "/console/users/" (u.id) } {
                                        (layout::csrf(viewer))
                                        @if u.disabled_at.is_some() {
                                            input type="hidden" name="action" value="enable";
                                            button type="submit" aria-label={ "Enable " (u.username) } { "Enable" }
                                        } @else {
                                            input type="hidden" name="action" value="disable";
                                            button.danger type="submit" aria-label={ "Disable " (u.username) } { "Disable" }
                                        }
                                    }
                                    details {
                                        summary { "Reset password" span.visually-hidden { " of " (u.username) } }
                                        form method="post" action={ "/console/users/" (u.id) } {
                                            (layout::csrf(viewer))
                                            input type="hidden" name="action" value="password";
                                            label for={ "pw-" (u.id) } { "New password for " (u.username) }
                                            input id={ "pw-" (u.id) } name="password" type="password" required minlength="12" autocomplete="new-password";
                                            button type="submit" { "Set password" }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }))
        }
    };
    layout::respond(status, layout::page(viewer, "Users", "Users", body))
}
