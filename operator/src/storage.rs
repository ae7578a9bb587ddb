//! Where the embedded store lives, as the status reports it, and the one
//! case where it stays where an older operator put it.
//!
//! Operators before `spec.storage` kept the SQLite file on an emptyDir.
//! Moving such a vault to a claim replaces its pod, and the new pod would
//! start on an empty claim: every user, key and queued email gone. So a
//! vault found in that layout stays on it, and says so in its status, until
//! its spec asks for a claim (`spec.storage`), which is the user's decision
//! to make after a backup. Pure functions: `reconcile` reads and applies.

use k8s_openapi::api::{
    apps::v1::Deployment,
    core::v1::{Event, PersistentVolumeClaim},
};

use crate::api::{SecureVault, StorageStatus};

/// What the status says of a store left on an emptyDir.
pub const ON_EMPTY_DIR: &str = "the store is on an emptyDir and goes with the pod (the layout of an \
     operator before spec.storage); back it up (dataplane backup), then set spec.storage to move it \
     to a claim: the pod is replaced and starts on the empty claim, to be restored from that backup";

/// Whether `sv`'s running Deployment keeps the embedded store on an emptyDir
/// and must stay so: it was built that way (its `data` volume is an
/// emptyDir and its pod has no `DATABASE_URL`) and the spec does not ask
/// for a claim.
pub fn left_on_empty_dir(sv: &SecureVault, existing: Option<&Deployment>) -> bool {
    if sv.spec.database.is_some() || sv.spec.storage.is_some() {
        return false;
    }
    let Some(pod) = existing.and_then(|d| d.spec.template.spec.as_ref()) else {
        return false;
    };
    let data_on_empty_dir = pod
        .volumes
        .iter()
        .flatten()
        .any(|v| v.name == "data" && v.empty_dir.is_some());
    let on_a_database = pod
        .containers
        .iter()
        .flat_map(|c| c.env.iter().flatten())
        .any(|e| e.name == crate::env::DATABASE_URL);
    data_on_empty_dir && !on_a_database
}

/// The status of a store left on an emptyDir.
pub fn on_empty_dir() -> StorageStatus {
    StorageStatus {
        claim_name: None,
        phase: "EmptyDir".into(),
        capacity: None,
        message: Some(ON_EMPTY_DIR.into()),
    }
}

/// The status of the store's claim; `events` are those about the claim,
/// any order, of which the latest says why it is not bound.
pub fn of_claim(claim: &PersistentVolumeClaim, events: &[Event]) -> StorageStatus {
    let status = claim.status.clone().unwrap_or_default();
    let phase = status.phase.unwrap_or_else(|| "Pending".into());
    let bound = phase == "Bound";
    let message = (!bound)
        .then(|| {
            events
                .iter()
                .max_by_key(|e| {
                    e.last_timestamp
                        .as_ref()
                        .map(|t| t.0)
                        .or(e.event_time.as_ref().map(|t| t.0))
                })
                .and_then(|e| {
                    let message = e.message.clone()?;
                    Some(match &e.reason {
                        Some(reason) => format!("{reason}: {message}"),
                        None => message,
                    })
                })
        })
        .flatten();
    StorageStatus {
        claim_name: claim.metadata.name.clone(),
        phase,
        capacity: bound
            .then(|| status.capacity?.get("storage").map(|q| q.0.clone()))
            .flatten(),
        message,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::{
        api::core::v1::{EnvVar, PersistentVolumeClaimStatus},
        apimachinery::pkg::{api::resource::Quantity, apis::meta::v1::Time},
    };

    use super::*;
    use crate::{
        build::{config_map, deployment},
        validate::{
            test_support::{COMPLETE, MINIMAL, vault, with_spec},
            validate,
        },
    };

    /// The Deployment an older operator built: the same, data on an emptyDir.
    fn on_empty_dir_layout(sv: &SecureVault) -> Deployment {
        let mut v = validate(sv).unwrap();
        v.storage = None;
        deployment::build(&v, &config_map::build(&v))
    }

    #[test]
    fn only_a_running_embedded_store_on_an_empty_dir_stays_there() {
        let sv = vault(MINIMAL);
        let old = on_empty_dir_layout(&sv);
        assert!(left_on_empty_dir(&sv, Some(&old)));
        // New: nothing runs yet, so nothing to lose.
        assert!(!left_on_empty_dir(&sv, None));
        // Already on its claim.
        let v = validate(&sv).unwrap();
        let current = deployment::build(&v, &config_map::build(&v));
        assert!(!left_on_empty_dir(&sv, Some(&current)));
        // The user asks for the claim.
        let asked = with_spec("  storage: {size: 2Gi}\n");
        assert!(!left_on_empty_dir(&asked, Some(&old)));
    }

    #[test]
    fn a_store_that_was_a_database_is_not_an_empty_dir_to_keep() {
        // A vault moving off PostgreSQL: its old pods' emptyDir held
        // nothing of the store.
        let complete = vault(COMPLETE);
        let on_database = on_empty_dir_layout(&complete);
        assert!(
            on_database.spec.template.spec.as_ref().unwrap().containers[0]
                .env
                .iter()
                .flatten()
                .any(|e: &EnvVar| e.name == "DATABASE_URL")
        );
        let minimal = vault(MINIMAL);
        assert!(!left_on_empty_dir(&minimal, Some(&on_database)));
    }

    fn claim(phase: Option<&str>) -> PersistentVolumeClaim {
        PersistentVolumeClaim {
            metadata: kube::api::ObjectMeta {
                name: Some("mail-data".into()),
                ..Default::default()
            },
            status: Some(PersistentVolumeClaimStatus {
                phase: phase.map(Into::into),
                capacity: Some(BTreeMap::from([(
                    "storage".to_owned(),
                    Quantity("1Gi".into()),
                )])),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn event(reason: &str, message: &str, seconds: i64) -> Event {
        Event {
            reason: Some(reason.into()),
            message: Some(message.into()),
            last_timestamp: Some(Time(
                k8s_openapi::jiff::Timestamp::from_second(seconds).unwrap(),
            )),
            ..Default::default()
        }
    }

    #[test]
    fn a_pending_claim_says_why_with_its_latest_event() {
        let events = [
            event("WaitForFirstConsumer", "waiting for first consumer", 100),
            event(
                "ProvisioningFailed",
                "storageclass.storage.k8s.io \"fast\" not found",
                200,
            ),
        ];
        let s = of_claim(&claim(Some("Pending")), &events);
        assert_eq!(s.claim_name.as_deref(), Some("mail-data"));
        assert_eq!(s.phase, "Pending");
        assert_eq!(
            s.message.as_deref(),
            Some("ProvisioningFailed: storageclass.storage.k8s.io \"fast\" not found")
        );
        assert_eq!(s.capacity, None);
    }

    #[test]
    fn a_bound_claim_gives_its_capacity_and_no_message() {
        let s = of_claim(&claim(Some("Bound")), &[event("Old", "news", 1)]);
        assert_eq!(s.phase, "Bound");
        assert_eq!(s.capacity.as_deref(), Some("1Gi"));
        assert_eq!(s.message, None);
        // Just created: no phase yet is pending.
        assert_eq!(of_claim(&claim(None), &[]).phase, "Pending");
    }
}
