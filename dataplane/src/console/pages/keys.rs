//! API keys (administrators): create one with its scopes and an optional
//! expiry (the key is shown once, in the answer to the form, which is never
//! cached), list them with their expiry, last use and state, revoke one.

use std::{
    collections::{HashMap, HashSet},
    time::SystemTime,
};

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
    auth::Scope,
    console::{form::CsrfForm, guard::Viewer, layout},
    error::ApiError,
    routes::{
        api_keys::{
            ApiKeyInfo, CreateKeyRequest, CreatedKey, TokenBudgets, create_key, list_keys,
            revoke_key,
        },
        rfc3339,
    },
    store::unix_millis,
};

/// The creation form as posted: a checkbox per scope.
#[derive(Debug, Default, Deserialize)]
pub struct NewKey {
    /// What to call it.
    #[serde(default)]
    pub name: String,
    /// Checked: the `email` scope.
    pub email: Option<String>,
    /// Checked: the `ai` scope.
    pub ai: Option<String>,
    /// Checked: the `admin` scope.
    pub admin: Option<String>,
    /// Checked: the `metrics` scope (the detailed health report).
    pub metrics: Option<String>,
    /// When it stops working (datetime-local, UTC); empty: never.
    #[serde(default)]
    pub expires_at: String,
    /// Its own daily token budget; empty: the default.
    #[serde(default)]
    pub daily_tokens: String,
    /// Its own monthly token budget; empty: the default.
    #[serde(default)]
    pub monthly_tokens: String,
}

/// A budget field of the form: empty is none; the API's handler checks the
/// range.
fn tokens_field(text: &str, field: &str) -> Result<Option<u64>, ApiError> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    text.parse().map(Some).map_err(|_| ApiError::Validation {
        field: field.into(),
        message: "expected a whole number of tokens, or nothing for the default".into(),
    })
}

/// `GET /console/keys`.
pub async fn page(State(state): State<AppState>, Extension(viewer): Extension<Viewer>) -> Response {
    render(
        &state,
        &viewer,
        StatusCode::OK,
        &NewKey::default(),
        None,
        None,
    )
    .await
}

/// `POST /console/keys`: through the API's own handler.
pub async fn create(
    State(state): State<AppState>,
    Extension(viewer): Extension<Viewer>,
    audit: audit::Context,
    CsrfForm(form): CsrfForm<NewKey>,
) -> Response {
    let scopes = [
        (Scope::Email, &form.email),
        (Scope::Ai, &form.ai),
        (Scope::Admin, &form.admin),
        (Scope::Metrics, &form.metrics),
    ]
    .into_iter()
    .filter(|(_, checked)| checked.is_some())
    .map(|(s, _)| s.as_str().to_owned())
    .collect();
    // The form's datetime-local, read as UTC, becomes the API's RFC 3339;
    // the API's own handler then decides whether it is acceptable.
    let expires_at = match layout::filter_time("expires_at", &Some(form.expires_at.clone())) {
        Ok(t) => t.map(rfc3339),
        Err(e) => return render(&state, &viewer, e.status(), &form, None, Some(e)).await,
    };
    let budget = match (
        tokens_field(&form.daily_tokens, "budget.daily_tokens"),
        tokens_field(&form.monthly_tokens, "budget.monthly_tokens"),
    ) {
        (Ok(daily_tokens), Ok(monthly_tokens)) => TokenBudgets {
            daily_tokens,
            monthly_tokens,
        },
        (Err(e), _) | (_, Err(e)) => {
            return render(&state, &viewer, e.status(), &form, None, Some(e)).await;
        }
    };
    let request = CreateKeyRequest {
        name: form.name.clone(),
        scopes,
        expires_at,
        budget: Some(budget),
    };
    match create_key(
        State(state.clone()),
        Extension(viewer.principal.clone()),
        audit,
        crate::extract::ApiJson(request),
    )
    .await
    {
        Ok((_, axum::Json(created))) => {
            render(
                &state,
                &viewer,
                StatusCode::CREATED,
                &NewKey::default(),
                Some(created),
                None,
            )
            .await
        }
        Err(e) => render(&state, &viewer, e.status(), &form, None, Some(e)).await,
    }
}

/// `POST /console/keys/{id}/revoke`.
pub async fn revoke(
    State(state): State<AppState>,
    Extension(viewer): Extension<Viewer>,
    audit: audit::Context,
    Path(id): Path<String>,
    CsrfForm(super::login::Empty {}): CsrfForm<super::login::Empty>,
) -> Response {
    match revoke_key(State(state.clone()), audit, Path(id)).await {
        Ok(_) => Redirect::to("/console/keys").into_response(),
        Err(e) => {
            render(
                &state,
                &viewer,
                e.status(),
                &NewKey::default(),
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
    form: &NewKey,
    created: Option<CreatedKey>,
    error: Option<ApiError>,
) -> Response {
    let keys: Vec<ApiKeyInfo> = match list_keys(State(state.clone())).await {
        Ok(axum::Json(keys)) => keys,
        Err(e) => return layout::failure(&e),
    };
    // "Created by" as people read it: a user's or a key's name, not its id.
    let users = match state.store.users().await {
        Ok(users) => users,
        Err(e) => return layout::failure(&ApiError::from(e)),
    };
    let disabled: HashSet<String> = users
        .iter()
        .filter(|u| u.disabled_at.is_some())
        .map(|u| u.id.clone())
        .collect();
    // Both RFC 3339 in UTC to the millisecond, so they compare as text.
    let now = rfc3339(unix_millis(SystemTime::now()));
    let state_of = |k: &ApiKeyInfo| {
        if k.revoked_at.is_some() {
            "revoked"
        } else if k.expires_at.as_deref().is_some_and(|t| t <= now.as_str()) {
            "expired"
        } else if k.owner_id.as_ref().is_none_or(|o| disabled.contains(o)) {
            "suspended"
        } else {
            "active"
        }
    };
    let names: HashMap<String, String> = users
        .into_iter()
        .map(|u| (format!("user:{}", u.id), u.username))
        .chain(
            keys.iter()
                .map(|k| (format!("key:{}", k.id), k.name.clone())),
        )
        .collect();
    let body = html! {
        @if let Some(c) = &created {
            section.created aria-labelledby="new-key-h" {
                h2 #new-key-h { "Key “" (c.info.name) "” created" }
                p role="status" { "Copy it now: it is not shown again, and SecureVault keeps only its digest." }
                p { code #new-key { (c.key) } }
            }
        }
        section aria-labelledby="create-h" {
            h2 #create-h { "Create a key" }
            @if let Some(e) = &error { (layout::action_error(e)) }
            form.stack method="post" action="/console/keys" {
                (layout::csrf(viewer))
                label for="name" { "Name" }
                input #name name="name" type="text" required maxlength="100" value=(form.name);
                fieldset {
                    legend { "Scopes" }
                    @for (scope, checked) in [("email", &form.email), ("ai", &form.ai), ("admin", &form.admin), ("metrics", &form.metrics)] {
                        div.check {
                            input id={ "scope-" (scope) } name=(scope) type="checkbox" value="on" checked[checked.is_some()];
                            label for={ "scope-" (scope) } { (scope) }
                        }
                    }
                }
                label for="expires_at" { "Expires (UTC, optional)" }
                input #expires_at name="expires_at" type="datetime-local" value=(form.expires_at);
                fieldset {
                    legend { "Token budget (optional; empty: the server's default)" }
                    label for="daily_tokens" { "Tokens per day" }
                    input #daily_tokens name="daily_tokens" type="number" min="1" inputmode="numeric" value=(form.daily_tokens);
                    label for="monthly_tokens" { "Tokens per month" }
                    input #monthly_tokens name="monthly_tokens" type="number" min="1" inputmode="numeric" value=(form.monthly_tokens);
                }
                button type="submit" { "Create key" }
            }
        }
        section aria-labelledby="keys-h" {
            h2 #keys-h { "Keys" }
            (layout::table("API keys", html! {
                table {
                    thead { tr {
                        th scope="col" { "Name" } th scope="col" { "Starts with" } th scope="col" { "Scopes" }
                        th scope="col" { "Created by" } th scope="col" { "Created" } th scope="col" { "Expires" }
                        th scope="col" { "Last used" } th scope="col" { "Token budget" } th scope="col" { "State" } th scope="col" { span.visually-hidden { "Action" } }
                    } }
                    tbody {
                        @for k in &keys {
                            tr {
                                th scope="row" { (k.name) }
                                td { code { (k.prefix) "…" } }
                                td { (k.scopes.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")) }
                                td { (names.get(&k.created_by).unwrap_or(&k.created_by)) }
                                td { (layout::time_text(&k.created_at)) }
                                td { @if let Some(t) = &k.expires_at { (layout::time_text(t)) } @else { "never" } }
                                td { @if let Some(t) = &k.last_used_at { (layout::time_text(t)) } @else { "never used" } }
                                td { (budget_text(&k.budget)) }
                                td { (layout::badge(state_of(k))) }
                                td {
                                    @if k.revoked_at.is_none() {
                                        form method="post" action={ "/console/keys/" (k.id) "/revoke" } {
                                            (layout::csrf(viewer))
                                            button.danger type="submit" aria-label={ "Revoke " (k.name) } { "Revoke" }
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
    layout::respond(status, layout::page(viewer, "API keys", "API keys", body))
}

/// A key's or an account's own budgets as the tables show them:
/// `5000/day, default/month`.
pub(super) fn budget_text(b: &TokenBudgets) -> String {
    let figure = |t: Option<u64>| t.map_or_else(|| "default".to_owned(), |t| t.to_string());
    format!(
        "{}/day, {}/month",
        figure(b.daily_tokens),
        figure(b.monthly_tokens)
    )
}
