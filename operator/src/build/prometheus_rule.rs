//! The PrometheusRule: the seed's eight alerts for this instance, as
//! `alerts.rs` defines them and the spec tunes them.

use crate::{
    alerts,
    api::monitoring::{PrometheusRule, PrometheusRuleSpec},
    validate::ValidatedVault,
};

/// The PrometheusRule's name.
pub fn name(v: &ValidatedVault) -> String {
    format!("{}-alerts", v.name)
}

/// The PrometheusRule of `v`.
pub fn build(v: &ValidatedVault) -> PrometheusRule {
    PrometheusRule {
        metadata: super::service_monitor::monitoring_metadata(v, name(v)),
        spec: PrometheusRuleSpec {
            groups: vec![alerts::rule_group(v)],
        },
    }
}

/// The same rules as a Prometheus rule file (JSON, which is YAML too), for
/// `operator rules`, promtool and a Prometheus without the operator.
pub fn rule_file(v: &ValidatedVault) -> Result<String, serde_json::Error> {
    serde_json::to_string_pretty(&build(v).spec)
}

/// Why `operator rules` could not render a manifest's rules.
#[derive(Debug, thiserror::Error)]
pub enum RulesError {
    /// The manifest holds no valid SecureVault.
    #[error(transparent)]
    Manifest(#[from] crate::render::ManifestError),
    /// Rendering failed (a bug).
    #[error("rendering the rules: {0}")]
    Render(#[from] serde_json::Error),
}

/// The rule file of the (first) SecureVault in a YAML manifest such as
/// `config/samples/complete.yaml`, in the namespace it names (`default`
/// when none), as the operator would write it.
pub fn rule_file_from_manifest(manifest: &str) -> Result<String, RulesError> {
    Ok(rule_file(&crate::render::vault_from_manifest(manifest)?)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::test_support::minimal;

    #[test]
    fn holds_one_group_of_eight_alerts() {
        let r = build(&minimal());
        assert_eq!(r.metadata.name.as_deref(), Some("mail-alerts"));
        assert_eq!(r.spec.groups.len(), 1);
        assert_eq!(r.spec.groups[0].rules.len(), 8);
        let file: serde_json::Value =
            serde_json::from_str(&rule_file(&minimal()).unwrap()).unwrap();
        assert_eq!(file["groups"][0]["rules"][0]["for"], "2m");
    }

    #[test]
    fn the_rules_of_a_sample_manifest_render() {
        let sample = include_str!("../../../config/samples/complete.yaml");
        let file = rule_file_from_manifest(sample).unwrap();
        assert!(
            file.contains("namespace=\\\"default\\\",service=\\\"mail\\\""),
            "{file}"
        );
        assert!(matches!(
            rule_file_from_manifest("kind: Secret"),
            Err(RulesError::Manifest(
                crate::render::ManifestError::NoSecureVault
            ))
        ));
    }
}
