//! The CronJob running `dataplane backup` on the spec's schedule, writing to
//! the spec's PersistentVolumeClaim, and the one-off backup Job a managed
//! upgrade runs first. Their pods are [`job_pod`](super::job_pod)s of
//! component `backup`.

use k8s_openapi::api::{
    batch::v1::{CronJob, CronJobSpec, Job, JobSpec, JobTemplateSpec},
    core::v1::{PersistentVolumeClaimVolumeSource, Volume},
};

use super::job_pod;
use crate::validate::ValidatedVault;

/// How late after its scheduled time a backup may still start.
const STARTING_DEADLINE_SECONDS: i64 = 600;

/// Where the claim is mounted in the backup pod.
const BACKUP_DIR: &str = "/backups";

/// The CronJob's name.
pub fn name(v: &ValidatedVault) -> String {
    format!("{}-backup", v.name)
}

/// The backup CronJob of `v`, when `spec.backup` asks for one.
pub fn build(v: &ValidatedVault) -> Option<CronJob> {
    Some(CronJob {
        metadata: super::metadata(v, name(v)),
        spec: CronJobSpec {
            schedule: v.backup.as_ref()?.schedule.clone(),
            // A slow backup must not pile up behind itself.
            concurrency_policy: Some("Forbid".into()),
            // A run that cannot start within this of its time (controller
            // down, quota exhausted) is skipped rather than started late,
            // and the controller looks back no further for missed runs
            // (without a deadline it stops scheduling after 100 misses).
            starting_deadline_seconds: Some(STARTING_DEADLINE_SECONDS),
            successful_jobs_history_limit: Some(3),
            failed_jobs_history_limit: Some(3),
            job_template: JobTemplateSpec {
                metadata: None,
                spec: Some(job_spec(v)?),
            },
            ..CronJobSpec::default()
        },
        ..CronJob::default()
    })
}

/// A backup Job of `v` outside the schedule, named `name`, that fails once
/// it has run for `deadline` (a managed upgrade waits for it).
pub fn one_off(v: &ValidatedVault, name: String, deadline: std::time::Duration) -> Option<Job> {
    let mut spec = job_spec(v)?;
    spec.active_deadline_seconds = Some(i64::try_from(deadline.as_secs()).unwrap_or(i64::MAX));
    Some(Job {
        metadata: super::metadata(v, name),
        spec: Some(spec),
        ..Job::default()
    })
}

fn job_spec(v: &ValidatedVault) -> Option<JobSpec> {
    let backup = v.backup.as_ref()?;
    let claim = Volume {
        name: "backups".into(),
        persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
            claim_name: backup.volume_claim_name.clone(),
            read_only: Some(false),
        }),
        ..Volume::default()
    };
    Some(JobSpec {
        backoff_limit: Some(2),
        template: job_pod::template(
            v,
            "backup",
            vec![
                "backup".into(),
                "--output".into(),
                BACKUP_DIR.into(),
                "--retain".into(),
                backup.retain.to_string(),
            ],
            vec![(claim, BACKUP_DIR)],
            "OnFailure",
        ),
        ..JobSpec::default()
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
        assert_eq!(spec.starting_deadline_seconds, Some(600));
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
    fn the_one_off_job_is_the_cron_jobs_with_a_deadline() {
        let v = validated(
            "  database: {urlSecretRef: {name: db, key: url}}
  backup: {volumeClaimName: mail-backups}
",
        );
        let job = one_off(
            &v,
            "mail-upgrade-x-backup".into(),
            std::time::Duration::from_secs(90),
        )
        .unwrap();
        assert_eq!(job.metadata.name.as_deref(), Some("mail-upgrade-x-backup"));
        assert_eq!(job.metadata.owner_references.unwrap()[0].name, "mail");
        let mut spec = job.spec.unwrap();
        assert_eq!(spec.active_deadline_seconds, Some(90));
        spec.active_deadline_seconds = None;
        assert_eq!(Some(spec), build(&v).unwrap().spec.job_template.spec);
    }

    #[test]
    fn none_without_spec_backup() {
        assert!(build(&minimal()).is_none());
    }
}
