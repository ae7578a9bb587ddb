//! GitOps for real: a real Argo CD (application controller and repo server,
//! built from Go modules by `tests/setup/argocd.sh`) against the real control
//! plane, with our health check from `config/argocd/argocd-cm.yaml` and the
//! example `config/argocd/application.yaml` pointed at a local git
//! repository. The real operator makes the SecureVaults it syncs Ready, and
//! their data-plane pods run for real on the real node (`NODE=real`), so
//! Healthy means that the kubelet saw them ready.
//!
//! Part of `make test-e2e` and of `make test`.

// Test code: a failure here is a failed test, so panicking is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::OnceLock,
    time::{Duration, Instant},
};

use common::{node::*, *};
use k8s_openapi::api::{apps::v1::Deployment, core::v1::Pod};
use kube::{ResourceExt, api::ListParams};
use operator::api::SecureVault;
use serde_json::Value;
use testkit::{Redis, TempDir, free_port};

/// Argo CD's two processes that matter for syncing and health, with the
/// Redis they share, configured in a namespace of their own.
struct ArgoCd {
    cluster: &'static Cluster,
    ns: Namespace,
    // Dropped (killed) before the Redis and the directory they use.
    controller: Process,
    repo_server: Process,
    _redis: Redis,
    _dir: TempDir,
}

impl ArgoCd {
    fn start(cluster: &'static Cluster) -> ArgoCd {
        let argocd = testkit::bins::built_by_script("tests/setup/argocd.sh", &[]).unwrap();
        let bin_dir = argocd.parent().unwrap().to_path_buf();
        install_argocd_crds(cluster, &bin_dir);
        let ns = cluster.create_namespace("argocd").unwrap();
        cluster
            .kubectl_stdin(
                &["apply", "-n", ns.name(), "-f", "-"],
                &argocd_settings(ns.name()),
            )
            .unwrap();

        let redis = Redis::start().unwrap();
        let dir = TempDir::new("argocd").unwrap();
        let repo_port = free_port();
        let repo_metrics = free_port();
        let mut repo = Command::new(bin_dir.join("argocd-repo-server"));
        repo.args([
            "--disable-tls",
            "--redis",
            &format!("127.0.0.1:{}", redis.port()),
        ])
        .args(["--port", &repo_port.to_string()])
        .args(["--metrics-port", &repo_metrics.to_string()])
        // A new commit is seen at the next refresh, not minutes later.
        .args(["--revision-cache-expiration", "5s"])
        .env("ARGOCD_GPG_ENABLED", "false");
        // Paths the repo server would otherwise take under /app/config.
        for (var, sub) in [
            ("ARGOCD_TLS_DATA_PATH", "tls"),
            ("ARGOCD_SSH_DATA_PATH", "ssh"),
            ("ARGOCD_GNUPGHOME", "gnupg"),
            ("ARGOCD_GPG_DATA_PATH", "gpg"),
            ("ARGOCD_PLUGINSOCKFILEPATH", "plugins"),
        ] {
            let path = dir.path().join(sub);
            std::fs::create_dir_all(&path).unwrap();
            repo.env(var, path);
        }
        let repo_server = Process::spawn("argocd-repo-server", repo).unwrap();
        wait_healthz(&repo_server, repo_metrics);

        let controller_metrics = free_port();
        let mut controller = Command::new(bin_dir.join("argocd-application-controller"));
        controller
            .args(["--namespace", ns.name()])
            .args(["--redis", &format!("127.0.0.1:{}", redis.port())])
            .args(["--repo-server", &format!("127.0.0.1:{repo_port}")])
            .arg("--repo-server-plaintext")
            .args(["--metrics-port", &controller_metrics.to_string()])
            // Off by default in v3: without it the Application's
            // status.resources carry no health.
            .arg("--persist-resource-health")
            .args(["--app-resync", "15", "--app-resync-jitter", "0"])
            // The destination https://kubernetes.default.svc is "the cluster
            // I run in": this makes the controller take it from KUBECONFIG.
            .env("ARGOCD_FAKE_IN_CLUSTER", "true")
            .env("KUBECONFIG", cluster.kubeconfig());
        let controller = Process::spawn("argocd-application-controller", controller).unwrap();
        wait_healthz(&controller, controller_metrics);

        ArgoCd {
            cluster,
            ns,
            controller,
            repo_server,
            _redis: redis,
            _dir: dir,
        }
    }

    /// Applies the example Application of `config/argocd/`, pointed at
    /// `repo` (directory `path`) and at `namespace`.
    fn create_application(&self, repo: &GitRepo, path: &str, namespace: &str) {
        let example =
            std::fs::read_to_string(repo_root().join("config/argocd/application.yaml")).unwrap();
        let yaml = replace_once(
            &example,
            "namespace: argocd",
            &format!("namespace: {}", self.ns.name()),
        );
        let yaml = replace_once(
            &yaml,
            "repoURL: https://git.example.com/platform/securevaults.git",
            &format!("repoURL: {}", repo.url()),
        );
        let yaml = replace_once(&yaml, "path: team-a", &format!("path: {path}"));
        let yaml = replace_once(
            &yaml,
            "namespace: team-a",
            &format!("namespace: {namespace}"),
        );
        self.cluster
            .kubectl_stdin(&["apply", "-n", self.ns.name(), "-f", "-"], &yaml)
            .unwrap();
    }

    /// Asks Argo CD to look at git now rather than at its next resync, as
    /// a webhook from the git server would.
    fn refresh(&self) {
        self.cluster
            .kubectl(&[
                "annotate",
                "-n",
                self.ns.name(),
                "--overwrite",
                "application/securevaults",
                "argocd.argoproj.io/refresh=normal",
            ])
            .unwrap();
    }

    fn application(&self) -> Value {
        let json = self
            .cluster
            .kubectl(&[
                "get",
                "-n",
                self.ns.name(),
                "application/securevaults",
                "-o",
                "json",
            ])
            .unwrap();
        serde_json::from_str(&json).unwrap()
    }

    /// Polls the Application until `check` holds on what Argo CD reports.
    async fn wait_for(&self, what: &str, check: impl Fn(&AppState) -> bool) -> AppState {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let app = AppState::of(&self.application());
            if check(&app) {
                return app;
            }
            if Instant::now() > deadline {
                panic!(
                    "Argo CD never reported {what}; last seen: {app:#?}\n\
                     application controller log:\n{}\nrepo server log:\n{}",
                    self.controller.log_tail(),
                    self.repo_server.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

/// What Argo CD says about the Application and the one SecureVault in it.
#[derive(Debug, Default)]
struct AppState {
    sync: String,
    revision: String,
    health: String,
    /// Kinds of the resources Argo CD tracks (applied from git).
    tracked: Vec<String>,
    vault_health: String,
    vault_message: String,
    operation: String,
}

impl AppState {
    fn of(app: &Value) -> AppState {
        let s = |v: &Value| v.as_str().unwrap_or_default().to_owned();
        let status = &app["status"];
        let resources = status["resources"].as_array().cloned().unwrap_or_default();
        let vault = resources
            .iter()
            .find(|r| r["kind"] == "SecureVault")
            .cloned()
            .unwrap_or_default();
        AppState {
            sync: s(&status["sync"]["status"]),
            revision: s(&status["sync"]["revision"]),
            health: s(&status["health"]["status"]),
            tracked: resources.iter().map(|r| s(&r["kind"])).collect(),
            vault_health: s(&vault["health"]["status"]),
            vault_message: s(&vault["health"]["message"]),
            operation: format!(
                "{} {}",
                s(&status["operationState"]["phase"]),
                s(&status["operationState"]["message"])
            ),
        }
    }

    fn synced_at(&self, revision: &str) -> bool {
        self.sync == "Synced" && self.revision == revision
    }
}

/// A git repository in a temporary directory, served to Argo CD as a
/// `file://` URL (which needs no repository Secret).
struct GitRepo {
    dir: TempDir,
}

impl GitRepo {
    fn new() -> GitRepo {
        let repo = GitRepo {
            dir: TempDir::new("gitops-repo").unwrap(),
        };
        repo.git(&["init", "--quiet", "--initial-branch", "main"]);
        repo
    }

    fn url(&self) -> String {
        format!("file://{}", self.dir.path().display())
    }

    /// Writes `file` and commits it; returns the commit's hash.
    fn commit(&self, file: &str, content: &str, message: &str) -> String {
        let path = self.dir.path().join(file);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, content).unwrap();
        self.git(&["add", file]);
        self.git(&["commit", "--quiet", "-m", message]);
        self.git(&["rev-parse", "HEAD"]).trim().to_owned()
    }

    fn git(&self, args: &[&str]) -> String {
        let out = Command::new("git")
            .arg("-C")
            .arg(self.dir.path())
            .args([
                "-c",
                "user.name=SecureVault tests",
                "-c",
                "user.email=tests@securevault.io",
            ])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }
}

/// Argo CD's Application and AppProject CRDs, from its module, once per
/// test process (cluster-scoped; left installed like ours).
fn install_argocd_crds(cluster: &Cluster, bin_dir: &Path) {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        let crds: PathBuf = bin_dir.join("crds");
        cluster
            .kubectl(&[
                "apply",
                "--server-side",
                "--force-conflicts",
                "-f",
                crds.to_str().unwrap(),
            ])
            .unwrap();
        for crd in ["applications.argoproj.io", "appprojects.argoproj.io"] {
            cluster
                .wait_established(crd)
                .unwrap_or_else(|e| panic!("{crd} is not Established: {e}"));
        }
    });
}

/// The settings Argo CD reads from its namespace: our health check in
/// `argocd-cm` (from the snippet users are told to apply), the server key,
/// and the `default` project, which Argo CD's API server would create (it
/// does not run here).
fn argocd_settings(ns: &str) -> String {
    let snippet =
        std::fs::read_to_string(repo_root().join("config/argocd/argocd-cm.yaml")).unwrap();
    // Argo CD only reads ConfigMaps and Secrets labelled part-of: argocd.
    let meta = |kind: &str, name: &str| {
        format!(
            "apiVersion: v1\nkind: {kind}\nmetadata:\n  name: {name}\n  labels: {{app.kubernetes.io/part-of: argocd}}\n"
        )
    };
    let mut random = [0u8; 24];
    std::io::Read::read_exact(
        &mut std::fs::File::open("/dev/urandom").unwrap(),
        &mut random,
    )
    .unwrap();
    let secret_key: String = random.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{cm}{snippet}\n---\n{params}---\n{rbac}---\n{secret}stringData:\n  server.secretkey: {secret_key}\n---\n\
         apiVersion: argoproj.io/v1alpha1\nkind: AppProject\nmetadata:\n  name: default\n  namespace: {ns}\n\
         spec:\n  sourceRepos: ['*']\n  destinations: [{{server: '*', namespace: '*'}}]\n  \
         clusterResourceWhitelist: [{{group: '*', kind: '*'}}]\n",
        cm = meta("ConfigMap", "argocd-cm"),
        params = meta("ConfigMap", "argocd-cmd-params-cm"),
        rbac = meta("ConfigMap", "argocd-rbac-cm"),
        secret = meta("Secret", "argocd-secret"),
    )
}

/// Waits until a component answers `/healthz` on its metrics port.
fn wait_healthz(process: &Process, port: u16) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let answered = std::net::TcpStream::connect(("127.0.0.1", port)).is_ok_and(|mut s| {
            use std::io::{Read, Write};
            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
            let mut reply = String::new();
            s.write_all(b"GET /healthz HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
                .is_ok()
                && s.read_to_string(&mut reply).is_ok()
                && reply.starts_with("HTTP/1.0 200")
        });
        if answered {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{} does not answer /healthz on port {port}:\n{}",
            process.name(),
            process.log_tail()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn replace_once(text: &str, from: &str, to: &str) -> String {
    assert_eq!(
        text.matches(from).count(),
        1,
        "expected `{from}` once in the example"
    );
    text.replacen(from, to, 1)
}

/// The spec of team A's SecureVault with `more` (YAML lines): one replica
/// of the imported image, on the real node.
fn on_the_real_node(more: &str) -> String {
    format!("  version: 0.1.0\n  replicas: 1\n  imagePullPolicy: Never\n{more}{ON_THE_REAL_NODE}")
}

#[tokio::test(flavor = "multi_thread")]
async fn argo_cd_syncs_a_secure_vault_from_git_and_reports_its_health() {
    let world = World::new("gitops").await;
    load_images();
    let operator = world.operator("gitops");
    operator.wait_leader();
    let argo = ArgoCd::start(world.cluster);

    // 1. A SecureVault committed to git is synced, made Ready by the
    //    operator, and Argo CD calls it Synced and Healthy.
    let repo = GitRepo::new();
    let first = repo.commit(
        "team-a/mail.yaml",
        &vault("mail", &on_the_real_node("")),
        "A SecureVault for team A",
    );
    argo.create_application(&repo, "team-a", world.ns());
    let app = argo
        .wait_for("Synced and Healthy at the first commit", |a| {
            a.synced_at(&first) && a.health == "Healthy"
        })
        .await;
    assert_eq!(app.vault_health, "Healthy", "{app:#?}");
    assert!(
        app.vault_message.contains("1/1 pods ready"),
        "health.lua passes on the operator's message: {app:#?}"
    );
    assert!(app.operation.starts_with("Succeeded"), "{app:#?}");
    // Argo CD tracks what git holds, not what the operator made: the
    // children are neither listed as the Application's nor pruned.
    assert_eq!(app.tracked, ["SecureVault"], "{app:#?}");
    // Healthy came from a pod the kubelet really saw ready.
    let pods = world
        .api::<Pod>()
        .list(&ListParams::default().labels("app.kubernetes.io/instance=mail"))
        .await
        .unwrap();
    assert!(
        pods.items.iter().any(really_ready),
        "Healthy without a really ready pod: {pods:#?}"
    );
    let sv = wait_ready(&world, "mail").await;
    let deployment = world.api::<Deployment>().get("mail").await.unwrap();
    // Argo CD marks what it applies with its tracking annotation; the
    // operator must not pass it on to the children, or Argo CD would take
    // them for its own and prune them as absent from git.
    assert!(
        sv.annotations()
            .keys()
            .any(|k| k.starts_with("argocd.argoproj.io/")),
        "Argo CD tracks the SecureVault: {:?}",
        sv.annotations()
    );
    assert!(
        !deployment
            .annotations()
            .keys()
            .chain(deployment.labels().keys())
            .any(|k| k.starts_with("argocd.argoproj.io/")),
        "the operator copied Argo CD's marks onto its Deployment: {:?}",
        deployment.metadata
    );

    // 2. A commit that changes the SecureVault: synced, Healthy again once
    //    the operator has rolled it out; the operator's children stay.
    let second = repo.commit(
        "team-a/mail.yaml",
        &vault("mail", &on_the_real_node("  logLevel: debug\n")),
        "More logs from team A's vault",
    );
    argo.refresh();
    argo.wait_for("Synced and Healthy at the second commit", |a| {
        a.synced_at(&second) && a.health == "Healthy"
    })
    .await;
    let changed = wait_ready(&world, "mail").await;
    assert_eq!(
        serde_json::to_value(changed.spec.log_level).unwrap(),
        "debug"
    );
    assert!(changed.metadata.generation > sv.metadata.generation);
    let after = world.api::<Deployment>().get("mail").await.unwrap();
    assert_eq!(
        after.uid(),
        deployment.uid(),
        "Argo CD must not prune or replace the operator's Deployment"
    );

    // 3. A commit the operator reports Degraded (a Secret that does not
    //    exist): Argo CD shows Degraded, with the operator's message.
    let third = repo.commit(
        "team-a/mail.yaml",
        &vault(
            "mail",
            &on_the_real_node("  secretKeyRef: {name: not-created-yet, key: secret-key}\n"),
        ),
        "Take the secret key from a Secret",
    );
    argo.refresh();
    let degraded = argo
        .wait_for("Degraded at the third commit", |a| {
            a.synced_at(&third) && a.health == "Degraded"
        })
        .await;
    assert_eq!(degraded.vault_health, "Degraded", "{degraded:#?}");
    assert!(
        degraded.vault_message.contains("not-created-yet"),
        "the message should name the missing Secret: {degraded:#?}"
    );
    let sv = world.api::<SecureVault>().get("mail").await.unwrap();
    assert!(
        sv.status
            .unwrap()
            .condition("Degraded")
            .is_some_and(|c| c.status == "True")
    );
}
