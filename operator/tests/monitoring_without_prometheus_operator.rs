//! A cluster without the Prometheus Operator: the operator still runs the
//! SecureVault, applies the dashboard only, says why in `MonitoringReady`,
//! and applies the ServiceMonitor and PrometheusRule once the CRDs appear,
//! without a restart.
//!
//! Alone in its own test binary on purpose: it deletes the two CRDs from the
//! shared cluster, and cargo runs test binaries one after the other, so no
//! other test sees them missing. They are put back however this test ends.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::{path::PathBuf, time::Duration};

use common::*;
use k8s_openapi::api::core::v1::ConfigMap;
use operator::api::{
    SecureVault,
    monitoring::{PrometheusRule, ServiceMonitor},
};

const CRDS: [&str; 2] = [
    "servicemonitors.monitoring.coreos.com",
    "prometheusrules.monitoring.coreos.com",
];

/// The CRD files `tests/cluster/cluster.sh` installed, from its cache.
fn crd_files() -> Vec<PathBuf> {
    let cache = std::env::var_os("SECUREVAULT_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cache/securevault")
        });
    let dir = std::fs::read_dir(cache.join("crds"))
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("prometheus-operator-"))
        })
        .expect("the Prometheus Operator CRDs cached by tests/cluster/cluster.sh");
    [
        "monitoring.coreos.com_servicemonitors.yaml",
        "monitoring.coreos.com_prometheusrules.yaml",
    ]
    .iter()
    .map(|f| dir.join(f))
    .collect()
}

/// Puts the CRDs back, as the cluster script installs them.
struct Restore<'a>(&'a World);

impl Restore<'_> {
    fn install(&self) {
        let mut args = vec![
            "apply".to_owned(),
            "--server-side".into(),
            "--force-conflicts".into(),
        ];
        for f in crd_files() {
            args.push("-f".into());
            args.push(f.display().to_string());
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.0.cluster.kubectl(&args).unwrap();
        let mut wait = vec!["wait", "--for=condition=Established", "--timeout=60s"];
        let names: Vec<String> = CRDS.iter().map(|c| format!("crd/{c}")).collect();
        wait.extend(names.iter().map(String::as_str));
        self.0.cluster.kubectl(&wait).unwrap();
    }
}

impl Drop for Restore<'_> {
    fn drop(&mut self) {
        self.install();
    }
}

#[tokio::test]
async fn without_the_crds_the_dashboard_only_then_everything_once_they_appear() {
    let w = World::new("no-prom-op").await;
    let restore = Restore(&w);
    let mut delete = vec!["delete", "crd", "--wait=true"];
    delete.extend(CRDS);
    w.cluster.kubectl(&delete).unwrap();

    let op = w.operator("solo");
    op.wait_leader();
    w.apply(&vault("mail", "  version: 0.1.0\n  replicas: 1\n"))
        .unwrap();
    wait_ready(&w, "mail").await;
    let api = w.api::<SecureVault>();
    let sv = eventually(
        Duration::from_secs(30),
        "MonitoringReady False for the missing CRDs",
        || async { api.get_opt("mail").await.ok().flatten() },
        |sv: &SecureVault| {
            sv.status
                .as_ref()
                .and_then(|s| s.condition("MonitoringReady"))
                .is_some_and(|c| c.status == "False" && c.reason == "PrometheusOperatorMissing")
        },
    )
    .await;
    let reason = sv
        .status
        .unwrap()
        .condition("MonitoringReady")
        .unwrap()
        .message
        .clone();
    assert!(reason.contains("not installed"), "{reason}");
    assert!(
        w.api::<ConfigMap>()
            .get_opt("mail-dashboard")
            .await
            .unwrap()
            .is_some()
    );

    // The CRDs arrive; the same operator process applies the rest.
    restore.install();
    let monitors = w.api::<ServiceMonitor>();
    let rules = w.api::<PrometheusRule>();
    eventually(
        Duration::from_secs(90),
        "the ServiceMonitor and PrometheusRule once the CRDs exist",
        || async {
            Some((
                monitors.get_opt("mail").await.ok()?.is_some(),
                rules.get_opt("mail-alerts").await.ok()?.is_some(),
            ))
        },
        |present| *present == (true, true),
    )
    .await;
    eventually(
        Duration::from_secs(30),
        "MonitoringReady True",
        || async { api.get_opt("mail").await.ok().flatten() },
        |sv: &SecureVault| {
            sv.status
                .as_ref()
                .and_then(|s| s.condition("MonitoringReady"))
                .is_some_and(|c| c.status == "True")
        },
    )
    .await;
}
