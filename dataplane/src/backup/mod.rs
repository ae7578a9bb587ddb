//! Backups leave the store's disk: where they go ([`Destination`]), taking
//! one there ([`take`]), finding and fetching one back for a restore, and the
//! schedule `serve` runs ([`schedule`]).
//!
//! The snapshot itself is [`Store::backup`](crate::store::Store::backup):
//! consistent while the data plane serves. Here it is only moved:
//!
//! - to a directory (a second volume): written there directly, as
//!   `securevault-<UTC time>.sqlite` (or `.pgjson`), private to the process;
//! - to an S3-compatible bucket ([`backup_bucket`]): written to a staging directory
//!   beside the store first, then uploaded under the same name (in parts,
//!   so a large store never sits in memory), then deleted locally.
//!
//! Names carry the snapshot's time, so name order is time order in both, and
//! the newest name is what `latest` restores. Retention deletes the oldest
//! names beyond the count to keep, and never anything else.

pub mod schedule;

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant, SystemTime},
};

use crate::{
    config::BackupDestination,
    store::{
        Store,
        backup::{self as snapshot, BackupError},
    },
};
use backup_bucket::{Bucket, BucketError, names::taken_at};

/// Why a backup could not be taken, listed or fetched.
#[derive(Debug, thiserror::Error)]
pub enum DestinationError {
    /// The snapshot, a local file or the restore failed.
    #[error(transparent)]
    Snapshot(#[from] BackupError),
    /// The bucket refused or could not be reached.
    #[error(transparent)]
    Bucket(#[from] BucketError),
    /// No backup of that name, or none at all.
    #[error("{0}")]
    NotFound(String),
}

impl DestinationError {
    /// A stable name for the problem: a metric label and a condition reason.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Snapshot(BackupError::File { .. }) => "LocalFileFailed",
            Self::Snapshot(_) => "SnapshotFailed",
            Self::Bucket(e) => e.reason(),
            Self::NotFound(_) => "BackupNotFound",
        }
    }
}

/// Where backups go, ready to use.
pub enum Destination {
    /// A directory.
    Directory(PathBuf),
    /// An S3-compatible bucket, with the local directory snapshots are
    /// staged in before their upload.
    Bucket {
        /// The bucket.
        bucket: Bucket,
        /// Staging directory (on the store's volume).
        staging: PathBuf,
    },
}

/// One backup in a destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// `securevault-<UTC time>.<sqlite|pgjson>`.
    pub name: String,
    /// When its snapshot was taken, read from the name.
    pub taken_at: SystemTime,
}

/// What one backup did.
#[derive(Debug)]
pub struct Taken {
    /// Its name in the destination.
    pub name: String,
    /// When its snapshot was taken.
    pub taken_at: SystemTime,
    /// Its size.
    pub bytes: u64,
    /// How long snapshot and upload took.
    pub took: Duration,
    /// Older backups deleted by retention.
    pub pruned: usize,
}

impl Destination {
    /// The destination `config` names; `data_dir` holds the staging
    /// directory of bucket uploads.
    pub fn new(config: &BackupDestination, data_dir: &Path) -> Result<Self, DestinationError> {
        Ok(match config {
            BackupDestination::Directory(dir) => Self::Directory(dir.clone()),
            BackupDestination::Bucket(b) => Self::Bucket {
                bucket: Bucket::new(b)?,
                staging: data_dir.join(".backup-staging"),
            },
        })
    }

    /// For logs and errors: `s3://bucket/prefix` or the directory.
    pub fn describe(&self) -> String {
        match self {
            Self::Directory(dir) => dir.display().to_string(),
            Self::Bucket { bucket, .. } => bucket.describe(),
        }
    }

    /// Every backup there, oldest first.
    pub async fn list(&self) -> Result<Vec<Listed>, DestinationError> {
        let names = match self {
            Self::Directory(dir) => {
                if !dir.exists() {
                    return Ok(Vec::new());
                }
                snapshot::backups_in(dir)?
                    .iter()
                    .filter_map(|p| p.file_name()?.to_str().map(str::to_owned))
                    .collect()
            }
            Self::Bucket { bucket, .. } => bucket.names().await?,
        };
        let mut listed: Vec<Listed> = names
            .into_iter()
            .filter_map(|name| {
                let taken_at = taken_at(&name)?;
                Some(Listed { name, taken_at })
            })
            .collect();
        listed.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(listed)
    }

    /// Takes a backup of `store` here, then deletes the oldest beyond
    /// `retain`.
    pub async fn take(&self, store: &Store, retain: usize) -> Result<Taken, DestinationError> {
        let started = Instant::now();
        let now = SystemTime::now();
        let (name, bytes) = match self {
            Self::Directory(dir) => {
                let path = store.backup(dir, now).await?;
                (file_name(&path), file_size(&path)?)
            }
            Self::Bucket { bucket, staging } => {
                // What an interrupted upload left behind.
                let _ = std::fs::remove_dir_all(staging);
                let path = store.backup(staging, now).await?;
                let name = file_name(&path);
                let bytes = file_size(&path)?;
                let uploaded = bucket.upload(&path, &name).await;
                let _ = std::fs::remove_file(&path);
                uploaded?;
                (name, bytes)
            }
        };
        let took = started.elapsed();
        let pruned = self.prune(retain.max(1)).await?;
        Ok(Taken {
            name,
            taken_at: now,
            bytes,
            took,
            pruned,
        })
    }

    async fn prune(&self, keep: usize) -> Result<usize, DestinationError> {
        match self {
            Self::Directory(dir) => Ok(snapshot::prune(dir, keep)?),
            Self::Bucket { bucket, .. } => {
                let listed = self.list().await?;
                let excess = listed.len().saturating_sub(keep);
                for old in &listed[..excess] {
                    bucket.delete(&old.name).await?;
                }
                Ok(excess)
            }
        }
    }

    /// A local file holding the backup `which` (a name, or `latest`), and
    /// whether it is a downloaded copy to delete after use.
    pub async fn fetch(&self, which: &str) -> Result<(PathBuf, bool), DestinationError> {
        let listed = self.list().await?;
        let found = if which == "latest" {
            listed.last().ok_or_else(|| {
                DestinationError::NotFound(format!("no backup in {}", self.describe()))
            })?
        } else {
            listed.iter().find(|l| l.name == which).ok_or_else(|| {
                DestinationError::NotFound(format!(
                    "no backup named {which} in {} (`latest` takes the newest)",
                    self.describe()
                ))
            })?
        };
        match self {
            Self::Directory(dir) => Ok((dir.join(&found.name), false)),
            Self::Bucket { bucket, staging } => {
                crate::private_files::private_dir(staging).map_err(|source| BackupError::File {
                    path: staging.clone(),
                    source,
                })?;
                let path = staging.join(&found.name);
                let mut file = crate::private_files::create_private(&path).map_err(|source| {
                    BackupError::File {
                        path: path.clone(),
                        source,
                    }
                })?;
                bucket.download(&found.name, &mut file).await?;
                Ok((path, true))
            }
        }
    }
}

/// Backups as `serve` runs them, when a destination is configured.
pub struct Plan {
    /// Where.
    pub destination: Destination,
    /// Time between two backups.
    pub interval: Duration,
    /// Backups kept.
    pub retain: usize,
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default()
        .to_owned()
}

fn file_size(path: &Path) -> Result<u64, BackupError> {
    std::fs::metadata(path)
        .map(|m| m.len())
        .map_err(|source| BackupError::File {
            path: path.to_owned(),
            source,
        })
}
