//! The PodDisruptionBudgets: voluntary disruptions (drains, evictions) take
//! at most one instance at a time, and the primary's eviction is refused
//! until the primary has moved, so `kubectl drain` waits for a switchover
//! instead of taking writes down with the pod. The eviction API refuses a
//! pod that two budgets select, so with a primary budget the other one
//! selects the replicas only (as CloudNativePG does).

use ebisu_api::names;
use k8s_openapi::{
    api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec},
    apimachinery::pkg::{apis::meta::v1::LabelSelector, util::intstr::IntOrString},
};

use super::child_meta;
use crate::validate::ValidatedCluster;

/// Builds the budget of the instances: at most one unavailable. When the
/// primary has its own budget this one selects the replicas only, as
/// `minAvailable: replicas - 2` (all replicas but one): a `maxUnavailable`
/// budget counts the pods it expects from the StatefulSet's scale, which a
/// subset of its pods never reaches.
pub fn build(cluster: &ValidatedCluster) -> PodDisruptionBudget {
    let mut selector = cluster.selector();
    let (min_available, max_unavailable) = if holds_the_primary(cluster) {
        selector.insert(names::LABEL_ROLE.to_owned(), names::ROLE_REPLICA.to_owned());
        (Some(IntOrString::Int((cluster.replicas - 2).max(0))), None)
    } else {
        (None, Some(IntOrString::Int(1)))
    };
    PodDisruptionBudget {
        metadata: child_meta(cluster, names::pod_disruption_budget(&cluster.name)),
        spec: Some(PodDisruptionBudgetSpec {
            min_available,
            max_unavailable,
            selector: Some(LabelSelector {
                match_labels: Some(selector),
                ..LabelSelector::default()
            }),
            // A pod that is not Ready can always be evicted: it serves nothing, and
            // blocking its eviction would only block drains.
            unhealthy_pod_eviction_policy: Some("AlwaysAllow".to_owned()),
        }),
        ..PodDisruptionBudget::default()
    }
}

/// The budget selecting only the pod labelled primary (`minAvailable: 1`):
/// an eviction of the primary is refused (and `kubectl drain` retries it)
/// until the operator has moved the label to another pod. `None` for a
/// single instance, which has nowhere to move: a drain must never hang.
/// It follows the spec's replicas; the operator refuses to start the
/// switchover only when no replica can take over, and says why.
pub fn primary(cluster: &ValidatedCluster) -> Option<PodDisruptionBudget> {
    if !holds_the_primary(cluster) {
        return None;
    }
    let mut selector = cluster.selector();
    selector.insert(names::LABEL_ROLE.to_owned(), names::ROLE_PRIMARY.to_owned());
    Some(PodDisruptionBudget {
        metadata: child_meta(cluster, names::primary_pod_disruption_budget(&cluster.name)),
        spec: Some(PodDisruptionBudgetSpec {
            min_available: Some(IntOrString::Int(1)),
            selector: Some(LabelSelector {
                match_labels: Some(selector),
                ..LabelSelector::default()
            }),
            // Even a primary that is not Ready stays: the operator moves it
            // (or fails it over) rather than letting an eviction take it.
            unhealthy_pod_eviction_policy: Some("IfHealthyBudget".to_owned()),
            ..PodDisruptionBudgetSpec::default()
        }),
        ..PodDisruptionBudget::default()
    })
}

/// Whether the primary gets a budget of its own: two or more instances and
/// automatic switchovers (with `failover: Manual` nobody would move it).
fn holds_the_primary(cluster: &ValidatedCluster) -> bool {
    cluster.replicas >= 2 && cluster.failover.mode == ebisu_api::FailoverMode::Automatic
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::fixtures::{BASIC, SINGLE, validated};

    #[test]
    fn at_most_one_replica_is_disrupted_and_no_pod_has_two_budgets() {
        let pdb = build(&validated(BASIC));
        let spec = pdb.spec.expect("spec");
        assert_eq!(
            spec.min_available,
            Some(IntOrString::Int(1)),
            "one of the two replicas stays"
        );
        assert_eq!(spec.max_unavailable, None);
        let mut replicas = names::selector_labels("orders");
        replicas.insert(names::LABEL_ROLE.to_owned(), "replica".to_owned());
        assert_eq!(spec.selector.and_then(|s| s.match_labels), Some(replicas));
        assert_eq!(pdb.metadata.owner_references.map(|o| o.len()), Some(1));
    }

    #[test]
    fn a_single_instance_budget_selects_every_instance() {
        let spec = build(&validated(SINGLE)).spec.expect("spec");
        assert_eq!(spec.max_unavailable, Some(IntOrString::Int(1)));
        assert_eq!(
            spec.selector.and_then(|s| s.match_labels),
            Some(names::selector_labels("dev"))
        );
    }

    #[test]
    fn the_primary_pdb_selects_only_the_primary_and_keeps_it() {
        let pdb = primary(&validated(BASIC)).expect("three instances have one");
        assert_eq!(pdb.metadata.name.as_deref(), Some("orders-primary"));
        let spec = pdb.spec.expect("spec");
        assert_eq!(spec.min_available, Some(IntOrString::Int(1)));
        let labels = spec.selector.and_then(|s| s.match_labels).expect("labels");
        assert_eq!(
            labels.get(names::LABEL_ROLE).map(String::as_str),
            Some("primary")
        );
        assert_eq!(
            labels.get(names::LABEL_CLUSTER).map(String::as_str),
            Some("orders")
        );
    }

    #[test]
    fn a_single_instance_has_no_primary_pdb_so_a_drain_never_hangs() {
        assert_eq!(primary(&validated(SINGLE)), None);
    }
}
