//! `dataplane backup` and `dataplane restore` for real, on SQLite and on a
//! real PostgreSQL: write data through the API and the store, back up while
//! the data plane serves, wipe, restore, and compare every row of every
//! table; then a data plane on the restored store still knows its sessions.
//!
//! Then the schedule `serve` runs, into a real S3-compatible server
//! (SeaweedFS): backups land in the bucket, a new store restores the latest
//! one and the old session and API key work on it; a missing bucket,
//! refused credentials and an endpoint that does not answer are each named,
//! and the data plane serves on.

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
use testkit::SeaweedFs;

/// Every table of the schema, as the database itself lists them (not the
/// data plane's own list, which is what is under test: a table it forgot
/// would be lost by every backup).
async fn tables(pool: &sqlx::AnyPool, url: &str) -> Vec<String> {
    let sql = if url.starts_with("sqlite") {
        "SELECT name FROM sqlite_master WHERE type = 'table' \
         AND name NOT LIKE 'sqlite_%' AND name <> '_sqlx_migrations' ORDER BY name"
    } else {
        "SELECT CAST(table_name AS TEXT) FROM information_schema.tables \
         WHERE table_schema = 'public' AND table_name <> '_sqlx_migrations' ORDER BY table_name"
    };
    sqlx::query(sql)
        .fetch_all(pool)
        .await
        .unwrap()
        .iter()
        .map(|r| r.get::<String, _>(0))
        .collect()
}

/// Every row of every table, each as one line of `column=value` pairs,
/// sorted: two stores with the same dump hold the same data.
async fn dump(url: &str) -> BTreeMap<String, Vec<String>> {
    let pool = store_pool(url).await;
    let mut dumped = BTreeMap::new();
    for table in tables(&pool, url).await {
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
        dumped.insert(table, lines);
    }
    pool.close().await;
    dumped
}

/// Users, a session, an API key, a suppression, audit entries (through the API), and
/// emails, generations and a webhook event (through the store).
async fn write_data(dp: &DataPlane, url: &str) -> (String, String) {
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
    let key = json(r).await["key"].as_str().unwrap().to_owned();
    let session = login(dp, "ops", "a long member password").await;
    let r = admin
        .post(dp.url("/api/suppressions"))
        .json(&json!({"address": "gone@example.com", "reason": "unsubscribe"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
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
    (session, key)
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
    let (session, _) = write_data(&dp, url).await;
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

/// The settings of a destination in `seaweed`'s bucket `bucket`, folder
/// `team-a/mail`, with backups every 2 s.
fn bucket_env(endpoint: &str, bucket: &str, secret: &str) -> Vec<(&'static str, String)> {
    vec![
        ("BACKUP_S3_ENDPOINT", endpoint.to_owned()),
        ("BACKUP_S3_BUCKET", bucket.to_owned()),
        ("BACKUP_S3_PREFIX", "team-a/mail".to_owned()),
        ("BACKUP_S3_ACCESS_KEY_ID", SeaweedFs::ACCESS_KEY.to_owned()),
        ("BACKUP_S3_SECRET_ACCESS_KEY", secret.to_owned()),
        ("BACKUP_INTERVAL_SECS", "2".to_owned()),
        ("BACKUP_RETAIN", "1".to_owned()),
    ]
}

fn with<'a>(
    env: &'a [(&'static str, String)],
    more: &[(&'static str, &'a str)],
) -> Vec<(&'a str, &'a str)> {
    env.iter()
        .map(|(k, v)| (*k, v.as_str()))
        .chain(more.iter().copied())
        .collect()
}

async fn successful_backups(dp: &DataPlane) -> f64 {
    metric(dp, "backup_runs_total{result=\"success\"}")
        .await
        .unwrap_or(0.0)
}

#[tokio::test]
async fn scheduled_backups_reach_the_bucket_and_a_new_store_restores_the_latest() {
    let seaweed = SeaweedFs::start().unwrap();
    seaweed.create_bucket("backups").unwrap();
    let env = bucket_env(&seaweed.endpoint(), "backups", SeaweedFs::SECRET_KEY);
    let store_dir = TempDir::new("store").unwrap();
    let url = format!(
        "sqlite://{}",
        store_dir.path().join("securevault.db").display()
    );
    let dp = start(&with(&env, &[("DATABASE_URL", &url)]));
    // The bucket is empty: the first backup is due at once.
    eventually(Duration::from_secs(30), "a first backup", || async {
        successful_backups(&dp).await >= 1.0
    })
    .await;
    let (session, key) = write_data(&dp, &url).await;
    let before = dump(&url).await;
    // One that started after the writes (the next but one: the next may
    // have begun during them); retention keeps the newest only.
    let taken = successful_backups(&dp).await;
    eventually(
        Duration::from_secs(60),
        "a backup after the writes",
        || async { successful_backups(&dp).await >= taken + 2.0 },
    )
    .await;
    let objects = seaweed.objects("backups/team-a/mail").unwrap();
    assert_eq!(objects.len(), 1, "{objects:?}");
    assert!(
        objects.iter().all(|o| o.name.starts_with("securevault-")
            && o.name.ends_with(".sqlite")
            && o.size > 0),
        "{objects:?}"
    );
    let taken = metric(&dp, "backup_last_success_timestamp_seconds")
        .await
        .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(
        now - taken < 30.0,
        "the last backup is {}s old",
        now - taken
    );
    drop(dp);

    // A new store, as a restoring pod's init container fills it.
    let new_dir = TempDir::new("restored").unwrap();
    let new_url = format!(
        "sqlite://{}",
        new_dir.path().join("securevault.db").display()
    );
    let restore = |args: &[&str]| {
        let out = run(&with(&env, &[("DATABASE_URL", &new_url)]), args);
        assert!(
            out.status.success(),
            "dataplane {args:?} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    restore(&["restore", "latest", "--if-empty"]);
    assert_eq!(dump(&new_url).await, before);

    // A restart runs the init container again: a store that serves is
    // never rolled back.
    let pool = store_pool(&new_url).await;
    insert_email(&pool, "after-restore", "queued", Duration::from_secs(1)).await;
    pool.close().await;
    restore(&["restore", "latest", "--if-empty"]);
    let after = dump(&new_url).await;
    assert!(
        after["emails"]
            .iter()
            .any(|row| row.contains("after-restore")),
        "the second restore rolled the store back"
    );

    let dp = start(&[("DATABASE_URL", &new_url)]);
    still_signed_in(&dp, &session).await;
    // The key is known (404: the email is not its owner's to see); a key
    // the store does not hold is refused (401).
    for (key, status) in [(key.as_str(), 404), ("sv_not-a-key-the-store-holds", 401)] {
        let r = bearer(key)
            .get(dp.url("/api/emails/e1"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), status, "an API key on the restored store");
    }
}

/// A data plane whose bucket fails in one way: the problem is counted under
/// `reason`, its log says `message`, the data plane serves on, and a
/// one-off `dataplane backup` fails with the same message.
async fn a_failing_bucket_is_named(env: Vec<(&'static str, String)>, reason: &str, message: &str) {
    let mut dp = start(&with(&env, &[]));
    let sample = format!("backup_runs_total{{result=\"{reason}\"}}");
    eventually(Duration::from_secs(60), &sample, || async {
        metric(&dp, &sample).await.unwrap_or(0.0) >= 1.0
    })
    .await;
    let r = client()
        .get(dp.url("/api/health/ready"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "a failing backup must not stop serving");
    assert_eq!(successful_backups(&dp).await, 0.0);
    let logged = dp.process().output_lines().join("\n");
    assert!(logged.contains(message), "{message} not in:\n{logged}");

    let out = run(&with(&env, &[]), &["backup"]);
    assert!(!out.status.success());
    let output = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(output.contains(message), "{output}");
}

#[tokio::test]
async fn a_bucket_that_does_not_exist_is_named() {
    let seaweed = SeaweedFs::start().unwrap();
    let env = bucket_env(&seaweed.endpoint(), "no-such-bucket", SeaweedFs::SECRET_KEY);
    a_failing_bucket_is_named(
        env,
        "BucketNotFound",
        "bucket `no-such-bucket` does not exist",
    )
    .await;
}

#[tokio::test]
async fn refused_credentials_are_named() {
    let seaweed = SeaweedFs::start().unwrap();
    seaweed.create_bucket("backups").unwrap();
    let env = bucket_env(&seaweed.endpoint(), "backups", "not-the-secret-key");
    a_failing_bucket_is_named(
        env,
        "CredentialsRefused",
        "refused the credentials for bucket `backups` (SignatureDoesNotMatch)",
    )
    .await;
}

#[tokio::test]
async fn an_endpoint_that_does_not_answer_is_named() {
    let mut seaweed = SeaweedFs::start().unwrap();
    let endpoint = seaweed.endpoint();
    seaweed.stop();
    let env = bucket_env(&endpoint, "backups", SeaweedFs::SECRET_KEY);
    a_failing_bucket_is_named(
        env,
        "EndpointUnreachable",
        &format!("{endpoint} cannot be reached"),
    )
    .await;
}

/// A PostgreSQL store as its CronJob backs it up (`dataplane backup` with
/// the bucket's settings) and as a new vault's init container restores it.
#[tokio::test]
async fn a_postgres_store_goes_through_the_bucket_too() {
    let seaweed = SeaweedFs::start().unwrap();
    seaweed.create_bucket("backups").unwrap();
    let env = bucket_env(&seaweed.endpoint(), "backups", SeaweedFs::SECRET_KEY);
    let pg = Postgres::start().unwrap();
    let url = pg.create_database("old").unwrap();
    let dp = start(&[("DATABASE_URL", &url)]);
    let (session, _) = write_data(&dp, &url).await;
    drop(dp);
    let before = dump(&url).await;
    let cli_with = |url: &str, args: &[&str]| {
        let out = run(&with(&env, &[("DATABASE_URL", url)]), args);
        assert!(
            out.status.success(),
            "dataplane {args:?} failed:\n{}",
            String::from_utf8_lossy(&out.stdout)
        );
    };
    cli_with(&url, &["backup"]);
    let objects = seaweed.objects("backups/team-a/mail").unwrap();
    assert_eq!(objects.len(), 1, "{objects:?}");
    assert!(objects[0].name.ends_with(".pgjson"), "{objects:?}");

    let new = pg.create_database("new").unwrap();
    cli_with(&new, &["restore", "latest", "--if-empty"]);
    assert_eq!(dump(&new).await, before);
    let dp = start(&[("DATABASE_URL", &new)]);
    still_signed_in(&dp, &session).await;
}
