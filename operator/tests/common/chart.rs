//! The Helm chart as a cluster admin installs it, and then as its operator
//! sees the cluster: rendered with `helm template`, applied by the admin,
//! and used through a token of the chart's ServiceAccount (`kubectl create
//! token`), which holds exactly the rights the chart grants.

use std::{path::PathBuf, process::Command, time::Duration};

use serde_json::Value;
use testkit::{Cluster, Process, TempDir};

use super::{helm, repo_root};

/// The chart's directory in this repository.
pub fn chart() -> PathBuf {
    repo_root().join("charts/securevault-operator")
}

/// The chart rendered as release `release` in `namespace` with `--set`s,
/// as `helm install` would create it: without the `helm test` hook, and
/// without its CRD (`crds.enabled=false`, unless a `--set` says otherwise),
/// because the tests share the cluster's, which they apply from crds/.
pub fn template(release: &str, namespace: &str, sets: &[&str]) -> String {
    let chart = chart();
    let mut args = vec![
        "template",
        release,
        chart.to_str().unwrap(),
        "--namespace",
        namespace,
        "--skip-tests",
        "--set",
        "crds.enabled=false",
    ];
    for set in sets {
        args.extend(["--set", set]);
    }
    helm(&args)
}

/// The objects of a YAML stream such as a rendering; documents holding
/// only comments are left out.
pub fn objects(stream: &str) -> Vec<Value> {
    stream
        .split("\n---")
        .filter(|doc| {
            doc.lines().any(|l| {
                let l = l.trim();
                !l.is_empty() && l != "---" && !l.starts_with('#')
            })
        })
        .map(|doc| serde_saphyr::from_str(doc).unwrap_or_else(|e| panic!("{e}:\n{doc}")))
        .collect()
}

/// The operator Deployment's WATCH_NAMESPACE; `None` when it is not set,
/// which the operator takes as every namespace.
pub fn watch_namespace(objects: &[Value]) -> Option<String> {
    let deployment = objects
        .iter()
        .find(|o| o["kind"] == "Deployment")
        .expect("the chart renders a Deployment");
    deployment["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "WATCH_NAMESPACE")
        .map(|e| e["value"].as_str().unwrap().to_owned())
}

/// `Kind namespace/name` of each RBAC object (`Kind name` for a
/// cluster-scoped one), sorted.
pub fn rbac(objects: &[Value]) -> Vec<String> {
    let mut found: Vec<String> = objects
        .iter()
        .filter(|o| o["apiVersion"] == "rbac.authorization.k8s.io/v1")
        .map(|o| {
            let (kind, meta) = (o["kind"].as_str().unwrap(), &o["metadata"]);
            let name = meta["name"].as_str().unwrap();
            match meta["namespace"].as_str() {
                Some(ns) => format!("{kind} {ns}/{name}"),
                None => format!("{kind} {name}"),
            }
        })
        .collect();
    found.sort();
    found
}

/// Asserts that the API server refused a request of kubectl's with the
/// authorizer's 403 Forbidden (not, say, a 404: only a refusal proves that
/// the right is missing). Its message, `… is forbidden: User "…" cannot …`,
/// is what kubectl prints whatever the command.
pub fn assert_forbidden(result: Result<String, testkit::Error>, what: &str) {
    match result {
        Ok(out) => panic!("{what} was allowed: {out}"),
        Err(e) => assert!(
            e.to_string().contains(" is forbidden: User \""),
            "{what} failed, but not with 403 Forbidden: {e}"
        ),
    }
}

/// A release of the chart, named after its namespace and applied there by
/// the admin; `as_operator` is kubectl with a token of its ServiceAccount.
/// Dropping it deletes what it made outside namespaces (a ClusterRole and
/// its binding in cluster-wide mode); namespaces take the rest.
pub struct Release {
    cluster: &'static Cluster,
    pub namespace: String,
    /// The Deployment's WATCH_NAMESPACE (`None`: every namespace).
    pub watch_namespace: Option<String>,
    /// kubectl acting as the operator's pod does.
    pub as_operator: Cluster,
    /// The token of its ServiceAccount, which the operator's pod holds.
    pub token: String,
    kubeconfig: PathBuf,
    _dir: TempDir,
}

impl Release {
    /// Renders the chart as release `namespace` in `namespace` with `sets`,
    /// applies it as the admin (as `helm install` would, without keeping a
    /// release record), and builds a kubeconfig holding a one-hour token of
    /// its ServiceAccount.
    pub fn install(cluster: &'static Cluster, namespace: &str, sets: &[&str]) -> Release {
        let rendered = template(namespace, namespace, sets);
        cluster
            .kubectl_stdin(&["apply", "-f", "-"], &rendered)
            .unwrap();
        let account = format!("{namespace}-securevault-operator");
        let token = cluster
            .kubectl(&[
                "create",
                "token",
                &account,
                "-n",
                namespace,
                "--duration=1h",
            ])
            .unwrap();
        let view = |path: &str| {
            cluster
                .kubectl(&[
                    "config",
                    "view",
                    "--raw",
                    "--minify",
                    "--flatten",
                    "-o",
                    &format!("jsonpath={{.clusters[0].cluster.{path}}}"),
                ])
                .unwrap()
        };
        let dir = TempDir::new("chart-rbac").unwrap();
        let kubeconfig = dir.path().join("operator-kubeconfig");
        std::fs::write(
            &kubeconfig,
            format!(
                "apiVersion: v1
kind: Config
clusters:
- name: c
  cluster: {{server: '{}', certificate-authority-data: '{}'}}
users:
- name: operator
  user: {{token: '{}'}}
contexts:
- name: c
  context: {{cluster: c, user: operator}}
current-context: c
",
                view("server"),
                view("certificate-authority-data"),
                token.trim()
            ),
        )
        .unwrap();
        Release {
            cluster,
            namespace: namespace.to_owned(),
            watch_namespace: watch_namespace(&objects(&rendered)),
            as_operator: Cluster::new(&kubeconfig, cluster.kubectl_path()),
            token: token.trim().to_owned(),
            kubeconfig,
            _dir: dir,
        }
    }

    /// The operator binary started as the chart's Deployment starts it
    /// (its token, its WATCH_NAMESPACE, the Lease in the release's
    /// namespace), once it leads.
    pub fn run_operator(&self, identity: &str) -> Process {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_operator"));
        cmd.arg("run")
            .env("KUBECONFIG", &self.kubeconfig)
            .env("POD_NAMESPACE", &self.namespace)
            .env("POD_NAME", identity)
            .env("METRICS_ADDR", "127.0.0.1:0")
            // As in the Deployment: its TokenReviews and SubjectAccessReviews
            // need the chart's rules too.
            .env("METRICS_AUTH", "on")
            .env("LOG_LEVEL", "info");
        match &self.watch_namespace {
            Some(list) => cmd.env("WATCH_NAMESPACE", list),
            None => cmd.env_remove("WATCH_NAMESPACE"),
        };
        let operator = Process::spawn(&format!("operator-{identity}"), cmd).unwrap();
        operator
            .wait_for_line(|l| l.contains("became the leader"), Duration::from_secs(30))
            .unwrap();
        operator
    }
}

impl Drop for Release {
    fn drop(&mut self) {
        // Best effort: a cluster gone away must not turn a finished test
        // into a panic. The label names this release only.
        let _ = self.cluster.kubectl(&[
            "delete",
            "clusterrole,clusterrolebinding",
            "-l",
            &format!("app.kubernetes.io/instance={}", self.namespace),
            "--ignore-not-found",
        ]);
    }
}
