//! Names, labels and fixed values shared by the builders and the reconciler.
//! A leaf module: it imports nothing of the operator.

use std::collections::BTreeMap;

/// The field manager of every server-side apply; also the Event reporter.
pub const MANAGER: &str = "securevault-operator";

/// The field manager that holds a Deployment's replica count for the moment
/// autoscaling is switched on, until the autoscaler's first write takes it.
pub const REPLICAS_HANDOVER_MANAGER: &str = "securevault-operator-handover";

/// The port the data plane listens on inside the pod.
pub const HTTP_PORT: i32 = 8080;
/// The name of that port, used by the Service and the probes.
pub const HTTP_PORT_NAME: &str = "http";
/// The same port's name when it serves HTTPS (`spec.tls`).
pub const HTTPS_PORT_NAME: &str = "https";
/// The port of the data plane's metrics listener (`GET /metrics`, HTTPS
/// with `spec.tls`): Prometheus scrapes it; no Ingress routes it.
pub const METRICS_PORT: i32 = 9464;
/// Its name, on the pods and the Service.
pub const METRICS_PORT_NAME: &str = "metrics";
/// Where the TLS Secret is mounted in the pods: a directory, so that the
/// kubelet's atomic swap of a renewed Secret reaches the running process.
pub const TLS_DIR: &str = "/etc/securevault/tls";
/// Where the DKIM Secret is mounted in the pods (`DKIM_KEYS_DIR`): a
/// directory of its keys, one file per `<selector>._domainkey.<domain>`.
pub const DKIM_DIR: &str = "/etc/securevault/dkim";
/// The name of `spec.ai.baseUrl`'s server in `AI_UPSTREAMS`, when
/// `spec.ai.fallbacks` follow it (so no fallback may take it).
pub const AI_PRIMARY_UPSTREAM: &str = "primary";
/// Where the pods mount `spec.smtp.caSecretRef`'s key.
pub const SMTP_CA_DIR: &str = "/etc/securevault/smtp-ca";
/// The file in [`SMTP_CA_DIR`] that `SMTP_CA_FILE` names.
pub const SMTP_CA_FILE: &str = "/etc/securevault/smtp-ca/ca.crt";

/// Image used when `spec.image` is not set: `securevault/dataplane:<version>`.
pub const DEFAULT_IMAGE_REPOSITORY: &str = "securevault/dataplane";

/// Where the data plane keeps local state (the SQLite file) in the pod.
pub const DATA_DIR: &str = "/var/lib/securevault";

/// Pod annotation holding a digest of the rendered configuration: when the
/// configuration changes, so does the pod template, and the pods roll.
pub const CONFIG_CHECKSUM_ANNOTATION: &str = "securevault.io/config-checksum";

/// Key of the generated `SECRET_KEY` in its Secret.
pub const SECRET_KEY_KEY: &str = "secret-key";

/// The key of the generated administrator password in that Secret.
pub const ADMIN_PASSWORD_KEY: &str = "admin-password";

/// The Deployment, Service, ServiceAccount and PodDisruptionBudget share the
/// SecureVault's name.
pub fn workload(name: &str) -> String {
    name.to_owned()
}

/// The ConfigMap of non-secret settings.
pub fn config_map(name: &str) -> String {
    format!("{name}-config")
}

/// The PersistentVolumeClaim holding the embedded store.
pub fn data_claim(name: &str) -> String {
    format!("{name}-data")
}

/// The PersistentVolumeClaim the embedded store's backups go to when no
/// bucket is configured.
pub fn backup_claim(name: &str) -> String {
    format!("{name}-backups")
}

/// Annotation on a claim the operator keeps past its SecureVault
/// (`whenDeleted: Retain`), naming that SecureVault: such a claim carries no
/// owner reference (the garbage collector would delete it), and this is how
/// a SecureVault of that name recognises it as its own.
pub const RETAINED_FOR_ANNOTATION: &str = "securevault.io/retained-for";

/// The Secret holding the generated `SECRET_KEY`.
pub fn generated_secret(name: &str) -> String {
    format!("{name}-secret-key")
}

/// Labels that select the pods of one SecureVault; never change them, a
/// Deployment's selector is immutable.
pub fn selector_labels(name: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            "app.kubernetes.io/name".to_owned(),
            "securevault".to_owned(),
        ),
        ("app.kubernetes.io/instance".to_owned(), name.to_owned()),
        (
            "app.kubernetes.io/component".to_owned(),
            "dataplane".to_owned(),
        ),
    ])
}

/// The selector as a string, for the scale subresource.
pub fn selector_string(name: &str) -> String {
    selector_labels(name)
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}
