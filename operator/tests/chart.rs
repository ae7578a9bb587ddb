//! The Helm chart (charts/securevault-operator) against the real control
//! plane: it lints, renders in each RBAC mode, and the API server accepts
//! what it renders; its CRD is the repository's; and its RBAC is exactly
//! enough and no more. With the chart's ServiceAccount token (`kubectl
//! create token`), in each mode: the real operator brings the complete
//! sample to Ready and through an upgrade and the removal of optional
//! children without a single refused request, and outside the watched
//! namespaces the token can neither read a Secret nor create a workload;
//! only the opt-in cluster-wide mode can, everywhere.
//!
//! Helm is built from its Go module by tests/setup/helm.sh (cached).

// Test code: a failure is a panic with a message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::{process::Command, time::Duration};

use common::{chart::*, *};
use operator::api::{SecureVault, UpgradePhase};

/// The chart's CRD template renders the repository's CRD, with the
/// release's labels and, unless `crds.keep=false`, the annotation that keeps
/// it on uninstall; `crds.enabled=false` leaves it out.
#[test]
fn the_chart_s_crd_is_the_repository_s() {
    let ours: serde_json::Value = serde_saphyr::from_str(
        &std::fs::read_to_string(repo_root().join("crds/securevault.yaml")).unwrap(),
    )
    .unwrap();
    let chart = chart();
    let render = |sets: &[&str]| {
        let mut args = vec!["template", "x", chart.to_str().unwrap()];
        for set in sets {
            args.extend(["--set", set]);
        }
        objects(&helm(&args))
            .into_iter()
            .find(|o| o["kind"] == "CustomResourceDefinition")
    };
    let mut rendered = render(&[]).expect("the chart renders the CRD by default");
    let metadata = rendered["metadata"].as_object_mut().unwrap();
    let labels = metadata.remove("labels").unwrap();
    let annotations = metadata.remove("annotations").unwrap();
    assert_eq!(labels["app.kubernetes.io/instance"], "x");
    assert_eq!(annotations["helm.sh/resource-policy"], "keep");
    assert!(
        rendered == ours,
        "the chart's CRD template differs from crds/securevault.yaml: run make crds"
    );
    let unkept = render(&["crds.keep=false"]).unwrap();
    assert!(unkept["metadata"].get("annotations").is_none(), "{unkept}");
    assert!(render(&["crds.enabled=false"]).is_none());
}

/// The smallest Kubernetes minor whose API server evaluates each CEL
/// function the CRD's validation rules call (KEP-2876 and the libraries
/// added after it); rules of plain CEL need 1.25.
const CEL_FUNCTIONS: &[(&str, u32)] = &[
    ("isCIDR(", 31),
    ("isIP(", 31),
    ("cidr(", 31),
    ("ip(", 31),
    ("isQuantity(", 29),
    ("quantity(", 29),
    ("isURL(", 27),
    ("url(", 27),
];

#[test]
fn the_chart_s_kube_version_is_what_the_crd_s_rules_need() {
    let crd = std::fs::read_to_string(repo_root().join("crds/securevault.yaml")).unwrap();
    let rules: Vec<&str> = crd
        .lines()
        .filter_map(|l| l.trim().strip_prefix("rule: "))
        .collect();
    assert!(!rules.is_empty());
    let needed = CEL_FUNCTIONS
        .iter()
        .filter(|(f, _)| crd.contains(f))
        .map(|&(_, minor)| minor)
        .max()
        .unwrap_or(25);
    let chart_yaml = std::fs::read_to_string(chart().join("Chart.yaml")).unwrap();
    let floor = chart_yaml
        .lines()
        .find_map(|l| l.strip_prefix("kubeVersion: \">=1."))
        .and_then(|rest| rest.split('.').next())
        .and_then(|minor| minor.parse::<u32>().ok())
        .expect("Chart.yaml has kubeVersion: \">=1.N.0-0\"");
    assert_eq!(
        floor, needed,
        "the CRD's rules need Kubernetes 1.{needed}; Chart.yaml's kubeVersion says 1.{floor}"
    );
    // The tests' control plane is above it.
    assert!(chart_yaml.contains("the tests run 1.37"));
    assert!(
        std::fs::read_to_string(repo_root().join("tests/cluster/cluster.sh"))
            .unwrap()
            .contains("v1.37.")
    );
}

/// A platform team's values reach the operator's pod as a pod spec says
/// them: one registry for every image (also a parent chart's
/// `global.imageRegistry`), the data plane's default repository, more
/// environment, labels, a security context, topology spread, and the
/// ServiceAccount's annotations for a cloud's workload identity.
#[test]
fn platform_values_reach_the_operator_s_pod() {
    let rendered = objects(&template(
        "x",
        "sys",
        &[
            "global.imageRegistry=mirror.example.com:5000",
            "extraEnv[0].name=HTTPS_PROXY",
            "extraEnv[0].value=http://proxy:3128",
            "podLabels.team=mail",
            "podSecurityContext.fsGroup=65534",
            "topologySpreadConstraints[0].maxSkew=1",
            "topologySpreadConstraints[0].topologyKey=topology.kubernetes.io/zone",
            "topologySpreadConstraints[0].whenUnsatisfiable=ScheduleAnyway",
            "serviceAccount.annotations.iam\\.gke\\.io/gcp-service-account=sv@p.iam.gserviceaccount.com",
        ],
    ));
    let deployment = rendered.iter().find(|o| o["kind"] == "Deployment").unwrap();
    let pod = &deployment["spec"]["template"];
    let container = &pod["spec"]["containers"][0];
    assert_eq!(
        container["image"],
        "mirror.example.com:5000/securevault/operator:0.1.0"
    );
    let env = |name: &str| {
        container["env"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == name)
            .map(|e| e["value"].clone())
    };
    assert_eq!(
        env("DATAPLANE_IMAGE_REPOSITORY").unwrap(),
        "mirror.example.com:5000/securevault/dataplane"
    );
    assert_eq!(env("HTTPS_PROXY").unwrap(), "http://proxy:3128");
    assert_eq!(pod["metadata"]["labels"]["team"], "mail");
    assert_eq!(pod["spec"]["securityContext"]["fsGroup"], 65534);
    assert_eq!(pod["spec"]["securityContext"]["runAsNonRoot"], true);
    let spread = &pod["spec"]["topologySpreadConstraints"][0];
    assert_eq!(spread["topologyKey"], "topology.kubernetes.io/zone");
    assert_eq!(
        spread["labelSelector"]["matchLabels"]["app.kubernetes.io/instance"],
        "x"
    );
    let account = rendered
        .iter()
        .find(|o| o["kind"] == "ServiceAccount")
        .unwrap();
    assert_eq!(
        account["metadata"]["annotations"]["iam.gke.io/gcp-service-account"],
        "sv@p.iam.gserviceaccount.com"
    );
    // imageRegistry wins over the parent's, and a parent's other global
    // values are its own business.
    let own = template(
        "x",
        "sys",
        &[
            "global.imageRegistry=a.example.com",
            "imageRegistry=b.example.com",
            "global.other=1",
        ],
    );
    assert!(own.contains("image: \"b.example.com/securevault/operator:0.1.0\""));
    // Without a registry, the images are as the repositories say.
    let plain = template("x", "sys", &[]);
    assert!(plain.contains("image: \"securevault/operator:0.1.0\""));
    assert!(plain.contains("value: \"securevault/dataplane\""));
}

/// The three modes as rendered: where the operator's rules are granted (the
/// Role or ClusterRole named after the release, and its binding), and the
/// WATCH_NAMESPACE that keeps its watches inside them.
#[test]
fn each_rbac_mode_grants_rights_only_where_the_operator_watches() {
    for (sets, granted, watch) in [
        // The default: the release's own namespace, nothing cluster-wide.
        (
            vec![],
            vec![
                "Role sys/x-securevault-operator",
                "RoleBinding sys/x-securevault-operator",
            ],
            Some("sys"),
        ),
        (
            vec!["watchNamespaces={team-a,team-b}"],
            vec![
                "Role team-a/x-securevault-operator",
                "Role team-b/x-securevault-operator",
                "RoleBinding team-a/x-securevault-operator",
                "RoleBinding team-b/x-securevault-operator",
            ],
            Some("team-a,team-b"),
        ),
        (
            vec!["clusterWide=true"],
            vec![
                "ClusterRole x-securevault-operator",
                "ClusterRoleBinding x-securevault-operator",
            ],
            None,
        ),
    ] {
        let objects = objects(&template("x", "sys", &sets));
        // The chart's other RBAC objects (the leader election's, in the
        // release's namespace in every mode) hold none of those rules.
        let found: Vec<String> = rbac(&objects)
            .into_iter()
            .filter(|r| r.rsplit([' ', '/']).next() == Some("x-securevault-operator"))
            .collect();
        assert_eq!(found, granted, "with {sets:?}");
        assert_eq!(watch_namespace(&objects).as_deref(), watch, "with {sets:?}");
    }
}

/// `helm template x CHART ARGS…`, expected to fail: its standard error.
fn refused(args: &[&str]) -> String {
    let out = Command::new(helm_binary())
        .args(["template", "x", chart().to_str().unwrap()])
        .args(args)
        .output()
        .unwrap();
    assert!(!out.status.success(), "helm accepted {args:?}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn the_chart_refuses_values_it_cannot_honour_naming_them() {
    // The schema names the value.
    for (set, value) in [
        ("replicaCount=0", "replicaCount"),
        ("clusterWide=yes", "clusterWide"),
        ("crds.enabled=maybe", "crds"),
        ("imageRegistry=https://mirror", "imageRegistry"),
        (
            "dataPlane.image.repository=securevault/dataplane:0.1.0",
            "repository",
        ),
    ] {
        let error = refused(&["--set", set]);
        assert!(error.contains(value), "{set}: {error}");
    }
    // Cluster-wide rights with a list of namespaces: one of the two would
    // be a lie, so neither is guessed.
    let error = refused(&[
        "--set",
        "clusterWide=true",
        "--set",
        "watchNamespaces={team-a}",
    ]);
    assert!(
        error.contains("clusterWide") && error.contains("watchNamespaces"),
        "{error}"
    );
    // A variable the chart sets itself would be there twice.
    let error = refused(&["--set", "extraEnv[0].name=WATCH_NAMESPACE"]);
    assert!(error.contains("extraEnv sets WATCH_NAMESPACE"), "{error}");
}

#[tokio::test]
async fn the_chart_lints_and_the_api_server_accepts_every_rbac_mode() {
    helm(&["lint", "--strict", chart().to_str().unwrap()]);
    let w = World::new("chart-render").await;
    let watched = w.cluster.create_namespace("chart-watched").unwrap();
    let list = format!("watchNamespaces={{{}}}", watched.name());
    for sets in [vec![], vec![list.as_str()], vec!["clusterWide=true"]] {
        let rendered = template(w.ns(), w.ns(), &sets);
        w.cluster
            .kubectl_stdin(
                // Every object names its namespace (the Roles: the watched ones).
                &["apply", "--dry-run=server", "-f", "-"],
                &rendered,
            )
            .unwrap_or_else(|e| panic!("with {sets:?}: {e}"));
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
    // No namespace listed and no CIDR: the policy stays, letting through
    // only `helm test`'s pod, rather than going away with its last rule.
    let closed = objects(&template(
        w.ns(),
        w.ns(),
        &["networkPolicy.metricsNamespaces=null"],
    ));
    let policy = closed
        .iter()
        .find(|o| o["kind"] == "NetworkPolicy")
        .unwrap();
    let ingress = policy["spec"]["ingress"].as_array().unwrap();
    assert_eq!(ingress.len(), 1, "{ingress:?}");
    assert_eq!(
        ingress[0]["from"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/component"],
        "helm-test"
    );
    // `helm test`'s pod, which `template` leaves out as `helm install` does.
    let test_pod = helm(&[
        "template",
        w.ns(),
        chart().to_str().unwrap(),
        "--namespace",
        w.ns(),
        "--show-only",
        "templates/tests/operator-answers.yaml",
    ]);
    assert!(test_pod.contains("helm.sh/hook: test"));
    w.cluster
        .kubectl_stdin(&["apply", "--dry-run=server", "-f", "-"], &test_pod)
        .unwrap();
}

/// What the README's entry for `clusterWide` says the operator's token can
/// then do in every namespace, as `kubectl auth can-i` arguments.
const RIGHTS: &[Right] = &[
    ("get", "secrets"),
    ("list", "secrets"),
    ("create", "secrets"),
    ("patch", "secrets"),
    ("create", "deployments.apps"),
    ("patch", "deployments.apps"),
    ("create", "serviceaccounts"),
    ("create", "jobs.batch"),
    ("delete", "configmaps"),
];

/// What the token holds in no mode, not even cluster-wide: the blast radius
/// the README states is all of it. No Pod, StatefulSet or DaemonSet but
/// through the operator's own kinds, no RBAC of its own making (which would
/// widen its rights), and no deleting a Secret or a Deployment.
const NEVER: &[Right] = &[
    ("create", "pods"),
    ("create", "statefulsets.apps"),
    ("create", "daemonsets.apps"),
    ("create", "rolebindings.rbac.authorization.k8s.io"),
    ("create", "clusterrolebindings.rbac.authorization.k8s.io"),
    ("delete", "secrets"),
    ("delete", "deployments.apps"),
];

/// `kubectl auth can-i` verb and resource.
type Right = (&'static str, &'static str);

/// Which of some rights a token holds in a namespace, and which not.
#[derive(Debug, Default)]
struct Answers {
    granted: Vec<Right>,
    denied: Vec<Right>,
}

/// Asks, as the release's token, for each of `rights` in `namespace`.
fn can_i(release: &Release, namespace: &str, rights: &[Right]) -> Answers {
    let mut answers = Answers::default();
    for &(verb, resource) in rights {
        // `auth can-i` prints yes and exits 0, or prints no and exits 1;
        // for a cluster-scoped resource a warning that `-n` does not
        // apply follows the answer on its own line.
        let allowed = match release
            .as_operator
            .kubectl(&["auth", "can-i", verb, resource, "-n", namespace])
        {
            Ok(out) => out.trim() == "yes",
            Err(e) if e.to_string().lines().any(|l| l.trim() == "no") => false,
            Err(e) => panic!("auth can-i {verb} {resource}: {e}"),
        };
        if allowed {
            answers.granted.push((verb, resource));
        } else {
            answers.denied.push((verb, resource));
        }
    }
    answers
}

/// A new namespace with a Secret in it, which only an admin put there.
fn with_a_secret(w: &World, prefix: &str) -> Namespace {
    let ns = w.cluster.create_namespace(prefix).unwrap();
    w.cluster
        .kubectl(&[
            "create",
            "secret",
            "generic",
            "precious",
            "--from-literal=password=hunter2",
            "-n",
            ns.name(),
        ])
        .unwrap();
    ns
}

/// The release's token reads no Secret and creates no workload in
/// `namespace`, nor lists Secrets across the cluster: each request is
/// refused with 403.
fn assert_confined(release: &Release, namespace: &str) {
    let kubectl = |args: &[&str]| release.as_operator.kubectl(args);
    assert_forbidden(
        kubectl(&["get", "secret", "precious", "-n", namespace]),
        &format!("reading a Secret in {namespace}"),
    );
    assert_forbidden(
        kubectl(&[
            "create",
            "deployment",
            "intruder",
            "--image=registry.example.com/intruder:1",
            "-n",
            namespace,
        ]),
        &format!("creating a Deployment in {namespace}"),
    );
    assert_forbidden(
        kubectl(&["get", "secrets", "--all-namespaces"]),
        "listing the Secrets of every namespace",
    );
    let granted = can_i(release, namespace, RIGHTS).granted;
    assert!(granted.is_empty(), "granted in {namespace}: {granted:?}");
}

#[tokio::test]
async fn by_default_the_operator_s_token_reads_and_writes_only_in_the_release_namespace() {
    // The default install: no values. Its namespace holds the operator and
    // the vaults it manages.
    let w = World::new("chart-default").await;
    let outside = with_a_secret(&w, "chart-outside");
    let release = Release::install(w.cluster, w.ns(), &[]);
    assert_confined(&release, outside.name());
    assert_eq!(release.watch_namespace.as_deref(), Some(w.ns()));
    // Not vacuous: the same questions in the watched namespace say yes.
    let denied = can_i(&release, w.ns(), RIGHTS).denied;
    assert!(denied.is_empty(), "denied at home: {denied:?}");

    // The one Grafana dashboard of every SecureVault, labelled for
    // kube-prometheus-stack's sidecar, holding what the operator generates.
    let dashboard: serde_json::Value = serde_json::from_str(
        &w.kubectl(&[
            "get",
            "configmap",
            &format!("{}-securevault-operator-dashboard", w.ns()),
            "-o",
            "json",
        ])
        .unwrap(),
    )
    .unwrap();
    assert_eq!(dashboard["metadata"]["labels"]["grafana_dashboard"], "1");
    assert_eq!(
        dashboard["data"]["securevault.json"].as_str().unwrap(),
        operator::build::dashboard::file().trim_end()
    );

    // And that is enough for the operator, started as the Deployment
    // starts it, to make a SecureVault Ready.
    let operator = release.run_operator("rbac-default");
    let sample = std::fs::read_to_string(repo_root().join("config/samples/minimal.yaml")).unwrap();
    w.apply(&sample).unwrap();
    wait_ready(&w, "mail").await;
    let log = operator.output_lines().join("\n");
    assert!(
        log.contains("watching only these namespaces") && log.contains(w.ns()),
        "the operator should say which namespaces it watches:\n{log}"
    );
    assert!(
        !log.to_lowercase().contains("forbidden"),
        "the operator was refused something:\n{log}"
    );
}

#[tokio::test]
async fn cluster_wide_the_operator_s_token_reads_and_writes_in_every_namespace() {
    // What the README warns of, shown: why cluster-wide is opt-in. The
    // operator itself is not run: watching every namespace of the shared
    // test cluster, it would reconcile other tests' SecureVaults.
    let w = World::new("chart-cluster-wide").await;
    let elsewhere = with_a_secret(&w, "chart-elsewhere");
    let release = Release::install(w.cluster, w.ns(), &["clusterWide=true"]);
    assert_eq!(release.watch_namespace, None);

    let kubectl = |args: &[&str]| release.as_operator.kubectl(args).unwrap();
    let password = kubectl(&[
        "get",
        "secret",
        "precious",
        "-n",
        elsewhere.name(),
        "-o",
        "jsonpath={.data.password}",
    ]);
    assert_eq!(password, "aHVudGVyMg==", "hunter2, base64");
    kubectl(&[
        "create",
        "deployment",
        "intruder",
        "--image=registry.example.com/intruder:1",
        "-n",
        elsewhere.name(),
    ]);
    let every = kubectl(&["get", "secrets", "--all-namespaces", "-o", "name"]);
    assert!(every.contains("secret/precious"), "{every}");
    let denied = can_i(&release, elsewhere.name(), RIGHTS).denied;
    assert!(denied.is_empty(), "the README overstates: {denied:?}");
    let beyond = can_i(&release, elsewhere.name(), NEVER).granted;
    assert!(beyond.is_empty(), "the README understates: {beyond:?}");
}

#[tokio::test]
async fn the_operator_needs_no_more_than_the_chart_s_rbac() {
    // The operator's own namespace holds the release; the vaults live in
    // another, the one namespace listed, which the chart grants through a
    // Role only. Neither the release's namespace (unlisted) nor any other
    // is open to the token.
    let w = World::new("chart-vaults").await;
    let home = with_a_secret(&w, "chart-operator");
    let outside = with_a_secret(&w, "chart-outside");
    let release = Release::install(
        w.cluster,
        home.name(),
        &[&format!("watchNamespaces={{{}}}", w.ns())],
    );
    assert_eq!(release.watch_namespace.as_deref(), Some(w.ns()));
    assert_confined(&release, home.name());
    assert_confined(&release, outside.name());

    let operator = release.run_operator("rbac");
    let sample = std::fs::read_to_string(repo_root().join("config/samples/complete.yaml")).unwrap();
    w.apply(&sample).unwrap();
    wait_ready(&w, "mail").await;
    // The chart's read of the cluster's Prometheus objects is enough for
    // MonitoringReady to say whether one selects the vault's objects (after
    // the labels, a verdict).
    let api = w.api::<SecureVault>();
    eventually(
        Duration::from_secs(30),
        "MonitoringReady judging the cluster's Prometheuses",
        || async {
            let sv = api.get_opt("mail").await.ok()??;
            Some(sv.status?.condition("MonitoringReady")?.message.clone())
        },
        |m: &String| m.contains("); "),
    )
    .await;
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
    bind_cluster_role(
        w.cluster,
        home.name(),
        "scraper",
        &format!("{}-securevault-operator-metrics-reader", home.name()),
    );
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
    assert_eq!(http_get_as(&addr, "/metrics", Some(&release.token)).0, 403);

    let log = operator.output_lines().join("\n");
    assert!(
        !log.to_lowercase().contains("forbidden"),
        "the operator was refused something:\n{log}"
    );
}

/// Installed beside the cluster's CRD (`crds.enabled=false`: the tests
/// share the one applied from crds/; operator/tests/chart_upgrade.rs tests
/// the chart's own).
#[tokio::test]
async fn helm_installs_and_uninstalls_the_operator() {
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
        "crds.enabled=false",
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
    // The default install: rights in its own namespace; cluster-wide only
    // the metrics' reviews (those APIs exist nowhere else), the role a
    // scraper is bound to, which nobody holds until the admin binds it, and
    // reading Prometheus objects (to say which one selects a vault).
    let cluster_wide = w
        .cluster
        .kubectl(&[
            "get",
            "clusterrole,clusterrolebinding",
            "-l",
            &format!("app.kubernetes.io/instance={release}"),
            "-o",
            "name",
        ])
        .unwrap();
    let prefix = format!("{release}-securevault-operator");
    assert_eq!(
        cluster_wide.trim(),
        format!(
            "clusterrole.rbac.authorization.k8s.io/{prefix}-metrics-auth\n\
             clusterrole.rbac.authorization.k8s.io/{prefix}-metrics-reader\n\
             clusterrole.rbac.authorization.k8s.io/{prefix}-prometheuses\n\
             clusterrolebinding.rbac.authorization.k8s.io/{prefix}-metrics-auth\n\
             clusterrolebinding.rbac.authorization.k8s.io/{prefix}-prometheuses"
        ),
        "the default install is namespaced"
    );
    let reviews = w
        .cluster
        .kubectl(&[
            "get",
            "clusterrole",
            &format!("{prefix}-metrics-auth"),
            "-o",
            "jsonpath={range .rules[*]}{.resources} {.verbs}{\"\\n\"}{end}",
        ])
        .unwrap();
    assert_eq!(
        reviews.trim(),
        "[\"tokenreviews\"] [\"create\"]\n[\"subjectaccessreviews\"] [\"create\"]",
        "the reviews' ClusterRole grants creating reviews and nothing else"
    );
    let prometheuses = w
        .cluster
        .kubectl(&[
            "get",
            "clusterrole",
            &format!("{prefix}-prometheuses"),
            "-o",
            "jsonpath={range .rules[*]}{.apiGroups} {.resources} {.verbs}{\"\\n\"}{end}",
        ])
        .unwrap();
    assert_eq!(
        prometheuses.trim(),
        "[\"monitoring.coreos.com\"] [\"prometheuses\"] [\"get\",\"list\",\"watch\"]",
        "the Prometheus objects' ClusterRole grants reading them and nothing else"
    );

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
    // Not the release's, the CRD stays.
    w.cluster
        .kubectl(&["get", "crd", "securevaults.securevault.io"])
        .unwrap();
}

/// `make k8s-deploy` as the quick start runs it (no HELM_ARGS), in
/// namespaces of its own: the chart installed, watching the sample's
/// namespace, the minimal sample Ready, reconciled (kwok runs no container)
/// by the operator the script starts on this host with the chart's
/// ServiceAccount; `k8s-undeploy` stops that process.
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
            .env_remove("HELM_ARGS")
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
