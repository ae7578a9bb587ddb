//! The HorizontalPodAutoscaler (autoscaling/v2), with `spec.autoscaling`:
//! between its minimum and maximum replicas, aiming at an average CPU use.

use k8s_openapi::api::autoscaling::v2::{
    CrossVersionObjectReference, HorizontalPodAutoscaler, HorizontalPodAutoscalerSpec, MetricSpec,
    MetricTarget, ResourceMetricSource,
};

use crate::{names, validate::ValidatedVault};

/// The HPA of `v`, when autoscaling is asked for.
pub fn build(v: &ValidatedVault) -> Option<HorizontalPodAutoscaler> {
    let a = v.autoscaling.as_ref()?;
    Some(HorizontalPodAutoscaler {
        metadata: super::metadata(v, names::workload(&v.name)),
        spec: HorizontalPodAutoscalerSpec {
            scale_target_ref: CrossVersionObjectReference {
                api_version: Some("apps/v1".into()),
                kind: "Deployment".into(),
                name: names::workload(&v.name),
            },
            min_replicas: Some(a.min_replicas),
            max_replicas: a.max_replicas,
            metrics: Some(vec![MetricSpec {
                type_: "Resource".into(),
                resource: Some(ResourceMetricSource {
                    name: "cpu".into(),
                    target: MetricTarget {
                        type_: "Utilization".into(),
                        average_utilization: Some(a.target_cpu_utilization_percent.unwrap_or(70)),
                        ..MetricTarget::default()
                    },
                }),
                ..MetricSpec::default()
            }]),
            ..HorizontalPodAutoscalerSpec::default()
        },
        ..HorizontalPodAutoscaler::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::test_support::{minimal, validated};

    #[test]
    fn scales_the_deployment_on_cpu_and_takes_its_replicas() {
        let v = validated(
            "  database: {urlSecretRef: {name: db, key: url}}
  autoscaling: {minReplicas: 2, maxReplicas: 6}
",
        );
        let hpa = build(&v).unwrap().spec;
        assert_eq!(hpa.scale_target_ref.name, "mail");
        assert_eq!((hpa.min_replicas, hpa.max_replicas), (Some(2), 6));
        let target = &hpa.metrics.unwrap()[0].resource.clone().unwrap().target;
        assert_eq!(target.average_utilization, Some(70));
        let config_map = crate::build::config_map::build(&v);
        let d = crate::build::deployment::build(&v, &config_map);
        assert_eq!(d.spec.replicas, None, "the HPA owns the replica count");
    }

    #[test]
    fn none_without_autoscaling() {
        let v = minimal();
        assert!(build(&v).is_none());
        let config_map = crate::build::config_map::build(&v);
        assert_eq!(
            crate::build::deployment::build(&v, &config_map)
                .spec
                .replicas,
            Some(1)
        );
    }
}
