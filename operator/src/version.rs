//! Release versions (`MAJOR.MINOR.PATCH[-PRE]`, the form the CRD admits) and
//! their order, to tell an upgrade from a downgrade.

use std::cmp::Ordering;

/// A parsed release version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    numbers: [u64; 3],
    pre: Option<String>,
}

impl Version {
    /// Parses `0.2.0`, `v0.2.0` or `0.2.0-rc.1`; `None` for anything else.
    pub fn parse(s: &str) -> Option<Version> {
        let s = s.trim_start_matches('v');
        let (core, pre) = match s.split_once('-') {
            Some((core, pre)) => (core, Some(pre.to_owned())),
            None => (s, None),
        };
        let mut parts = core.split('.').map(|p| p.parse::<u64>().ok());
        let numbers = [parts.next()??, parts.next()??, parts.next()??];
        if parts.next().is_some() {
            return None;
        }
        Some(Version { numbers, pre })
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        self.numbers.cmp(&other.numbers).then_with(|| {
            // A pre-release comes before its release (semver §11).
            match (&self.pre, &other.pre) {
                (None, None) => Ordering::Equal,
                (None, Some(_)) => Ordering::Greater,
                (Some(_), None) => Ordering::Less,
                (Some(a), Some(b)) => a.cmp(b),
            }
        })
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Whether going from `running` to `wanted` is a downgrade.
pub fn is_downgrade(running: &str, wanted: &str) -> bool {
    match (Version::parse(running), Version::parse(wanted)) {
        (Some(r), Some(w)) => w < r,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_order_by_numbers_then_pre_release() {
        assert!(is_downgrade("0.2.0", "0.1.9"));
        assert!(is_downgrade("1.0.0", "0.10.0"));
        assert!(is_downgrade("0.2.0", "0.2.0-rc.1"));
        assert!(!is_downgrade("0.2.0-rc.1", "0.2.0"));
        assert!(!is_downgrade("0.2.0", "v0.2.0"));
        assert!(!is_downgrade("0.9.0", "0.10.0"), "numeric, not lexical");
        assert!(!is_downgrade("latest", "0.1.0"), "unparsable: no claim");
        assert_eq!(Version::parse("1.2"), None);
    }
}
