//! A SecureVault against a real control plane (kube-apiserver, etcd,
//! controller-manager, scheduler and kwok nodes), reconciled by the real
//! operator binary.

mod common;

use std::time::Duration;

use common::*;
use k8s_openapi::api::{
    apps::v1::Deployment,
    core::v1::{ConfigMap, Pod, Secret, Service, ServiceAccount},
};
use kube::{
    ResourceExt,
    api::{DeleteParams, ListParams},
};
use operator::api::SecureVault;

const MINIMAL: &str = include_str!("../../config/samples/minimal.yaml");

/// Whether `child` has a controller owner reference to the object `uid`.
fn controlled_by(child: &impl kube::Resource, uid: &str) -> bool {
    child
        .meta()
        .owner_references
        .iter()
        .flatten()
        .any(|o| o.uid == uid && o.controller == Some(true))
}

#[tokio::test]
async fn the_minimal_sample_becomes_ready_with_owned_children() {
    let w = World::new("minimal").await;
    let op = w.operator("solo");
    op.wait_leader();
    w.apply(MINIMAL).unwrap();

    let sv = wait_ready(&w, "mail").await;
    let status = sv.status.clone().unwrap();
    assert_eq!(status.version.as_deref(), Some("0.1.0"));
    assert_eq!(status.replicas_summary.as_deref(), Some("1/1"));
    assert_eq!(
        status.service,
        Some(format!("http://mail.{}.svc:8080", w.ns()))
    );
    for c in &status.conditions {
        assert_eq!(c.observed_generation, sv.metadata.generation);
    }

    let uid = sv.uid().unwrap();
    assert!(controlled_by(
        &w.api::<Deployment>().get("mail").await.unwrap(),
        &uid
    ));
    assert!(controlled_by(
        &w.api::<Service>().get("mail").await.unwrap(),
        &uid
    ));
    assert!(controlled_by(
        &w.api::<ServiceAccount>().get("mail").await.unwrap(),
        &uid
    ));
    assert!(controlled_by(
        &w.api::<ConfigMap>().get("mail-config").await.unwrap(),
        &uid
    ));
    let key = w.api::<Secret>().get("mail-secret-key").await.unwrap();
    assert!(controlled_by(&key, &uid));
    let generated = key.data.unwrap();
    assert_eq!(generated["secret-key"].0.len(), 64);
    assert_eq!(generated["admin-password"].0.len(), 64);

    let pods = w
        .api::<Pod>()
        .list(&ListParams::default().labels("app.kubernetes.io/instance=mail"))
        .await
        .unwrap();
    assert_eq!(pods.items.len(), 1);
    let ready = pods.items[0].status.clone().unwrap().conditions.unwrap();
    assert!(
        ready
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True")
    );

    let table = w.kubectl(&["get", "sv"]).unwrap();
    let row = table.lines().nth(1).unwrap();
    let cells: Vec<_> = row.split_whitespace().collect();
    assert_eq!(&cells[..4], ["mail", "True", "0.1.0", "1/1"], "{table}");
    // The short name and the Events.
    assert!(
        w.kubectl(&["get", "securevaults"])
            .unwrap()
            .contains("mail")
    );
    let events = w
        .kubectl(&[
            "get",
            "events",
            "--field-selector",
            "involvedObject.kind=SecureVault",
        ])
        .unwrap();
    // One Event for what a reconcile created, naming each object.
    assert!(
        events
            .lines()
            .any(|l| l.contains("Created") && l.contains("Deployment mail")),
        "{events}"
    );
}

#[tokio::test]
async fn a_spec_change_rolls_the_deployment_and_the_status_follows() {
    let w = World::new("change").await;
    let op = w.operator("solo");
    op.wait_leader();
    w.apply(MINIMAL).unwrap();
    let before = wait_ready(&w, "mail").await;
    let deployments = w.api::<Deployment>();
    let old = deployments.get("mail").await.unwrap();
    let checksum = |d: &Deployment| {
        d.spec
            .template
            .metadata
            .clone()
            .unwrap()
            .annotations
            .unwrap()["securevault.io/config-checksum"]
            .clone()
    };

    w.apply(&vault(
        "mail",
        "  version: 0.2.0\n  replicas: 1\n  logLevel: debug\n",
    ))
    .unwrap();
    let after = eventually(
        Duration::from_secs(60),
        "status version 0.2.0",
        || async { w.api::<SecureVault>().get_opt("mail").await.ok().flatten() },
        |sv: &SecureVault| {
            sv.status.as_ref().is_some_and(|s| {
                s.version.as_deref() == Some("0.2.0")
                    && s.observed_generation == sv.metadata.generation
            })
        },
    )
    .await;
    assert!(after.metadata.generation > before.metadata.generation);
    let new = deployments.get("mail").await.unwrap();
    let container = &new.spec.template.spec.clone().unwrap().containers[0];
    assert_eq!(
        container.image.as_deref(),
        Some("securevault/dataplane:0.2.0")
    );
    assert_ne!(
        checksum(&old),
        checksum(&new),
        "the config change must roll the pods"
    );
    let cm = w.api::<ConfigMap>().get("mail-config").await.unwrap();
    assert_eq!(cm.data.unwrap()["LOG_LEVEL"], "debug");
    let pods = w
        .api::<Pod>()
        .list(&ListParams::default().labels("app.kubernetes.io/instance=mail"))
        .await
        .unwrap();
    assert!(
        pods.items
            .iter()
            .all(|p| p.labels()["app.kubernetes.io/version"] == "0.2.0"
                || p.metadata.deletion_timestamp.is_some())
    );

    // The scale subresource: `kubectl scale` works on a SecureVault.
    w.kubectl(&["scale", "sv/mail", "--replicas=0"]).unwrap();
    eventually(
        Duration::from_secs(30),
        "the Deployment scaled to 0 and the status following",
        || async {
            let d = w.api::<Deployment>().get_opt("mail").await.ok().flatten()?;
            let sv = w
                .api::<SecureVault>()
                .get_opt("mail")
                .await
                .ok()
                .flatten()?;
            Some((d.spec.replicas, sv.status?.replicas_summary))
        },
        |(replicas, summary): &(Option<i32>, Option<String>)| {
            *replicas == Some(0) && summary.as_deref() == Some("0/0")
        },
    )
    .await;
}

#[tokio::test]
async fn deleted_or_edited_children_are_restored() {
    let w = World::new("restore").await;
    let op = w.operator("solo");
    op.wait_leader();
    w.apply(MINIMAL).unwrap();
    wait_ready(&w, "mail").await;

    w.api::<ConfigMap>()
        .delete("mail-config", &DeleteParams::default())
        .await
        .unwrap();
    w.api::<Service>()
        .delete("mail", &DeleteParams::default())
        .await
        .unwrap();
    // An edit by another manager of a field the operator owns.
    w.kubectl(&["scale", "deployment/mail", "--replicas=4"])
        .unwrap();

    eventually(
        Duration::from_secs(20),
        "the ConfigMap back",
        || async {
            w.api::<ConfigMap>()
                .get_opt("mail-config")
                .await
                .ok()
                .flatten()
        },
        |cm: &ConfigMap| {
            cm.data
                .as_ref()
                .is_some_and(|d| d.contains_key("LISTEN_ADDR"))
        },
    )
    .await;
    eventually(
        Duration::from_secs(20),
        "the Service back",
        || async { w.api::<Service>().get_opt("mail").await.ok().flatten() },
        |_| true,
    )
    .await;
    eventually(
        Duration::from_secs(20),
        "replicas back to 1",
        || async { w.api::<Deployment>().get_opt("mail").await.ok().flatten() },
        |d: &Deployment| d.spec.replicas == Some(1),
    )
    .await;

    // Annotations other managers add are theirs and stay.
    w.kubectl(&["annotate", "deployment/mail", "example.com/owner=someone"])
        .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let d = w.api::<Deployment>().get("mail").await.unwrap();
    assert_eq!(d.annotations()["example.com/owner"], "someone");
}

#[tokio::test]
async fn invalid_secure_vaults_are_refused_by_the_api_server_with_what_to_fix() {
    let w = World::new("invalid").await;
    let cases = [
        (
            "  version: 0.1.0\n  replicas: 3\n",
            "spec.replicas above 1 needs spec.database.urlSecretRef",
        ),
        (
            "  version: latest\n  replicas: 1\n",
            "spec.version must be a release such as 0.1.0",
        ),
        (
            "  version: 0.1.0\n  replicas: 101\n",
            "spec.replicas: Invalid value",
        ),
        (
            "  version: 0.1.0\n  replicas: 1\n  logLevel: loud\n",
            "spec.logLevel: Unsupported value: \"loud\"",
        ),
        (
            "  version: 0.1.0\n  replicas: 1\n  smtp: {host: mail, port: 587, tls: starttls, from: postmaster}\n",
            "spec.smtp.from must be an email address",
        ),
        (
            "  version: 0.1.0\n  replicas: 1\n  smtp: {host: mail, port: 70000, tls: starttls, from: a@b.c}\n",
            "spec.smtp.port: Invalid value",
        ),
        (
            "  version: 0.1.0\n  replicas: 1\n  ai: {baseUrl: api.openai.com}\n",
            "spec.ai.baseUrl must start with http:// or https://",
        ),
        (
            "  version: 0.1.0\n  replicas: 1\n  ai: {baseUrl: 'http://a/v1', fallbacks: [{name: primary, baseUrl: 'http://b/v1'}]}\n",
            "and not primary, which names spec.ai.baseUrl",
        ),
        (
            "  version: 0.1.0\n  replicas: 1\n  ai: {baseUrl: 'http://a/v1', fallbacks: [{name: b, baseUrl: 'http://b/v1'}, {name: b, baseUrl: 'http://c/v1'}]}\n",
            "spec.ai.fallbacks: each name must be used once",
        ),
        (
            "  version: 0.1.0\n  replicas: 1\n  ai: {baseUrl: 'http://a/v1', models: [small], fallbacks: [{name: b, baseUrl: 'http://b/v1', models: [large]}]}\n",
            "spec.ai.fallbacks[].models must be listed in spec.ai.models too",
        ),
        (
            "  version: 0.1.0\n  replicas: 1\n  ai: {baseUrl: 'http://a/v1', models: ['two words']}\n",
            "spec.ai.models[0]",
        ),
        (
            "  version: 0.1.0\n  replicas: 1\n  ai: {baseUrl: 'http://a/v1', budgets: {keyDailyTokens: 0}}\n",
            "spec.ai.budgets.keyDailyTokens",
        ),
        (
            "  version: 0.1.0\n  replicas: 1\n  webhook: {urlSecretRef: {name: hooks, key: url}}\n",
            "spec.webhook.signingSecretRef is required unless spec.webhook.format is slack",
        ),
        (
            "  version: 0.1.0\n  replicas: 1\n  rateLimits: {email: 10/minute}\n",
            "spec.rateLimits.email must be COUNT/PERIOD",
        ),
        (
            "  version: 0.1.0\n  replicas: 1\n  auth: {trustedProxies: [10.0.0.0/33]}\n",
            "spec.auth.trustedProxies must hold IP addresses or CIDR ranges",
        ),
        (
            "  version: 0.1.0\n  replicas: 1\n  backup: {schedule: '0 * * * *'}\n",
            "spec.backup.schedule is the CronJob of PostgreSQL vaults",
        ),
        (
            "  version: 0.1.0\n  replicas: 1\n  database: {urlSecretRef: {name: db, key: url}}\n  backup: {retain: 5}\n",
            "spec.backup on PostgreSQL needs spec.backup.s3 or spec.backup.volumeClaimName",
        ),
        (
            "  version: 0.1.0\n  replicas: 1\n  backup: {s3: {bucket: My_Backups}}\n",
            "the bucket must be an S3 bucket name",
        ),
        (
            "  version: 0.1.0\n  replicas: 1\n  backup: {s3: {bucket: backups, endpoint: 'http://s3.local/backups'}}\n",
            "spec.backup.s3.endpoint must be http(s)://HOST[:PORT], without a path",
        ),
        (
            "  version: 0.1.0\n  replicas: 1\n  backup: {s3: {bucket: backups, accessKeyIdSecretRef: {name: s3, key: id}}}\n",
            "set both accessKeyIdSecretRef and secretAccessKeySecretRef, or neither",
        ),
        (
            "  version: 0.1.0\n  replicas: 1\n  networkPolicy: {egressCidrs: [db.example]}\n",
            "spec.networkPolicy.egressCidrs must hold CIDR ranges",
        ),
        ("  replicas: 1\n", "spec.version: Required value"),
    ];
    for (spec, message) in cases {
        let err = w.apply(&vault("bad", spec)).unwrap_err().to_string();
        assert!(
            err.contains(message),
            "expected {message:?} for\n{spec}\ngot: {err}"
        );
    }
    assert!(
        w.kubectl(&["get", "sv", "-o", "name"])
            .unwrap()
            .trim()
            .is_empty()
    );
}

#[tokio::test]
async fn an_idle_secure_vault_causes_no_writes() {
    let w = World::new("idle").await;
    let op = w.operator("solo");
    op.wait_leader();
    w.apply(MINIMAL).unwrap();
    wait_ready(&w, "mail").await;
    // Let the last status write and pod updates settle.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let before = resource_versions(&w).await;
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert_eq!(resource_versions(&w).await, before);
}

#[tokio::test]
async fn deleting_the_secure_vault_garbage_collects_its_children() {
    let w = World::new("gc").await;
    let op = w.operator("solo");
    op.wait_leader();
    w.apply(MINIMAL).unwrap();
    wait_ready(&w, "mail").await;
    w.kubectl(&["delete", "sv", "mail", "--wait=true"]).unwrap();
    eventually(
        Duration::from_secs(60),
        "every child gone",
        || async {
            let d = w.api::<Deployment>().get_opt("mail").await.ok()?;
            let c = w.api::<ConfigMap>().get_opt("mail-config").await.ok()?;
            let s = w.api::<Secret>().get_opt("mail-secret-key").await.ok()?;
            let svc = w.api::<Service>().get_opt("mail").await.ok()?;
            Some([d.is_none(), c.is_none(), s.is_none(), svc.is_none()])
        },
        |gone: &[bool; 4]| gone.iter().all(|g| *g),
    )
    .await;
}

#[tokio::test]
async fn a_missing_secret_degrades_and_its_arrival_recovers_at_once() {
    let w = World::new("secret").await;
    let op = w.operator("solo");
    op.wait_leader();
    w.apply(&vault("mail", REDIS_SPEC)).unwrap();
    let degraded = eventually(
        Duration::from_secs(30),
        "Degraded naming the Secret",
        || async { w.api::<SecureVault>().get_opt("mail").await.ok().flatten() },
        |sv: &SecureVault| {
            sv.status
                .as_ref()
                .and_then(|s| s.condition("Degraded"))
                .is_some_and(|c| c.status == "True" && c.reason == "SecretMissing")
        },
    )
    .await;
    let message = &degraded
        .status
        .unwrap()
        .condition("Degraded")
        .unwrap()
        .message
        .clone();
    assert!(
        message.contains(&format!("Secret {}/cache does not exist", w.ns())),
        "{message}"
    );

    w.apply(REDIS_SECRET).unwrap();
    // Well before the 10-minute resync: the Secret's arrival triggers it.
    degraded_cleared(&w, "mail", Duration::from_secs(15)).await;
    wait_ready(&w, "mail").await;
}

/// The env var `name` of the Deployment's data-plane container, as a
/// (Secret, key) reference.
fn secret_env(d: &Deployment, name: &str) -> Option<(String, String)> {
    let container = d.spec.template.spec.as_ref()?.containers.first()?;
    let var = container.env.iter().flatten().find(|e| e.name == name)?;
    let r = var.value_from.as_ref()?.secret_key_ref.as_ref()?;
    Some((r.name.clone(), r.key.clone()))
}

#[tokio::test]
async fn rotating_away_from_the_generated_key_keeps_it_until_the_rotation_ends() {
    let w = World::new("rotate").await;
    let op = w.operator("solo");
    op.wait_leader();
    w.apply(&vault("mail", "  version: 0.1.0\n  replicas: 1\n"))
        .unwrap();
    wait_ready(&w, "mail").await;
    let secrets = w.api::<Secret>();
    let old_key = secrets.get("mail-secret-key").await.unwrap().data.unwrap()["secret-key"].clone();

    // The rotation: a new key of the user's, the generated one as previous.
    w.kubectl(&[
        "create",
        "secret",
        "generic",
        "new-key",
        "--from-literal=k=0123456789abcdef0123456789abcdef0123456789abcdef",
    ])
    .unwrap();
    w.apply(&vault(
        "mail",
        "  version: 0.1.0\n  replicas: 1\n  secretKeyRef: {name: new-key, key: k}\n  secretKeyPreviousRef: {name: mail-secret-key, key: secret-key}\n",
    ))
    .unwrap();
    let d = eventually(
        Duration::from_secs(30),
        "SECRET_KEY_PREVIOUS in the Deployment",
        || async { w.api::<Deployment>().get_opt("mail").await.ok().flatten() },
        |d: &Deployment| secret_env(d, "SECRET_KEY_PREVIOUS").is_some(),
    )
    .await;
    assert_eq!(
        secret_env(&d, "SECRET_KEY"),
        Some(("new-key".into(), "k".into()))
    );
    assert_eq!(
        secret_env(&d, "SECRET_KEY_PREVIOUS"),
        Some(("mail-secret-key".into(), "secret-key".into()))
    );
    // The rows are still sealed with the generated key: it must stay.
    let during = secrets.get("mail-secret-key").await.unwrap().data.unwrap();
    assert_eq!(during.get("secret-key"), Some(&old_key));
    wait_ready(&w, "mail").await;

    // The same key twice is refused by the schema, saying what to do.
    let refused = w
        .apply(&vault(
            "mail",
            "  version: 0.1.0\n  replicas: 1\n  secretKeyRef: {name: new-key, key: k}\n  secretKeyPreviousRef: {name: new-key, key: k}\n",
        ))
        .unwrap_err()
        .to_string();
    assert!(
        refused.contains("spec.secretKeyPreviousRef names the same Secret key"),
        "{refused}"
    );

    // After reencrypt: the previous key goes from the pods, and the
    // generated Secret keeps only what is still generated.
    w.apply(&vault(
        "mail",
        "  version: 0.1.0\n  replicas: 1\n  secretKeyRef: {name: new-key, key: k}\n",
    ))
    .unwrap();
    eventually(
        Duration::from_secs(30),
        "SECRET_KEY_PREVIOUS gone and the generated key dropped",
        || async {
            let d = w.api::<Deployment>().get_opt("mail").await.ok().flatten()?;
            let s = secrets.get_opt("mail-secret-key").await.ok().flatten()?;
            Some((d, s))
        },
        |(d, s): &(Deployment, Secret)| {
            secret_env(d, "SECRET_KEY_PREVIOUS").is_none()
                && s.data.as_ref().is_some_and(|data| {
                    !data.contains_key("secret-key") && data.contains_key("admin-password")
                })
        },
    )
    .await;
}

/// Waits until `Degraded` on `name` is False.
async fn degraded_cleared(w: &World, name: &str, limit: Duration) {
    eventually(
        limit,
        "Degraded cleared",
        || async { w.api::<SecureVault>().get_opt(name).await.ok().flatten() },
        |sv: &SecureVault| {
            sv.status
                .as_ref()
                .and_then(|s| s.condition("Degraded"))
                .is_some_and(|c| c.status == "False")
        },
    )
    .await;
}

/// Waits for `Degraded` with `reason` on `name` and returns its message.
async fn degraded_for(w: &World, name: &str, reason: &str) -> String {
    let degraded = |sv: &SecureVault| {
        sv.status
            .as_ref()
            .and_then(|s| s.condition("Degraded"))
            .filter(|c| c.status == "True" && c.reason == reason)
            .map(|c| c.message.clone())
    };
    let sv = eventually(
        Duration::from_secs(30),
        &format!("Degraded: {reason}"),
        || async { w.api::<SecureVault>().get_opt(name).await.ok().flatten() },
        |sv: &SecureVault| degraded(sv).is_some(),
    )
    .await;
    degraded(&sv).unwrap_or_default()
}

#[tokio::test]
async fn a_missing_relay_ca_degrades_until_its_secret_and_key_exist() {
    let w = World::new("smtp-ca").await;
    let op = w.operator("solo");
    op.wait_leader();
    w.apply(&vault(
        "mail",
        "  version: 0.1.0\n  replicas: 1\n  smtp: {host: smtp.internal, port: 465, tls: tls, from: noreply@example.com, caSecretRef: {name: relay-ca, key: ca.crt}}\n",
    ))
    .unwrap();
    let message = degraded_for(&w, "mail", "SecretMissing").await;
    assert!(
        message.contains(&format!("Secret {}/relay-ca does not exist", w.ns()))
            && message.contains("SMTP_CA_FILE"),
        "{message}"
    );
    w.kubectl(&[
        "create",
        "secret",
        "generic",
        "relay-ca",
        "--from-literal=root.pem=x",
    ])
    .unwrap();
    let message = degraded_for(&w, "mail", "SecretKeyMissing").await;
    assert!(message.contains("has no key \"ca.crt\""), "{message}");
    w.kubectl(&["delete", "secret", "relay-ca"]).unwrap();
    w.kubectl(&[
        "create",
        "secret",
        "generic",
        "relay-ca",
        "--from-literal=ca.crt=x",
    ])
    .unwrap();
    degraded_cleared(&w, "mail", Duration::from_secs(30)).await;
    let config = w.api::<ConfigMap>().get("mail-config").await.unwrap();
    assert_eq!(
        config.data.unwrap()["SMTP_CA_FILE"],
        "/etc/securevault/smtp-ca/ca.crt"
    );
}

#[tokio::test]
async fn a_dkim_secret_without_a_key_for_the_sender_domain_degrades_until_one_is_added() {
    let w = World::new("dkim").await;
    let op = w.operator("solo");
    op.wait_leader();
    w.apply(&vault(
        "mail",
        "  version: 0.1.0\n  replicas: 1\n  smtp: {host: smtp.example.com, port: 587, tls: starttls, from: Shop <noreply@example.com>, dkim: {secretName: mail-dkim}}\n",
    ))
    .unwrap();
    let message = degraded_for(&w, "mail", "SecretMissing").await;
    assert!(
        message.contains(&format!(
            "Secret {}/mail-dkim (spec.smtp.dkim.secretName) does not exist",
            w.ns()
        )),
        "{message}"
    );

    // Keys only for another domain, and one misnamed: both said at once.
    w.kubectl(&[
        "create",
        "secret",
        "generic",
        "mail-dkim",
        "--from-literal=sv2026._domainkey.example.org=unused",
        "--from-literal=dkim.pem=unused",
    ])
    .unwrap();
    let message = degraded_for(&w, "mail", "DkimKeyNameInvalid").await;
    assert!(
        message.contains("holds no key for example.com, the domain of spec.smtp.from")
            && message.contains("add a key <selector>._domainkey.example.com"),
        "{message}"
    );
    assert!(message.contains("\"dkim.pem\""), "{message}");

    // The right name: Degraded clears, and the pods mount the Secret as
    // the data plane's DKIM_KEYS_DIR.
    w.kubectl(&["delete", "secret", "mail-dkim"]).unwrap();
    w.kubectl(&[
        "create",
        "secret",
        "generic",
        "mail-dkim",
        "--from-literal=sv2026._domainkey.example.com=unused",
    ])
    .unwrap();
    degraded_cleared(&w, "mail", Duration::from_secs(30)).await;
    let config = w.api::<ConfigMap>().get("mail-config").await.unwrap();
    let data = config.data.unwrap();
    assert_eq!(data["DKIM_KEYS_DIR"], "/etc/securevault/dkim");
    assert_eq!(data["DKIM_ALLOW_UNSIGNED"], "false");
    let deployment = w.api::<Deployment>().get("mail").await.unwrap();
    let pod = deployment.spec.template.spec.unwrap();
    let volume = pod
        .volumes
        .iter()
        .flatten()
        .find(|v| v.secret.as_ref().and_then(|s| s.secret_name.as_deref()) == Some("mail-dkim"))
        .expect("the DKIM Secret is a volume");
    let mount = pod.containers[0]
        .volume_mounts
        .iter()
        .flatten()
        .find(|m| m.name == volume.name)
        .expect("and mounted");
    assert_eq!(mount.mount_path, "/etc/securevault/dkim");
    assert_eq!(mount.read_only, Some(true));
}

#[tokio::test]
async fn a_restarted_operator_changes_nothing() {
    let w = World::new("restart").await;
    let mut op = w.operator("first");
    op.wait_leader();
    w.apply(MINIMAL).unwrap();
    wait_ready(&w, "mail").await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let before = resource_versions(&w).await;
    assert_eq!(op.stop().code(), Some(0));

    let again = w.operator("second");
    again.wait_leader();
    again
        .process
        .wait_for_line(
            |l| l.contains("reconcile") || l.contains("became the leader"),
            Duration::from_secs(10),
        )
        .unwrap();
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(resource_versions(&w).await, before);
}

#[tokio::test]
async fn only_the_leader_reconciles_and_a_standby_takes_over() {
    let w = World::new("leader").await;
    let mut first = w.operator("first");
    first.wait_leader();
    let second = w.operator("second");
    // The standby waits while the first one holds the lease.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        !second
            .process
            .output_lines()
            .iter()
            .any(|l| l.contains("became the leader"))
    );

    w.apply(MINIMAL).unwrap();
    wait_ready(&w, "mail").await;
    let events = w
        .kubectl(&[
            "get",
            "events",
            "--field-selector",
            "involvedObject.kind=SecureVault",
            "-o",
            "jsonpath={.items[*].reportingInstance}",
        ])
        .unwrap();
    assert!(!events.trim().is_empty());
    assert!(
        events.split_whitespace().all(|i| i == "first"),
        "events from {events}"
    );

    assert_eq!(first.stop().code(), Some(0));
    second.wait_leader();
    // The new leader reconciles: a spec change is followed.
    w.apply(&vault("mail", "  version: 0.3.0\n  replicas: 1\n"))
        .unwrap();
    let sv = wait_ready(&w, "mail").await;
    assert_eq!(sv.status.unwrap().version.as_deref(), Some("0.3.0"));
    let lease = w
        .kubectl(&[
            "get",
            "lease",
            "securevault-operator",
            "-o",
            "jsonpath={.spec.holderIdentity}",
        ])
        .unwrap();
    assert_eq!(lease.trim(), "second");
}

#[tokio::test]
async fn monitoring_objects_are_accepted_follow_the_spec_and_come_back_when_deleted() {
    use operator::api::monitoring::{PrometheusRule, ServiceMonitor};
    let w = World::new("monitoring").await;
    let op = w.operator("solo");
    op.wait_leader();
    let spec = |threshold: &str| {
        vault(
            "mail",
            &format!(
                "  version: 0.1.0\n  replicas: 1\n  monitoring:\n    labels: {{team: mail}}\n    alerts:\n      highErrorRate: {{threshold: {threshold}, for: 10m}}\n"
            ),
        )
    };
    w.apply(&spec("2")).unwrap();
    let sv = wait_ready(&w, "mail").await;
    let monitoring = sv
        .status
        .as_ref()
        .unwrap()
        .condition("MonitoringReady")
        .unwrap();
    assert_eq!(
        (monitoring.status.as_str(), monitoring.reason.as_str()),
        ("True", "Applied")
    );
    assert!(
        monitoring
            .message
            .contains("with labels release=kube-prometheus-stack,team=mail"),
        "{}",
        monitoring.message
    );

    // Accepted by the real Prometheus Operator CRD schemas, labelled for
    // kube-prometheus-stack's selector by the operator's default (the spec
    // only adds its own), owned by the SecureVault.
    let uid = sv.uid().unwrap();
    let sm = w.api::<ServiceMonitor>().get("mail").await.unwrap();
    let labels = sm.metadata.labels.as_ref().unwrap();
    assert_eq!(labels["release"], "kube-prometheus-stack");
    assert_eq!(labels["team"], "mail");
    assert_eq!(sm.spec.endpoints[0].path, "/metrics");
    assert_eq!(sm.spec.endpoints[0].port, "metrics");
    assert!(controlled_by(&sm, &uid));
    let rule = w.api::<PrometheusRule>().get("mail-alerts").await.unwrap();
    assert!(controlled_by(&rule, &uid));
    assert_eq!(
        rule.metadata.labels.as_ref().unwrap()["release"],
        "kube-prometheus-stack"
    );
    let rules = &rule.spec.groups[0].rules;
    assert_eq!(rules.len(), 8);
    let error_rate = rules
        .iter()
        .find(|r| r.alert == "SecureVaultHighErrorRate")
        .unwrap();
    assert!(error_rate.expr.ends_with("> 2"), "{}", error_rate.expr);
    assert_eq!(error_rate.for_, "10m");
    // The dashboard ships with the chart, one for all: a per-vault one an
    // earlier version wrote (owned by the SecureVault) goes.
    let dashboards = w.api::<ConfigMap>();
    dashboards
        .create(
            &Default::default(),
            &serde_json::from_value(serde_json::json!({
                "metadata": {
                    "name": "mail-dashboard",
                    // As the earlier version labelled its children.
                    "labels": {
                        "grafana_dashboard": "1",
                        "app.kubernetes.io/managed-by": operator::names::MANAGER,
                    },
                    "ownerReferences": [{
                        "apiVersion": "securevault.io/v1alpha1",
                        "kind": "SecureVault",
                        "name": "mail",
                        "uid": uid,
                        "controller": true,
                    }],
                },
                "data": {"securevault-monitoring-mail.json": "{}"},
            }))
            .unwrap(),
        )
        .await
        .unwrap();
    eventually(
        Duration::from_secs(30),
        "the earlier version's dashboard deleted",
        || async { Some(dashboards.get_opt("mail-dashboard").await.ok()?.is_none()) },
        |gone| *gone,
    )
    .await;

    // A threshold change in the SecureVault reaches the PrometheusRule.
    w.apply(&spec("7.5")).unwrap();
    let rules = w.api::<PrometheusRule>();
    eventually(
        Duration::from_secs(30),
        "the new threshold in the PrometheusRule",
        || async { rules.get_opt("mail-alerts").await.ok().flatten() },
        |r: &PrometheusRule| {
            r.spec.groups[0]
                .rules
                .iter()
                .any(|r| r.alert == "SecureVaultHighErrorRate" && r.expr.ends_with("> 7.5"))
        },
    )
    .await;

    // Deleted by hand, both come back.
    w.api::<ServiceMonitor>()
        .delete("mail", &DeleteParams::default())
        .await
        .unwrap();
    w.api::<PrometheusRule>()
        .delete("mail-alerts", &DeleteParams::default())
        .await
        .unwrap();
    let monitors = w.api::<ServiceMonitor>();
    eventually(
        Duration::from_secs(30),
        "the ServiceMonitor restored",
        || async { monitors.get_opt("mail").await.ok() },
        |sm| sm.is_some(),
    )
    .await;
    eventually(
        Duration::from_secs(30),
        "the PrometheusRule restored",
        || async { rules.get_opt("mail-alerts").await.ok() },
        |r| r.is_some(),
    )
    .await;

    // Disabled: both go.
    w.apply(&vault(
        "mail",
        "  version: 0.1.0\n  replicas: 1\n  monitoring: {enabled: false}\n",
    ))
    .unwrap();
    eventually(
        Duration::from_secs(30),
        "the monitoring objects deleted",
        || async {
            Some((
                monitors.get_opt("mail").await.ok()?.is_none(),
                rules.get_opt("mail-alerts").await.ok()?.is_none(),
            ))
        },
        |gone| *gone == (true, true),
    )
    .await;
}

/// MonitoringReady says whether a Prometheus selects the ServiceMonitor
/// and PrometheusRule: the operator watches the cluster's Prometheus
/// objects, so a selector fixed on the Prometheus side changes the
/// message without any change to the SecureVault.
#[tokio::test]
async fn monitoring_ready_says_which_prometheus_selects_the_objects() {
    let w = World::new("selected").await;
    let op = w.operator("solo");
    op.wait_leader();
    // A label of this test's own: another test's Prometheus (selecting the
    // default release label in every namespace) never selects these.
    let release = w.ns().to_owned();
    w.apply(&vault(
        "mail",
        &format!(
            "  version: 0.1.0\n  replicas: 1\n  monitoring:\n    labels: {{release: {release}}}\n"
        ),
    ))
    .unwrap();
    let prometheus = |selected: &str| {
        format!(
            "apiVersion: monitoring.coreos.com/v1
kind: Prometheus
metadata: {{name: team}}
spec:
  replicas: 0
  serviceMonitorSelector: {{matchLabels: {{release: {selected}}}}}
  ruleSelector: {{matchLabels: {{release: {selected}}}}}
"
        )
    };
    // Its namespace selectors are unset: its own namespace, ours.
    w.apply(&prometheus("someone-else")).unwrap();
    let api = w.api::<SecureVault>();
    let message = |sv: &SecureVault| {
        sv.status
            .as_ref()
            .and_then(|s| s.condition("MonitoringReady"))
            .map(|c| c.message.clone())
            .unwrap_or_default()
    };
    let mine = format!("{}/team", w.ns());
    let unselected = eventually(
        Duration::from_secs(60),
        "MonitoringReady saying no Prometheus selects them",
        || async { api.get_opt("mail").await.ok().flatten() },
        |sv: &SecureVault| message(sv).ends_with("; no Prometheus selects them"),
    )
    .await;

    w.apply(&prometheus(&release)).unwrap();
    let selected = eventually(
        Duration::from_secs(60),
        "MonitoringReady naming the Prometheus that now selects them",
        || async { api.get_opt("mail").await.ok().flatten() },
        |sv: &SecureVault| message(sv).contains(&format!("selected by Prometheus {mine}")),
    )
    .await;
    assert_eq!(
        selected.metadata.generation, unselected.metadata.generation,
        "the SecureVault itself did not change"
    );
    assert!(
        message(&selected).starts_with(&format!(
            "ServiceMonitor and PrometheusRule applied with labels release={release} (what a \
             Prometheus must select); selected by"
        )),
        "{}",
        message(&selected)
    );
}

#[tokio::test]
async fn a_backup_cron_job_runs_on_schedule_and_its_success_reaches_the_status() {
    use k8s_openapi::api::batch::v1::CronJob;
    let w = World::new("backup").await;
    let _volume = w.backup_volume();
    w.apply(DATABASE_SECRET).unwrap();
    let op = w.operator("solo");
    op.wait_leader();
    w.apply(&vault(
        "mail",
        "  version: 0.1.0\n  replicas: 1\n  database: {urlSecretRef: {name: mail-db, key: url}}\n  backup: {schedule: '* * * * *', volumeClaimName: backups, retain: 5}\n",
    ))
    .unwrap();
    let sv = wait_ready(&w, "mail").await;
    let scheduled = sv
        .status
        .as_ref()
        .unwrap()
        .condition("BackupReady")
        .unwrap();
    assert_eq!(
        (scheduled.status.as_str(), scheduled.reason.as_str()),
        ("True", "Scheduled")
    );
    let cron = w.api::<CronJob>().get("mail-backup").await.unwrap();
    assert!(controlled_by(&cron, &sv.uid().unwrap()));
    assert_eq!(cron.spec.schedule, "* * * * *");

    // The real CronJob controller starts a Job within the minute; kwok
    // completes its pod; the operator reads the success into the status.
    let api = w.api::<SecureVault>();
    let sv = eventually(
        Duration::from_secs(150),
        "a successful backup in the status",
        || async { api.get_opt("mail").await.ok().flatten() },
        |sv: &SecureVault| {
            sv.status.as_ref().is_some_and(|s| {
                s.last_backup_time.is_some()
                    && s.condition("BackupReady")
                        .is_some_and(|c| c.reason == "Recent")
            })
        },
    )
    .await;
    assert_eq!(
        sv.status.unwrap().condition("BackupReady").unwrap().status,
        "True"
    );
}

#[tokio::test]
async fn with_autoscaling_the_replicas_are_the_autoscalers_and_without_kubectl_scale_works() {
    use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
    let w = World::new("scaling").await;
    w.apply(DATABASE_SECRET).unwrap();
    let op = w.operator("solo");
    op.wait_leader();
    let spec = "  version: 0.1.0\n  replicas: 1\n  database: {urlSecretRef: {name: mail-db, key: url}}\n  resources: {requests: {cpu: 100m}}\n";
    // Off: `kubectl scale sv` goes through the scale subresource to the pods.
    w.apply(&vault("mail", spec)).unwrap();
    wait_ready(&w, "mail").await;
    w.kubectl(&["scale", "sv", "mail", "--replicas=2"]).unwrap();
    let deployments = w.api::<Deployment>();
    eventually(
        Duration::from_secs(30),
        "the Deployment at 2 replicas",
        || async { deployments.get_opt("mail").await.ok().flatten() },
        |d: &Deployment| d.spec.replicas == Some(2),
    )
    .await;

    // On: an HPA, and the operator stops writing the replica count. The
    // minimum is 1 so that the real autoscaler (kube-controller-manager
    // runs it; without a metrics API it only enforces the bounds) would not
    // hide a drop to the API server's default of 1 replica.
    let autoscaling =
        "  autoscaling: {minReplicas: 1, maxReplicas: 5, targetCpuUtilizationPercent: 60}\n";
    w.apply(&vault("mail", &format!("{spec}{autoscaling}")))
        .unwrap();
    let hpas = w.api::<HorizontalPodAutoscaler>();
    let hpa = eventually(
        Duration::from_secs(30),
        "the HorizontalPodAutoscaler",
        || async { hpas.get_opt("mail").await.ok().flatten() },
        |_| true,
    )
    .await;
    assert_eq!((hpa.spec.min_replicas, hpa.spec.max_replicas), (Some(1), 5));
    // The Deployment is applied before the HPA: the count it had is kept.
    assert_eq!(
        deployments.get("mail").await.unwrap().spec.replicas,
        Some(2),
        "switching autoscaling on changed the replica count"
    );
    // What the autoscaler would do; the operator must leave it be, even
    // when it reconciles again (the spec change below triggers one).
    w.kubectl(&["scale", "deployment", "mail", "--replicas=4"])
        .unwrap();
    w.apply(&vault(
        "mail",
        &format!("{spec}  logLevel: debug\n{autoscaling}"),
    ))
    .unwrap();
    let sv = wait_ready(&w, "mail").await;
    assert_eq!(
        deployments.get("mail").await.unwrap().spec.replicas,
        Some(4)
    );
    assert_eq!(sv.status.unwrap().desired_replicas, 4);
    let d = deployments.get("mail").await.unwrap();
    let owners: Vec<_> = d
        .metadata
        .managed_fields
        .iter()
        .flatten()
        .filter(|f| f.manager.as_deref() == Some("securevault-operator"))
        .filter(|f| {
            f.fields_v1
                .as_ref()
                .is_some_and(|v| v.0.to_string().contains("\"f:replicas\""))
        })
        .collect();
    assert!(owners.is_empty(), "the operator still owns spec.replicas");
}

#[tokio::test]
async fn the_network_policy_is_accepted_and_matches_the_spec() {
    use k8s_openapi::api::networking::v1::NetworkPolicy;
    let w = World::new("netpol").await;
    let op = w.operator("solo");
    op.wait_leader();
    w.apply(&vault(
        "mail",
        "  version: 0.1.0\n  replicas: 1\n  smtp: {host: smtp.example.com, port: 587, tls: starttls, from: a@example.com}\n  networkPolicy: {allowFromNamespaces: [ingress-nginx], monitoringNamespace: observability}\n",
    ))
    .unwrap();
    let sv = wait_ready(&w, "mail").await;
    let np = w.api::<NetworkPolicy>().get("mail").await.unwrap();
    assert!(controlled_by(&np, &sv.uid().unwrap()));
    let spec = np.spec.clone().unwrap();
    assert_eq!(
        spec.pod_selector.unwrap().match_labels.unwrap()["app.kubernetes.io/instance"],
        "mail"
    );
    let rules = spec.ingress.unwrap();
    let namespaces = |i: usize| {
        rules[i].from.clone().unwrap()[0]
            .namespace_selector
            .clone()
            .unwrap()
            .match_expressions
            .unwrap()[0]
            .values
            .clone()
            .unwrap()
    };
    // The API's port from this namespace and those named, the metrics port
    // from the monitoring namespace only.
    let mut wanted = vec!["ingress-nginx".to_owned(), w.ns().to_owned()];
    wanted.sort();
    assert_eq!(namespaces(0), wanted);
    assert_eq!(namespaces(1), ["observability"]);
    let ports: Vec<i32> = operator::build::network_policy::egress_ports(&np)
        .into_keys()
        .collect();
    assert_eq!(ports, [53, 587]);

    // Removed from the spec, the policy goes.
    w.apply(&vault("mail", "  version: 0.1.0\n  replicas: 1\n"))
        .unwrap();
    let policies = w.api::<NetworkPolicy>();
    eventually(
        Duration::from_secs(30),
        "the NetworkPolicy deleted",
        || async { policies.get_opt("mail").await.ok() },
        |np| np.is_none(),
    )
    .await;
}

#[tokio::test]
async fn a_downgrade_is_refused_unless_allowed_and_the_spec_is_never_rewritten() {
    let w = World::new("downgrade").await;
    let op = w.operator("solo");
    op.wait_leader();
    let image = |d: &Deployment| {
        d.spec.template.spec.as_ref().unwrap().containers[0]
            .image
            .clone()
            .unwrap()
    };
    w.apply(&vault("mail", "  version: 0.2.0\n  replicas: 1\n"))
        .unwrap();
    let sv = wait_ready(&w, "mail").await;
    assert_eq!(sv.status.unwrap().version.as_deref(), Some("0.2.0"));

    w.apply(&vault("mail", "  version: 0.1.0\n  replicas: 1\n"))
        .unwrap();
    let api = w.api::<SecureVault>();
    let sv = eventually(
        Duration::from_secs(30),
        "the downgrade refused in Degraded",
        || async { api.get_opt("mail").await.ok().flatten() },
        |sv: &SecureVault| {
            sv.status.as_ref().is_some_and(|s| {
                s.observed_generation == sv.metadata.generation
                    && s.condition("Degraded")
                        .is_some_and(|c| c.reason == "DowngradeRefused")
            })
        },
    )
    .await;
    let message = sv
        .status
        .as_ref()
        .unwrap()
        .condition("Degraded")
        .unwrap()
        .message
        .clone();
    assert!(message.contains("spec.allowDowngrade"), "{message}");
    assert_eq!(
        sv.spec.version, "0.1.0",
        "the user's spec is left as written"
    );
    assert_eq!(sv.status.unwrap().version.as_deref(), Some("0.2.0"));
    let d = w.api::<Deployment>().get("mail").await.unwrap();
    assert!(image(&d).ends_with(":0.2.0"), "{}", image(&d));
    let events = w
        .kubectl(&[
            "get",
            "events",
            "-o",
            "name",
            "--field-selector",
            "reason=DowngradeRefused",
        ])
        .unwrap();
    assert!(!events.trim().is_empty(), "no DowngradeRefused event");

    // Explicitly allowed: the older version rolls out.
    w.apply(&vault(
        "mail",
        "  version: 0.1.0\n  replicas: 1\n  allowDowngrade: true\n",
    ))
    .unwrap();
    let deployments = w.api::<Deployment>();
    eventually(
        Duration::from_secs(30),
        "the Deployment on 0.1.0",
        || async { deployments.get_opt("mail").await.ok().flatten() },
        |d: &Deployment| image(d).ends_with(":0.1.0"),
    )
    .await;
    let sv = wait_ready(&w, "mail").await;
    assert_eq!(sv.status.unwrap().version.as_deref(), Some("0.1.0"));
}

#[tokio::test]
async fn a_later_pre_release_is_an_upgrade_in_semver_s_order() {
    // Compared as strings, "rc.10" sorts before "rc.9": the upgrade was
    // refused as a downgrade. SemVer compares the numbers as numbers.
    let w = World::new("pre-release").await;
    let op = w.operator("solo");
    op.wait_leader();
    w.apply(&vault("mail", "  version: 0.2.0-rc.9\n  replicas: 1\n"))
        .unwrap();
    let sv = wait_ready(&w, "mail").await;
    assert_eq!(sv.status.unwrap().version.as_deref(), Some("0.2.0-rc.9"));

    w.apply(&vault("mail", "  version: 0.2.0-rc.10\n  replicas: 1\n"))
        .unwrap();
    let api = w.api::<SecureVault>();
    let sv = eventually(
        Duration::from_secs(60),
        "0.2.0-rc.10 rolled out, or the upgrade refused",
        || async { api.get_opt("mail").await.ok().flatten() },
        |sv: &SecureVault| {
            sv.status.as_ref().is_some_and(|s| {
                s.version.as_deref() == Some("0.2.0-rc.10")
                    || s.condition("Degraded")
                        .is_some_and(|c| c.reason == "DowngradeRefused")
            })
        },
    )
    .await;
    let status = sv.status.unwrap();
    assert_eq!(
        status.version.as_deref(),
        Some("0.2.0-rc.10"),
        "{:?}",
        status.condition("Degraded")
    );
    let d = w.api::<Deployment>().get("mail").await.unwrap();
    let image = d.spec.template.spec.unwrap().containers[0]
        .image
        .clone()
        .unwrap();
    assert!(image.ends_with(":0.2.0-rc.10"), "{image}");
}

/// The sum of the samples of `name` in Prometheus text `metrics` whose
/// labels contain every one of `labels` (`key="value"`).
fn metric_sum(metrics: &str, name: &str, labels: &[&str]) -> f64 {
    metrics
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .filter(|l| labels.iter().all(|want| l.contains(want)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Waits until SecureVault `name` is settled: its status records what the
/// last reconcile read (other than `not`), and has stayed so for three
/// seconds (a claim binds after the Deployment is ready, and the operator
/// records that too). Returns that record.
async fn settled(w: &World, name: &str, not: Option<&str>) -> String {
    let seen = std::cell::RefCell::new((None, std::time::Instant::now()));
    eventually(
        Duration::from_secs(60),
        "status.observedInputs, unchanged for 3 s",
        || async { w.api::<SecureVault>().get(name).await.ok() },
        |sv| {
            let recorded = sv.status.as_ref().and_then(|s| s.observed_inputs.clone());
            let mut seen = seen.borrow_mut();
            if recorded != seen.0 {
                *seen = (recorded, std::time::Instant::now());
            }
            seen.0.is_some()
                && seen.0.as_deref() != not
                && seen.1.elapsed() >= Duration::from_secs(3)
        },
    )
    .await;
    // `eventually` has seen it recorded.
    seen.into_inner().0.unwrap_or_default()
}

/// What a full reconcile sends is what changed: a referenced Secret that
/// changes (a label here) makes the SecureVault's inputs change, and the
/// operator looks at it in full, but every child is as it left it, so no
/// child is written (each used to be applied again, a request apiece).
#[tokio::test]
async fn a_full_reconcile_writes_only_the_children_that_changed() {
    let w = World::new("only-changed").await;
    let op = w.operator("solo");
    op.wait_leader();
    w.apply(REDIS_SECRET).unwrap();
    w.apply(&vault("mail", REDIS_SPEC)).unwrap();
    wait_ready(&w, "mail").await;
    let recorded = settled(&w, "mail", None).await;
    let full = |m: &str| {
        metric_sum(m, "securevault_reconciles_total", &[])
            - metric_sum(m, "securevault_reconciles_unchanged_total", &[])
    };
    // Writes to children: patches other than the status and Events.
    let child_patches = |m: &str| {
        m.lines()
            .filter(|l| l.starts_with("securevault_api_requests_total{"))
            .filter(|l| l.contains("verb=\"patch\""))
            .filter(|l| !l.contains("resource=\"securevaults/status\""))
            .filter(|l| !l.contains("resource=\"events\""))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>()
    };
    let before = op.metrics();
    let versions = resource_versions(&w).await;

    w.kubectl(&["label", "secret", "cache", "touched=yes"])
        .unwrap();
    settled(&w, "mail", Some(&recorded)).await;
    let after = op.metrics();
    assert!(
        full(&after) > full(&before),
        "the changed Secret made a full reconcile"
    );
    assert_eq!(
        child_patches(&after) - child_patches(&before),
        0.0,
        "children patched by a reconcile that had nothing to change: {}",
        after
            .lines()
            .filter(|l| l.starts_with("securevault_api_requests_total{"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    // The Secret changed, and the status records the new inputs: nothing else.
    let children = |mut v: std::collections::BTreeMap<String, String>| {
        v.remove("Secret/cache");
        v.remove("SecureVault/mail");
        v
    };
    assert_eq!(children(resource_versions(&w).await), children(versions));
}

/// A restart makes the operator reconcile every SecureVault again. One
/// that has not changed is answered from the watch caches: the restarted
/// process sends nothing but its watches (and the Lease it takes), by its
/// own count, and the API server counts the same for its user.
#[tokio::test]
async fn an_unchanged_secure_vault_costs_no_request_after_a_restart() {
    let w = World::new("zero-requests").await;
    // The operator runs as a user of its own, so that the API server's
    // priority-and-fairness counters tell its requests apart: a
    // FlowSchema matching only that user, ahead of the built-in ones.
    let user = format!("securevault-{}", w.ns());
    w.apply(&format!(
        "apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {{name: operator-as-user}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: cluster-admin}}
subjects:
- {{apiGroup: rbac.authorization.k8s.io, kind: User, name: {user}}}
"
    ))
    .unwrap();
    let schema = user.clone();
    w.cluster
        .kubectl_stdin(
            &["apply", "-f", "-"],
            &format!(
                "apiVersion: flowcontrol.apiserver.k8s.io/v1
kind: FlowSchema
metadata: {{name: {schema}}}
spec:
  matchingPrecedence: 100
  priorityLevelConfiguration: {{name: workload-high}}
  rules:
  - subjects: [{{kind: User, user: {{name: {user}}}}}]
    resourceRules:
    - {{verbs: ['*'], apiGroups: ['*'], resources: ['*'], namespaces: ['*'], clusterScope: true}}
    nonResourceRules:
    - {{verbs: ['*'], nonResourceURLs: ['*']}}
"
            ),
        )
        .unwrap();
    struct Delete<'a>(&'a World, String);
    impl Drop for Delete<'_> {
        fn drop(&mut self) {
            let _ = self
                .0
                .cluster
                .kubectl(&["delete", "flowschema", &self.1, "--wait=false"]);
        }
    }
    let _schema = Delete(&w, schema.clone());
    let mut kubeconfig = kube::config::Kubeconfig::read_from(w.cluster.kubeconfig()).unwrap();
    for named in &mut kubeconfig.auth_infos {
        if let Some(auth) = named.auth_info.as_mut() {
            auth.impersonate = Some(user.clone());
        }
    }
    let path = std::env::temp_dir().join(format!("{user}.kubeconfig"));
    std::fs::write(&path, serde_json::to_vec(&kubeconfig).unwrap()).unwrap();
    let path = path.to_str().unwrap().to_owned();
    // A Lease renewed less often than the test lasts: its requests are
    // counted, but they are not what is looked at.
    let env = [
        ("KUBECONFIG", path.as_str()),
        ("LEASE_DURATION_SECS", "120"),
        ("LEASE_RENEW_SECS", "60"),
    ];
    let dispatched = || {
        let metrics = w.cluster.kubectl(&["get", "--raw", "/metrics"]).unwrap();
        metric_sum(
            &metrics,
            "apiserver_flowcontrol_dispatched_requests_total",
            &[&format!("flow_schema=\"{schema}\"")],
        )
    };

    let mut first = w.operator_with("first", &env);
    first.wait_leader();
    w.apply(MINIMAL).unwrap();
    wait_ready(&w, "mail").await;
    settled(&w, "mail", None).await;
    assert!(
        dispatched() > 0.0,
        "the FlowSchema counts the operator's requests"
    );
    let before = resource_versions(&w).await;
    assert_eq!(first.stop().code(), Some(0));
    let baseline = dispatched();

    let second = w.operator_with("second", &env);
    second.wait_leader();
    let metrics = eventually(
        Duration::from_secs(30),
        "an unchanged reconcile",
        || async { Some(second.metrics()) },
        |m| metric_sum(m, "securevault_reconciles_unchanged_total", &[]) >= 1.0,
    )
    .await;
    // Idle now: nothing more to count.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let ours_before = second.metrics();
    let theirs = dispatched() - baseline;
    let ours_after = second.metrics();

    let requests = |m: &str| metric_sum(m, "securevault_api_requests_total", &[]);
    assert_eq!(
        metric_sum(&metrics, "securevault_reconciles_total", &[]),
        metric_sum(&metrics, "securevault_reconciles_unchanged_total", &[]),
        "every reconcile of the restarted operator was answered from its caches"
    );
    // Beside the watches (a list, then a watch, per kind) only the Lease.
    let beside_watches: Vec<&str> = ours_before
        .lines()
        .filter(|l| l.starts_with("securevault_api_requests_total{"))
        .filter(|l| !l.contains("verb=\"list\"") && !l.contains("verb=\"watch\""))
        .filter(|l| !l.contains("resource=\"leases\""))
        .collect();
    assert!(
        beside_watches.is_empty(),
        "requests beside the watches: {beside_watches:?}"
    );
    assert!(requests(&ours_before) > 0.0);
    assert!(
        requests(&ours_before) <= theirs && theirs <= requests(&ours_after),
        "the operator counted {} then {} requests, the API server {theirs} for its user",
        requests(&ours_before),
        requests(&ours_after)
    );
    assert_eq!(resource_versions(&w).await, before);
    let _ = std::fs::remove_file(&path);
}
