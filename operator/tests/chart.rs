//! The Helm chart (charts/securevault-operator) against the real control
//! plane: it lints, renders in both RBAC modes, and the API server accepts
//! what it renders; its CRD is the repository's; and its RBAC is exactly
//! enough: the real operator, running with the chart's ServiceAccount token,
//! brings the complete sample to Ready and through an upgrade and the
//! removal of optional children without a single refused request.
//!
//! Helm is built from its Go module by tests/setup/helm.sh (cached).

// Test code: a failure is a panic with a message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::{path::PathBuf, process::Command, time::Duration};

use common::*;
use operator::api::{SecureVault, UpgradePhase};

fn chart() -> PathBuf {
    repo_root().join("charts/securevault-operator")
}

/// The chart rendered as release `release` in `namespace` with `--set`s.
fn template(release: &str, namespace: &str, sets: &[&str]) -> String {
    let chart = chart();
    let mut args = vec![
        "template",
        release,
        chart.to_str().unwrap(),
        "--namespace",
        namespace,
    ];
    for set in sets {
        args.extend(["--set", set]);
    }
    helm(&args)
}

#[test]
fn the_chart_s_crd_is_the_repository_s() {
    let ours = std::fs::read_to_string(repo_root().join("crds/securevault.yaml")).unwrap();
    let chart_s = std::fs::read_to_string(chart().join("crds/securevault.yaml")).unwrap();
    assert!(
        ours == chart_s,
        "charts/securevault-operator/crds/securevault.yaml differs from crds/securevault.yaml: copy it (make crds does)"
    );
}

#[tokio::test]
async fn the_chart_lints_and_the_api_server_accepts_both_rbac_modes() {
    helm(&["lint", "--strict", chart().to_str().unwrap()]);
    let w = World::new("chart-render").await;
    let watched = w.cluster.create_namespace("chart-watched").unwrap();
    for (sets, cluster_wide) in [
        (vec![], true),
        (
            vec![format!("watchNamespaces={{{}}}", watched.name())],
            false,
        ),
    ] {
        let sets: Vec<&str> = sets.iter().map(String::as_str).collect();
        let rendered = template(w.ns(), w.ns(), &sets);
        // The watch rules' ClusterRole; the metrics' review rights are
        // cluster-wide in both modes (metrics-rbac.yaml).
        let watch_role = format!(
            "kind: ClusterRole\nmetadata:\n  name: {}-securevault-operator\n",
            w.ns()
        );
        assert_eq!(rendered.contains(&watch_role), cluster_wide);
        if !cluster_wide {
            assert!(rendered.contains(&format!(
                "WATCH_NAMESPACE\n          value: \"{}\"",
                watched.name()
            )));
        }
        w.cluster
            .kubectl_stdin(
                // Every object names its namespace (the Roles: the watched ones).
                &["apply", "--dry-run=server", "-f", "-"],
                &rendered,
            )
            .unwrap();
    }
    // The metrics' settings: a ServiceMonitor sending a Secret's token, the
    // nodes' CIDRs let through for the probes; the API server (with the
    // Prometheus Operator's CRDs) accepts both.
    let scraped = template(
        w.ns(),
        w.ns(),
        &[
            "metrics.serviceMonitor.enabled=true",
            "metrics.serviceMonitor.tokenSecret.name=scrape-token",
            "metrics.serviceMonitor.tokenSecret.key=token",
            "networkPolicy.probesFrom={10.0.0.0/8}",
        ],
    );
    assert!(scraped.contains("credentials: {name: scrape-token, key: token}"));
    assert!(!scraped.contains("bearerTokenFile"), "one token, not two");
    assert!(scraped.contains("- ipBlock: {cidr: \"10.0.0.0/8\"}"));
    w.cluster
        .kubectl_stdin(&["apply", "--dry-run=server", "-f", "-"], &scraped)
        .unwrap();
    // No namespace listed and no CIDR: the policy stays, denying every
    // connection, rather than going away with its last rule.
    let closed = template(w.ns(), w.ns(), &["networkPolicy.metricsNamespaces=null"]);
    assert!(closed.contains("policyTypes: [Ingress]\n  ingress: []\n"));

    // The schema refuses what the chart cannot honour, naming the value.
    let out = Command::new(helm_binary())
        .args([
            "template",
            "x",
            chart().to_str().unwrap(),
            "--set",
            "replicaCount=0",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("replicaCount"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn the_operator_needs_no_more_than_the_chart_s_rbac() {
    // The operator's own namespace holds the release; the vaults live in
    // another, which the chart grants through a Role only.
    let w = World::new("chart-vaults").await;
    let home = w.cluster.create_namespace("chart-operator").unwrap();
    let rendered = template(
        home.name(),
        home.name(),
        &[&format!("watchNamespaces={{{}}}", w.ns())],
    );
    // The release's ClusterRoles and the scraper's binding go, pass or fail.
    let _cluster_scoped = ClusterScoped {
        cluster: w.cluster,
        instance: home.name().to_owned(),
    };
    w.cluster
        .kubectl_stdin(&["apply", "-f", "-"], &rendered)
        .unwrap();
    let account = format!("{}-securevault-operator", home.name());
    let token = w
        .cluster
        .kubectl(&[
            "create",
            "token",
            &account,
            "-n",
            home.name(),
            "--duration=1h",
        ])
        .unwrap();
    let view = |path: &str| {
        w.cluster
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
    let dir = testkit::TempDir::new("chart-rbac").unwrap();
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

    let mut cmd = Command::new(env!("CARGO_BIN_EXE_operator"));
    cmd.arg("run")
        .env("KUBECONFIG", &kubeconfig)
        .env("WATCH_NAMESPACE", w.ns())
        .env("POD_NAMESPACE", home.name())
        .env("POD_NAME", "rbac")
        .env("METRICS_ADDR", "127.0.0.1:0")
        // Its TokenReviews and SubjectAccessReviews need the chart's rules too.
        .env("METRICS_AUTH", "on")
        .env("LOG_LEVEL", "info");
    let operator = Process::spawn("operator-rbac", cmd).unwrap();
    operator
        .wait_for_line(|l| l.contains("became the leader"), Duration::from_secs(30))
        .unwrap();

    let sample = std::fs::read_to_string(repo_root().join("config/samples/complete.yaml")).unwrap();
    w.apply(&sample).unwrap();
    wait_ready(&w, "mail").await;
    // Then what needs the rest of the rules: an upgrade (its migration Job)
    // and optional children removed (deletes).
    w.kubectl(&[
        "patch",
        "sv",
        "mail",
        "--type=merge",
        "-p",
        r#"{"spec":{"version":"0.2.0","image":"registry.example.com/securevault/dataplane:0.2.0","backup":null,"autoscaling":null,"replicas":2,"networkPolicy":null,"monitoring":{"enabled":false},"upgrade":{"verifySeconds":1}}}"#,
    ])
    .unwrap();
    let api = w.api::<SecureVault>();
    eventually(
        Duration::from_secs(60),
        "the upgrade to 0.2.0 Succeeded",
        || async { api.get_opt("mail").await.ok().flatten() },
        |sv: &SecureVault| {
            sv.status
                .as_ref()
                .and_then(|s| s.upgrade.as_ref())
                .is_some_and(|u| u.phase == UpgradePhase::Succeeded)
        },
    )
    .await;
    let sv = wait_ready(&w, "mail").await;
    assert_eq!(
        sv.status.unwrap().condition("Degraded").unwrap().status,
        "False"
    );
    for gone in [
        "cronjob/mail-backup",
        "hpa/mail",
        "networkpolicy/mail",
        "configmap/mail-dashboard",
        "servicemonitor/mail",
    ] {
        let out = w
            .kubectl(&["get", gone, "--ignore-not-found", "-o", "name"])
            .unwrap();
        assert!(out.trim().is_empty(), "{gone} still exists");
    }
    // A scraper bound to the chart's metrics-reader reads the metrics; the
    // operator's own account may not.
    w.cluster
        .kubectl(&["create", "serviceaccount", "scraper", "-n", home.name()])
        .unwrap();
    w.cluster
        .kubectl_stdin(
            &["apply", "-f", "-"],
            &format!(
                "apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: {ns}-scraper
  labels: {{app.kubernetes.io/instance: {ns}}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: {ns}-securevault-operator-metrics-reader}}
subjects: [{{kind: ServiceAccount, name: scraper, namespace: {ns}}}]
",
                ns = home.name()
            ),
        )
        .unwrap();
    let scraper = w
        .cluster
        .kubectl(&["create", "token", "scraper", "-n", home.name()])
        .unwrap();
    let addr = metrics_addr(&operator);
    let scraped = eventually(
        Duration::from_secs(60),
        "the scraper's token reads /metrics",
        || async { Some(http_get_as(&addr, "/metrics", Some(scraper.trim()))) },
        // Until the binding is in force: 403, kept 30 s.
        |(status, _)| *status == 200,
    )
    .await;
    assert!(scraped.1.contains("securevault_reconciles_total"));
    assert_eq!(http_get_as(&addr, "/metrics", Some(token.trim())).0, 403);

    let log = operator.output_lines().join("\n");
    assert!(
        !log.to_lowercase().contains("forbidden"),
        "the operator was refused something:\n{log}"
    );
}

#[tokio::test]
async fn helm_installs_and_uninstalls_the_operator_and_the_crd_stays() {
    let w = World::new("chart-install").await;
    let kubeconfig = w.cluster.kubeconfig().to_str().unwrap().to_owned();
    let release = w.ns().to_owned();
    helm(&[
        "install",
        &release,
        chart().to_str().unwrap(),
        "--namespace",
        w.ns(),
        "--kubeconfig",
        &kubeconfig,
        "--set",
        &format!("watchNamespaces={{{}}}", w.ns()),
        "--wait",
        "--timeout",
        "120s",
    ]);
    let status = helm(&[
        "status",
        &release,
        "-n",
        w.ns(),
        "--kubeconfig",
        &kubeconfig,
    ]);
    assert!(status.contains("STATUS: deployed"), "{status}");
    // kwok runs the pods as Ready: both replicas are there.
    let ready = w
        .kubectl(&[
            "get",
            "deployment",
            &format!("{release}-securevault-operator"),
            "-o",
            "jsonpath={.status.readyReplicas}",
        ])
        .unwrap();
    assert_eq!(ready, "2");

    helm(&[
        "uninstall",
        &release,
        "-n",
        w.ns(),
        "--kubeconfig",
        &kubeconfig,
        "--wait",
    ]);
    let left = w
        .kubectl(&["get", "deployment,serviceaccount,role", "-o", "name"])
        .unwrap();
    assert!(
        !left.contains("securevault-operator"),
        "left after uninstall: {left}"
    );
    // Helm never deletes a CRD from crds/: the SecureVaults stay.
    w.cluster
        .kubectl(&["get", "crd", "securevaults.securevault.io"])
        .unwrap();
}

/// `make k8s-deploy` as the quick start runs it, in namespaces of its own:
/// the chart installed, the minimal sample Ready, reconciled (kwok runs no
/// container) by the operator the script starts on this host with the
/// chart's ServiceAccount; `k8s-undeploy` stops that process.
#[tokio::test]
async fn make_k8s_deploy_installs_the_chart_and_the_minimal_sample_becomes_ready() {
    let w = World::new("deploy-vaults").await;
    let home = w.cluster.create_namespace("deploy-operator").unwrap();
    let state = testkit::TempDir::new("k8s-deploy").unwrap();
    let script = repo_root().join("scripts/k8s-deploy.sh");
    let run = |args: &[&str]| {
        let out = Command::new(&script)
            .args(args)
            .env("KUBECONFIG", w.cluster.kubeconfig())
            .env("RELEASE", home.name())
            .env("NAMESPACE", home.name())
            .env("SAMPLE_NAMESPACE", w.ns())
            .env("HELM_ARGS", format!("--set watchNamespaces={{{}}}", w.ns()))
            .env("LOCAL_OPERATOR_DIR", state.path())
            .env("LOCAL_METRICS_ADDR", "127.0.0.1:0")
            .env("OPERATOR_BIN", env!("CARGO_BIN_EXE_operator"))
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success(),
            "k8s-deploy.sh {args:?} failed:\n{text}"
        );
        text
    };

    let output = run(&[]);
    assert!(
        output.contains("running the operator on this host"),
        "{output}"
    );
    let sv = wait_ready(&w, "mail").await;
    assert_eq!(sv.spec.version, "0.1.0");
    let log = std::fs::read_to_string(state.path().join("operator.log")).unwrap();
    assert!(log.contains("became the leader"), "{log}");
    assert!(
        !log.to_lowercase().contains("forbidden"),
        "the chart's ServiceAccount lacked a right:\n{log}"
    );
    let pid: i32 = std::fs::read_to_string(state.path().join("pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // Run twice, as users do: an upgrade of the release, one operator.
    run(&[]);
    assert!(
        !process_alive(pid),
        "the first operator should have been replaced"
    );

    let pid: i32 = std::fs::read_to_string(state.path().join("pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(process_alive(pid));
    run(&["undeploy"]);
    assert!(
        !process_alive(pid),
        "k8s-undeploy left the operator running"
    );
    helm(&[
        "uninstall",
        home.name(),
        "-n",
        home.name(),
        "--kubeconfig",
        w.cluster.kubeconfig().to_str().unwrap(),
    ]);
}

/// Whether a process with this pid exists (and is not a zombie).
fn process_alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|stat| stat.split_whitespace().nth(2).is_none_or(|s| s != "Z"))
}
