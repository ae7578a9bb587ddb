//! The CronJob running `dataplane backup` on the spec's schedule for a
//! PostgreSQL store, writing to the spec's bucket or claim, and the one-off
//! backup Job a managed upgrade runs first. Their pods are
//! [`job_pod`](super::job_pod)s of component `backup`. (The embedded store
//! backs itself up, in its pod: see `backup_settings`.)

use k8s_openapi::api::batch::v1::{CronJob, CronJobSpec, Job, JobSpec, JobTemplateSpec};

use super::{backup_settings, deployment::empty_dir, job_pod};
use crate::{names, validate::ValidatedVault};

/// How late after its scheduled time a backup may still start.
const STARTING_DEADLINE_SECONDS: i64 = 600;

/// The CronJob's name.
pub fn name(v: &ValidatedVault) -> String {
    format!("{}-backup", v.name)
}

/// The backup CronJob of `v`, when its store is PostgreSQL and
/// `spec.backup` asks for one.
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
    if !v.external_database {
        return None;
    }
    let backup = v.backup.as_ref()?;
    // The snapshot is staged in DATA_DIR before its upload: an emptyDir.
    let mut volumes = vec![(empty_dir("data"), names::DATA_DIR)];
    if let Some((claim, _)) = backup_settings::volume(backup) {
        volumes.push((claim, backup_settings::BACKUP_DIR));
    }
    Some(JobSpec {
        backoff_limit: Some(2),
        template: job_pod::template(
            v,
            "backup",
            vec!["backup".into()],
            volumes,
            backup_settings::env(backup, false),
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
        assert_eq!(c.args.as_deref().unwrap(), ["backup"]);
        let env = c.env.as_ref().unwrap();
        let get = |n: &str| env.iter().find(|e| e.name == n).map(|e| e.value.clone());
        assert!(get("DATABASE_URL").is_some());
        assert_eq!(get("BACKUP_DIR"), Some(Some("/backups".into())));
        assert_eq!(get("BACKUP_RETAIN"), Some(Some("48".into())));
        // The CronJob is the schedule: the data plane keeps none of its own.
        assert_eq!(get("BACKUP_INTERVAL_SECS"), None);
        assert_eq!(
            c.security_context
                .as_ref()
                .unwrap()
                .read_only_root_filesystem,
            Some(true)
        );
        let claim = pod
            .volumes
            .unwrap()
            .into_iter()
            .find_map(|v| v.persistent_volume_claim)
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
    fn none_without_spec_backup_nor_for_the_embedded_store() {
        assert!(
            build(&validated(
                "  database: {urlSecretRef: {name: db, key: url}}
"
            ))
            .is_none()
        );
        // It backs itself up.
        assert!(minimal().backup.is_some());
        assert!(build(&minimal()).is_none());
    }

    #[test]
    fn to_a_bucket_the_job_stages_in_an_empty_dir_and_uploads() {
        let v = validated(
            "  database: {urlSecretRef: {name: db, key: url}}
  backup: {s3: {bucket: backups, endpoint: 'http://s3.storage:8333'}}
",
        );
        let pod = build(&v)
            .unwrap()
            .spec
            .job_template
            .spec
            .unwrap()
            .template
            .spec
            .unwrap();
        let volumes = pod.volumes.unwrap();
        assert!(volumes.iter().all(|v| v.persistent_volume_claim.is_none()));
        let env = pod.containers[0].env.clone().unwrap();
        assert!(env.iter().any(|e| e.name == "BACKUP_S3_BUCKET"));
    }
}
