//! The binary as an operator runs it: `--help` lists every setting, a wrong
//! setting stops it with the variable's name, logs are JSON lines with the
//! request id, `migrate` is repeatable, and SIGTERM ends it cleanly.

mod common;

use std::time::Duration;

use common::*;
use testkit::{DataPlane, TempDir};

/// Every setting the data plane reads; `--help` must list them all.
const SETTINGS: &[&str] = &[
    "SECUREVAULT_ENV",
    "LISTEN_ADDR",
    "LOG_LEVEL",
    "DATA_DIR",
    "DATABASE_URL",
    "DATABASE_MAX_CONNECTIONS",
    "REDIS_URL",
    "SECRET_KEY",
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "OPENAI_MODEL",
    "AI_MODELS",
    "AI_UPSTREAMS",
    "AI_COOLDOWN_SECS",
    "AI_TIMEOUT_SECS",
    "AI_MAX_CONCURRENCY",
    "WEBHOOK_URL",
    "WEBHOOK_SECRET",
    "WEBHOOK_FORMAT",
    "SMTP_HOST",
    "SMTP_PORT",
    "SMTP_USERNAME",
    "SMTP_PASSWORD",
    "SMTP_TLS",
    "SMTP_CA_FILE",
    "SMTP_FROM",
    "SMTP_TIMEOUT_SECS",
    "SMTP_MAX_CONNECTIONS",
    "STATS_CACHE_TTL_SECS",
    "REQUEST_TIMEOUT_SECS",
    "SHUTDOWN_TIMEOUT_SECS",
    "MAX_BODY_BYTES",
    "HEADER_READ_TIMEOUT_SECS",
    "IDLE_TIMEOUT_SECS",
    "MAX_CONNECTIONS",
];

#[test]
fn help_lists_every_setting_with_its_variable() {
    let out = run(&[], &["--help"]);
    assert!(out.status.success());
    // Help text wraps at the terminal's width; compare with whitespace collapsed.
    let help = String::from_utf8(out.stdout)
        .unwrap()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    for var in SETTINGS {
        assert!(
            help.contains(&format!("[env: {var}")),
            "--help does not list {var}:\n{help}"
        );
    }
    assert!(help.contains("migrate"));
}

#[test]
fn each_invalid_value_stops_the_process_naming_its_variable() {
    let cases: &[(&str, &str)] = &[
        ("SECUREVAULT_ENV", "staging"),
        ("LISTEN_ADDR", "everywhere:80"),
        ("LOG_LEVEL", "verbose[[["),
        ("DATABASE_URL", "mysql://db/sv"),
        ("DATABASE_MAX_CONNECTIONS", "many"),
        ("REDIS_URL", "memcached://cache"),
        ("SECRET_KEY", "too-short"),
        ("OPENAI_BASE_URL", "api.openai.com"),
        ("WEBHOOK_URL", "slack"),
        ("STATS_CACHE_TTL_SECS", "0"),
        ("REQUEST_TIMEOUT_SECS", "-5"),
        ("SHUTDOWN_TIMEOUT_SECS", "1h"),
        ("MAX_BODY_BYTES", "1e9"),
        ("HEADER_READ_TIMEOUT_SECS", "0"),
        ("IDLE_TIMEOUT_SECS", "forever"),
        ("MAX_CONNECTIONS", "0"),
    ];
    for (var, value) in cases {
        let out = run(&[(var, value)], &[]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{var}={value} must exit 2; stderr: {stderr}"
        );
        assert!(
            stderr.contains(&format!("invalid {var}")),
            "{var}={value}: {stderr}"
        );
    }
    // SMTP settings are checked as a group once SMTP_HOST is set.
    for (var, value) in [
        ("SMTP_PORT", "0"),
        ("SMTP_TLS", "maybe"),
        ("SMTP_FROM", "postmaster"),
    ] {
        let out = run(&[("SMTP_HOST", "mail.example.com"), (var, value)], &[]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{var}={value}: {stderr}");
        assert!(
            stderr.contains(&format!("invalid {var}")),
            "{var}={value}: {stderr}"
        );
    }
}

#[test]
fn secrets_are_never_echoed_in_the_error() {
    let out = run(&[("SECRET_KEY", "hunter2-hunter2")], &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr.contains("SECRET_KEY") && !stderr.contains("hunter2"),
        "{stderr}"
    );
}

#[test]
fn production_mode_refuses_to_start_without_a_secret_key() {
    let out = run(&[("SECUREVAULT_ENV", "production")], &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("invalid SECRET_KEY") && stderr.contains("production"),
        "{stderr}"
    );
}

#[tokio::test]
async fn development_mode_generates_a_key_and_warns() {
    // No key (testkit gives one unless told otherwise).
    let mut dp = start(&[("SECRET_KEY", "")]);
    let warning = dp
        .process()
        .wait_for_line(
            |l| l.contains("SECRET_KEY is not set"),
            Duration::from_secs(5),
        )
        .unwrap();
    let line: serde_json::Value = serde_json::from_str(&warning).unwrap();
    assert_eq!(line["level"], "WARN");
    // Kept in the data directory, private, so that what it sealed still
    // opens after a restart.
    let kept = dp.data_dir().join("secret-key");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&kept).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    assert_eq!(std::fs::read_to_string(&kept).unwrap().len(), 64);
}

#[tokio::test]
async fn log_lines_are_json_with_the_request_id() {
    let mut dp = start(&[("LOG_LEVEL", "debug")]);
    client()
        .get(dp.url("/api/health"))
        .header("x-request-id", "trace-me-42")
        .send()
        .await
        .unwrap();
    let line = dp
        .process()
        .wait_for_line(|l| l.contains("trace-me-42"), Duration::from_secs(5))
        .unwrap();
    let line: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(line["request_id"], "trace-me-42");
    assert_eq!(line["route"], "/api/health");
    assert_eq!(line["message"], "request completed");
    for key in ["timestamp", "level", "logger", "module"] {
        assert!(line[key].is_string(), "{key} missing in {line}");
    }
    // Every line the process printed is one JSON object.
    for l in dp.process().output_lines() {
        serde_json::from_str::<serde_json::Value>(&l)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {l}"));
    }
}

#[test]
fn migrate_applies_the_schema_and_can_run_twice() {
    let dir = TempDir::new("migrate").unwrap();
    for _ in 0..2 {
        let out = DataPlane::command(binary(), dir.path())
            .arg("migrate")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains("migrations applied"));
    }
    assert!(dir.path().join("securevault.db").exists());
}

#[tokio::test]
async fn sigterm_on_an_idle_server_exits_zero() {
    let mut dp = start(&[]);
    get(&dp, "/api/health").await;
    dp.process().signal("TERM").unwrap();
    let status = dp.process().wait_exit(Duration::from_secs(10)).unwrap();
    assert_eq!(status.code(), Some(0));
    assert!(
        dp.process()
            .output_lines()
            .iter()
            .any(|l| l.contains("\"stopped\""))
    );
}
