//! `operator render`: every object the operator writes for one SecureVault,
//! as a multi-document YAML stream, computed as the reconciler computes it
//! (`validate -> build`) but without a cluster: for review, `kubectl diff`
//! and manifest linters (`make security`).

use serde::Serialize;

use crate::{
    api::SecureVault,
    build::{
        self, Monitoring, Resources, backup_cron_job, migration_job,
        secret::{Generated, generate_key},
    },
    upgrade,
    validate::{self, ValidatedVault},
};

/// The upgrade id in the names of the Jobs rendered with `upgrade_jobs`. A
/// real upgrade's id is six hex digits of a digest of its target image and
/// start time, which a render has neither of.
pub const UPGRADE_ID: &str = "000000";

/// Why a manifest holds no SecureVault the operator could build.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// No document of the manifest is a SecureVault.
    #[error("no SecureVault in the manifest")]
    NoSecureVault,
    /// The SecureVault does not parse.
    #[error("the SecureVault does not parse: {0}")]
    Parse(#[from] serde_saphyr::Error),
    /// The SecureVault is invalid.
    #[error(transparent)]
    Invalid(#[from] validate::ValidationError),
}

/// Why `operator render` could not render a manifest.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// The manifest holds no valid SecureVault.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// The system's random source failed while generating a key.
    #[error("generating the secret key: {0}")]
    Random(#[from] getrandom::Error),
    /// Serialising an object failed (a bug).
    #[error("rendering YAML: {0}")]
    Yaml(#[from] serde_saphyr::ser::Error),
}

/// The (first) SecureVault of a YAML manifest such as
/// `config/samples/complete.yaml`, validated, in the namespace it names
/// (`default` when none).
pub fn vault_from_manifest(manifest: &str) -> Result<ValidatedVault, ManifestError> {
    let document = manifest
        .split("\n---")
        .find(|d| d.lines().any(|l| l.trim() == "kind: SecureVault"))
        .ok_or(ManifestError::NoSecureVault)?;
    let mut sv: SecureVault = serde_saphyr::from_str(document)?;
    sv.metadata
        .namespace
        .get_or_insert_with(|| "default".into());
    // Not read from the API server, so it has no uid, which the children's
    // owner reference needs: a placeholder stands in (the nil UUID, which
    // the API server never assigns).
    sv.metadata
        .uid
        .get_or_insert_with(|| "00000000-0000-0000-0000-000000000000".into());
    // As the operator run with its defaults would label the monitoring.
    let labels = validate::parse_labels(validate::DEFAULT_MONITORING_LABELS).unwrap_or_default();
    Ok(validate::validate(&sv)?.with_monitoring_labels(&labels))
}

/// The objects of `v` as a YAML stream, one document per object, in the
/// order the reconciler applies them. With `upgrade_jobs`, also the Jobs a
/// managed upgrade of `v` runs (the backup, with `spec.backup`; the
/// migration, with `spec.database`), named with [`UPGRADE_ID`].
pub fn yaml_stream(
    v: &ValidatedVault,
    generated: &Generated,
    upgrade_jobs: bool,
) -> Result<String, serde_saphyr::ser::Error> {
    // Destructured without `..`: a new child does not compile until rendered.
    let Resources {
        service_account,
        config_map,
        secret,
        claim,
        backup_claim,
        deployment,
        service,
        pdb,
        hpa,
        network_policy,
        monitoring,
        backup,
        ingress,
        certificate,
    } = build::build(v, generated);
    let mut docs = Documents::default();
    docs.push(&service_account)?;
    docs.push(&config_map)?;
    docs.push_some(secret.as_ref())?;
    docs.push_some(claim.as_ref())?;
    docs.push_some(backup_claim.as_ref())?;
    docs.push(&deployment)?;
    docs.push(&service)?;
    docs.push_some(certificate.as_ref())?;
    docs.push_some(ingress.as_ref())?;
    docs.push_some(pdb.as_ref())?;
    docs.push_some(hpa.as_ref())?;
    docs.push_some(network_policy.as_ref())?;
    if let Some(Monitoring {
        service_monitor,
        prometheus_rule,
        alertmanager_config,
    }) = &monitoring
    {
        docs.push(service_monitor)?;
        docs.push(prometheus_rule)?;
        docs.push_some(alertmanager_config.as_ref())?;
    }
    docs.push_some(backup.as_ref())?;
    if upgrade_jobs {
        let deadline = v.upgrade.job_deadline;
        let backup_job = upgrade::job_name(&v.name, UPGRADE_ID, "backup");
        docs.push_some(backup_cron_job::one_off(v, backup_job, deadline).as_ref())?;
        if v.external_database {
            let migrate_job = upgrade::job_name(&v.name, UPGRADE_ID, "migrate");
            docs.push(&migration_job::build(v, migrate_job, deadline))?;
        }
    }
    Ok(docs.0)
}

/// [`yaml_stream`] of the SecureVault in `manifest`. Values the operator
/// generates (`SECRET_KEY`, the administrator password, when the spec
/// references none of its own) are generated afresh, as at a first
/// reconcile: applying the output never installs a known key.
pub fn render_manifest(manifest: &str, upgrade_jobs: bool) -> Result<String, RenderError> {
    let v = vault_from_manifest(manifest)?;
    let generated = Generated {
        secret_key: v.generates_secret_key.then(generate_key).transpose()?,
        admin_password: v.generates_admin_password.then(generate_key).transpose()?,
    };
    Ok(yaml_stream(&v, &generated, upgrade_jobs)?)
}

/// A YAML stream being written.
#[derive(Default)]
struct Documents(String);

impl Documents {
    fn push<T: Serialize>(&mut self, object: &T) -> Result<(), serde_saphyr::ser::Error> {
        let yaml = serde_saphyr::to_string(object)?;
        self.0.push_str("---\n");
        self.0.push_str(&yaml);
        if !yaml.ends_with('\n') {
            self.0.push('\n');
        }
        Ok(())
    }

    fn push_some<T: Serialize>(
        &mut self,
        object: Option<&T>,
    ) -> Result<(), serde_saphyr::ser::Error> {
        object.map_or(Ok(()), |o| self.push(o))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    const COMPLETE: &str = include_str!("../../config/samples/complete.yaml");
    const MINIMAL: &str = include_str!("../../config/samples/minimal.yaml");

    fn documents(stream: &str) -> Vec<Value> {
        serde_saphyr::from_multiple(stream).unwrap()
    }

    fn kinds_and_names(docs: &[Value]) -> Vec<(String, String)> {
        docs.iter()
            .map(|d| {
                (
                    d["kind"].as_str().unwrap_or_default().to_owned(),
                    d["metadata"]["name"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                )
            })
            .collect()
    }

    #[test]
    fn the_complete_sample_renders_every_child_in_apply_order() {
        let docs = documents(&render_manifest(COMPLETE, false).unwrap());
        let expected = [
            ("ServiceAccount", "mail"),
            ("ConfigMap", "mail-config"),
            ("Deployment", "mail"),
            ("Service", "mail"),
            ("Certificate", "mail-tls"),
            ("Ingress", "mail"),
            ("PodDisruptionBudget", "mail"),
            ("HorizontalPodAutoscaler", "mail"),
            ("NetworkPolicy", "mail"),
            ("ServiceMonitor", "mail"),
            ("PrometheusRule", "mail-alerts"),
            ("AlertmanagerConfig", "mail-alert-routing"),
            ("CronJob", "mail-backup"),
        ];
        let expected: Vec<_> = expected
            .iter()
            .map(|(k, n)| ((*k).to_owned(), (*n).to_owned()))
            .collect();
        assert_eq!(kinds_and_names(&docs), expected);
        for d in &docs {
            assert!(d["apiVersion"].is_string(), "{d}");
            assert_eq!(d["metadata"]["namespace"], "default");
            let owner = &d["metadata"]["ownerReferences"][0];
            assert_eq!(owner["kind"], "SecureVault");
            assert_eq!(owner["name"], "mail");
        }
    }

    #[test]
    fn upgrade_jobs_are_rendered_on_request() {
        let docs = documents(&render_manifest(COMPLETE, true).unwrap());
        let jobs: Vec<_> = kinds_and_names(&docs)
            .into_iter()
            .filter(|(kind, _)| kind == "Job")
            .map(|(_, name)| name)
            .collect();
        assert_eq!(
            jobs,
            ["mail-upgrade-000000-backup", "mail-upgrade-000000-migrate"]
        );
    }

    #[test]
    fn the_minimal_sample_gets_a_fresh_generated_secret_and_no_upgrade_job() {
        let first = documents(&render_manifest(MINIMAL, true).unwrap());
        let second = documents(&render_manifest(MINIMAL, true).unwrap());
        let secret = |docs: &[Value]| -> Value {
            docs.iter()
                .find(|d| d["kind"] == "Secret")
                .map(|d| d["data"].clone())
                .unwrap_or_default()
        };
        let (a, b) = (secret(&first), secret(&second));
        for key in ["secret-key", "admin-password"] {
            assert!(a[key].is_string(), "{a}");
            assert_ne!(a[key], b[key], "{key} is generated afresh");
        }
        let kinds: Vec<_> = kinds_and_names(&first)
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert!(!kinds.iter().any(|k| k == "Job"), "{kinds:?}");
        assert!(
            !kinds.iter().any(|k| k == "PodDisruptionBudget"),
            "{kinds:?}"
        );
    }

    #[test]
    fn a_manifest_without_a_valid_secure_vault_is_refused() {
        assert!(matches!(
            render_manifest("apiVersion: v1\nkind: Secret\n", false),
            Err(RenderError::Manifest(ManifestError::NoSecureVault))
        ));
        let reserved = format!("{MINIMAL}  labels: {{app.kubernetes.io/instance: other}}\n");
        assert!(matches!(
            render_manifest(&reserved, false),
            Err(RenderError::Manifest(ManifestError::Invalid(_)))
        ));
    }
}
