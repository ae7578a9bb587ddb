//! What a user declares: `spec` of a `SecureVault`.
//!
//! Credentials are only ever referenced (a Secret's name and key), never
//! inline: the spec is readable by anyone who can list SecureVaults, and it
//! ends up in git with GitOps.
//!
//! Validation lives in the schema where the API server can enforce it:
//! ranges, enums and patterns on fields, and CEL rules
//! (`x-kubernetes-validations`) across fields. Each rule's message says what
//! to change.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Affinity, ResourceRequirements, Toleration};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::SecureVaultStatus;

/// A SecureVault: a fleet of data-plane pods sending transactional email and
/// generating text, with its configuration and credentials.
// Each printcolumn repeats `type_`; clippy takes them for duplicates.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "securevault.io",
    version = "v1alpha1",
    kind = "SecureVault",
    plural = "securevaults",
    shortname = "sv",
    namespaced,
    status = "SecureVaultStatus",
    derive = "PartialEq",
    doc = "A SecureVault runs the data plane (transactional email and AI text generation) with its configuration and credentials by reference.",
    scale(
        spec_replicas_path = ".spec.replicas",
        status_replicas_path = ".status.replicas",
        label_selector_path = ".status.selector"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(name = "Version", type_ = "string", json_path = ".status.version"),
    printcolumn(
        name = "Upgrade",
        type_ = "string",
        json_path = ".status.upgrade.phase"
    ),
    printcolumn(
        name = "Replicas",
        type_ = "string",
        json_path = ".status.replicasSummary"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(validation = Rule::new("self.replicas <= 1 || has(self.database)").message("spec.replicas above 1 needs spec.database.urlSecretRef (PostgreSQL): the default SQLite store serves a single replica"))]
#[x_kube(validation = Rule::new("!has(self.autoscaling) || self.autoscaling.maxReplicas <= 1 || has(self.database)").message("spec.autoscaling.maxReplicas above 1 needs spec.database.urlSecretRef (PostgreSQL): the default SQLite store serves a single replica"))]
#[x_kube(validation = Rule::new("!has(self.backup) || !has(self.database) || has(self.backup.s3) || has(self.backup.volumeClaimName)").message("spec.backup on PostgreSQL needs spec.backup.s3 or spec.backup.volumeClaimName: where the backup CronJob writes"))]
#[x_kube(validation = Rule::new("!has(self.backup) || !has(self.backup.schedule) || has(self.database)").message("spec.backup.schedule is the CronJob of PostgreSQL vaults; the embedded store backs itself up every spec.backup.intervalSeconds"))]
#[x_kube(validation = Rule::new("!has(self.backup) || !has(self.backup.intervalSeconds) || !has(self.database)").message("spec.backup.intervalSeconds is for the embedded store; PostgreSQL vaults back up on spec.backup.schedule"))]
#[x_kube(validation = Rule::new("!has(self.restoreFrom) || has(self.restoreFrom.s3) || (has(self.backup) && has(self.backup.s3))").message("spec.restoreFrom needs a bucket: spec.restoreFrom.s3, or spec.backup.s3"))]
#[x_kube(validation = Rule::new("!has(self.secretKeyPreviousRef) || !has(self.secretKeyRef) || self.secretKeyPreviousRef.name != self.secretKeyRef.name || self.secretKeyPreviousRef.key != self.secretKeyRef.key").message("spec.secretKeyPreviousRef names the same Secret key as spec.secretKeyRef: during a rotation secretKeyRef names the new key and secretKeyPreviousRef the old one; once reencrypt has run, remove secretKeyPreviousRef"))]
#[serde(rename_all = "camelCase")]
pub struct SecureVaultSpec {
    /// Version of the data plane to run, e.g. `0.1.0`; the image tag unless
    /// `image` is set. Changing it rolls the pods to the new version.
    #[x_kube(validation = Rule::new("self.matches('^v?[0-9]+\\\\.[0-9]+\\\\.[0-9]+(-[0-9A-Za-z.-]+)?$')").message("spec.version must be a release such as 0.1.0 or 0.2.0-rc.1"))]
    pub version: String,

    /// Allows `version` to go below the version running now. Without it
    /// such a change is refused (the running version stays, `Degraded`
    /// says why): the store may already be migrated past what the older
    /// version knows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_downgrade: Option<bool>,

    /// Full image reference overriding the default `<repository>:<version>`
    /// (the repository is `securevault/dataplane` unless the operator's
    /// `DATAPLANE_IMAGE_REPOSITORY` says otherwise), e.g. for a private
    /// registry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512))]
    pub image: Option<String>,

    /// When the kubelet pulls the image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<ImagePullPolicy>,

    /// Secrets in this namespace (type `kubernetes.io/dockerconfigjson`)
    /// that the kubelet pulls the image with, from a registry that asks for
    /// credentials; set on the data-plane pods and the operator's Jobs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 16))]
    pub image_pull_secrets: Option<Vec<PullSecretRef>>,

    /// Number of data-plane pods. Above 1 requires an external database.
    #[schemars(range(min = 0, max = 100))]
    pub replicas: i32,

    /// CPU and memory requests and limits of the data-plane container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,

    /// Log level of the data plane (`error`, `warn`, `info`, `debug`, `trace`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_level: Option<LogLevel>,

    /// The data plane's `SECRET_KEY` (at least 32 characters): it seals
    /// emails and prompts at rest, so losing it loses them, and a store
    /// opens only with the key that sealed it. When absent, the operator
    /// generates one once, in the Secret `<name>-secret-key` (key
    /// `secret-key`), and never rotates it; rotate by pointing this at a new
    /// key with `secretKeyPreviousRef` naming the old one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_key_ref: Option<SecretKeyRef>,

    /// The `SECRET_KEY` before a rotation, given to the pods as
    /// `SECRET_KEY_PREVIOUS`: new values are sealed with `secretKeyRef`'s
    /// key while what this one sealed still opens. Once every pod runs so,
    /// the data plane's `reencrypt`, run in one pod, seals every row again
    /// under the new key; then remove this field. The operator's generated
    /// key is `<name>-secret-key`, key `secret-key`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_key_previous_ref: Option<SecretKeyRef>,

    /// Password of the data plane's first administrator (`admin`). When
    /// absent, the operator generates one once, in the same Secret as the
    /// generated key (`<name>-secret-key`, key `admin-password`). Changing
    /// the referenced value changes the password when the pods next start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_password_secret_ref: Option<SecretKeyRef>,

    /// The SQL store. Absent: SQLite in the pod (one replica only), on the
    /// PersistentVolumeClaim of `storage`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<DatabaseSpec>,

    /// The PersistentVolumeClaim holding the embedded SQLite store (without
    /// `database`): it outlives the pod, and by default the SecureVault too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<StorageSpec>,

    /// Redis for a cache shared by every replica. Absent: an in-process cache.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redis: Option<RedisSpec>,

    /// The SMTP relay that delivers email.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub smtp: Option<SmtpSpec>,

    /// The OpenAI-compatible model server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ai: Option<AiSpec>,

    /// Where notifications (email sent or failed, system errors) are posted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<WebhookSpec>,

    /// Sessions and login protection of the data plane's API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<AuthSpec>,

    /// HTTPS: the pods serve the certificate of a `kubernetes.io/tls`
    /// Secret (TLS 1.2 and 1.3 only) and pick up a renewed one without a
    /// restart; probes, Service and ServiceMonitor switch to HTTPS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsSpec>,

    /// An Ingress (networking.k8s.io/v1) in front of the Service, with TLS
    /// from `spec.tls` when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress: Option<IngressSpec>,

    /// Per-caller request budgets, shared by every replica through
    /// `spec.redis` (per pod without it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limits: Option<RateLimitsSpec>,

    /// Prometheus Operator objects for this instance (ServiceMonitor,
    /// PrometheusRule) [default: enabled].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monitoring: Option<MonitoringSpec>,

    /// A HorizontalPodAutoscaler for the data plane; while it is set the
    /// operator leaves the replica count to it (and ignores `replicas`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaling: Option<AutoscalingSpec>,

    /// A NetworkPolicy around the pods: ingress to the HTTP port only from
    /// the namespaces named here and the monitoring namespace; egress only
    /// to DNS and the ports of the dependencies the spec configures.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_policy: Option<NetworkPolicySpec>,

    /// Scheduled backups of the store. The embedded store is always backed
    /// up, by the data plane itself: hourly, to an S3-compatible bucket
    /// with `s3`, else to a second claim, `<name>-backups`. A PostgreSQL
    /// store is backed up by a CronJob when this is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<BackupSpec>,

    /// Fill a new store from a backup in a bucket before the data plane
    /// serves (an init container restores it; a store that already holds
    /// rows is never touched, so a restart does not roll it back).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_from: Option<RestoreSpec>,

    /// How long the data plane keeps what it stores; each kind left out is
    /// kept forever, the default, so that nothing already stored disappears
    /// on an upgrade. The data plane deletes what has aged past its limit
    /// by itself, hourly. Backups taken before still hold the deleted rows
    /// until the backups themselves are pruned (`spec.backup.retain`), and
    /// the totals of `/api/stats` count only what is kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<RetentionSpec>,

    /// How a change of `version` (or `image`) is rolled out: a backup
    /// first (with `backup`), the migration Job (with `database`), the
    /// rolling update, a verification period, and an automatic rollback if
    /// the new version fails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upgrade: Option<UpgradeSpec>,

    /// Where the pods run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement: Option<Placement>,

    /// Labels added to every object the operator creates, pods included.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,

    /// Annotations added to every object the operator creates, pods included.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// A Secret in the SecureVault's namespace holding registry credentials
/// (type `kubernetes.io/dockerconfigjson`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
pub struct PullSecretRef {
    /// The Secret's name.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// A key of a Secret in the SecureVault's namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
pub struct SecretKeyRef {
    /// The Secret's name.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// The key inside the Secret.
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

/// The SQL store.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct DatabaseSpec {
    /// Secret key holding a `postgres://USER:PASSWORD@HOST:PORT/DB` URL.
    pub url_secret_ref: SecretKeyRef,
}

/// Redis.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct RedisSpec {
    /// Secret key holding a `redis://…` or `rediss://…` URL.
    pub url_secret_ref: SecretKeyRef,
}

/// SMTP transport security.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
#[schemars(transform = super::described_by_its_field)]
pub enum SmtpTls {
    /// Plain connection upgraded with STARTTLS (required).
    Starttls,
    /// TLS from the first byte (SMTPS, usually port 465).
    Tls,
    /// No encryption: only for a relay on a trusted network.
    None,
}

/// The SMTP relay.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct SmtpSpec {
    /// Host name or IP address of the relay.
    #[schemars(length(min = 1, max = 253))]
    pub host: String,
    /// Port of the relay (587 for STARTTLS, 465 for TLS).
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,
    /// Transport security.
    pub tls: SmtpTls,
    /// Sender address of outgoing email.
    #[x_kube(validation = Rule::new("self.contains('@')").message("spec.smtp.from must be an email address, e.g. noreply@example.com"))]
    pub from: String,
    /// Secret holding the user name and password, when the relay wants them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret_ref: Option<SmtpCredentialsRef>,
    /// A key of a Secret holding PEM certificates that the relay's TLS
    /// certificate may chain to, besides the public roots: a relay with a
    /// private CA (e.g. `{name: relay-ca, key: ca.crt}`). The pods mount it
    /// and wait for it to exist.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_secret_ref: Option<SecretKeyRef>,
    /// DKIM signatures on outgoing email, with private keys from a Secret,
    /// so receivers can tell the mail of `from`'s domain from forgeries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dkim: Option<DkimSpec>,
}

/// DKIM signing: every key of the domain of `spec.smtp.from` signs each
/// message.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct DkimSpec {
    /// A Secret in the SecureVault's namespace holding the private keys, in
    /// PEM (RSA of 2048 to 4096 bits, PKCS#1 or PKCS#8, or Ed25519,
    /// PKCS#8), each under a key named after the DNS TXT record of its
    /// public key: `<selector>._domainkey.<domain>`, e.g.
    /// `sv2026._domainkey.example.com`. Every key of the domain of
    /// `spec.smtp.from` signs each message, so a rotation adds the new
    /// selector's key, publishes its record, and later removes the old key.
    /// The pods mount it, and wait for it to exist.
    #[x_kube(validation = Rule::new("self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$')").message("spec.smtp.dkim.secretName must be a Secret's name: lower-case letters, digits, '-' and '.', such as mail-dkim"))]
    #[schemars(length(min = 1, max = 253))]
    pub secret_name: String,
    /// Whether email may go out unsigned when the Secret holds no key for
    /// the domain of `spec.smtp.from` [default: false]. When false, the
    /// data plane refuses to start without such a key, and `Degraded` names
    /// the key to add.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_unsigned: Option<bool>,
}

/// A Secret with SMTP credentials.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct SmtpCredentialsRef {
    /// The Secret's name.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Key of the user name [default: `username`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username_key: Option<String>,
    /// Key of the password [default: `password`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_key: Option<String>,
}

/// The OpenAI-compatible model server, and those to fall back on.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.fallbacks) || self.fallbacks.all(f, !has(f.models) || (has(self.models) && f.models.all(m, m in self.models)))").message("spec.ai.fallbacks[].models must be listed in spec.ai.models too: a request may name only the models there"))]
pub struct AiSpec {
    /// Base URL, e.g. `https://api.openai.com/v1` or a local llama.cpp server.
    #[x_kube(validation = Rule::new("self.startsWith('http://') || self.startsWith('https://')").message("spec.ai.baseUrl must start with http:// or https://"))]
    pub base_url: String,
    /// Secret key holding the API key, when the server wants one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_secret_ref: Option<SecretKeyRef>,
    /// The models a request may name, the first being the default for a
    /// request that names none [default: the data plane's, `gpt-4o-mini`].
    /// `baseUrl`'s server is asked for any of them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 32),
        inner(regex(pattern = r"^[A-Za-z0-9._:/@-]{1,128}$"))
    )]
    pub models: Option<Vec<String>>,
    /// Servers tried in this order after `baseUrl` (named `primary` among
    /// them) when it fails: a connection error, a 5xx, a 429 or its
    /// timeout, within the request's one deadline and never once a stream
    /// has started. A server that keeps failing is skipped for a cool-down.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self.all(f, self.exists_one(g, g.name == f.name))").message("spec.ai.fallbacks: each name must be used once"))]
    #[schemars(length(max = 8))]
    pub fallbacks: Option<Vec<AiFallbackSpec>>,
    /// Tokens (prompt and completion) each API key and each account may use
    /// per UTC day and month; a request that could pass one answers 429
    /// `token_budget_exceeded`. Shared by the replicas through Redis
    /// (`spec.redis`); without it each pod counts on its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budgets: Option<AiBudgetsSpec>,
}

/// Token budgets; an unset field is no budget.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AiBudgetsSpec {
    /// Per API key and UTC day.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1_000_000_000_000_i64))]
    pub key_daily_tokens: Option<i64>,
    /// Per API key and UTC month.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1_000_000_000_000_i64))]
    pub key_monthly_tokens: Option<i64>,
    /// Per account (its sessions and every key acting for it) and UTC day.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1_000_000_000_000_i64))]
    pub account_daily_tokens: Option<i64>,
    /// Per account and UTC month.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1_000_000_000_000_i64))]
    pub account_monthly_tokens: Option<i64>,
}

/// One more model server.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct AiFallbackSpec {
    /// Its name in metrics and the health report: lower-case letters,
    /// digits and `-`, not `primary` (`baseUrl`'s).
    #[x_kube(validation = Rule::new("self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$') && self != 'primary'").message("spec.ai.fallbacks[].name must be lower-case letters, digits and '-' (such as backup), and not primary, which names spec.ai.baseUrl"))]
    #[schemars(length(min = 1, max = 32))]
    pub name: String,
    /// Base URL, e.g. `https://api.openai.com/v1`.
    #[x_kube(validation = Rule::new("self.startsWith('http://') || self.startsWith('https://')").message("spec.ai.fallbacks[].baseUrl must start with http:// or https://"))]
    pub base_url: String,
    /// Secret key holding its API key, when it wants one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_secret_ref: Option<SecretKeyRef>,
    /// The models it serves, among `spec.ai.models`; a request for another
    /// skips it [default: all].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 32),
        inner(regex(pattern = r"^[A-Za-z0-9._:/@-]{1,128}$"))
    )]
    pub models: Option<Vec<String>>,
    /// Seconds one attempt on it may take [default: the request's whole
    /// deadline].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 600))]
    pub timeout_seconds: Option<i32>,
}

/// The body of a notification.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
#[schemars(transform = super::described_by_its_field)]
pub enum WebhookFormat {
    /// Standard Webhooks JSON, signed with `signingSecretRef`.
    Standard,
    /// A Slack incoming-webhook message.
    Slack,
}

/// Notifications (`email.sent`, `email.failed`, `system.error`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("(has(self.format) && self.format == 'slack') || has(self.signingSecretRef)").message("spec.webhook.signingSecretRef is required unless spec.webhook.format is slack: Standard Webhooks are signed (a Secret key holding whsec_ followed by base64 of 32 random bytes)"))]
pub struct WebhookSpec {
    /// Secret key holding the webhook URL (it often embeds a token, as Slack's do).
    pub url_secret_ref: SecretKeyRef,
    /// Body format: `standard` (Standard Webhooks JSON, signed with
    /// `signingSecretRef`) or `slack` (a Slack incoming-webhook message)
    /// [default: `standard`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<WebhookFormat>,
    /// Secret key holding the Standard Webhooks signing secret (`whsec_…`),
    /// which receivers verify signatures with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_secret_ref: Option<SecretKeyRef>,
}

/// HTTPS for the data plane.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct TlsSpec {
    /// The `kubernetes.io/tls` Secret (keys `tls.crt` and `tls.key`, and
    /// `ca.crt` for Prometheus to verify the pods) in the SecureVault's
    /// namespace. With `issuerRef`, cert-manager writes and renews it.
    #[schemars(length(min = 1, max = 253))]
    pub secret_name: String,
    /// A cert-manager issuer: the operator creates a cert-manager
    /// `Certificate` for `secretName`, and cert-manager issues and renews it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer_ref: Option<IssuerRef>,
    /// DNS names of that Certificate [default: the Service's in-cluster
    /// names, and `spec.ingress.host`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32), inner(length(min = 1, max = 253)))]
    pub dns_names: Vec<String>,
}

/// A cert-manager `Issuer` or `ClusterIssuer`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct IssuerRef {
    /// Its name.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// `Issuer` (in the SecureVault's namespace) or `ClusterIssuer`
    /// [default: `Issuer`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<IssuerKind>,
    /// API group of the issuer [default: `cert-manager.io`]; another group
    /// for an external issuer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub group: Option<String>,
}

/// Which kind of issuer.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[schemars(transform = super::described_by_its_field)]
pub enum IssuerKind {
    /// An issuer in the SecureVault's namespace.
    Issuer,
    /// A cluster-wide issuer.
    ClusterIssuer,
}

/// The Ingress in front of the data plane.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct IngressSpec {
    /// The public host name, e.g. `mail-api.example.com`.
    #[x_kube(validation = Rule::new("self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$')").message("spec.ingress.host must be a lower-case DNS name such as mail-api.example.com (no scheme, port or path)"))]
    #[schemars(length(min = 1, max = 253))]
    pub host: String,
    /// The IngressClass, e.g. `nginx` [default: the cluster's default class].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub class_name: Option<String>,
    /// Annotations of the Ingress, e.g. for the controller:
    /// `nginx.ingress.kubernetes.io/backend-protocol: HTTPS` with `spec.tls`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// Sessions and login protection.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuthSpec {
    /// How long a session lasts after login, in seconds [default: 3600].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 60, max = 2_592_000))]
    pub session_ttl_seconds: Option<u32>,
    /// IPs or CIDR ranges of the reverse proxies in front of the pods (the
    /// ingress controller), whose `X-Forwarded-For` is believed. Without
    /// them every client behind an ingress looks like the ingress, and one
    /// client's failed logins block them all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    // Bounded in count and length so the CEL rule's cost is too.
    #[schemars(length(max = 64), inner(length(max = 49)))]
    #[x_kube(validation = Rule::new("self.all(p, isCIDR(p) || isIP(p))").message("spec.auth.trustedProxies must hold IP addresses or CIDR ranges, such as 10.0.0.0/8"))]
    pub trusted_proxies: Vec<String>,
    /// When failed logins block an address or an account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub login: Option<LoginProtection>,
}

/// Failed logins from one address, or for one account, that reach
/// `maxFailures` within `windowSeconds` block it for `blockSeconds`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LoginProtection {
    /// [default: 5]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000))]
    pub max_failures: Option<u32>,
    /// [default: 300]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 86400))]
    pub window_seconds: Option<u32>,
    /// [default: 300]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 86400))]
    pub block_seconds: Option<u32>,
}

/// Budgets per caller (user or API key), as `COUNT/PERIOD` with a period
/// in s, m or h: `60/1m`, `10/30s`, `1000/1h`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct RateLimitsSpec {
    /// Every API request [default: `60/1m`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new(RATE_RULE).message("spec.rateLimits.api must be COUNT/PERIOD such as 60/1m, 10/30s or 1000/1h (up to 99999s, 9999m or 99h)"))]
    pub api: Option<String>,
    /// Emails sent [default: `10/1m`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new(RATE_RULE).message("spec.rateLimits.email must be COUNT/PERIOD such as 10/1m (up to 99999s, 9999m or 99h)"))]
    pub email: Option<String>,
    /// Generations [default: `5/1m`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new(RATE_RULE).message("spec.rateLimits.ai must be COUNT/PERIOD such as 5/1m (up to 99999s, 9999m or 99h)"))]
    pub ai: Option<String>,
    /// While Redis does not answer: `local` (each pod enforces the budgets
    /// itself) or `deny` (limited routes answer 503) [default: `local`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_redis_failure: Option<OnRedisFailure>,
}

/// The CEL rule of a `COUNT/PERIOD` budget; every value it admits is one the
/// data plane accepts (periods up to 7 days).
const RATE_RULE: &str =
    "self.matches('^[1-9][0-9]{0,8}/([1-9][0-9]{0,4}s|[1-9][0-9]{0,3}m|[1-9][0-9]?h)$')";

/// What rate limiting does while Redis does not answer.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
#[schemars(transform = super::described_by_its_field)]
pub enum OnRedisFailure {
    /// Each pod enforces the budgets on its own.
    Local,
    /// Limited routes answer 503 until Redis is back.
    Deny,
}

/// Who may talk to the pods, and whom they may talk to.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct NetworkPolicySpec {
    /// Namespaces whose pods may call the API (e.g. the ingress
    /// controller's and the applications'); the SecureVault's own is always
    /// allowed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(min = 1, max = 63)))]
    pub allow_from_namespaces: Vec<String>,
    /// The namespace Prometheus scrapes from [default: `monitoring`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub monitoring_namespace: Option<String>,
    /// Destination ranges for the dependencies' traffic [default: any
    /// address, on their ports only].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(max = 49)))]
    #[x_kube(validation = Rule::new("self.all(c, isCIDR(c))").message("spec.networkPolicy.egressCidrs must hold CIDR ranges, such as 10.0.0.0/8"))]
    pub egress_cidrs: Vec<String>,
    /// PostgreSQL's port, with `spec.database` [default: 5432].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub database_port: Option<i32>,
    /// Redis's port, with `spec.redis` [default: 6379].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub redis_port: Option<i32>,
}

/// Autoscaling on CPU.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.minReplicas <= self.maxReplicas").message("spec.autoscaling.minReplicas must not exceed maxReplicas"))]
pub struct AutoscalingSpec {
    /// Fewest pods.
    #[schemars(range(min = 1, max = 100))]
    pub min_replicas: i32,
    /// Most pods.
    #[schemars(range(min = 1, max = 100))]
    pub max_replicas: i32,
    /// Average CPU use, in percent of the pods' CPU request, that the
    /// autoscaler aims at [default: 70]. The pods need a CPU request
    /// (`spec.resources.requests.cpu`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 10, max = 100))]
    pub target_cpu_utilization_percent: Option<i32>,
}

/// The claim of the embedded store.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct StorageSpec {
    /// Size of the claim, a Kubernetes quantity such as `1Gi` [default:
    /// `1Gi`]. It may grow later where the storage class allows expansion;
    /// Kubernetes refuses to shrink a claim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("isQuantity(self) && quantity(self).isGreaterThan(quantity('0'))").message("spec.storage.size must be a positive quantity such as 1Gi"))]
    #[schemars(length(min = 1, max = 32))]
    pub size: Option<String>,
    /// The StorageClass of the claim [default: the cluster's default
    /// class]. Fixed once the claim exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub storage_class_name: Option<String>,
    /// What becomes of the claim, and the data on it, when the SecureVault
    /// is deleted [default: `Retain`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when_deleted: Option<ClaimRetention>,
}

/// What becomes of the store's claim when its SecureVault is deleted.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[schemars(transform = super::described_by_its_field)]
pub enum ClaimRetention {
    /// The claim stays, with the data: a SecureVault of the same name
    /// created again in the namespace takes it back.
    Retain,
    /// The claim goes with the SecureVault (the garbage collector deletes
    /// it), and with it the data unless its volume is retained.
    Delete,
}

/// Scheduled backups.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackupSpec {
    /// PostgreSQL vaults: when the backup CronJob runs, in cron syntax
    /// [default: `0 * * * *`, hourly, for a one-hour recovery point
    /// objective].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self.split(' ').size() == 5").message("spec.backup.schedule must be a cron schedule of five fields, such as `0 * * * *`"))]
    #[schemars(length(min = 9, max = 100))]
    pub schedule: Option<String>,
    /// Embedded-store vaults: seconds between two backups, counted from the
    /// newest one, so a replaced pod neither skips nor repeats one
    /// [default: 3600].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 10, max = 604_800))]
    pub interval_seconds: Option<u32>,
    /// How many backups are kept; older ones are deleted [default: 24].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 10000))]
    pub retain: Option<u32>,
    /// An S3-compatible bucket the backups go to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3: Option<S3Spec>,
    /// Without `s3`: the PersistentVolumeClaim (in the SecureVault's
    /// namespace) the backups are written to [default for the embedded
    /// store: `<name>-backups`, created like the store's claim].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub volume_claim_name: Option<String>,
    /// Age of the last successful backup, in seconds, beyond which the
    /// `BackupReady` condition turns False [default: 3600; for the
    /// embedded store twice `intervalSeconds`, at least 3600].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 60, max = 31_536_000))]
    pub max_age_seconds: Option<u32>,
}

/// An S3-compatible bucket (AWS S3, SeaweedFS, Ceph, Garage, …).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[x_kube(validation = Rule::new("has(self.accessKeyIdSecretRef) == has(self.secretAccessKeySecretRef)").message("set both accessKeyIdSecretRef and secretAccessKeySecretRef, or neither"))]
#[serde(rename_all = "camelCase")]
pub struct S3Spec {
    /// The server, `http(s)://HOST[:PORT]` without a path; requests are
    /// path-style [default: AWS S3 of `region`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self.matches('^https?://[^/?#]+/?$')").message("spec.backup.s3.endpoint must be http(s)://HOST[:PORT], without a path: the bucket goes in bucket"))]
    #[schemars(length(min = 8, max = 2048))]
    pub endpoint: Option<String>,
    /// The bucket's name.
    #[x_kube(validation = Rule::new("self.matches('^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$')").message("the bucket must be an S3 bucket name: 3 to 63 lowercase letters, digits, dots and hyphens"))]
    pub bucket: String,
    /// The bucket's region [default: `us-east-1`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64))]
    pub region: Option<String>,
    /// The folder of this SecureVault's backups in the bucket [default:
    /// `<namespace>/<name>`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self.matches('^[A-Za-z0-9!_.*()-]+(/[A-Za-z0-9!_.*()-]+)*/?$') && !self.split('/').exists(p, p == '.' || p == '..')").message("the prefix must be folder names separated by /, such as team-a/mail"))]
    #[schemars(length(min = 1, max = 512))]
    pub prefix: Option<String>,
    /// The access key id, from a Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_key_id_secret_ref: Option<SecretKeyRef>,
    /// The secret access key, from a Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_access_key_secret_ref: Option<SecretKeyRef>,
}

/// Where a new SecureVault's store comes from.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct RestoreSpec {
    /// Whose backups: the SecureVault (in this namespace) that wrote them;
    /// its folder in the bucket is `<namespace>/<its name>` unless the
    /// bucket's `prefix` says otherwise [default: this SecureVault's name,
    /// as when one deleted by mistake is created again].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub secure_vault: Option<String>,
    /// The bucket holding the backup [default: `spec.backup.s3`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3: Option<S3Spec>,
    /// The backup: `latest`, or a name such as
    /// `securevault-20261206T100000Z.sqlite` [default: `latest`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self == 'latest' || self.matches('^securevault-[0-9]{8}T[0-9]{6}Z[.](sqlite|pgjson)$')").message("spec.restoreFrom.backup must be latest or a backup's name, such as securevault-20261206T100000Z.sqlite"))]
    #[schemars(length(min = 6, max = 64))]
    pub backup: Option<String>,
}

/// How long stored rows are kept, in whole days per kind; a kind left out
/// is kept forever. The data plane's `RETENTION_*_DAYS`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct RetentionSpec {
    /// Emails created more than this many days ago are deleted once sent or
    /// failed; queued mail is never deleted, however old [default: kept
    /// forever].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 36_500))]
    pub emails_days: Option<u32>,
    /// AI generations created more than this many days ago are deleted
    /// [default: kept forever].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 36_500))]
    pub generations_days: Option<u32>,
    /// Audit entries older than this many days are deleted [default: kept
    /// forever].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 36_500))]
    pub audit_days: Option<u32>,
}

/// Managed upgrades.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct UpgradeSpec {
    /// How long the new version's pods have to become ready, in seconds,
    /// before the operator rolls back to the running version [default: 300].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 10, max = 86_400))]
    pub progress_deadline_seconds: Option<u32>,
    /// How long every new pod must stay ready and available, in seconds,
    /// before the upgrade counts as succeeded [default: 30].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 3_600))]
    pub verify_seconds: Option<u32>,
    /// How long the pre-upgrade backup and the migration Job may each run,
    /// in seconds, before they count as failed [default: 600].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 30, max = 86_400))]
    pub job_deadline_seconds: Option<u32>,
}

/// Monitoring of one SecureVault.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct MonitoringSpec {
    /// Whether to create the ServiceMonitor and PrometheusRule
    /// [default: true]. The Grafana dashboard, one for every SecureVault,
    /// ships with the chart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Labels for the ServiceMonitor and PrometheusRule, so a Prometheus's
    /// selectors find them, e.g. `release: prometheus`. They add to the
    /// operator's own (its MONITORING_LABELS; by default
    /// `release: kube-prometheus-stack`) and win on a key.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Scrape interval [default: `30s`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new(DURATION_RULE).message("spec.monitoring.interval must be a duration such as 30s, 1m or 1h"))]
    pub interval: Option<String>,
    /// Thresholds and durations of the alerts; each omitted value keeps its
    /// default (docs/runbooks lists them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alerts: Option<AlertsSpec>,
    /// Who receives the alerts: an AlertmanagerConfig routing this
    /// instance's `critical` alerts to PagerDuty and its `warning` alerts to
    /// Slack. Absent: no routing (the alerts still fire in Prometheus).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alert_routing: Option<AlertRoutingSpec>,
}

/// Alert routing by severity.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.pagerDuty) || has(self.slack)").message("spec.monitoring.alertRouting needs pagerDuty (for critical alerts), slack (for warnings), or both"))]
pub struct AlertRoutingSpec {
    /// Receives the `critical` alerts (service down, errors, latency,
    /// memory): they wake someone up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pager_duty: Option<PagerDutyReceiver>,
    /// Receives the `warning` alerts (email delivery failed, AI timeouts,
    /// cache misses, disk): they are looked at in working hours.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slack: Option<SlackReceiver>,
    /// How long the first alert of a group waits for others before the
    /// notification goes [default: `30s`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new(DURATION_RULE).message("spec.monitoring.alertRouting.groupWait must be a duration such as 30s, 1m or 1h"))]
    pub group_wait: Option<String>,
    /// How long before a group that changed is notified again [default: `5m`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new(DURATION_RULE).message("spec.monitoring.alertRouting.groupInterval must be a duration such as 30s, 5m or 1h"))]
    pub group_interval: Option<String>,
    /// How often a critical alert still firing is sent again [default: `1h`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new(DURATION_RULE).message("spec.monitoring.alertRouting.criticalRepeatInterval must be a duration such as 30m or 1h"))]
    pub critical_repeat_interval: Option<String>,
    /// How often a warning still firing is sent again [default: `4h`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new(DURATION_RULE).message("spec.monitoring.alertRouting.warningRepeatInterval must be a duration such as 4h or 12h"))]
    pub warning_repeat_interval: Option<String>,
}

/// PagerDuty through its Events API v2.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct PagerDutyReceiver {
    /// Secret key holding the integration's routing key.
    pub routing_key_secret_ref: SecretKeyRef,
    /// The Events API v2 endpoint [default:
    /// `https://events.pagerduty.com/v2/enqueue`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self.startsWith('https://') || self.startsWith('http://')").message("spec.monitoring.alertRouting.pagerDuty.url must start with https:// or http://"))]
    pub url: Option<String>,
}

/// A Slack incoming webhook.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct SlackReceiver {
    /// Secret key holding the incoming-webhook URL (it embeds a token).
    pub api_url_secret_ref: SecretKeyRef,
    /// Channel to post in, e.g. `#securevault-alerts` [default: the
    /// webhook's own].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 80))]
    pub channel: Option<String>,
}

/// A Prometheus duration: a number and a unit.
const DURATION_RULE: &str = "self.matches('^[0-9]+(ms|s|m|h)$')";

/// The seed's eight alerts.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AlertsSpec {
    /// The pods cannot be scraped (default: for 2m).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check_failing: Option<AlertTuning>,
    /// Share of 5xx answers, percent (default: 5, for 5m).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub high_error_rate: Option<AlertTuning>,
    /// 95th percentile latency, seconds (default: 10, for 2m).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub high_response_time: Option<AlertTuning>,
    /// Memory use, percent (default: 90, for 5m).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub high_memory_usage: Option<AlertTuning>,
    /// Emails given up on in 15 minutes (default: more than 0, for 0m).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email_delivery_failed: Option<AlertTuning>,
    /// Generations cut off by their deadline in 15 minutes (default: more
    /// than 0, for 0m).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ai_generation_timeout: Option<AlertTuning>,
    /// Share of cache look-ups that miss, percent (default: 50, for 10m).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub high_cache_miss_rate: Option<AlertTuning>,
    /// Use of the data volume, percent (default: 80, for 5m).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub high_disk_usage: Option<AlertTuning>,
}

/// One alert's threshold and duration.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct AlertTuning {
    /// The threshold, in the alert's unit (see its description).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 1_000_000.0))]
    pub threshold: Option<f64>,
    /// How long the condition must hold before the alert fires, e.g. `5m`.
    #[serde(default, rename = "for", skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new(DURATION_RULE).message("an alert's `for` must be a duration such as 30s, 5m or 1h"))]
    pub for_: Option<String>,
}

/// Pod placement.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Placement {
    /// Nodes the pods may run on, by label.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    /// Taints the pods tolerate.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
    /// Affinity rules; by default the pods prefer distinct nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,
    /// Priority class of the pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority_class_name: Option<String>,
}

/// Image pull policy.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[schemars(transform = super::described_by_its_field)]
pub enum ImagePullPolicy {
    /// Pull every time a pod starts.
    Always,
    /// Pull when the node lacks the image.
    IfNotPresent,
    /// Never pull; the image must be on the node.
    Never,
}

/// Data-plane log level.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
#[schemars(transform = super::described_by_its_field)]
pub enum LogLevel {
    /// Errors only.
    Error,
    /// Warnings and errors.
    Warn,
    /// The default.
    Info,
    /// Every request.
    Debug,
    /// Everything.
    Trace,
}
