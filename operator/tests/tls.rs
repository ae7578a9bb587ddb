//! HTTPS through the operator, against the real API server: the pods get
//! the TLS Secret mounted and HTTPS probes, the Ingress and cert-manager's
//! Certificate pass the real schemas (cert-manager's CRD from its Go module,
//! installed by `tests/cluster/cluster.sh`), and `TLSReady` says what is
//! wrong with the Secret, as the data plane itself would judge it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::{collections::BTreeMap, time::Duration};

use common::*;
use k8s_openapi::api::{apps::v1::Deployment, core::v1::Secret, networking::v1::Ingress};
use kube::api::{Patch, PatchParams};
use operator::api::{SecureVault, cert_manager::Certificate};
use testkit::certs::{Issued, TestCa};

async fn put_tls_secret(w: &World, name: &str, cert_pem: &str, key_pem: &str) {
    let secret = Secret {
        metadata: kube::api::ObjectMeta {
            name: Some(name.to_owned()),
            ..Default::default()
        },
        type_: Some("kubernetes.io/tls".to_owned()),
        string_data: Some(BTreeMap::from([
            ("tls.crt".to_owned(), cert_pem.to_owned()),
            ("tls.key".to_owned(), key_pem.to_owned()),
        ])),
        ..Default::default()
    };
    w.api::<Secret>()
        .patch(
            name,
            &PatchParams::apply("tls-test").force(),
            &Patch::Apply(&secret),
        )
        .await
        .unwrap();
}

/// Waits until `TLSReady` has `status` and `reason`; returns its message.
async fn tls_ready(w: &World, name: &str, status: &str, reason: &str) -> String {
    tls_ready_saying(w, name, status, reason, "").await
}

/// Waits until `TLSReady` has `status` and `reason` and its message
/// contains `needle` (two problems in a row share a reason).
async fn tls_ready_saying(
    w: &World,
    name: &str,
    status: &str,
    reason: &str,
    needle: &str,
) -> String {
    let api = w.api::<SecureVault>();
    let sv = eventually(
        Duration::from_secs(60),
        &format!("TLSReady {status} {reason} saying {needle:?}"),
        || async { api.get_opt(name).await.ok().flatten() },
        |sv: &SecureVault| {
            sv.status
                .as_ref()
                .and_then(|s| s.condition("TLSReady"))
                .is_some_and(|c| {
                    c.status == status && c.reason == reason && c.message.contains(needle)
                })
        },
    )
    .await;
    sv.status
        .unwrap()
        .condition("TLSReady")
        .unwrap()
        .message
        .clone()
}

fn issue(ca: &TestCa) -> Issued {
    ca.issue(&["mail.tls-test.svc"]).unwrap()
}

#[tokio::test]
async fn a_secret_of_the_users_is_served_checked_and_reported() {
    let w = World::new("tls-own").await;
    let op = w.operator("solo");
    op.wait_leader();
    w.apply(&vault(
        "mail",
        "  version: 0.1.0\n  replicas: 1\n  tls: {secretName: mail-tls}\n  ingress: {host: mail-api.example.com, className: nginx}\n",
    ))
    .unwrap();

    // No Secret yet: said so, and the pods would wait for it.
    let message = tls_ready(&w, "mail", "False", "SecretMissing").await;
    assert!(
        message.contains("Secret mail-tls does not exist"),
        "{message}"
    );

    let ca = TestCa::new("tls test CA").unwrap();
    let good = issue(&ca);
    put_tls_secret(&w, "mail-tls", &good.cert_pem, &good.key_pem).await;
    let message = tls_ready(&w, "mail", "True", "Valid").await;
    assert!(
        message.contains("valid until 2100-01-01T00:00:00Z"),
        "{message}"
    );

    // The pods serve it: mounted as a directory, probes over HTTPS.
    let deployment = w.api::<Deployment>().get("mail").await.unwrap();
    let pod = deployment.spec.template.spec.unwrap();
    let container = &pod.containers[0];
    let probe = container.readiness_probe.clone().unwrap().http_get.unwrap();
    assert_eq!(probe.scheme.as_deref(), Some("HTTPS"));
    assert!(
        container
            .volume_mounts
            .as_ref()
            .unwrap()
            .iter()
            .any(|m| m.mount_path == "/etc/securevault/tls" && m.sub_path.is_none())
    );
    // The Ingress passed the API server's validation, TLS from the Secret.
    let ingress = w.api::<Ingress>().get("mail").await.unwrap();
    let spec = ingress.spec.unwrap();
    assert_eq!(
        spec.tls.unwrap()[0].secret_name.as_deref(),
        Some("mail-tls")
    );
    assert_eq!(spec.ingress_class_name.as_deref(), Some("nginx"));

    // Replaced by a certificate with another certificate's key.
    let other = issue(&ca);
    put_tls_secret(&w, "mail-tls", &good.cert_pem, &other.key_pem).await;
    let message = tls_ready(&w, "mail", "False", "CertificateInvalid").await;
    assert!(
        message.contains("the private key does not match the certificate"),
        "{message}"
    );

    // Replaced by an expired one.
    let expired = ca.issue_expired(&["mail.tls-test.svc"]).unwrap();
    put_tls_secret(&w, "mail-tls", &expired.cert_pem, &expired.key_pem).await;
    tls_ready_saying(
        &w,
        "mail",
        "False",
        "CertificateInvalid",
        "the certificate expired on 2021-01-01T00:00:00Z",
    )
    .await;
}

#[tokio::test]
async fn with_an_issuer_cert_manager_gets_a_certificate_to_fulfil() {
    let w = World::new("tls-issuer").await;
    let op = w.operator("solo");
    op.wait_leader();
    w.apply(&vault(
        "mail",
        "  version: 0.1.0\n  replicas: 1\n  tls:\n    secretName: mail-tls\n    issuerRef: {name: letsencrypt, kind: ClusterIssuer}\n  ingress: {host: mail-api.example.com}\n",
    ))
    .unwrap();

    let message = tls_ready(&w, "mail", "False", "AwaitingIssuance").await;
    assert!(message.contains("cert-manager issues it"), "{message}");
    // Accepted by cert-manager's own CRD schema.
    let certificate = w.api::<Certificate>().get("mail-tls").await.unwrap();
    assert_eq!(certificate.spec.secret_name, "mail-tls");
    assert_eq!(certificate.spec.issuer_ref.kind, "ClusterIssuer");
    assert_eq!(certificate.spec.dns_names[0], "mail-api.example.com");
    assert!(
        certificate
            .spec
            .dns_names
            .contains(&format!("mail.{}.svc", w.ns()))
    );
    assert_eq!(
        certificate.metadata.owner_references.unwrap()[0].name,
        "mail"
    );

    // cert-manager writes the Secret (here, the test does it as it would).
    let ca = TestCa::new("tls test CA").unwrap();
    let issued = issue(&ca);
    put_tls_secret(&w, "mail-tls", &issued.cert_pem, &issued.key_pem).await;
    tls_ready(&w, "mail", "True", "Valid").await;

    // issuerRef removed: the Certificate goes, the Secret stays.
    w.apply(&vault(
        "mail",
        "  version: 0.1.0\n  replicas: 1\n  tls: {secretName: mail-tls}\n",
    ))
    .unwrap();
    eventually(
        Duration::from_secs(60),
        "the Certificate deleted",
        || async {
            Some(
                w.api::<Certificate>()
                    .get_opt("mail-tls")
                    .await
                    .ok()?
                    .is_none(),
            )
        },
        |gone| *gone,
    )
    .await;
    assert!(
        w.api::<Secret>()
            .get_opt("mail-tls")
            .await
            .unwrap()
            .is_some()
    );
}
