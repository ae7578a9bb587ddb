//! `dataplane backup` and `dataplane restore` for real, on SQLite and on a
//! real PostgreSQL: write data through the API and the store, back up while
//! the data plane serves, wipe, restore, and compare every row of every
//! table; then a data plane on the restored store still knows its sessions.

#![allow(clippy::unwrap_used, clippy::panic)]

mod common;

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    time::Duration,
};

use common::*;
use serde_json::json;
use sqlx::{Column, Row};

const TABLES: [&str; 7] = [
    "users",
    "sessions",
    "api_keys",
    "emails",
    "generations",
    "webhook_events",
    "audit_log",
];

/// Every row of every table, each as one line of `column=value` pairs,
/// sorted: two stores with the same dump hold the same data.
async fn dump(url: &str) -> BTreeMap<&'static str, Vec<String>> {
    let pool = store_pool(url).await;
    let mut tables = BTreeMap::new();
    for table in TABLES {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT * FROM {table}")))
            .fetch_all(&pool)
            .await
            .unwrap();
        let mut lines: Vec<String> = rows
            .iter()
            .map(|row| {
                row.columns()
                    .iter()
                    .map(|c| {
                        let i = c.ordinal();
                        let value = row
                            .try_get::<Option<String>, _>(i)
                            .map(|v| format!("{v:?}"))
                            .or_else(|_| row.try_get::<Option<i64>, _>(i).map(|v| format!("{v:?}")))
                            .or_else(|_| {
                                row.try_get::<Option<bool>, _>(i).map(|v| format!("{v:?}"))
                            })
                            .or_else(|_| row.try_get::<Option<f64>, _>(i).map(|v| format!("{v:?}")))
                            .unwrap_or_else(|e| panic!("{table}.{}: {e}", c.name()));
                        format!("{}={value}", c.name())
                    })
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect();
        lines.sort();
        tables.insert(table, lines);
    }
    pool.close().await;
    tables
}

/// Users, a session, an API key, audit entries (through the API), and
/// emails, generations and a webhook event (through the store).
async fn write_data(dp: &DataPlane, url: &str) -> String {
    let admin = authed(dp).await;
    let r = admin
        .post(dp.url("/api/users"))
        .json(&json!({"username": "ops", "password": "a long member password", "role": "member"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let r = admin
        .post(dp.url("/api/keys"))
        .json(&json!({"name": "billing", "scopes": ["email"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let session = login(dp, "ops", "a long member password").await;
    let pool = store_pool(url).await;
    insert_email(&pool, "e1", "sent", Duration::from_secs(60)).await;
    insert_email(&pool, "e2", "queued", Duration::from_secs(5)).await;
    insert_generation(&pool, "g1", "succeeded", Duration::from_secs(30)).await;
    sqlx::query(
        "INSERT INTO webhook_events (id, event_type, data, status, next_attempt_at, created_at, updated_at) \
         VALUES ('w1', 'email.sent', '{\"id\":\"e1\"}', 'pending', 1, 1, 1)",
    )
    .execute(&pool)
    .await
    .unwrap();
    pool.close().await;
    session
}

fn cli(database_url: &str, args: &[&str]) {
    let out = run(&[("DATABASE_URL", database_url)], args);
    assert!(
        out.status.success(),
        "dataplane {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn the_backup_in(dir: &Path, extension: &str) -> PathBuf {
    let files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let file = files[0].clone();
    let name = file.file_name().unwrap().to_string_lossy().to_string();
    assert!(
        name.starts_with("securevault-") && name.ends_with(extension),
        "{name}"
    );
    file
}

async fn still_signed_in(dp: &DataPlane, session: &str) {
    let me = bearer(session)
        .get(dp.url("/api/auth/me"))
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), 200, "the restored session is not known");
    assert_eq!(json(me).await["name"], "ops");
}

/// Writes data into the store at `url` through a serving data plane, backs
/// it up while it serves, has `wipe` empty the store, restores, and checks
/// every row came back and the old session still works.
async fn round_trip(url: &str, extension: &str, wipe: impl FnOnce()) {
    let backups = TempDir::new("backups").unwrap();
    let dp = start(&[("DATABASE_URL", url)]);
    let session = write_data(&dp, url).await;
    let before = dump(url).await;
    assert!(before.values().all(|rows| !rows.is_empty()), "{before:#?}");

    // While the data plane serves.
    cli(
        url,
        &["backup", "--output", &backups.path().display().to_string()],
    );
    drop(dp);
    let file = the_backup_in(backups.path(), extension);

    wipe();
    cli(url, &["migrate"]);
    assert!(
        dump(url).await.values().all(Vec::is_empty),
        "the wipe left rows"
    );
    cli(url, &["restore", &file.display().to_string()]);
    assert_eq!(dump(url).await, before);

    let dp = start(&[("DATABASE_URL", url)]);
    still_signed_in(&dp, &session).await;
}

#[tokio::test]
async fn a_sqlite_backup_restores_every_row() {
    let store_dir = TempDir::new("store").unwrap();
    let db = store_dir.path().join("securevault.db");
    let url = format!("sqlite://{}", db.display());
    round_trip(&url, ".sqlite", || {
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
        }
    })
    .await;
}

#[tokio::test]
async fn a_postgres_backup_restores_every_row() {
    let pg = Postgres::start().unwrap();
    let url = pg.create_database("backed").unwrap();
    round_trip(&url, ".pgjson", || {
        pg.psql("postgres", "DROP DATABASE backed").unwrap();
        assert_eq!(pg.create_database("backed").unwrap(), url);
    })
    .await;
}

#[tokio::test]
async fn retention_keeps_the_newest_backups_and_bad_files_are_refused() {
    let backups = TempDir::new("backups").unwrap();
    let store_dir = TempDir::new("store").unwrap();
    let url = format!(
        "sqlite://{}",
        store_dir.path().join("securevault.db").display()
    );
    cli(&url, &["migrate"]);
    let dir = backups.path().display().to_string();
    for _ in 0..3 {
        cli(&url, &["backup", "--output", &dir, "--retain", "2"]);
        // Names carry the second: one a second apart.
        std::thread::sleep(Duration::from_millis(1100));
    }
    assert_eq!(std::fs::read_dir(backups.path()).unwrap().count(), 2);

    let junk = backups.path().join("junk.sqlite");
    std::fs::write(&junk, "not a database").unwrap();
    let out = run(
        &[("DATABASE_URL", &url)],
        &["restore", &junk.display().to_string()],
    );
    assert!(!out.status.success());
}

/// Backs up a store of the schema before key owners, restores it into the
/// store at `url` (the current schema): its keys get their owners, as the
/// migration gives them to a store upgraded in place.
async fn keys_from_an_older_backup_get_their_owners(old_url: &str, url: &str, extension: &str) {
    let legacy = legacy_key_store(old_url).await;
    let backups = TempDir::new("backups").unwrap();
    cli(
        old_url,
        &["backup", "--output", &backups.path().display().to_string()],
    );
    let file = the_backup_in(backups.path(), extension);
    cli(url, &["restore", &file.display().to_string()]);
    let dp = start(&[("DATABASE_URL", url)]);
    check_legacy_keys(&dp, &legacy).await;
}

#[tokio::test]
async fn keys_from_a_sqlite_backup_older_than_key_owners_get_their_owners() {
    let dir = TempDir::new("stores").unwrap();
    let old = format!("sqlite://{}", dir.path().join("old.db").display());
    let new = format!("sqlite://{}", dir.path().join("new.db").display());
    keys_from_an_older_backup_get_their_owners(&old, &new, ".sqlite").await;
}

#[tokio::test]
async fn keys_from_a_postgres_backup_older_than_key_owners_get_their_owners() {
    let pg = Postgres::start().unwrap();
    let old = pg.create_database("old").unwrap();
    let new = pg.create_database("new").unwrap();
    keys_from_an_older_backup_get_their_owners(&old, &new, ".pgjson").await;
}
