//! Files only the data plane's own user can read: directories 0700, files
//! 0600. The modes are given explicitly rather than left to the umask, which
//! belongs to whoever starts the process and is 022 almost everywhere
//! (readable by every user of the machine).
//!
//! What an older version left readable is tightened too: the data
//! directory and the store's files at every start, the backups at every
//! backup.

use std::{
    collections::BTreeSet,
    fs::{DirBuilder, File, OpenOptions, Permissions},
    io,
    os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt},
    path::{Path, PathBuf},
    sync::{Mutex, PoisonError},
};

/// Mode of our directories.
pub const DIR_MODE: u32 = 0o700;
/// Mode of our files.
pub const FILE_MODE: u32 = 0o600;

/// Creates `dir` and its missing parents 0700, or makes an existing `dir`
/// 0700.
///
/// A directory that is not ours cannot be changed: in Kubernetes the root
/// of a mounted volume belongs to root (group: the pod's `fsGroup`). That is
/// logged, not an error: the files in it are 0600 all the same.
pub fn private_dir(dir: &Path) -> io::Result<()> {
    DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)?;
    match restrict(dir, DIR_MODE) {
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            if !first_report(dir) {
                return Ok(());
            }
            let mode = std::fs::metadata(dir).map_or(0, |m| m.permissions().mode()) & 0o7777;
            let shown = format!("{mode:o}");
            // Users other than the owner and the group can enter it: say so loudly.
            if mode & 0o007 == 0 {
                tracing::info!(path = %dir.display(), mode = shown, error = %e,
                    "directory not ours, left as it is; the files in it are private");
            } else {
                tracing::warn!(path = %dir.display(), mode = shown, error = %e,
                    "directory not ours, so other users can enter it; the files in it are private");
            }
            Ok(())
        }
        other => other,
    }
}

/// Whether `dir` is reported for the first time: the data directory is
/// checked at start and again by the store, whose file it holds; one line
/// says it.
fn first_report(dir: &Path) -> bool {
    static REPORTED: Mutex<BTreeSet<PathBuf>> = Mutex::new(BTreeSet::new());
    REPORTED
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(dir.to_owned())
}

/// Makes `path` 0600 if it exists.
pub fn private_file(path: &Path) -> io::Result<()> {
    match restrict(path, FILE_MODE) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// Creates `path` for writing, 0600 from the first instant (replacing the
/// contents of an existing file, as `File::create` does, but not its mode:
/// see [`private_file`]).
pub fn create_private(path: &Path) -> io::Result<File> {
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(FILE_MODE)
        .open(path)?;
    // `mode` applies only when the file is created.
    file.set_permissions(Permissions::from_mode(FILE_MODE))?;
    Ok(file)
}

/// Sets `mode` unless it is already the mode: changing the mode of a file
/// that is right but not ours would fail for nothing.
fn restrict(path: &Path, mode: u32) -> io::Result<()> {
    let current = std::fs::metadata(path)?.permissions().mode() & 0o7777;
    if current == mode {
        return Ok(());
    }
    std::fs::set_permissions(path, Permissions::from_mode(mode))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    fn temp() -> std::path::PathBuf {
        std::env::temp_dir().join(format!("sv-private-{}", uuid::Uuid::new_v4()))
    }

    #[test]
    fn new_directories_and_files_are_private_and_old_ones_are_tightened() {
        let root = temp();
        let dir = root.join("a/b");
        private_dir(&dir).unwrap();
        assert_eq!(
            (mode(&root), mode(&root.join("a")), mode(&dir)),
            (0o700, 0o700, 0o700)
        );

        std::fs::set_permissions(&dir, Permissions::from_mode(0o755)).unwrap();
        private_dir(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);

        let file = dir.join("f");
        std::fs::write(&file, "x").unwrap();
        std::fs::set_permissions(&file, Permissions::from_mode(0o644)).unwrap();
        private_file(&file).unwrap();
        assert_eq!(mode(&file), 0o600);
        private_file(&dir.join("missing")).unwrap();

        let created = dir.join("c");
        drop(create_private(&created).unwrap());
        assert_eq!(mode(&created), 0o600);
        std::fs::set_permissions(&created, Permissions::from_mode(0o644)).unwrap();
        drop(create_private(&created).unwrap());
        assert_eq!(mode(&created), 0o600);
        std::fs::remove_dir_all(&root).unwrap();
    }
}
