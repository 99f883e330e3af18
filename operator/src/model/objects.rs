//! What a cluster is made of in Kubernetes, as read by `dereference`, and
//! the one reader of each fact about those objects (is a pod ready, which
//! role it is labelled with, is it outdated, where its volume lives), so
//! that every caller gets the same meaning.

use std::collections::BTreeMap;

use ebisu_api::{
    InstanceRole,
    names::{self, LABEL_READS, LABEL_ROLE, READS_SERVED, ROLE_PRIMARY, ROLE_REPLICA},
};
use k8s_openapi::api::{
    apps::v1::StatefulSet,
    core::v1::{Node, NodeCondition, PersistentVolume, PersistentVolumeClaim, Pod},
    storage::v1::StorageClass,
};

use super::{
    ebs_driver::ZONE_KEYS,
    server::NodeFacts,
    well_known::{DRAIN_TAINTS, REVISION_LABEL, ZONE_LABEL},
};

/// A cluster's children and the nodes its pods run on.
#[derive(Debug, Default, Clone)]
pub struct ClusterObjects {
    /// The StatefulSet, if it exists.
    pub stateful_set: Option<StatefulSet>,
    /// The instance pods.
    pub pods: Vec<Pod>,
    /// The data volume claims.
    pub claims: Vec<PersistentVolumeClaim>,
    /// The volumes bound to those claims, by volume name.
    pub volumes: BTreeMap<String, PersistentVolume>,
    /// The nodes the pods run on, by name.
    pub nodes: BTreeMap<String, Node>,
    /// Every StorageClass (to explain a claim that waits).
    pub storage_classes: Vec<StorageClass>,
}

impl ClusterObjects {
    /// The pod named `name`.
    pub fn pod(&self, name: &str) -> Option<&Pod> {
        self.pods
            .iter()
            .find(|p| p.metadata.name.as_deref() == Some(name))
    }

    /// The StatefulSet's update revision (the pod template of the current spec).
    pub fn update_revision(&self) -> Option<&str> {
        self.stateful_set
            .as_ref()?
            .status
            .as_ref()?
            .update_revision
            .as_deref()
    }

    /// The StatefulSet controller has seen the pod template last applied, so
    /// its update revision is the current spec's. Until then a pod may look
    /// outdated against a revision the spec has just moved away from (a change
    /// undone within seconds would restart a pod for nothing).
    pub fn template_observed(&self) -> bool {
        self.stateful_set.as_ref().is_some_and(|sts| {
            let seen = sts.status.as_ref().and_then(|s| s.observed_generation);
            matches!((seen, sts.metadata.generation), (Some(seen), Some(current)) if seen >= current)
        })
    }

    /// Whether `pod` runs an old spec: it was made from another revision
    /// than the update revision of a template the StatefulSet has seen.
    /// Unknown revisions are not outdated: nothing is restarted on a guess.
    pub fn is_outdated(&self, pod: &Pod) -> bool {
        let revision = pod_revision(pod);
        self.template_observed()
            && matches!((revision, self.update_revision()), (Some(rev), Some(update)) if rev != update)
    }

    /// The volume bound to the data claim the StatefulSet made for `pod`.
    pub fn claim_volume(&self, cluster: &str, pod: &str) -> Option<&PersistentVolume> {
        let ordinal = names::ordinal_of(pod)?;
        let claim_name = names::data_claim(cluster, ordinal);
        let claim = self
            .claims
            .iter()
            .find(|c| c.metadata.name.as_deref() == Some(claim_name.as_str()))?;
        let volume_name = claim.spec.as_ref()?.volume_name.as_ref()?;
        self.volumes.get(volume_name)
    }
}

/// The pod serves queries: its Ready condition is True and it is not being
/// deleted.
pub fn pod_ready(pod: &Pod) -> bool {
    !pod_terminating(pod)
        && pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// The pod's container `name` has started at least once (it runs, ran, or
/// restarted): its init containers are done.
pub fn container_started(pod: &Pod, name: &str) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|all| all.iter().find(|c| c.name == name))
        .is_some_and(|c| {
            c.restart_count > 0
                || c.last_state
                    .as_ref()
                    .is_some_and(|s| s.terminated.is_some())
                || c.state
                    .as_ref()
                    .is_some_and(|s| s.running.is_some() || s.terminated.is_some())
        })
}

/// The pod is being deleted.
pub fn pod_terminating(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
}

/// The pod's `ebisu.dev/role` label, when it names a role.
pub fn pod_role(pod: &Pod) -> Option<InstanceRole> {
    match pod.metadata.labels.as_ref()?.get(LABEL_ROLE)?.as_str() {
        ROLE_PRIMARY => Some(InstanceRole::Primary),
        ROLE_REPLICA => Some(InstanceRole::Replica),
        _ => None,
    }
}

/// The pod's `ebisu.dev/reads` label says it serves reads.
pub fn pod_serves_reads(pod: &Pod) -> bool {
    pod.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(LABEL_READS))
        .is_some_and(|v| v == READS_SERVED)
}

/// The StatefulSet revision the pod was made from.
pub fn pod_revision(pod: &Pod) -> Option<&str> {
    pod.metadata
        .labels
        .as_ref()?
        .get(REVISION_LABEL)
        .map(String::as_str)
}

/// The pod's IP, once it has one.
pub fn pod_ip(pod: &Pod) -> Option<&str> {
    pod.status.as_ref()?.pod_ip.as_deref()
}

/// The node the pod is scheduled on.
pub fn pod_node(pod: &Pod) -> Option<&str> {
    pod.spec.as_ref()?.node_name.as_deref()
}

/// The node's Ready condition.
pub fn node_ready_condition(node: &Node) -> Option<&NodeCondition> {
    node.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")
}

/// The node's Ready condition is True.
pub fn node_ready(node: &Node) -> bool {
    node_ready_condition(node).is_some_and(|c| c.status == "True")
}

/// The node facts decisions take; a node not found counts as not ready.
pub fn node_facts(name: &str, node: Option<&Node>) -> NodeFacts {
    let Some(node) = node else {
        return NodeFacts {
            name: name.to_owned(),
            draining: false,
            ready: false,
        };
    };
    let spec = node.spec.as_ref();
    let cordoned = spec.and_then(|s| s.unschedulable).unwrap_or(false);
    let tainted = spec.and_then(|s| s.taints.as_ref()).is_some_and(|taints| {
        taints
            .iter()
            .any(|t| DRAIN_TAINTS.contains(&t.key.as_str()))
    });
    NodeFacts {
        name: name.to_owned(),
        draining: cordoned || tainted,
        ready: node_ready(node),
    }
}

/// The zone a volume is pinned to, from its node affinity.
pub fn volume_zone(volume: &PersistentVolume) -> Option<String> {
    let required = volume
        .spec
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required
        .as_ref()?;
    required.node_selector_terms.iter().find_map(|term| {
        term.match_expressions.iter().flatten().find_map(|e| {
            (e.key == ZONE_LABEL || ZONE_KEYS.contains(&e.key.as_str()))
                .then(|| e.values.as_ref()?.first().cloned())
                .flatten()
        })
    })
}

/// The CSI volume handle (for EBS, the volume id) of a volume.
pub fn volume_handle(volume: &PersistentVolume) -> Option<&str> {
    Some(volume.spec.as_ref()?.csi.as_ref()?.volume_handle.as_str())
}

/// What says, durably, whether a cluster ever held data: the initialised
/// annotation on its credentials Secret and data claims, and the claims
/// themselves (found by name, not by label, which a user may have removed).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DataRecord {
    /// The credentials Secret exists.
    pub secret_exists: bool,
    /// The credentials Secret carries the annotation.
    pub secret_marked: bool,
    /// Data claims that carry it.
    pub marked_claims: Vec<String>,
    /// Data claims that do not.
    pub unmarked_claims: Vec<String>,
    /// A data claim of an ordinal above 0 exists: the cluster once ran past
    /// its first instance, so that claim may hold data.
    pub claims_beyond_the_first: bool,
}

impl DataRecord {
    /// Whether any data claim of the cluster exists.
    pub fn has_claims(&self) -> bool {
        !self.marked_claims.is_empty() || !self.unmarked_claims.is_empty()
    }

    /// Whether the cluster ever held data (or may have): then nothing may
    /// bootstrap, and missing credentials are not generated again.
    pub fn holds_data(&self, status_had_primary: bool) -> bool {
        status_had_primary
            || self.secret_marked
            || !self.marked_claims.is_empty()
            || self.claims_beyond_the_first
    }

    /// Whether the record must be written now: the cluster has a primary
    /// (so it holds data), and the Secret or a claim does not say so yet.
    pub fn needs_marking(&self, has_primary: bool) -> bool {
        has_primary && (!self.secret_marked || !self.unmarked_claims.is_empty())
    }

    /// Every data claim found, marked or not.
    pub fn claims(&self) -> impl Iterator<Item = &String> {
        self.marked_claims.iter().chain(&self.unmarked_claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::StatefulSetStatus;
    use kube::api::ObjectMeta;

    fn sts(generation: i64, seen: Option<i64>, update: &str) -> ClusterObjects {
        ClusterObjects {
            stateful_set: Some(StatefulSet {
                metadata: ObjectMeta {
                    generation: Some(generation),
                    ..Default::default()
                },
                status: Some(StatefulSetStatus {
                    observed_generation: seen,
                    update_revision: Some(update.to_owned()),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn pod_of(revision: Option<&str>) -> Pod {
        Pod {
            metadata: ObjectMeta {
                labels: revision.map(|r| [(REVISION_LABEL.to_owned(), r.to_owned())].into()),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn pods_are_compared_only_with_a_revision_of_the_applied_template() {
        assert!(sts(4, Some(4), "r2").template_observed());
        assert!(
            !sts(5, Some(4), "r2").template_observed(),
            "a template just applied"
        );
        assert!(!sts(1, None, "r2").template_observed());
        assert!(!ClusterObjects::default().template_observed());
    }

    #[test]
    fn a_pod_is_outdated_only_against_a_revision_the_statefulset_has_seen() {
        let old = pod_of(Some("r1"));
        assert!(sts(4, Some(4), "r2").is_outdated(&old));
        assert!(!sts(4, Some(4), "r1").is_outdated(&old));
        assert!(!sts(5, Some(4), "r2").is_outdated(&old), "not seen yet");
        assert!(!sts(4, Some(4), "r2").is_outdated(&pod_of(None)), "unknown");
    }

    #[test]
    fn the_record_is_written_once_a_primary_exists_and_something_lacks_it() {
        let unmarked = DataRecord {
            secret_exists: true,
            unmarked_claims: vec!["data-db-0".to_owned()],
            ..DataRecord::default()
        };
        assert!(!unmarked.needs_marking(false), "no primary yet");
        assert!(unmarked.needs_marking(true));
        let marked = DataRecord {
            secret_exists: true,
            secret_marked: true,
            marked_claims: vec!["data-db-0".to_owned()],
            ..DataRecord::default()
        };
        assert!(!marked.needs_marking(true));
        let new_claim = DataRecord {
            unmarked_claims: vec!["data-db-1".to_owned()],
            ..marked
        };
        assert!(new_claim.needs_marking(true), "a claim added by a scale-up");
    }

    fn with_server(status: serde_json::Value) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "db-1"},
            "status": {"containerStatuses": [status]},
        }))
        .expect("pod")
    }

    #[test]
    fn a_server_container_counts_as_started_once_it_ran_at_all() {
        let waiting = serde_json::json!({"name": "mysqld", "image": "i", "imageID": "", "ready": false,
            "restartCount": 0, "state": {"waiting": {"reason": "PodInitializing"}}});
        assert!(!container_started(&with_server(waiting.clone()), "mysqld"));
        assert!(!container_started(&Pod::default(), "mysqld"));
        let running = serde_json::json!({"name": "mysqld", "image": "i", "imageID": "", "ready": true,
            "restartCount": 0, "state": {"running": {}}});
        assert!(container_started(&with_server(running.clone()), "mysqld"));
        assert!(!container_started(&with_server(running), "agent"));
        let mut crashed = waiting;
        crashed["restartCount"] = 2.into();
        assert!(container_started(&with_server(crashed), "mysqld"));
    }
}
