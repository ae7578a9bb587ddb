//! On the real node (`make cluster-up NODE=real`, tests/cluster/node.sh): a
//! kubelet and kube-proxy over containerd, beside the kwok nodes. Nothing
//! here is simulated: the images docker/build.sh builds start as
//! containers, the kubelet runs the probes the operator wrote against the
//! process, the namespace enforces the "restricted" Pod Security Standard,
//! and requests reach the pods through the Service's cluster IP (kube-proxy's
//! iptables rules). The first SecureVault serves HTTPS from a TLS Secret,
//! so the HTTPS probes and the mounted Secret are exercised for real too.
//!
//! The data plane's dependencies run on this host, on 127.0.0.1, as in
//! every other test: pods reach them at the node's gateway address,
//! [`GATEWAY`] (node.sh forwards it to the host's loopback).
//!
//! Part of `make test-e2e` and `make test`, which start the cluster with
//! the real node.

// Test code: a failure here is a failed test, so panicking is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::{
    collections::BTreeSet,
    net::SocketAddr,
    process::Command,
    sync::{
        Arc, Mutex, OnceLock,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use common::{node::*, *};
use k8s_openapi::api::{
    apps::v1::Deployment,
    core::v1::{Event, Pod, Service},
};
use kube::{ResourceExt, api::ListParams};
use operator::api::{SecureVault, UpgradePhase};
use serde_json::{Value, json};
use testkit::{LlamaServer, Mailpit, Postgres, Redis, TempDir, certs::TestCa};

/// The administrator's password of every data plane here.
const ADMIN_PASSWORD: &str = "real-node-admin-password";

/// The data plane's secret key (64 hex characters).
const SECRET_KEY: &str = "5ec0e7ba5eca1ab1e5ec0e7ba5eca1ab1e5ec0e7ba5eca1ab1e5ec0e7ba5eca1";

/// What HTTPS Services the clients know: the CAs they trust (ours only)
/// and where each Service's DNS name points (its cluster IP; this host has
/// no cluster DNS).
#[derive(Clone)]
struct Trust {
    cas: Vec<String>,
    names: Vec<(String, SocketAddr)>,
}

static HTTPS: Mutex<Trust> = Mutex::new(Trust {
    cas: Vec::new(),
    names: Vec::new(),
});

/// A client that opens a new connection for every request, so that each
/// one goes through kube-proxy's choice of a pod afresh.
fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let Trust { cas, names } = HTTPS.lock().unwrap().clone();
    let mut builder = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(30))
        .tls_certs_only(
            cas.iter()
                .map(|pem| reqwest::Certificate::from_pem(pem.as_bytes()).unwrap()),
        );
    for (name, addr) in names {
        builder = builder.resolve(&name, addr);
    }
    builder.build().unwrap()
}

/// `http://CLUSTER-IP:PORT` of the Service `name` (`https://NAME.NAMESPACE.svc:PORT`
/// when it serves HTTPS), once kube-proxy
/// forwards it steadily to the data plane: 25 answers in a row, each on a
/// new connection, that are the data plane's liveness answer and not just
/// any answer (an address kube-proxy does not know goes out to this
/// sandbox's egress proxy, which answers 404; kube-proxy's rules follow a
/// new Service and its endpoints a moment after they exist).
async fn service_url(world: &World, name: &str) -> String {
    let spec = world
        .api::<Service>()
        .get(name)
        .await
        .unwrap()
        .spec
        .unwrap();
    let port = spec.ports.as_ref().unwrap()[0].clone();
    let ip = spec.cluster_ip.clone().unwrap();
    let url = if port.name.as_deref() == Some("https") {
        // Verified for the name the certificate carries, at the cluster IP.
        let host = format!("{name}.{}.svc", world.ns());
        let addr = SocketAddr::new(ip.parse().unwrap(), port.port as u16);
        HTTPS.lock().unwrap().names.push((host.clone(), addr));
        format!("https://{host}:{}", port.port)
    } else {
        format!("http://{ip}:{}", port.port)
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let (mut in_a_row, mut last) = (0, String::new());
    while in_a_row < 25 {
        assert!(
            std::time::Instant::now() < deadline,
            "{url}/api/health never answered steadily through kube-proxy; last: {last}"
        );
        let answer = match client().get(format!("{url}/api/health")).send().await {
            Ok(r) => (r.status().as_u16(), r.text().await.unwrap_or_default()),
            Err(e) => (0, e.to_string()),
        };
        if answer.0 == 200 && answer.1.contains(r#""status":"ok""#) {
            in_a_row += 1;
        } else {
            in_a_row = 0;
            last = format!("{answer:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    url
}

/// The pods of SecureVault `name` (or of the operator's release).
async fn pods(world: &World, selector: &str) -> Vec<Pod> {
    world
        .api::<Pod>()
        .list(&ListParams::default().labels(selector))
        .await
        .unwrap()
        .items
}

/// Waits until `count` pods matching `selector` are really ready.
async fn wait_pods_ready(world: &World, selector: &str, count: usize) -> Vec<Pod> {
    eventually(
        Duration::from_secs(120),
        &format!("{count} ready pods {selector} on {NODE}"),
        || async { Some(pods(world, selector).await) },
        |pods: &Vec<Pod>| pods.iter().filter(|p| really_ready(p)).count() == count,
    )
    .await
    .into_iter()
    .filter(really_ready)
    .collect()
}

/// The SecureVault `name`, Ready for its generation (real pods take longer
/// than kwok's).
async fn wait_really_ready(world: &World, name: &str) -> SecureVault {
    wait_ready_within(world, name, Duration::from_secs(180)).await
}

/// A namespace whose pods must meet the "restricted" Pod Security Standard.
async fn restricted_world(prefix: &str) -> World {
    let world = World::new(prefix).await;
    world
        .cluster
        .kubectl(&[
            "label",
            "namespace",
            world.ns(),
            "pod-security.kubernetes.io/enforce=restricted",
        ])
        .unwrap();
    world
}

/// Installs the operator's Helm chart into the world's namespace, watching
/// it, with the operator on the real node; returns once its pod is ready,
/// with the release's cluster-scoped objects (the metrics' RBAC) to delete.
/// The release is named after the namespace, so a run never meets an
/// earlier one's.
async fn install_operator(world: &World) -> (Pod, ClusterScoped<'_>) {
    let (repository, tag) = image("operator");
    let values = TempDir::new("operator-values").unwrap();
    let file = values.path().join("values.yaml");
    std::fs::write(
        &file,
        format!(
            "image: {{repository: {repository}, tag: '{tag}', pullPolicy: Never}}
replicaCount: 1
watchNamespaces: [{ns}]
nodeSelector: {{securevault.io/node: real}}
tolerations: [{{key: securevault.io/node, operator: Equal, value: real, effect: NoSchedule}}]
",
            ns = world.ns()
        ),
    )
    .unwrap();
    let cleanup = ClusterScoped {
        cluster: world.cluster,
        instance: world.ns().to_owned(),
    };
    helm(&[
        "install",
        world.ns(),
        repo_root()
            .join("charts/securevault-operator")
            .to_str()
            .unwrap(),
        "--namespace",
        world.ns(),
        "--kubeconfig",
        world.cluster.kubeconfig().to_str().unwrap(),
        // The cluster's CRD, which every test shares (applied from crds/).
        "--set",
        "crds.enabled=false",
        "-f",
        file.to_str().unwrap(),
    ]);
    let selector = "app.kubernetes.io/name=securevault-operator";
    (wait_pods_ready(world, selector, 1).await.remove(0), cleanup)
}

/// The host's services a SecureVault depends on.
struct Dependencies {
    postgres: Postgres,
    redis: Redis,
    mailpit: Mailpit,
    llama: LlamaServer,
}

impl Dependencies {
    fn start() -> Dependencies {
        Dependencies {
            postgres: Postgres::start().unwrap(),
            redis: Redis::start().unwrap(),
            mailpit: Mailpit::start().unwrap(),
            llama: LlamaServer::start().unwrap(),
        }
    }

    /// The Secret `mail-credentials` with their addresses as pods see them.
    fn secret(&self) -> String {
        self.postgres.create_database("securevault").unwrap();
        format!(
            "apiVersion: v1
kind: Secret
metadata: {{name: mail-credentials}}
stringData:
  secret-key: {SECRET_KEY}
  admin-password: {ADMIN_PASSWORD}
  database-url: postgres://postgres@{GATEWAY}:{pg}/securevault
  redis-url: redis://{GATEWAY}:{redis}/
",
            pg = self.postgres.port(),
            redis = self.redis.port(),
        )
    }

    /// The spec of a SecureVault using all of them, on the real node.
    fn spec(&self, replicas: u32) -> String {
        format!(
            "  version: 0.1.0
  imagePullPolicy: Never
  replicas: {replicas}
  secretKeyRef: {{name: mail-credentials, key: secret-key}}
  adminPasswordSecretRef: {{name: mail-credentials, key: admin-password}}
  database: {{urlSecretRef: {{name: mail-credentials, key: database-url}}}}
  redis: {{urlSecretRef: {{name: mail-credentials, key: redis-url}}}}
  smtp: {{host: '{GATEWAY}', port: {smtp}, tls: none, from: noreply@example.com}}
  ai: {{baseUrl: 'http://{GATEWAY}:{ai}/v1'}}
  rateLimits: {{email: 1000/1m}}
{ON_THE_REAL_NODE}",
            smtp = self.mailpit.smtp_port(),
            ai = self.llama.port(),
        )
    }
}

/// Signs in as the administrator through `url` and makes an API key for
/// email and AI; returns (session token, key).
async fn api_key(url: &str) -> (String, String) {
    let http = client();
    let login = http
        .post(format!("{url}/api/auth/login"))
        .json(&json!({"username": "admin", "password": ADMIN_PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        login.status(),
        200,
        "login: {}",
        login.text().await.unwrap()
    );
    let token = login.json::<Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let created = http
        .post(format!("{url}/api/keys"))
        .bearer_auth(&token)
        .json(&json!({"name": "real-node", "scopes": ["email", "ai"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201, "{}", created.text().await.unwrap());
    let key = created.json::<Value>().await.unwrap()["key"]
        .as_str()
        .unwrap()
        .to_owned();
    (token, key)
}

/// `POST /api/send-email` with `key`; the email's id if it was accepted.
async fn send(url: &str, key: &str, subject: &str) -> Result<String, String> {
    let response = client()
        .post(format!("{url}/api/send-email"))
        .bearer_auth(key)
        .json(&json!({
            "to": "someone@example.com",
            "subject": subject,
            "text": "The body of a real-node email, never logged.",
        }))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status();
    let body: Value = response.json().await.map_err(|e| e.to_string())?;
    if status != 202 && status != 200 {
        return Err(format!("{status}: {body}"));
    }
    Ok(body["id"].as_str().unwrap().to_owned())
}

/// `GET /api/emails/{id}` through `url` with `key`, which must answer 200.
/// A pod just ready may not be behind the Service's address yet (kube-proxy
/// programs it a moment later, and until then the address refuses
/// connections or reaches the sandbox's egress proxy): those are tried
/// again, for up to 30 s.
async fn read_email(url: &str, key: &str, id: &str) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let read = loop {
        match client()
            .get(format!("{url}/api/emails/{id}"))
            .bearer_auth(key)
            .send()
            .await
        {
            // Every answer of the data plane carries X-Request-Id; one
            // without it is the sandbox's egress proxy answering (404) for
            // an address kube-proxy is reprogramming: tried again too.
            Ok(read)
                if !read.headers().contains_key("x-request-id")
                    && std::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Ok(read) => break read,
            Err(e) if e.is_connect() && std::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("GET /api/emails/{id}: {e}"),
        }
    };
    assert_eq!(read.status(), 200, "{}", read.text().await.unwrap());
    read.json().await.unwrap()
}

/// The subjects mailpit received.
fn subjects(mailpit: &Mailpit) -> Vec<String> {
    mailpit
        .messages()
        .unwrap()
        .into_iter()
        .map(|m| m.subject)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_chart_s_operator_runs_a_real_data_plane_that_serves_through_its_service() {
    let world = restricted_world("real-node").await;
    let deps = Dependencies::start();

    // The operator: the chart's Deployment, in a pod on the real node,
    // talking to the API server from inside (the `kubernetes` Service).
    let (operator, _cluster_scoped) = install_operator(&world).await;
    let operator_log = world
        .kubectl(&["logs", &operator.name_any()])
        .unwrap_or_default();
    assert!(
        !operator_log.contains("forbidden"),
        "the chart's RBAC let the operator do its work: {operator_log}"
    );

    world.apply(&deps.secret()).unwrap();
    // HTTPS from a Secret, as cert-manager would write it.
    let ca = TestCa::new("real node CA").unwrap();
    let issued = ca.issue(&[&format!("mail.{}.svc", world.ns())]).unwrap();
    HTTPS.lock().unwrap().cas.push(ca.pem.clone());
    let files = TempDir::new("real-node-tls").unwrap();
    let (cert, key) = (files.path().join("tls.crt"), files.path().join("tls.key"));
    std::fs::write(&cert, &issued.cert_pem).unwrap();
    std::fs::write(&key, &issued.key_pem).unwrap();
    world
        .kubectl(&[
            "create",
            "secret",
            "tls",
            "mail-tls",
            &format!("--cert={}", cert.display()),
            &format!("--key={}", key.display()),
        ])
        .unwrap();
    world
        .apply(&vault(
            "mail",
            &format!("{}  tls: {{secretName: mail-tls}}\n", deps.spec(2)),
        ))
        .unwrap();
    // Ready now means what it says: the kubelet saw /api/health/ready
    // answer in both pods, under the restricted standard.
    let sv = wait_really_ready(&world, "mail").await;
    assert_eq!(sv.status.as_ref().unwrap().ready_replicas, 2);
    let selector = "app.kubernetes.io/instance=mail,app.kubernetes.io/name=securevault";
    let first = wait_pods_ready(&world, selector, 2).await;
    for pod in &first {
        let status = &pod
            .status
            .as_ref()
            .unwrap()
            .container_statuses
            .as_ref()
            .unwrap()[0];
        assert_eq!(
            status.restart_count, 0,
            "no probe ever failed it: {status:#?}"
        );
    }

    // Everything below goes through the Service's cluster IP, as another
    // pod would reach it.
    let url = service_url(&world, "mail").await;
    let (token, key) = api_key(&url).await;

    let id = send(&url, &key, "real node 0").await.unwrap();
    eventually(
        Duration::from_secs(60),
        "the email in mailpit",
        || async { Some(subjects(&deps.mailpit)) },
        |s: &Vec<String>| s.iter().any(|s| s == "real node 0"),
    )
    .await;
    let email: Value = client()
        .get(format!("{url}/api/emails/{id}"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(email["status"], "sent", "{email}");

    let generation = client()
        .post(format!("{url}/api/generate-content"))
        .bearer_auth(&key)
        .json(&json!({"prompt": "Say hello.", "max_tokens": 8}))
        .send()
        .await
        .unwrap();
    assert_eq!(generation.status(), 200);
    let generation: Value = generation.json().await.unwrap();
    assert!(
        !generation["text"].as_str().unwrap_or_default().is_empty(),
        "a real generation: {generation}"
    );

    // The metrics on their own port of the Service; the API's has none.
    let api_metrics = client()
        .get(format!("{url}/api/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(api_metrics.status(), 404);
    let metrics_url = {
        let (scheme, rest) = url.split_once("://").unwrap();
        let host = rest.rsplit_once(':').unwrap().0;
        format!("{scheme}://{host}:9464")
    };
    let metrics = client()
        .get(format!("{metrics_url}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for name in [
        "emails_sent_total",
        "ai_generations_total",
        "http_requests_total",
    ] {
        assert!(metrics.contains(name), "{name} in the scraped metrics");
    }

    // `kubectl logs`: JSON lines, with request ids, and no secret.
    let mut request_ids = 0;
    for pod in &first {
        let logs = world.kubectl(&["logs", &pod.name_any()]).unwrap();
        for line in logs.lines() {
            let line: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
            request_ids += usize::from(line.to_string().contains("request_id"));
        }
        for secret in [ADMIN_PASSWORD, SECRET_KEY, &key, &token, "never logged"] {
            assert!(
                !logs.contains(secret),
                "a secret in {}'s log",
                pod.name_any()
            );
        }
    }
    assert!(request_ids > 0, "no request id in the data plane's logs");

    // A pod deleted while emails are being sent: the Deployment replaces
    // it, and every email the data plane accepted is delivered.
    let doomed = first[0].name_any();
    let mut accepted = BTreeSet::new();
    let mut refused = Vec::new();
    for i in 1..=40 {
        if i == 10 {
            world
                .kubectl(&["delete", "pod", &doomed, "--wait=false"])
                .unwrap();
        }
        match send(&url, &key, &format!("real node {i}")).await {
            Ok(_) => {
                accepted.insert(format!("real node {i}"));
            }
            Err(e) => refused.push(e),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let replaced = wait_pods_ready(&world, selector, 2).await;
    assert!(replaced.iter().all(|p| p.name_any() != doomed));
    assert!(
        accepted.len() >= 30,
        "accepted {accepted:?}, refused {refused:?}"
    );
    let delivered = eventually(
        Duration::from_secs(90),
        "every accepted email in mailpit",
        || async { Some(subjects(&deps.mailpit)) },
        |s: &Vec<String>| accepted.iter().all(|a| s.contains(a)),
    )
    .await;
    for subject in &accepted {
        assert_eq!(
            delivered.iter().filter(|s| *s == subject).count(),
            1,
            "{subject} delivered once"
        );
    }
}

/// Release 0.2.0 of this test: an image whose process never listens, so
/// the kubelet's readiness probe really fails (connection refused). It is
/// the node's pause program under the data plane's name, imported as an
/// OCI archive.
fn load_never_ready_release() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        let pause = node_sh(&["pause-binary"], &[]);
        let dir = TempDir::new("never-ready").unwrap();
        let archive = dir.path().join("image.tar");
        let out = Command::new("python3")
            .arg(repo_root().join("tests/cluster/oci-archive.py"))
            .arg(pause.trim())
            .arg("/usr/local/bin/securevault")
            .arg("docker.io/securevault/dataplane:0.2.0")
            .arg(&archive)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        node_sh(&["load"], &[archive]);
    });
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upgrade_whose_pods_never_get_ready_rolls_back_and_the_store_survives_both_replacements()
{
    let world = restricted_world("real-upgrade").await;
    load_images();
    load_never_ready_release();
    let operator = world.operator("real-upgrade");
    operator.wait_leader();
    world
        .apply(&format!(
            "apiVersion: v1
kind: Secret
metadata: {{name: credentials}}
stringData: {{secret-key: {SECRET_KEY}, admin-password: {ADMIN_PASSWORD}}}
"
        ))
        .unwrap();
    let spec = |version: &str| {
        one_replica(
            version,
            &format!(
                "  upgrade: {{progressDeadlineSeconds: 15, verifySeconds: 5}}
  smtp: {{host: '{GATEWAY}', port: 9, tls: none, from: noreply@example.com}}
"
            ),
        )
    };
    world.apply(&vault("quick", &spec("0.1.0"))).unwrap();
    wait_really_ready(&world, "quick").await;
    let url = service_url(&world, "quick").await;
    // What the store holds before: a key, and an email it accepted (nothing
    // listens on the relay's port: it stays in the outbox).
    let (_, key) = api_key(&url).await;
    let accepted = send(&url, &key, "accepted before the upgrade")
        .await
        .unwrap();

    // A client keeps calling through the Service during the upgrade and the
    // rollback; each request is a new connection, so kube-proxy picks a
    // ready endpoint each time.
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let failures = Arc::new(std::sync::Mutex::new(Vec::new()));
    let load = tokio::spawn({
        let (stop, ok, failed, failures, url) = (
            stop.clone(),
            ok.clone(),
            failed.clone(),
            failures.clone(),
            url.clone(),
        );
        async move {
            let http = client();
            let started = std::time::Instant::now();
            while !stop.load(Ordering::Relaxed) {
                match http.get(format!("{url}/api/health/ready")).send().await {
                    Ok(r) if r.status() == 200 => ok.fetch_add(1, Ordering::Relaxed),
                    other => {
                        let at = started.elapsed();
                        failures
                            .lock()
                            .unwrap()
                            .push(format!("after {at:?}: {other:?}"));
                        failed.fetch_add(1, Ordering::Relaxed)
                    }
                };
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    });

    world.apply(&vault("quick", &spec("0.2.0"))).unwrap();
    let api = world.api::<SecureVault>();
    let rolled_back = eventually(
        Duration::from_secs(180),
        "the upgrade to 0.2.0 rolled back",
        || async { api.get_opt("quick").await.ok().flatten() },
        |sv: &SecureVault| {
            sv.status
                .as_ref()
                .and_then(|s| s.upgrade_history.first())
                .is_some_and(|u| u.to_version == "0.2.0" && u.phase == UpgradePhase::RolledBack)
        },
    )
    .await;
    // Back on 0.1.0: the Deployment's template, and its pods ready.
    let deployment = world.api::<Deployment>().get("quick").await.unwrap();
    let image = deployment.spec.template.spec.unwrap().containers[0]
        .image
        .clone()
        .unwrap();
    assert!(image.ends_with(":0.1.0"), "{image}");
    let selector = "app.kubernetes.io/instance=quick,app.kubernetes.io/name=securevault";
    eventually(
        Duration::from_secs(60),
        "only 0.1.0 pods left",
        || async { Some(pods(&world, selector).await) },
        |pods: &Vec<Pod>| {
            pods.len() == 1
                && pods.iter().all(|p| {
                    really_ready(p)
                        && p.spec.as_ref().unwrap().containers[0]
                            .image
                            .as_deref()
                            .is_some_and(|i| i.ends_with(":0.1.0"))
                })
        },
    )
    .await;
    stop.store(true, Ordering::Relaxed);
    load.await.unwrap();

    // The kubelet's probes really failed on the new pod (its startup probe
    // comes first, so the readiness probe never even started).
    let events = world
        .api::<Event>()
        .list(&ListParams::default().fields("reason=Unhealthy"))
        .await
        .unwrap();
    assert!(
        events.items.iter().any(|e| e
            .message
            .as_deref()
            .unwrap_or_default()
            .contains("probe failed")),
        "no failed probe: {events:#?}"
    );
    // One pod on the SQLite store's claim at a time (Recreate): the old
    // pod stops before the new one starts, and again before the rollback,
    // so requests fail while no pod is ready; a vault on spec.database
    // rolls without that gap (upgrade.rs). Served before and after.
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    // The count depends on the machine's load (the other real-node tests
    // run at the same time): what matters is that it was served at all.
    assert!(ok >= 10, "the client kept calling: {ok} requests");
    println!(
        "{failed} of {} requests failed while no pod was ready: {:?}",
        ok + failed,
        failures.lock().unwrap().first()
    );
    // Both replacements kept the store: the same key reads the same email.
    let email = read_email(&url, &key, &accepted).await;
    assert_eq!(email["subject"], "accepted before the upgrade", "{email}");
    let message = rolled_back
        .status
        .unwrap()
        .condition("Degraded")
        .map(|c| c.message.clone());
    assert!(
        message.as_deref().unwrap_or_default().contains("0.2.0"),
        "Degraded says why: {message:?}"
    );
}

/// The one pod of SecureVault `name` once it is really ready, and not the
/// pod `replaced` (the uid of the pod before a replacement).
async fn the_pod(world: &World, name: &str, replaced: Option<&str>) -> Pod {
    let selector = format!("app.kubernetes.io/instance={name},app.kubernetes.io/name=securevault");
    eventually(
        Duration::from_secs(180),
        &format!("one ready pod of {name} other than {replaced:?}"),
        || async { Some(pods(world, &selector).await) },
        |pods: &Vec<Pod>| {
            pods.len() == 1 && really_ready(&pods[0]) && pods[0].metadata.uid.as_deref() != replaced
        },
    )
    .await
    .remove(0)
}

/// The Secret `credentials` of a vault's secret key and administrator's
/// password, with `more` (indented `key: value` lines) beside them.
fn credentials(more: &str) -> String {
    format!(
        "apiVersion: v1
kind: Secret
metadata: {{name: credentials}}
stringData:
  secret-key: {SECRET_KEY}
  admin-password: {ADMIN_PASSWORD}
{more}"
    )
}

/// What a vault's store holds in the durability test: an email the relay
/// took, emails still queued, an account with its password, the
/// administrator's session and an API key.
struct Holdings {
    token: String,
    key: String,
    sent: (String, &'static str),
    queued: Vec<(String, &'static str)>,
}

impl Holdings {
    /// Checks, through `url`, that every row is there as it was: the key
    /// reads each email, delivered or still queued (never sent twice nor
    /// given up); the administrator's session lists alice, who signs in
    /// with her password.
    async fn are_all_in(&self, url: &str, after: &str) {
        let email = read_email(url, &self.key, &self.sent.0).await;
        assert_eq!(email["subject"], self.sent.1, "after {after}: {email}");
        assert_eq!(email["status"], "sent", "after {after}: {email}");
        for (id, subject) in &self.queued {
            let email = read_email(url, &self.key, id).await;
            assert_eq!(email["subject"], *subject, "after {after}: {email}");
            let status = email["status"].as_str().unwrap_or_default();
            assert!(
                status == "queued" || status == "sending",
                "after {after}, still in the outbox: {email}"
            );
        }
        let users = client()
            .get(format!("{url}/api/users"))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap();
        assert_eq!(users.status(), 200, "after {after}: the session works");
        let users = users.text().await.unwrap();
        assert!(users.contains(r#""alice""#), "after {after}: {users}");
        let login = client()
            .post(format!("{url}/api/auth/login"))
            .json(&json!({"username": "alice", "password": ALICE_PASSWORD}))
            .send()
            .await
            .unwrap();
        assert_eq!(login.status(), 200, "after {after}: alice signs in");
    }
}

/// The password of the durability test's member account.
const ALICE_PASSWORD: &str = "alice-has-a-long-password";

/// Durable by default, as a user meets it, on the real node: a default
/// vault (SQLite on its claim) takes emails, an account and a key; its
/// relay goes down and emails queue. Its pod is deleted, its spec changed
/// (a rollout), it is upgraded, and it backs itself up into a real S3
/// server (SeaweedFS on this host); then the vault and its claim are
/// deleted, and a new one of the same name is restored from the bucket.
/// After each, every row is there; when the relay returns, every queued
/// email is delivered exactly once, and the one sent before never again.
#[tokio::test(flavor = "multi_thread")]
async fn a_vault_keeps_its_rows_and_outbox_through_each_replacement_and_a_restore_from_its_bucket()
{
    let world = restricted_world("real-durable").await;
    load_images();
    // The upgrade's release: the same build under the next version. There
    // is one data plane build; what the upgrade exercises is the
    // operator's managed upgrade and the store across it.
    let (repository, tag) = image("dataplane");
    node_sh(
        &[
            "tag",
            &format!("docker.io/{repository}:{tag}"),
            &format!("docker.io/{repository}:0.1.1"),
        ],
        &[],
    );
    let seaweed = testkit::SeaweedFs::start().unwrap();
    seaweed.create_bucket("backups").unwrap();
    let mut mailpit = Mailpit::start().unwrap();
    let smtp = mailpit.smtp_port();
    let operator = world.operator("real-durable");
    operator.wait_leader();
    world
        .apply(&credentials(&format!(
            "  s3-id: {}\n  s3-secret: {}\n",
            testkit::SeaweedFs::ACCESS_KEY,
            testkit::SeaweedFs::SECRET_KEY
        )))
        .unwrap();
    // Pods reach the host's SeaweedFS at GATEWAY, as they would a bucket's
    // endpoint in the cluster.
    let port = seaweed.endpoint().rsplit(':').next().unwrap().to_owned();
    let spec = |version: &str, more: &str| {
        format!(
            "  version: {version}
  imagePullPolicy: Never
  replicas: 1
  secretKeyRef: {{name: credentials, key: secret-key}}
  adminPasswordSecretRef: {{name: credentials, key: admin-password}}
  smtp: {{host: '{GATEWAY}', port: {smtp}, tls: none, from: noreply@example.com}}
  upgrade: {{verifySeconds: 5}}
  backup:
    intervalSeconds: 10
    s3:
      endpoint: 'http://{GATEWAY}:{port}'
      bucket: backups
      accessKeyIdSecretRef: {{name: credentials, key: s3-id}}
      secretAccessKeySecretRef: {{name: credentials, key: s3-secret}}
{more}{ON_THE_REAL_NODE}"
        )
    };
    world.apply(&vault("mail", &spec(&tag, ""))).unwrap();
    wait_really_ready(&world, "mail").await;
    let pod = the_pod(&world, "mail", None).await;
    let url = service_url(&world, "mail").await;
    let (token, key) = api_key(&url).await;

    // Sent while the relay is up; an account of its own.
    let subject = "sent before anything happened";
    let sent = send(&url, &key, subject).await.unwrap();
    eventually(
        Duration::from_secs(60),
        "the first email in mailpit",
        || async { Some(subjects(&mailpit)) },
        |got: &Vec<String>| !got.is_empty(),
    )
    .await;
    let created = client()
        .post(format!("{url}/api/users"))
        .bearer_auth(&token)
        .json(&json!({"username": "alice", "password": ALICE_PASSWORD, "role": "member"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201, "{}", created.text().await.unwrap());
    let mut holdings = Holdings {
        token,
        key,
        sent: (sent, subject),
        queued: Vec::new(),
    };
    // The relay goes down: what the vault accepts now stays in its outbox.
    mailpit.stop().unwrap();
    let queue = {
        let (url, key) = (url.clone(), holdings.key.clone());
        move |subject: &'static str| {
            let (url, key) = (url.clone(), key.clone());
            async move { (send(&url, &key, subject).await.unwrap(), subject) }
        }
    };

    // 1. Its pod is deleted (as a node drain or a crash would).
    holdings
        .queued
        .push(queue("queued before the pod was deleted").await);
    let uid = pod.metadata.uid.clone().unwrap();
    world
        .api::<Pod>()
        .delete(&pod.name_any(), &Default::default())
        .await
        .unwrap();
    let pod = the_pod(&world, "mail", Some(&uid)).await;
    service_url(&world, "mail").await;
    holdings.are_all_in(&url, "the pod was deleted").await;

    // 2. Its spec changes: the pods roll on the new configuration.
    holdings
        .queued
        .push(queue("queued before the rollout").await);
    let uid = pod.metadata.uid.clone().unwrap();
    world
        .apply(&vault(
            "mail",
            &spec(&tag, "  rateLimits: {email: 500/1m}\n"),
        ))
        .unwrap();
    let pod = the_pod(&world, "mail", Some(&uid)).await;
    wait_really_ready(&world, "mail").await;
    service_url(&world, "mail").await;
    holdings.are_all_in(&url, "the rollout").await;

    // 3. It is upgraded, through the operator's managed upgrade. Before
    // it, a backup on demand, the way docs/operator.md tells users to take
    // one: the image has no shell, so the binary itself, which reads the
    // pod's settings and so writes into the vault's own bucket folder.
    holdings
        .queued
        .push(queue("queued before the upgrade").await);
    let folder = format!("backups/{}/mail", world.ns());
    let out = world
        .cluster
        .kubectl(&[
            "-n",
            world.ns(),
            "exec",
            "deploy/mail",
            "--",
            "/usr/local/bin/securevault",
            "backup",
        ])
        .unwrap();
    let name = out
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .find(|line| line["message"] == "backup written")
        .and_then(|line| line["name"].as_str().map(str::to_owned))
        .unwrap_or_else(|| panic!("no backup written: {out}"));
    let objects = seaweed.objects(&folder).unwrap();
    assert!(
        objects.iter().any(|o| o.name.ends_with(&name)),
        "{name} not in {objects:?}"
    );
    let uid = pod.metadata.uid.clone().unwrap();
    let upgraded = spec("0.1.1", "  rateLimits: {email: 500/1m}\n");
    world.apply(&vault("mail", &upgraded)).unwrap();
    let api = world.api::<SecureVault>();
    eventually(
        Duration::from_secs(180),
        "the upgrade to 0.1.1 succeeded",
        || async { api.get_opt("mail").await.ok().flatten() },
        |sv: &SecureVault| {
            sv.status
                .as_ref()
                .and_then(|s| s.upgrade_history.first())
                .is_some_and(|u| u.to_version == "0.1.1" && u.phase == UpgradePhase::Succeeded)
        },
    )
    .await;
    let pod = the_pod(&world, "mail", Some(&uid)).await;
    let image = pod.spec.as_ref().unwrap().containers[0].image.clone();
    assert!(image.as_deref().unwrap().ends_with(":0.1.1"), "{image:?}");
    service_url(&world, "mail").await;
    holdings.are_all_in(&url, "the upgrade").await;

    // 4. A backup taken after the last email was accepted lands in the
    // bucket, in the vault's own folder.
    holdings
        .queued
        .push(queue("queued before the vault was deleted").await);
    let written = std::time::SystemTime::now();
    let backups = eventually(
        Duration::from_secs(90),
        "a backup newer than the last email in the bucket",
        || async { seaweed.objects(&folder).ok() },
        |objects: &Vec<testkit::seaweedfs::Object>| {
            objects.iter().any(|o| {
                backup_bucket::names::taken_at(&o.name)
                    .is_some_and(|t| t > written + Duration::from_secs(1))
            })
        },
    )
    .await;
    assert!(backups.iter().all(|o| o.size > 0), "{backups:?}");

    // Deleted with its claim (whenDeleted: Delete on the real node).
    api.delete("mail", &kube::api::DeleteParams::foreground())
        .await
        .unwrap();
    let claims = world.api::<k8s_openapi::api::core::v1::PersistentVolumeClaim>();
    eventually(
        Duration::from_secs(120),
        "the vault's claim gone",
        || async { Some(claims.get_opt("mail-data").await.ok()?.is_none()) },
        |gone: &bool| *gone,
    )
    .await;

    // Created again from the bucket: the pod serves once the restore ran,
    // with every row, the key and the session.
    world
        .apply(&vault("mail", &spec("0.1.1", "  restoreFrom: {}\n")))
        .unwrap();
    wait_really_ready(&world, "mail").await;
    let url = service_url(&world, "mail").await;
    holdings.are_all_in(&url, "the restore").await;

    // The relay returns: each queued email goes, once; the one sent before
    // never again. Watched in mailpit, not through the API: polling that
    // would spend the key's rate limit.
    mailpit.restart().unwrap();
    // mailpit keeps what it received before it stopped: the first email.
    let mut expected: Vec<String> = std::iter::once(&holdings.sent)
        .chain(&holdings.queued)
        .map(|(_, subject)| subject.to_string())
        .collect();
    eventually(
        Duration::from_secs(90),
        "every queued email in mailpit",
        || async { Some(subjects(&mailpit)) },
        |got: &Vec<String>| got.len() >= expected.len(),
    )
    .await;
    for (id, subject) in &holdings.queued {
        let mut status = String::new();
        for _ in 0..20 {
            let email = read_email(&url, &holdings.key, id).await;
            status = email["status"].as_str().unwrap_or_default().to_owned();
            if status == "sent" {
                break;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        assert_eq!(status, "sent", "{subject}");
    }
    let mut got = subjects(&mailpit);
    got.sort();
    expected.sort();
    assert_eq!(got, expected, "each email delivered exactly once");
}

/// The spec of a one-replica SecureVault of `version` (of the images built
/// here) on the real node, its secrets from the [`credentials`] Secret, with
/// `more` spec lines.
fn one_replica(version: &str, more: &str) -> String {
    format!(
        "  version: {version}
  imagePullPolicy: Never
  replicas: 1
  secretKeyRef: {{name: credentials, key: secret-key}}
  adminPasswordSecretRef: {{name: credentials, key: admin-password}}
{more}{ON_THE_REAL_NODE}"
    )
}

/// One gauge of `pod`'s data plane, read from its metrics port.
async fn gauge(pod: &Pod, name: &str) -> f64 {
    let ip = pod.status.as_ref().unwrap().pod_ip.clone().unwrap();
    let text = client()
        .get(format!("http://{ip}:9464/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} "))?.parse().ok())
        .unwrap_or_else(|| panic!("{name} in the metrics of {}", pod.name_any()))
}

/// A process of this host in `pod`'s memory cgroup: the kernel charges what
/// it allocates to the container, against the container's limit, exactly as
/// it would a process started inside it (the image has no shell or other
/// program to start there). It allocates `mib` MiB when told to.
struct Allocation(std::process::Child);

impl Allocation {
    fn start_in(pod: &Pod, mib: usize) -> Allocation {
        use std::io::{BufRead, Write};
        let id = pod
            .status
            .as_ref()
            .unwrap()
            .container_statuses
            .as_ref()
            .unwrap()[0]
            .container_id
            .clone()
            .unwrap();
        let id = id.rsplit("://").next().unwrap();
        // The container's memory cgroup, as /proc names it for its process.
        let cgroup = std::fs::read_dir("/proc")
            .unwrap()
            .filter_map(|e| std::fs::read_to_string(e.ok()?.path().join("cgroup")).ok())
            .find_map(|t| {
                t.lines()
                    .find_map(|l| l.split_once(":memory:").map(|(_, p)| p.to_owned()))
                    .filter(|p| p.ends_with(id))
            })
            .unwrap_or_else(|| panic!("no process of container {id}"));
        let mut child = Command::new("python3")
            .args([
                "-c",
                "import sys\nsys.stdin.readline()\nheld = bytearray(b'\\x01') * (int(sys.argv[1]) << 20)\nprint('held', flush=True)\nsys.stdin.readline()",
                &mib.to_string(),
            ])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        std::fs::write(
            format!("/sys/fs/cgroup/memory{cgroup}/cgroup.procs"),
            child.id().to_string(),
        )
        .unwrap();
        writeln!(child.stdin.as_mut().unwrap(), "allocate").unwrap();
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "held", "the allocation was not made");
        Allocation(child)
    }
}

impl Drop for Allocation {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pod_s_memory_and_cpu_are_measured_against_its_own_limits() {
    let world = restricted_world("real-limits").await;
    let (_, tag) = image("dataplane");
    let operator = world.operator("real-limits");
    operator.wait_leader();
    world.apply(&credentials("")).unwrap();
    world
        .apply(&vault(
            "mail",
            &one_replica(
                &tag,
                "  resources: {requests: {cpu: 100m, memory: 256Mi}, limits: {cpu: 500m, memory: 256Mi}}\n",
            ),
        ))
        .unwrap();
    wait_really_ready(&world, "mail").await;
    let pod = the_pod(&world, "mail", None).await;

    // The limits the kubelet gave the container, read from its cgroup (v1
    // on this node), not the node's 24 GiB and 2 cores.
    assert_eq!(
        gauge(&pod, "container_memory_limit_bytes").await,
        268_435_456.0
    );
    assert_eq!(gauge(&pod, "container_cpu_limit_cores").await, 0.5);
    let idle = gauge(&pod, "system_memory_percent").await;
    assert!(idle > 0.0 && idle < 60.0, "the idle data plane: {idle}%");

    // 96 MiB more in the container is 37.5 % of its limit: the gauge moves
    // by that much, where against the node's memory it would barely move.
    let allocation = Allocation::start_in(&pod, 96);
    let held = eventually(
        Duration::from_secs(30),
        "the allocation in system_memory_percent",
        || async { Some(gauge(&pod, "system_memory_percent").await) },
        |now: &f64| *now > idle + 30.0,
    )
    .await;
    assert!(held < idle + 45.0, "{idle}% then {held}%");
    drop(allocation);
    eventually(
        Duration::from_secs(30),
        "the freed allocation out of system_memory_percent",
        || async { Some(gauge(&pod, "system_memory_percent").await) },
        |now: &f64| *now < idle + 10.0,
    )
    .await;
    let cpu = gauge(&pod, "system_cpu_percent").await;
    assert!((0.0..=100.0).contains(&cpu), "{cpu}% of half a core");
}

/// `tests/setup/prometheus-operator.sh WHAT`: the binary, built once.
fn prometheus_tool(what: &str) -> std::path::PathBuf {
    testkit::bins::setup("tests/setup/prometheus-operator.sh", &[what]).unwrap()
}

/// The Prometheus object kube-prometheus-stack renders (release
/// `kube-prometheus-stack`): ServiceMonitors and PrometheusRules labelled
/// with the release, in any namespace. It discovers through this cluster's
/// API server with the admin kubeconfig's credentials, as Prometheus in a
/// pod would with its ServiceAccount. No replicas: its pod would run
/// Prometheus' image, which this machine cannot pull; the Prometheus built
/// here runs the configuration the operator generates instead.
fn kube_prometheus_stack(cluster: &testkit::Cluster) -> String {
    let view = |path: &str| {
        cluster
            .kubectl(&[
                "config",
                "view",
                "--minify",
                "-o",
                &format!("jsonpath={path}"),
            ])
            .unwrap()
    };
    format!(
        "apiVersion: monitoring.coreos.com/v1
kind: Prometheus
metadata: {{name: kps}}
spec:
  replicas: 0
  version: v3.16.0
  serviceDiscoveryRole: EndpointSlice
  scrapeInterval: 5s
  evaluationInterval: 5s
  serviceMonitorSelector: {{matchLabels: {{release: kube-prometheus-stack}}}}
  serviceMonitorNamespaceSelector: {{}}
  ruleSelector: {{matchLabels: {{release: kube-prometheus-stack}}}}
  ruleNamespaceSelector: {{}}
  apiserverConfig:
    host: {server}
    tlsConfig: {{caFile: {ca}, certFile: {cert}, keyFile: {key}}}
",
        server = view("{.clusters[0].cluster.server}"),
        ca = view("{.clusters[0].cluster.certificate-authority}"),
        cert = view("{.users[0].user.client-certificate}"),
        key = view("{.users[0].user.client-key}"),
    )
}

/// Prometheus Operator users are scraped without guessing: a real
/// Prometheus Operator (built from its Go module, run on this host against
/// the cluster) selects the ServiceMonitor and PrometheusRule our operator
/// writes with its default labels, by kube-prometheus-stack's selectors; the
/// configuration it generates, loaded into a real Prometheus (with the
/// Kubernetes service discovery Debian's build lacks), discovers the data
/// plane's pod on the real node, scrapes it, and evaluates our alerts.
#[tokio::test(flavor = "multi_thread")]
async fn a_prometheus_operator_selects_our_monitors_and_its_prometheus_scrapes_the_pod() {
    use k8s_openapi::api::core::v1::{ConfigMap, Secret};

    let prometheus_operator = prometheus_tool("operator");
    let prometheus = prometheus_tool("prometheus");
    let world = restricted_world("real-prom").await;
    // The CRDs it waits for (ServiceMonitor and PrometheusRule are the
    // cluster's already; the same files).
    world
        .cluster
        .kubectl(&[
            "apply",
            "--server-side",
            "--force-conflicts",
            "-f",
            prometheus_operator.with_file_name("crds").to_str().unwrap(),
        ])
        .unwrap();
    // It looks for them once, at start.
    world
        .cluster
        .kubectl(&[
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "crd/prometheuses.monitoring.coreos.com",
            "crd/podmonitors.monitoring.coreos.com",
            "crd/probes.monitoring.coreos.com",
        ])
        .unwrap();
    let mut cmd = Command::new(&prometheus_operator);
    cmd.env("KUBECONFIG", world.cluster.kubeconfig()).args([
        format!("--web.listen-address=127.0.0.1:{}", testkit::free_port()),
        format!("--namespaces={}", world.ns()),
        "--log-level=warn".to_owned(),
    ]);
    let _prometheus_operator = testkit::Process::spawn("prometheus-operator", cmd).unwrap();

    let (_, tag) = image("dataplane");
    let operator = world.operator("real-prom");
    operator.wait_leader();
    world.apply(&credentials("")).unwrap();
    // No monitoring labels in the spec: the operator's default ones.
    world
        .apply(&vault(
            "mail",
            &one_replica(&tag, "  monitoring: {interval: 5s}\n"),
        ))
        .unwrap();
    world.apply(&kube_prometheus_stack(world.cluster)).unwrap();
    wait_really_ready(&world, "mail").await;
    let pod = the_pod(&world, "mail", None).await;

    // The configuration Secret, once it has our ServiceMonitor's job (the
    // first one may be written before the operator's cache has it).
    let job = format!("serviceMonitor/{}/mail/0", world.ns());
    let secrets = world.api::<Secret>();
    let config = eventually(
        Duration::from_secs(60),
        "the Prometheus Operator's configuration with our ServiceMonitor",
        || async {
            let secret = secrets.get_opt("prometheus-kps").await.ok()??;
            let gz = secret.data?.remove("prometheus.yaml.gz")?;
            let mut gunzip = Command::new("gzip")
                .arg("-dc")
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            use std::io::Write;
            gunzip.stdin.take().unwrap().write_all(&gz.0).unwrap();
            let out = gunzip.wait_with_output().unwrap();
            Some(String::from_utf8(out.stdout).unwrap())
        },
        |config: &String| config.contains(&format!("job_name: {job}")),
    )
    .await;
    let rules = eventually(
        Duration::from_secs(60),
        "the Prometheus Operator's rule files with our PrometheusRule",
        || async {
            let cm = world
                .api::<ConfigMap>()
                .get_opt("prometheus-kps-rulefiles-0")
                .await
                .ok()??;
            Some(cm.data.unwrap_or_default())
        },
        |files: &std::collections::BTreeMap<String, String>| {
            files
                .values()
                .any(|f| f.contains("SecureVaultHealthCheckFailing"))
        },
    )
    .await;

    // What the config-reloader sidecar and the pod's mounts would do: its
    // shard number, and the rule files' directory.
    let config = config
        .replace("$(SHARD)", "0")
        .replace("$(POD_NAME)", "prometheus-kps-0")
        .replace("/etc/prometheus/rules/prometheus-kps-rulefiles-0/", "./");
    let files: Vec<(&str, &str)> = rules
        .iter()
        .map(|(name, text)| (name.as_str(), text.as_str()))
        .collect();
    let server = testkit::Prometheus::start_binary(prometheus, &config, &files)
        .unwrap_or_else(|e| panic!("{e}\nwith the configuration:\n{config}"));

    // Discovered through the API server, kept by the operator's relabeling,
    // scraped on the pod's address, with the labels our rules select by.
    let ip = pod.status.as_ref().unwrap().pod_ip.clone().unwrap();
    let target = eventually(
        Duration::from_secs(60),
        "the data plane's pod as a healthy target",
        || async {
            let body: Value =
                serde_json::from_str(&server.get("/api/v1/targets?state=active").ok()?).ok()?;
            body["data"]["activeTargets"]
                .as_array()?
                .iter()
                .find(|t| t["scrapePool"] == job.as_str())
                .cloned()
        },
        |t: &Value| t["health"] == "up",
    )
    .await;
    assert_eq!(target["scrapeUrl"], format!("http://{ip}:9464/metrics"));
    let labels = &target["labels"];
    assert_eq!(labels["namespace"], world.ns());
    assert_eq!(labels["service"], "mail");
    assert_eq!(labels["pod"], pod.name_any().as_str());

    // Every alert of ours loaded and evaluated without error, and the
    // store's health gauge, which the readiness alert reads, came from the
    // pod.
    let loaded = eventually(
        Duration::from_secs(30),
        "our alerts evaluated",
        || async {
            let body: Value = serde_json::from_str(&server.get("/api/v1/rules").ok()?).ok()?;
            Some(
                body["data"]["groups"]
                    .as_array()?
                    .iter()
                    .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
                    .filter(|r| {
                        r["health"] == "ok" && r["lastEvaluation"] != "0001-01-01T00:00:00Z"
                    })
                    .filter_map(|r| r["name"].as_str().map(str::to_owned))
                    .collect::<BTreeSet<_>>(),
            )
        },
        |names: &BTreeSet<String>| names.len() >= operator::alerts::ALERTS.len(),
    )
    .await;
    let ours: BTreeSet<String> = operator::alerts::ALERTS
        .iter()
        .map(|a| a.name.to_owned())
        .collect();
    assert_eq!(loaded, ours);
    let query = format!(
        "/api/v1/query?query=health_check_status%7Bnamespace%3D%22{}%22%2Cservice%3D%22mail%22%2Ccheck%3D%22database%22%7D",
        world.ns()
    );
    let healthy = eventually(
        Duration::from_secs(30),
        "health_check_status scraped from the pod",
        || async {
            let body: Value = serde_json::from_str(&server.get(&query).ok()?).ok()?;
            body["data"]["result"][0]["value"][1]
                .as_str()
                .map(str::to_owned)
        },
        |v: &String| !v.is_empty(),
    )
    .await;
    assert_eq!(healthy, "1", "the pod reaches its store");

    // And the SecureVault's status says who selects its objects: our
    // operator reads the same Prometheus object.
    let kps = format!("{}/kps", world.ns());
    eventually(
        Duration::from_secs(30),
        "MonitoringReady naming the Prometheus that selects the objects",
        || async {
            let sv = world.api::<SecureVault>().get("mail").await.ok()?;
            Some(sv.status?.condition("MonitoringReady")?.message.clone())
        },
        |m: &String| m.contains("selected by Prometheus") && m.contains(&kps),
    )
    .await;
}
