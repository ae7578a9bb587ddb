//! `build`: one pure function per child object, from a [`ValidatedVault`]
//! (plus values read earlier, such as an existing generated key) to the
//! object. Nothing here talks to the API server; `reconcile` applies.
//!
pub mod alertmanager_config;
pub mod backup_cron_job;
pub mod backup_settings;
pub mod certificate;
pub mod config_map;
pub mod dashboard;
pub mod deployment;
pub mod hpa;
pub mod ingress;
pub mod job_pod;
pub mod migration_job;
pub mod network_policy;
pub mod pdb;
pub mod persistent_volume_claim;
pub mod prometheus_rule;
pub mod secret;
pub mod service;
pub mod service_account;
pub mod service_monitor;

use k8s_openapi::{
    api::{
        apps::v1::Deployment,
        core::v1::{ConfigMap, Secret, Service, ServiceAccount},
        policy::v1::PodDisruptionBudget,
    },
    apimachinery::pkg::apis::meta::v1::ObjectMeta,
};

use crate::validate::ValidatedVault;

/// Every child of one SecureVault, ready to apply.
#[derive(Debug, Clone)]
pub struct Resources {
    /// The pods' identity (no API token mounted).
    pub service_account: ServiceAccount,
    /// Non-secret settings.
    pub config_map: ConfigMap,
    /// The generated `SECRET_KEY` and administrator password, when the spec
    /// references its own.
    pub secret: Option<Secret>,
    /// The claim holding the embedded store (none with an external
    /// database). Retained, it has no owner reference: see its module.
    pub claim: Option<k8s_openapi::api::core::v1::PersistentVolumeClaim>,
    /// The claim backups go to, when the operator creates it (the embedded
    /// store without a bucket); like the store's own.
    pub backup_claim: Option<k8s_openapi::api::core::v1::PersistentVolumeClaim>,
    /// The data plane.
    pub deployment: Deployment,
    /// Its in-cluster address.
    pub service: Service,
    /// Keeps one pod serving through node drains; only with 2+ replicas.
    pub pdb: Option<PodDisruptionBudget>,
    /// Monitoring objects, unless `spec.monitoring.enabled` is false.
    pub monitoring: Option<Monitoring>,
    /// The NetworkPolicy, with `spec.networkPolicy`.
    pub network_policy: Option<k8s_openapi::api::networking::v1::NetworkPolicy>,
    /// The autoscaler, with `spec.autoscaling`.
    pub hpa: Option<k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler>,
    /// Scheduled backups, with `spec.backup`.
    pub backup: Option<k8s_openapi::api::batch::v1::CronJob>,
    /// The Ingress, with `spec.ingress`.
    pub ingress: Option<k8s_openapi::api::networking::v1::Ingress>,
    /// cert-manager's Certificate, with `spec.tls.issuerRef`.
    pub certificate: Option<crate::api::cert_manager::Certificate>,
}

/// What Prometheus and Grafana need to watch one SecureVault.
#[derive(Debug, Clone)]
pub struct Monitoring {
    /// Scrape configuration (Prometheus Operator).
    pub service_monitor: crate::api::monitoring::ServiceMonitor,
    /// The alerts (Prometheus Operator).
    pub prometheus_rule: crate::api::monitoring::PrometheusRule,
    /// Alert routing (Prometheus Operator), with `spec.monitoring.alertRouting`.
    pub alertmanager_config: Option<crate::api::monitoring::AlertmanagerConfig>,
}

/// Builds every child. `generated` holds the generated values to use (the
/// existing ones, or new ones where none exist yet).
pub fn build(v: &ValidatedVault, generated: &secret::Generated) -> Resources {
    let config_map = config_map::build(v);
    Resources {
        service_account: service_account::build(v),
        secret: secret::build(v, generated),
        claim: persistent_volume_claim::build(v),
        backup_claim: persistent_volume_claim::backups(v),
        deployment: deployment::build(v, &config_map),
        service: service::build(v),
        pdb: pdb::build(v),
        backup: backup_cron_job::build(v),
        hpa: hpa::build(v),
        network_policy: network_policy::build(v),
        ingress: ingress::build(v),
        certificate: certificate::build(v),
        monitoring: v.monitoring.enabled.then(|| Monitoring {
            service_monitor: service_monitor::build(v),
            prometheus_rule: prometheus_rule::build(v),
            alertmanager_config: alertmanager_config::build(v),
        }),
        config_map,
    }
}

/// Metadata every child carries: namespace, labels, annotations and the
/// owner reference that makes the garbage collector delete it with its
/// SecureVault.
fn metadata(v: &ValidatedVault, name: String) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: Some(v.namespace.clone()),
        labels: Some(v.labels.clone()),
        annotations: (!v.annotations.is_empty()).then(|| v.annotations.clone()),
        owner_references: Some(vec![v.owner.clone()]),
        ..ObjectMeta::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::test_support::minimal;

    #[test]
    fn every_child_is_owned_by_the_secure_vault() {
        let generated = secret::Generated {
            secret_key: Some("k".repeat(64)),
            admin_password: Some("p".repeat(64)),
        };
        let r = build(&minimal(), &generated);
        let m = r.monitoring.as_ref().unwrap();
        let metas = [
            &r.service_account.metadata,
            &r.config_map.metadata,
            &r.secret.as_ref().unwrap().metadata,
            &r.deployment.metadata,
            &r.service.metadata,
            &m.service_monitor.metadata,
            &m.prometheus_rule.metadata,
        ];
        for m in metas {
            let owners = m.owner_references.as_ref().unwrap();
            assert_eq!(owners.len(), 1);
            assert_eq!(owners[0].name, "mail");
            assert_eq!(m.namespace.as_deref(), Some("team-a"));
        }
        assert!(r.pdb.is_none(), "no PDB for a single replica");
    }
}
