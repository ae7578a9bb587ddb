//! What the operator's cluster tests share: the real control plane from
//! testkit, the CRD installed once, a namespace per test, and the real
//! `operator` binary watching only that namespace (so tests run in parallel
//! without seeing each other's objects).

#![allow(dead_code, unused_imports)]
// each test file uses a different part
// Test support: a failure here is a failed test, so panicking is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::{
    collections::BTreeMap,
    path::Path,
    process::Command,
    sync::OnceLock,
    time::{Duration, Instant},
};

use k8s_openapi::api::{
    apps::v1::Deployment,
    core::v1::{ConfigMap, Pod, Secret, Service, ServiceAccount},
};
use kube::{
    Api, Client, Resource, ResourceExt,
    api::ListParams,
    config::{KubeConfigOptions, Kubeconfig},
};
use operator::api::SecureVault;
pub use testkit::{Cluster, Process, cluster::Namespace};

pub mod chart;
pub mod node;

/// The repository's root (charts, config, scripts live there).
pub fn repo_root() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The cached helm binary (built on first use).
pub fn helm_binary() -> std::path::PathBuf {
    let out = Command::new(repo_root().join("tests/setup/helm.sh"))
        .output()
        .expect("tests/setup/helm.sh runs");
    assert!(
        out.status.success(),
        "tests/setup/helm.sh failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::path::PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

/// `helm ARGS…`'s standard output; fails the test on an error.
pub fn helm(args: &[&str]) -> String {
    let out = Command::new(helm_binary())
        .args(args)
        .output()
        .expect("helm runs");
    assert!(
        out.status.success(),
        "helm {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// One test's world: the cluster, its own namespace, a client.
pub struct World {
    pub cluster: &'static Cluster,
    pub ns: Namespace,
    pub client: Client,
}

impl World {
    /// A new namespace on the shared cluster, with the CRD installed.
    pub async fn new(prefix: &str) -> World {
        let cluster = Cluster::shared().unwrap();
        install_crd(cluster);
        let ns = cluster.create_namespace(prefix).unwrap();
        let kubeconfig = Kubeconfig::read_from(cluster.kubeconfig()).unwrap();
        let config =
            kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
                .await
                .unwrap();
        World {
            cluster,
            ns,
            client: Client::try_from(config).unwrap(),
        }
    }

    pub fn ns(&self) -> &str {
        self.ns.name()
    }

    pub fn api<K>(&self) -> Api<K>
    where
        K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>,
    {
        Api::namespaced(self.client.clone(), self.ns())
    }

    /// `kubectl -n NS ARGS…`.
    pub fn kubectl(&self, args: &[&str]) -> Result<String, testkit::Error> {
        let mut all = vec!["-n", self.ns()];
        all.extend_from_slice(args);
        self.cluster.kubectl(&all)
    }

    /// `kubectl apply -n NS -f -` of `yaml`, as a user does.
    pub fn apply(&self, yaml: &str) -> Result<String, testkit::Error> {
        self.cluster
            .kubectl_stdin(&["apply", "-n", self.ns(), "-f", "-"], yaml)
    }

    /// Starts the operator binary for this namespace.
    pub fn operator(&self, identity: &str) -> Operator {
        Operator::start(self, identity, &[])
    }

    /// Starts the operator binary for this namespace with `env` on top
    /// (its policy settings, say).
    pub fn operator_with(&self, identity: &str, env: &[(&str, &str)]) -> Operator {
        Operator::start(self, identity, env)
    }

    /// A ServiceAccount `name` in this namespace that may do what `rules`
    /// (a Role's rules, YAML indented by two) allow there and nothing
    /// else, and a token of it: an ordinary namespace user.
    pub fn user(&self, name: &str, rules: &str) -> String {
        self.apply(&format!(
            "apiVersion: v1
kind: ServiceAccount
metadata: {{name: {name}}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {{name: {name}}}
rules:
{rules}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {{name: {name}}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: {name}}}
subjects:
- {{kind: ServiceAccount, name: {name}, namespace: {ns}}}
",
            ns = self.ns()
        ))
        .unwrap();
        self.kubectl(&["create", "token", name])
            .unwrap()
            .trim()
            .to_owned()
    }

    /// A client of the same API server that authenticates with `token`
    /// only (none of the administrator's credentials).
    pub async fn client_as(&self, token: &str) -> Client {
        let kubeconfig = Kubeconfig::read_from(self.cluster.kubeconfig()).unwrap();
        let mut config =
            kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
                .await
                .unwrap();
        config.auth_info = serde_json::from_value(serde_json::json!({ "token": token })).unwrap();
        Client::try_from(config).unwrap()
    }
}

/// The ClusterRoles and ClusterRoleBindings labelled
/// `app.kubernetes.io/instance=INSTANCE` (a chart release's, or a test's
/// own), deleted on drop, pass or fail: no namespace takes them along, and
/// a release's left behind would stop the next install of the same name.
pub struct ClusterScoped<'a> {
    pub cluster: &'a Cluster,
    pub instance: String,
}

impl Drop for ClusterScoped<'_> {
    fn drop(&mut self) {
        let _ = self.cluster.kubectl(&[
            "delete",
            "clusterrole,clusterrolebinding",
            "-l",
            &format!("app.kubernetes.io/instance={}", self.instance),
            "--wait=false",
        ]);
    }
}

/// Installs the checked-in CRD once per test process and waits until the
/// API server serves it.
fn install_crd(cluster: &Cluster) {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        let crd = concat!(env!("CARGO_MANIFEST_DIR"), "/../crds/securevault.yaml");
        cluster
            .kubectl(&["apply", "--server-side", "--force-conflicts", "-f", crd])
            .unwrap();
        cluster
            .wait_established("securevaults.securevault.io")
            .expect("the SecureVault CRD is Established");
    });
}

/// The real operator process, stopped with SIGTERM on drop.
pub struct Operator {
    pub process: Process,
}

impl Operator {
    fn start(world: &World, identity: &str, env: &[(&str, &str)]) -> Operator {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_operator"));
        cmd.arg("run")
            .env("KUBECONFIG", world.cluster.kubeconfig())
            .env("WATCH_NAMESPACE", world.ns())
            .env("POD_NAMESPACE", world.ns())
            .env("POD_NAME", identity)
            .env("METRICS_ADDR", "127.0.0.1:0")
            .env("LEASE_DURATION_SECS", "6")
            .env("LEASE_RENEW_SECS", "1")
            .env("LOG_LEVEL", "info")
            .envs(env.iter().copied());
        let process = Process::spawn(&format!("operator-{identity}"), cmd).unwrap();
        process
            .wait_for_line(
                |l| l.contains("waiting to become the leader"),
                Duration::from_secs(30),
            )
            .unwrap();
        Operator { process }
    }

    /// Waits until this process leads.
    pub fn wait_leader(&self) {
        self.process
            .wait_for_line(|l| l.contains("became the leader"), Duration::from_secs(30))
            .unwrap();
    }

    /// What `/metrics` says now.
    pub fn metrics(&self) -> String {
        http_get(&metrics_addr(&self.process), "/metrics")
    }

    /// SIGTERM, then the exit status.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        self.process.signal("TERM").unwrap();
        self.process.wait_exit(Duration::from_secs(20)).unwrap()
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        if self.process.is_running() && self.process.signal("TERM").is_ok() {
            let _ = self.process.wait_exit(Duration::from_secs(20));
        }
    }
}

/// Binds the ClusterRole `role` to the ServiceAccount `account` of
/// `namespace`, labelled with that namespace as its instance so that
/// [`ClusterScoped`] (or a chart release of that name) deletes it.
pub fn bind_cluster_role(cluster: &Cluster, namespace: &str, account: &str, role: &str) {
    cluster
        .kubectl_stdin(
            &["apply", "-f", "-"],
            &format!(
                "apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: {namespace}-{account}
  labels: {{app.kubernetes.io/instance: {namespace}}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: {role}}}
subjects: [{{kind: ServiceAccount, name: {account}, namespace: {namespace}}}]
"
            ),
        )
        .unwrap();
}

/// Where an operator process serves `/metrics`, from its "metrics
/// listening on" log line.
pub fn metrics_addr(operator: &Process) -> String {
    let line = operator
        .wait_for_line(
            |l| l.contains("metrics listening on http://"),
            Duration::from_secs(5),
        )
        .unwrap();
    line.split("metrics listening on http://")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap()
        .to_owned()
}

/// The body of a plain HTTP GET of `path` on `addr` (`host:port`).
pub fn http_get(addr: &str, path: &str) -> String {
    http_get_as(addr, path, None).1
}

/// The status and body of a plain HTTP GET of `path` on `addr`, with
/// `Authorization: Bearer TOKEN` when a token is given.
pub fn http_get_as(addr: &str, path: &str, token: Option<&str>) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    let authorization = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: {addr}\r\n{authorization}\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, body.to_owned())
}

/// Polls `get` until `check` holds, or fails after `limit` with `what`.
pub async fn eventually<T, F, Fut>(
    limit: Duration,
    what: &str,
    mut get: F,
    check: impl Fn(&T) -> bool,
) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
    T: std::fmt::Debug,
{
    let deadline = Instant::now() + limit;
    let mut last = None;
    loop {
        if let Some(value) = get().await {
            if check(&value) {
                return value;
            }
            last = Some(value);
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}; last: {last:#?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The SecureVault `name`, once its `Ready` condition is True for its
/// current generation.
pub async fn wait_ready(world: &World, name: &str) -> SecureVault {
    wait_ready_within(world, name, Duration::from_secs(60)).await
}

/// [`wait_ready`] with another limit (real pods, which pull and start,
/// take longer than kwok's).
pub async fn wait_ready_within(world: &World, name: &str, limit: Duration) -> SecureVault {
    let api = world.api::<SecureVault>();
    eventually(
        limit,
        &format!("SecureVault {name} Ready"),
        || async { api.get_opt(name).await.ok().flatten() },
        |sv: &SecureVault| {
            sv.status.as_ref().is_some_and(|s| {
                s.observed_generation == sv.metadata.generation
                    && s.condition("Ready").is_some_and(|c| c.status == "True")
            })
        },
    )
    .await
}

/// Name -> resourceVersion of every object the operator owns in the
/// namespace, plus the SecureVaults themselves.
pub async fn resource_versions(world: &World) -> BTreeMap<String, String> {
    let mut versions = BTreeMap::new();
    let lp = ListParams::default();
    macro_rules! collect {
        ($($kind:ty),*) => {$(
            for o in world.api::<$kind>().list(&lp).await.unwrap() {
                versions.insert(
                    format!("{}/{}", <$kind>::kind(&()), o.name_any()),
                    o.resource_version().unwrap_or_default(),
                );
            }
        )*};
    }
    collect!(
        SecureVault,
        Deployment,
        Service,
        ConfigMap,
        Secret,
        ServiceAccount
    );
    versions
}

/// SecureVault `mail` in namespace `shop` with `spec` (YAML, indented two
/// spaces), validated as the operator would: for the builders' output
/// checked by real tools without a cluster (promtool, Prometheus,
/// Alertmanager).
pub fn shop_vault(spec: &str) -> operator::validate::ValidatedVault {
    let yaml = format!(
        "apiVersion: securevault.io/v1alpha1\nkind: SecureVault\nmetadata: {{name: mail, namespace: shop, uid: u1}}\nspec:\n  version: 0.1.0\n  replicas: 1\n{spec}"
    );
    let sv: SecureVault = serde_saphyr::from_str(&yaml).unwrap();
    operator::validate::validate(&sv).unwrap()
}

/// A SecureVault manifest with `spec` (YAML lines, indented by two).
pub fn vault(name: &str, spec: &str) -> String {
    format!(
        "apiVersion: securevault.io/v1alpha1\nkind: SecureVault\nmetadata:\n  name: {name}\nspec:\n{spec}"
    )
}

/// A Secret `mail-db` with a PostgreSQL URL (nothing listens there: on kwok
/// no pod runs, and the operator only passes the reference on).
pub const DATABASE_SECRET: &str = "apiVersion: v1\nkind: Secret\nmetadata: {name: mail-db}\nstringData: {url: 'postgres://securevault@db.example:5432/securevault'}\n";

/// A Secret `cache` with a Redis URL (nothing listens there either).
pub const REDIS_SECRET: &str = "apiVersion: v1\nkind: Secret\nmetadata: {name: cache}\nstringData: {url: 'redis://cache:6379/'}\n";

/// A spec pointing at [`REDIS_SECRET`].
pub const REDIS_SPEC: &str =
    "  version: 0.1.0\n  replicas: 1\n  redis:\n    urlSecretRef: {name: cache, key: url}\n";

/// The spec line pointing at [`DATABASE_SECRET`].
pub const DATABASE_SPEC: &str = "  database: {urlSecretRef: {name: mail-db, key: url}}\n";

/// A PersistentVolumeClaim `backups` bound to a PersistentVolume made for
/// it; the volume (cluster-scoped, so not removed with the namespace) is
/// deleted when this is dropped.
pub struct BackupVolume<'a> {
    world: &'a World,
    pv: String,
}

impl World {
    /// Creates the claim `backups` and its volume.
    pub fn backup_volume(&self) -> BackupVolume<'_> {
        let pv = format!("{}-backups", self.ns());
        self.cluster
            .kubectl_stdin(
                &["apply", "-f", "-"],
                &format!(
                    "apiVersion: v1
kind: PersistentVolume
metadata: {{name: {pv}}}
spec:
  capacity: {{storage: 1Gi}}
  accessModes: [ReadWriteOnce]
  storageClassName: ''
  hostPath: {{path: /tmp/{pv}, type: DirectoryOrCreate}}
  claimRef: {{namespace: {ns}, name: backups}}
",
                    ns = self.ns()
                ),
            )
            .unwrap();
        self.apply(&format!(
            "apiVersion: v1
kind: PersistentVolumeClaim
metadata: {{name: backups}}
spec:
  accessModes: [ReadWriteOnce]
  storageClassName: ''
  volumeName: {pv}
  resources: {{requests: {{storage: 1Gi}}}}
"
        ))
        .unwrap();
        BackupVolume { world: self, pv }
    }
}

impl Drop for BackupVolume<'_> {
    fn drop(&mut self) {
        let _ = self
            .world
            .cluster
            .kubectl(&["delete", "pv", &self.pv, "--wait=false"]);
    }
}
