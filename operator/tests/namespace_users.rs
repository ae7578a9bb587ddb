//! What an ordinary namespace user can make the operator do, against the
//! real control plane: a user with the right to create SecureVaults in one
//! namespace and nothing else (a ServiceAccount token made in the test)
//! cannot use a SecureVault to overwrite objects that are not its own, and
//! cannot ask for what the platform team's policy refuses.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::*;
use k8s_openapi::api::{
    apps::v1::Deployment,
    core::v1::{Secret, Service},
    networking::v1::Ingress,
};
use kube::{
    Api,
    api::{Patch, PatchParams, PostParams},
};
use operator::api::SecureVault;

/// May create and read SecureVaults here, and nothing else.
const SECUREVAULT_AUTHOR: &str = "- apiGroups: [securevault.io]
  resources: [securevaults]
  verbs: [get, list, watch, create, update, patch, delete]";

fn secure_vault(spec: &str) -> SecureVault {
    serde_saphyr::from_str(&vault("mail", spec)).unwrap()
}

/// The SecureVault's Degraded message, once it has this reason.
async fn degraded(w: &World, reason: &str) -> String {
    degraded_when(w, &format!("Degraded with reason {reason}"), |r, _| {
        r == reason
    })
    .await
}

/// The SecureVault's Degraded message, once the condition is true and its
/// reason and message satisfy `expected`.
async fn degraded_when(w: &World, what: &str, expected: impl Fn(&str, &str) -> bool) -> String {
    let api = w.api::<SecureVault>();
    eventually(
        Duration::from_secs(40),
        what,
        || async {
            let sv = api.get_opt("mail").await.ok().flatten()?;
            let c = sv.status?.condition("Degraded")?.clone();
            (c.status == "True").then_some((c.reason, c.message))
        },
        |(reason, message): &(String, String)| expected(reason, message),
    )
    .await
    .1
}

#[tokio::test]
async fn a_secure_vault_never_takes_over_objects_it_does_not_own() {
    let w = World::new("takeover").await;
    let alice = w.user("alice", SECUREVAULT_AUTHOR);
    let as_alice = w.client_as(&alice).await;
    // Alice herself may not touch Services or Secrets here.
    let services: Api<Service> = Api::namespaced(as_alice.clone(), w.ns());
    let refused = services.get_opt("anything").await.unwrap_err();
    assert!(
        matches!(&refused, kube::Error::Api(s) if s.code == 403),
        "{refused}"
    );

    // Someone else's Service and Secret, with the names a SecureVault
    // `mail` would give its own.
    w.apply(
        "apiVersion: v1
kind: Service
metadata: {name: mail, labels: {team: payments}}
spec:
  selector: {app: payments}
  ports: [{name: api, port: 9999, targetPort: 9999}]
---
apiVersion: v1
kind: Secret
metadata: {name: mail-secret-key}
stringData: {secret-key: payments-own-signing-key}
",
    )
    .unwrap();
    let service_before = w.api::<Service>().get("mail").await.unwrap();
    let secret_before = w.api::<Secret>().get("mail-secret-key").await.unwrap();

    let op = w.operator("solo");
    op.wait_leader();
    // Alice creates a SecureVault with her own token.
    Api::<SecureVault>::namespaced(as_alice, w.ns())
        .create(
            &PostParams::default(),
            &secure_vault("  version: 0.1.0\n  replicas: 1\n"),
        )
        .await
        .unwrap();

    // The first object in its way is named, with its owner; nothing is
    // written over it.
    let message = degraded(&w, "ReconcileFailed").await;
    assert!(
        message.contains(&format!("Secret {}/mail-secret-key", w.ns()))
            && message.contains("not this SecureVault's"),
        "{message}"
    );
    // Nothing written after it either: no Deployment would run with
    // someone else's key.
    assert!(
        w.api::<Deployment>()
            .get_opt("mail")
            .await
            .unwrap()
            .is_none()
    );
    // The Secret is gone by its owner's hand: the next object in the way is
    // the Service, and the operator now makes its own key.
    w.api::<Secret>()
        .delete("mail-secret-key", &Default::default())
        .await
        .unwrap();
    let message = degraded_when(
        &w,
        "the Service named as the next object in the way",
        |_, m| m.contains(&format!("Service {}/mail", w.ns())),
    )
    .await;
    assert!(message.contains("no owner"), "{message}");
    let service_after = w.api::<Service>().get("mail").await.unwrap();
    // Byte for byte: same resourceVersion, same spec, no field manager of
    // ours.
    assert_eq!(
        service_after.metadata.resource_version,
        service_before.metadata.resource_version
    );
    assert_eq!(service_after.spec, service_before.spec);
    assert!(
        !serde_json::to_string(&service_after.metadata.managed_fields)
            .unwrap()
            .contains("securevault-operator")
    );
    let ours = w.api::<Secret>().get("mail-secret-key").await.unwrap();
    assert_ne!(
        ours.data.as_ref().unwrap()["secret-key"].0,
        secret_before.data.as_ref().unwrap()["secret-key"].0,
        "a key of its own, not the one that was there"
    );
    assert_ne!(ours.metadata.uid, secret_before.metadata.uid);

    // Once the Service is out of the way too, the SecureVault runs.
    w.api::<Service>()
        .delete("mail", &Default::default())
        .await
        .unwrap();
    eventually(
        Duration::from_secs(60),
        "SecureVault mail Ready",
        || async { w.api::<SecureVault>().get_opt("mail").await.ok().flatten() },
        |sv: &SecureVault| {
            sv.status
                .as_ref()
                .and_then(|s| s.condition("Ready"))
                .is_some_and(|c| c.status == "True")
        },
    )
    .await;
    let failures = op
        .metrics()
        .lines()
        .find(|l| l.starts_with("securevault_reconcile_errors_total{reason=\"not_owned\"}"))
        .map(str::to_owned);
    assert!(failures.is_some(), "the conflicts are counted");
}

#[tokio::test]
async fn what_the_policy_refuses_is_refused_whole_and_named() {
    let w = World::new("policy").await;
    let alice = w.user("alice", SECUREVAULT_AUTHOR);
    let as_alice: Api<SecureVault> = Api::namespaced(w.client_as(&alice).await, w.ns());
    // A shared cluster's policy.
    let op = w.operator_with(
        "solo",
        &[
            (
                "POLICY_INGRESS_ANNOTATIONS",
                "nginx.ingress.kubernetes.io/backend-protocol",
            ),
            ("POLICY_ISSUERS", "Issuer/*"),
            ("POLICY_HOST_SUFFIXES", ".apps.example.com"),
            (
                "POLICY_IMAGE_REGISTRIES",
                "registry.example.com/securevault",
            ),
        ],
    );
    op.wait_leader();

    as_alice
        .create(
            &PostParams::default(),
            &secure_vault(
                "  version: 0.1.0
  replicas: 1
  image: registry.example.com/securevault/dataplane:0.1.0
  ingress:
    host: mail.apps.example.com
    annotations:
      nginx.ingress.kubernetes.io/backend-protocol: HTTP
      nginx.ingress.kubernetes.io/server-snippet: 'location /metrics { proxy_pass http://127.0.0.1:9464; }'
",
            ),
        )
        .await
        .unwrap();
    let message = degraded(&w, "NotAllowed").await;
    assert!(
        message
            .contains("spec.ingress.annotations[\"nginx.ingress.kubernetes.io/server-snippet\"]")
            && message.contains("POLICY_INGRESS_ANNOTATIONS"),
        "{message}"
    );
    // Refused whole: not an Ingress without the annotation, nothing at all.
    assert!(w.api::<Ingress>().get_opt("mail").await.unwrap().is_none());
    assert!(
        w.api::<Deployment>()
            .get_opt("mail")
            .await
            .unwrap()
            .is_none()
    );

    // Another image registry and a host outside the suffix: both named.
    let patch = serde_json::json!({"spec": {
        "image": "registry.example.com.evil.io/securevault/dataplane:0.1.0",
        "ingress": {"host": "mail.example.org", "annotations": null},
    }});
    as_alice
        .patch("mail", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    let message = degraded_when(&w, "the image and the host refused", |_, m| {
        m.contains("spec.image") && m.contains("spec.ingress.host")
    })
    .await;
    assert!(
        !message.contains("annotations"),
        "the fixed annotation is no longer named: {message}"
    );

    // Within the policy, it runs, Ingress and all.
    let patch = serde_json::json!({"spec": {
        "image": "registry.example.com/securevault/dataplane:0.1.0",
        "ingress": {"host": "mail.apps.example.com"},
    }});
    as_alice
        .patch("mail", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    wait_ready(&w, "mail").await;
    assert!(w.api::<Ingress>().get_opt("mail").await.unwrap().is_some());
}
