//! The cert-manager Certificate, with `spec.tls.issuerRef`: cert-manager
//! issues the TLS Secret the pods serve and renews it before it expires; the
//! pods pick the renewal up without a restart.

use crate::{
    api::{
        IssuerKind,
        cert_manager::{Certificate, CertificateIssuerRef, CertificatePrivateKey, CertificateSpec},
    },
    names,
    validate::ValidatedVault,
};

/// The Certificate's name: the Secret's, as cert-manager's own ingress
/// integration names them.
pub fn name(v: &ValidatedVault) -> Option<String> {
    v.tls.as_ref().map(|tls| tls.secret_name.clone())
}

/// The names the certificate covers: the spec's, or else every in-cluster
/// name of the Service and the Ingress host.
pub fn dns_names(v: &ValidatedVault) -> Vec<String> {
    if let Some(tls) = v.tls.as_ref().filter(|t| !t.dns_names.is_empty()) {
        return tls.dns_names.clone();
    }
    let service = names::workload(&v.name);
    let ns = &v.namespace;
    let mut dns = vec![
        service.clone(),
        format!("{service}.{ns}"),
        format!("{service}.{ns}.svc"),
        format!("{service}.{ns}.svc.cluster.local"),
    ];
    if let Some(ingress) = &v.ingress {
        dns.insert(0, ingress.host.clone());
    }
    dns
}

/// The Certificate of `v`, with `spec.tls.issuerRef`.
pub fn build(v: &ValidatedVault) -> Option<Certificate> {
    let tls = v.tls.as_ref()?;
    let issuer = tls.issuer_ref.as_ref()?;
    Some(Certificate {
        metadata: super::metadata(v, tls.secret_name.clone()),
        spec: CertificateSpec {
            secret_name: tls.secret_name.clone(),
            dns_names: dns_names(v),
            issuer_ref: CertificateIssuerRef {
                name: issuer.name.clone(),
                kind: match issuer.kind.unwrap_or(IssuerKind::Issuer) {
                    IssuerKind::Issuer => "Issuer",
                    IssuerKind::ClusterIssuer => "ClusterIssuer",
                }
                .to_owned(),
                group: issuer
                    .group
                    .clone()
                    .unwrap_or_else(|| "cert-manager.io".to_owned()),
            },
            // P-256: fast handshakes, supported by every client we serve.
            private_key: CertificatePrivateKey {
                algorithm: "ECDSA".to_owned(),
                size: 256,
                rotation_policy: "Always".to_owned(),
            },
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::test_support::validated;

    #[test]
    fn covers_the_service_names_and_the_ingress_host() {
        let v = validated(
            "  tls: {secretName: mail-tls, issuerRef: {name: letsencrypt, kind: ClusterIssuer}}
  ingress: {host: mail-api.example.com}
",
        );
        let c = build(&v).unwrap();
        assert_eq!(c.metadata.name.as_deref(), Some("mail-tls"));
        assert_eq!(c.spec.secret_name, "mail-tls");
        assert_eq!(
            c.spec.dns_names,
            [
                "mail-api.example.com",
                "mail",
                "mail.team-a",
                "mail.team-a.svc",
                "mail.team-a.svc.cluster.local"
            ]
        );
        assert_eq!(c.spec.issuer_ref.kind, "ClusterIssuer");
        assert_eq!(c.spec.issuer_ref.group, "cert-manager.io");
        assert_eq!(c.spec.private_key.rotation_policy, "Always");
        assert!(c.metadata.owner_references.is_some());
    }

    #[test]
    fn only_with_an_issuer_and_names_from_the_spec_win() {
        assert!(build(&validated("  tls: {secretName: mine}\n")).is_none());
        let v =
            validated("  tls: {secretName: t, issuerRef: {name: ca}, dnsNames: [api.internal]}\n");
        let c = build(&v).unwrap();
        assert_eq!(c.spec.dns_names, ["api.internal"]);
        assert_eq!(c.spec.issuer_ref.kind, "Issuer");
    }
}
