//! The Service: the data plane's stable in-cluster address, with the API's
//! port and the metrics port (which only Prometheus needs; the Ingress
//! routes the API's port alone).

use k8s_openapi::{
    api::core::v1::{Service, ServicePort, ServiceSpec},
    apimachinery::pkg::util::intstr::IntOrString,
};

use crate::{names, validate::ValidatedVault};

/// The ClusterIP Service in front of the pods.
pub fn build(v: &ValidatedVault) -> Service {
    Service {
        metadata: super::metadata(v, names::workload(&v.name)),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            selector: Some(names::selector_labels(&v.name)),
            ports: Some(vec![
                ServicePort {
                    name: Some(v.port_name().into()),
                    port: names::HTTP_PORT,
                    target_port: Some(IntOrString::String(v.port_name().into())),
                    protocol: Some("TCP".into()),
                    // Tells ingress controllers and meshes what the port speaks.
                    app_protocol: v.tls.as_ref().map(|_| "https".into()),
                    ..ServicePort::default()
                },
                ServicePort {
                    name: Some(names::METRICS_PORT_NAME.into()),
                    port: names::METRICS_PORT,
                    target_port: Some(IntOrString::String(names::METRICS_PORT_NAME.into())),
                    protocol: Some("TCP".into()),
                    app_protocol: v.tls.as_ref().map(|_| "https".into()),
                    ..ServicePort::default()
                },
            ]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

/// The Service's in-cluster URL, for the status.
pub fn address(v: &ValidatedVault) -> String {
    format!(
        "{}://{}.{}.svc:{}",
        v.scheme().to_lowercase(),
        names::workload(&v.name),
        v.namespace,
        names::HTTP_PORT
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::test_support::minimal;

    #[test]
    fn selects_the_pods_on_the_http_port() {
        let v = minimal();
        let spec = build(&v).spec.unwrap();
        assert_eq!(spec.selector.unwrap(), names::selector_labels("mail"));
        let ports = spec.ports.unwrap();
        let port = &ports[0];
        assert_eq!(port.port, 8080);
        assert_eq!(port.target_port, Some(IntOrString::String("http".into())));
        assert_eq!(address(&v), "http://mail.team-a.svc:8080");
        assert_eq!(port.app_protocol, None);
        // And the metrics port, for Prometheus.
        let metrics = &ports[1];
        assert_eq!(
            (metrics.name.as_deref(), metrics.port),
            (Some("metrics"), 9464)
        );
        assert_eq!(
            metrics.target_port,
            Some(IntOrString::String("metrics".into()))
        );
    }

    #[test]
    fn with_tls_the_port_is_https() {
        let v = crate::validate::test_support::validated("  tls: {secretName: mail-tls}\n");
        let port = &build(&v).spec.unwrap().ports.unwrap()[0];
        assert_eq!(port.name.as_deref(), Some("https"));
        assert_eq!(port.target_port, Some(IntOrString::String("https".into())));
        assert_eq!(port.app_protocol.as_deref(), Some("https"));
        assert_eq!(address(&v), "https://mail.team-a.svc:8080");
    }
}
