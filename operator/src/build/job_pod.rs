//! The pod template shared by the operator's Jobs (scheduled backups, the
//! pre-upgrade backup, the migration): the data-plane image with the same
//! settings, credentials and resources (`spec.resources`) as the
//! Deployment's pods, the same "restricted" security settings, and a
//! `component` label other than the Deployment's, so the Service never
//! routes to them.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Container, EnvVar, PodSpec, PodTemplateSpec, Volume, VolumeMount,
};
use kube::api::ObjectMeta;

use super::deployment::{
    container_security_context, empty_dir, pod_security_context, pull_secrets, secret_env,
    settings_env,
};
use crate::{env, validate::ValidatedVault};

/// The settings only a serving pod uses, unset in a Job's pod (an empty
/// value reads as unset, and `env` wins over `envFrom`): they name files of
/// Secrets that only the Deployment mounts, and the data plane checks
/// such a file at start whatever it runs, so a TLS vault's backup and
/// migration Jobs would stop on "TLS_CERT_FILE: no such file".
fn serving_only_unset() -> impl Iterator<Item = EnvVar> {
    [
        env::TLS_CERT_FILE,
        env::TLS_KEY_FILE,
        env::DKIM_KEYS_DIR,
        env::DKIM_ALLOW_UNSIGNED,
        env::SMTP_CA_FILE,
    ]
    .into_iter()
    .map(|name| EnvVar {
        name: name.to_owned(),
        value: Some(String::new()),
        ..EnvVar::default()
    })
}

/// A pod running `dataplane ARGS…` with `v`'s image, as `component`, with
/// `volumes` mounted (name, path) besides a writable `/tmp`, and `env`
/// besides the settings and secrets every pod has.
pub fn template(
    v: &ValidatedVault,
    component: &str,
    args: Vec<String>,
    volumes: Vec<(Volume, &str)>,
    env: Vec<EnvVar>,
    restart_policy: &str,
) -> PodTemplateSpec {
    let mut labels: BTreeMap<String, String> = v
        .labels
        .iter()
        .filter(|(k, _)| k.as_str() != "app.kubernetes.io/component")
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    labels.insert("app.kubernetes.io/component".into(), component.into());
    let mut mounts: Vec<VolumeMount> = volumes
        .iter()
        .map(|(volume, path)| VolumeMount {
            name: volume.name.clone(),
            mount_path: (*path).to_owned(),
            ..VolumeMount::default()
        })
        .collect();
    mounts.push(VolumeMount {
        name: "tmp".into(),
        mount_path: "/tmp".into(),
        ..VolumeMount::default()
    });
    let mut volumes: Vec<Volume> = volumes.into_iter().map(|(v, _)| v).collect();
    volumes.push(empty_dir("tmp"));
    PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(labels),
            annotations: (!v.annotations.is_empty()).then(|| v.annotations.clone()),
            ..ObjectMeta::default()
        }),
        spec: Some(PodSpec {
            restart_policy: Some(restart_policy.into()),
            service_account_name: Some(crate::names::workload(&v.name)),
            automount_service_account_token: Some(false),
            image_pull_secrets: pull_secrets(v),
            security_context: Some(pod_security_context()),
            containers: vec![Container {
                name: component.into(),
                image: Some(v.image.clone()),
                image_pull_policy: v.image_pull_policy.clone(),
                args: Some(args),
                env_from: Some(settings_env(v)),
                env: Some(
                    secret_env(v)
                        .into_iter()
                        .chain(serving_only_unset())
                        .chain(env)
                        .collect(),
                ),
                security_context: Some(container_security_context()),
                // The same binary as the serving pods, bounded alike: a
                // Job's pod without requests or limits could take a node's
                // memory.
                resources: v.resources.clone(),
                volume_mounts: Some(mounts),
                ..Container::default()
            }],
            volumes: Some(volumes),
            ..PodSpec::default()
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::test_support::validated;

    /// Every mounted file a Job's settings name is mounted in its pod: what the
    /// ConfigMap gives (`envFrom`) and `env` does not override.
    #[test]
    fn a_job_names_no_file_it_does_not_mount() {
        let v = validated(
            "  tls: {secretName: mail-tls}
  smtp: {host: smtp.example.com, port: 587, tls: starttls, from: noreply@example.com, dkim: {secretName: mail-dkim}}
",
        );
        // The serving pod has both files: the case this is about.
        assert!(v.settings[env::TLS_CERT_FILE].starts_with("/etc/securevault/"));
        assert!(v.settings[env::DKIM_KEYS_DIR].starts_with("/etc/securevault/"));
        let pod = template(
            &v,
            "backup",
            vec!["backup".into()],
            Vec::new(),
            Vec::new(),
            "Never",
        );
        let c = &pod.spec.unwrap().containers[0];
        let overridden: BTreeMap<&str, &str> = c
            .env
            .iter()
            .flatten()
            .map(|e| (e.name.as_str(), e.value.as_deref().unwrap_or("")))
            .collect();
        let mounts: Vec<&str> = c
            .volume_mounts
            .iter()
            .flatten()
            .map(|m| m.mount_path.as_str())
            .collect();
        for (name, value) in &v.settings {
            let effective = overridden.get(name.as_str()).copied().unwrap_or(value);
            // Files of Secrets and ConfigMaps; DATA_DIR is the data
            // plane's own to create.
            if effective.starts_with("/etc/") {
                assert!(
                    mounts.iter().any(|m| effective.starts_with(m)),
                    "{name}={effective} is not mounted in a Job's pod (mounts: {mounts:?})"
                );
            }
        }
        assert_eq!(overridden[env::TLS_CERT_FILE], "");
        assert_eq!(overridden[env::DKIM_ALLOW_UNSIGNED], "");
    }
}
