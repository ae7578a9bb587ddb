//! What tells `dataplane` where backups go: `BACKUP_S3_*` (the access key
//! by Secret reference, never copied) or `BACKUP_DIR` with the claim mounted
//! there. The embedded store's pod gets them, and backs itself up on
//! `BACKUP_INTERVAL_SECS`; a PostgreSQL vault's backup CronJob gets them
//! instead, so its replicas never each take one. A restoring init container
//! gets the bucket it restores from.
//!
//! These are container variables rather than ConfigMap settings: the
//! ConfigMap is every container's, and the Deployment of a PostgreSQL vault
//! must not see a destination.

use k8s_openapi::api::core::v1::{EnvVar, PersistentVolumeClaimVolumeSource, Volume, VolumeMount};

use super::deployment::from_secret;
use crate::validate::{Backup, BackupDestination, Bucket};

/// Where a backup claim is mounted.
pub const BACKUP_DIR: &str = "/backups";

/// The pod volume of a backup claim.
const VOLUME: &str = "backups";

/// The variables of scheduled backups into `b`'s destination; with
/// `scheduled`, the interval of the data plane's own schedule too.
pub fn env(b: &Backup, scheduled: bool) -> Vec<EnvVar> {
    let mut env = match &b.destination {
        BackupDestination::Bucket(bucket) => bucket_env(bucket),
        BackupDestination::Claim { .. } => vec![value("BACKUP_DIR", BACKUP_DIR)],
    };
    env.push(value("BACKUP_RETAIN", &b.retain.to_string()));
    if scheduled {
        env.push(value(
            "BACKUP_INTERVAL_SECS",
            &b.interval.as_secs().to_string(),
        ));
    }
    env
}

/// The variables naming `bucket`.
pub fn bucket_env(bucket: &Bucket) -> Vec<EnvVar> {
    let mut env = vec![
        value("BACKUP_S3_BUCKET", &bucket.bucket),
        value("BACKUP_S3_REGION", &bucket.region),
        value("BACKUP_S3_PREFIX", &bucket.prefix),
    ];
    if let Some(endpoint) = &bucket.endpoint {
        env.push(value("BACKUP_S3_ENDPOINT", endpoint));
    }
    if let Some(r) = &bucket.access_key_id {
        env.push(from_secret("BACKUP_S3_ACCESS_KEY_ID", &r.name, &r.key));
    }
    if let Some(r) = &bucket.secret_access_key {
        env.push(from_secret("BACKUP_S3_SECRET_ACCESS_KEY", &r.name, &r.key));
    }
    env
}

/// The claim's volume and its mount, when backups go to a claim.
pub fn volume(b: &Backup) -> Option<(Volume, VolumeMount)> {
    let BackupDestination::Claim { name, .. } = &b.destination else {
        return None;
    };
    Some((
        Volume {
            name: VOLUME.into(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: name.clone(),
                read_only: None,
            }),
            ..Volume::default()
        },
        VolumeMount {
            name: VOLUME.into(),
            mount_path: BACKUP_DIR.into(),
            ..VolumeMount::default()
        },
    ))
}

fn value(name: &str, value: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: Some(value.into()),
        ..EnvVar::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::test_support::{minimal, validated};

    fn names(env: &[EnvVar]) -> Vec<&str> {
        env.iter().map(|e| e.name.as_str()).collect()
    }

    #[test]
    fn by_default_the_embedded_store_backs_up_hourly_into_its_backup_claim() {
        let v = minimal();
        let b = v.backup.as_ref().unwrap();
        let env = env(b, true);
        assert_eq!(
            names(&env),
            ["BACKUP_DIR", "BACKUP_RETAIN", "BACKUP_INTERVAL_SECS"]
        );
        assert_eq!(env[0].value.as_deref(), Some("/backups"));
        assert_eq!(env[2].value.as_deref(), Some("3600"));
        let (volume, mount) = volume(b).unwrap();
        assert_eq!(
            volume.persistent_volume_claim.unwrap().claim_name,
            "mail-backups"
        );
        assert_eq!(mount.mount_path, "/backups");
    }

    #[test]
    fn a_bucket_is_named_and_its_key_comes_by_reference() {
        let v = validated(
            "  backup:
    intervalSeconds: 600
    s3:
      endpoint: http://seaweedfs.storage:8333
      bucket: backups
      accessKeyIdSecretRef: {name: s3, key: id}
      secretAccessKeySecretRef: {name: s3, key: secret}
",
        );
        let b = v.backup.as_ref().unwrap();
        assert!(volume(b).is_none());
        let env = env(b, true);
        let get = |n: &str| env.iter().find(|e| e.name == n).unwrap();
        assert_eq!(get("BACKUP_S3_BUCKET").value.as_deref(), Some("backups"));
        assert_eq!(
            get("BACKUP_S3_ENDPOINT").value.as_deref(),
            Some("http://seaweedfs.storage:8333")
        );
        // Its own folder: `<namespace>/<name>/`.
        assert_eq!(
            get("BACKUP_S3_PREFIX").value.as_deref(),
            Some("team-a/mail/")
        );
        assert_eq!(get("BACKUP_INTERVAL_SECS").value.as_deref(), Some("600"));
        let key = get("BACKUP_S3_SECRET_ACCESS_KEY");
        assert_eq!(key.value, None);
        let by_ref = key.value_from.clone().unwrap().secret_key_ref.unwrap();
        assert_eq!(
            (by_ref.name.as_str(), by_ref.key.as_str()),
            ("s3", "secret")
        );
    }
}
