//! The seed's own production settings, `.env.prod` of the design
//! (`tests/fixtures/seed.env.prod`, copied verbatim), start the real data
//! plane in production mode with only what a deployment must change anyway:
//! the secret values (the seed's placeholders, `sk-...` and a 30-character
//! key, are not secrets) and the addresses of Redis and of the database file
//! (the seed's `redis` host and `/data` are its compose file's). Its Flask
//! names are read and answered, and its log lines have the seed's fields.

// Test code: a failure here is a failed test, so panicking is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use serde_json::Value;

/// `KEY=VALUE` lines of the fixture, comments and blank lines skipped.
fn seed_env() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/fixtures/seed.env.prod"
    ))
    .unwrap();
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (k, v) = l.split_once('=').unwrap();
            (k.to_owned(), v.to_owned())
        })
        .collect()
}

#[tokio::test]
async fn the_seed_s_env_prod_starts_production_mode_and_logs_the_seed_s_fields() {
    let redis = Redis::start().unwrap();
    let store = TempDir::new("seed-env").unwrap();
    let database = format!("sqlite://{}", store.path().join("prod.db").display());
    let mut env = seed_env();
    let names: Vec<&str> = env.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        names,
        [
            "SECRET_KEY",
            "FLASK_ENV",
            "FLASK_DEBUG",
            "REDIS_URL",
            "DATABASE_URL",
            "OPENAI_API_KEY",
            "WEBHOOK_URL"
        ],
        "the seed's .env.prod"
    );
    for (key, value) in &mut env {
        match key.as_str() {
            "SECRET_KEY" => *value = "9f1c2e7a4b6d8f0e3a5c7e9b1d3f5a7c9e1b3d5f7a9c1e3b".into(),
            "OPENAI_API_KEY" => *value = "sk-a-real-key-is-a-secret-of-the-deployment".into(),
            "REDIS_URL" => *value = redis.url(),
            "DATABASE_URL" => value.clone_from(&database),
            _ => {}
        }
    }
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mut dp = start(&env);

    // Production mode, and the Slack format for a hooks.slack.com URL (the
    // standard format would have refused to start without WEBHOOK_SECRET).
    let token = token(&dp).await;
    let trail: Value = bearer(&token)
        .get(dp.url("/api/audit?action=config.change"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let detail: Value =
        serde_json::from_str(trail["entries"][0]["detail"].as_str().unwrap()).unwrap();
    assert_eq!(
        detail["settings"]["SECUREVAULT_ENV"], "production",
        "{detail}"
    );
    assert_eq!(detail["settings"]["WEBHOOK_FORMAT"], "Slack", "{detail}");
    assert_eq!(detail["settings"]["DATABASE_URL"], "sqlite", "{detail}");
    assert_eq!(detail["settings"]["REDIS_URL"], true, "{detail}");

    // Every line is JSON with the seed's fields; the request's lines carry
    // its request_id, and the signed-in user's its user_id.
    let lines: Vec<Value> = dp
        .process()
        .output_lines()
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    for line in &lines {
        for field in ["timestamp", "level", "logger", "message", "module"] {
            assert!(line[field].is_string(), "{field} in {line}");
        }
        let logger = line["logger"].as_str().unwrap();
        assert!(
            logger == "dataplane" || logger.starts_with("dataplane."),
            "{line}"
        );
    }
    let flask = lines
        .iter()
        .find(|l| l["message"].as_str().unwrap().contains("FLASK_ENV"))
        .unwrap_or_else(|| panic!("a line about FLASK_ENV in {lines:?}"));
    assert_eq!(flask["level"], "WARN");
    assert!(
        flask["message"]
            .as_str()
            .unwrap()
            .contains("SECUREVAULT_ENV=production"),
        "{flask}"
    );
    let signed_in = lines
        .iter()
        .find(|l| l["message"] == "signed in")
        .unwrap_or_else(|| panic!("the sign-in's line in {lines:?}"));
    assert!(signed_in["request_id"].is_string(), "{signed_in}");
    assert!(
        signed_in["user_id"].as_str().unwrap().starts_with("user:"),
        "{signed_in}"
    );
    assert_eq!(signed_in["logger"], "dataplane.routes.auth", "{signed_in}");
    assert_eq!(signed_in["module"], "auth", "{signed_in}");
    // No secret of the file in any line.
    let all = lines.iter().map(Value::to_string).collect::<String>();
    for (key, value) in &env {
        if ["SECRET_KEY", "OPENAI_API_KEY", "REDIS_URL", "WEBHOOK_URL"].contains(key) {
            assert!(!all.contains(value), "{key}'s value in the logs");
        }
    }
}
