//! What wraps every route. [`edge`] runs the per-request steps
//! (`request_id`, `client_ip`, `json_errors`, `http_metrics`,
//! `security_headers`) in the order it explains; [`crate::app::app`] places
//! it and the other layers. `auth` and `csrf` guard groups of routes.

pub mod auth;
pub mod client_ip;
pub mod csrf;
pub mod edge;
pub mod http_metrics;
pub mod json_errors;
pub mod request_id;
pub mod security_headers;
