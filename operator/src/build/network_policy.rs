//! The NetworkPolicy, with `spec.networkPolicy`: the pods (the data plane's
//! and those of its backup and migration Jobs) accept traffic on
//! their HTTP port only from their own namespace, the namespaces the spec
//! names and the monitoring namespace, and open connections only for DNS and
//! to the ports of the dependencies the spec configures (database, Redis,
//! SMTP, model server, webhooks), optionally only to `egressCidrs`.
//! Hostnames cannot appear in a NetworkPolicy, and the URLs of the database
//! and Redis are in Secrets the operator does not read: ports are what the
//! policy can say.

use std::collections::BTreeMap;

use k8s_openapi::{
    api::networking::v1::{
        IPBlock, NetworkPolicy, NetworkPolicyEgressRule, NetworkPolicyIngressRule,
        NetworkPolicyPeer, NetworkPolicyPort, NetworkPolicySpec,
    },
    apimachinery::pkg::{
        apis::meta::v1::{LabelSelector, LabelSelectorRequirement},
        util::intstr::IntOrString,
    },
};

use crate::{names, validate::ValidatedVault};

/// The label every namespace carries with its own name.
const NAMESPACE_NAME: &str = "kubernetes.io/metadata.name";

fn port(protocol: &str, number: i32) -> NetworkPolicyPort {
    NetworkPolicyPort {
        protocol: Some(protocol.into()),
        port: Some(IntOrString::Int(number)),
        ..NetworkPolicyPort::default()
    }
}

/// The labels of every pod of `v`: the data plane's and its Jobs' (backups,
/// migrations), which hold the same credentials and differ only in
/// `app.kubernetes.io/component`.
fn every_pod(v: &ValidatedVault) -> BTreeMap<String, String> {
    let mut labels = names::selector_labels(&v.name);
    labels.remove("app.kubernetes.io/component");
    labels
}

/// Pods of the namespaces named.
fn from_namespaces(namespaces: Vec<String>) -> NetworkPolicyPeer {
    NetworkPolicyPeer {
        namespace_selector: Some(LabelSelector {
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: NAMESPACE_NAME.into(),
                operator: "In".into(),
                values: Some(namespaces),
            }]),
            ..LabelSelector::default()
        }),
        ..NetworkPolicyPeer::default()
    }
}

/// The NetworkPolicy of `v`, when asked for.
pub fn build(v: &ValidatedVault) -> Option<NetworkPolicy> {
    let np = v.network_policy.as_ref()?;
    let mut namespaces = vec![v.namespace.clone()];
    namespaces.extend(np.allow_from_namespaces.iter().cloned());
    namespaces.sort();
    namespaces.dedup();
    let monitoring = np
        .monitoring_namespace
        .clone()
        .unwrap_or_else(|| "monitoring".into());
    // The API's port to this namespace and those named; the metrics port to
    // the monitoring namespace alone.
    let ingress = vec![
        NetworkPolicyIngressRule {
            from: Some(vec![from_namespaces(namespaces)]),
            ports: Some(vec![port("TCP", names::HTTP_PORT)]),
        },
        NetworkPolicyIngressRule {
            from: Some(vec![from_namespaces(vec![monitoring])]),
            ports: Some(vec![port("TCP", names::METRICS_PORT)]),
        },
    ];
    let dns = NetworkPolicyEgressRule {
        to: None,
        ports: Some(vec![port("UDP", 53), port("TCP", 53)]),
    };
    let mut egress = vec![dns];
    if !v.egress_ports.is_empty() {
        egress.push(NetworkPolicyEgressRule {
            to: (!np.egress_cidrs.is_empty()).then(|| {
                np.egress_cidrs
                    .iter()
                    .map(|cidr| NetworkPolicyPeer {
                        ip_block: Some(IPBlock {
                            cidr: cidr.clone(),
                            except: None,
                        }),
                        ..NetworkPolicyPeer::default()
                    })
                    .collect()
            }),
            ports: Some(v.egress_ports.iter().map(|p| port("TCP", *p)).collect()),
        });
    }
    Some(NetworkPolicy {
        metadata: super::metadata(v, names::workload(&v.name)),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector {
                match_labels: Some(every_pod(v)),
                ..LabelSelector::default()
            }),
            policy_types: Some(vec!["Ingress".into(), "Egress".into()]),
            ingress: Some(ingress),
            egress: Some(egress),
        }),
    })
}

/// For tests: the ports of the egress rules.
pub fn egress_ports(np: &NetworkPolicy) -> BTreeMap<i32, String> {
    np.spec
        .iter()
        .flat_map(|s| s.egress.iter().flatten())
        .flat_map(|r| r.ports.iter().flatten())
        .filter_map(|p| match &p.port {
            Some(IntOrString::Int(n)) => Some((*n, p.protocol.clone().unwrap_or_default())),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::test_support::{minimal, validated};

    #[test]
    fn ingress_from_named_namespaces_egress_to_configured_ports() {
        let v = validated(
            "  database: {urlSecretRef: {name: db, key: url}}
  smtp: {host: smtp.example.com, port: 2525, tls: starttls, from: a@example.com}
  ai: {baseUrl: 'http://llama.ai.svc:8090/v1'}
  networkPolicy: {allowFromNamespaces: [ingress-nginx, shop], egressCidrs: [10.0.0.0/8]}
",
        );
        let np = build(&v).unwrap();
        let spec = np.spec.clone().unwrap();
        let rules = spec.ingress.unwrap();
        let rule = |i: usize| {
            let r: &NetworkPolicyIngressRule = &rules[i];
            let namespaces = r.from.as_ref().unwrap()[0]
                .namespace_selector
                .as_ref()
                .unwrap()
                .match_expressions
                .as_ref()
                .unwrap()[0]
                .values
                .clone()
                .unwrap();
            let ports: Vec<_> = r.ports.iter().flatten().map(|p| p.port.clone()).collect();
            (namespaces, ports)
        };
        // The API from this namespace and those named; the metrics from the
        // monitoring namespace only.
        assert_eq!(
            rule(0),
            (
                vec!["ingress-nginx".into(), "shop".into(), "team-a".into()],
                vec![Some(IntOrString::Int(8080))]
            )
        );
        assert_eq!(
            rule(1),
            (
                vec!["monitoring".into()],
                vec![Some(IntOrString::Int(9464))]
            )
        );
        assert_eq!(rules.len(), 2);
        let ports: Vec<i32> = egress_ports(&np).into_keys().collect();
        assert_eq!(ports, [53, 2525, 5432, 8090]);
        let to = spec.egress.unwrap()[1].to.clone().unwrap();
        assert_eq!(to[0].ip_block.as_ref().unwrap().cidr, "10.0.0.0/8");
    }

    #[test]
    fn selects_the_jobs_pods_as_well_as_the_data_planes() {
        let v = validated(
            "  database: {urlSecretRef: {name: db, key: url}}
  backup: {volumeClaimName: mail-backups}
  networkPolicy: {}
",
        );
        let selector = build(&v)
            .unwrap()
            .spec
            .unwrap()
            .pod_selector
            .unwrap()
            .match_labels
            .unwrap();
        let backup = crate::build::backup_cron_job::build(&v).unwrap();
        let job_pod = backup.spec.job_template.spec.unwrap().template;
        let deployment = crate::build::deployment::build(&v, &crate::build::config_map::build(&v));
        let serving_pod = deployment.spec.template;
        for pod in [job_pod, serving_pod] {
            let labels = pod.metadata.unwrap().labels.unwrap();
            for (key, value) in &selector {
                assert_eq!(labels.get(key), Some(value), "{key}");
            }
        }
        assert_eq!(selector["app.kubernetes.io/instance"], "mail");
    }

    #[test]
    fn none_unless_asked_for() {
        assert!(build(&minimal()).is_none());
    }
}
