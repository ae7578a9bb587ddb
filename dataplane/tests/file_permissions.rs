//! Files on disk are private: `DATA_DIR` and the backup directory 0700, the
//! SQLite file, its WAL and shared-memory files and every backup 0600,
//! whatever the umask; and a data directory left readable by an older
//! version is tightened at the next start.

#![allow(clippy::unwrap_used, clippy::panic)]

mod common;

use std::{
    collections::BTreeMap,
    os::unix::fs::{DirBuilderExt, PermissionsExt},
    path::Path,
};

use common::*;
use serde_json::json;

/// `name -> mode` of `paths` (relative to `dir`), as `0o…` strings, so that
/// one failed comparison shows every mode at once.
fn modes(dir: &Path, paths: &[&str]) -> BTreeMap<String, String> {
    paths
        .iter()
        .map(|p| {
            let mode = std::fs::metadata(dir.join(p))
                .map(|m| format!("{:o}", m.permissions().mode() & 0o7777))
                .unwrap_or_else(|e| format!("missing: {e}"));
            ((*p).to_owned(), mode)
        })
        .collect()
}

fn expected(entries: &[(&str, &str)]) -> BTreeMap<String, String> {
    entries
        .iter()
        .map(|(p, m)| ((*p).to_owned(), (*m).to_owned()))
        .collect()
}

/// The one backup file in `data_dir/backups`, relative to `data_dir`.
fn backups(data_dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(data_dir.join("backups"))
        .unwrap()
        .map(|e| format!("backups/{}", e.unwrap().file_name().to_string_lossy()))
        .collect();
    names.sort();
    names
}

fn backup(data_dir: &Path) {
    let out = run(&[("DATA_DIR", data_dir.to_str().unwrap())], &["backup"]);
    assert!(
        out.status.success(),
        "dataplane backup failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A write through the API: a new account.
async fn write_something(dp: &DataPlane, name: &str) {
    let r = authed(dp)
        .await
        .post(dp.url("/api/users"))
        .json(&json!({"username": name, "password": "a long member password", "role": "member"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
}

#[tokio::test]
async fn a_new_data_dir_its_database_and_its_backups_are_private() {
    let root = TempDir::new("private").unwrap();
    // Not there yet: the data plane creates it.
    let data_dir = root.path().join("data");
    let dp = start(&[("DATA_DIR", data_dir.to_str().unwrap())]);
    write_something(&dp, "ops").await;
    // While it serves, as the backup job does.
    backup(&data_dir);

    let mut paths = vec![
        ".",
        "securevault.db",
        "securevault.db-wal",
        "securevault.db-shm",
        "backups",
    ];
    let files = backups(&data_dir);
    assert_eq!(files.len(), 1, "{files:?}");
    paths.push(&files[0]);
    assert_eq!(
        modes(&data_dir, &paths),
        expected(&[
            (".", "700"),
            ("securevault.db", "600"),
            ("securevault.db-wal", "600"),
            ("securevault.db-shm", "600"),
            ("backups", "700"),
            (&files[0], "600"),
        ])
    );
}

#[tokio::test]
async fn a_data_dir_left_readable_by_an_older_version_is_tightened_at_start() {
    let root = TempDir::new("older").unwrap();
    let data_dir = root.path().join("data");
    std::fs::DirBuilder::new()
        .mode(0o755)
        .create(&data_dir)
        .unwrap();
    // What an older version left: a store, a backup, all readable by anyone.
    let out = run(&[("DATA_DIR", data_dir.to_str().unwrap())], &["migrate"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    backup(&data_dir);
    let old_backup = backups(&data_dir).remove(0);
    for (path, mode) in [
        (".", 0o755),
        ("securevault.db", 0o644),
        ("backups", 0o755),
        (old_backup.as_str(), 0o644),
    ] {
        std::fs::set_permissions(data_dir.join(path), std::fs::Permissions::from_mode(mode))
            .unwrap();
    }

    let dp = start(&[("DATA_DIR", data_dir.to_str().unwrap())]);
    write_something(&dp, "ops").await;
    assert_eq!(
        modes(
            &data_dir,
            &[
                ".",
                "securevault.db",
                "securevault.db-wal",
                "securevault.db-shm"
            ]
        ),
        expected(&[
            (".", "700"),
            ("securevault.db", "600"),
            ("securevault.db-wal", "600"),
            ("securevault.db-shm", "600"),
        ])
    );

    // The next backup tightens the directory and the backups already in it.
    // (Backup names have a one-second resolution.)
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    backup(&data_dir);
    let files = backups(&data_dir);
    assert_eq!(files.len(), 2, "{files:?}");
    let mut paths = vec!["backups"];
    paths.extend(files.iter().map(String::as_str));
    let mut want = vec![("backups", "700")];
    want.extend(files.iter().map(|f| (f.as_str(), "600")));
    assert_eq!(modes(&data_dir, &paths), expected(&want));
}
