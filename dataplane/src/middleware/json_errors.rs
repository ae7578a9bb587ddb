//! Gives the answers the framework and tower layers make by themselves (405
//! from the router, 413 from the body limit, 503 from the timeout) the same
//! JSON shape as our own errors. Answers that already are JSON pass untouched,
//! and so do the console's HTML pages (their errors are pages for people).

use crate::error::ApiError;
use axum::{
    body::Body,
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
};

/// The limits the messages quote.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// `MAX_BODY_BYTES`.
    pub max_body_bytes: usize,
    /// `REQUEST_TIMEOUT_SECS`.
    pub request_timeout_secs: u64,
}

/// Longest framework error text copied into the message.
const MAX_MESSAGE: usize = 512;

/// Rewrites non-JSON error answers as JSON errors.
pub async fn rewrite(limits: &Limits, response: Response) -> Response {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) || is_ours(response.headers()) {
        return response;
    }
    let (parts, body) = response.into_parts();
    let message = match status {
        StatusCode::PAYLOAD_TOO_LARGE => Some(format!(
            "request body is larger than the limit of {} bytes (MAX_BODY_BYTES)",
            limits.max_body_bytes
        )),
        StatusCode::SERVICE_UNAVAILABLE => Some(format!(
            "the request did not complete within {} s; try again later",
            limits.request_timeout_secs
        )),
        _ => text_of(body).await,
    };
    let mut rewritten = ApiError::from_status(status, message).into_response();
    *rewritten.status_mut() = status;
    // Keep what the original answer said besides its body, e.g. `Allow` on a 405.
    for (name, value) in &parts.headers {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            rewritten.headers_mut().insert(name.clone(), value.clone());
        }
    }
    rewritten.extensions_mut().extend(parts.extensions);
    rewritten
}

/// JSON errors, or a console page.
fn is_ours(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.starts_with("application/json")
                || v.starts_with("application/problem+json")
                || v.starts_with("text/html")
        })
}

/// The plain-text reason a framework answer carries, if short and readable.
async fn text_of(body: Body) -> Option<String> {
    let bytes = axum::body::to_bytes(body, MAX_MESSAGE * 4).await.ok()?;
    let text = String::from_utf8(bytes.to_vec()).ok()?;
    let text = text.trim();
    (!text.is_empty() && text.len() <= MAX_MESSAGE).then(|| text.to_owned())
}

#[cfg(test)]
mod tests {
    use axum::{Router, extract::Request, middleware, routing::get};
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    use super::*;

    #[tokio::test]
    async fn a_plain_text_error_becomes_json_and_keeps_its_headers() {
        let limits = Limits {
            max_body_bytes: 10,
            request_timeout_secs: 1,
        };
        let app = Router::new()
            .route("/", get(|| async { "ok" }))
            .layer(middleware::from_fn(
                move |req: Request, next: middleware::Next| async move {
                    rewrite(&limits, next.run(req).await).await
                },
            ));
        let res = app
            .oneshot(Request::post("/").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert!(res.headers().get(header::ALLOW).is_some());
        let bytes = res.into_body().collect().await.unwrap().to_bytes();
        let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(json["error"]["code"], "method_not_allowed");
    }
}
