//! Names of backups: `securevault-<UTC time>.<sqlite|pgjson>`. The time is
//! the snapshot's, to the second, so name order is time order in a
//! directory listing and a bucket listing alike.

use std::time::SystemTime;

/// Every backup's name starts with this, so retention never touches other
/// files.
pub const PREFIX: &str = "securevault-";

/// The name of a backup taken at `at`, with `extension` (`sqlite` or
/// `pgjson`).
pub fn file_name(at: SystemTime, extension: &str) -> String {
    let stamp = humantime::format_rfc3339_seconds(at)
        .to_string()
        .replace([':', '-'], "");
    format!("{PREFIX}{stamp}.{extension}")
}

/// The time in a backup's name (`securevault-20261206T101500Z.sqlite`);
/// `None` for any other name.
pub fn taken_at(name: &str) -> Option<SystemTime> {
    let stamp = name
        .strip_prefix(PREFIX)?
        .split_once('.')
        .filter(|(_, ext)| matches!(*ext, "sqlite" | "pgjson"))?
        .0;
    // 20261206T101500Z -> 2026-12-06T10:15:00Z
    let b = stamp.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' || !stamp.is_ascii() {
        return None;
    }
    let rfc3339 = format!(
        "{}-{}-{}T{}:{}:{}Z",
        &stamp[0..4],
        &stamp[4..6],
        &stamp[6..8],
        &stamp[9..11],
        &stamp[11..13],
        &stamp[13..15]
    );
    humantime::parse_rfc3339(&rfc3339).ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_time_of_a_backup_comes_from_its_name() {
        let t = taken_at("securevault-20261206T101500Z.sqlite").unwrap();
        assert_eq!(
            humantime::format_rfc3339_seconds(t).to_string(),
            "2026-12-06T10:15:00Z"
        );
        assert!(taken_at("securevault-20261206T101500Z.pgjson").is_some());
        for other in [
            "securevault-20261206T101500Z.sqlite.partial",
            ".securevault-20261206T101500Z.sqlite.partial",
            "securevault-latest.sqlite",
            "notes.txt",
            "securevault-20261306T101500Z.sqlite",
        ] {
            assert_eq!(taken_at(other), None, "{other}");
        }
    }

    #[test]
    fn a_name_given_is_read_back() {
        let at = humantime::parse_rfc3339("2026-01-02T03:04:05Z").unwrap();
        assert_eq!(taken_at(&file_name(at, "sqlite")), Some(at));
    }
}
