//! The Grafana dashboard, as a ConfigMap labelled `grafana_dashboard: "1"`:
//! the label Grafana's dashboard sidecar (kube-prometheus-stack's default)
//! looks for. One dashboard per SecureVault, its queries scoped to the
//! instance's series, with a `datasource` variable to pick the Prometheus.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use serde_json::{Value, json};

use crate::validate::ValidatedVault;

/// The ConfigMap's name.
pub fn name(v: &ValidatedVault) -> String {
    format!("{}-dashboard", v.name)
}

/// The dashboard ConfigMap of `v`.
pub fn build(v: &ValidatedVault) -> ConfigMap {
    let mut metadata = super::metadata(v, name(v));
    metadata
        .labels
        .get_or_insert_with(BTreeMap::new)
        .insert("grafana_dashboard".into(), "1".into());
    ConfigMap {
        metadata,
        data: Some(BTreeMap::from([(
            format!("securevault-{}-{}.json", v.namespace, v.name),
            dashboard(v).to_string(),
        )])),
        ..ConfigMap::default()
    }
}

/// The dashboard JSON.
pub fn dashboard(v: &ValidatedVault) -> Value {
    let sel = format!("namespace=\"{}\",service=\"{}\"", v.namespace, v.name);
    let panels = [
        (
            "Requests per second, by status",
            "reqps",
            vec![(
                format!("sum by (status) (rate(http_requests_total{{{sel}}}[5m]))"),
                "{{status}}",
            )],
        ),
        (
            "Server errors, % of requests",
            "percent",
            vec![(
                format!(
                    "100 * sum(rate(http_requests_total{{{sel},status=~\"5..\"}}[5m])) / sum(rate(http_requests_total{{{sel}}}[5m]))"
                ),
                "5xx",
            )],
        ),
        (
            "Latency",
            "s",
            ["0.5", "0.95", "0.99"]
                .into_iter()
                .map(|q| {
                    (
                        format!(
                            "histogram_quantile({q}, sum by (le) (rate(http_request_duration_seconds_bucket{{{sel}}}[5m])))"
                        ),
                        match q {
                            "0.5" => "p50",
                            "0.95" => "p95",
                            _ => "p99",
                        },
                    )
                })
                .collect(),
        ),
        (
            "Emails per second",
            "ops",
            vec![
                (
                    format!("sum(rate(emails_sent_total{{{sel}}}[5m]))"),
                    "sent",
                ),
                (
                    format!("sum(rate(emails_failed_total{{{sel}}}[5m]))"),
                    "failed",
                ),
            ],
        ),
        (
            "Email outbox depth",
            "short",
            vec![(
                format!("sum(email_outbox_depth{{{sel}}})"),
                "waiting",
            )],
        ),
        (
            "Generations per second, by status",
            "ops",
            vec![(
                format!("sum by (status) (rate(ai_generations_total{{{sel}}}[5m]))"),
                "{{status}}",
            )],
        ),
        (
            "Cache hit rate",
            "percentunit",
            vec![(format!("avg(cache_hit_rate{{{sel}}})"), "hit rate")],
        ),
        (
            "CPU, %",
            "percent",
            vec![(format!("system_cpu_percent{{{sel}}}"), "{{pod}}")],
        ),
        (
            "Memory, %",
            "percent",
            vec![(format!("system_memory_percent{{{sel}}}"), "{{pod}}")],
        ),
        (
            "Data volume, %",
            "percent",
            vec![(format!("disk_usage_percent{{{sel}}}"), "{{pod}}")],
        ),
    ];
    let panels: Vec<Value> = panels
        .into_iter()
        .enumerate()
        .map(|(i, (title, unit, queries))| {
            json!({
                "id": i + 1,
                "type": "timeseries",
                "title": title,
                "datasource": { "type": "prometheus", "uid": "${datasource}" },
                "gridPos": { "h": 8, "w": 12, "x": (i % 2) * 12, "y": (i / 2) * 8 },
                "fieldConfig": { "defaults": { "unit": unit }, "overrides": [] },
                "targets": queries
                    .iter()
                    .enumerate()
                    .map(|(j, (expr, legend))| json!({
                        "refId": ((b'A' + j as u8) as char).to_string(),
                        "datasource": { "type": "prometheus", "uid": "${datasource}" },
                        "expr": expr,
                        "legendFormat": legend,
                    }))
                    .collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({
        "uid": format!("sv-{}-{}", v.namespace, v.name).chars().take(40).collect::<String>(),
        "title": format!("SecureVault {}/{}", v.namespace, v.name),
        "tags": ["securevault"],
        "timezone": "browser",
        "schemaVersion": 39,
        "version": 1,
        "refresh": "30s",
        "time": { "from": "now-6h", "to": "now" },
        "templating": {
            "list": [{
                "name": "datasource",
                "label": "Prometheus",
                "type": "datasource",
                "query": "prometheus",
                "current": {},
                "hide": 0,
            }]
        },
        "panels": panels,
    })
}

/// The metric names a PromQL query selects (`name{…}`).
pub fn metric_names(expr: &str) -> Vec<String> {
    let bytes = expr.as_bytes();
    let mut names = Vec::new();
    for (i, b) in bytes.iter().enumerate() {
        if *b != b'{' {
            continue;
        }
        let start = bytes[..i]
            .iter()
            .rposition(|c| !(c.is_ascii_alphanumeric() || *c == b'_' || *c == b':'))
            .map_or(0, |p| p + 1);
        if start < i {
            names.push(expr[start..i].to_owned());
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::test_support::minimal;

    #[test]
    fn a_labelled_config_map_of_dashboard_json_with_a_datasource_variable() {
        let cm = build(&minimal());
        assert_eq!(cm.metadata.name.as_deref(), Some("mail-dashboard"));
        assert_eq!(cm.metadata.labels.unwrap()["grafana_dashboard"], "1");
        let data = cm.data.unwrap();
        let json: Value = serde_json::from_str(&data["securevault-team-a-mail.json"]).unwrap();
        assert_eq!(json["templating"]["list"][0]["type"], "datasource");
        let titles: Vec<&str> = json["panels"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["title"].as_str().unwrap())
            .collect();
        for wanted in [
            "Requests",
            "errors",
            "Latency",
            "Emails",
            "Generations",
            "Cache",
            "CPU",
            "Memory",
            "outbox",
        ] {
            assert!(
                titles.iter().any(|t| t.contains(wanted)),
                "no {wanted} panel in {titles:?}"
            );
        }
        for panel in json["panels"].as_array().unwrap() {
            for target in panel["targets"].as_array().unwrap() {
                let expr = target["expr"].as_str().unwrap();
                assert!(
                    expr.contains("namespace=\"team-a\",service=\"mail\""),
                    "{expr}"
                );
                assert!(!metric_names(expr).is_empty(), "{expr}");
            }
        }
    }

    #[test]
    fn metric_names_are_what_precedes_a_selector() {
        assert_eq!(
            metric_names("100 * sum(rate(a_total{x=\"1\"}[5m])) / sum(rate(b:c{y=\"2\"}[5m]))"),
            ["a_total", "b:c"]
        );
        assert!(metric_names("sum(rate(x[5m]))").is_empty());
    }
}
