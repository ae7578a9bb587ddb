//! The kustomize entry points under config/ against the real API server:
//! each renders (`kubectl kustomize`) and applies, and the bases rendered
//! from the Helm chart are what the chart renders today.

// Test code: a failure is a panic with a message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::process::Command;

use common::*;

#[test]
fn the_bases_rendered_from_the_chart_are_current() {
    let out = Command::new(repo_root().join("tests/setup/render-manifests.sh"))
        .arg("--check")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn every_entry_point_renders_and_the_api_server_applies_it() {
    let w = World::new("kustomize").await;
    let config = repo_root().join("config");
    for base in ["crd", "rbac", "manager", "default", "monitoring"] {
        let dir = config.join(base);
        let rendered = w
            .cluster
            .kubectl(&["kustomize", dir.to_str().unwrap()])
            .unwrap();
        assert!(rendered.contains("kind: "), "config/{base} renders nothing");
        // Server-side: the CRD is too large for client-side apply's
        // annotation.
        w.cluster
            .kubectl_stdin(
                &["apply", "--server-side", "--force-conflicts", "-f", "-"],
                &rendered,
            )
            .unwrap_or_else(|e| panic!("config/{base}: {e}"));
    }
    let deployment = w
        .cluster
        .kubectl(&[
            "get",
            "deployment",
            "securevault-operator",
            "-n",
            "securevault-system",
            "-o",
            "jsonpath={.spec.replicas} {.spec.template.spec.serviceAccountName} \
             {.spec.template.spec.containers[0].env[?(@.name==\"WATCH_NAMESPACE\")].value}",
        ])
        .unwrap();
    // The chart's default: the operator watches its own namespace only,
    // where its Role is (config/rbac holds no ClusterRole).
    assert_eq!(deployment, "2 securevault-operator securevault-system");
    // The sample goes in a namespace of the test's own, and the operator
    // (run here with the admin's rights, watching that namespace) makes it
    // Ready.
    let samples = config.join("samples");
    w.kubectl(&["apply", "-k", samples.to_str().unwrap()])
        .unwrap();
    let op = w.operator("solo");
    op.wait_leader();
    wait_ready(&w, "mail").await;

    // Everything config/default made is in that namespace (the CRD stays).
    let _ = w
        .cluster
        .kubectl(&["delete", "namespace", "securevault-system", "--wait=false"]);
    // The metrics' ClusterRoles, the only cluster-scoped objects
    // config/default makes: no namespace takes them along.
    let _ = w.cluster.kubectl(&[
        "delete",
        "clusterrole,clusterrolebinding",
        "securevault-operator-metrics-auth",
        "securevault-operator-metrics-reader",
    ]);
}
