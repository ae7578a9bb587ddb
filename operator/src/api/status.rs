//! What the operator reports: `status` of a `SecureVault`. Written only by
//! the operator, through the status subresource, and always derived from
//! what it observed in the cluster.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Condition type: the data plane serves at the desired scale and version.
pub const READY: &str = "Ready";
/// Condition type: a change is being rolled out.
pub const PROGRESSING: &str = "Progressing";
/// Condition type: something needs the user's attention (see its message).
pub const DEGRADED: &str = "Degraded";
/// Condition type: the monitoring objects are in place.
pub const MONITORING_READY: &str = "MonitoringReady";
/// Condition type: the last successful backup is recent enough (only with
/// `spec.backup`).
pub const BACKUP_READY: &str = "BackupReady";
/// Condition type: the alerts reach their receivers (only with
/// `spec.monitoring.alertRouting`).
pub const ALERT_ROUTING_READY: &str = "AlertRoutingReady";
/// Condition type: the TLS Secret holds a usable, valid certificate (only
/// with `spec.tls`).
pub const TLS_READY: &str = "TLSReady";

/// The observed state of a SecureVault.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecureVaultStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// In the standard shape: `Ready` (the data plane serves at the desired
    /// scale and version), `Progressing` (a change is being rolled out),
    /// `Degraded` (something needs the user's attention; its message says
    /// what), `MonitoringReady` (the ServiceMonitor and PrometheusRule
    /// are applied, with the labels its message names) and `BackupReady` (the last successful
    /// backup is recent enough; where the operator can see it: in a bucket,
    /// or through the backup CronJob).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Data-plane pods that exist (the scale subresource reads this).
    #[serde(default)]
    pub replicas: i32,
    /// Pods ready to serve.
    #[serde(default)]
    pub ready_replicas: i32,
    /// Pods wanted (`spec.replicas`).
    #[serde(default)]
    pub desired_replicas: i32,
    /// `ready/desired`, for `kubectl get sv`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas_summary: Option<String>,
    /// The version every pod runs, once the rollout is complete.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Label selector of the pods, for the scale subresource (and an HPA).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    /// In-cluster address of the data-plane Service, e.g.
    /// `http://name.namespace.svc:8080`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// Where the embedded store lives (without `spec.database`): its claim
    /// and whether it is bound.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<StorageStatus>,
    /// When the last backup succeeded (RFC 3339), as the operator sees it:
    /// the newest backup in the bucket, or the backup CronJob's last
    /// success.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_backup_time: Option<String>,
    /// Where backups go: `s3://bucket/prefix/` or `claim <name>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_destination: Option<String>,
    /// The upgrade under way, or the last one. The operator resumes it from
    /// here after a restart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upgrade: Option<Upgrade>,
    /// Finished upgrades, newest first (at most five).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub upgrade_history: Vec<Upgrade>,
    /// A digest (`sha256:…`) of everything the last settled reconcile read:
    /// the spec with the platform's settings, and the resourceVersions of
    /// the children and of the referenced Secrets. While the same inputs
    /// give the same digest, the operator answers from its watch caches and
    /// sends the API server nothing. Absent while a change is in motion.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_inputs: Option<String>,
}

/// Where the embedded store lives.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StorageStatus {
    /// The PersistentVolumeClaim holding the store; absent while the store
    /// is still on the emptyDir an older operator gave it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claim_name: Option<String>,
    /// The claim's phase (`Pending`, `Bound`, `Lost`), or `EmptyDir`: the
    /// store goes with the pod until `spec.storage` is set.
    pub phase: String,
    /// Its size once bound, e.g. `1Gi`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity: Option<String>,
    /// Why it is not bound (the latest event about the claim), or what to
    /// do about an emptyDir.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Where an upgrade stands.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[schemars(transform = super::described_by_its_field)]
pub enum UpgradePhase {
    /// The pre-upgrade backup Job runs (with `spec.backup`).
    BackingUp,
    /// The migration Job runs the new version's `dataplane migrate` (with
    /// `spec.database`).
    Migrating,
    /// The Deployment rolls to the new version.
    RollingOut,
    /// Every new pod is ready; they must stay so for `verifySeconds`.
    Verifying,
    /// The new version failed; the Deployment rolls back to the old one.
    RollingBack,
    /// The new version runs.
    Succeeded,
    /// The old version runs again after the new one failed.
    RolledBack,
    /// A step before the rollout failed; the old version never stopped.
    Failed,
}

impl UpgradePhase {
    /// Whether the upgrade is over (whatever the outcome).
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            UpgradePhase::Succeeded | UpgradePhase::RolledBack | UpgradePhase::Failed
        )
    }
}

/// One upgrade from a running version to the spec's.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Upgrade {
    /// Names this attempt's Jobs (`<name>-upgrade-<id>-backup`, `-migrate`).
    pub id: String,
    /// The version that ran when the upgrade started.
    pub from_version: String,
    /// Its image: what a rollback puts back.
    pub from_image: String,
    /// The spec's version.
    pub to_version: String,
    /// The spec's image.
    pub to_image: String,
    /// Where it stands.
    pub phase: UpgradePhase,
    /// When it started (RFC 3339).
    pub start_time: String,
    /// When the current phase started (RFC 3339): deadlines count from it.
    pub phase_time: String,
    /// When it finished (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<String>,
    /// What happened last, in words.
    #[serde(default)]
    pub message: String,
}

impl SecureVaultStatus {
    /// The condition of `type_`, if set.
    pub fn condition(&self, type_: &str) -> Option<&Condition> {
        self.conditions.iter().find(|c| c.type_ == type_)
    }
}
