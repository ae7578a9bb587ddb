//! The embedded store's claim against a real control plane: the claim the
//! operator makes, bound by kube-controller-manager's own provisioner (the
//! test cluster's default StorageClass, tests/cluster/cluster.sh), what
//! becomes of it when its SecureVault goes, and a store an older operator
//! left on an emptyDir.

// Test code: a failure is a panic with a message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::*;
use k8s_openapi::api::{apps::v1::Deployment, core::v1::PersistentVolumeClaim};
use kube::api::{DeleteParams, Patch, PatchParams};
use operator::api::{SecureVault, StorageStatus};

/// The data volume of the Deployment `mail`: its claim's name, or `None`
/// for an emptyDir.
async fn data_claim(w: &World) -> Option<String> {
    let d = w.api::<Deployment>().get("mail").await.unwrap();
    let volumes = d.spec.template.spec.unwrap().volumes.unwrap();
    let data = volumes.into_iter().find(|v| v.name == "data").unwrap();
    assert!(
        data.persistent_volume_claim.is_some() != data.empty_dir.is_some(),
        "{data:?}"
    );
    data.persistent_volume_claim.map(|c| c.claim_name)
}

/// `status.storage` of `mail` once `done` holds for it.
async fn storage_status(
    w: &World,
    what: &str,
    done: impl Fn(&StorageStatus) -> bool,
) -> StorageStatus {
    let api = w.api::<SecureVault>();
    eventually(
        Duration::from_secs(60),
        what,
        || async { api.get_opt("mail").await.ok().flatten()?.status?.storage },
        |s: &StorageStatus| done(s),
    )
    .await
}

#[tokio::test]
async fn the_store_is_on_a_retained_claim_that_a_vault_of_the_same_name_takes_back() {
    let w = World::new("storage-retain").await;
    let op = w.operator("solo");
    op.wait_leader();
    let spec = "  version: 0.1.0\n  replicas: 1\n";
    w.apply(&vault("mail", spec)).unwrap();
    wait_ready(&w, "mail").await;

    let status = storage_status(&w, "the claim Bound", |s| s.phase == "Bound").await;
    assert_eq!(status.claim_name.as_deref(), Some("mail-data"));
    assert_eq!(status.capacity.as_deref(), Some("1Gi"));
    assert_eq!(status.message, None);
    let claims = w.api::<PersistentVolumeClaim>();
    let claim = claims.get("mail-data").await.unwrap();
    assert_eq!(claim.metadata.owner_references, None, "retained: no owner");
    assert_eq!(
        claim.metadata.annotations.as_ref().unwrap()["securevault.io/retained-for"],
        "mail"
    );
    let claim_spec = claim.spec.clone().unwrap();
    assert_eq!(claim_spec.access_modes.unwrap(), ["ReadWriteOnce"]);
    let volume = claim_spec.volume_name.unwrap();
    // One pod on the claim at a time.
    let d = w.api::<Deployment>().get("mail").await.unwrap();
    assert_eq!(d.spec.strategy.unwrap().type_.as_deref(), Some("Recreate"));
    assert_eq!(data_claim(&w).await.as_deref(), Some("mail-data"));

    // Deleted by mistake: its children go, the claim and its volume stay.
    w.api::<SecureVault>()
        .delete("mail", &DeleteParams::foreground())
        .await
        .unwrap();
    let deployments = w.api::<Deployment>();
    eventually(
        Duration::from_secs(60),
        "the Deployment collected with its SecureVault",
        || async { Some(deployments.get_opt("mail").await.ok()?.is_none()) },
        |gone: &bool| *gone,
    )
    .await;
    let kept = claims.get("mail-data").await.unwrap();
    assert_eq!(kept.metadata.uid, claim.metadata.uid);
    assert!(kept.metadata.deletion_timestamp.is_none());

    // Created again: it takes its claim back (not someone else's object),
    // on the same volume.
    w.apply(&vault("mail", spec)).unwrap();
    let sv = wait_ready(&w, "mail").await;
    assert_eq!(
        sv.status.unwrap().condition("Degraded").unwrap().status,
        "False"
    );
    let taken = claims.get("mail-data").await.unwrap();
    assert_eq!(taken.metadata.uid, claim.metadata.uid);
    assert_eq!(taken.spec.unwrap().volume_name.unwrap(), volume);
    assert_eq!(data_claim(&w).await.as_deref(), Some("mail-data"));
}

#[tokio::test]
async fn with_when_deleted_delete_the_claim_is_owned_and_a_pending_one_says_why() {
    let w = World::new("storage-delete").await;
    // Refused by the API server, naming the field.
    let refused = w
        .apply(&vault(
            "bad",
            "  version: 0.1.0\n  replicas: 1\n  storage: {size: lots}\n",
        ))
        .unwrap_err()
        .to_string();
    assert!(
        refused.contains("spec.storage.size must be a positive quantity"),
        "{refused}"
    );

    let op = w.operator("solo");
    op.wait_leader();
    w.apply(&vault(
        "mail",
        "  version: 0.1.0\n  replicas: 1\n  storage: {size: 2Gi, storageClassName: absent, whenDeleted: Delete}\n",
    ))
    .unwrap();
    // No such class: the claim waits, and the status says why.
    let status = storage_status(&w, "the claim Pending with a reason", |s| {
        s.phase == "Pending" && s.message.is_some()
    })
    .await;
    let message = status.message.unwrap();
    assert!(message.contains("\"absent\" not found"), "{message}");
    let claims = w.api::<PersistentVolumeClaim>();
    let claim = claims.get("mail-data").await.unwrap();
    let sv = w.api::<SecureVault>().get("mail").await.unwrap();
    let owners = claim.metadata.owner_references.clone().unwrap();
    assert_eq!(owners[0].uid, sv.metadata.uid.clone().unwrap());
    let spec = claim.spec.unwrap();
    assert_eq!(spec.storage_class_name.as_deref(), Some("absent"));
    assert_eq!(
        spec.resources.unwrap().requests.unwrap()["storage"].0,
        "2Gi"
    );

    // Deleted, the SecureVault takes its claim along.
    w.api::<SecureVault>()
        .delete("mail", &DeleteParams::foreground())
        .await
        .unwrap();
    eventually(
        Duration::from_secs(60),
        "the claim collected with its SecureVault",
        || async { Some(claims.get_opt("mail-data").await.ok()?.is_none()) },
        |gone: &bool| *gone,
    )
    .await;
}

#[tokio::test]
async fn a_store_an_older_operator_left_on_an_empty_dir_stays_there_until_the_spec_asks() {
    let w = World::new("storage-legacy").await;
    let mut op = w.operator("solo");
    op.wait_leader();
    w.apply(&vault("mail", "  version: 0.1.0\n  replicas: 1\n"))
        .unwrap();
    wait_ready(&w, "mail").await;
    op.stop();
    // What an operator before spec.storage built: the data on an emptyDir,
    // applied under the operator's field manager as that operator did (so
    // that the next apply may drop the emptyDir, as it will in a cluster).
    let deployments = w.api::<Deployment>();
    let mut old = deployments.get("mail").await.unwrap();
    old.metadata.managed_fields = None;
    old.metadata.resource_version = None;
    old.metadata.uid = None;
    old.metadata.creation_timestamp = None;
    old.metadata.generation = None;
    old.status = None;
    let pod = old.spec.template.spec.as_mut().unwrap();
    for v in pod.volumes.iter_mut().flatten() {
        if v.name == "data" {
            v.persistent_volume_claim = None;
            v.empty_dir = Some(Default::default());
        }
    }
    // Nor did it back anything up.
    pod.volumes
        .as_mut()
        .unwrap()
        .retain(|v| v.name != "backups");
    let container = &mut pod.containers[0];
    container
        .volume_mounts
        .as_mut()
        .unwrap()
        .retain(|m| m.name != "backups");
    container
        .env
        .as_mut()
        .unwrap()
        .retain(|e| !e.name.starts_with("BACKUP_"));
    deployments
        .patch(
            "mail",
            &PatchParams::apply(operator::names::MANAGER).force(),
            &Patch::Apply(&old),
        )
        .await
        .unwrap();
    assert_eq!(data_claim(&w).await, None);
    let template = deployments.get("mail").await.unwrap().spec.template;

    // A new operator leaves it there (moving it would start the pod on an
    // empty claim), and says so.
    let op = w.operator("upgraded");
    op.wait_leader();
    let status = storage_status(&w, "the emptyDir reported", |s| s.phase == "EmptyDir").await;
    assert_eq!(status.claim_name, None);
    assert!(
        status.message.unwrap().contains("set spec.storage"),
        "the status says what to do"
    );
    assert_eq!(data_claim(&w).await, None);
    // Not even scheduled backups: any change to the pod template would
    // replace the pod, and with it the emptyDir that holds the store.
    assert_eq!(
        deployments.get("mail").await.unwrap().spec.template,
        template,
        "the pod on the emptyDir must not be replaced"
    );

    // The user asks for the claim: the pod moves to it.
    w.apply(&vault(
        "mail",
        "  version: 0.1.0\n  replicas: 1\n  storage: {size: 1Gi}\n",
    ))
    .unwrap();
    storage_status(&w, "the claim Bound", |s| s.phase == "Bound").await;
    assert_eq!(data_claim(&w).await.as_deref(), Some("mail-data"));
    wait_ready(&w, "mail").await;
}

/// The condition `BackupReady` of `mail` once `done` holds for it.
async fn backup_ready(
    w: &World,
    what: &str,
    done: impl Fn(&k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition) -> bool,
) -> k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
    let api = w.api::<SecureVault>();
    eventually(
        Duration::from_secs(60),
        what,
        || async {
            let sv = api.get_opt("mail").await.ok().flatten()?;
            sv.status?.condition("BackupReady").cloned()
        },
        |c: &k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition| done(c),
    )
    .await
}

/// Patches `mail`'s spec.backup; a new generation makes the operator look
/// again at once.
async fn set_backup(w: &World, backup: serde_json::Value) {
    w.api::<SecureVault>()
        .patch(
            "mail",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"backup": backup}})),
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn backups_go_to_their_own_claim_or_a_bucket_and_the_status_says_which_and_what_is_wrong() {
    let w = World::new("storage-backups").await;
    let refused = w
        .apply(&vault(
            "bad",
            "  version: 0.1.0\n  replicas: 1\n  restoreFrom: {backup: latest}\n",
        ))
        .unwrap_err()
        .to_string();
    assert!(
        refused.contains("spec.restoreFrom needs a bucket"),
        "{refused}"
    );

    let op = w.operator("solo");
    op.wait_leader();
    w.apply(&vault("mail", "  version: 0.1.0\n  replicas: 1\n"))
        .unwrap();
    let sv = wait_ready(&w, "mail").await;
    // By default, a second claim: the operator cannot look inside it, so
    // no condition claims to know how old the last backup is.
    let status = sv.status.unwrap();
    assert_eq!(
        status.backup_destination.as_deref(),
        Some("claim mail-backups")
    );
    assert!(status.condition("BackupReady").is_none());
    let claim = w
        .api::<PersistentVolumeClaim>()
        .get("mail-backups")
        .await
        .unwrap();
    assert_eq!(
        claim.metadata.annotations.unwrap()["securevault.io/retained-for"],
        "mail"
    );
    let d = w.api::<Deployment>().get("mail").await.unwrap();
    let pod = d.spec.template.spec.unwrap();
    let env = pod.containers[0].env.clone().unwrap();
    assert!(env.iter().any(|e| e.name == "BACKUP_DIR"), "{env:?}");

    // A real bucket, reached from here as the pods would reach theirs.
    let seaweed = testkit::SeaweedFs::start().unwrap();
    seaweed.create_bucket("backups").unwrap();
    let ns = w.ns().to_owned();
    w.apply(&format!(
        "apiVersion: v1
kind: Secret
metadata: {{name: s3, namespace: {ns}}}
stringData: {{id: {}, secret: {}, wrong: not-the-secret}}
",
        testkit::SeaweedFs::ACCESS_KEY,
        testkit::SeaweedFs::SECRET_KEY
    ))
    .unwrap();
    let s3 = |bucket: &str, secret_key: &str| {
        serde_json::json!({"s3": {
            "endpoint": seaweed.endpoint(),
            "bucket": bucket,
            "accessKeyIdSecretRef": {"name": "s3", "key": "id"},
            "secretAccessKeySecretRef": {"name": "s3", "key": secret_key},
        }})
    };

    set_backup(&w, s3("no-such-bucket", "secret")).await;
    let c = backup_ready(&w, "BucketNotFound", |c| c.reason == "BucketNotFound").await;
    assert_eq!(c.status, "False");
    assert!(
        c.message.contains("bucket `no-such-bucket` does not exist"),
        "{}",
        c.message
    );

    set_backup(&w, s3("backups", "wrong")).await;
    let c = backup_ready(&w, "CredentialsRefused", |c| {
        c.reason == "CredentialsRefused"
    })
    .await;
    assert!(c.message.contains("SignatureDoesNotMatch"), "{}", c.message);

    set_backup(&w, s3("backups", "secret")).await;
    let c = backup_ready(&w, "Scheduled", |c| c.reason == "Scheduled").await;
    assert_eq!(c.status, "True");
    let sv = w.api::<SecureVault>().get("mail").await.unwrap();
    let status = sv.status.unwrap();
    let folder = format!("{ns}/mail/");
    assert_eq!(
        status.backup_destination.as_deref(),
        Some(format!("s3://backups/{folder}").as_str())
    );
    // A new destination rolls the pod (its settings changed); a backup
    // problem is no outage: Ready comes back with the bucket still empty.
    wait_ready(&w, "mail").await;
    let d = w.api::<Deployment>().get("mail").await.unwrap();
    let env = d.spec.template.spec.unwrap().containers[0]
        .env
        .clone()
        .unwrap();
    let prefix = env.iter().find(|e| e.name == "BACKUP_S3_PREFIX").unwrap();
    assert_eq!(prefix.value.as_deref(), Some(folder.as_str()));

    // A backup lands where the pod would put it (the data plane's own
    // `backup`, with the pod's settings); the next look sees it.
    let store = testkit::TempDir::new("store").unwrap();
    let out = std::process::Command::new(testkit::workspace_binary("dataplane").unwrap())
        .arg("backup")
        .env("DATA_DIR", store.path())
        .env("BACKUP_S3_ENDPOINT", seaweed.endpoint())
        .env("BACKUP_S3_BUCKET", "backups")
        .env("BACKUP_S3_PREFIX", &folder)
        .env("BACKUP_S3_ACCESS_KEY_ID", testkit::SeaweedFs::ACCESS_KEY)
        .env(
            "BACKUP_S3_SECRET_ACCESS_KEY",
            testkit::SeaweedFs::SECRET_KEY,
        )
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    set_backup(&w, serde_json::json!({"maxAgeSeconds": 7200})).await;
    let c = backup_ready(&w, "Recent", |c| c.reason == "Recent").await;
    assert_eq!(c.status, "True");
    let sv = w.api::<SecureVault>().get("mail").await.unwrap();
    assert!(sv.status.unwrap().last_backup_time.is_some());
}
