//! The Job a managed upgrade runs before the rollout: the new version's
//! `dataplane migrate` against the external store. Migrations are
//! forward-only and recorded in the store, so a second run (a retried pod,
//! an operator resuming after a restart) applies nothing twice. A failure
//! stops the upgrade before any pod runs the new version.

use std::time::Duration;

use k8s_openapi::api::batch::v1::{Job, JobSpec};

use super::{deployment::empty_dir, job_pod};
use crate::{names, validate::ValidatedVault};

/// Finished Jobs stay this long for `kubectl logs`, then go.
const KEEP_FINISHED: i32 = 86_400;

/// The migration Job running `v`'s version, named `name`, which fails once
/// it has run for `deadline`.
pub fn build(v: &ValidatedVault, name: String, deadline: Duration) -> Job {
    Job {
        metadata: super::metadata(v, name),
        spec: Some(JobSpec {
            // One retry for a connection lost on the way; a migration that
            // fails twice fails the upgrade.
            backoff_limit: Some(1),
            active_deadline_seconds: Some(i64::try_from(deadline.as_secs()).unwrap_or(i64::MAX)),
            ttl_seconds_after_finished: Some(KEEP_FINISHED),
            template: job_pod::template(
                v,
                "migration",
                vec!["migrate".into()],
                vec![(empty_dir("data"), names::DATA_DIR)],
                Vec::new(),
                "Never",
            ),
            ..JobSpec::default()
        }),
        ..Job::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::test_support::validated;

    #[test]
    fn runs_the_given_version_s_migrate_with_the_pods_credentials_and_resources() {
        let mut v = validated(
            "  database: {urlSecretRef: {name: db, key: url}}
  resources: {requests: {cpu: 100m, memory: 64Mi}, limits: {memory: 256Mi}}
  imagePullSecrets: [{name: mirror}]
",
        );
        v.image = "securevault/dataplane:0.3.0".into();
        let job = build(
            &v,
            "mail-upgrade-a1-migrate".into(),
            Duration::from_secs(600),
        );
        assert_eq!(job.metadata.owner_references.unwrap()[0].name, "mail");
        let spec = job.spec.unwrap();
        assert_eq!(spec.active_deadline_seconds, Some(600));
        let pod = spec.template;
        assert_eq!(
            pod.metadata.unwrap().labels.unwrap()["app.kubernetes.io/component"],
            "migration"
        );
        let pod = pod.spec.unwrap();
        assert_eq!(pod.restart_policy.as_deref(), Some("Never"));
        // Pulled from the same registry as the pods, with their secrets.
        assert_eq!(pod.image_pull_secrets.as_ref().unwrap()[0].name, "mirror");
        let c = &pod.containers[0];
        assert_eq!(c.image.as_deref(), Some("securevault/dataplane:0.3.0"));
        assert_eq!(c.args.as_deref().unwrap(), ["migrate"]);
        let resources = c.resources.clone().unwrap();
        assert_eq!(resources.requests.unwrap()["cpu"].0, "100m");
        assert_eq!(resources.limits.unwrap()["memory"].0, "256Mi");
        assert!(
            c.env
                .as_ref()
                .unwrap()
                .iter()
                .any(|e| e.name == "DATABASE_URL")
        );
        let mounts: Vec<_> = c
            .volume_mounts
            .iter()
            .flatten()
            .map(|m| m.mount_path.as_str())
            .collect();
        assert_eq!(mounts, [names::DATA_DIR, "/tmp"]);
    }
}
