//! Alerts that reach people, end to end with the real servers: a real data
//! plane sending through a real SMTP server (mailpit), a real Prometheus
//! scraping it with the operator's rules, and a real Alertmanager (Debian's
//! 0.25) loaded with the `alertmanager.yml` the operator renders. Its
//! PagerDuty and Slack receivers point at a local HTTP recorder standing for
//! those two services (their URLs are configurable for this reason).
//!
//! An email that fails for good must arrive at Slack as SecureVaultEmailDeliveryFailed;
//! the data plane stopping must arrive at PagerDuty as SecureVaultHealthCheckFailing,
//! in Events API v2 shape with the routing key; nothing critical goes to
//! Slack and nothing of warning level to PagerDuty. SecureVaultHealthCheckFailing also
//! pages when the process lives but its store does not answer (readiness
//! fails, `up` stays 1), and when its pods are gone (`up` absent, not 0).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::{
    process::Command,
    time::{Duration, Instant},
};

mod common;

use common::shop_vault as vault;
use operator::{
    build::{alertmanager_config, prometheus_rule},
    validate::ValidatedVault,
};
use testkit::{
    Alertmanager, DataPlane, HttpRecorder, Mailpit, Postgres, Prometheus, TempDir,
    http_recorder::Recorded, mailpit::ChaosTrigger, prometheus::amtool_binary, workspace_binary,
};

const ROUTING_KEY: &str = "R0UT1NGKEYR0UT1NGKEYR0UT1NGKEY01";

/// Waits until a request to `path` whose body contains `needle` arrived
/// after `since`.
fn wait_for(
    receiver: &HttpRecorder,
    path: &str,
    needle: &str,
    since: Instant,
    limit: Duration,
) -> Recorded {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(r) = receiver
            .requests()
            .into_iter()
            .find(|r| r.path == path && r.at >= since && r.body.contains(needle))
        {
            return r;
        }
        assert!(
            Instant::now() < deadline,
            "no {needle} at {path} within {limit:?}; received: {:#?}",
            receiver.requests()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

async fn send_email(dp: &DataPlane, to: &str) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::new();
    let login: serde_json::Value = client
        .post(dp.url("/api/auth/login"))
        .json(&serde_json::json!({"username": testkit::ADMIN_USERNAME, "password": testkit::ADMIN_PASSWORD}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = login["token"].as_str().unwrap();
    let sent = client
        .post(dp.url("/api/send-email"))
        .bearer_auth(token)
        .json(&serde_json::json!({"to": to, "subject": "Order shipped", "text": "Hello"}))
        .send()
        .await
        .unwrap();
    assert_eq!(sent.status(), 202, "{}", sent.text().await.unwrap());
}

/// Where the receivers' requests arrive at the recorder.
const PAGERDUTY_PATH: &str = "/pagerduty/v2/enqueue";
const SLACK_PATH: &str = "/slack/services/T000/B000/XXXX";

/// The vault shop/mail with the shortest settings a user can give (alerts
/// fire after 1 s, the Alertmanager sends a new group after 1 s), routed to
/// PagerDuty and Slack at `receiver`; and a real Alertmanager loaded with
/// the routing the operator renders for it, as a plain Alertmanager reads
/// it (secrets in files, kept in the returned directory; amtool passes it).
fn routed_vault(receiver: &HttpRecorder) -> (ValidatedVault, Alertmanager, TempDir) {
    let v = vault(&format!(
        "  monitoring:
    alerts:
      healthCheckFailing: {{for: 1s}}
    alertRouting:
      pagerDuty:
        routingKeySecretRef: {{name: oncall, key: routing-key}}
        url: {}
      slack:
        apiUrlSecretRef: {{name: oncall, key: slack-url}}
        channel: '#mail-alerts'
      groupWait: 1s
      groupInterval: 1s
",
        receiver.url(PAGERDUTY_PATH)
    ));
    let secrets = TempDir::new("alertmanager-secrets").unwrap();
    std::fs::write(
        secrets.path().join(alertmanager_config::PAGERDUTY_KEY_FILE),
        ROUTING_KEY,
    )
    .unwrap();
    std::fs::write(
        secrets.path().join(alertmanager_config::SLACK_URL_FILE),
        receiver.url(SLACK_PATH),
    )
    .unwrap();
    let yml = alertmanager_config::alertmanager_yml(&v, &secrets.path().display().to_string())
        .unwrap()
        .unwrap();
    assert!(!yml.contains(ROUTING_KEY), "no secret in the file itself");
    let checked = TempDir::new("amtool").unwrap();
    std::fs::write(checked.path().join("alertmanager.yml"), &yml).unwrap();
    let out = Command::new(amtool_binary().expect("amtool (make test-deps installs it)"))
        .current_dir(checked.path())
        .args(["check-config", "alertmanager.yml"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "amtool check-config:\n{}{}\n{yml}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (v, Alertmanager::start(&yml, &[]).unwrap(), secrets)
}

/// The file listing Prometheus's target in [`scrape`]: emptied, the pod
/// is gone, as service discovery would say.
const TARGETS: &str = "targets.yml";

/// A real Prometheus scraping `dp` every second as pod mail-0 of shop/mail
/// (the labels a ServiceMonitor gives its targets, set by hand since no
/// Prometheus Operator runs here), with the rules the operator renders for
/// `v`, alerting `alertmanager`.
fn scrape(v: &ValidatedVault, alertmanager: &Alertmanager, dp: &DataPlane) -> Prometheus {
    let target = format!(
        "[{{targets: ['{}'], labels: {{namespace: shop, service: mail, pod: mail-0}}}}]",
        dp.metrics_addr()
    );
    let config = format!(
        "global: {{scrape_interval: 1s, evaluation_interval: 1s}}
rule_files: [rules.json]
alerting:
  alertmanagers:
    - static_configs:
        - targets: ['{}']
scrape_configs:
  - job_name: mail
    metrics_path: /metrics
    file_sd_configs:
      - files: [{TARGETS}]
        refresh_interval: 1s
",
        alertmanager.addr()
    );
    let rules = prometheus_rule::rule_file(v).unwrap();
    Prometheus::start(&config, &[("rules.json", &rules), (TARGETS, &target)]).unwrap()
}

#[tokio::test]
async fn critical_alerts_page_pagerduty_and_warnings_post_to_slack() {
    let receiver = HttpRecorder::start().unwrap();
    let (pagerduty_path, slack_path) = (PAGERDUTY_PATH, SLACK_PATH);
    let (v, alertmanager, _secrets) = routed_vault(&receiver);

    let mailpit = Mailpit::start().unwrap();
    let port = mailpit.smtp_port().to_string();
    let dp = DataPlane::start(
        &workspace_binary("dataplane").unwrap(),
        &[
            ("SMTP_HOST", "127.0.0.1"),
            ("SMTP_PORT", &port),
            ("SMTP_TLS", "none"),
            ("SMTP_FROM", "noreply@securevault.test"),
        ],
    )
    .unwrap();
    let prometheus = scrape(&v, &alertmanager, &dp);
    // The failure counter must be scraped at 0 before it becomes 1, or
    // `increase` has nothing to compare with.
    wait_query(
        &prometheus,
        "emails_failed_total%7Bservice%3D%22mail%22%7D",
        "0",
        Duration::from_secs(30),
    );

    // A permanent SMTP refusal: the email fails for good, a warning.
    mailpit
        .set_chaos(ChaosTrigger::Recipient, 550, 100)
        .unwrap();
    let sent = Instant::now();
    send_email(&dp, "customer@example.com").await;
    let slack = wait_for(
        &receiver,
        slack_path,
        "SecureVaultEmailDeliveryFailed",
        sent,
        Duration::from_secs(60),
    );
    let message: serde_json::Value = serde_json::from_str(&slack.body).unwrap();
    assert_eq!(message["channel"], "#mail-alerts", "{message}");
    let attachment = &message["attachments"][0];
    assert_eq!(
        attachment["title"], "Firing: SecureVaultEmailDeliveryFailed (shop/mail)",
        "{message}"
    );
    assert!(
        attachment["text"]
            .as_str()
            .unwrap()
            .contains("docs/runbooks/email-delivery-failed.md"),
        "{message}"
    );

    // The data plane stops: a critical alert, to PagerDuty.
    let mut dp = dp;
    dp.process().signal("KILL").unwrap();
    let _ = dp.process().wait_exit(Duration::from_secs(5));
    let stopped = Instant::now();
    // Scrape and evaluation every 1 s, for: 1s, groupWait: 1s.
    let page = health_page(
        &receiver,
        pagerduty_path,
        "SecureVaultHealthCheckFailing",
        stopped,
    );
    let event: serde_json::Value = serde_json::from_str(&page).unwrap();
    assert!(event["dedup_key"].as_str().is_some_and(|k| !k.is_empty()));
    assert_eq!(event["payload"]["severity"], "critical", "{event}");
    assert!(event["payload"]["source"].is_string(), "{event}");

    // Each severity went to its own receiver only.
    let critical = [
        "SecureVaultHealthCheckFailing",
        "SecureVaultHighErrorRate",
        "SecureVaultHighResponseTime",
        "SecureVaultHighMemoryUsage",
    ];
    let warnings = [
        "SecureVaultEmailDeliveryFailed",
        "SecureVaultAIGenerationTimeout",
        "SecureVaultHighCacheMissRate",
        "SecureVaultHighDiskUsage",
    ];
    for r in receiver.requests() {
        let names: &[&str] = if r.path == slack_path {
            &critical
        } else if r.path == pagerduty_path {
            &warnings
        } else {
            panic!("a request to an unknown path: {r:?}")
        };
        for name in names {
            assert!(
                !r.body.contains(name),
                "{name} must not go to {}: {}",
                r.path,
                r.body
            );
        }
    }
}

/// Waits until Prometheus's instant query `query` (URL-encoded) answers
/// with `value` for some series.
fn wait_query(prometheus: &Prometheus, query: &str, value: &str, limit: Duration) {
    let deadline = Instant::now() + limit;
    let needle = format!(",\"{value}\"]");
    loop {
        let answer = prometheus
            .get(&format!("/api/v1/query?query={query}"))
            .unwrap_or_default();
        if answer.contains(&needle) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{query} never answered {value}: {answer}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The body of the first SecureVaultHealthCheckFailing page for shop/mail sent to
/// `path` after `since` whose body contains `needle` (up to 60 s), checked
/// for Events API v2 shape and the routing key.
fn health_page(receiver: &HttpRecorder, path: &str, needle: &str, since: Instant) -> String {
    let page = wait_for(receiver, path, needle, since, Duration::from_secs(60));
    eprintln!(
        "SecureVaultHealthCheckFailing ({needle}) reached PagerDuty {:.1} s after the fault",
        (page.at - since).as_secs_f64()
    );
    let event: serde_json::Value = serde_json::from_str(&page.body).unwrap();
    assert_eq!(event["event_action"], "trigger", "{event}");
    assert_eq!(event["routing_key"], ROUTING_KEY, "{event}");
    assert!(
        event["payload"]["summary"]
            .as_str()
            .unwrap()
            .starts_with("SecureVaultHealthCheckFailing: SecureVault shop/mail"),
        "{event}"
    );
    page.body
}

#[tokio::test]
async fn a_store_that_stops_answering_and_then_pods_that_go_page_as_health_check_failing() {
    let receiver = HttpRecorder::start().unwrap();
    let pagerduty_path = PAGERDUTY_PATH;
    let (v, alertmanager, _secrets) = routed_vault(&receiver);

    // A data plane on PostgreSQL, whose store can stop while it runs.
    let mut postgres = Postgres::start().unwrap();
    let url = postgres.create_database("alerts").unwrap();
    let mut dp = DataPlane::start(
        &workspace_binary("dataplane").unwrap(),
        &[("DATABASE_URL", &url)],
    )
    .unwrap();
    let prometheus = scrape(&v, &alertmanager, &dp);
    let database = "health_check_status%7Bservice%3D%22mail%22%2Ccheck%3D%22database%22%7D";
    wait_query(&prometheus, database, "1", Duration::from_secs(30));

    // The store stops; the process lives and is scraped (`up` 1), but it
    // is not ready: a page.
    postgres.stop().unwrap();
    let stopped = Instant::now();
    let page = health_page(&receiver, pagerduty_path, "cannot reach its store", stopped);
    assert!(page.contains("mail-0"), "names the pod: {page}");
    assert!(dp.process().is_running(), "the process still runs");
    wait_query(
        &prometheus,
        "up%7Bservice%3D%22mail%22%7D",
        "1",
        Duration::from_secs(5),
    );

    // Its pod goes: no target, no `up` at all. A page for the vault as a
    // whole, naming no pod.
    std::fs::write(prometheus.dir().join(TARGETS), "[]").unwrap();
    let gone = Instant::now();
    let page = health_page(
        &receiver,
        pagerduty_path,
        "No pod of SecureVault shop/mail is scraped",
        gone,
    );
    // What fires now names no pod (the store's alert, for mail-0, is
    // listed as resolved beside it).
    let event: serde_json::Value = serde_json::from_str(&page).unwrap();
    let firing = event["payload"]["custom_details"]["firing"]
        .as_str()
        .unwrap_or_default();
    assert!(firing.contains("No pod of"), "{event}");
    assert!(!firing.contains("pod = mail-0"), "names no pod: {event}");
}
