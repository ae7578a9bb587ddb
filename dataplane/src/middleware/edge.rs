//! The layer every request meets first and every answer leaves by: the
//! request gets its id, its span and its client address; the answer gets
//! JSON in place of the framework's plain-text errors, is counted and timed,
//! and carries the request id and the security headers.
//!
//! Each of those is its own module, a plain function; this one says in what
//! order they run, which matters:
//! - the span opens before anything below logs, so every line carries the
//!   request id;
//! - the client address is known before anything audits or counts by it;
//! - errors are rewritten before they are counted, and the metrics see the
//!   final status of everything below, 404s included;
//! - the request id and the security headers go on last, so every answer
//!   has them, even one made by a layer below.
//!
//! Why one layer and not one per concern: each `from_fn` layer clones the
//! rest of the stack and boxes a future for every request, and with five of
//! them the data plane answered `GET /api/health` at 45–51 % of a bare axum
//! server's rate (docs/benchmarks.md, "AI gateway at load").

use std::{sync::Arc, time::Instant};

use axum::{
    extract::{Request, State},
    middleware::Next,
    response::Response,
};
use ipnet::IpNet;
use tracing::Instrument;

use super::{
    client_ip,
    http_metrics::{self, method_label},
    json_errors::{self, Limits},
    request_id, security_headers,
};
use crate::telemetry::Metrics;

/// What the edge needs, built once.
pub struct Edge {
    /// Proxies whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<IpNet>,
    /// Where requests are counted.
    pub metrics: Arc<Metrics>,
    /// The limits the rewritten errors quote.
    pub limits: Limits,
}

/// The edge layer; see the module doc.
pub async fn edge(State(edge): State<Arc<Edge>>, mut req: Request, next: Next) -> Response {
    let id = request_id::assign(&mut req);
    client_ip::mark(&mut req, &edge.trusted_proxies);
    let method = method_label(req.method());
    let span = tracing::info_span!("request", request_id = %id, user_id = tracing::field::Empty);
    let mut response = async {
        let start = Instant::now();
        let response = json_errors::rewrite(&edge.limits, next.run(req).await).await;
        http_metrics::record(&edge.metrics, method, start.elapsed(), &response);
        response
    }
    .instrument(span)
    .await;
    request_id::echo(&mut response, &id);
    security_headers::set(response.headers_mut());
    response
}
