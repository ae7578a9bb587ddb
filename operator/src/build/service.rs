//! The Service: the data plane's stable in-cluster address.

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
            ports: Some(vec![ServicePort {
                name: Some(names::HTTP_PORT_NAME.into()),
                port: names::HTTP_PORT,
                target_port: Some(IntOrString::String(names::HTTP_PORT_NAME.into())),
                protocol: Some("TCP".into()),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

/// The Service's in-cluster URL, for the status.
pub fn address(v: &ValidatedVault) -> String {
    format!(
        "http://{}.{}.svc:{}",
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
        let port = &spec.ports.unwrap()[0];
        assert_eq!(port.port, 8080);
        assert_eq!(port.target_port, Some(IntOrString::String("http".into())));
        assert_eq!(address(&v), "http://mail.team-a.svc:8080");
    }
}
