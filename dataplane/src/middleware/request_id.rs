//! `X-Request-Id`: taken from the request when it is sane, generated
//! otherwise, echoed on the response, and set (by [`super::edge`]) on the
//! span every log line of the request inherits.

use axum::{
    extract::Request,
    http::{HeaderName, HeaderValue},
    response::Response,
};

/// The header carrying the request id, both ways.
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Longest request id taken from a client; longer ones are replaced.
const MAX_LEN: usize = 128;

/// The id of the request being handled, in the request's extensions.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// The request's id: the client's when it is sane, a new one otherwise; it
/// is put in the request's extensions for handlers and the audit trail.
pub fn assign(req: &mut Request) -> String {
    let id = req
        .headers()
        .get(&X_REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| is_sane(v))
        .map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_owned);
    req.extensions_mut().insert(RequestId(id.clone()));
    id
}

/// Echoes the id on the response.
pub fn echo(response: &mut Response, id: &str) {
    if let Ok(value) = HeaderValue::from_str(id) {
        response.headers_mut().insert(X_REQUEST_ID.clone(), value);
    }
}

/// A client's id is kept only if it cannot break a log line or a header:
/// short, and made of letters, digits and `-_.:`.
fn is_sane(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_short_plain_ids_are_kept() {
        assert!(is_sane("4f1c2a5e-8b1d-4a43-9f4c-0b7e5d0e1a2b"));
        assert!(is_sane("trace:abc.DEF_1"));
        assert!(!is_sane(""));
        assert!(!is_sane("a b"));
        assert!(!is_sane("line\nbreak"));
        assert!(!is_sane("{\"json\":1}"));
        assert!(!is_sane(&"x".repeat(MAX_LEN + 1)));
    }
}
