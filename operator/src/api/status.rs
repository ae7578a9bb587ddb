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

/// The observed state of a SecureVault.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecureVaultStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `Progressing` and `Degraded`, in the standard shape.
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
    /// When the last backup succeeded (RFC 3339), with `spec.backup`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_backup_time: Option<String>,
}

impl SecureVaultStatus {
    /// The condition of `type_`, if set.
    pub fn condition(&self, type_: &str) -> Option<&Condition> {
        self.conditions.iter().find(|c| c.type_ == type_)
    }
}
