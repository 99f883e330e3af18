//! The PodDisruptionBudget: voluntary disruptions (drains, evictions) take at
//! most one instance at a time.

use ebisu_api::names;
use k8s_openapi::{
    api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec},
    apimachinery::pkg::{apis::meta::v1::LabelSelector, util::intstr::IntOrString},
};

use super::child_meta;
use crate::validate::ValidatedCluster;

/// Builds the PodDisruptionBudget.
pub fn build(cluster: &ValidatedCluster) -> PodDisruptionBudget {
    PodDisruptionBudget {
        metadata: child_meta(cluster, names::pod_disruption_budget(&cluster.name)),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(LabelSelector {
                match_labels: Some(cluster.selector()),
                ..LabelSelector::default()
            }),
            // A pod that is not Ready can always be evicted: it serves nothing, and
            // blocking its eviction would only block drains.
            unhealthy_pod_eviction_policy: Some("AlwaysAllow".to_owned()),
            ..PodDisruptionBudgetSpec::default()
        }),
        ..PodDisruptionBudget::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::fixtures::{BASIC, validated};

    #[test]
    fn at_most_one_instance_is_disrupted() {
        let pdb = build(&validated(BASIC));
        let spec = pdb.spec.expect("spec");
        assert_eq!(spec.max_unavailable, Some(IntOrString::Int(1)));
        assert_eq!(
            spec.selector.and_then(|s| s.match_labels),
            Some(names::selector_labels("orders"))
        );
        assert_eq!(pdb.metadata.owner_references.map(|o| o.len()), Some(1));
    }
}
