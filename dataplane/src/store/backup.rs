//! Consistent snapshots of the store, and restoring one.
//!
//! - SQLite: `VACUUM INTO` writes a compacted copy of the database as it was
//!   at one instant (a read transaction), while the data plane keeps
//!   serving. Restoring attaches the copy and replaces every table's rows in
//!   one transaction.
//! - PostgreSQL: every table is read inside one `REPEATABLE READ READ ONLY`
//!   transaction, so the export is one consistent snapshot, as JSON lines
//!   (`row_to_json`). Restoring replaces every table's rows in one
//!   transaction (`json_populate_record`, so types round-trip exactly).
//!
//! A backup is first written under a `.partial` name and renamed when
//! complete: a crash never leaves a file that looks like a backup. A backup
//! from a newer schema than this binary's is refused; an older one restores
//! the columns it has (the newer ones take their defaults), then the data
//! migrations newer than it run again over what it brought
//! ([`DATA_MIGRATIONS`]).

use std::{
    io::{BufRead, Write},
    path::{Path, PathBuf},
    time::SystemTime,
};

use backup_bucket::names::{PREFIX, file_name};
use sqlx::{AssertSqlSafe, Row};

use super::{MIGRATOR, Store, StoreError};
use crate::{config::DatabaseKind, private_files};

/// Every table of ours, parents before children (the order of inserts).
pub const TABLES: [&str; 9] = [
    "encryption_keys",
    "users",
    "sessions",
    "api_keys",
    "emails",
    "suppressions",
    "generations",
    "webhook_events",
    "audit_log",
];

/// Migrations that only fill in data, written to run again safely: after a
/// backup older than one of them is restored, its rows lack what that
/// migration filled in, so it runs again, in the restore's transaction.
/// (`..._api_key_owners_backfill.sql`: keys from before owners were
/// recorded would otherwise be refused for want of one.)
pub const DATA_MIGRATIONS: [i64; 1] = [20261206000002];

/// Why a backup or a restore failed.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A query failed.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a backup this binary can restore.
    #[error("{0}")]
    Unusable(String),
}

fn file_error(path: &Path) -> impl FnOnce(std::io::Error) -> BackupError + '_ {
    move |source| BackupError::File {
        path: path.to_owned(),
        source,
    }
}

/// What a restore put back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restored {
    /// Rows per table, in [`TABLES`] order.
    pub rows: Vec<(&'static str, u64)>,
}

impl Store {
    /// Writes a consistent snapshot into `dir` (created if needed) and
    /// returns its path: `securevault-<UTC time>.sqlite` or `.pgjson`.
    pub async fn backup(&self, dir: &Path, now: SystemTime) -> Result<PathBuf, BackupError> {
        private_files::private_dir(dir).map_err(file_error(dir))?;
        let extension = match self.kind {
            DatabaseKind::Sqlite => "sqlite",
            DatabaseKind::Postgres => "pgjson",
        };
        let name = file_name(now, extension);
        let path = dir.join(&name);
        let partial = dir.join(format!(".{name}.partial"));
        let _ = std::fs::remove_file(&partial);
        match self.kind {
            DatabaseKind::Sqlite => {
                // Created private and empty first: SQLite writes into an
                // empty file and keeps its mode (it would create its own
                // with the umask's).
                drop(private_files::create_private(&partial).map_err(file_error(&partial))?);
                sqlx::query("VACUUM INTO $1")
                    .bind(partial.display().to_string())
                    .execute(&self.pool)
                    .await?;
            }
            DatabaseKind::Postgres => self.export_postgres(&partial).await?,
        }
        std::fs::rename(&partial, &path).map_err(file_error(&path))?;
        // Those an older version wrote readable by anyone, too.
        for backup in backups_in(dir)? {
            private_files::private_file(&backup).map_err(file_error(&backup))?;
        }
        Ok(path)
    }

    /// Whether any table of ours holds a row (the schema is migrated).
    pub async fn holds_rows(&self) -> Result<bool, BackupError> {
        for table in TABLES {
            // Table names come from TABLES, never from input.
            let found: Option<i64> =
                sqlx::query_scalar(AssertSqlSafe(format!("SELECT 1 FROM {table} LIMIT 1")))
                    .fetch_optional(&self.pool)
                    .await?;
            if found.is_some() {
                return Ok(true);
            }
        }
        Ok(false)
    }

    async fn export_postgres(&self, path: &Path) -> Result<(), BackupError> {
        let file = private_files::create_private(path).map_err(file_error(path))?;
        let mut out = std::io::BufWriter::new(file);
        let mut tx = self.pool.begin().await?;
        // The first statement of the transaction fixes its snapshot.
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .execute(&mut *tx)
            .await?;
        let version: Option<i64> =
            sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations WHERE success")
                .fetch_one(&mut *tx)
                .await?;
        // Only the tables this store has: one not migrated yet (a backup
        // taken by a newer binary before it migrates, as an upgrade's
        // pre-upgrade backup is) lacks the newest, which hold nothing yet.
        let present: Vec<String> = sqlx::query_scalar(
            "SELECT CAST(table_name AS TEXT) FROM information_schema.tables \
             WHERE table_schema = current_schema()",
        )
        .fetch_all(&mut *tx)
        .await?;
        let tables: Vec<&str> = TABLES
            .into_iter()
            .filter(|t| present.iter().any(|p| p == t))
            .collect();
        let header = serde_json::json!({
            "format": "securevault-backup",
            "database": "postgres",
            "schema_version": version,
            "tables": tables,
        });
        writeln!(out, "{header}").map_err(file_error(path))?;
        for table in tables {
            // Table names come from TABLES, never from input.
            let sql = format!("SELECT row_to_json(t)::text AS row FROM {table} t");
            let rows = sqlx::query(AssertSqlSafe(sql)).fetch_all(&mut *tx).await?;
            for row in rows {
                let json: String = row.try_get("row")?;
                writeln!(out, "{{\"table\":\"{table}\",\"row\":{json}}}")
                    .map_err(file_error(path))?;
            }
        }
        tx.commit().await?;
        out.flush().map_err(file_error(path))?;
        out.get_ref().sync_all().map_err(file_error(path))?;
        Ok(())
    }

    /// Replaces every table's rows with those of the backup at `file`, in
    /// one transaction. The schema is migrated first.
    pub async fn restore(&self, file: &Path) -> Result<Restored, BackupError> {
        if !file.is_file() {
            return Err(BackupError::Unusable(format!(
                "{} is not a file",
                file.display()
            )));
        }
        self.migrate().await?;
        match self.kind {
            DatabaseKind::Sqlite => self.restore_sqlite(file).await,
            DatabaseKind::Postgres => self.restore_postgres(file).await,
        }
    }

    async fn restore_sqlite(&self, file: &Path) -> Result<Restored, BackupError> {
        let mut conn = self.writer.acquire().await?;
        sqlx::query("ATTACH DATABASE $1 AS backup")
            .bind(file.display().to_string())
            .execute(&mut *conn)
            .await?;
        let result = async {
            let version: Option<i64> = sqlx::query_scalar(
                "SELECT MAX(version) FROM backup._sqlx_migrations WHERE success",
            )
            .fetch_one(&mut *conn)
            .await
            .map_err(|_| {
                BackupError::Unusable(format!(
                    "{} is not a SecureVault SQLite backup",
                    file.display()
                ))
            })?;
            check_version(version)?;
            sqlx::query("BEGIN IMMEDIATE").execute(&mut *conn).await?;
            let copied = async {
                for table in TABLES.iter().rev() {
                    sqlx::query(AssertSqlSafe(format!("DELETE FROM main.{table}")))
                        .execute(&mut *conn)
                        .await?;
                }
                let mut rows = Vec::new();
                for table in TABLES {
                    let columns: Vec<String> = sqlx::query(AssertSqlSafe(format!(
                        "SELECT name FROM pragma_table_info('{table}', 'backup')"
                    )))
                    .fetch_all(&mut *conn)
                    .await?
                    .iter()
                    .map(|r| r.try_get::<String, _>("name"))
                    .collect::<Result<_, _>>()?;
                    if columns.is_empty() {
                        // A table newer than the backup: it stays empty.
                        rows.push((table, 0));
                        continue;
                    }
                    let list = columns
                        .iter()
                        .map(|c| format!("\"{c}\""))
                        .collect::<Vec<_>>()
                        .join(", ");
                    let n = sqlx::query(AssertSqlSafe(format!(
                        "INSERT INTO main.{table} ({list}) SELECT {list} FROM backup.{table}"
                    )))
                    .execute(&mut *conn)
                    .await?
                    .rows_affected();
                    rows.push((table, n));
                }
                Ok::<_, BackupError>(rows)
            }
            .await;
            let copied = match copied {
                Ok(rows) => refill(&mut conn, version).await.map(|()| rows),
                Err(e) => Err(e),
            };
            match copied {
                Ok(rows) => {
                    sqlx::query("COMMIT").execute(&mut *conn).await?;
                    Ok(Restored { rows })
                }
                Err(e) => {
                    let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
                    Err(e)
                }
            }
        }
        .await;
        let _ = sqlx::query("DETACH DATABASE backup")
            .execute(&mut *conn)
            .await;
        result
    }

    async fn restore_postgres(&self, file: &Path) -> Result<Restored, BackupError> {
        let reader = std::io::BufReader::new(std::fs::File::open(file).map_err(file_error(file))?);
        let mut lines = reader.lines();
        let header: serde_json::Value = lines
            .next()
            .transpose()
            .map_err(file_error(file))?
            .and_then(|l| serde_json::from_str(&l).ok())
            .filter(|h: &serde_json::Value| h["format"] == "securevault-backup")
            .ok_or_else(|| {
                BackupError::Unusable(format!(
                    "{} is not a SecureVault PostgreSQL backup",
                    file.display()
                ))
            })?;
        check_version(header["schema_version"].as_i64())?;
        let mut tx = self.writer.begin().await?;
        let list = TABLES.join(", ");
        sqlx::query(AssertSqlSafe(format!("TRUNCATE {list}")))
            .execute(&mut *tx)
            .await?;
        let mut counts: Vec<(&'static str, u64)> = TABLES.iter().map(|t| (*t, 0)).collect();
        for line in lines {
            let line = line.map_err(file_error(file))?;
            let entry: serde_json::Value = serde_json::from_str(&line).map_err(|e| {
                BackupError::Unusable(format!("{}: a line is not JSON: {e}", file.display()))
            })?;
            let Some(slot) = counts
                .iter_mut()
                .find(|(t, _)| entry["table"].as_str() == Some(*t))
            else {
                return Err(BackupError::Unusable(format!(
                    "{}: unknown table {}",
                    file.display(),
                    entry["table"]
                )));
            };
            let table = slot.0;
            sqlx::query(AssertSqlSafe(format!(
                "INSERT INTO {table} SELECT * FROM json_populate_record(NULL::{table}, CAST($1 AS json))"
            )))
            .bind(entry["row"].to_string())
            .execute(&mut *tx)
            .await?;
            slot.1 += 1;
        }
        refill(&mut tx, header["schema_version"].as_i64()).await?;
        tx.commit().await?;
        Ok(Restored { rows: counts })
    }
}

/// Runs the [`DATA_MIGRATIONS`] newer than a restored backup's schema
/// `version` (all of them when it is unknown) on `conn`.
async fn refill(conn: &mut sqlx::AnyConnection, version: Option<i64>) -> Result<(), BackupError> {
    for migration in MIGRATOR.iter() {
        if DATA_MIGRATIONS.contains(&migration.version)
            && version.is_none_or(|v| v < migration.version)
        {
            sqlx::raw_sql(migration.sql.clone())
                .execute(&mut *conn)
                .await?;
        }
    }
    Ok(())
}

/// Refuses a backup of a schema newer than this binary knows.
fn check_version(version: Option<i64>) -> Result<(), BackupError> {
    let ours = MIGRATOR.iter().map(|m| m.version).max().unwrap_or(0);
    match version {
        Some(v) if v > ours => Err(BackupError::Unusable(format!(
            "the backup's schema ({v}) is newer than this binary's ({ours}): restore it with a newer dataplane"
        ))),
        _ => Ok(()),
    }
}

/// Deletes all but the `keep` newest backups in `dir`; returns how many.
pub fn prune(dir: &Path, keep: usize) -> Result<usize, BackupError> {
    let backups = backups_in(dir)?;
    let excess = backups.len().saturating_sub(keep);
    for old in &backups[..excess] {
        std::fs::remove_file(old).map_err(file_error(old))?;
    }
    Ok(excess)
}

/// The backups in `dir`, oldest first (the names hold the UTC time: name
/// order is time order); other files are never touched.
pub fn backups_in(dir: &Path) -> Result<Vec<PathBuf>, BackupError> {
    let mut backups: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(file_error(dir))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                n.starts_with(PREFIX) && (n.ends_with(".sqlite") || n.ends_with(".pgjson"))
            })
        })
        .collect();
    backups.sort();
    Ok(backups)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pruning_keeps_the_newest_backups_and_nothing_else_is_touched() {
        let dir = std::env::temp_dir().join(format!("sv-prune-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        for name in [
            "securevault-20261130T100000Z.sqlite",
            "securevault-20261130T110000Z.sqlite",
            "securevault-20261130T120000Z.sqlite",
            "notes.txt",
        ] {
            std::fs::write(dir.join(name), "x").unwrap();
        }
        assert_eq!(prune(&dir, 2).unwrap(), 1);
        let mut left: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(
            left,
            [
                "notes.txt",
                "securevault-20261130T110000Z.sqlite",
                "securevault-20261130T120000Z.sqlite"
            ]
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_backup_from_a_newer_schema_is_refused() {
        assert!(check_version(Some(i64::MAX)).is_err());
        assert!(check_version(Some(1)).is_ok());
        assert!(check_version(None).is_ok());
    }
}
