//! The ServiceMonitor: tells a Prometheus Operator's Prometheus to scrape
//! the data plane's `/metrics` on the Service's `metrics` port (the API's
//! port does not serve metrics).

use kube::api::ObjectMeta;

use crate::{
    api::monitoring::{
        CaSource, Endpoint, EndpointTls, LabelSelector, SecretKey, ServiceMonitor,
        ServiceMonitorSpec,
    },
    names,
    validate::ValidatedVault,
};

/// The data plane's metrics path, on its metrics port.
pub const METRICS_PATH: &str = "/metrics";

/// The ServiceMonitor of `v`, carrying `spec.monitoring.labels` (so that,
/// e.g., kube-prometheus-stack's `release` selector matches it).
pub fn build(v: &ValidatedVault) -> ServiceMonitor {
    ServiceMonitor {
        metadata: monitoring_metadata(v, names::workload(&v.name)),
        spec: ServiceMonitorSpec {
            selector: LabelSelector {
                match_labels: names::selector_labels(&v.name),
            },
            endpoints: vec![Endpoint {
                port: names::METRICS_PORT_NAME.to_owned(),
                path: METRICS_PATH.to_owned(),
                interval: v.monitoring.interval.clone(),
                scheme: Some(v.scheme().to_lowercase()),
                // Verified against the CA in the TLS Secret (cert-manager
                // writes `ca.crt`), for the Service's in-cluster name.
                tls_config: v.tls.as_ref().map(|tls| EndpointTls {
                    ca: CaSource {
                        secret: SecretKey {
                            name: tls.secret_name.clone(),
                            key: "ca.crt".to_owned(),
                        },
                    },
                    server_name: format!("{}.{}.svc", names::workload(&v.name), v.namespace),
                }),
            }],
        },
    }
}

/// The usual metadata plus the monitoring labels of the spec.
pub(super) fn monitoring_metadata(v: &ValidatedVault, name: String) -> ObjectMeta {
    ObjectMeta {
        labels: Some(monitoring_labels(v)),
        ..super::metadata(v, name)
    }
}

/// The labels of the ServiceMonitor and PrometheusRule: the vault's own,
/// then the monitoring labels a Prometheus selects by (which never replace
/// ours).
pub fn monitoring_labels(v: &ValidatedVault) -> std::collections::BTreeMap<String, String> {
    let mut labels = v.labels.clone();
    for (k, value) in &v.monitoring.labels {
        labels.entry(k.clone()).or_insert_with(|| value.clone());
    }
    labels
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::test_support::validated;

    #[test]
    fn scrapes_the_service_port_and_carries_the_release_label() {
        let v = validated(
            "  monitoring: {labels: {release: kube-prometheus-stack}, interval: 15s}
",
        );
        let sm = build(&v);
        assert_eq!(sm.metadata.name.as_deref(), Some("mail"));
        let labels = sm.metadata.labels.unwrap();
        assert_eq!(labels["release"], "kube-prometheus-stack");
        assert_eq!(labels["app.kubernetes.io/managed-by"], names::MANAGER);
        assert_eq!(
            sm.spec.selector.match_labels,
            names::selector_labels("mail")
        );
        let e = &sm.spec.endpoints[0];
        assert_eq!(
            (e.port.as_str(), e.path.as_str(), e.interval.as_str()),
            ("metrics", "/metrics", "15s")
        );
        assert!(sm.metadata.owner_references.is_some());
        assert_eq!(e.scheme.as_deref(), Some("http"));
        assert!(e.tls_config.is_none());
    }

    #[test]
    fn with_tls_it_scrapes_https_verified_against_the_secrets_ca() {
        let v = validated("  tls: {secretName: mail-tls}\n");
        let e = &build(&v).spec.endpoints[0];
        assert_eq!(
            (e.port.as_str(), e.scheme.as_deref()),
            ("metrics", Some("https"))
        );
        let tls = e.tls_config.as_ref().unwrap();
        assert_eq!(
            (tls.ca.secret.name.as_str(), tls.ca.secret.key.as_str()),
            ("mail-tls", "ca.crt")
        );
        assert_eq!(tls.server_name, "mail.team-a.svc");
    }
}
