//! The alerts and the dashboard the operator writes, checked by the real
//! tools: promtool (its rule checker and unit tests), and a real Prometheus
//! scraping a real data plane with the generated rules loaded. The rules
//! come from the operator's own builder, never a hand copy.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::{
    collections::BTreeSet,
    process::Command,
    time::{Duration, Instant},
};

mod common;

use common::{http_get, shop_vault as vault};
use operator::build::{dashboard, prometheus_rule};
use testkit::{DataPlane, Prometheus, TempDir, prometheus::promtool_binary, workspace_binary};

fn promtool(dir: &std::path::Path, args: &[&str]) -> String {
    let out = Command::new(promtool_binary().expect("promtool (make test-deps installs it)"))
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "promtool {args:?} failed:\n{text}");
    text
}

#[test]
fn the_generated_rules_pass_promtool_and_a_unit_test_of_each_alert() {
    let dir = TempDir::new("promtool").unwrap();
    let rules = prometheus_rule::rule_file(&vault("")).unwrap();
    std::fs::write(dir.path().join("rules.json"), rules).unwrap();
    let tests = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/monitoring/alerts_test.yaml"
    );
    std::fs::copy(tests, dir.path().join("alerts_test.yaml")).unwrap();

    let checked = promtool(dir.path(), &["check", "rules", "rules.json"]);
    assert!(checked.contains("SUCCESS: 8 rules found"), "{checked}");
    // Each alert: silent one evaluation before its `for`, firing at it, with
    // its severity, instance labels, summary, description and runbook.
    let tested = promtool(dir.path(), &["test", "rules", "alerts_test.yaml"]);
    assert!(tested.contains("SUCCESS"), "{tested}");
    let cases = std::fs::read_to_string(tests).unwrap();
    for alert in operator::alerts::ALERTS {
        assert!(
            cases.contains(&format!(
                "alertname: {}\n        exp_alerts: []",
                alert.name
            )) && cases.contains(&format!("alertname: {}\n        exp_alerts:\n", alert.name)),
            "{} lacks a silent and a firing case",
            alert.name
        );
    }
}

/// Every metric name the data plane exports (histograms with their series).
fn exported_metric_names() -> BTreeSet<String> {
    let dp = DataPlane::start(&workspace_binary("dataplane").unwrap(), &[]).unwrap();
    // Labelled series appear once observed: the first request makes the
    // request metrics exist, and the first round of background health
    // checks (which starts with the server, and may end after the page is
    // first read) `health_check_status`.
    http_get(dp.addr(), "/api/health");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    let body = loop {
        let body = http_get(dp.metrics_addr(), "/metrics");
        if body.contains("health_check_status{") || std::time::Instant::now() > deadline {
            break body;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    body.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| l.split(['{', ' ']).next().unwrap().to_owned())
        .collect()
}

#[test]
fn the_dashboard_and_the_rules_query_only_metrics_the_data_plane_exports() {
    let exported = exported_metric_names();
    let v = vault("");
    let board = dashboard::dashboard();
    // It is Grafana dashboard JSON with a datasource variable the panels use.
    let text = board.to_string();
    let parsed: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(parsed["templating"]["list"][0]["type"], "datasource");
    let mut queried = BTreeSet::new();
    for panel in parsed["panels"].as_array().unwrap() {
        assert_eq!(panel["datasource"]["uid"], "${datasource}");
        for target in panel["targets"].as_array().unwrap() {
            queried.extend(dashboard::metric_names(target["expr"].as_str().unwrap()));
        }
    }
    for rule in &prometheus_rule::build(&v).spec.groups[0].rules {
        queried.extend(dashboard::metric_names(&rule.expr));
    }
    // `up` is Prometheus's own record of each scrape.
    queried.remove("up");
    let missing: Vec<_> = queried.iter().filter(|m| !exported.contains(*m)).collect();
    assert!(missing.is_empty(), "queried but not exported: {missing:?}");
    assert!(queried.len() >= 10, "{queried:?}");
}

#[test]
fn a_real_prometheus_scraping_a_real_data_plane_sees_the_series_and_alerts_when_it_stops() {
    let binary = workspace_binary("dataplane").unwrap();
    let dp = DataPlane::start(&binary, &[]).unwrap();
    // A short `for`, set through the spec as a user would.
    let v = vault("  monitoring:\n    alerts:\n      healthCheckFailing: {for: 3s}\n");
    let rules = prometheus_rule::rule_file(&v).unwrap();
    // The labels a ServiceMonitor gives its targets, set by hand here since
    // no Prometheus Operator runs.
    let config = format!(
        "global: {{scrape_interval: 1s, evaluation_interval: 1s}}
rule_files: [rules.json]
scrape_configs:
  - job_name: mail
    metrics_path: /metrics
    static_configs:
      - targets: ['{}']
        labels: {{namespace: shop, service: mail, pod: mail-0}}
",
        dp.metrics_addr()
    );
    let prometheus = Prometheus::start(&config, &[("rules.json", &rules)]).unwrap();

    let mut wanted = BTreeSet::new();
    for rule in &prometheus_rule::build(&v).spec.groups[0].rules {
        wanted.extend(dashboard::metric_names(&rule.expr));
    }
    // Traffic on the API, so that its request series exist (the scrapes go
    // to the metrics listener and count nothing there).
    http_get(dp.addr(), "/api/health");
    let deadline = Instant::now() + Duration::from_secs(30);
    for name in &wanted {
        let path = format!(
            "/api/v1/series?match[]={name}%7Bnamespace%3D%22shop%22%2Cservice%3D%22mail%22%7D"
        );
        loop {
            let body = prometheus.get(&path).unwrap_or_default();
            if body.contains(&format!("\"__name__\":\"{name}\"")) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "no series {name} in Prometheus: {body}"
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }
    // Every panel of the dashboard shows data for this vault, picked by its
    // variables as a user picks it, and the variables offer it.
    let namespaces = prometheus
        .get("/api/v1/label/namespace/values?match[]=emails_sent_total")
        .unwrap();
    assert!(namespaces.contains("\"shop\""), "{namespaces}");
    let board = dashboard::dashboard();
    for panel in board["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"]
                .as_str()
                .unwrap()
                .replace("$namespace", "shop")
                .replace("$securevault", "mail");
            let path = format!(
                "/api/v1/query?query={}",
                url::form_urlencoded::byte_serialize(expr.as_bytes()).collect::<String>()
            );
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                let body = prometheus.get(&path).unwrap_or_default();
                if body.contains("\"result\":[{") {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "no data for panel {}: {expr}: {body}",
                    panel["title"]
                );
                std::thread::sleep(Duration::from_millis(250));
            }
        }
    }

    let rules_loaded = prometheus.get("/api/v1/rules").unwrap();
    assert_eq!(
        rules_loaded.matches("\"type\":\"alerting\"").count(),
        8,
        "{rules_loaded}"
    );
    // Served and scraped: no SecureVaultHealthCheckFailing. (Before the first scrape
    // `up` is absent, which the alert counts as no pod at all: a pending
    // alert may show until the next evaluation.)
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let alerts = prometheus.get("/api/v1/alerts").unwrap();
        if !alerts.contains("SecureVaultHealthCheckFailing") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "SecureVaultHealthCheckFailing while the data plane serves: {alerts}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }

    // The data plane stops: after 3 s without a scrape, SecureVaultHealthCheckFailing fires.
    drop(dp);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let alerts = prometheus.get("/api/v1/alerts").unwrap();
        if alerts.contains("\"alertname\":\"SecureVaultHealthCheckFailing\"")
            && alerts.contains("\"state\":\"firing\"")
        {
            assert!(alerts.contains("\"severity\":\"critical\""), "{alerts}");
            assert!(alerts.contains("SecureVault shop/mail"), "{alerts}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "SecureVaultHealthCheckFailing did not fire: {alerts}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}
