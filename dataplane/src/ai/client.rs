//! The client for the OpenAI-compatible model server: async-openai's request
//! and response types over our own reqwest client.
//!
//! async-openai retries by itself (three times, waiting as long as any
//! `Retry-After` says) and reports a non-2xx answer without its headers, and
//! llama.cpp's error bodies (a numeric `code`) do not even parse into its
//! error type. So the HTTP exchange is ours: a tower service that sends each
//! request once and turns a non-2xx answer into [`UpstreamStatus`], with the
//! status and `Retry-After`. Retrying, within one
//! deadline, is [`super::generate`]'s decision.

use std::time::Duration;

use async_openai::{
    Client, config::OpenAIConfig, error::OpenAIError, middleware::HttpRequestFactory,
};
use reqwest::header::RETRY_AFTER;

use crate::config::UpstreamConfig;

/// The model server answered with a status other than 2xx.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the model server answered {status}")]
pub struct UpstreamStatus {
    /// The HTTP status.
    pub status: u16,
    /// Its `Retry-After`, when it gave one in seconds.
    pub retry_after: Option<Duration>,
}

impl UpstreamStatus {
    /// Whether asking again may help: rate limited, overloaded or failing.
    pub fn is_retryable(&self) -> bool {
        self.status == 429 || self.status == 408 || self.status >= 500
    }
}

/// Why the client could not be built.
#[derive(Debug, thiserror::Error)]
#[error("model server HTTP client: {0}")]
pub struct ClientError(#[from] reqwest::Error);

/// The model server: the chat client, and a plain reachability check.
#[derive(Clone)]
pub struct ModelServer {
    /// Chat completions, one HTTP attempt per call.
    pub chat: Client<OpenAIConfig>,
    http: reqwest::Client,
    models_url: String,
    api_key: Option<String>,
}

impl ModelServer {
    /// `GET {base}/models`: any 2xx means the server is there. Its body is
    /// not parsed: servers differ in what they put there (llama.cpp's lacks
    /// fields async-openai requires).
    pub async fn ping(&self) -> Result<(), String> {
        let mut request = self.http.get(&self.models_url);
        if let Some(key) = &self.api_key {
            request = request.bearer_auth(key);
        }
        let response = request.send().await.map_err(|e| {
            if e.is_connect() {
                format!("the model server is unreachable: {e}")
            } else {
                format!("the model server failed: {e}")
            }
        })?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(format!("GET /models answered {}", response.status()))
        }
    }
}

/// A client for `config`'s server. Timeouts are the caller's: one deadline
/// covers the whole request, retries and streaming included.
pub fn client(config: &UpstreamConfig) -> Result<ModelServer, ClientError> {
    crate::tls::install_crypto_provider();
    let http = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let base = config.base_url.as_str().trim_end_matches('/').to_owned();
    let api_key = config.api_key.as_ref().map(|k| k.expose().to_owned());
    let models_url = format!("{base}/models");
    let openai = OpenAIConfig::new()
        .with_api_base(base)
        .with_api_key(api_key.clone().unwrap_or_default());
    let sender = http.clone();
    let service = tower::service_fn(move |factory: HttpRequestFactory| {
        let http = sender.clone();
        async move {
            let request = factory.build().await?;
            let response = http.execute(request).await.map_err(OpenAIError::Reqwest)?;
            if response.status().is_success() {
                return Ok(response);
            }
            let status = response.status().as_u16();
            let retry_after = response
                .headers()
                .get(RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            // The body is dropped unread: it may echo the prompt, which is
            // neither logged nor returned.
            Err(OpenAIError::Boxed(Box::new(UpstreamStatus {
                status,
                retry_after,
            })))
        }
    });
    Ok(ModelServer {
        chat: Client::build(http.clone(), openai).with_http_service(service),
        http,
        models_url,
        api_key,
    })
}

/// The [`UpstreamStatus`] inside `error`, if the server answered non-2xx.
pub fn upstream_status(error: &OpenAIError) -> Option<&UpstreamStatus> {
    match error {
        OpenAIError::Boxed(inner) => inner.downcast_ref::<UpstreamStatus>(),
        _ => None,
    }
}
