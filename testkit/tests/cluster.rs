//! The shared Kubernetes test cluster does what the operator's tests will
//! rely on: real nodes for the scheduler (kwok's), Deployments whose pods
//! become Ready, CRD validation by CEL rules in the real API server, the
//! controller manager's garbage collector, and the Prometheus Operator's
//! CRDs.
//!
//! `Cluster::shared()` starts the cluster when `SECUREVAULT_KUBECONFIG` is
//! not set (the first run builds it: minutes) and leaves it running; `make
//! cluster-down` stops it.

use std::time::{Duration, Instant};

use testkit::Cluster;

/// How long the cluster gets to converge (pods Ready, garbage collected).
const CONVERGE: Duration = Duration::from_secs(60);

/// Polls `check` every 250 ms until it returns true; panics after `timeout`
/// with `what` and the last value `check` saw.
fn wait_until(what: &str, timeout: Duration, mut check: impl FnMut() -> (bool, String)) {
    let deadline = Instant::now() + timeout;
    loop {
        let (done, last) = check();
        if done {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}; last seen: {last}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// `name kwok-annotation status` lines: the Ready condition of every node,
/// and whether kwok plays its kubelet (`fake`).
const NODE_READY: &str = r#"jsonpath={range .items[*]}{.metadata.name} {.metadata.annotations.kwok\.x-k8s\.io/node} {.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}"#;

#[test]
fn two_kwok_nodes_and_any_real_one_are_ready() {
    let cluster = Cluster::shared().unwrap();
    let out = cluster
        .kubectl(&["get", "nodes", "-o", NODE_READY])
        .unwrap();
    let nodes: Vec<&str> = out.lines().filter(|l| !l.is_empty()).collect();
    // Two kwok nodes; with NODE=real (as `make test` starts it), the real
    // node beside them (its own kubelet, no kwok annotation).
    let kwok = nodes.iter().filter(|l| l.contains(" fake ")).count();
    assert_eq!(kwok, 2, "nodes: {out}");
    assert!(nodes.len() <= 3, "nodes: {out}");
    assert!(nodes.iter().all(|l| l.ends_with(" True")), "nodes: {out}");

    // The server is the version the binaries were built as, on loopback.
    let version = cluster.kubectl(&["get", "--raw", "/version"]).unwrap();
    assert!(version.contains(r#""gitVersion": "v1.37.2""#), "{version}");
    let server = cluster
        .kubectl(&[
            "config",
            "view",
            "--minify",
            "-o",
            "jsonpath={.clusters[0].cluster.server}",
        ])
        .unwrap();
    assert!(server.starts_with("https://127.0.0.1:"), "{server}");
}

#[test]
fn deployment_pods_become_ready() {
    let cluster = Cluster::shared().unwrap();
    let ns = cluster.create_namespace("deploy").unwrap();
    // kwok plays the kubelet: the image is never pulled, so any name does.
    let deployment = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 3
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: registry.invalid/securevault/fake:1
"#;
    cluster
        .kubectl_stdin(&["apply", "-n", ns.name(), "-f", "-"], deployment)
        .unwrap();

    let pods_ready =
        r#"jsonpath={range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}"#;
    wait_until("3/3 pods Ready", CONVERGE, || {
        let out = cluster
            .kubectl(&[
                "get",
                "pods",
                "-n",
                ns.name(),
                "-l",
                "app=web",
                "-o",
                pods_ready,
            ])
            .unwrap();
        let ready = out.lines().filter(|l| *l == "True").count();
        (ready == 3, format!("{ready} Ready: {out:?}"))
    });
    let ready = cluster
        .kubectl(&[
            "get",
            "deployment",
            "web",
            "-n",
            ns.name(),
            "-o",
            "jsonpath={.status.readyReplicas}",
        ])
        .unwrap();
    assert_eq!(ready, "3");
}

/// Deletes a cluster-scoped CRD when the test ends, passed or not.
struct CrdGuard<'a> {
    cluster: &'a Cluster,
    name: String,
}

impl Drop for CrdGuard<'_> {
    fn drop(&mut self) {
        let _ = self.cluster.kubectl(&[
            "delete",
            "crd",
            &self.name,
            "--wait=false",
            "--ignore-not-found",
        ]);
    }
}

#[test]
fn cel_rule_of_a_crd_refuses_an_invalid_object() {
    let cluster = Cluster::shared().unwrap();
    let ns = cluster.create_namespace("cel").unwrap();
    // CRDs are cluster-wide: a group of its own per test run keeps parallel
    // test processes apart.
    let group = format!("{}.testkit.securevault.test", ns.name());
    let crd = format!(
        r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.{group}
spec:
  group: {group}
  scope: Namespaced
  names: {{plural: widgets, singular: widget, kind: Widget, listKind: WidgetList}}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            required: [minReplicas, maxReplicas]
            properties:
              minReplicas: {{type: integer}}
              maxReplicas: {{type: integer}}
            x-kubernetes-validations:
            - rule: "self.minReplicas <= self.maxReplicas"
              message: "minReplicas must not exceed maxReplicas"
"#
    );
    let _guard = CrdGuard {
        cluster,
        name: format!("widgets.{group}"),
    };
    cluster.kubectl_stdin(&["apply", "-f", "-"], &crd).unwrap();
    cluster
        .wait_established(&format!("widgets.{group}"))
        .unwrap();

    let widget = |name: &str, min: u32, max: u32| {
        format!(
            "apiVersion: {group}/v1\nkind: Widget\nmetadata:\n  name: {name}\n\
             spec:\n  minReplicas: {min}\n  maxReplicas: {max}\n"
        )
    };
    // kubectl's discovery may lag the Established condition for a moment;
    // retry only on "the type is not known yet".
    let mut valid_result = None;
    wait_until("the new type to be served", CONVERGE, || {
        match cluster.kubectl_stdin(
            &["create", "-n", ns.name(), "-f", "-"],
            &widget("good", 1, 3),
        ) {
            Ok(out) => {
                valid_result = Some(out);
                (true, String::new())
            }
            Err(e) if e.to_string().contains("no matches for kind") => (false, e.to_string()),
            Err(e) => panic!("a valid widget was refused: {e}"),
        }
    });
    assert!(valid_result.unwrap().contains("widget"));

    let err = cluster
        .kubectl_stdin(
            &["create", "-n", ns.name(), "-f", "-"],
            &widget("bad", 5, 2),
        )
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("minReplicas must not exceed maxReplicas"),
        "{err}"
    );
    assert!(err.contains("Invalid"), "{err}");
    let names = cluster
        .kubectl(&[
            "get",
            &format!("widgets.{group}"),
            "-n",
            ns.name(),
            "-o",
            "name",
        ])
        .unwrap();
    assert_eq!(names.trim(), format!("widget.{group}/good"));
}

#[test]
fn garbage_collector_deletes_dependents_of_a_deleted_owner() {
    let cluster = Cluster::shared().unwrap();
    let ns = cluster.create_namespace("gc").unwrap();
    let n = ns.name();
    cluster
        .kubectl(&[
            "create",
            "configmap",
            "owner",
            "-n",
            n,
            "--from-literal=role=owner",
        ])
        .unwrap();
    let uid = cluster
        .kubectl(&[
            "get",
            "configmap",
            "owner",
            "-n",
            n,
            "-o",
            "jsonpath={.metadata.uid}",
        ])
        .unwrap();
    assert!(!uid.is_empty());
    let dependent = format!(
        r#"
apiVersion: v1
kind: ConfigMap
metadata:
  name: dependent
  ownerReferences:
  - apiVersion: v1
    kind: ConfigMap
    name: owner
    uid: {uid}
data:
  role: dependent
"#
    );
    cluster
        .kubectl_stdin(&["apply", "-n", n, "-f", "-"], &dependent)
        .unwrap();
    let exists = || {
        cluster
            .kubectl(&[
                "get",
                "configmap",
                "dependent",
                "-n",
                n,
                "--ignore-not-found",
                "-o",
                "name",
            ])
            .unwrap()
    };
    assert_eq!(exists().trim(), "configmap/dependent");

    cluster
        .kubectl(&["delete", "configmap", "owner", "-n", n])
        .unwrap();
    wait_until(
        "the garbage collector to delete the dependent",
        CONVERGE,
        || {
            let out = exists();
            (out.trim().is_empty(), out)
        },
    );
}

#[test]
fn prometheus_operator_crds_are_installed() {
    let cluster = Cluster::shared().unwrap();
    // Not while operator/tests/optional_crds.rs has removed some.
    let _crds = cluster.crds_lock(false).unwrap();
    let established = r#"jsonpath={range .items[*]}{.metadata.name} {.status.conditions[?(@.type=="Established")].status}{"\n"}{end}"#;
    let out = cluster
        .kubectl(&[
            "get",
            "crd",
            "servicemonitors.monitoring.coreos.com",
            "prometheusrules.monitoring.coreos.com",
            "-o",
            established,
        ])
        .unwrap();
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        [
            "servicemonitors.monitoring.coreos.com True",
            "prometheusrules.monitoring.coreos.com True"
        ],
        "{out}"
    );

    // The real schema is enforced: a ServiceMonitor without its required
    // selector is refused, a complete one is accepted (dry run).
    let ns = cluster.create_namespace("monitoring").unwrap();
    let monitor = |spec: &str| {
        format!(
            "apiVersion: monitoring.coreos.com/v1\nkind: ServiceMonitor\n\
             metadata:\n  name: dataplane\nspec:\n{spec}"
        )
    };
    let good = monitor(
        "  selector:\n    matchLabels: {app: dataplane}\n  endpoints:\n  - port: metrics\n    path: /metrics\n",
    );
    cluster
        .kubectl_stdin(
            &["create", "--dry-run=server", "-n", ns.name(), "-f", "-"],
            &good,
        )
        .unwrap();
    let bad = monitor("  endpoints:\n  - port: http\n");
    let err = cluster
        .kubectl_stdin(
            &["create", "--dry-run=server", "-n", ns.name(), "-f", "-"],
            &bad,
        )
        .unwrap_err()
        .to_string();
    assert!(err.contains("selector"), "{err}");
}
