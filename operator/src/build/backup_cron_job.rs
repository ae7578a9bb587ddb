//! The CronJob running `dataplane backup` on the spec's schedule, writing to
//! the spec's PersistentVolumeClaim. Its pods run the data-plane image with
//! the same settings and credentials as the Deployment's (the store's URL
//! among them), under the same "restricted" security settings, and carry a
//! `backup` component label so the Service never routes to them.

use std::collections::BTreeMap;

use k8s_openapi::api::{
    batch::v1::{CronJob, CronJobSpec, JobSpec, JobTemplateSpec},
    core::v1::{
        Container, PersistentVolumeClaimVolumeSource, PodSpec, PodTemplateSpec, Volume, VolumeMount,
    },
};
use kube::api::ObjectMeta;

use super::deployment::{
    container_security_context, empty_dir, pod_security_context, secret_env, settings_env,
};
use crate::validate::ValidatedVault;

/// Where the claim is mounted in the backup pod.
const BACKUP_DIR: &str = "/backups";

/// The CronJob's name.
pub fn name(v: &ValidatedVault) -> String {
    format!("{}-backup", v.name)
}

/// The backup CronJob of `v`, when `spec.backup` asks for one.
pub fn build(v: &ValidatedVault) -> Option<CronJob> {
    let backup = v.backup.as_ref()?;
    // Not the Deployment's selector labels: the Service must not pick these pods.
    let mut labels: BTreeMap<String, String> = v
        .labels
        .iter()
        .filter(|(k, _)| k.as_str() != "app.kubernetes.io/component")
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    labels.insert("app.kubernetes.io/component".into(), "backup".into());
    let container = Container {
        name: "backup".into(),
        image: Some(v.image.clone()),
        image_pull_policy: v.image_pull_policy.clone(),
        args: Some(vec![
            "backup".into(),
            "--output".into(),
            BACKUP_DIR.into(),
            "--retain".into(),
            backup.retain.to_string(),
        ]),
        env_from: Some(settings_env(v)),
        env: Some(secret_env(v)),
        security_context: Some(container_security_context()),
        volume_mounts: Some(vec![
            VolumeMount {
                name: "backups".into(),
                mount_path: BACKUP_DIR.into(),
                ..VolumeMount::default()
            },
            VolumeMount {
                name: "tmp".into(),
                mount_path: "/tmp".into(),
                ..VolumeMount::default()
            },
        ]),
        ..Container::default()
    };
    Some(CronJob {
        metadata: super::metadata(v, name(v)),
        spec: CronJobSpec {
            schedule: backup.schedule.clone(),
            // A slow backup must not pile up behind itself.
            concurrency_policy: Some("Forbid".into()),
            successful_jobs_history_limit: Some(3),
            failed_jobs_history_limit: Some(3),
            job_template: JobTemplateSpec {
                metadata: None,
                spec: Some(JobSpec {
                    backoff_limit: Some(2),
                    template: PodTemplateSpec {
                        metadata: Some(ObjectMeta {
                            labels: Some(labels),
                            annotations: (!v.annotations.is_empty()).then(|| v.annotations.clone()),
                            ..ObjectMeta::default()
                        }),
                        spec: Some(PodSpec {
                            restart_policy: Some("OnFailure".into()),
                            service_account_name: Some(crate::names::workload(&v.name)),
                            automount_service_account_token: Some(false),
                            security_context: Some(pod_security_context()),
                            containers: vec![container],
                            volumes: Some(vec![
                                Volume {
                                    name: "backups".into(),
                                    persistent_volume_claim: Some(
                                        PersistentVolumeClaimVolumeSource {
                                            claim_name: backup.volume_claim_name.clone(),
                                            read_only: Some(false),
                                        },
                                    ),
                                    ..Volume::default()
                                },
                                empty_dir("tmp"),
                            ]),
                            ..PodSpec::default()
                        }),
                    },
                    ..JobSpec::default()
                }),
            },
            ..CronJobSpec::default()
        },
        ..CronJob::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::test_support::{minimal, validated};

    #[test]
    fn runs_dataplane_backup_on_the_schedule_into_the_claim() {
        let v = validated(
            "  database: {urlSecretRef: {name: db, key: url}}
  backup: {volumeClaimName: mail-backups, retain: 48}
",
        );
        let cj = build(&v).unwrap();
        assert_eq!(cj.metadata.name.as_deref(), Some("mail-backup"));
        let spec = cj.spec;
        assert_eq!(spec.schedule, "0 * * * *");
        assert_eq!(spec.concurrency_policy.as_deref(), Some("Forbid"));
        let pod = spec.job_template.spec.unwrap().template;
        let labels = pod.metadata.unwrap().labels.unwrap();
        assert_eq!(labels["app.kubernetes.io/component"], "backup");
        let pod = pod.spec.unwrap();
        let c = &pod.containers[0];
        assert_eq!(
            c.args.as_deref().unwrap(),
            ["backup", "--output", "/backups", "--retain", "48"]
        );
        assert!(
            c.env
                .as_ref()
                .unwrap()
                .iter()
                .any(|e| e.name == "DATABASE_URL")
        );
        assert_eq!(
            c.security_context
                .as_ref()
                .unwrap()
                .read_only_root_filesystem,
            Some(true)
        );
        let claim = pod.volumes.unwrap()[0]
            .persistent_volume_claim
            .clone()
            .unwrap();
        assert_eq!(claim.claim_name, "mail-backups");
    }

    #[test]
    fn none_without_spec_backup() {
        assert!(build(&minimal()).is_none());
    }
}
