//! Managed upgrades on the real control plane. kwok plays the kubelet, and
//! the cluster's stages (tests/cluster/cluster.sh) let a test choose what a
//! release does: an image tag ending in `-unready` never gets Ready pods,
//! one ending in `-job-fails` fails its Jobs, and kwok's delay annotations
//! slow a step down. The Deployment, ReplicaSet and Job controllers are the
//! real ones.

// Test code: a failure is a panic with a message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use common::*;
use futures::StreamExt;
use k8s_openapi::api::{
    apps::v1::{Deployment, ReplicaSet},
    batch::v1::Job,
    core::v1::Event,
};
use kube::{
    ResourceExt,
    api::ListParams,
    runtime::{WatchStreamExt, watcher},
};
use operator::api::{SecureVault, UpgradePhase};

/// The SecureVault once its upgrade is in `phase`.
async fn wait_phase(w: &World, name: &str, phase: UpgradePhase, limit: Duration) -> SecureVault {
    let api = w.api::<SecureVault>();
    eventually(
        limit,
        &format!("upgrade phase {phase:?}"),
        || async { api.get_opt(name).await.ok().flatten() },
        |sv: &SecureVault| {
            sv.status
                .as_ref()
                .and_then(|s| s.upgrade.as_ref())
                .is_some_and(|u| u.phase == phase)
        },
    )
    .await
}

/// The image of the Deployment's pod template.
async fn deployment_image(w: &World, name: &str) -> String {
    let d = w.api::<Deployment>().get(name).await.unwrap();
    d.spec.template.spec.unwrap().containers[0]
        .image
        .clone()
        .unwrap()
}

/// Reasons of the Events about SecureVault `name`, oldest first.
async fn event_reasons(w: &World, name: &str) -> Vec<String> {
    let mut events: Vec<Event> = w
        .api::<Event>()
        .list(&ListParams::default().fields(&format!("involvedObject.name={name}")))
        .await
        .unwrap()
        .items;
    events.sort_by_key(|e| e.metadata.creation_timestamp.clone().map(|t| t.0));
    events.into_iter().filter_map(|e| e.reason).collect()
}

/// The upgrade's Jobs: (name, image, succeeded pods, failed pods).
async fn upgrade_jobs(w: &World) -> Vec<(String, String, i32, i32)> {
    let mut jobs: Vec<_> = w
        .api::<Job>()
        .list(&ListParams::default())
        .await
        .unwrap()
        .into_iter()
        .filter(|j| j.name_any().contains("-upgrade-"))
        .map(|j| {
            let image = j
                .spec
                .as_ref()
                .unwrap()
                .template
                .spec
                .as_ref()
                .unwrap()
                .containers[0]
                .image
                .clone()
                .unwrap();
            let status = j.status.clone().unwrap_or_default();
            (
                j.name_any(),
                image,
                status.succeeded.unwrap_or(0),
                status.failed.unwrap_or(0),
            )
        })
        .collect();
    jobs.sort();
    jobs
}

#[tokio::test]
async fn a_good_upgrade_backs_up_migrates_and_rolls_out_without_losing_an_available_pod() {
    let w = World::new("upgrade-good").await;
    let _volume = w.backup_volume();
    w.apply(DATABASE_SECRET).unwrap();
    let op = w.operator("solo");
    op.wait_leader();
    let spec = |version: &str| {
        format!(
            "  version: {version}\n  replicas: 2\n{DATABASE_SPEC}  backup: {{volumeClaimName: backups}}\n  upgrade: {{verifySeconds: 3}}\n"
        )
    };
    w.apply(&vault("mail", &spec("0.1.0"))).unwrap();
    wait_ready(&w, "mail").await;

    // Every state the Deployment goes through, from its watch.
    let seen: Arc<Mutex<Vec<(i32, i32)>>> = Arc::default();
    let watch = {
        let seen = seen.clone();
        let stream = watcher(
            w.api::<Deployment>(),
            watcher::Config::default().fields("metadata.name=mail"),
        )
        .applied_objects();
        tokio::spawn(async move {
            let mut stream = std::pin::pin!(stream);
            while let Some(Ok(d)) = stream.next().await {
                let status = d.status.unwrap_or_default();
                seen.lock().unwrap().push((
                    status.available_replicas.unwrap_or(0),
                    d.spec.replicas.unwrap_or(1),
                ));
            }
        })
    };

    w.apply(&vault("mail", &spec("0.2.0"))).unwrap();
    let sv = wait_phase(&w, "mail", UpgradePhase::Succeeded, Duration::from_secs(90)).await;
    watch.abort();

    let status = sv.status.unwrap();
    assert_eq!(status.version.as_deref(), Some("0.2.0"));
    assert_eq!(status.upgrade_history.len(), 1);
    assert_eq!(status.upgrade_history[0].phase, UpgradePhase::Succeeded);
    assert_eq!(
        deployment_image(&w, "mail").await,
        "securevault/dataplane:0.2.0"
    );
    // The backup ran the old release, the migration the new one, once each.
    let jobs = upgrade_jobs(&w).await;
    let id = &status.upgrade.as_ref().unwrap().id;
    assert_eq!(
        jobs,
        [
            (
                format!("mail-upgrade-{id}-backup"),
                "securevault/dataplane:0.1.0".to_owned(),
                1,
                0
            ),
            (
                format!("mail-upgrade-{id}-migrate"),
                "securevault/dataplane:0.2.0".to_owned(),
                1,
                0
            ),
        ]
    );
    let seen = seen.lock().unwrap().clone();
    assert!(seen.len() > 2, "the watch saw the rollout: {seen:?}");
    assert!(
        seen.iter().all(|(available, desired)| available >= desired),
        "fewer available pods than desired at some point: {seen:?}"
    );
    let reasons = event_reasons(&w, "mail").await;
    for wanted in ["UpgradeStarted", "UpgradeProgressing", "UpgradeSucceeded"] {
        assert!(
            reasons.iter().any(|r| r == wanted),
            "{wanted} in {reasons:?}"
        );
    }
}

#[tokio::test]
async fn a_release_that_never_gets_ready_is_rolled_back_and_the_spec_is_left_alone() {
    let w = World::new("upgrade-bad").await;
    let op = w.operator("solo");
    op.wait_leader();
    let spec = |version: &str| {
        format!(
            "  version: {version}\n  replicas: 1\n  upgrade: {{progressDeadlineSeconds: 10, verifySeconds: 2}}\n"
        )
    };
    w.apply(&vault("mail", &spec("0.1.0"))).unwrap();
    wait_ready(&w, "mail").await;

    w.apply(&vault("mail", &spec("0.2.0-unready"))).unwrap();
    let api = w.api::<SecureVault>();
    let before = api.get("mail").await.unwrap();
    let sv = wait_phase(
        &w,
        "mail",
        UpgradePhase::RolledBack,
        Duration::from_secs(60),
    )
    .await;
    // Rolled back by the operator; the user's spec is as they wrote it.
    assert_eq!(sv.spec, before.spec);
    assert_eq!(sv.metadata.generation, before.metadata.generation);
    assert_eq!(sv.spec.version, "0.2.0-unready");
    let status = sv.status.clone().unwrap();
    let upgrade = status.upgrade.clone().unwrap();
    assert!(
        upgrade
            .message
            .contains("0/1 pods of 0.2.0-unready ready 10 s after"),
        "{}",
        upgrade.message
    );
    let degraded = status.condition("Degraded").unwrap();
    assert_eq!(
        (degraded.status.as_str(), degraded.reason.as_str()),
        ("True", "UpgradeRolledBack")
    );
    assert_eq!(status.version.as_deref(), Some("0.1.0"));
    assert_eq!(
        deployment_image(&w, "mail").await,
        "securevault/dataplane:0.1.0"
    );
    let d = w.api::<Deployment>().get("mail").await.unwrap();
    assert_eq!(d.status.unwrap().available_replicas, Some(1));
    let reasons = event_reasons(&w, "mail").await;
    for wanted in ["UpgradeRollingBack", "UpgradeRolledBack"] {
        assert!(
            reasons.iter().any(|r| r == wanted),
            "{wanted} in {reasons:?}"
        );
    }
    let table = w.kubectl(&["get", "sv", "mail"]).unwrap();
    assert!(table.contains("RolledBack"), "{table}");

    // The failed release is not retried by itself; a new one is.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        deployment_image(&w, "mail").await,
        "securevault/dataplane:0.1.0"
    );
    w.apply(&vault("mail", &spec("0.2.1"))).unwrap();
    let sv = wait_phase(&w, "mail", UpgradePhase::Succeeded, Duration::from_secs(60)).await;
    let status = sv.status.unwrap();
    assert_eq!(status.upgrade.unwrap().to_version, "0.2.1");
    assert_eq!(
        status
            .upgrade_history
            .iter()
            .map(|u| u.phase)
            .collect::<Vec<_>>(),
        [UpgradePhase::Succeeded, UpgradePhase::RolledBack]
    );
    let sv = wait_ready(&w, "mail").await;
    assert_eq!(
        sv.status.unwrap().condition("Degraded").unwrap().status,
        "False"
    );
}

#[tokio::test]
async fn a_failing_migration_stops_the_upgrade_before_any_rollout() {
    let w = World::new("upgrade-migration").await;
    w.apply(DATABASE_SECRET).unwrap();
    let op = w.operator("solo");
    op.wait_leader();
    let spec = |version: &str| format!("  version: {version}\n  replicas: 1\n{DATABASE_SPEC}");
    w.apply(&vault("mail", &spec("0.1.0"))).unwrap();
    wait_ready(&w, "mail").await;
    let deployments = w.api::<Deployment>();
    let generation = deployments.get("mail").await.unwrap().metadata.generation;

    w.apply(&vault("mail", &spec("0.2.0-job-fails"))).unwrap();
    let sv = wait_phase(&w, "mail", UpgradePhase::Failed, Duration::from_secs(90)).await;
    let status = sv.status.unwrap();
    let degraded = status.condition("Degraded").unwrap();
    assert_eq!(degraded.reason, "UpgradeFailed");
    assert!(
        degraded.message.contains("migration Job mail-upgrade-")
            && degraded.message.contains("BackoffLimitExceeded")
            && degraded
                .message
                .contains("0.2.0-job-fails was never rolled out"),
        "{}",
        degraded.message
    );
    // No rollout at all: the pod template never changed.
    assert_eq!(
        deployments.get("mail").await.unwrap().metadata.generation,
        generation
    );
    for rs in w
        .api::<ReplicaSet>()
        .list(&ListParams::default())
        .await
        .unwrap()
    {
        let image = rs.spec.template.unwrap().spec.unwrap().containers[0]
            .image
            .clone();
        assert_eq!(image.as_deref(), Some("securevault/dataplane:0.1.0"));
    }
    let jobs = upgrade_jobs(&w).await;
    assert_eq!(jobs.len(), 1);
    assert_eq!(
        (jobs[0].1.as_str(), jobs[0].2, jobs[0].3),
        ("securevault/dataplane:0.2.0-job-fails", 0, 2),
        "the migration ran the new release, and was retried once"
    );
}

#[tokio::test]
async fn an_operator_killed_in_each_phase_resumes_the_upgrade_from_the_status() {
    let w = World::new("upgrade-resume").await;
    let _volume = w.backup_volume();
    w.apply(DATABASE_SECRET).unwrap();
    // Every step takes a few seconds, so the operator can be killed in it.
    let spec = |version: &str| {
        format!(
            "  version: {version}\n  replicas: 1\n{DATABASE_SPEC}  backup: {{volumeClaimName: backups}}\n  upgrade: {{verifySeconds: 4}}\n  annotations: {{pod-ready.stage.kwok.x-k8s.io/delay: 3s, pod-complete.stage.kwok.x-k8s.io/delay: 3s}}\n"
        )
    };
    let mut op = w.operator("first");
    op.wait_leader();
    w.apply(&vault("mail", &spec("0.1.0"))).unwrap();
    wait_ready(&w, "mail").await;

    w.apply(&vault("mail", &spec("0.2.0"))).unwrap();
    for (i, phase) in [
        UpgradePhase::BackingUp,
        UpgradePhase::Migrating,
        UpgradePhase::RollingOut,
        UpgradePhase::Verifying,
    ]
    .into_iter()
    .enumerate()
    {
        wait_phase(&w, "mail", phase, Duration::from_secs(60)).await;
        // A crash, not a shutdown: the Lease is not released, and the next
        // operator waits for it to expire.
        op.process.signal("KILL").unwrap();
        op.process.wait_exit(Duration::from_secs(10)).unwrap();
        op = w.operator(&format!("after-{phase:?}-{i}"));
        op.wait_leader();
    }
    let sv = wait_phase(&w, "mail", UpgradePhase::Succeeded, Duration::from_secs(60)).await;
    let status = sv.status.unwrap();
    assert_eq!(status.version.as_deref(), Some("0.2.0"));
    assert_eq!(
        status.upgrade_history.len(),
        1,
        "{:?}",
        status.upgrade_history
    );
    // Each Job was created once and its pod ran once.
    let jobs = upgrade_jobs(&w).await;
    assert_eq!(
        jobs.iter().map(|j| (j.2, j.3)).collect::<Vec<_>>(),
        [(1, 0), (1, 0)],
        "{jobs:?}"
    );
    let reasons = event_reasons(&w, "mail").await;
    assert_eq!(
        reasons.iter().filter(|r| *r == "UpgradeStarted").count(),
        1,
        "{reasons:?}"
    );
}
