//! `make publish`, then checked as a user would check what it published: the
//! images and the chart in a real OCI registry (crane's, on loopback), each
//! image signed by digest with cosign and carrying its binary's CycloneDX
//! SBOM as a signed attestation.
//!
//! The test starts a private Docker engine and a registry, makes a cosign
//! key pair, and runs `make publish` with `PROFILE=debug` (the debug
//! binaries `make test` built, packed the production way: see the image
//! test). Then: `cosign verify` and `cosign verify-attestation` with the
//! public key succeed and name the pushed digest, the SBOM lists crates we
//! really link, the image configuration carries the OCI labels, and `helm
//! show chart oci://…` gives our chart, signed with the same key. What must
//! fail does: another key pair verifies nothing, and an image changed after
//! signing (pushed under another tag) has no signature.
//!
//! Then what was published is installed as a platform team installs it, on
//! the real node of `make cluster-up NODE=real`: `helm install oci://…` with
//! one `imageRegistry` value, the operator's pod and a SecureVault's
//! data-plane pod running images containerd pulled from that registry (their
//! image ids are the pushed digests; the references are new to the node, so
//! nothing side-loaded stands in), and `helm test` passing.
//!
//! Every client gets its configuration and caches in a temporary directory
//! (DOCKER_CONFIG, HELM_*_HOME, TUF_ROOT): the test reads no login of the
//! machine's user and leaves nothing in their home. Signing is offline, as
//! publish.sh documents: a key pair, no transparency log.

// Test code: a failure is a panic with a message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::{
    collections::BTreeMap,
    path::PathBuf,
    process::{Command, Output},
    time::Duration,
};

use common::{ClusterScoped, World, node::ON_THE_REAL_NODE, vault, wait_ready_within};
use k8s_openapi::api::core::v1::Pod;
use kube::api::ListParams;
use serde_json::Value;
use testkit::{DockerEngine, Registry, TempDir, bins, free_port, registry};

/// The workspace's version: the images' tag.
const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Each binary with a crate it links, which its SBOM must list.
const IMAGES: [(&str, &str); 2] = [("dataplane", "axum"), ("operator", "kube")];

#[tokio::test]
async fn make_publish_pushes_signed_images_with_sboms_and_the_chart_that_installs_from_there() {
    let engine = DockerEngine::start().unwrap();
    let registry = Registry::start().unwrap();
    let addr = registry.address();
    let clients = Clients::new();
    let keys = clients.key_pair("release");
    let stranger = clients.key_pair("stranger");

    let out = make_publish(
        &clients,
        &[
            ("REGISTRY", addr),
            ("COSIGN_KEY", &keys.join("cosign.key").display().to_string()),
            ("PROFILE", "debug"),
        ],
        Some(engine.host()),
    );
    let printed = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "make publish failed:\n{printed}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("make publish printed:\n{printed}");
    for (bin, _) in IMAGES {
        let sbom = bins::workspace_root().join(format!("{bin}/{bin}_bin.cdx.json"));
        assert!(
            !sbom.exists(),
            "make publish left {} in the tree",
            sbom.display()
        );
    }

    let public = keys.join("cosign.pub").display().to_string();
    let stranger = stranger.join("cosign.pub").display().to_string();
    let mut digests = BTreeMap::new();
    for (bin, dependency) in IMAGES {
        let image = format!("{addr}/securevault/{bin}");
        let tag = format!("{image}:{VERSION}");
        let digest = clients.ok(Command::new(crane()).args(["digest", "--insecure", &tag]));
        let digest = digest.trim();
        assert!(digest.starts_with("sha256:"), "{digest}");
        digests.insert(bin, digest.to_owned());
        assert!(
            printed.contains(&format!("{tag}@{digest}")),
            "make publish names {tag} with its digest {digest}:\n{printed}"
        );
        assert!(
            printed.contains(&format!("cosign verify --key {public} ")),
            "and the command that verifies it:\n{printed}"
        );

        // The signature, looked up by tag as a user would: cosign resolves
        // the digest and names it.
        let verified = clients.ok(cosign_verify("verify", &public).arg(&tag));
        assert!(
            verified.contains(&format!("\"docker-manifest-digest\":\"{digest}\"")),
            "cosign verify of {tag} names {digest}: {verified}"
        );

        // The SBOM: a signed in-toto statement about this digest whose
        // predicate is the CycloneDX document of the binary.
        let attested = clients.ok(cosign_verify("verify-attestation", &public)
            .args(["--type", "cyclonedx"])
            .arg(&tag));
        let statement = statement(&attested);
        assert_eq!(
            statement["subject"][0]["digest"]["sha256"].as_str(),
            digest.strip_prefix("sha256:"),
            "the attestation is about the pushed image: {statement}"
        );
        let sbom = &statement["predicate"];
        assert_eq!(sbom["bomFormat"], "CycloneDX", "{sbom}");
        let mut names = Vec::new();
        component_names(sbom, &mut names);
        assert!(
            names.iter().any(|n| n == dependency),
            "the SBOM of {bin} lists {dependency}; it lists {} components: {names:?}",
            names.len()
        );
        assert!(
            names.iter().any(|n| n == "tokio") && names.len() > 50,
            "the SBOM of {bin} lists the whole dependency tree: {names:?}"
        );

        // The labels docker/Dockerfile sets, in the pushed configuration.
        let config: Value = serde_json::from_str(&clients.ok(Command::new(crane()).args([
            "config",
            "--insecure",
            &tag,
        ])))
        .unwrap();
        let label = |name: &str| {
            config["config"]["Labels"][format!("org.opencontainers.image.{name}")]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        };
        assert_eq!(label("version"), VERSION, "{config}");
        assert_eq!(label("licenses"), "Apache-2.0", "{config}");
        assert!(label("source").starts_with("https://"), "{config}");
        assert!(
            label("revision").starts_with(head().as_str()),
            "revision {} is the commit {}",
            label("revision"),
            head()
        );

        // Another key pair verifies nothing: not the signature, not the SBOM.
        let foreign = clients.output(cosign_verify("verify", &stranger).arg(&tag));
        assert!(
            !foreign.status.success(),
            "{tag} verified with an unrelated key: {}",
            String::from_utf8_lossy(&foreign.stdout)
        );
        let foreign = clients.output(
            cosign_verify("verify-attestation", &stranger)
                .args(["--type", "cyclonedx"])
                .arg(&tag),
        );
        assert!(
            !foreign.status.success(),
            "{tag}'s SBOM verified with an unrelated key"
        );
    }

    // An image changed after signing (one label), pushed under another tag:
    // a new digest, which nobody signed.
    let image = format!("{addr}/securevault/dataplane");
    let changed = format!("{image}:changed");
    clients.ok(Command::new(crane()).args([
        "mutate",
        "--insecure",
        "--label",
        "org.opencontainers.image.revision=changed",
        &format!("{image}:{VERSION}"),
        "-t",
        &changed,
    ]));
    let unsigned = clients.output(cosign_verify("verify", &public).arg(&changed));
    let stderr = String::from_utf8_lossy(&unsigned.stderr);
    assert!(
        !unsigned.status.success(),
        "an unsigned image verified: {}",
        String::from_utf8_lossy(&unsigned.stdout)
    );
    assert!(
        stderr.contains("no signatures found") || stderr.contains("no matching signatures"),
        "it fails for want of a signature, not of the registry: {stderr}"
    );

    // The chart, as `helm install oci://…` would fetch it.
    let (name, version) = chart();
    let chart_ref = format!("oci://{addr}/charts/{name}");
    let chart_digest = printed
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{chart_ref}:{version}@")))
        .unwrap_or_else(|| panic!("make publish names the chart with its digest:\n{printed}"));
    let chart_tag = format!("{addr}/charts/{name}:{version}");
    let signed = clients.ok(cosign_verify("verify", &public).arg(&chart_tag));
    assert!(
        signed.contains(&format!("\"docker-manifest-digest\":\"{chart_digest}\"")),
        "the chart is signed by digest {chart_digest}: {signed}"
    );
    let foreign = clients.output(cosign_verify("verify", &stranger).arg(&chart_tag));
    assert!(
        !foreign.status.success(),
        "the chart verified with an unrelated key"
    );
    let shown = clients.ok(
        Command::new(bins::setup("tests/setup/helm.sh", &[]).unwrap()).args([
            "show",
            "chart",
            &chart_ref,
            "--version",
            &version,
            "--plain-http",
        ]),
    );
    assert!(
        shown.contains(&format!("name: {name}")) && shown.contains(&format!("version: {version}")),
        "helm show chart {chart_ref}: {shown}"
    );

    install_from_the_registry(&clients, addr, &chart_ref, &version, &digests).await;
}

/// `helm install oci://…` on the real node, every image from the registry
/// at `addr` by the chart's one `imageRegistry` value; `helm test`; and a
/// SecureVault whose data plane comes from there too.
async fn install_from_the_registry(
    clients: &Clients,
    addr: &str,
    chart_ref: &str,
    version: &str,
    digests: &BTreeMap<&str, String>,
) {
    let w = World::new("from-registry").await;
    let kubeconfig = w.cluster.kubeconfig().display().to_string();
    let _cluster_scoped = ClusterScoped {
        cluster: w.cluster,
        instance: w.ns().to_owned(),
    };
    let values = clients.dir.path().join("values.yaml");
    std::fs::write(
        &values,
        format!(
            "imageRegistry: '{addr}'
replicaCount: 1
# The cluster's CRD, which every test shares.
crds: {{enabled: false}}
nodeSelector: {{securevault.io/node: real}}
tolerations: [{{key: securevault.io/node, operator: Equal, value: real, effect: NoSchedule}}]
"
        ),
    )
    .unwrap();
    let helm = || {
        let mut cmd = Command::new(bins::setup("tests/setup/helm.sh", &[]).unwrap());
        cmd.args(["--namespace", w.ns(), "--kubeconfig", &kubeconfig]);
        cmd
    };
    clients.ok(helm().args([
        "install",
        w.ns(),
        chart_ref,
        "--version",
        version,
        "--plain-http",
        "-f",
        values.to_str().unwrap(),
        "--wait",
        "--timeout",
        "300s",
    ]));

    // The operator's pod runs the pushed image, pulled by digest.
    let pulled = |selector: &str, bin: &str| {
        let pods = w.api::<Pod>();
        let (selector, bin) = (selector.to_owned(), bin.to_owned());
        async move {
            let list = pods
                .list(&ListParams::default().labels(&selector))
                .await
                .unwrap();
            let status = list.items[0]
                .status
                .clone()
                .unwrap()
                .container_statuses
                .unwrap();
            let container = status.iter().find(|c| c.name != "restore").unwrap().clone();
            (bin, container.image, container.image_id)
        }
    };
    let (bin, image, id) = pulled("app.kubernetes.io/name=securevault-operator", "operator").await;
    assert_eq!(image, format!("{addr}/securevault/{bin}:{VERSION}"));
    assert!(
        id.ends_with(&digests[bin.as_str()]),
        "{id} is the pushed {}",
        digests[bin.as_str()]
    );

    // `helm test`: the hook's pod asks the operator for /readyz (its
    // output, shown by --logs, says why if it fails).
    let tested = clients.ok(helm().args(["test", w.ns(), "--logs", "--timeout", "120s"]));
    assert!(
        tested.contains("Phase:          Succeeded") || tested.contains("Phase: Succeeded"),
        "{tested}"
    );

    // A SecureVault without spec.image: its data plane comes from the
    // chart's registry too (the operator's DATAPLANE_IMAGE_REPOSITORY).
    w.apply(&vault(
        "mail",
        &format!("  version: {VERSION}\n  replicas: 1\n{ON_THE_REAL_NODE}"),
    ))
    .unwrap();
    wait_ready_within(&w, "mail", Duration::from_secs(240)).await;
    let (bin, image, id) = pulled("app.kubernetes.io/instance=mail", "dataplane").await;
    assert_eq!(image, format!("{addr}/securevault/{bin}:{VERSION}"));
    assert!(
        id.ends_with(&digests[bin.as_str()]),
        "{id} is the pushed {}",
        digests[bin.as_str()]
    );
}

#[test]
fn make_publish_names_what_is_missing() {
    let clients = Clients::new();
    let key = clients.dir.path().join("cosign.key");
    std::fs::write(&key, "not used: publish stops before signing").unwrap();
    let key = key.display().to_string();
    // Nothing listens here (the port was free a moment ago).
    let silent = format!("127.0.0.1:{}", free_port());

    for (vars, expected) in [
        (vec![("COSIGN_KEY", key.as_str())], "REGISTRY is not set"),
        (vec![("REGISTRY", silent.as_str())], "COSIGN_KEY is not set"),
        (
            vec![
                ("REGISTRY", silent.as_str()),
                ("COSIGN_KEY", "/nonexistent/cosign.key"),
            ],
            "COSIGN_KEY=/nonexistent/cosign.key: no such key file",
        ),
        (
            vec![("REGISTRY", silent.as_str()), ("COSIGN_KEY", key.as_str())],
            "does not answer",
        ),
    ] {
        let out = make_publish(&clients, &vars, None);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "make publish {vars:?} succeeded");
        assert!(
            stderr.contains(expected),
            "make publish {vars:?} says {expected:?}: {stderr}"
        );
    }
}

/// The clients' configuration and caches, in one temporary directory.
struct Clients {
    dir: TempDir,
}

impl Clients {
    fn new() -> Clients {
        Clients {
            dir: TempDir::new("publish-clients").unwrap(),
        }
    }

    /// `cmd` with the clients' directories in its environment.
    fn env<'a>(&self, cmd: &'a mut Command) -> &'a mut Command {
        let at = |name: &str| self.dir.path().join(name);
        cmd.env("DOCKER_CONFIG", at("docker"))
            .env("HELM_CONFIG_HOME", at("helm/config"))
            .env("HELM_CACHE_HOME", at("helm/cache"))
            .env("HELM_DATA_HOME", at("helm/data"))
            .env("HELM_REGISTRY_CONFIG", at("helm/registry.json"))
            .env("TUF_ROOT", at("sigstore"))
            .env("COSIGN_PASSWORD", "")
    }

    /// A cosign key pair (cosign.key, cosign.pub; no password) in a new
    /// directory under this one.
    fn key_pair(&self, name: &str) -> PathBuf {
        let dir = self.dir.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        self.ok(Command::new(registry::cosign().unwrap())
            .arg("generate-key-pair")
            .current_dir(&dir));
        assert!(dir.join("cosign.pub").is_file(), "no key pair in {dir:?}");
        dir
    }

    /// Runs `cmd` in the clients' environment, whatever its status.
    fn output(&self, cmd: &mut Command) -> Output {
        self.env(cmd).output().unwrap()
    }

    /// Runs `cmd` and returns its stdout; a failure fails the test.
    fn ok(&self, cmd: &mut Command) -> String {
        let out = self.output(cmd);
        assert!(
            out.status.success(),
            "{cmd:?} failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }
}

/// `make publish VARS…` from the workspace root, as a user runs it, with
/// the clients' directories and (if set) the cache the test run uses.
fn make_publish(clients: &Clients, vars: &[(&str, &str)], docker_host: Option<&str>) -> Output {
    let mut cmd = Command::new("make");
    cmd.current_dir(bins::workspace_root())
        .args(["--no-print-directory", "publish"])
        .args(vars.iter().map(|(k, v)| format!("{k}={v}")));
    if let Some(cache) = std::env::var_os("SECUREVAULT_CACHE").filter(|c| !c.is_empty()) {
        cmd.arg(format!("CACHE_DIR={}", cache.to_string_lossy()));
    }
    // A fresh make: not a sub-make of the `make test` that runs this test
    // (whose jobserver it cannot reach), and nothing of the caller's own
    // publishing settings.
    for var in [
        "MAKEFLAGS",
        "MAKELEVEL",
        "MFLAGS",
        "REGISTRY",
        "COSIGN_KEY",
        "PLAIN_HTTP",
        "PROFILE",
        "DOCKER_HOST",
    ] {
        cmd.env_remove(var);
    }
    if let Some(host) = docker_host {
        cmd.env("DOCKER_HOST", host);
    }
    clients.output(&mut cmd)
}

/// `cosign verify|verify-attestation` with a public key, offline (no
/// transparency log) and over plain HTTP, as publish.sh prints it.
fn cosign_verify(command: &str, public_key: &str) -> Command {
    let mut cmd = Command::new(registry::cosign().unwrap());
    cmd.args([
        command,
        "--key",
        public_key,
        "--insecure-ignore-tlog=true",
        "--allow-http-registry",
    ]);
    cmd
}

fn crane() -> PathBuf {
    registry::crane().unwrap()
}

/// The in-toto statement of the (one) attestation `cosign
/// verify-attestation` printed: a DSSE envelope per line, whose payload is
/// the statement in base64.
fn statement(printed: &str) -> Value {
    let envelopes: Vec<Value> = printed
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(envelopes.len(), 1, "one attestation: {printed}");
    let payload = envelopes[0]["payload"].as_str().unwrap();
    serde_json::from_slice(&base64_decode(payload)).unwrap()
}

/// Standard base64 (coreutils' decoder: no crate for one test).
fn base64_decode(text: &str) -> Vec<u8> {
    let dir = TempDir::new("base64").unwrap();
    let file = dir.path().join("payload");
    std::fs::write(&file, text).unwrap();
    let out = Command::new("base64")
        .arg("-d")
        .arg(&file)
        .output()
        .unwrap();
    assert!(out.status.success(), "base64 -d: {out:?}");
    out.stdout
}

/// Every component name in a CycloneDX document, nested ones too.
fn component_names(value: &Value, names: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            if let Some(Value::Array(components)) = map.get("components") {
                for component in components {
                    if let Some(name) = component["name"].as_str() {
                        names.push(name.to_owned());
                    }
                }
            }
            map.values().for_each(|v| component_names(v, names));
        }
        Value::Array(items) => items.iter().for_each(|v| component_names(v, names)),
        _ => {}
    }
}

/// The chart's name and version, from its Chart.yaml.
fn chart() -> (String, String) {
    let path = bins::workspace_root().join("charts/securevault-operator/Chart.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let field = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key))
            .map(|v| v.trim().trim_matches('"').to_owned())
            .unwrap_or_else(|| panic!("no {key} in {}", path.display()))
    };
    (field("name:"), field("version:"))
}

/// The commit checked out (short), which docker/build.sh puts in the
/// revision label.
fn head() -> String {
    let out = Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(bins::workspace_root())
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}
