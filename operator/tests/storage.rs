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
    deployments
        .patch(
            "mail",
            &PatchParams::apply(operator::names::MANAGER).force(),
            &Patch::Apply(&old),
        )
        .await
        .unwrap();
    assert_eq!(data_claim(&w).await, None);

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
