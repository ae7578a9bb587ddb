//! Encryption at rest: what people send through the API is not in the
//! store's files (SQLite, and a PostgreSQL dump), a rotation of
//! `SECRET_KEY` keeps every row readable, and a store meets only the key it
//! was sealed with.

// Test support below the tests: a failure is a failed test, so panicking is the point.
#![allow(clippy::unwrap_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::*;
use reqwest::StatusCode;
use serde_json::{Value, json};
use testkit::mailpit::Mailpit;

const OLD_KEY: &str = "the-old-secret-key-of-this-vault-0123456789abcdef";
const NEW_KEY: &str = "the-new-secret-key-of-this-vault-fedcba9876543210";

/// Written through the API in every field people write; none may reach
/// the store's files.
const MARK: &str = "m4rk3r";

fn smtp(mailpit: &Mailpit) -> Vec<(&'static str, String)> {
    vec![
        ("SMTP_HOST", "127.0.0.1".into()),
        ("SMTP_PORT", mailpit.smtp_port().to_string()),
        ("SMTP_TLS", "none".into()),
        ("SMTP_FROM", "noreply@securevault.test".into()),
    ]
}

fn env<'a>(
    pairs: &'a [(&'static str, String)],
    more: &[(&'static str, &'a str)],
) -> Vec<(&'a str, &'a str)> {
    pairs
        .iter()
        .map(|(k, v)| (*k, v.as_str()))
        .chain(more.iter().copied())
        .collect()
}

async fn send_marked(dp: &DataPlane, n: usize) -> String {
    let r = authed(dp)
        .await
        .post(dp.url("/api/send-email"))
        .json(&json!({
            "to": [format!("Ada {MARK} <ada-{MARK}-{n}@example.com>")],
            "cc": [format!("cc-{MARK}@example.com")],
            "reply_to": format!("reply-{MARK}@example.com"),
            "subject": format!("Subject {MARK} {n}"),
            "text": format!("Text body {MARK}"),
            "html": format!("<p>HTML body {MARK}</p>"),
            "headers": {"X-Note": format!("Header {MARK}")},
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    json(r).await["id"].as_str().unwrap().to_owned()
}

async fn read(dp: &DataPlane, id: &str) -> Value {
    let r = get(dp, &format!("/api/emails/{id}")).await;
    assert_eq!(r.status(), StatusCode::OK);
    json(r).await
}

/// Every byte of every file under `dir`, lower-cased as text.
fn files_text(dir: &std::path::Path) -> String {
    let mut all = String::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            all.push_str(&String::from_utf8_lossy(&std::fs::read(&path).unwrap()).to_lowercase());
        }
    }
    all
}

#[tokio::test]
async fn nothing_people_wrote_is_in_the_sqlite_files() {
    let mailpit = Mailpit::start().unwrap();
    let settings = smtp(&mailpit);
    let dp = start(&env(&settings, &[]));
    let id = send_marked(&dp, 1).await;
    wait_for("the email sent", Duration::from_secs(30), || async {
        let e = read(&dp, &id).await;
        if e["status"] == "sent" {
            Ok(())
        } else {
            Err(e.to_string())
        }
    })
    .await;
    // Served in clear to whoever may read it…
    let email = read(&dp, &id).await;
    assert_eq!(email["subject"], format!("Subject {MARK} 1"));
    assert_eq!(
        email["to"][0],
        format!("Ada {MARK} <ada-{MARK}-1@example.com>")
    );
    // …and what arrived is what was sent.
    let arrived = &mailpit.messages().unwrap()[0];
    assert_eq!(arrived.subject, format!("Subject {MARK} 1"));
    // The store's files (database, WAL) hold none of it.
    let files = files_text(dp.data_dir());
    assert!(files.contains("sv1:"), "sealed values are there");
    assert!(!files.contains(MARK), "a marker is in the store's files");
}

#[tokio::test]
async fn nothing_people_wrote_is_in_a_postgres_dump() {
    let mailpit = Mailpit::start().unwrap();
    let pg = Postgres::start().unwrap();
    let url = pg.create_database("sealed").unwrap();
    let settings = smtp(&mailpit);
    let dp = start(&env(&settings, &[("DATABASE_URL", &url)]));
    let id = send_marked(&dp, 1).await;
    assert_eq!(read(&dp, &id).await["subject"], format!("Subject {MARK} 1"));
    let dump = pg.dump("sealed").unwrap();
    assert!(
        dump.contains("sv1:") && dump.contains(&id),
        "the dump holds the email"
    );
    assert!(
        !dump.to_lowercase().contains(MARK),
        "a marker is in the dump"
    );
}

#[tokio::test]
async fn a_rotation_keeps_ten_thousand_rows_readable_and_the_old_key_then_opens_nothing() {
    let dir = TempDir::new("rotation").unwrap();
    let url = format!("sqlite://{}", dir.path().join("store.db").display());
    // No SMTP: the emails stay queued, which is all this needs.
    let queued = [
        ("DATABASE_URL", url.as_str()),
        ("SMTP_HOST", "127.0.0.1"),
        ("SMTP_PORT", "1"),
        ("SMTP_TLS", "none"),
        ("SMTP_FROM", "noreply@securevault.test"),
    ];
    let dp = start(&[&queued[..], &[("SECRET_KEY", OLD_KEY)]].concat());
    let client = authed(&dp).await;
    let mut ids = Vec::new();
    for chunk in 0..100 {
        let batch = futures::future::join_all((0..100).map(|i| {
            let n = chunk * 100 + i;
            client
                .post(dp.url("/api/send-email"))
                .json(&json!({"to": format!("r{n}@example.com"), "subject": format!("Row {n}"), "text": "x"}))
                .send()
        }))
        .await;
        for r in batch {
            let r = r.unwrap();
            assert_eq!(r.status(), StatusCode::ACCEPTED);
            ids.push(json(r).await["id"].as_str().unwrap().to_owned());
        }
    }
    assert_eq!(ids.len(), 10_000);
    drop(dp);

    // The new key alone does not start: the store says which key it needs.
    let out = run(
        &[&queued[..], &[("SECRET_KEY", NEW_KEY)]].concat(),
        &["serve"],
    );
    let said = output(&out);
    assert!(!out.status.success(), "{said}");
    assert!(
        said.contains("neither SECRET_KEY nor SECRET_KEY_PREVIOUS"),
        "{said}"
    );

    // New key, old one as previous: serves every row, seals new ones anew.
    let rotating = [
        &queued[..],
        &[("SECRET_KEY", NEW_KEY), ("SECRET_KEY_PREVIOUS", OLD_KEY)],
    ]
    .concat();
    let dp = start(&rotating);
    assert_eq!(read(&dp, &ids[0]).await["subject"], "Row 0");
    assert_eq!(read(&dp, &ids[9_999]).await["subject"], "Row 9999");
    drop(dp);
    let out = run(&rotating, &["reencrypt"]);
    assert!(out.status.success(), "{}", output(&out));
    assert!(
        output(&out).contains("\"emails\":10000"),
        "{}",
        output(&out)
    );

    // Afterwards the new key alone serves everything; the old one nothing.
    let dp = start(&[&queued[..], &[("SECRET_KEY", NEW_KEY)]].concat());
    let pool = store_pool(&url).await;
    let old_sealed: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM emails WHERE subject NOT LIKE $1")
            .bind(format!("sv1:{}:%", key_id(&pool).await))
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(old_sealed, 0);
    for i in [0, 1234, 9_999] {
        assert_eq!(read(&dp, &ids[i]).await["subject"], format!("Row {i}"));
    }
    drop(dp);
    let out = run(
        &[&queued[..], &[("SECRET_KEY", OLD_KEY)]].concat(),
        &["serve"],
    );
    assert!(!out.status.success(), "the old key still opens the store");
}

/// The one key id the store records.
async fn key_id(pool: &sqlx::AnyPool) -> String {
    let ids: Vec<String> = sqlx::query_scalar("SELECT id FROM encryption_keys")
        .fetch_all(pool)
        .await
        .unwrap();
    assert_eq!(ids.len(), 1, "{ids:?}");
    ids[0].clone()
}

#[tokio::test]
async fn a_backup_restores_only_with_its_key() {
    let dir = TempDir::new("restore").unwrap();
    let url = format!("sqlite://{}", dir.path().join("store.db").display());
    let backups = TempDir::new("backups").unwrap();
    let smtp = [
        ("DATABASE_URL", url.as_str()),
        ("SMTP_HOST", "127.0.0.1"),
        ("SMTP_PORT", "1"),
        ("SMTP_TLS", "none"),
        ("SMTP_FROM", "noreply@securevault.test"),
    ];
    let with_old = [&smtp[..], &[("SECRET_KEY", OLD_KEY)]].concat();
    let dp = start(&with_old);
    let id = send_marked(&dp, 7).await;
    drop(dp);
    let out = run(
        &with_old,
        &["backup", "--output", backups.path().to_str().unwrap()],
    );
    assert!(out.status.success(), "{}", output(&out));
    // The backup holds no marker either.
    assert!(!files_text(backups.path()).contains(MARK));

    // Restored into a new store: with another key it does not start…
    let other = TempDir::new("restored").unwrap();
    let new_url = format!("sqlite://{}", other.path().join("store.db").display());
    let restored = [
        ("DATABASE_URL", new_url.as_str()),
        ("SMTP_HOST", "127.0.0.1"),
        ("SMTP_PORT", "1"),
        ("SMTP_TLS", "none"),
        ("SMTP_FROM", "noreply@securevault.test"),
    ];
    let file = std::fs::read_dir(backups.path())
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let out = run(
        &[&restored[..], &[("SECRET_KEY", NEW_KEY)]].concat(),
        &["restore", file.to_str().unwrap()],
    );
    assert!(out.status.success(), "{}", output(&out));
    let out = run(
        &[&restored[..], &[("SECRET_KEY", NEW_KEY)]].concat(),
        &["serve"],
    );
    assert!(!out.status.success());
    assert!(
        output(&out).contains("neither SECRET_KEY nor SECRET_KEY_PREVIOUS"),
        "{}",
        output(&out)
    );
    // …and with its own key it serves what was sealed.
    let dp = start(&[&restored[..], &[("SECRET_KEY", OLD_KEY)]].concat());
    assert_eq!(read(&dp, &id).await["subject"], format!("Subject {MARK} 7"));
}

/// What the process printed: its log (stdout) and stderr.
fn output(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[tokio::test]
async fn the_console_finds_sealed_emails_by_recipient() {
    let mailpit = Mailpit::start().unwrap();
    let settings = smtp(&mailpit);
    let dp = start(&env(&settings, &[]));
    let first = send_marked(&dp, 1).await;
    let second = send_marked(&dp, 2).await;
    let token = token(&dp).await;
    let page = |query: String| {
        let (dp, token) = (&dp, &token);
        async move { console_page(dp, token, &format!("/console/emails?recipient={query}")).await }
    };
    // The whole address, in any case, To or Cc: through the blind index.
    let list = page(format!("ADA-{MARK}-1@example.com")).await;
    assert!(list.contains(&first) && !list.contains(&second), "{list}");
    let list = page(format!("cc-{MARK}@example.com")).await;
    assert!(list.contains(&first) && list.contains(&second), "{list}");
    // Part of one finds nothing: the store cannot read what it holds.
    let list = page(format!("ada-{MARK}")).await;
    assert!(!list.contains(&first), "{list}");
}
