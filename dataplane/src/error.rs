//! [`ApiError`]: every error answer of the API, as
//! `{"error": {"code": …, "message": …, "field": …}}`.
//!
//! Client errors say what to fix and are not logged. Server errors answer a
//! generic message; the detail goes into the response's extensions, where
//! `middleware::http_metrics` logs it with the request id. A stack trace or an
//! internal message never reaches the client.

use axum::{
    Json,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::Serialize;
use utoipa::ToSchema;

/// An error answer. `code` values are stable: clients and dashboards match on them.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the request cannot be parsed (malformed JSON, bad header…).
    #[error("{message}")]
    BadRequest {
        /// What is wrong, for the client.
        message: String,
        /// The offending field or header, when one is to blame.
        field: Option<String>,
    },
    /// 401: no credentials, or unknown, expired or revoked ones.
    #[error("{0}")]
    Unauthorized(String),
    /// 403: authenticated, but without the scope this route needs.
    #[error("{0}")]
    Forbidden(String),
    /// 403: a call by the session cookie that changes something and does not
    /// show it comes from our own pages (`middleware::csrf`).
    #[error("{message}")]
    CrossSite {
        /// What is missing or wrong, and what to send instead.
        message: String,
        /// The request header at fault: `origin` or `x-csrf-token`.
        header: String,
    },
    /// 429: a rate limit or a login block; `Retry-After` says when to retry.
    #[error("{message}")]
    TooManyRequests {
        /// Which limit, and what to do.
        message: String,
        /// Whole seconds until a retry can succeed (at least 1).
        retry_after_secs: u64,
    },
    /// 429: a token budget of the key or account is spent
    /// (`ai::budget`); `Retry-After` says when it resets.
    #[error("{message}")]
    BudgetExceeded {
        /// Which budget: `key_daily`, `key_monthly`, `account_daily` or
        /// `account_monthly`.
        budget: &'static str,
        /// Its limit, what is left, what the request needed, and what to do.
        message: String,
        /// When it resets (RFC 3339).
        resets_at: String,
        /// Whole seconds until then (at least 1).
        retry_after_secs: u64,
    },
    /// 404: no route or no such object.
    #[error("{0}")]
    NotFound(String),
    /// 409: the object is not in a state that allows this (e.g. retrying an
    /// email that has not failed).
    #[error("{0}")]
    Conflict(String),
    /// 405: the route exists, the method does not.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// 413: the body is larger than `MAX_BODY_BYTES`.
    #[error("{0}")]
    PayloadTooLarge(String),
    /// 415: the body is not JSON.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// 422: well-formed but invalid input.
    #[error("{message}")]
    Validation {
        /// The field to fix.
        field: String,
        /// How to fix it.
        message: String,
    },
    /// 422: a recipient is on the suppression list; nothing was queued.
    #[error("{message}")]
    Suppressed {
        /// The recipient's field, e.g. `to[1]`.
        field: String,
        /// Which address, why, and how to lift it.
        message: String,
    },
    /// 503: a dependency is down or the request ran out of time.
    #[error("{0}")]
    Unavailable(String),
    /// 502: a server we depend on (the model server) failed or answered
    /// something unusable.
    #[error("{0}")]
    BadGateway(String),
    /// 504: a server we depend on did not answer in time.
    #[error("{0}")]
    GatewayTimeout(String),
    /// 500: a bug or an unexpected failure; the detail is logged, not sent.
    #[error("internal error: {0}")]
    Internal(String),
}

/// The detail of a server error, carried in the response's extensions to the
/// logging middleware.
#[derive(Debug, Clone)]
pub struct ErrorDetail(pub String);

/// The JSON body of every error answer.
#[derive(Debug, Serialize, serde::Deserialize, ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorObject,
}

/// The error itself.
#[derive(Debug, Serialize, serde::Deserialize, ToSchema)]
pub struct ErrorObject {
    /// Stable, machine-readable: `not_found`, `invalid_json`, `validation_failed`…
    pub code: String,
    /// For people: what went wrong and, for client errors, what to fix.
    pub message: String,
    /// The request field (or header) at fault, if any.
    pub field: Option<String>,
    /// For `token_budget_exceeded`: the budget that is spent (`key_daily`,
    /// `key_monthly`, `account_daily`, `account_monthly`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<String>,
    /// For `token_budget_exceeded`: when that budget resets (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resets_at: Option<String>,
}

impl ApiError {
    /// The HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest { .. } => StatusCode::BAD_REQUEST,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) | Self::CrossSite { .. } => StatusCode::FORBIDDEN,
            Self::TooManyRequests { .. } | Self::BudgetExceeded { .. } => {
                StatusCode::TOO_MANY_REQUESTS
            }
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Validation { .. } | Self::Suppressed { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::BadGateway(_) => StatusCode::BAD_GATEWAY,
            Self::GatewayTimeout(_) => StatusCode::GATEWAY_TIMEOUT,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable `code` of the JSON body, also used as a log field.
    pub fn code(&self) -> &'static str {
        match self {
            Self::BadRequest { .. } => "bad_request",
            Self::Unauthorized(_) => "unauthorized",
            Self::Forbidden(_) => "forbidden",
            Self::CrossSite { .. } => "csrf_refused",
            Self::TooManyRequests { .. } => "rate_limited",
            Self::BudgetExceeded { .. } => "token_budget_exceeded",
            Self::NotFound(_) => "not_found",
            Self::Conflict(_) => "conflict",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::PayloadTooLarge(_) => "payload_too_large",
            Self::UnsupportedMediaType(_) => "unsupported_media_type",
            Self::Validation { .. } => "validation_failed",
            Self::Suppressed { .. } => "recipient_suppressed",
            Self::Unavailable(_) => "service_unavailable",
            Self::BadGateway(_) => "bad_gateway",
            Self::GatewayTimeout(_) => "gateway_timeout",
            Self::Internal(_) => "internal_error",
        }
    }

    /// The error a framework-made answer of `status` stands for, when there
    /// is no more detail than the status.
    pub fn from_status(status: StatusCode, message: Option<String>) -> Self {
        let message =
            message.unwrap_or_else(|| status.canonical_reason().unwrap_or("error").to_lowercase());
        match status {
            StatusCode::NOT_FOUND => Self::NotFound(message),
            StatusCode::METHOD_NOT_ALLOWED => Self::MethodNotAllowed,
            StatusCode::UNSUPPORTED_MEDIA_TYPE => Self::UnsupportedMediaType(message),
            StatusCode::PAYLOAD_TOO_LARGE => Self::PayloadTooLarge(message),
            StatusCode::UNPROCESSABLE_ENTITY => Self::Validation {
                field: String::new(),
                message,
            },
            s if s.is_server_error() => {
                Self::Unavailable("the service is unavailable; try again later".into())
            }
            _ => Self::BadRequest {
                message,
                field: None,
            },
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let (message, field) = match &self {
            Self::Internal(_) => (
                "something went wrong on our side; the request id identifies it in our logs"
                    .to_owned(),
                None,
            ),
            Self::BadRequest { field, .. } => (self.to_string(), field.clone()),
            Self::CrossSite { header, .. } => (self.to_string(), Some(header.clone())),
            Self::Validation { field, .. } | Self::Suppressed { field, .. }
                if !field.is_empty() =>
            {
                (self.to_string(), Some(field.clone()))
            }
            _ => (self.to_string(), None),
        };
        let (budget, resets_at) = match &self {
            Self::BudgetExceeded {
                budget, resets_at, ..
            } => (Some((*budget).to_owned()), Some(resets_at.clone())),
            _ => (None, None),
        };
        let body = ErrorBody {
            error: ErrorObject {
                code: self.code().to_owned(),
                message,
                field,
                budget,
                resets_at,
            },
        };
        let mut response =
            (status, [(header::CACHE_CONTROL, "no-store")], Json(body)).into_response();
        match &self {
            Self::Unauthorized(_) => {
                response.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    header::HeaderValue::from_static("Bearer realm=\"securevault\""),
                );
            }
            Self::TooManyRequests {
                retry_after_secs, ..
            }
            | Self::BudgetExceeded {
                retry_after_secs, ..
            } => {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, (*retry_after_secs).max(1).into());
            }
            _ => {}
        }
        if status.is_server_error() {
            response
                .extensions_mut()
                .insert(ErrorDetail(self.to_string()));
        }
        response
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        Self::Internal(e.to_string())
    }
}

impl From<crate::auth::AuthError> for ApiError {
    fn from(e: crate::auth::AuthError) -> Self {
        Self::Internal(e.to_string())
    }
}

impl From<crate::ratelimit::Unavailable> for ApiError {
    fn from(e: crate::ratelimit::Unavailable) -> Self {
        Self::Unavailable(e.to_string())
    }
}

impl From<crate::middleware::csrf::Refusal> for ApiError {
    fn from(refusal: crate::middleware::csrf::Refusal) -> Self {
        Self::CrossSite {
            header: refusal.header().to_owned(),
            message: refusal.to_string(),
        }
    }
}

impl From<crate::stats::StatsError> for ApiError {
    fn from(e: crate::stats::StatsError) -> Self {
        Self::Internal(e.to_string())
    }
}

/// A request field to fix, and how: what validation finds, answered as a
/// 422 naming the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Invalid {
    /// The field, e.g. `to[1]`, `headers.X-Campaign` or `messages[0].content`.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

/// An [`Invalid`] for `field`.
pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Invalid {
    Invalid {
        field: field.into(),
        message: message.into(),
    }
}

impl From<Invalid> for ApiError {
    fn from(e: Invalid) -> Self {
        Self::Validation {
            field: e.field,
            message: e.message,
        }
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;

    use super::*;

    async fn body(e: ApiError) -> (StatusCode, serde_json::Value, Response) {
        let mut r = e.into_response();
        let status = r.status();
        let bytes = std::mem::take(r.body_mut())
            .collect()
            .await
            .unwrap()
            .to_bytes();
        (status, serde_json::from_slice(&bytes).unwrap(), r)
    }

    #[tokio::test]
    async fn validation_errors_name_the_field() {
        let (status, json, _) = body(ApiError::Validation {
            field: "to".into(),
            message: "`to` must hold at least one address".into(),
        })
        .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(json["error"]["code"], "validation_failed");
        assert_eq!(json["error"]["field"], "to");
    }

    #[tokio::test]
    async fn internal_errors_hide_their_detail_from_the_client() {
        let (status, json, response) = body(ApiError::Internal(
            "pool timed out at db.internal:5432".into(),
        ))
        .await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(!json.to_string().contains("db.internal"));
        assert_eq!(json["error"]["field"], serde_json::Value::Null);
        let detail = response.extensions().get::<ErrorDetail>().unwrap();
        assert!(detail.0.contains("db.internal"));
    }

    #[test]
    fn framework_statuses_map_to_stable_codes() {
        assert_eq!(
            ApiError::from_status(StatusCode::NOT_FOUND, None).code(),
            "not_found"
        );
        assert_eq!(
            ApiError::from_status(StatusCode::METHOD_NOT_ALLOWED, None).code(),
            "method_not_allowed"
        );
        assert_eq!(
            ApiError::from_status(StatusCode::GATEWAY_TIMEOUT, None).code(),
            "service_unavailable"
        );
        assert_eq!(
            ApiError::from_status(StatusCode::BAD_REQUEST, None).to_string(),
            "bad request"
        );
    }
}
