//! A cluster without the Prometheus Operator: the operator still runs the
//! SecureVault, applies the dashboard only, says why in `MonitoringReady`
//! (and in `AlertRoutingReady` for the AlertmanagerConfig), and applies the
//! ServiceMonitor, PrometheusRule and AlertmanagerConfig once the CRDs
//! appear, without a restart. Likewise without cert-manager: `TLSReady`
//! says it is missing, and the Certificate follows once its CRD appears.
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
    cert_manager::Certificate,
    monitoring::{AlertmanagerConfig, PrometheusRule, ServiceMonitor},
};

const CRDS: [&str; 4] = [
    "servicemonitors.monitoring.coreos.com",
    "prometheusrules.monitoring.coreos.com",
    "alertmanagerconfigs.monitoring.coreos.com",
    "certificates.cert-manager.io",
];

/// Each CRD file: the cache directory's prefix, and the file.
const CRD_FILES: [(&str, &str); 4] = [
    (
        "prometheus-operator-",
        "monitoring.coreos.com_servicemonitors.yaml",
    ),
    (
        "prometheus-operator-",
        "monitoring.coreos.com_prometheusrules.yaml",
    ),
    (
        "prometheus-operator-",
        "monitoring.coreos.com_alertmanagerconfigs.yaml",
    ),
    ("cert-manager-", "cert-manager.io_certificates.yaml"),
];

/// The CRD files `tests/cluster/cluster.sh` installed, from its cache.
fn crd_files() -> Vec<PathBuf> {
    let cache = std::env::var_os("SECUREVAULT_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cache/securevault")
        });
    let dir = |prefix: &str| {
        std::fs::read_dir(cache.join("crds"))
            .unwrap()
            .filter_map(Result::ok)
            .map(|e| e.path())
            .find(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with(prefix))
            })
            .unwrap_or_else(|| panic!("{prefix}* CRDs cached by tests/cluster/cluster.sh"))
    };
    CRD_FILES
        .iter()
        .map(|(prefix, file)| dir(prefix).join(file))
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
    w.apply(&vault(
        "mail",
        "  version: 0.1.0\n  replicas: 1\n  monitoring:\n    alertRouting:\n      pagerDuty: {routingKeySecretRef: {name: oncall, key: routing-key}}\n      slack: {apiUrlSecretRef: {name: oncall, key: slack-url}}\n  tls: {secretName: mail-tls, issuerRef: {name: ca}}\n",
    ))
    .unwrap();
    wait_ready(&w, "mail").await;
    let api = w.api::<SecureVault>();
    let sv = eventually(
        Duration::from_secs(30),
        "MonitoringReady False for the missing CRDs",
        || async { api.get_opt("mail").await.ok().flatten() },
        |sv: &SecureVault| {
            let status = sv.status.as_ref();
            status
                .and_then(|s| s.condition("MonitoringReady"))
                .is_some_and(|c| c.status == "False" && c.reason == "PrometheusOperatorMissing")
                && status
                    .and_then(|s| s.condition("AlertRoutingReady"))
                    .is_some_and(|c| {
                        c.status == "False" && c.reason == "AlertmanagerConfigCrdMissing"
                    })
                && status
                    .and_then(|s| s.condition("TLSReady"))
                    .is_some_and(|c| c.status == "False" && c.reason == "CertManagerMissing")
        },
    )
    .await;
    let routing = sv
        .status
        .as_ref()
        .unwrap()
        .condition("AlertRoutingReady")
        .unwrap()
        .message
        .clone();
    assert!(
        routing.contains("AlertmanagerConfig CRD") && routing.contains("operator alertmanager"),
        "{routing}"
    );
    let tls = sv
        .status
        .as_ref()
        .unwrap()
        .condition("TLSReady")
        .unwrap()
        .message
        .clone();
    assert!(tls.contains("install cert-manager"), "{tls}");
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
    let routings = w.api::<AlertmanagerConfig>();
    let certificates = w.api::<Certificate>();
    eventually(
        Duration::from_secs(90),
        "the ServiceMonitor, PrometheusRule, AlertmanagerConfig and Certificate once the CRDs exist",
        || async {
            Some((
                monitors.get_opt("mail").await.ok()?.is_some(),
                rules.get_opt("mail-alerts").await.ok()?.is_some(),
                routings.get_opt("mail-alert-routing").await.ok()?.is_some(),
                certificates.get_opt("mail-tls").await.ok()?.is_some(),
            ))
        },
        |present| *present == (true, true, true, true),
    )
    .await;
    // Accepted by the real CRD's schema, as the Prometheus Operator reads it.
    let routing = routings.get("mail-alert-routing").await.unwrap();
    assert_eq!(routing.spec.route.routes[0].receiver, "pagerduty");
    assert_eq!(
        routing.spec.receivers[2].slack_configs[0].api_url.key,
        "slack-url"
    );
    eventually(
        Duration::from_secs(30),
        "MonitoringReady True",
        || async { api.get_opt("mail").await.ok().flatten() },
        |sv: &SecureVault| {
            sv.status
                .as_ref()
                .and_then(|s| s.condition("MonitoringReady"))
                .is_some_and(|c| c.status == "True")
                && sv
                    .status
                    .as_ref()
                    .and_then(|s| s.condition("AlertRoutingReady"))
                    .is_some_and(|c| c.status == "True")
        },
    )
    .await;
}
