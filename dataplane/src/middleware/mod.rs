//! Layers that wrap every route. Their order is set in one place,
//! [`crate::app::app`], and explained there.

pub mod auth;
pub mod client_ip;
pub mod csrf;
pub mod http_metrics;
pub mod json_errors;
pub mod request_id;
pub mod security_headers;
