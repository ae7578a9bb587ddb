//! Release versions (`MAJOR.MINOR.PATCH[-PRE]`, the form the CRD admits,
//! with an optional `v`) and their SemVer 2.0 order, to tell an upgrade
//! from a downgrade.
//!
//! The order is the `semver` crate's: numeric pre-release identifiers
//! compare as numbers (`rc.9` < `rc.10`), a pre-release comes before its
//! release, build metadata plays no part. The CRD's pattern
//! (`^v?[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?$`) also admits what SemVer
//! forbids; [`Version::parse`] still reads all of it (see `lenient`), so no
//! version the API server accepted escapes the downgrade check.

/// A parsed release version, ordered by SemVer precedence.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version(semver::Version);

impl Version {
    /// Parses `0.2.0`, `v0.2.0`, `0.2.0-rc.1` or `0.2.0+build` (the build
    /// dropped); `None` for anything else, such as `latest` or `1.2`.
    pub fn parse(s: &str) -> Option<Version> {
        let s = s.strip_prefix('v').unwrap_or(s);
        let mut version = semver::Version::parse(s).ok().or_else(|| lenient(s))?;
        // Precedence ignores build metadata (semver 2.0 §10); `semver`'s own
        // `Ord` does not, so it goes.
        version.build = semver::BuildMetadata::EMPTY;
        Some(Version(version))
    }
}

/// What the CRD admits and SemVer forbids, read as near to its intent as
/// SemVer allows:
///
/// - numbers with leading zeros (`01.2.3`, `1.0.0-rc.01`) as the numbers
///   they spell, as the operator always read them;
/// - a pre-release with an empty identifier (`rc..1`, `rc.`) as one
///   alphanumeric identifier, its dots made hyphens (`rc--1`): still a
///   pre-release of its core, below the release, ordered by ASCII among
///   the others.
fn lenient(s: &str) -> Option<semver::Version> {
    let s = s.split_once('+').map_or(s, |(version, _build)| version);
    let (core, pre) = match s.split_once('-') {
        Some((core, pre)) => (core, Some(pre)),
        None => (s, None),
    };
    let number = |n: &str| {
        n.bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| n.parse::<u64>().ok())
            .flatten()
    };
    let mut parts = core.split('.').map(number);
    let (major, minor, patch) = (parts.next()??, parts.next()??, parts.next()??);
    if parts.next().is_some() {
        return None;
    }
    let mut version = semver::Version::new(major, minor, patch);
    if let Some(pre) = pre {
        if pre.is_empty() {
            return None;
        }
        let unpadded: Vec<&str> = pre
            .split('.')
            .map(|id| {
                if !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()) {
                    match id.trim_start_matches('0') {
                        "" => "0",
                        digits => digits,
                    }
                } else {
                    id
                }
            })
            .collect();
        version.pre = semver::Prerelease::new(&unpadded.join("."))
            .or_else(|_| semver::Prerelease::new(&pre.replace('.', "-")))
            .ok()?;
    }
    Some(version)
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

    #[test]
    fn pre_releases_order_as_semver_says_numbers_as_numbers() {
        assert!(
            !is_downgrade("0.2.0-rc.9", "0.2.0-rc.10"),
            "rc.10 comes after rc.9"
        );
        assert!(is_downgrade("0.2.0-rc.10", "0.2.0-rc.9"));
        // The precedence example of semver 2.0.0 §11, in order.
        let chain = [
            "1.0.0-alpha",
            "1.0.0-alpha.1",
            "1.0.0-alpha.beta",
            "1.0.0-beta",
            "1.0.0-beta.2",
            "1.0.0-beta.11",
            "1.0.0-rc.1",
            "1.0.0",
        ];
        for pair in chain.windows(2) {
            let [lower, higher] = pair else { continue };
            assert!(is_downgrade(higher, lower), "{lower} < {higher}");
            assert!(!is_downgrade(lower, higher), "{lower} < {higher}");
        }
    }

    #[test]
    fn what_the_crd_admits_beyond_semver_is_still_ordered() {
        // Leading zeros: the numbers they spell.
        assert_eq!(Version::parse("01.02.003"), Version::parse("1.2.3"));
        assert_eq!(Version::parse("1.0.0-rc.01"), Version::parse("1.0.0-rc.1"));
        assert!(!is_downgrade("1.0.0-rc.09", "1.0.0-rc.10"));
        // An empty pre-release identifier: still a pre-release of its core.
        assert!(is_downgrade("2.0.0", "1.0.0-rc..1"));
        assert!(is_downgrade("1.0.0", "1.0.0-rc..1"));
        assert!(!is_downgrade("1.0.0-rc..1", "1.0.0"));
        assert!(!is_downgrade("0.9.0", "v1.0.0-."));
        // Everything the CRD's pattern admits parses.
        for admitted in [
            "0.0.0",
            "v1.2.3",
            "00.0.00",
            "1.0.0--",
            "1.0.0-.",
            "1.0.0-rc.",
            "1.0.0-.rc",
            "1.0.0-a.-.b",
            "1.0.0-0.00.000",
            "1.0.0-x-y-z.--",
        ] {
            assert!(Version::parse(admitted).is_some(), "{admitted}");
        }
        // And what it refuses does not.
        for refused in [
            "vv1.0.0", "1.0.0-", "+1.0.0", "1.+2.3", "1.0", "1.0.0.0", "",
        ] {
            assert_eq!(Version::parse(refused), None, "{refused}");
        }
    }

    #[test]
    fn build_metadata_plays_no_part_in_the_order() {
        assert!(!is_downgrade("1.0.0+build.2", "1.0.0+build.1"));
        assert!(!is_downgrade("1.0.0", "1.0.0+sha.5114f85"));
        assert!(is_downgrade("1.0.0+zzz", "1.0.0-rc.1+zzz"));
        assert!(Version::parse("1.0.0+a").is_some());
        assert_eq!(Version::parse("1.0.0+a"), Version::parse("v1.0.0+b"));
    }
}
