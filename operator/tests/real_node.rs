//! On the real node (`NODE=real`, tests/cluster/node.sh): a kubelet and
//! kube-proxy over containerd, beside the kwok nodes. Here nothing is
//! simulated: the data-plane image built by docker/build.sh starts in a
//! container, the kubelet runs the probes the operator wrote against the
//! process, the namespace enforces the "restricted" Pod Security Standard,
//! and requests reach the pod through the Service's cluster IP (kube-proxy's
//! iptables rules).
//!
//! Part of `make test-e2e` and of `make test` (which start the cluster with
//! NODE=real).

// Test code: a failure here is a failed test, so panicking is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::{process::Command, sync::OnceLock, time::Duration};

use common::*;
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::ListParams;
use testkit::{DockerEngine, TempDir};

/// Where pods may go on the real node: its label and its taint.
const ON_THE_REAL_NODE: &str = "  placement:
    nodeSelector: {securevault.io/node: real}
    tolerations: [{key: securevault.io/node, operator: Equal, value: real, effect: NoSchedule}]
";

/// Builds the production images (the debug binaries, packed the production
/// way) in a private engine and imports them into the real node's
/// containerd, once per test process. No registry is involved: pods use
/// them with `imagePullPolicy: Never`.
fn load_images() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        let engine = DockerEngine::start().unwrap();
        let built = engine.build_images().unwrap();
        let dir = TempDir::new("node-images").unwrap();
        let mut archives = Vec::new();
        for line in built.lines() {
            let image = line.split_whitespace().next().unwrap();
            let file = dir.path().join(format!("{}.tar", image.replace(['/', ':'], "_")));
            engine.save(image, &file).unwrap();
            archives.push(file);
        }
        assert!(archives.len() >= 2, "docker/build.sh built: {built}");
        let out = Command::new(repo_root().join("tests/cluster/node.sh"))
            .arg("load")
            .args(&archives)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "node.sh load: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    });
}

/// An HTTP GET from this host; returns the status code and the body.
fn get(url: &str) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-s", "--max-time", "5", "-w", "\n%{http_code}", url])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_owned())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_data_plane_runs_for_real_passes_its_probes_and_answers_through_its_service() {
    let world = World::new("real-node").await;
    world
        .cluster
        .kubectl(&[
            "label",
            "namespace",
            world.ns(),
            "pod-security.kubernetes.io/enforce=restricted",
        ])
        .unwrap();
    load_images();
    let operator = world.operator("real-node");
    operator.wait_leader();

    world
        .apply(&vault(
            "mail",
            &format!("  version: 0.1.0\n  replicas: 1\n  imagePullPolicy: Never\n{ON_THE_REAL_NODE}"),
        ))
        .unwrap();
    // Ready now means what it says: the kubelet saw /api/health/ready answer.
    let sv = wait_ready(&world, "mail").await;
    assert_eq!(sv.status.as_ref().unwrap().ready_replicas, Some(1));

    let pods = world
        .api::<Pod>()
        .list(&ListParams::default().labels("app.kubernetes.io/instance=mail"))
        .await
        .unwrap();
    let pod = pods
        .items
        .iter()
        .find(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
        .unwrap_or_else(|| panic!("no running pod: {pods:#?}"));
    let spec = pod.spec.as_ref().unwrap();
    assert_eq!(spec.node_name.as_deref(), Some("securevault-real"));
    let container = &pod.status.as_ref().unwrap().container_statuses.as_ref().unwrap()[0];
    assert!(container.ready, "{container:#?}");
    assert!(
        container.container_id.as_deref().unwrap_or_default().starts_with("containerd://"),
        "a real container: {container:#?}"
    );
    assert_eq!(container.restart_count, 0, "the probes never failed it: {container:#?}");

    // Through the Service's cluster IP, as another pod would reach it:
    // kube-proxy's rules send it to the pod.
    let service = world.api::<Service>().get("mail").await.unwrap();
    let spec = service.spec.unwrap();
    let ip = spec.cluster_ip.unwrap();
    let port = spec.ports.unwrap()[0].port;
    let mut last = (0, String::new());
    for _ in 0..50 {
        last = get(&format!("http://{ip}:{port}/api/health"));
        if last.0 == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(last.0, 200, "GET /api/health through {ip}:{port}: {}", last.1);
    assert!(last.1.contains("healthy"), "{}", last.1);

    // The pod's log, as `kubectl logs` shows it: JSON lines with the
    // request id of what was just asked.
    let name = pod.metadata.name.clone().unwrap();
    let logs = world.kubectl(&["logs", &name]).unwrap();
    let lines: Vec<serde_json::Value> = logs
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(
        lines.iter().any(|l| l.to_string().contains("request_id")),
        "no request id in the pod's log:\n{logs}"
    );
}
