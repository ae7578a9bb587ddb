//! The PodDisruptionBudget: with two or more replicas, a node drain may take
//! only one pod at a time. With one replica there is none: it would block
//! every drain forever.

use k8s_openapi::{
    api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec},
    apimachinery::pkg::{apis::meta::v1::LabelSelector, util::intstr::IntOrString},
};

use crate::{names, validate::ValidatedVault};

/// The PDB, when there are at least two replicas (or the autoscaler keeps
/// at least two).
pub fn build(v: &ValidatedVault) -> Option<PodDisruptionBudget> {
    let fewest = v
        .autoscaling
        .as_ref()
        .map_or(v.replicas, |a| a.min_replicas);
    (fewest >= 2).then(|| PodDisruptionBudget {
        metadata: super::metadata(v, names::workload(&v.name)),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(LabelSelector {
                match_labels: Some(names::selector_labels(&v.name)),
                ..LabelSelector::default()
            }),
            ..PodDisruptionBudgetSpec::default()
        }),
        ..PodDisruptionBudget::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::test_support::minimal;

    #[test]
    fn only_with_two_replicas_or_more() {
        let mut v = minimal();
        assert!(build(&v).is_none());
        v.replicas = 2;
        let pdb = build(&v).unwrap();
        assert_eq!(pdb.spec.unwrap().max_unavailable, Some(IntOrString::Int(1)));
    }
}
