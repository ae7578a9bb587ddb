//! What a SecureVault's author may ask of the operator, as the platform team
//! bounds it.
//!
//! A SecureVault is written by whoever may create one in a namespace, and
//! the operator acts on it with rights of its own: Ingress annotations reach
//! the cluster's ingress controller (some, like ingress-nginx's `*-snippet`
//! annotations, inject configuration into it), an issuer reference spends a
//! shared `ClusterIssuer`'s trust, a host name claims a public name, and
//! `spec.image` decides what runs. Each is bounded by a list of patterns set
//! once for the operator (chart values, validated at start); what falls
//! outside is refused with a condition that names it, never silently dropped.
//!
//! Every list defaults to `*` (anything): right for a cluster of one team,
//! where the author of a SecureVault is the platform team. A shared cluster
//! narrows them (see docs/security.md, "What a SecureVault author can cause").

use std::fmt;

use crate::{api::IssuerKind, validate::ValidatedVault};

/// The environment variable of each list, as the chart sets it.
pub const INGRESS_ANNOTATIONS_VAR: &str = "POLICY_INGRESS_ANNOTATIONS";
/// See [`INGRESS_ANNOTATIONS_VAR`].
pub const ISSUERS_VAR: &str = "POLICY_ISSUERS";
/// See [`INGRESS_ANNOTATIONS_VAR`].
pub const HOST_SUFFIXES_VAR: &str = "POLICY_HOST_SUFFIXES";
/// See [`INGRESS_ANNOTATIONS_VAR`].
pub const IMAGE_REGISTRIES_VAR: &str = "POLICY_IMAGE_REGISTRIES";

/// A setting of the policy that cannot be read.
#[derive(Debug, thiserror::Error)]
#[error("invalid {var} entry {entry:?}: {reason}")]
pub struct PolicyError {
    /// The environment variable.
    pub var: &'static str,
    /// The entry at fault.
    pub entry: String,
    /// What is expected.
    pub reason: &'static str,
}

/// The operator's bounds on what a SecureVault may ask for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Ingress annotation keys: exact, or a prefix ending in `*`.
    pub ingress_annotations: Vec<String>,
    /// cert-manager issuers as `Kind/name` (`Issuer/*`: any issuer of the
    /// SecureVault's own namespace).
    pub issuers: Vec<String>,
    /// Host names (Ingress host, certificate DNS names): exact, or a suffix
    /// starting with `.`.
    pub host_suffixes: Vec<String>,
    /// Image references: a registry, or a registry and path, that
    /// `spec.image` must start with (up to a `/`).
    pub image_registries: Vec<String>,
}

impl Default for Policy {
    /// Anything goes: a cluster of one team.
    fn default() -> Self {
        let any = || vec!["*".to_owned()];
        Policy {
            ingress_annotations: any(),
            issuers: any(),
            host_suffixes: any(),
            image_registries: any(),
        }
    }
}

impl Policy {
    /// Reads each list (comma-separated; `None` or empty: `*`), checking
    /// every entry, so that a typo stops the operator at start instead of
    /// refusing or allowing the wrong thing later.
    pub fn parse(
        ingress_annotations: Option<&str>,
        issuers: Option<&str>,
        host_suffixes: Option<&str>,
        image_registries: Option<&str>,
    ) -> Result<Policy, PolicyError> {
        Ok(Policy {
            ingress_annotations: list(INGRESS_ANNOTATIONS_VAR, ingress_annotations, |e| {
                let key = e.strip_suffix('*').unwrap_or(e);
                if e != "*"
                    && (key.is_empty() || key.contains('*') || key.contains(char::is_whitespace))
                {
                    Err("expected an annotation key, a prefix ending in *, or *")
                } else {
                    Ok(())
                }
            })?,
            issuers: list(ISSUERS_VAR, issuers, |e| match e.split_once('/') {
                _ if e == "*" => Ok(()),
                Some(("Issuer" | "ClusterIssuer", name)) if !name.is_empty() => Ok(()),
                _ => Err("expected Issuer/<name>, ClusterIssuer/<name> (a name may be *), or *"),
            })?,
            host_suffixes: list(HOST_SUFFIXES_VAR, host_suffixes, |e| {
                let name = e.strip_prefix('.').unwrap_or(e);
                let dns = !name.is_empty()
                    && name.bytes().all(|b| {
                        b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.'
                    });
                if e == "*" || dns {
                    Ok(())
                } else {
                    Err("expected a lower-case host name, a suffix starting with '.', or *")
                }
            })?,
            image_registries: list(IMAGE_REGISTRIES_VAR, image_registries, |e| {
                if e == "*"
                    || (!e.contains(char::is_whitespace) && !e.contains('*') && !e.ends_with('/'))
                {
                    Ok(())
                } else {
                    Err(
                        "expected a registry (registry.example.com), a registry and path (registry.example.com/team), or *",
                    )
                }
            })?,
        })
    }

    /// What `v` asks for that this policy does not allow, each named by its
    /// field; empty when everything is allowed.
    pub fn violations(&self, v: &ValidatedVault) -> Vec<Violation> {
        let mut found = Vec::new();
        if let Some(ingress) = &v.ingress {
            for key in ingress.annotations.keys() {
                if !self
                    .ingress_annotations
                    .iter()
                    .any(|p| annotation_matches(p, key))
                {
                    found.push(Violation {
                        field: format!("spec.ingress.annotations[{key:?}]"),
                        allowed: INGRESS_ANNOTATIONS_VAR,
                        list: self.ingress_annotations.clone(),
                    });
                }
            }
            self.check_host(&ingress.host, "spec.ingress.host", &mut found);
        }
        if let Some(tls) = &v.tls {
            for (i, name) in tls.dns_names.iter().enumerate() {
                self.check_host(name, &format!("spec.tls.dnsNames[{i}]"), &mut found);
            }
            if let Some(issuer) = &tls.issuer_ref {
                let kind = match issuer.kind.unwrap_or(IssuerKind::Issuer) {
                    IssuerKind::Issuer => "Issuer",
                    IssuerKind::ClusterIssuer => "ClusterIssuer",
                };
                if !self
                    .issuers
                    .iter()
                    .any(|p| issuer_matches(p, kind, &issuer.name))
                {
                    found.push(Violation {
                        field: format!("spec.tls.issuerRef ({kind}/{})", issuer.name),
                        allowed: ISSUERS_VAR,
                        list: self.issuers.clone(),
                    });
                }
            }
        }
        if !self
            .image_registries
            .iter()
            .any(|p| image_matches(p, &v.image))
        {
            found.push(Violation {
                field: format!("spec.image ({})", v.image),
                allowed: IMAGE_REGISTRIES_VAR,
                list: self.image_registries.clone(),
            });
        }
        found
    }

    fn check_host(&self, host: &str, field: &str, found: &mut Vec<Violation>) {
        if !self.host_suffixes.iter().any(|p| host_matches(p, host)) {
            found.push(Violation {
                field: format!("{field} ({host})"),
                allowed: HOST_SUFFIXES_VAR,
                list: self.host_suffixes.clone(),
            });
        }
    }
}

/// One thing a SecureVault asks for that the policy refuses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The field, with the value when it helps: `spec.image (evil.io/x:1)`.
    pub field: String,
    /// The setting that bounds it.
    pub allowed: &'static str,
    /// What it allows.
    pub list: Vec<String>,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} is not allowed by the operator's policy ({}: {})",
            self.field,
            self.allowed,
            self.list.join(", ")
        )
    }
}

fn list(
    var: &'static str,
    raw: Option<&str>,
    check: impl Fn(&str) -> Result<(), &'static str>,
) -> Result<Vec<String>, PolicyError> {
    let entries: Vec<String> = raw
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(str::to_owned)
        .collect();
    if entries.is_empty() {
        return Ok(vec!["*".to_owned()]);
    }
    for entry in &entries {
        check(entry).map_err(|reason| PolicyError {
            var,
            entry: entry.clone(),
            reason,
        })?;
    }
    Ok(entries)
}

fn annotation_matches(pattern: &str, key: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => key.starts_with(prefix),
        None => pattern == key,
    }
}

fn issuer_matches(pattern: &str, kind: &str, name: &str) -> bool {
    pattern == "*"
        || pattern
            .split_once('/')
            .is_some_and(|(k, n)| k == kind && (n == "*" || n == name))
}

fn host_matches(pattern: &str, host: &str) -> bool {
    pattern == "*"
        || match pattern.strip_prefix('.') {
            // `.example.com` allows `a.example.com`, not `example.com` nor
            // `badexample.com`.
            Some(_) => host.ends_with(pattern),
            None => host == pattern,
        }
}

fn image_matches(pattern: &str, image: &str) -> bool {
    // Up to a `/`: `registry.example.com` must not allow
    // `registry.example.com.evil.io/x`.
    pattern == "*"
        || image
            .strip_prefix(pattern)
            .is_some_and(|rest| rest.starts_with('/'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::test_support::validated;

    fn shared() -> Policy {
        Policy::parse(
            Some("nginx.ingress.kubernetes.io/backend-protocol, cert-manager.io/*"),
            Some("ClusterIssuer/letsencrypt, Issuer/*"),
            Some(".apps.example.com"),
            Some("registry.example.com/securevault"),
        )
        .unwrap()
    }

    #[test]
    fn by_default_anything_goes() {
        let v = validated(
            "  image: anywhere.io/x:1
  tls: {secretName: t, issuerRef: {name: any, kind: ClusterIssuer}, dnsNames: [whatever.org]}
  ingress:
    host: mail.example.org
    annotations: {nginx.ingress.kubernetes.io/configuration-snippet: 'x'}
",
        );
        assert_eq!(Policy::default().violations(&v), []);
        assert_eq!(
            Policy::parse(None, Some(""), None, Some(" ")).unwrap(),
            Policy::default()
        );
    }

    #[test]
    fn a_shared_cluster_refuses_each_thing_outside_its_lists_by_name() {
        let v = validated(
            "  image: registry.example.com.evil.io/securevault/dataplane:1
  tls: {secretName: t, issuerRef: {name: internal-ca, kind: ClusterIssuer}, dnsNames: [mail.apps.example.com, apps.example.com]}
  ingress:
    host: mail.example.org
    annotations:
      nginx.ingress.kubernetes.io/backend-protocol: HTTPS
      nginx.ingress.kubernetes.io/server-snippet: 'return 200;'
      cert-manager.io/duration: 48h
",
        );
        let refused: Vec<String> = shared()
            .violations(&v)
            .iter()
            .map(|v| v.field.clone())
            .collect();
        assert_eq!(
            refused,
            [
                "spec.ingress.annotations[\"nginx.ingress.kubernetes.io/server-snippet\"]",
                "spec.ingress.host (mail.example.org)",
                "spec.tls.dnsNames[1] (apps.example.com)",
                "spec.tls.issuerRef (ClusterIssuer/internal-ca)",
                "spec.image (registry.example.com.evil.io/securevault/dataplane:1)",
            ]
        );
        let message = shared().violations(&v)[0].to_string();
        assert!(message.contains("POLICY_INGRESS_ANNOTATIONS"), "{message}");
        assert!(message.contains("cert-manager.io/*"), "{message}");

        let fine = validated(
            "  image: registry.example.com/securevault/dataplane:1
  tls: {secretName: t, issuerRef: {name: own-ca}}
  ingress:
    host: mail.apps.example.com
    annotations: {cert-manager.io/duration: 48h}
",
        );
        assert_eq!(shared().violations(&fine), []);
    }

    #[test]
    fn a_wrong_entry_stops_the_operator_naming_its_variable() {
        for (parsed, var) in [
            (
                Policy::parse(Some("a*b"), None, None, None),
                INGRESS_ANNOTATIONS_VAR,
            ),
            (
                Policy::parse(None, Some("letsencrypt"), None, None),
                ISSUERS_VAR,
            ),
            (
                Policy::parse(None, None, Some("*.example.com"), None),
                HOST_SUFFIXES_VAR,
            ),
            (
                Policy::parse(None, None, None, Some("registry.example.com/")),
                IMAGE_REGISTRIES_VAR,
            ),
        ] {
            assert_eq!(parsed.unwrap_err().var, var);
        }
    }
}
