//! Generations: the history (a member's own, every one for an
//! administrator, by the rule of [`crate::auth::Principal::may_access`]), and a form to
//! try a prompt.
//!
//! With the script, the form streams the answer from `POST
//! /api/generate-content` (the API's own route, so its scope check and
//! budgets apply) token by token into the page. Without it, the form posts
//! here and the page comes back with the whole answer.

use std::collections::HashMap;

use axum::{
    Extension,
    extract::{Query, State},
    http::StatusCode,
    response::Response,
};
use maud::{Markup, html};
use serde::Deserialize;

use crate::{
    ai::validate::{GenerateRequest, validate},
    app::AppState,
    audit,
    console::{form::CsrfForm, guard::Viewer, layout},
    error::ApiError,
    middleware::auth::{Access, spend},
    routes::ai::{GenerationResult, generations},
    store::StoredGeneration,
};

/// Rows per page.
pub const PAGE_SIZE: u32 = 25;

/// Where the history page starts.
#[derive(Debug, Default, Deserialize)]
pub struct HistoryParams {
    /// Only generations created before this time (Unix ms).
    pub before: Option<i64>,
}

/// The prompt form as posted (without the script).
#[derive(Debug, Default, Deserialize)]
pub struct PromptForm {
    /// The prompt.
    #[serde(default)]
    pub prompt: String,
    /// Most tokens to generate.
    #[serde(default)]
    pub max_tokens: Option<u32>,
}

/// `GET /console/generations`.
pub async fn page(
    State(state): State<AppState>,
    Extension(viewer): Extension<Viewer>,
    Query(params): Query<HistoryParams>,
) -> Response {
    render(&state, &viewer, params.before, &PromptForm::default(), None).await
}

/// `POST /console/generations`: the form without the script.
pub async fn generate(
    State(state): State<AppState>,
    Extension(viewer): Extension<Viewer>,
    audit: audit::Context,
    CsrfForm(form): CsrfForm<PromptForm>,
) -> Response {
    let outcome = run(&state, &viewer, audit, &form).await;
    render(&state, &viewer, None, &form, Some(outcome)).await
}

async fn run(
    state: &AppState,
    viewer: &Viewer,
    audit: audit::Context,
    form: &PromptForm,
) -> Result<GenerationResult, ApiError> {
    spend(
        &state.limiter,
        &viewer.principal.id,
        state.config.rate_limits.ai,
    )
    .await?;
    let request = GenerateRequest {
        prompt: Some(form.prompt.clone()),
        messages: None,
        system: None,
        max_tokens: form.max_tokens,
        temperature: None,
        model: None,
        stream: false,
    };
    let g = validate(request, &state.config.openai.models)?;
    let kept = generations(state)?
        .complete(&viewer.principal, &audit, &g)
        .await?;
    Ok(GenerationResult::from(kept))
}

async fn render(
    state: &AppState,
    viewer: &Viewer,
    before: Option<i64>,
    form: &PromptForm,
    outcome: Option<Result<GenerationResult, ApiError>>,
) -> Response {
    let author = viewer.principal.author_filter();
    let history = match state.store.generations_by(author, before, PAGE_SIZE).await {
        Ok(h) => h,
        Err(e) => return layout::failure(&ApiError::from(e)),
    };
    // Who asked, for a viewer who sees everyone's.
    let names = match author {
        Some(_) => HashMap::new(),
        None => match principal_names(state).await {
            Ok(names) => names,
            Err(e) => return layout::failure(&e),
        },
    };
    let status = match &outcome {
        Some(Err(e)) => e.status(),
        _ => StatusCode::OK,
    };
    let older = (history.len() == PAGE_SIZE as usize)
        .then(|| history.last().map(|g| g.created_at))
        .flatten();
    let body = html! {
        @if viewer.may(Access::AiGenerate) {
            section aria-labelledby="try-h" {
                h2 #try-h { "Try a prompt" }
                form.stack #prompt-form method="post" action="/console/generations" data-stream="/api/generate-content" {
                    (layout::csrf(viewer))
                    label for="prompt" { "Prompt" }
                    textarea #prompt name="prompt" rows="4" required maxlength="8000" { (form.prompt) }
                    label for="max_tokens" { "Most tokens in the answer" }
                    input #max_tokens name="max_tokens" type="number" min="1" max="4096" value=(form.max_tokens.unwrap_or(128));
                    button type="submit" { "Generate" }
                }
                h3 { "Answer" }
                @let (answer, error) = match &outcome {
                    Some(Ok(r)) => (r.text.clone(), None),
                    Some(Err(e)) => (String::new(), Some(e)),
                    None => (String::new(), None),
                };
                @if let Some(e) = error { (layout::action_error(e)) }
                p.error #answer-error role="alert" hidden {}
                output #answer for="prompt" aria-live="polite" { (answer) }
            }
        }
        section aria-labelledby="history-h" {
            @if author.is_some() {
                h2 #history-h { "Your history" }
            } @else {
                h2 #history-h { "Every generation" }
            }
            @if history.is_empty() {
                p { "Nothing has been generated yet." }
            } @else {
                (layout::table("Generations", html! {
                    table {
                        thead { tr {
                            th scope="col" { "When" }
                            @if author.is_none() { th scope="col" { "By" } }
                            th scope="col" { "Status" } th scope="col" { "Prompt" }
                            th scope="col" { "Answer" } th scope="col" { "Tokens" } th scope="col" { "Took" }
                        } }
                        tbody { @for g in &history { (row(g, author.is_none().then_some(&names))) } }
                    }
                }))
            }
            nav.pager aria-label="Pages" {
                @if before.is_some() { a href="/console/generations" { "Newest" } }
                @if let Some(t) = older { a href={ "/console/generations?before=" (t) } { "Older" } }
            }
        }
    };
    layout::respond(
        status,
        layout::page(viewer, "Generations", "Generations", body),
    )
}

/// `user:<id>` and `key:<id>` -> the user's or the key's name.
async fn principal_names(state: &AppState) -> Result<HashMap<String, String>, ApiError> {
    let users = state.store.users().await?;
    let keys = state.store.api_keys().await?;
    Ok(users
        .into_iter()
        .map(|u| (format!("user:{}", u.id), u.username))
        .chain(keys.into_iter().map(|k| (format!("key:{}", k.id), k.name)))
        .collect())
}

/// One generation; with `names`, who asked for it too.
fn row(g: &StoredGeneration, names: Option<&HashMap<String, String>>) -> Markup {
    let prompt = g
        .generation
        .messages
        .as_array()
        .and_then(|m| m.iter().rev().find(|m| m["role"] == "user"))
        .and_then(|m| m["content"].as_str())
        .unwrap_or("");
    let answer = g
        .generation
        .output
        .as_deref()
        .or(g.generation.error.as_deref())
        .unwrap_or("");
    html! {
        tr {
            td { (layout::time(g.created_at)) }
            @if let Some(names) = names {
                @let by = g.created_by.as_deref().unwrap_or("—");
                td { (names.get(by).map_or(by, String::as_str)) }
            }
            td { (layout::badge(&g.status)) }
            td { (layout::short(prompt, 120)) }
            td { (layout::short(answer, 200)) }
            td { (g.generation.completion_tokens.map_or("—".to_owned(), |t| t.to_string())) }
            td { (g.generation.duration_ms) " ms" }
        }
    }
}
