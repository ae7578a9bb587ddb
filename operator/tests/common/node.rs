//! The real node of `make cluster-up NODE=real` (tests/cluster/node.sh), for
//! the tests that run real containers: how a workload asks for it, and the
//! production images imported into its containerd.

use std::{process::Command, sync::OnceLock};

use k8s_openapi::api::core::v1::Pod;
use testkit::{DockerEngine, Registry, TempDir};

use super::repo_root;

/// Where pods reach this host's loopback services (node.sh's bridge).
pub const GATEWAY: &str = "10.244.0.1";

/// The real node's name (node.sh).
pub const NODE: &str = "securevault-real";

/// Where a workload may go on the real node: its label and its taint; and,
/// for a SQLite store, a claim on one of the node's local volumes (node.sh:
/// the default class's volumes are writable by root only), deleted with the
/// SecureVault. Ignored beside `spec.database`.
pub const ON_THE_REAL_NODE: &str = "  placement:
    nodeSelector: {securevault.io/node: real}
    tolerations: [{key: securevault.io/node, operator: Equal, value: real, effect: NoSchedule}]
  storage: {storageClassName: real-node, whenDeleted: Delete}
";

/// Builds the production images with docker/build.sh (`make docker-prod`;
/// the debug binaries `make test` built, packed the production way) in a
/// private engine and brings them into the real node's containerd, once per
/// test process, the way a cluster gets them: pushed to a real registry
/// (crane's, on loopback) and pulled from it by the node's containerd
/// (`node.sh pull`). They then carry their usual names (`securevault/…`,
/// which the kubelet reads as `docker.io/securevault/…`) beside the
/// registry's, and pods use them with `imagePullPolicy: Never`,
/// since the registry lives only as long as this function. Returns the
/// images' names. (`node.sh load`, an import without a registry, remains for
/// a machine without crane; operator/tests/publish.rs has the kubelet
/// itself pull from a registry that outlives the pods.)
pub fn load_images() -> &'static [String] {
    static IMAGES: OnceLock<Vec<String>> = OnceLock::new();
    IMAGES.get_or_init(|| {
        let engine = DockerEngine::start().unwrap();
        let built = engine.build_images().unwrap();
        let registry = Registry::start().unwrap();
        let crane = testkit::registry::crane().unwrap();
        let dir = TempDir::new("node-images").unwrap();
        let mut images = Vec::new();
        for line in built.lines() {
            let image = line.split_whitespace().next().unwrap().to_owned();
            let file = dir
                .path()
                .join(format!("{}.tar", image.replace(['/', ':'], "_")));
            engine.save(&image, &file).unwrap();
            let pushed = format!("{}/{image}", registry.address());
            let out = Command::new(&crane)
                .args(["push", "--insecure"])
                .arg(&file)
                .arg(&pushed)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "crane push {pushed}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            node_sh(&["pull", &pushed], &[]);
            // The name the kubelet looks up for `securevault/…`, which it
            // normalises as Docker does (containerd's own names are whole).
            node_sh(&["tag", &pushed, &format!("docker.io/{image}")], &[]);
            images.push(image);
        }
        assert_eq!(images.len(), 2, "docker/build.sh built: {built}");
        images
    })
}

/// The image of `binary` (`dataplane`, `operator`) that [`load_images`]
/// loaded: (repository, tag).
pub fn image(binary: &str) -> (String, String) {
    let name = load_images()
        .iter()
        .find(|i| i.starts_with(&format!("securevault/{binary}:")))
        .unwrap();
    let (repository, tag) = name.rsplit_once(':').unwrap();
    (repository.to_owned(), tag.to_owned())
}

/// `tests/cluster/node.sh ARGS… FILES…`; fails the test if it fails.
pub fn node_sh(args: &[&str], files: &[std::path::PathBuf]) -> String {
    let out = Command::new(repo_root().join("tests/cluster/node.sh"))
        .args(args)
        .args(files)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "node.sh {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Whether `pod` runs on the real node in a real container, ready.
pub fn really_ready(pod: &Pod) -> bool {
    let on_node = pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(NODE);
    let statuses = pod
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.clone())
        .unwrap_or_default();
    on_node
        && !statuses.is_empty()
        && statuses.iter().all(|c| {
            c.ready
                && c.container_id
                    .as_deref()
                    .is_some_and(|id| id.starts_with("containerd://"))
        })
        && pod.metadata.deletion_timestamp.is_none()
}
