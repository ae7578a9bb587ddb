//! A Helm upgrade as a platform team runs it: the previous chart, from
//! this repository's history, installed and running a SecureVault; then
//! `helm upgrade` to the working tree's chart and a new operator process.
//! The CRD is upgraded with the release (a new field is accepted, not
//! pruned), no data-plane pod is replaced because the operator was, and
//! `helm uninstall` leaves the CRD and the SecureVaults.
//!
//! This file is its own test binary on purpose: it deletes the cluster's
//! SecureVault CRD to let the previous chart create it, as on a cluster
//! that chart was first installed on. The operator's test binaries run one
//! after another, and no test of the other lane uses SecureVaults, so
//! nothing else sees the CRD go; later binaries apply it again.

// Test code: a failure is a panic with a message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::{process::Command, time::Duration};

use common::{chart::chart, *};
use k8s_openapi::api::{apps::v1::Deployment, core::v1::Pod};
use kube::{ResourceExt, api::ListParams};

/// The last commit of chart 0.1.0, whose CRD sat in crds/ (installed once by
/// Helm, never upgraded) and had no `spec.imagePullSecrets`.
const PREVIOUS_CHART: &str = "300f07e4038670c1e189465500894953d9f32000";

const CRD: &str = "securevaults.securevault.io";

const MINIMAL: &str = include_str!("../../config/samples/minimal.yaml");

/// The data-plane pods' names and uids, and the Deployment's generation.
async fn data_plane(w: &World) -> (Vec<String>, i64) {
    let pods = w
        .api::<Pod>()
        .list(&ListParams::default().labels("app.kubernetes.io/instance=mail"))
        .await
        .unwrap();
    let mut pods: Vec<String> = pods
        .iter()
        .map(|p| format!("{} {}", p.name_any(), p.uid().unwrap()))
        .collect();
    pods.sort();
    let generation = w
        .api::<Deployment>()
        .get("mail")
        .await
        .unwrap()
        .metadata
        .generation
        .unwrap();
    (pods, generation)
}

/// The CRD's schema of `spec.imagePullSecrets` (empty when it has none).
fn pull_secrets_schema(w: &World) -> String {
    w.cluster
        .kubectl(&[
            "get",
            "crd",
            CRD,
            "-o",
            "jsonpath={.spec.versions[0].schema.openAPIV3Schema.properties.spec.properties.imagePullSecrets.type}",
        ])
        .unwrap()
}

/// One counter or histogram count of the operator's `/metrics` (0 when the
/// series does not exist yet).
fn sample(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn helm_upgrade_from_the_previous_chart_upgrades_the_crd_and_replaces_no_data_plane_pod() {
    let w = World::new("chart-upgrade").await;
    let kubeconfig = w.cluster.kubeconfig().to_str().unwrap().to_owned();
    let release = w.ns().to_owned();
    let helm_in = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["--namespace", w.ns(), "--kubeconfig", &kubeconfig]);
        helm(&all)
    };

    // The previous chart, as it was released.
    let previous = testkit::TempDir::new("previous-chart").unwrap();
    let archive = Command::new("git")
        .current_dir(repo_root())
        .args(["archive", PREVIOUS_CHART, "charts/securevault-operator"])
        .output()
        .unwrap();
    assert!(
        archive.status.success(),
        "git archive of the previous chart (a full clone has it): {}",
        String::from_utf8_lossy(&archive.stderr)
    );
    std::fs::write(previous.path().join("chart.tar"), &archive.stdout).unwrap();
    let untar = Command::new("tar")
        .args(["-xf", "chart.tar"])
        .current_dir(previous.path())
        .status()
        .unwrap();
    assert!(untar.success());
    let previous_chart = previous.path().join("charts/securevault-operator");

    // Installed where its CRD did not exist yet: Helm creates it from crds/.
    w.cluster
        .kubectl(&["delete", "crd", CRD, "--ignore-not-found", "--wait=true"])
        .unwrap();
    helm_in(&[
        "install",
        &release,
        previous_chart.to_str().unwrap(),
        "--wait",
        "--timeout",
        "120s",
    ]);
    w.cluster.wait_established(CRD).unwrap();
    assert_eq!(
        pull_secrets_schema(&w),
        "",
        "chart 0.1.0's CRD has no pull secrets"
    );

    // Its operator runs a SecureVault (kwok runs the pods as Ready).
    let mut first = w.operator("before-upgrade");
    first.wait_leader();
    w.apply(MINIMAL).unwrap();
    wait_ready(&w, "mail").await;
    // Let the last status write and pod updates settle.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let before = data_plane(&w).await;
    assert_eq!(before.0.len(), 1, "{before:?}");

    // Upgrading from 0.1.0 once needs --take-ownership: its CRD was made by
    // Helm from crds/, which records no release on it, and Helm will not
    // take an object it cannot see is its own.
    let refused = Command::new(helm_binary())
        .args(["upgrade", &release, chart().to_str().unwrap()])
        .args(["--namespace", w.ns(), "--kubeconfig", &kubeconfig])
        .output()
        .unwrap();
    assert!(!refused.status.success(), "helm upgrade took the CRD over");
    let error = String::from_utf8_lossy(&refused.stderr);
    assert!(
        error.contains(CRD) && error.contains("invalid ownership metadata"),
        "{error}"
    );
    first.stop();
    helm_in(&[
        "upgrade",
        &release,
        chart().to_str().unwrap(),
        "--take-ownership",
        "--wait",
        "--timeout",
        "120s",
    ]);
    assert_eq!(
        pull_secrets_schema(&w),
        "array",
        "helm upgrade upgraded the CRD"
    );
    let annotations = w
        .cluster
        .kubectl(&["get", "crd", CRD, "-o", "jsonpath={.metadata.annotations}"])
        .unwrap();
    assert!(
        annotations.contains(r#""helm.sh/resource-policy":"keep""#)
            && annotations.contains(&format!(r#""meta.helm.sh/release-name":"{release}""#)),
        "{annotations}"
    );

    // The upgraded operator takes over and reconciles the SecureVault: it
    // writes nothing to the Deployment, so no pod is replaced.
    let second = w.operator("after-upgrade");
    second.wait_leader();
    let metrics = eventually(
        Duration::from_secs(60),
        "the new operator to finish a reconcile",
        || async { Some(second.metrics()) },
        |m: &String| sample(m, "securevault_reconcile_duration_seconds_count") >= 1.0,
    )
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        sample(
            &metrics,
            "securevault_api_writes_total{kind=\"Deployment\"}"
        ),
        0.0,
        "{metrics}"
    );
    assert_eq!(data_plane(&w).await, before, "no data-plane pod replaced");

    // The new field is stored (an old CRD would prune it) and reaches the pods.
    w.kubectl(&[
        "patch",
        "sv",
        "mail",
        "--type=merge",
        "-p",
        r#"{"spec":{"imagePullSecrets":[{"name":"mirror"}]}}"#,
    ])
    .unwrap();
    let stored = w
        .kubectl(&[
            "get",
            "sv",
            "mail",
            "-o",
            "jsonpath={.spec.imagePullSecrets[0].name}",
        ])
        .unwrap();
    assert_eq!(stored, "mirror");
    eventually(
        Duration::from_secs(60),
        "the pull secret in the Deployment's pods",
        || async {
            let d = w.api::<Deployment>().get("mail").await.ok()?;
            d.spec.template.spec?.image_pull_secrets
        },
        |secrets| secrets.first().is_some_and(|s| s.name == "mirror"),
    )
    .await;

    // Uninstalled, the release leaves the CRD and so the SecureVault.
    drop(second);
    helm_in(&["uninstall", &release, "--wait"]);
    w.cluster.kubectl(&["get", "crd", CRD]).unwrap();
    w.kubectl(&["get", "sv", "mail"]).unwrap();
}
