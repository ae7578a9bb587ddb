//! RED metrics and the request log line: `http_requests_total` and
//! `http_request_duration_seconds`, labelled by the matched route *template*
//! (`/api/emails/{id}`, never `/api/emails/42`), so label cardinality stays
//! bounded whatever clients send.

use std::time::Duration;

use axum::{
    extract::{MatchedPath, Request},
    http::Method,
    middleware::Next,
    response::Response,
};

use crate::{error::ErrorDetail, telemetry::Metrics};

/// The route label of requests no route matched (404s, scanners).
pub const UNMATCHED: &str = "unmatched";

/// Counts and times a request answered with `response` after `elapsed`;
/// logs server errors with their detail. `method` is [`method_label`]'s.
pub fn record(metrics: &Metrics, method: &'static str, elapsed: Duration, response: &Response) {
    let route = response
        .extensions()
        .get::<MatchedPath>()
        .map_or(UNMATCHED, MatchedPath::as_str);
    let status = response.status();
    metrics
        .http_requests_total
        .with_label_values(&[method, route, status.as_str()])
        .inc();
    metrics
        .http_request_duration_seconds
        .with_label_values(&[method, route])
        .observe(elapsed.as_secs_f64());

    let duration_ms = elapsed.as_secs_f64() * 1000.0;
    if let Some(ErrorDetail(detail)) = response.extensions().get::<ErrorDetail>() {
        tracing::error!(method, route, status = status.as_u16(), duration_ms, error = %detail, "request failed");
    } else {
        tracing::debug!(
            method,
            route,
            status = status.as_u16(),
            duration_ms,
            "request completed"
        );
    }
}

/// Copies the matched route template from the request to the response, where
/// the outer [`http_metrics`] layer can read it: routing happens inside that
/// layer, so the request it sees has no template yet.
pub async fn expose_matched_path(req: Request, next: Next) -> Response {
    let matched = req.extensions().get::<MatchedPath>().cloned();
    let mut response = next.run(req).await;
    if let Some(matched) = matched {
        response.extensions_mut().insert(matched);
    }
    response
}

/// Standard methods by name; anything else is `other`, to bound cardinality.
pub fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}
