//! The Grafana dashboard: one for every SecureVault, shipped with the chart
//! (`charts/securevault-operator/dashboards/securevault.json`, a ConfigMap
//! labelled `grafana_dashboard: "1"`, the label Grafana's dashboard sidecar
//! in kube-prometheus-stack looks for). Variables pick the Prometheus, the
//! namespace and the SecureVault; every query selects that instance's
//! series by the labels a ServiceMonitor gives its targets (`namespace`, and
//! `service` = the SecureVault's Service).
//!
//! One dashboard with variables, as CloudNativePG ships its own, rather than
//! one per SecureVault: those multiplied with the fleet, and their uids,
//! made from namespace and name and cut to Grafana's 40 characters, could
//! collide.

use serde_json::{Value, json};

/// Where the chart keeps the dashboard, from the workspace root; `make crds`
/// writes it and a test keeps it equal to [`dashboard`].
pub const CHART_FILE: &str = "charts/securevault-operator/dashboards/securevault.json";

/// The per-SecureVault ConfigMap earlier versions wrote, which the operator
/// deletes where it still owns one.
pub fn legacy_name(v: &crate::validate::ValidatedVault) -> String {
    format!("{}-dashboard", v.name)
}

/// The selector of the SecureVault the variables pick.
const SEL: &str = "namespace=\"$namespace\",service=\"$securevault\"";

/// The dashboard JSON.
pub fn dashboard() -> Value {
    let sel = SEL;
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
                    // `or vector(0)`: no 5xx series yet is 0 %, not "No data".
                    "100 * (sum(rate(http_requests_total{{{sel},status=~\"5..\"}}[5m])) or vector(0)) / sum(rate(http_requests_total{{{sel}}}[5m]))"
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
    let variable = |name: &str, label: &str, query: &str| {
        json!({
            "name": name,
            "label": label,
            "type": "query",
            "datasource": { "type": "prometheus", "uid": "${datasource}" },
            "query": { "query": query, "refId": "PrometheusVariableQueryEditor-VariableQuery" },
            "definition": query,
            // Again whenever the time range changes: vaults come and go.
            "refresh": 2,
            "sort": 1,
            "current": {},
            "hide": 0,
            "includeAll": false,
            "multi": false,
        })
    };
    json!({
        "uid": "securevault",
        "title": "SecureVault",
        "tags": ["securevault"],
        "timezone": "browser",
        "schemaVersion": 39,
        "version": 1,
        "refresh": "30s",
        "time": { "from": "now-6h", "to": "now" },
        "templating": {
            "list": [
                {
                    "name": "datasource",
                    "label": "Prometheus",
                    "type": "datasource",
                    "query": "prometheus",
                    "current": {},
                    "hide": 0,
                },
                // Every series of the data plane carries both labels; the
                // sent-emails counter exists from the first scrape on.
                variable("namespace", "Namespace", "label_values(emails_sent_total, namespace)"),
                variable(
                    "securevault",
                    "SecureVault",
                    "label_values(emails_sent_total{namespace=\"$namespace\"}, service)",
                ),
            ]
        },
        "panels": panels,
    })
}

/// The dashboard as the chart's file holds it: indented, one final newline.
pub fn file() -> String {
    let mut text = serde_json::to_string_pretty(&dashboard()).unwrap_or_default();
    text.push('\n');
    text
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

    #[test]
    fn one_dashboard_whose_variables_pick_the_namespace_and_the_securevault() {
        let json = dashboard();
        let variables: Vec<&str> = json["templating"]["list"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["name"].as_str().unwrap())
            .collect();
        assert_eq!(variables, ["datasource", "namespace", "securevault"]);
        assert_eq!(json["uid"], "securevault");
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
            assert_eq!(panel["datasource"]["uid"], "${datasource}");
            for target in panel["targets"].as_array().unwrap() {
                let expr = target["expr"].as_str().unwrap();
                assert!(expr.contains(SEL), "{expr}");
                assert!(!metric_names(expr).is_empty(), "{expr}");
            }
        }
    }

    /// The chart ships the file; `make crds` writes it from [`dashboard`].
    #[test]
    fn the_chart_s_file_is_the_dashboard() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join(CHART_FILE);
        let shipped = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            shipped == file(),
            "{} is stale: run `make crds`",
            path.display()
        );
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
