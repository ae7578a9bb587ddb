//! The seed's eight alerts as data: name, severity, default threshold and
//! duration, the PromQL condition, and what to tell the person paged.
//!
//! Every expression selects the instance's series by the labels Prometheus
//! gives a ServiceMonitor's targets (`namespace`, and `service` = the
//! SecureVault's Service), and uses only metrics the data plane exports
//! (`up` excepted, which Prometheus records for each scrape).
//! `operator/tests/monitoring.rs` runs each through promtool (a unit test
//! per alert in `tests/monitoring/alerts_test.yaml`) and through a real
//! Prometheus scraping a real data plane.

use std::collections::BTreeMap;

use crate::{
    api::{
        AlertTuning, AlertsSpec,
        monitoring::{AlertRule, RuleGroup},
    },
    validate::ValidatedVault,
};

/// Where the runbooks live: one page per alert, `<runbook>.md`.
pub const RUNBOOK_URL: &str = "https://github.com/securevault/securevault/blob/main/docs/runbooks";

/// One alert's definition.
#[derive(Debug, Clone, Copy)]
pub struct Alert {
    /// Its name, e.g. `SecureVaultHighErrorRate`: the prefix keeps it unique
    /// in an Alertmanager shared with other software.
    pub name: &'static str,
    /// Its runbook's page under `docs/runbooks/`, without `.md`.
    pub runbook: &'static str,
    /// `critical` (page someone) or `warning` (look soon).
    pub severity: &'static str,
    /// The default threshold, in the alert's unit; `None` when the alert
    /// has none (HealthCheckFailing).
    pub threshold: Option<f64>,
    /// The default `for`.
    pub for_: &'static str,
    /// One line for the page.
    pub summary: &'static str,
    /// The condition, from the series selector and the threshold.
    expr: fn(&str, f64) -> String,
    /// What the value means, for the description.
    description: &'static str,
    /// Which field of `spec.monitoring.alerts` tunes it.
    tuning: fn(&AlertsSpec) -> Option<&AlertTuning>,
}

/// The eight alerts, in the seed's order.
pub const ALERTS: [Alert; 8] = [
    // Three ways a vault stops serving, each its own series: a pod that
    // cannot be scraped, a pod that lives but cannot reach its store (its
    // readiness fails, so it gets no traffic, yet `up` stays 1), and no pod
    // scraped at all (deleted, never scheduled: `up` is absent, not 0).
    Alert {
        name: "SecureVaultHealthCheckFailing",
        runbook: "health-check-failing",
        severity: "critical",
        threshold: None,
        for_: "2m",
        summary: "SecureVault {instance}: a data-plane pod is down or not ready",
        expr: |sel, _| {
            format!(
                "max by (namespace, service, pod) (up{{{sel}}} == 0) or max by (namespace, service, pod) (health_check_status{{{sel},check=\"database\"}} == 0) or absent(up{{{sel}}})"
            )
        },
        description: "{{ if $labels.pod }}Pod {{ $labels.pod }} of SecureVault {instance} cannot be scraped, or cannot reach its store (its readiness fails).{{ else }}No pod of SecureVault {instance} is scraped: none runs, or Prometheus finds none.{{ end }}",
        tuning: |a| a.health_check_failing.as_ref(),
    },
    Alert {
        name: "SecureVaultHighErrorRate",
        runbook: "high-error-rate",
        severity: "critical",
        threshold: Some(5.0),
        for_: "5m",
        summary: "SecureVault {instance}: more than {threshold}% of requests fail",
        expr: |sel, t| {
            format!(
                "100 * sum(rate(http_requests_total{{{sel},status=~\"5..\"}}[5m])) / sum(rate(http_requests_total{{{sel}}}[5m])) > {t}"
            )
        },
        description: "{{ $value | printf \"%.1f\" }}% of the requests to SecureVault {instance} were answered with a server error over the last 5 minutes (threshold {threshold}%).",
        tuning: |a| a.high_error_rate.as_ref(),
    },
    Alert {
        name: "SecureVaultHighResponseTime",
        runbook: "high-response-time",
        severity: "critical",
        threshold: Some(10.0),
        for_: "2m",
        summary: "SecureVault {instance}: requests take more than {threshold} s",
        expr: |sel, t| {
            format!(
                "histogram_quantile(0.95, sum by (le) (rate(http_request_duration_seconds_bucket{{{sel}}}[5m]))) > {t}"
            )
        },
        description: "The 95th percentile of request latency of SecureVault {instance} is {{ $value | printf \"%.2f\" }} s (threshold {threshold} s).",
        tuning: |a| a.high_response_time.as_ref(),
    },
    Alert {
        name: "SecureVaultHighMemoryUsage",
        runbook: "high-memory-usage",
        severity: "critical",
        threshold: Some(90.0),
        for_: "5m",
        summary: "SecureVault {instance}: memory above {threshold}%",
        expr: |sel, t| format!("system_memory_percent{{{sel}}} > {t}"),
        description: "Pod {{ $labels.pod }} of SecureVault {instance} uses {{ $value | printf \"%.1f\" }}% of its memory (threshold {threshold}%).",
        tuning: |a| a.high_memory_usage.as_ref(),
    },
    Alert {
        name: "SecureVaultEmailDeliveryFailed",
        runbook: "email-delivery-failed",
        severity: "warning",
        threshold: Some(0.0),
        for_: "0m",
        summary: "SecureVault {instance}: emails could not be delivered",
        expr: |sel, t| format!("sum(increase(emails_failed_total{{{sel}}}[15m])) > {t}"),
        description: "SecureVault {instance} gave up on {{ $value | printf \"%.0f\" }} email(s) in the last 15 minutes (permanent SMTP errors or too many attempts; threshold {threshold}).",
        tuning: |a| a.email_delivery_failed.as_ref(),
    },
    Alert {
        name: "SecureVaultAIGenerationTimeout",
        runbook: "ai-generation-timeout",
        severity: "warning",
        threshold: Some(0.0),
        for_: "0m",
        summary: "SecureVault {instance}: generations time out",
        expr: |sel, t| format!("sum(increase(ai_timeouts_total{{{sel}}}[15m])) > {t}"),
        description: "{{ $value | printf \"%.0f\" }} generation(s) of SecureVault {instance} hit their deadline (AI_TIMEOUT_SECS) in the last 15 minutes (threshold {threshold}).",
        tuning: |a| a.ai_generation_timeout.as_ref(),
    },
    Alert {
        name: "SecureVaultHighCacheMissRate",
        runbook: "high-cache-miss-rate",
        severity: "warning",
        threshold: Some(50.0),
        for_: "10m",
        summary: "SecureVault {instance}: most cache look-ups miss",
        expr: |sel, t| {
            format!(
                "100 * sum(rate(cache_requests_total{{{sel},result=\"miss\"}}[5m])) / sum(rate(cache_requests_total{{{sel}}}[5m])) > {t}"
            )
        },
        description: "{{ $value | printf \"%.1f\" }}% of the cache look-ups of SecureVault {instance} missed over the last 5 minutes (threshold {threshold}%).",
        tuning: |a| a.high_cache_miss_rate.as_ref(),
    },
    Alert {
        name: "SecureVaultHighDiskUsage",
        runbook: "high-disk-usage",
        severity: "warning",
        threshold: Some(80.0),
        for_: "5m",
        summary: "SecureVault {instance}: data volume above {threshold}%",
        expr: |sel, t| format!("disk_usage_percent{{{sel}}} > {t}"),
        description: "The data volume of pod {{ $labels.pod }} of SecureVault {instance} is {{ $value | printf \"%.1f\" }}% full (threshold {threshold}%).",
        tuning: |a| a.high_disk_usage.as_ref(),
    },
];

/// The rule group of `v`: each alert with the spec's tuning applied.
pub fn rule_group(v: &ValidatedVault) -> RuleGroup {
    let selector = format!("namespace=\"{}\",service=\"{}\"", v.namespace, v.name);
    let instance = format!("{}/{}", v.namespace, v.name);
    let tunings = v.monitoring.alerts.clone().unwrap_or_default();
    let rules = ALERTS
        .iter()
        .map(|a| {
            let tuning = (a.tuning)(&tunings);
            let threshold = tuning.and_then(|t| t.threshold).or(a.threshold);
            let for_ = tuning
                .and_then(|t| t.for_.clone())
                .unwrap_or_else(|| a.for_.to_owned());
            let fill = |text: &str| {
                text.replace("{instance}", &instance)
                    .replace("{threshold}", &threshold.map(number).unwrap_or_default())
            };
            AlertRule {
                alert: a.name.to_owned(),
                expr: (a.expr)(&selector, threshold.unwrap_or(0.0)),
                for_,
                labels: BTreeMap::from([
                    ("severity".to_owned(), a.severity.to_owned()),
                    ("namespace".to_owned(), v.namespace.clone()),
                    ("securevault".to_owned(), v.name.clone()),
                ]),
                annotations: BTreeMap::from([
                    ("summary".to_owned(), fill(a.summary)),
                    ("description".to_owned(), fill(a.description)),
                    (
                        "runbook_url".to_owned(),
                        format!("{RUNBOOK_URL}/{}.md", a.runbook),
                    ),
                ]),
            }
        })
        .collect();
    RuleGroup {
        name: format!("securevault-{}-{}", v.namespace, v.name),
        rules,
    }
}

/// `5` rather than `5.0`, `0.5` as is: thresholds read as people write them.
fn number(n: f64) -> String {
    if n.fract() == 0.0 && n.abs() < 1e15 {
        format!("{}", n as i64)
    } else {
        format!("{n}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::{test_support::minimal, validate};

    #[test]
    fn every_seed_alert_is_there_with_its_severity_and_runbook() {
        let group = rule_group(&minimal());
        let names: Vec<_> = group.rules.iter().map(|r| r.alert.as_str()).collect();
        assert_eq!(
            names,
            [
                "SecureVaultHealthCheckFailing",
                "SecureVaultHighErrorRate",
                "SecureVaultHighResponseTime",
                "SecureVaultHighMemoryUsage",
                "SecureVaultEmailDeliveryFailed",
                "SecureVaultAIGenerationTimeout",
                "SecureVaultHighCacheMissRate",
                "SecureVaultHighDiskUsage"
            ]
        );
        for r in &group.rules {
            assert!(["critical", "warning"].contains(&r.labels["severity"].as_str()));
            assert_eq!(r.labels["securevault"], "mail");
            assert!(r.annotations["summary"].contains("team-a/mail"), "{r:?}");
            assert!(
                r.annotations["description"].contains("team-a/mail"),
                "{r:?}"
            );
            assert!(
                r.expr.contains("namespace=\"team-a\",service=\"mail\""),
                "{}",
                r.expr
            );
            assert!(!r.annotations["summary"].contains('{'), "unfilled: {r:?}");
        }
        let error_rate = &group.rules[1];
        assert!(error_rate.expr.ends_with("> 5"), "{}", error_rate.expr);
        assert_eq!(error_rate.for_, "5m");
        assert_eq!(group.rules[0].for_, "2m");
    }

    /// Each link must land on a page that tells the person paged what to
    /// check and what to do: a renamed alert or page fails here, not at 3 a.m.
    #[test]
    fn every_runbook_link_points_at_a_page_that_says_what_to_check_and_do() {
        let docs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/runbooks");
        let index = std::fs::read_to_string(docs.join("README.md")).unwrap();
        for r in rule_group(&minimal()).rules {
            let url = &r.annotations["runbook_url"];
            let page = url
                .strip_prefix(&format!("{RUNBOOK_URL}/"))
                .unwrap_or_else(|| panic!("{url} is not under {RUNBOOK_URL}"));
            let text = std::fs::read_to_string(docs.join(page))
                .unwrap_or_else(|e| panic!("{}: runbook {page}: {e}", r.alert));
            assert!(text.starts_with(&format!("# {}\n", r.alert)), "{page}");
            for section in ["## What it means", "## What to check", "## What to do"] {
                assert!(text.contains(section), "{page} lacks {section}");
            }
            assert!(
                index.contains(&format!("({page})")),
                "the index lacks {page}"
            );
        }
    }

    #[test]
    fn the_spec_tunes_thresholds_and_durations() {
        let mut sv = crate::validate::test_support::with_spec(
            "  monitoring:
    alerts:
      highErrorRate: {threshold: 2.5, for: 10m}
      healthCheckFailing: {for: 5s}
",
        );
        sv.metadata.namespace = Some("shop".into());
        let group = rule_group(&validate(&sv).unwrap());
        let error_rate = &group.rules[1];
        assert!(error_rate.expr.ends_with("> 2.5"), "{}", error_rate.expr);
        assert_eq!(error_rate.for_, "10m");
        assert!(error_rate.annotations["summary"].contains("2.5%"));
        assert_eq!(group.rules[0].for_, "5s");
        assert!(group.rules[0].expr.contains("namespace=\"shop\""));
        // Untouched alerts keep their defaults.
        assert!(group.rules[3].expr.ends_with("> 90"));
    }
}
