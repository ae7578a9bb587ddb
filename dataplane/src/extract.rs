//! [`ApiJson`]: axum's `Json` extractor with our error shape, so a malformed
//! body gets the same `{"error": …}` answer as every other error, with a
//! message that says what is wrong and where.

use axum::{
    extract::{FromRequest, Request, rejection::JsonRejection},
    http::StatusCode,
};
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// A JSON request body, deserialised into `T`.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiJson<T>(pub T);

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(Self(value)),
            Err(rejection) => Err(rejection_to_error(rejection)),
        }
    }
}

fn rejection_to_error(rejection: JsonRejection) -> ApiError {
    match rejection {
        JsonRejection::JsonDataError(e) => {
            // serde's message ends with "at line L column C"; the path of the
            // field comes first, e.g. "to[1]: invalid type: integer…".
            let text = e.body_text();
            let field = text
                .strip_prefix("Failed to deserialize the JSON body into the target type: ")
                .and_then(|rest| rest.split_once(": "))
                .map(|(path, _)| path.to_owned())
                .filter(|path| !path.contains(' '));
            ApiError::Validation {
                field: field.unwrap_or_default(),
                message: text,
            }
        }
        JsonRejection::JsonSyntaxError(e) => ApiError::BadRequest {
            message: format!("malformed JSON: {}", e.body_text()),
            field: None,
        },
        JsonRejection::MissingJsonContentType(_) => ApiError::UnsupportedMediaType(
            "expected a JSON body with `Content-Type: application/json`".into(),
        ),
        other if other.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::PayloadTooLarge("request body is larger than the limit".into())
        }
        other => ApiError::BadRequest {
            message: other.body_text(),
            field: None,
        },
    }
}

/// Who acts and from where, for the audit trail: the principal the guard
/// authenticated (or `anonymous`), the client address and the request id.
impl<S: Send + Sync> axum::extract::FromRequestParts<S> for crate::audit::Context {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        let principal = parts.extensions.get::<crate::auth::Principal>();
        Ok(Self {
            actor: principal.map_or_else(|| "anonymous".to_owned(), |p| p.id.clone()),
            actor_name: principal.map(|p| p.name.clone()),
            ip: parts
                .extensions
                .get::<crate::middleware::client_ip::ClientIp>()
                .and_then(|ip| ip.0),
            request_id: parts
                .extensions
                .get::<crate::middleware::request_id::RequestId>()
                .map(|id| id.0.clone()),
        })
    }
}

#[cfg(test)]
mod tests {
    use axum::{Router, body::Body, http::Request, routing::post};
    use http_body_util::BodyExt;
    use serde::Deserialize;
    use tower::ServiceExt;

    use super::*;

    #[derive(Deserialize)]
    #[allow(dead_code)]
    struct Mail {
        to: Vec<String>,
        subject: String,
    }

    async fn post_json(body: &'static str, content_type: &str) -> (StatusCode, serde_json::Value) {
        let app = Router::new().route("/", post(|ApiJson(_m): ApiJson<Mail>| async { "ok" }));
        let res = app
            .oneshot(
                Request::post("/")
                    .header("content-type", content_type)
                    .body(Body::from(body))
                    .unwrap(),
            )
            .await
            .unwrap();
        let status = res.status();
        let bytes = res.into_body().collect().await.unwrap().to_bytes();
        (status, serde_json::from_slice(&bytes).unwrap_or_default())
    }

    #[tokio::test]
    async fn malformed_json_is_a_400_that_says_where() {
        let (status, json) =
            post_json(r#"{"to": ["a@b.c"], "subject": "#, "application/json").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(json["error"]["code"], "bad_request");
        let message = json["error"]["message"].as_str().unwrap();
        assert!(
            message.starts_with("malformed JSON") && message.contains("line 1"),
            "{message}"
        );
    }

    #[tokio::test]
    async fn a_wrong_type_is_a_422_naming_the_field() {
        let (status, json) =
            post_json(r#"{"to": ["a@b.c"], "subject": 7}"#, "application/json").await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(json["error"]["field"], "subject");
    }

    #[tokio::test]
    async fn a_missing_field_is_a_422() {
        let (status, json) = post_json(r#"{"to": []}"#, "application/json").await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(
            json["error"]["message"]
                .as_str()
                .unwrap()
                .contains("missing field `subject`")
        );
    }

    #[tokio::test]
    async fn a_body_that_is_not_json_is_a_415() {
        let (status, json) = post_json("to=a@b.c", "application/x-www-form-urlencoded").await;
        assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
        assert_eq!(json["error"]["code"], "unsupported_media_type");
    }
}
