//! The Ingress, with `spec.ingress`: the data plane's API (`/api`), its
//! OpenAI-compatible route (`/v1/chat/completions`) and web console
//! (`/console`) under a public host name, TLS-terminated with the
//! Secret of `spec.tls` when there is one. Nothing else is routed: the
//! metrics have a port of their own, which the Ingress never names.

use k8s_openapi::api::networking::v1::{
    HTTPIngressPath, HTTPIngressRuleValue, Ingress, IngressBackend, IngressRule,
    IngressServiceBackend, IngressSpec, IngressTLS, ServiceBackendPort,
};

use crate::{names, validate::ValidatedVault};

/// What the Internet may reach, as path prefixes (a `Prefix` match is by
/// whole path segments: `/api` matches `/api/send-email`, not `/apix`).
pub const PUBLIC_PATHS: [&str; 3] = ["/api", "/v1/chat/completions", "/console"];

/// The Ingress of `v`, with `spec.ingress`; named like the Service.
pub fn build(v: &ValidatedVault) -> Option<Ingress> {
    let spec = v.ingress.as_ref()?;
    let mut metadata = super::metadata(v, names::workload(&v.name));
    if !spec.annotations.is_empty() {
        metadata
            .annotations
            .get_or_insert_with(Default::default)
            .extend(spec.annotations.clone());
    }
    Some(Ingress {
        metadata,
        spec: Some(IngressSpec {
            ingress_class_name: spec.class_name.clone(),
            tls: v.tls.as_ref().map(|tls| {
                vec![IngressTLS {
                    hosts: Some(vec![spec.host.clone()]),
                    secret_name: Some(tls.secret_name.clone()),
                }]
            }),
            rules: Some(vec![IngressRule {
                host: Some(spec.host.clone()),
                http: Some(HTTPIngressRuleValue {
                    paths: PUBLIC_PATHS
                        .iter()
                        .map(|path| HTTPIngressPath {
                            path: Some((*path).to_owned()),
                            path_type: "Prefix".to_owned(),
                            backend: IngressBackend {
                                service: Some(IngressServiceBackend {
                                    name: names::workload(&v.name),
                                    port: Some(ServiceBackendPort {
                                        name: Some(v.port_name().to_owned()),
                                        number: None,
                                    }),
                                }),
                                ..IngressBackend::default()
                            },
                        })
                        .collect(),
                }),
            }]),
            ..IngressSpec::default()
        }),
        ..Ingress::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::test_support::validated;

    #[test]
    fn routes_the_host_to_the_service_with_tls_from_the_secret() {
        let v = validated(
            "  tls: {secretName: mail-tls}
  ingress:
    host: mail-api.example.com
    className: nginx
    annotations: {nginx.ingress.kubernetes.io/backend-protocol: HTTPS}
",
        );
        let ingress = build(&v).unwrap();
        assert_eq!(
            ingress.metadata.annotations.unwrap()["nginx.ingress.kubernetes.io/backend-protocol"],
            "HTTPS"
        );
        let spec = ingress.spec.unwrap();
        assert_eq!(spec.ingress_class_name.as_deref(), Some("nginx"));
        let tls = &spec.tls.unwrap()[0];
        assert_eq!(tls.secret_name.as_deref(), Some("mail-tls"));
        assert_eq!(
            tls.hosts.as_deref(),
            Some(&["mail-api.example.com".to_owned()][..])
        );
        let rule = &spec.rules.unwrap()[0];
        assert_eq!(rule.host.as_deref(), Some("mail-api.example.com"));
        let paths = &rule.http.as_ref().unwrap().paths;
        // The API, the OpenAI route and the console only: never `/`, so
        // never the metrics.
        let routed: Vec<(&str, &str)> = paths
            .iter()
            .map(|p| (p.path.as_deref().unwrap(), p.path_type.as_str()))
            .collect();
        assert_eq!(
            routed,
            [
                ("/api", "Prefix"),
                ("/v1/chat/completions", "Prefix"),
                ("/console", "Prefix")
            ]
        );
        for path in paths {
            let backend = path.backend.service.clone().unwrap();
            assert_eq!(backend.name, "mail");
            assert_eq!(backend.port.unwrap().name.as_deref(), Some("https"));
        }
    }

    #[test]
    fn without_tls_it_is_plain_http_and_without_the_field_absent() {
        let v = validated("  ingress: {host: mail.example.com}\n");
        let spec = build(&v).unwrap().spec.unwrap();
        assert!(spec.tls.is_none());
        assert!(build(&validated("")).is_none());
    }
}
