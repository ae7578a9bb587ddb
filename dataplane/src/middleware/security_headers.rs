//! The seed's four security headers, on every answer: success, error, 404 and
//! the answers the framework makes by itself (405, 413, timeouts).

use axum::{
    http::{HeaderMap, HeaderName, HeaderValue, header},
    response::Response,
};

/// The headers and their exact values.
pub const SECURITY_HEADERS: [(HeaderName, HeaderValue); 4] = [
    (
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'self'"),
    ),
    (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
    (
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    ),
    (
        header::STRICT_TRANSPORT_SECURITY,
        HeaderValue::from_static("max-age=31536000"),
    ),
];

/// Sets the security headers, replacing any a handler set.
pub async fn security_headers(mut response: Response) -> Response {
    set(response.headers_mut());
    response
}

/// Sets the four headers on `headers`, replacing any of the same name.
pub fn set(headers: &mut HeaderMap) {
    for (name, value) in SECURITY_HEADERS {
        headers.insert(name, value);
    }
}
