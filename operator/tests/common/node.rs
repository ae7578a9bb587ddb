//! The real node of `make cluster-up NODE=real` (tests/cluster/node.sh), for
//! the tests that run real containers: how a workload asks for it, and the
//! production images imported into its containerd.

use std::{process::Command, sync::OnceLock};

use k8s_openapi::api::core::v1::Pod;
use testkit::{DockerEngine, TempDir};

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
/// private engine and imports them into the real node's containerd, once
/// per test process. No registry is involved: pods use them with
/// `imagePullPolicy: Never`. Returns the images' names.
pub fn load_images() -> &'static [String] {
    static IMAGES: OnceLock<Vec<String>> = OnceLock::new();
    IMAGES.get_or_init(|| {
        let engine = DockerEngine::start().unwrap();
        let built = engine.build_images().unwrap();
        let dir = TempDir::new("node-images").unwrap();
        let mut images = Vec::new();
        let mut archives = Vec::new();
        for line in built.lines() {
            let image = line.split_whitespace().next().unwrap().to_owned();
            let file = dir
                .path()
                .join(format!("{}.tar", image.replace(['/', ':'], "_")));
            engine.save(&image, &file).unwrap();
            images.push(image);
            archives.push(file);
        }
        assert_eq!(images.len(), 2, "docker/build.sh built: {built}");
        node_sh(&["load"], &archives);
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
