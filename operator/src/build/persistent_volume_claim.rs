//! The PersistentVolumeClaim holding the embedded SQLite store, so that what
//! a vault has accepted (users, keys, the outbox, the audit trail) survives
//! its pod: a configuration change, an upgrade, a node drain; and the one its
//! backups go to when no bucket is configured (`<name>-backups`), made alike.
//!
//! ReadWriteOnce: one node mounts it, and the Deployment replaces its single
//! pod with `Recreate` so two pods never share the file (`deployment.rs`).
//!
//! With `whenDeleted: Retain` (the default) the claim carries no owner
//! reference, since the garbage collector deletes whatever names a deleted
//! owner; the annotation [`names::RETAINED_FOR_ANNOTATION`] is what makes it
//! this SecureVault's, and lets one of the same name created again take it
//! back. With `Delete` it is owned like every other child.

use std::collections::BTreeMap;

use k8s_openapi::{
    api::core::v1::{PersistentVolumeClaim, PersistentVolumeClaimSpec, VolumeResourceRequirements},
    apimachinery::pkg::api::resource::Quantity,
};

use crate::{
    names,
    validate::{BackupDestination, Storage, ValidatedVault},
};

/// The claim, unless the store is an external database (or an older
/// operator's emptyDir, kept until the spec asks for a claim).
pub fn build(v: &ValidatedVault) -> Option<PersistentVolumeClaim> {
    Some(claim(v, names::data_claim(&v.name), v.storage.as_ref()?))
}

/// The claim backups go to, when the operator creates it.
pub fn backups(v: &ValidatedVault) -> Option<PersistentVolumeClaim> {
    match &v.backup.as_ref()?.destination {
        BackupDestination::Claim {
            name,
            created: Some(storage),
        } => Some(claim(v, name.clone(), storage)),
        _ => None,
    }
}

fn claim(v: &ValidatedVault, name: String, storage: &Storage) -> PersistentVolumeClaim {
    let mut metadata = super::metadata(v, name);
    if storage.retain {
        metadata.owner_references = None;
        metadata
            .annotations
            .get_or_insert_with(BTreeMap::new)
            .insert(names::RETAINED_FOR_ANNOTATION.into(), v.name.clone());
    }
    PersistentVolumeClaim {
        metadata,
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".into()]),
            storage_class_name: storage.storage_class_name.clone(),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([(
                    "storage".to_owned(),
                    Quantity(storage.size.clone()),
                )])),
                ..VolumeResourceRequirements::default()
            }),
            ..PersistentVolumeClaimSpec::default()
        }),
        ..PersistentVolumeClaim::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::test_support::minimal;

    #[test]
    fn by_default_one_gibibyte_read_write_once_retained_without_an_owner() {
        let claim = build(&minimal()).unwrap();
        assert_eq!(claim.metadata.name.as_deref(), Some("mail-data"));
        assert_eq!(claim.metadata.owner_references, None);
        assert_eq!(
            claim.metadata.annotations.unwrap()[names::RETAINED_FOR_ANNOTATION],
            "mail"
        );
        let spec = claim.spec.unwrap();
        assert_eq!(spec.access_modes.unwrap(), ["ReadWriteOnce"]);
        assert_eq!(spec.storage_class_name, None);
        assert_eq!(
            spec.resources.unwrap().requests.unwrap()["storage"],
            Quantity("1Gi".into())
        );
    }

    #[test]
    fn with_delete_it_is_owned_and_size_and_class_come_from_the_spec() {
        let mut v = minimal();
        v.storage = Some(crate::validate::Storage {
            size: "20Gi".into(),
            storage_class_name: Some("fast".into()),
            retain: false,
        });
        let claim = build(&v).unwrap();
        assert_eq!(claim.metadata.owner_references.unwrap()[0].name, "mail");
        assert!(
            !claim
                .metadata
                .annotations
                .unwrap_or_default()
                .contains_key(names::RETAINED_FOR_ANNOTATION)
        );
        let spec = claim.spec.unwrap();
        assert_eq!(spec.storage_class_name.as_deref(), Some("fast"));
        assert_eq!(
            spec.resources.unwrap().requests.unwrap()["storage"],
            Quantity("20Gi".into())
        );
    }

    #[test]
    fn none_with_an_external_database() {
        let mut v = minimal();
        v.storage = None;
        assert!(build(&v).is_none());
    }
}
