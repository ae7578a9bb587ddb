//! Every Prometheus metric the data plane exports, registered in one registry
//! per [`crate::app::AppState`] (not the global one, so tests in one process
//! stay apart). Names are the contract with the operator's alert rules and the
//! Grafana dashboard: change them only together.

use prometheus::{
    Encoder, Gauge, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts, Registry,
    TextEncoder,
};

/// Buckets of `http_request_duration_seconds`, from 1 ms to the 30 s request
/// timeout; the seed's targets (10 ms liveness, 2 s email, 5 s AI, 10 s alert)
/// each fall on a bucket boundary.
const DURATION_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0,
];

/// The registry and handles to each metric.
pub struct Metrics {
    registry: Registry,
    /// Requests answered, by method, matched route template and status code.
    pub http_requests_total: IntCounterVec,
    /// Request latency by method and route template.
    pub http_request_duration_seconds: HistogramVec,
    /// Emails the SMTP server accepted.
    pub emails_sent_total: IntCounter,
    /// Emails given up on (permanent SMTP error or too many attempts).
    pub emails_failed_total: IntCounter,
    /// Emails the SMTP server accepted without a DKIM signature.
    pub emails_unsigned_total: IntCounter,
    /// Addresses added to the suppression list, by reason.
    pub email_suppressions_total: IntCounterVec,
    /// Rows deleted by retention, by kind.
    pub retention_deleted_total: IntCounterVec,
    /// Retention runs that failed, by kind.
    pub retention_failures_total: IntCounterVec,
    /// Time of one SMTP delivery attempt.
    pub email_send_duration_seconds: prometheus::Histogram,
    /// Emails queued or being sent.
    pub email_outbox_depth: prometheus::IntGauge,
    /// Age of the oldest email still waiting, 0 when none waits.
    pub email_outbox_oldest_age_seconds: Gauge,
    /// Webhook delivery attempts by event type and result (`delivered`,
    /// `retry`, `failed`).
    pub webhook_deliveries_total: IntCounterVec,
    /// Webhook events not yet delivered.
    pub webhook_backlog: prometheus::IntGauge,
    /// Generations by outcome: `succeeded`, `failed` (the model server
    /// failed or timed out), `rejected` (the concurrency limit was full) or
    /// `cancelled` (the client left a stream).
    pub ai_generations_total: IntCounterVec,
    /// Time of one generation, retries and streaming included.
    pub ai_generation_duration_seconds: prometheus::Histogram,
    /// Time from a streamed request to its first token.
    pub ai_time_to_first_token_seconds: prometheus::Histogram,
    /// Tokens by direction: `in` (prompt) and `out` (generated).
    pub ai_tokens_total: IntCounterVec,
    /// Generations cut off by their deadline.
    pub ai_timeouts_total: IntCounter,
    /// 1 while a model server is taken in its turn, 0 while it cools down.
    pub ai_upstream_up: prometheus::IntGaugeVec,
    /// Attempts on a model server that failed (connection, 5xx, 429, timeout).
    pub ai_upstream_failures_total: IntCounterVec,
    /// Generations that moved on to the next model server.
    pub ai_fallbacks_total: IntCounter,
    /// Connections opened to the SMTP relay.
    pub smtp_connections_opened_total: IntCounter,
    /// CPU use against the container's CPU limit (the host's without one).
    pub system_cpu_percent: Gauge,
    /// Memory working set against the container's memory limit (the host's
    /// use without one).
    pub system_memory_percent: Gauge,
    /// The container's memory limit; 0 when it has none.
    pub container_memory_limit_bytes: Gauge,
    /// The container's CPU limit in cores; 0 when it has none.
    pub container_cpu_limit_cores: Gauge,
    /// Use of the volume holding `DATA_DIR`, sampled in the background.
    pub disk_usage_percent: Gauge,
    /// Cache look-ups by result (`hit`, `miss`).
    pub cache_requests_total: IntCounterVec,
    /// hits / (hits + misses) since start; 0 before the first look-up.
    pub cache_hit_rate: Gauge,
    /// Login attempts by outcome: `success`, `failure` (wrong name or
    /// password) or `blocked` (brute-force protection refused it).
    pub auth_logins_total: IntCounterVec,
    /// Requests refused by a rate limit, by policy (`api`, `email`, `ai`).
    pub rate_limited_total: IntCounterVec,
    /// 1 while the limits in force are the shared ones (Redis), 0 while they
    /// are this process's own (no Redis, or Redis unreachable).
    pub rate_limiter_redis_up: prometheus::IntGauge,
    /// Limiter decisions taken without Redis while it is configured: from
    /// this process's own counts, or refusals under the deny policy.
    pub rate_limiter_fallback_total: prometheus::IntCounter,
    /// Passwords verified at login, by result (`match`, `mismatch`): how
    /// many guesses brute-force protection let through.
    pub auth_password_verifications_total: IntCounterVec,
    /// Rounds of background dependency checks: the only calls the health
    /// report causes to the model server and the SMTP server.
    pub health_check_rounds_total: prometheus::IntCounter,
    /// The last round's result per check (`database`, `cache`,
    /// `rate_limiter`, `smtp`, `ai`): 1 healthy, 0 not.
    pub health_check_status: prometheus::IntGaugeVec,
    /// Client connections open, TLS handshakes in progress included.
    pub http_connections_open: prometheus::IntGauge,
    /// Connections closed by a timeout, by reason: `header_read` (no
    /// complete request in time) or `idle` (no request for too long).
    pub http_connections_timed_out_total: IntCounterVec,
    /// Times a new connection had to wait because `MAX_CONNECTIONS` were open.
    pub http_connection_limit_reached_total: IntCounter,
    /// Scheduled backups by result: `success`, or the problem's reason
    /// (`BucketNotFound`, `CredentialsRefused`, `EndpointUnreachable`, …).
    pub backup_runs_total: IntCounterVec,
    /// When the last backup that reached its destination was taken (Unix
    /// seconds; 0 before the first): `time() - this` is the RPO now.
    pub backup_last_success_timestamp_seconds: Gauge,
    /// Size of the last backup that reached its destination.
    pub backup_last_size_bytes: prometheus::IntGauge,
    /// Time the last successful backup took, snapshot and upload.
    pub backup_last_duration_seconds: Gauge,
}

impl Metrics {
    /// Creates and registers every metric, process metrics included.
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let http_requests_total = IntCounterVec::new(
            Opts::new(
                "http_requests_total",
                "HTTP requests answered, by method, route template and status code",
            ),
            &["method", "route", "status"],
        )?;
        let http_request_duration_seconds = HistogramVec::new(
            HistogramOpts::new(
                "http_request_duration_seconds",
                "HTTP request latency by method and route template",
            )
            .buckets(DURATION_BUCKETS.to_vec()),
            &["method", "route"],
        )?;
        let emails_sent_total =
            IntCounter::new("emails_sent_total", "Emails accepted by the SMTP server")?;
        let emails_failed_total = IntCounter::new(
            "emails_failed_total",
            "Emails given up on: permanent SMTP error or too many attempts",
        )?;
        let emails_unsigned_total = IntCounter::new(
            "emails_unsigned_total",
            "Emails accepted by the SMTP server without a DKIM signature: no key for the sender's domain (DKIM_ALLOW_UNSIGNED)",
        )?;
        let email_suppressions_total = IntCounterVec::new(
            Opts::new(
                "email_suppressions_total",
                "Addresses added to the suppression list, by reason (bounce, complaint, unsubscribe, manual)",
            ),
            &["reason"],
        )?;
        let retention_deleted_total = IntCounterVec::new(
            Opts::new(
                "retention_deleted_total",
                "Rows deleted for being older than their retention, by kind (emails, generations, audit)",
            ),
            &["kind"],
        )?;
        let retention_failures_total = IntCounterVec::new(
            Opts::new(
                "retention_failures_total",
                "Retention runs that failed to delete, by kind",
            ),
            &["kind"],
        )?;
        let email_send_duration_seconds = prometheus::Histogram::with_opts(
            HistogramOpts::new(
                "email_send_duration_seconds",
                "Time of one SMTP delivery attempt",
            )
            .buckets(DURATION_BUCKETS.to_vec()),
        )?;
        let email_outbox_depth =
            prometheus::IntGauge::new("email_outbox_depth", "Emails queued or being sent")?;
        let email_outbox_oldest_age_seconds = Gauge::new(
            "email_outbox_oldest_age_seconds",
            "Age of the oldest email still waiting for delivery",
        )?;
        let webhook_deliveries_total = IntCounterVec::new(
            Opts::new(
                "webhook_deliveries_total",
                "Webhook delivery attempts by event type and result",
            ),
            &["event", "result"],
        )?;
        let webhook_backlog = prometheus::IntGauge::new(
            "webhook_backlog",
            "Webhook events waiting for delivery or being delivered",
        )?;
        let ai_generations_total = IntCounterVec::new(
            Opts::new(
                "ai_generations_total",
                "Text generations by outcome (succeeded, failed, rejected, cancelled)",
            ),
            &["status"],
        )?;
        // Every outcome is exported from the start, at 0, so rate() and
        // alert rules see the series before the first generation.
        for status in ["succeeded", "failed", "rejected", "cancelled"] {
            ai_generations_total.with_label_values(&[status]);
        }
        let ai_generation_duration_seconds = prometheus::Histogram::with_opts(
            HistogramOpts::new(
                "ai_generation_duration_seconds",
                "Time of one generation, retries and streaming included",
            )
            .buckets(DURATION_BUCKETS.to_vec()),
        )?;
        let ai_time_to_first_token_seconds = prometheus::Histogram::with_opts(
            HistogramOpts::new(
                "ai_time_to_first_token_seconds",
                "Time from a streamed generation request to its first token",
            )
            .buckets(DURATION_BUCKETS.to_vec()),
        )?;
        let ai_tokens_total = IntCounterVec::new(
            Opts::new(
                "ai_tokens_total",
                "Tokens by direction: in (prompt) and out (generated)",
            ),
            &["direction"],
        )?;
        for direction in ["in", "out"] {
            ai_tokens_total.with_label_values(&[direction]);
        }
        let ai_timeouts_total =
            IntCounter::new("ai_timeouts_total", "Generations cut off by their deadline")?;
        let ai_upstream_up = prometheus::IntGaugeVec::new(
            Opts::new(
                "ai_upstream_up",
                "1 while a model server is tried in its turn, 0 while it cools down after failures",
            ),
            &["upstream"],
        )?;
        let ai_upstream_failures_total = IntCounterVec::new(
            Opts::new(
                "ai_upstream_failures_total",
                "Failed attempts on a model server: connection, 5xx, 429 or timeout",
            ),
            &["upstream"],
        )?;
        let ai_fallbacks_total = IntCounter::new(
            "ai_fallbacks_total",
            "Generations that moved on to the next model server after a failure",
        )?;
        let smtp_connections_opened_total = IntCounter::new(
            "smtp_connections_opened_total",
            "Connections opened to the SMTP relay, each with its TLS handshake and login; \
             the pool and the health check reuse them, so a steady rate means the relay \
             closes them",
        )?;
        let system_cpu_percent = Gauge::new(
            "system_cpu_percent",
            "CPU use in percent of the container's CPU limit (cgroup v1 or v2); \
             of the host's CPUs when container_cpu_limit_cores is 0",
        )?;
        let system_memory_percent = Gauge::new(
            "system_memory_percent",
            "Memory working set in percent of the container's memory limit (cgroup v1 or v2); \
             of the host's memory when container_memory_limit_bytes is 0",
        )?;
        let container_memory_limit_bytes = Gauge::new(
            "container_memory_limit_bytes",
            "The container's memory limit from its cgroup; 0 when it has none",
        )?;
        let container_cpu_limit_cores = Gauge::new(
            "container_cpu_limit_cores",
            "The container's CPU limit (quota / period) from its cgroup; 0 when it has none",
        )?;
        let disk_usage_percent = Gauge::new(
            "disk_usage_percent",
            "Use of the file system holding DATA_DIR (the data volume), in percent",
        )?;
        let cache_requests_total = IntCounterVec::new(
            Opts::new("cache_requests_total", "Cache look-ups by result"),
            &["result"],
        )?;
        let cache_hit_rate = Gauge::new(
            "cache_hit_rate",
            "Share of cache look-ups that were hits, from 0 to 1",
        )?;

        let auth_logins_total = IntCounterVec::new(
            Opts::new("auth_logins_total", "Login attempts by outcome"),
            &["outcome"],
        )?;
        let rate_limited_total = IntCounterVec::new(
            Opts::new(
                "rate_limited_total",
                "Requests refused by a rate limit, by policy",
            ),
            &["policy"],
        )?;
        let rate_limiter_redis_up = prometheus::IntGauge::new(
            "rate_limiter_redis_up",
            "1 while rate limits are shared through Redis, 0 while they are per process",
        )?;
        let rate_limiter_fallback_total = prometheus::IntCounter::new(
            "rate_limiter_fallback_total",
            "Rate-limit and login-attempt decisions taken without Redis although it is configured (per-process counts, or refusals under the deny policy)",
        )?;
        let health_check_rounds_total = prometheus::IntCounter::new(
            "health_check_rounds_total",
            "Rounds of background dependency checks (database, cache, rate limiter, SMTP, model server)",
        )?;
        let health_check_status = prometheus::IntGaugeVec::new(
            Opts::new(
                "health_check_status",
                "The last background check of each dependency: 1 healthy, 0 not",
            ),
            &["check"],
        )?;
        let auth_password_verifications_total = IntCounterVec::new(
            Opts::new(
                "auth_password_verifications_total",
                "Passwords verified at login, by result (match, mismatch)",
            ),
            &["result"],
        )?;

        let http_connections_open = prometheus::IntGauge::new(
            "http_connections_open",
            "Client connections open, TLS handshakes in progress included",
        )?;
        let http_connections_timed_out_total = IntCounterVec::new(
            Opts::new(
                "http_connections_timed_out_total",
                "Client connections closed by a timeout, by reason (header_read, idle)",
            ),
            &["reason"],
        )?;
        for reason in ["header_read", "idle"] {
            http_connections_timed_out_total.with_label_values(&[reason]);
        }
        let http_connection_limit_reached_total = IntCounter::new(
            "http_connection_limit_reached_total",
            "Times a new connection had to wait because MAX_CONNECTIONS were open",
        )?;

        let backup_runs_total = IntCounterVec::new(
            Opts::new(
                "backup_runs_total",
                "Scheduled backups, by result (success, or why one failed)",
            ),
            &["result"],
        )?;
        backup_runs_total.with_label_values(&["success"]);
        let backup_last_success_timestamp_seconds = Gauge::new(
            "backup_last_success_timestamp_seconds",
            "When the last backup that reached its destination was taken (Unix time)",
        )?;
        let backup_last_size_bytes = prometheus::IntGauge::new(
            "backup_last_size_bytes",
            "Size of the last backup that reached its destination",
        )?;
        let backup_last_duration_seconds = Gauge::new(
            "backup_last_duration_seconds",
            "Time the last successful backup took, snapshot and upload",
        )?;
        registry.register(Box::new(backup_runs_total.clone()))?;
        registry.register(Box::new(backup_last_success_timestamp_seconds.clone()))?;
        registry.register(Box::new(backup_last_size_bytes.clone()))?;
        registry.register(Box::new(backup_last_duration_seconds.clone()))?;
        registry.register(Box::new(http_requests_total.clone()))?;
        registry.register(Box::new(http_request_duration_seconds.clone()))?;
        registry.register(Box::new(emails_sent_total.clone()))?;
        registry.register(Box::new(emails_failed_total.clone()))?;
        registry.register(Box::new(emails_unsigned_total.clone()))?;
        registry.register(Box::new(email_suppressions_total.clone()))?;
        registry.register(Box::new(retention_deleted_total.clone()))?;
        registry.register(Box::new(retention_failures_total.clone()))?;
        registry.register(Box::new(email_send_duration_seconds.clone()))?;
        registry.register(Box::new(email_outbox_depth.clone()))?;
        registry.register(Box::new(email_outbox_oldest_age_seconds.clone()))?;
        registry.register(Box::new(webhook_deliveries_total.clone()))?;
        registry.register(Box::new(webhook_backlog.clone()))?;
        registry.register(Box::new(ai_generations_total.clone()))?;
        registry.register(Box::new(ai_generation_duration_seconds.clone()))?;
        registry.register(Box::new(ai_time_to_first_token_seconds.clone()))?;
        registry.register(Box::new(ai_tokens_total.clone()))?;
        registry.register(Box::new(ai_timeouts_total.clone()))?;
        registry.register(Box::new(ai_upstream_up.clone()))?;
        registry.register(Box::new(ai_upstream_failures_total.clone()))?;
        registry.register(Box::new(ai_fallbacks_total.clone()))?;
        registry.register(Box::new(smtp_connections_opened_total.clone()))?;
        registry.register(Box::new(system_cpu_percent.clone()))?;
        registry.register(Box::new(system_memory_percent.clone()))?;
        registry.register(Box::new(container_memory_limit_bytes.clone()))?;
        registry.register(Box::new(container_cpu_limit_cores.clone()))?;
        registry.register(Box::new(disk_usage_percent.clone()))?;
        registry.register(Box::new(cache_requests_total.clone()))?;
        registry.register(Box::new(cache_hit_rate.clone()))?;
        registry.register(Box::new(auth_logins_total.clone()))?;
        registry.register(Box::new(rate_limited_total.clone()))?;
        registry.register(Box::new(rate_limiter_redis_up.clone()))?;
        registry.register(Box::new(rate_limiter_fallback_total.clone()))?;
        registry.register(Box::new(auth_password_verifications_total.clone()))?;
        registry.register(Box::new(health_check_rounds_total.clone()))?;
        registry.register(Box::new(health_check_status.clone()))?;
        registry.register(Box::new(http_connections_open.clone()))?;
        registry.register(Box::new(http_connections_timed_out_total.clone()))?;
        registry.register(Box::new(http_connection_limit_reached_total.clone()))?;
        // process_resident_memory_bytes, process_open_fds, process_cpu_seconds_total…
        registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))?;

        // Both results exist from the start, so a rate() over them is defined.
        for result in ["hit", "miss"] {
            cache_requests_total.with_label_values(&[result]);
        }
        for outcome in ["success", "failure", "blocked"] {
            auth_logins_total.with_label_values(&[outcome]);
        }
        for result in ["match", "mismatch"] {
            auth_password_verifications_total.with_label_values(&[result]);
        }

        Ok(Self {
            registry,
            http_requests_total,
            http_request_duration_seconds,
            emails_sent_total,
            emails_failed_total,
            emails_unsigned_total,
            email_suppressions_total,
            retention_deleted_total,
            retention_failures_total,
            email_send_duration_seconds,
            email_outbox_depth,
            email_outbox_oldest_age_seconds,
            webhook_deliveries_total,
            webhook_backlog,
            ai_generations_total,
            ai_generation_duration_seconds,
            ai_time_to_first_token_seconds,
            ai_tokens_total,
            ai_timeouts_total,
            ai_upstream_up,
            ai_upstream_failures_total,
            ai_fallbacks_total,
            smtp_connections_opened_total,
            system_cpu_percent,
            system_memory_percent,
            container_memory_limit_bytes,
            container_cpu_limit_cores,
            disk_usage_percent,
            cache_requests_total,
            cache_hit_rate,
            auth_logins_total,
            rate_limited_total,
            rate_limiter_redis_up,
            rate_limiter_fallback_total,
            auth_password_verifications_total,
            health_check_rounds_total,
            health_check_status,
            http_connections_open,
            http_connections_timed_out_total,
            http_connection_limit_reached_total,
            backup_runs_total,
            backup_last_success_timestamp_seconds,
            backup_last_size_bytes,
            backup_last_duration_seconds,
        })
    }

    /// Counts one cache look-up and refreshes `cache_hit_rate`.
    pub fn record_cache_lookup(&self, hit: bool) {
        self.cache_requests_total
            .with_label_values(&[if hit { "hit" } else { "miss" }])
            .inc();
        let hits = self.cache_requests_total.with_label_values(&["hit"]).get() as f64;
        let misses = self.cache_requests_total.with_label_values(&["miss"]).get() as f64;
        self.cache_hit_rate.set(hits / (hits + misses));
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> Result<String, prometheus::Error> {
        let mut buf = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut buf)?;
        String::from_utf8(buf).map_err(|e| prometheus::Error::Msg(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_seed_metric_is_exported() {
        let m = Metrics::new().unwrap();
        m.http_requests_total
            .with_label_values(&["GET", "/api/health", "200"])
            .inc();
        m.http_request_duration_seconds
            .with_label_values(&["GET", "/api/health"])
            .observe(0.001);
        let text = m.encode().unwrap();
        for name in [
            "emails_sent_total",
            "ai_generations_total",
            "system_cpu_percent",
            "system_memory_percent",
            "cache_hit_rate",
            "http_requests_total{method=\"GET\",route=\"/api/health\",status=\"200\"} 1",
            "http_request_duration_seconds_bucket",
            "process_resident_memory_bytes",
            "process_open_fds",
        ] {
            assert!(text.contains(name), "{name} missing from:\n{text}");
        }
    }

    #[test]
    fn hit_rate_follows_lookups() {
        let m = Metrics::new().unwrap();
        assert_eq!(m.cache_hit_rate.get(), 0.0);
        m.record_cache_lookup(false);
        assert_eq!(m.cache_hit_rate.get(), 0.0);
        m.record_cache_lookup(true);
        m.record_cache_lookup(true);
        m.record_cache_lookup(true);
        assert_eq!(m.cache_hit_rate.get(), 0.75);
    }
}
