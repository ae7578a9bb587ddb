//! The SMTP relay as production has it: TLS (STARTTLS or implicit) with a
//! certificate from a private CA, and a login. The relay is a real mailpit
//! started with that certificate and a password file; what arrived is read
//! from its API.
//!
//! A wrong setting (an untrusted certificate, a refused login) keeps the
//! email queued with the reason, and the health report names it: the email
//! goes out once the setting is fixed, never lost to `failed`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::*;
use reqwest::StatusCode;
use serde_json::{Value, json};
use testkit::{
    certs::TestCa,
    mailpit::{Mailpit, SmtpSecurity},
};

const USER: &str = "relay-user";
const PASSWORD: &str = "relay-password-1";

struct Relay {
    mailpit: Mailpit,
    ca_dir: TempDir,
    /// `SMTP_TLS` for this relay.
    tls: &'static str,
}

impl Relay {
    /// A relay taking only our login, with TLS as `tls` (`SMTP_TLS`'s
    /// values) says, its certificate issued by a private CA.
    fn start(tls: &'static str) -> Relay {
        let ca = TestCa::new("relay test CA").unwrap();
        let mailpit = Mailpit::start_secured(SmtpSecurity {
            tls: (tls != "none").then(|| ca.issue(&["localhost", "127.0.0.1"]).unwrap()),
            implicit_tls: tls == "tls",
            logins: vec![(USER.to_owned(), PASSWORD.to_owned())],
        })
        .unwrap();
        let ca_dir = TempDir::new("relay-ca").unwrap();
        std::fs::write(ca_dir.path().join("ca.crt"), &ca.pem).unwrap();
        Relay {
            mailpit,
            ca_dir,
            tls,
        }
    }

    fn ca_file(&self) -> String {
        self.ca_dir.path().join("ca.crt").display().to_string()
    }

    /// The data plane's settings for this relay; `extra` last, so it wins.
    fn env(&self, extra: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut env: Vec<(String, String)> = [
            ("SMTP_HOST", "localhost"),
            ("SMTP_PORT", &self.mailpit.smtp_port().to_string()),
            ("SMTP_TLS", self.tls),
            ("SMTP_CA_FILE", &self.ca_file()),
            ("SMTP_USERNAME", USER),
            ("SMTP_PASSWORD", PASSWORD),
            ("SMTP_FROM", "SecureVault <noreply@securevault.test>"),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
        for (k, v) in extra {
            env.retain(|(key, _)| key != k);
            env.push(((*k).to_owned(), (*v).to_owned()));
        }
        env.retain(|(_, v)| !v.is_empty());
        env
    }
}

fn start_dp(env: &[(String, String)]) -> DataPlane {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    start(&env)
}

async fn send(dp: &DataPlane, subject: &str) -> String {
    let response = authed(dp)
        .await
        .post(dp.url("/api/send-email"))
        .json(&json!({"to": "a@example.com", "subject": subject, "text": "t"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    json(response).await["id"].as_str().unwrap().to_owned()
}

async fn email(dp: &DataPlane, id: &str) -> Value {
    json(get(dp, &format!("/api/emails/{id}")).await).await
}

async fn wait_sent(dp: &DataPlane, id: &str) -> Value {
    wait_for("the email sent", Duration::from_secs(20), || async {
        let e = email(dp, id).await;
        if e["status"] == "sent" {
            Ok(e)
        } else {
            Err(e.to_string())
        }
    })
    .await
}

/// Waits until the email's first attempt failed and was rescheduled.
async fn wait_retrying(dp: &DataPlane, id: &str) -> Value {
    wait_for("a failed attempt", Duration::from_secs(20), || async {
        let e = email(dp, id).await;
        if e["status"] != "sending" && e["last_error"].is_string() {
            Ok(e)
        } else {
            Err(e.to_string())
        }
    })
    .await
}

async fn smtp_health(dp: &DataPlane) -> Value {
    json(get(dp, "/api/health/detailed").await).await["checks"]["smtp"].clone()
}

async fn delivered_over(tls: &'static str) {
    let relay = Relay::start(tls);
    let dp = start_dp(&relay.env(&[]));
    let id = send(&dp, &format!("over {tls}")).await;
    let sent = wait_sent(&dp, &id).await;
    assert_eq!(sent["attempts"], 1, "{sent}");
    let messages = relay.mailpit.messages().unwrap();
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].subject, format!("over {tls}"));
    assert_eq!(smtp_health(&dp).await["status"], "healthy");
}

#[tokio::test]
async fn starttls_with_a_private_ca_and_a_login_delivers() {
    delivered_over("starttls").await;
}

#[tokio::test]
async fn implicit_tls_with_a_private_ca_and_a_login_delivers() {
    delivered_over("tls").await;
}

#[tokio::test]
async fn an_untrusted_certificate_keeps_the_email_queued_until_the_ca_is_given() {
    let relay = Relay::start("starttls");
    let dir = TempDir::new("untrusted").unwrap();
    let data_dir = dir.path().display().to_string();
    let dp = start_dp(&relay.env(&[("SMTP_CA_FILE", ""), ("DATA_DIR", &data_dir)]));
    let id = send(&dp, "trust").await;
    let retrying = wait_retrying(&dp, &id).await;
    assert_eq!(retrying["status"], "queued", "{retrying}");
    let error = retrying["last_error"].as_str().unwrap();
    assert!(error.contains("certificate"), "{error}");
    let health = smtp_health(&dp).await;
    assert_eq!(health["status"], "unhealthy", "{health}");
    assert!(
        health["error"].as_str().unwrap().contains("certificate"),
        "{health}"
    );
    assert_eq!(relay.mailpit.message_count().unwrap(), 0);
    drop(dp);

    let dp = start_dp(&relay.env(&[("DATA_DIR", &data_dir)]));
    wait_sent(&dp, &id).await;
    assert_eq!(relay.mailpit.messages().unwrap()[0].subject, "trust");
}

#[tokio::test]
async fn a_refused_login_keeps_the_email_queued_until_the_password_is_fixed() {
    // Without TLS, so that only the login is wrong on a build without
    // SMTP_CA_FILE too.
    let relay = Relay::start("none");
    let dir = TempDir::new("login").unwrap();
    let data_dir = dir.path().display().to_string();
    let wrong = [
        ("SMTP_PASSWORD", "an old password"),
        ("DATA_DIR", &data_dir),
    ];
    let dp = start_dp(&relay.env(&wrong));
    let id = send(&dp, "login").await;
    let retrying = wait_retrying(&dp, &id).await;
    // The relay's 535 is about our login, not this message: a permanent
    // refusal here would fail every queued email on a rotated password.
    assert_eq!(retrying["status"], "queued", "{retrying}");
    let error = retrying["last_error"].as_str().unwrap();
    assert!(error.contains("535"), "{error}");
    assert!(!error.contains("an old password"), "{error}");
    assert_eq!(metric(&dp, "emails_failed_total").await, Some(0.0));
    let health = smtp_health(&dp).await;
    assert!(
        health["error"].as_str().unwrap().contains("535"),
        "{health}"
    );
    drop(dp);

    let dp = start_dp(&relay.env(&[("DATA_DIR", &data_dir)]));
    wait_sent(&dp, &id).await;
    assert_eq!(relay.mailpit.message_count().unwrap(), 1);
}

#[tokio::test]
async fn a_restarted_relay_costs_no_retry() {
    let mut relay = Relay::start("starttls");
    let dp = start_dp(&relay.env(&[]));
    let first = send(&dp, "before").await;
    wait_sent(&dp, &first).await;

    // The pooled connection dies with the relay; past the pool's five
    // seconds of trust, the next send checks it (NOOP) and opens another.
    relay.mailpit.restart().unwrap();
    tokio::time::sleep(Duration::from_secs(6)).await;
    let second = send(&dp, "after").await;
    let sent = wait_sent(&dp, &second).await;
    assert_eq!(sent["attempts"], 1, "{sent}");
    assert_eq!(relay.mailpit.message_count().unwrap(), 2);
}

/// The health check asks the relay every five seconds. It asks on the
/// connection the pool keeps, as the sends use it: one TLS handshake and
/// one login, not one per check.
#[tokio::test]
async fn health_checks_and_sends_share_one_login_at_the_relay() {
    let relay = Relay::start("starttls");
    let dp = start_dp(&relay.env(&[]));
    let healthy = async {
        while smtp_health(&dp).await["status"] != "healthy" {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), healthy)
        .await
        .expect("the relay is healthy within ten seconds");
    let id = send(&dp, "one login").await;
    wait_sent(&dp, &id).await;
    // Two more rounds of checks.
    tokio::time::sleep(Duration::from_secs(11)).await;
    assert_eq!(smtp_health(&dp).await["status"], "healthy");
    assert_eq!(
        metric(&dp, "smtp_connections_opened_total").await,
        Some(1.0)
    );
    assert_eq!(relay.mailpit.message_count().unwrap(), 1);
}

#[test]
fn an_unreadable_ca_file_stops_the_start_naming_it() {
    let relay = Relay::start("starttls");
    let dir = TempDir::new("bad-ca").unwrap();
    let not_pem = dir.path().join("ca.crt");
    std::fs::write(&not_pem, "not a certificate\n").unwrap();
    for (file, reason) in [
        (dir.path().join("missing.crt"), "No such file"),
        (not_pem, "no certificate in the file"),
    ] {
        let file = file.display().to_string();
        let env = relay.env(&[("SMTP_CA_FILE", &file)]);
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let out = run(&env, &["serve"]);
        assert!(!out.status.success());
        // The reason is logged (JSON on stdout), once.
        let log = String::from_utf8_lossy(&out.stdout);
        assert!(
            log.contains(&format!("SMTP_CA_FILE {file}: {reason}")),
            "{log}"
        );
        assert_eq!(log.matches(reason).count(), 1, "{log}");
    }
}
