//! The Deployment running the data plane.
//!
//! The pod is built to pass the Pod Security Standards "restricted" profile:
//! non-root, read-only root filesystem (the store on its claim, /tmp on an
//! emptyDir),
//! every capability dropped, RuntimeDefault seccomp. A digest of the rendered
//! configuration sits in a pod annotation, so a configuration change rolls
//! the pods even though the ConfigMap is read only at start.

use std::collections::BTreeMap;

use k8s_openapi::{
    api::{
        apps::v1::{Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment},
        core::v1::{
            Affinity, Capabilities, ConfigMap, ConfigMapEnvSource, Container, ContainerPort,
            EmptyDirVolumeSource, EnvFromSource, EnvVar, EnvVarSource, HTTPGetAction, KeyToPath,
            LocalObjectReference, PersistentVolumeClaimVolumeSource, PodAffinityTerm,
            PodAntiAffinity, PodSecurityContext, PodSpec, PodTemplateSpec, Probe, SeccompProfile,
            SecretKeySelector, SecretVolumeSource, SecurityContext, Volume, VolumeMount,
            WeightedPodAffinityTerm,
        },
    },
    apimachinery::pkg::{
        apis::meta::v1::{LabelSelector, ObjectMeta},
        util::intstr::IntOrString,
    },
};
use sha2::{Digest, Sha256};

use super::backup_settings;
use crate::{names, validate::ValidatedVault};

/// The non-root user and group the data plane runs as (`nobody`).
const RUN_AS: i64 = 65534;

/// The data-plane Deployment; `config_map` is the rendered settings, hashed
/// into the pod template.
pub fn build(v: &ValidatedVault, config_map: &ConfigMap) -> Deployment {
    let mut pod_labels = v.labels.clone();
    pod_labels.insert("app.kubernetes.io/version".into(), v.version.clone());
    let mut pod_annotations = v.annotations.clone();
    pod_annotations.insert(
        names::CONFIG_CHECKSUM_ANNOTATION.into(),
        config_checksum(v, config_map),
    );

    Deployment {
        metadata: super::metadata(v, names::workload(&v.name)),
        spec: DeploymentSpec {
            // With autoscaling the count is the autoscaler's: applying
            // without the field leaves it to the HPA's writes.
            replicas: v.autoscaling.is_none().then_some(v.replicas),
            selector: LabelSelector {
                match_labels: Some(names::selector_labels(&v.name)),
                ..LabelSelector::default()
            },
            strategy: Some(strategy(v)),
            revision_history_limit: Some(5),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(pod_labels),
                    annotations: Some(pod_annotations),
                    ..ObjectMeta::default()
                }),
                spec: Some(pod_spec(v)),
            },
            ..DeploymentSpec::default()
        },
        ..Deployment::default()
    }
}

/// On an external database serving never stops during a rollout: a new
/// pod must be ready before an old one goes. On the embedded store the one
/// pod goes first: its claim is ReadWriteOnce (a second pod on another node
/// could not mount it, and a rolling update would wait for it forever), and
/// two processes must never write one SQLite file.
fn strategy(v: &ValidatedVault) -> DeploymentStrategy {
    if v.storage.is_some() {
        return DeploymentStrategy {
            type_: Some("Recreate".into()),
            rolling_update: None,
        };
    }
    DeploymentStrategy {
        type_: Some("RollingUpdate".into()),
        rolling_update: Some(RollingUpdateDeployment {
            max_unavailable: Some(IntOrString::Int(0)),
            max_surge: Some(IntOrString::Int(1)),
        }),
    }
}

/// The pods' `imagePullSecrets`: none unless the spec names some.
pub(crate) fn pull_secrets(v: &ValidatedVault) -> Option<Vec<LocalObjectReference>> {
    (!v.image_pull_secrets.is_empty()).then(|| v.image_pull_secrets.clone())
}

fn pod_spec(v: &ValidatedVault) -> PodSpec {
    let placement = &v.placement;
    PodSpec {
        service_account_name: Some(names::workload(&v.name)),
        automount_service_account_token: Some(false),
        image_pull_secrets: pull_secrets(v),
        security_context: Some(pod_security_context()),
        init_containers: restore_container(v).map(|c| vec![c]),
        containers: vec![container(v)],
        volumes: Some(volumes(v)),
        // The data plane drains for up to 25 s after SIGTERM; leave it 30.
        termination_grace_period_seconds: Some(30),
        node_selector: (!placement.node_selector.is_empty())
            .then(|| placement.node_selector.clone()),
        tolerations: (!placement.tolerations.is_empty()).then(|| placement.tolerations.clone()),
        priority_class_name: placement.priority_class_name.clone(),
        affinity: Some(
            placement
                .affinity
                .clone()
                .unwrap_or_else(|| spread_over_nodes(v)),
        ),
        ..PodSpec::default()
    }
}

/// Non-root, RuntimeDefault seccomp: the "restricted" profile's pod part.
pub(super) fn pod_security_context() -> PodSecurityContext {
    PodSecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(RUN_AS),
        run_as_group: Some(RUN_AS),
        fs_group: Some(RUN_AS),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".into(),
            ..SeccompProfile::default()
        }),
        ..PodSecurityContext::default()
    }
}

/// No privilege escalation, read-only root, no capabilities.
pub(super) fn container_security_context() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        read_only_root_filesystem: Some(true),
        run_as_non_root: Some(true),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".into()]),
            ..Capabilities::default()
        }),
        ..SecurityContext::default()
    }
}

/// The settings: the ConfigMap as the environment.
pub(super) fn settings_env(v: &ValidatedVault) -> Vec<EnvFromSource> {
    vec![EnvFromSource {
        config_map_ref: Some(ConfigMapEnvSource {
            name: names::config_map(&v.name),
            optional: Some(false),
        }),
        ..EnvFromSource::default()
    }]
}

/// The credentials: one variable per Secret key reference.
pub(super) fn secret_env(v: &ValidatedVault) -> Vec<EnvVar> {
    v.secret_env
        .iter()
        .map(|s| from_secret(&s.var, &s.secret, &s.key))
        .collect()
}

/// The variable `var` read from key `key` of Secret `secret`, which must
/// exist: the pod waits for it rather than starting without.
pub(super) fn from_secret(var: &str, secret: &str, key: &str) -> EnvVar {
    EnvVar {
        name: var.to_owned(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: secret.to_owned(),
                key: key.to_owned(),
                optional: Some(false),
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}

fn container(v: &ValidatedVault) -> Container {
    Container {
        name: "dataplane".into(),
        image: Some(v.image.clone()),
        image_pull_policy: v.image_pull_policy.clone(),
        args: Some(vec!["serve".into()]),
        ports: Some(vec![
            ContainerPort {
                name: Some(v.port_name().into()),
                container_port: names::HTTP_PORT,
                protocol: Some("TCP".into()),
                ..ContainerPort::default()
            },
            ContainerPort {
                name: Some(names::METRICS_PORT_NAME.into()),
                container_port: names::METRICS_PORT,
                protocol: Some("TCP".into()),
                ..ContainerPort::default()
            },
        ]),
        env_from: Some(settings_env(v)),
        env: Some(secret_env(v).into_iter().chain(own_backups(v)).collect()),
        // Liveness touches no dependency: a database outage must not restart
        // healthy pods. Readiness checks the store and its migrations.
        liveness_probe: Some(http_probe(v, "/api/health", 10, 3)),
        readiness_probe: Some(http_probe(v, "/api/health/ready", 5, 3)),
        startup_probe: Some(http_probe(v, "/api/health", 2, 30)),
        resources: v.resources.clone(),
        security_context: Some(container_security_context()),
        volume_mounts: Some(volume_mounts(v)),
        ..Container::default()
    }
}

/// The embedded store backs itself up, from its own pod (see
/// `backup_settings`); a PostgreSQL store's CronJob does it instead.
fn own_backups(v: &ValidatedVault) -> Vec<EnvVar> {
    match &v.backup {
        Some(b) if !v.external_database => backup_settings::env(b, true),
        _ => Vec::new(),
    }
}

/// With `spec.restoreFrom`: fills the store from the bucket before the data
/// plane starts, so it serves only once every row is back; a store that
/// already holds rows (the pod restarted) is left as it is.
fn restore_container(v: &ValidatedVault) -> Option<Container> {
    let restore = v.restore.as_ref()?;
    Some(Container {
        name: "restore".into(),
        image: Some(v.image.clone()),
        image_pull_policy: v.image_pull_policy.clone(),
        args: Some(vec![
            "restore".into(),
            restore.backup.clone(),
            "--if-empty".into(),
        ]),
        env_from: Some(settings_env(v)),
        env: Some(
            secret_env(v)
                .into_iter()
                .chain(backup_settings::bucket_env(&restore.bucket))
                .collect(),
        ),
        resources: v.resources.clone(),
        security_context: Some(container_security_context()),
        volume_mounts: Some(volume_mounts(v)),
        ..Container::default()
    })
}

fn volumes(v: &ValidatedVault) -> Vec<Volume> {
    let data = match &v.storage {
        Some(_) => Volume {
            name: "data".into(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: names::data_claim(&v.name),
                read_only: None,
            }),
            ..Volume::default()
        },
        None => empty_dir("data"),
    };
    let mut volumes = vec![data, empty_dir("tmp")];
    if let Some((backups, _)) = own_backup_claim(v) {
        volumes.push(backups);
    }
    if let Some(tls) = &v.tls {
        volumes.push(Volume {
            name: "tls".into(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(tls.secret_name.clone()),
                // Until cert-manager has issued it the pod waits, rather
                // than starting without a certificate.
                optional: Some(false),
                items: Some(vec![key_to_path("tls.crt"), key_to_path("tls.key")]),
                // Readable by the pod's group (fsGroup) only.
                default_mode: Some(0o440),
                ..SecretVolumeSource::default()
            }),
            ..Volume::default()
        });
    }
    volumes.extend(dkim_keys(v).map(|(volume, _)| volume));
    volumes.extend(smtp_ca(v).map(|(volume, _)| volume));
    volumes
}

/// With `spec.smtp.caSecretRef`: that key as the file `SMTP_CA_FILE`
/// names. Only the serving pods send mail, so only they mount it.
fn smtp_ca(v: &ValidatedVault) -> Option<(Volume, VolumeMount)> {
    let ca = v.smtp_ca.as_ref()?;
    let item = KeyToPath {
        key: ca.key.clone(),
        path: "ca.crt".into(),
        ..KeyToPath::default()
    };
    Some(secret_directory(
        "smtp-ca",
        &ca.name,
        Some(vec![item]),
        names::SMTP_CA_DIR,
    ))
}

/// With `spec.smtp.dkim`: its Secret, every key a file (their names are the
/// selectors, the user's choice), as the directory `DKIM_KEYS_DIR` names.
/// Only the data plane's pods mount it: the keys are read where mail is
/// sent (`serve`), and the Jobs (backup, migration) get along without, so
/// they neither hold the signing keys nor wait for them.
fn dkim_keys(v: &ValidatedVault) -> Option<(Volume, VolumeMount)> {
    let dkim = v.dkim.as_ref()?;
    Some(secret_directory(
        "dkim",
        &dkim.secret_name,
        None,
        names::DKIM_DIR,
    ))
}

/// A Secret (its `items`, or every key) as a read-only directory at `path`.
/// The pod waits for the Secret rather than starting without it; the files
/// are readable by the pod's group (fsGroup) only. The whole directory,
/// never a subPath: the kubelet then keeps the files in step with the
/// Secret, a key added or removed included.
fn secret_directory(
    name: &str,
    secret: &str,
    items: Option<Vec<KeyToPath>>,
    path: &str,
) -> (Volume, VolumeMount) {
    let volume = Volume {
        name: name.into(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(secret.to_owned()),
            optional: Some(false),
            items,
            default_mode: Some(0o440),
            ..SecretVolumeSource::default()
        }),
        ..Volume::default()
    };
    let mount = VolumeMount {
        name: name.into(),
        mount_path: path.into(),
        read_only: Some(true),
        ..VolumeMount::default()
    };
    (volume, mount)
}

/// The backup claim, when the embedded store backs itself up to one.
fn own_backup_claim(v: &ValidatedVault) -> Option<(Volume, VolumeMount)> {
    if v.external_database {
        return None;
    }
    backup_settings::volume(v.backup.as_ref()?)
}

fn key_to_path(key: &str) -> KeyToPath {
    KeyToPath {
        key: key.into(),
        path: key.into(),
        ..KeyToPath::default()
    }
}

fn volume_mounts(v: &ValidatedVault) -> Vec<VolumeMount> {
    let mut mounts = vec![
        VolumeMount {
            name: "data".into(),
            mount_path: names::DATA_DIR.into(),
            ..VolumeMount::default()
        },
        VolumeMount {
            name: "tmp".into(),
            mount_path: "/tmp".into(),
            ..VolumeMount::default()
        },
    ];
    if let Some((_, backups)) = own_backup_claim(v) {
        mounts.push(backups);
    }
    if v.tls.is_some() {
        // The whole directory, never a subPath: a subPath mount is not
        // updated when the Secret changes, and renewal would go unseen.
        mounts.push(VolumeMount {
            name: "tls".into(),
            mount_path: names::TLS_DIR.into(),
            read_only: Some(true),
            ..VolumeMount::default()
        });
    }
    mounts.extend(dkim_keys(v).map(|(_, mount)| mount));
    mounts.extend(smtp_ca(v).map(|(_, mount)| mount));
    mounts
}

/// Over HTTPS with `spec.tls`; the kubelet does not verify the certificate
/// (no Kubernetes probe does), so a probe fails only when the pod does.
fn http_probe(
    v: &ValidatedVault,
    path: &str,
    period_seconds: i32,
    failure_threshold: i32,
) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::String(v.port_name().into()),
            scheme: Some(v.scheme().into()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period_seconds),
        timeout_seconds: Some(2),
        failure_threshold: Some(failure_threshold),
        ..Probe::default()
    }
}

pub(super) fn empty_dir(name: &str) -> Volume {
    Volume {
        name: name.into(),
        empty_dir: Some(EmptyDirVolumeSource::default()),
        ..Volume::default()
    }
}

/// By default the pods prefer distinct nodes, so one node going down takes
/// one replica at most.
fn spread_over_nodes(v: &ValidatedVault) -> Affinity {
    Affinity {
        pod_anti_affinity: Some(PodAntiAffinity {
            preferred_during_scheduling_ignored_during_execution: Some(vec![
                WeightedPodAffinityTerm {
                    weight: 100,
                    pod_affinity_term: PodAffinityTerm {
                        topology_key: "kubernetes.io/hostname".into(),
                        label_selector: Some(LabelSelector {
                            match_labels: Some(names::selector_labels(&v.name)),
                            ..LabelSelector::default()
                        }),
                        ..PodAffinityTerm::default()
                    },
                },
            ]),
            ..PodAntiAffinity::default()
        }),
        ..Affinity::default()
    }
}

/// SHA-256 over the rendered settings and the secret references (which
/// Secret and key each variable comes from), in a stable order.
fn config_checksum(v: &ValidatedVault, config_map: &ConfigMap) -> String {
    let mut hasher = Sha256::new();
    let empty = BTreeMap::new();
    for (k, val) in config_map.data.as_ref().unwrap_or(&empty) {
        hasher.update(k.as_bytes());
        hasher.update(b"=");
        hasher.update(val.as_bytes());
        hasher.update(b"\n");
    }
    for s in &v.secret_env {
        hasher.update(format!("{}<-{}/{}\n", s.var, s.secret, s.key).as_bytes());
    }
    hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        build::config_map,
        validate::{test_support::*, validate},
    };

    fn deployment(v: &ValidatedVault) -> Deployment {
        build(v, &config_map::build(v))
    }

    fn pod(d: &Deployment) -> PodSpec {
        d.spec.clone().template.spec.unwrap()
    }

    fn volume(d: &Deployment, name: &str) -> Volume {
        pod(d)
            .volumes
            .unwrap()
            .into_iter()
            .find(|v| v.name == name)
            .unwrap()
    }

    fn checksum(d: &Deployment) -> String {
        d.spec
            .clone()
            .template
            .metadata
            .unwrap()
            .annotations
            .unwrap()[names::CONFIG_CHECKSUM_ANNOTATION]
            .clone()
    }

    #[test]
    fn pull_secrets_reach_the_pods_only_when_the_spec_names_some() {
        assert_eq!(pod(&deployment(&minimal())).image_pull_secrets, None);
        let v = crate::validate::test_support::validated("  imagePullSecrets: [{name: mirror}]\n");
        let secrets = pod(&deployment(&v)).image_pull_secrets.unwrap();
        assert_eq!(secrets[0].name, "mirror");
    }

    #[test]
    fn the_pod_passes_the_restricted_pod_security_profile() {
        let d = deployment(&minimal());
        let pod = pod(&d);
        let psc = pod.security_context.unwrap();
        assert_eq!(psc.run_as_non_root, Some(true));
        assert_eq!(psc.seccomp_profile.unwrap().type_, "RuntimeDefault");
        let c = &pod.containers[0];
        let sc = c.security_context.clone().unwrap();
        assert_eq!(sc.allow_privilege_escalation, Some(false));
        assert_eq!(sc.read_only_root_filesystem, Some(true));
        assert_eq!(sc.capabilities.unwrap().drop.unwrap(), ["ALL"]);
        // A read-only root needs writable places for state and temp files.
        let mounts: Vec<_> = c
            .volume_mounts
            .clone()
            .unwrap()
            .into_iter()
            .map(|m| m.mount_path)
            .collect();
        // And the claim its backups go to.
        assert_eq!(mounts, [names::DATA_DIR, "/tmp", "/backups"]);
    }

    #[test]
    fn the_embedded_store_backs_itself_up_and_a_postgres_one_does_not() {
        let d = deployment(&minimal());
        let env = pod(&d).containers[0].env.clone().unwrap();
        assert!(env.iter().any(|e| e.name == "BACKUP_DIR"));
        assert!(env.iter().any(|e| e.name == "BACKUP_INTERVAL_SECS"));
        let pg = validated(
            "  database: {urlSecretRef: {name: db, key: url}}
  backup: {volumeClaimName: mail-backups}
",
        );
        let pod = pod(&deployment(&pg));
        let env = pod.containers[0].env.clone().unwrap();
        assert!(env.iter().all(|e| !e.name.starts_with("BACKUP_")));
        assert!(pod.volumes.unwrap().iter().all(|v| v.name != "backups"));
    }

    #[test]
    fn restoring_runs_before_serving_with_the_old_vaults_folder() {
        let v = validated(
            "  restoreFrom: {secureVault: old-mail}
  backup:
    s3: {bucket: backups, endpoint: 'http://s3.storage:8333'}
",
        );
        let pod = pod(&deployment(&v));
        let init = &pod.init_containers.unwrap()[0];
        assert_eq!(
            init.args.as_deref().unwrap(),
            ["restore", "latest", "--if-empty"]
        );
        let env = init.env.clone().unwrap();
        let prefix = env.iter().find(|e| e.name == "BACKUP_S3_PREFIX").unwrap();
        assert_eq!(prefix.value.as_deref(), Some("team-a/old-mail/"));
        // It writes into the store the data plane then serves.
        assert_eq!(init.volume_mounts, pod.containers[0].volume_mounts);
        // The serving container backs up into this vault's own folder.
        let env = pod.containers[0].env.clone().unwrap();
        let prefix = env.iter().find(|e| e.name == "BACKUP_S3_PREFIX").unwrap();
        assert_eq!(prefix.value.as_deref(), Some("team-a/mail/"));
    }

    #[test]
    fn the_embedded_store_is_on_its_claim_and_its_one_pod_goes_before_the_next() {
        let d = deployment(&minimal());
        let strategy = d.spec.clone().strategy.unwrap();
        assert_eq!(strategy.type_.as_deref(), Some("Recreate"));
        assert_eq!(strategy.rolling_update, None);
        let data = volume(&d, "data");
        assert_eq!(
            data.persistent_volume_claim.unwrap().claim_name,
            "mail-data"
        );
        assert!(data.empty_dir.is_none());
    }

    #[test]
    fn on_an_external_database_it_rolls_one_new_pod_in_before_an_old_one_goes() {
        let v = validate(&vault(COMPLETE)).unwrap();
        let d = deployment(&v);
        let strategy = d.spec.clone().strategy.unwrap();
        assert_eq!(strategy.type_.as_deref(), Some("RollingUpdate"));
        let rolling = strategy.rolling_update.unwrap();
        assert_eq!(rolling.max_unavailable, Some(IntOrString::Int(0)));
        let data = volume(&d, "data");
        assert!(data.empty_dir.is_some(), "no claim beside a database");
    }

    #[test]
    fn probes_use_the_health_routes() {
        let pod = pod(&deployment(&minimal()));
        let c = &pod.containers[0];
        let path = |p: &Option<Probe>| p.clone().unwrap().http_get.unwrap().path.unwrap();
        assert_eq!(path(&c.liveness_probe), "/api/health");
        assert_eq!(path(&c.readiness_probe), "/api/health/ready");
    }

    #[test]
    fn with_tls_the_secret_is_mounted_as_a_directory_and_probes_speak_https() {
        let v = validated("  tls: {secretName: mail-tls}\n");
        let pod = pod(&deployment(&v));
        let c = &pod.containers[0];
        for probe in [&c.liveness_probe, &c.readiness_probe, &c.startup_probe] {
            let get = probe.clone().unwrap().http_get.unwrap();
            assert_eq!(get.scheme.as_deref(), Some("HTTPS"));
            assert_eq!(get.port, IntOrString::String("https".into()));
        }
        assert_eq!(c.ports.clone().unwrap()[0].name.as_deref(), Some("https"));
        let mount = c
            .volume_mounts
            .clone()
            .unwrap()
            .into_iter()
            .find(|m| m.name == "tls")
            .unwrap();
        assert_eq!(mount.mount_path, names::TLS_DIR);
        assert_eq!(mount.sub_path, None, "a subPath never sees a renewal");
        let volume = pod
            .volumes
            .unwrap()
            .into_iter()
            .find(|v| v.name == "tls")
            .unwrap()
            .secret
            .unwrap();
        assert_eq!(volume.secret_name.as_deref(), Some("mail-tls"));
        assert_eq!(v.settings["TLS_CERT_FILE"], "/etc/securevault/tls/tls.crt");
        assert_eq!(v.settings["TLS_KEY_FILE"], "/etc/securevault/tls/tls.key");
    }

    #[test]
    fn with_dkim_its_secret_is_mounted_read_only_where_the_settings_point() {
        let v = validated(
            "  smtp: {host: smtp.example.com, port: 587, tls: starttls, from: noreply@example.com, dkim: {secretName: mail-dkim}}
  restoreFrom: {}
  backup: {s3: {bucket: backups}}
",
        );
        let d = deployment(&v);
        let secret = volume(&d, "dkim").secret.unwrap();
        assert_eq!(secret.secret_name.as_deref(), Some("mail-dkim"));
        assert_eq!(secret.optional, Some(false));
        assert_eq!(secret.items, None, "every key, whatever its selector");
        assert_eq!(secret.default_mode, Some(0o440));
        let pod = pod(&d);
        // The restore container reads the same settings.
        for c in pod
            .containers
            .iter()
            .chain(pod.init_containers.iter().flatten())
        {
            let mount = c
                .volume_mounts
                .iter()
                .flatten()
                .find(|m| m.name == "dkim")
                .unwrap();
            assert_eq!(mount.mount_path, "/etc/securevault/dkim");
            assert_eq!(mount.read_only, Some(true));
            assert_eq!(mount.sub_path, None, "a subPath never sees a new key");
        }
        let settings = config_map::build(&v).data.unwrap();
        assert_eq!(settings["DKIM_KEYS_DIR"], "/etc/securevault/dkim");
        assert_eq!(settings["DKIM_ALLOW_UNSIGNED"], "false");
    }

    #[test]
    fn a_relay_ca_is_mounted_as_the_file_smtp_ca_file_names() {
        let v = validated(
            "  smtp: {host: smtp.internal, port: 465, tls: tls, from: noreply@example.com, caSecretRef: {name: relay-ca, key: root.pem}}\n",
        );
        let d = deployment(&v);
        let secret = volume(&d, "smtp-ca").secret.unwrap();
        assert_eq!(secret.secret_name.as_deref(), Some("relay-ca"));
        assert_eq!(secret.optional, Some(false));
        let items = secret.items.unwrap();
        assert_eq!(
            (items[0].key.as_str(), items[0].path.as_str()),
            ("root.pem", "ca.crt")
        );
        let mounts = pod(&d).containers[0].volume_mounts.clone().unwrap();
        let mount = mounts.iter().find(|m| m.name == "smtp-ca").unwrap();
        let settings = config_map::build(&v).data.unwrap();
        assert_eq!(
            settings["SMTP_CA_FILE"],
            format!("{}/{}", mount.mount_path, items[0].path)
        );
        assert_eq!(mount.read_only, Some(true));
        assert!(v.referenced_secrets().contains(&"relay-ca".to_owned()));

        let without = validated(
            "  smtp: {host: smtp.example.com, port: 587, tls: starttls, from: noreply@example.com}\n",
        );
        let pod = pod(&deployment(&without));
        assert!(pod.volumes.unwrap().iter().all(|v| v.name != "smtp-ca"));
        assert!(
            !config_map::build(&without)
                .data
                .unwrap()
                .contains_key("SMTP_CA_FILE")
        );
    }

    #[test]
    fn without_dkim_there_is_neither_volume_nor_setting() {
        let v = validated(
            "  smtp: {host: smtp.example.com, port: 587, tls: starttls, from: noreply@example.com}\n",
        );
        let d = deployment(&v);
        let pod = pod(&d);
        assert!(pod.volumes.unwrap().iter().all(|v| v.name != "dkim"));
        let mounts = pod.containers[0].volume_mounts.clone().unwrap();
        assert!(mounts.iter().all(|m| m.name != "dkim"));
        let settings = config_map::build(&v).data.unwrap();
        assert!(!settings.keys().any(|k| k.starts_with("DKIM_")));
    }

    #[test]
    fn secrets_come_by_reference_and_settings_from_the_config_map() {
        let v = validate(&vault(COMPLETE)).unwrap();
        let c = pod(&deployment(&v)).containers[0].clone();
        assert_eq!(
            c.image.as_deref(),
            Some("registry.example.com/securevault/dataplane:0.2.0")
        );
        let db = c
            .env
            .unwrap()
            .into_iter()
            .find(|e| e.name == "DATABASE_URL")
            .unwrap();
        assert!(db.value.is_none());
        let r = db.value_from.unwrap().secret_key_ref.unwrap();
        assert_eq!((r.name.as_str(), r.key.as_str()), ("mail-db", "url"));
        assert_eq!(
            c.env_from.unwrap()[0].config_map_ref.clone().unwrap().name,
            "mail-config"
        );
    }

    #[test]
    fn a_configuration_change_changes_the_pod_template() {
        let v = minimal();
        let before = checksum(&deployment(&v));
        assert_eq!(
            before,
            checksum(&deployment(&v)),
            "stable for the same input"
        );
        let mut changed = v.clone();
        changed.settings.insert("LOG_LEVEL".into(), "debug".into());
        assert_ne!(before, checksum(&deployment(&changed)));
    }

    #[test]
    fn spec_fields_reach_the_pod() {
        let v = validate(&vault(COMPLETE)).unwrap();
        let d = deployment(&v);
        let spec = d.spec.clone();
        assert_eq!(spec.replicas, Some(3));
        assert_eq!(
            spec.strategy
                .unwrap()
                .rolling_update
                .unwrap()
                .max_unavailable,
            Some(IntOrString::Int(0))
        );
        let pod = pod(&d);
        assert_eq!(pod.node_selector.unwrap()["disk"], "ssd");
        assert_eq!(
            pod.tolerations.unwrap()[0].key.as_deref(),
            Some("dedicated")
        );
        assert_eq!(pod.priority_class_name.as_deref(), Some("high"));
        let labels = spec.template.metadata.unwrap().labels.unwrap();
        assert_eq!(labels["team"], "a");
        assert_eq!(labels["app.kubernetes.io/version"], "0.2.0");
        let limits = pod.containers[0].resources.clone().unwrap().limits.unwrap();
        assert_eq!(limits["memory"].0, "256Mi");
    }
}
