//! Which lost nodes to fence and which fenced ones to release, from what
//! the nodes and the cluster's servers say. Pure: no client, no clock (the
//! caller passes the time).

use std::collections::{BTreeMap, BTreeSet};

use ebisu_api::names::{FENCED_BY, LABEL_CLUSTER};
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::jiff::{SignedDuration, Timestamp};

use crate::model::{
    Answer, Problem, ServerState, objects::node_ready_condition, well_known::OUT_OF_SERVICE,
};

/// How long a node must have been NotReady: the node controller's own
/// judgement (no heartbeat within its grace period) plus this margin.
pub const NOT_READY_FOR: SignedDuration = SignedDuration::from_secs(5);

/// A node as fencing sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeView {
    /// Its Ready condition is True.
    pub ready: bool,
    /// Since when it has not been Ready.
    pub not_ready_since: Option<Timestamp>,
    /// Its EC2 instance id, from `spec.providerID` (`aws:///ZONE/i-...`).
    pub instance: Option<String>,
    /// It carries the out-of-service taint.
    pub out_of_service: bool,
    /// The cluster that fenced it (the [`FENCED_BY`] annotation).
    pub fenced_by: Option<String>,
}

/// One fencing step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Stop the instance (forced) and taint the node.
    Fence {
        /// The node.
        node: String,
        /// Its EC2 instance.
        instance: String,
        /// The lost servers on it.
        pods: Vec<String>,
    },
    /// The node is Ready again: remove the taint ebisu set.
    Unfence {
        /// The node.
        node: String,
    },
}

/// The pods on a node to be fenced that stopping its machine would harm:
/// all but this cluster's (silent, as the decision checked), DaemonSets'
/// (every node has them), the operator's own, and those that ended.
pub fn bystanders(
    pods: &[Pod],
    cluster_namespace: &str,
    cluster_name: &str,
    operator_namespace: &str,
) -> Vec<String> {
    pods.iter()
        .filter(|pod| {
            let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
            let ours = namespace == cluster_namespace
                && pod
                    .metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(LABEL_CLUSTER))
                    .is_some_and(|c| c == cluster_name);
            let daemon = pod
                .metadata
                .owner_references
                .as_ref()
                .is_some_and(|o| o.iter().any(|o| o.kind == "DaemonSet"));
            let ended = pod
                .status
                .as_ref()
                .and_then(|s| s.phase.as_deref())
                .is_some_and(|p| p == "Succeeded" || p == "Failed");
            !(ours || daemon || ended || namespace == operator_namespace)
        })
        .map(|pod| {
            format!(
                "{}/{}",
                pod.metadata.namespace.as_deref().unwrap_or_default(),
                pod.metadata.name.as_deref().unwrap_or_default()
            )
        })
        .collect()
}

/// The instance id in a providerID such as `aws:///us-east-1a/i-0abc`.
pub fn instance_of(provider_id: &str) -> Option<String> {
    let rest = provider_id.strip_prefix("aws://")?;
    let id = rest.rsplit('/').next()?;
    id.starts_with("i-").then(|| id.to_owned())
}

/// What fencing sees of a Node.
pub fn node_view(node: &Node) -> NodeView {
    let ready_condition = node_ready_condition(node);
    let ready = ready_condition.is_some_and(|c| c.status == "True");
    NodeView {
        ready,
        not_ready_since: ready_condition
            .filter(|_| !ready)
            .and_then(|c| c.last_transition_time.as_ref())
            .map(|t| t.0),
        instance: node
            .spec
            .as_ref()
            .and_then(|s| s.provider_id.as_deref())
            .and_then(instance_of),
        out_of_service: node
            .spec
            .as_ref()
            .and_then(|s| s.taints.as_ref())
            .is_some_and(|t| t.iter().any(|t| t.key == OUT_OF_SERVICE)),
        fenced_by: node
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(FENCED_BY))
            .cloned(),
    }
}

/// Decides which nodes to fence and unfence for the cluster `cluster_key`
/// (`ns/name`).
/// A node is fenced only when fencing is on, it has been NotReady for a
/// while, every server of ours on it is silent (none answered, none
/// refused: a server that refuses is alive), it is not the primary's, and
/// the primary answers elsewhere. Nodes we fenced that are Ready again are
/// unfenced, whether or not fencing is still on.
pub fn decide(
    cluster_key: &str,
    enabled: bool,
    servers: &[ServerState],
    primary: Option<&str>,
    nodes: &BTreeMap<String, NodeView>,
    now: Timestamp,
) -> (Vec<Step>, Vec<Problem>) {
    let mut steps = Vec::new();
    let mut problems = Vec::new();
    for (name, node) in nodes {
        if node.ready && node.fenced_by.as_deref() == Some(cluster_key) {
            steps.push(Step::Unfence { node: name.clone() });
        }
    }
    let primary_serves = primary.is_some_and(|p| {
        servers
            .iter()
            .any(|s| s.pod == p && s.answered() && !s.read_only)
    });
    if !enabled || !primary_serves {
        return (steps, problems);
    }
    let mut on_node: BTreeMap<&str, Vec<&ServerState>> = BTreeMap::new();
    for server in servers {
        if let Some(node) = &server.node {
            on_node.entry(node.name.as_str()).or_default().push(server);
        }
    }
    for (name, here) in on_node {
        let Some(node) = nodes.get(name) else {
            continue;
        };
        let lost_long_enough = node
            .not_ready_since
            .is_some_and(|since| since.saturating_add(NOT_READY_FOR).is_ok_and(|t| t <= now));
        let all_silent = here.iter().all(|s| s.answer == Answer::Silent);
        let holds_primary = here.iter().any(|s| Some(s.pod.as_str()) == primary);
        if node.ready || node.out_of_service || !lost_long_enough || !all_silent || holds_primary {
            continue;
        }
        let pods: Vec<String> = here.iter().map(|s| s.pod.clone()).collect();
        match &node.instance {
            Some(instance) => steps.push(Step::Fence {
                node: name.to_owned(),
                instance: instance.clone(),
                pods,
            }),
            None => problems.push(Problem::FenceImpossible {
                pod: pods.join(", "),
                why: format!(
                    "node {name} has no EC2 instance in spec.providerID (aws:///ZONE/i-...)"
                ),
            }),
        }
    }
    (steps, problems)
}

/// The nodes of `fenced_before` (`status.fencedNodes`) that are still
/// fenced by this cluster: not deleted (`gone`: a node the autoscaler
/// replaced leaves nothing to undo), and not replaced under the same name
/// or unfenced by hand (their view names no fencer, or another one). A
/// node that could not be read stays listed.
pub fn still_ours(
    cluster_key: &str,
    fenced_before: &[String],
    views: &BTreeMap<String, NodeView>,
    gone: &BTreeSet<String>,
) -> Vec<String> {
    fenced_before
        .iter()
        .filter(|name| !gone.contains(*name))
        .filter(|name| {
            views
                .get(*name)
                .is_none_or(|v| v.fenced_by.as_deref() == Some(cluster_key))
        })
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::NodeFacts;

    const ME: &str = "shop/orders";

    fn now() -> Timestamp {
        "2026-12-02T12:00:00Z".parse().unwrap()
    }

    fn server(pod: &str, node: &str, answer: Answer, read_only: bool) -> ServerState {
        ServerState {
            pod_ready: answer != Answer::Silent,
            node: Some(NodeFacts {
                name: node.to_owned(),
                draining: false,
                ready: answer != Answer::Silent,
            }),
            answer,
            read_only,
            seed_pending: false,
            ..ServerState::unobserved(pod, &format!("{pod}.orders.shop.svc.cluster.local"))
        }
    }

    fn lost(seconds: i64) -> NodeView {
        NodeView {
            ready: false,
            not_ready_since: Some(now() - SignedDuration::from_secs(seconds)),
            instance: Some("i-0a1".to_owned()),
            ..NodeView::default()
        }
    }

    fn ready() -> NodeView {
        NodeView {
            ready: true,
            instance: Some("i-0b2".to_owned()),
            ..NodeView::default()
        }
    }

    fn cluster() -> Vec<ServerState> {
        vec![
            server("orders-0", "node-a1", Answer::Silent, false),
            server("orders-1", "node-b1", Answer::Answered, false),
            server("orders-2", "node-c1", Answer::Answered, true),
        ]
    }

    fn nodes(a1: NodeView) -> BTreeMap<String, NodeView> {
        BTreeMap::from([
            ("node-a1".to_owned(), a1),
            ("node-b1".to_owned(), ready()),
            ("node-c1".to_owned(), ready()),
        ])
    }

    #[test]
    fn a_lost_node_is_fenced_once_the_primary_serves_elsewhere() {
        let (steps, problems) = decide(
            ME,
            true,
            &cluster(),
            Some("orders-1"),
            &nodes(lost(30)),
            now(),
        );
        assert_eq!(
            steps,
            vec![Step::Fence {
                node: "node-a1".to_owned(),
                instance: "i-0a1".to_owned(),
                pods: vec!["orders-0".to_owned()],
            }]
        );
        assert!(problems.is_empty());
    }

    #[test]
    fn nothing_is_fenced_when_off_or_while_anything_might_answer() {
        let none = |steps: Vec<Step>| steps.is_empty();
        // Off (the default).
        assert!(none(
            decide(
                ME,
                false,
                &cluster(),
                Some("orders-1"),
                &nodes(lost(30)),
                now()
            )
            .0
        ));
        // Not NotReady long enough, or Ready.
        assert!(none(
            decide(
                ME,
                true,
                &cluster(),
                Some("orders-1"),
                &nodes(lost(2)),
                now()
            )
            .0
        ));
        let mut answering = lost(30);
        answering.ready = true;
        assert!(none(
            decide(
                ME,
                true,
                &cluster(),
                Some("orders-1"),
                &nodes(answering),
                now()
            )
            .0
        ));
        // A server on it refuses the operator: it is alive.
        let mut servers = cluster();
        servers[0].answer = Answer::Refused;
        assert!(none(
            decide(
                ME,
                true,
                &servers,
                Some("orders-1"),
                &nodes(lost(30)),
                now()
            )
            .0
        ));
        // It still holds the primary (no failover happened).
        assert!(none(
            decide(
                ME,
                true,
                &cluster(),
                Some("orders-0"),
                &nodes(lost(30)),
                now()
            )
            .0
        ));
        // The primary does not serve: no failover is complete.
        let mut servers = cluster();
        servers[1].read_only = true;
        assert!(none(
            decide(
                ME,
                true,
                &servers,
                Some("orders-1"),
                &nodes(lost(30)),
                now()
            )
            .0
        ));
        assert!(none(
            decide(ME, true, &cluster(), None, &nodes(lost(30)), now()).0
        ));
        // Already out of service.
        let mut fenced = lost(30);
        fenced.out_of_service = true;
        assert!(none(
            decide(
                ME,
                true,
                &cluster(),
                Some("orders-1"),
                &nodes(fenced),
                now()
            )
            .0
        ));
    }

    #[test]
    fn a_node_without_an_instance_id_is_reported() {
        let mut node = lost(30);
        node.instance = None;
        let (steps, problems) = decide(ME, true, &cluster(), Some("orders-1"), &nodes(node), now());
        assert!(steps.is_empty());
        assert!(
            matches!(&problems[..], [Problem::FenceImpossible { pod, .. }] if pod == "orders-0")
        );
    }

    #[test]
    fn a_node_we_fenced_is_unfenced_when_ready_and_only_by_us() {
        let mut back = ready();
        back.out_of_service = true;
        back.fenced_by = Some(ME.to_owned());
        let (steps, _) = decide(
            ME,
            false,
            &cluster(),
            Some("orders-1"),
            &nodes(back.clone()),
            now(),
        );
        assert_eq!(
            steps,
            vec![Step::Unfence {
                node: "node-a1".to_owned()
            }]
        );
        back.fenced_by = Some("other/cluster".to_owned());
        assert!(
            decide(ME, true, &cluster(), Some("orders-1"), &nodes(back), now())
                .0
                .is_empty()
        );
    }

    #[test]
    fn instance_ids_come_from_aws_provider_ids() {
        assert_eq!(
            instance_of("aws:///us-east-1a/i-0abc").as_deref(),
            Some("i-0abc")
        );
        assert_eq!(instance_of("gce://p/z/n"), None);
        assert_eq!(instance_of("aws:///us-east-1a/"), None);
    }

    #[test]
    fn a_fenced_node_stays_ours_until_deleted_replaced_or_unfenced_by_hand() {
        let fenced = |by: Option<&str>| NodeView {
            fenced_by: by.map(str::to_owned),
            ..lost(30)
        };
        let before = ["a", "b", "c", "d", "e"].map(str::to_owned).to_vec();
        let views = BTreeMap::from([
            ("a".to_owned(), fenced(Some(ME))),
            ("b".to_owned(), fenced(None)),
            ("c".to_owned(), fenced(Some("other/cluster"))),
        ]);
        let gone = BTreeSet::from(["d".to_owned()]);
        assert_eq!(
            still_ours(ME, &before, &views, &gone),
            vec!["a".to_owned(), "e".to_owned()],
            "e could not be read: kept"
        );
    }

    #[test]
    fn only_this_clusters_pods_daemon_sets_and_ebisu_share_a_node_it_fences() {
        let pod = |ns: &str, name: &str, extra: serde_json::Value| -> Pod {
            let mut value = serde_json::json!({
                "metadata": {"namespace": ns, "name": name},
            });
            if let (Some(base), Some(more)) = (value.as_object_mut(), extra.as_object()) {
                for (k, v) in more {
                    if k == "metadata" {
                        if let (Some(m), Some(add)) =
                            (base["metadata"].as_object_mut(), v.as_object())
                        {
                            m.extend(add.clone());
                        }
                    } else {
                        base.insert(k.clone(), v.clone());
                    }
                }
            }
            serde_json::from_value(value).unwrap()
        };
        let pods = [
            pod(
                "shop",
                "orders-0",
                serde_json::json!({"metadata": {"labels": {LABEL_CLUSTER: "orders"}}}),
            ),
            pod(
                "shop",
                "payments-1",
                serde_json::json!({"metadata": {"labels": {LABEL_CLUSTER: "payments"}}}),
            ),
            pod(
                "kube-system",
                "ebs-csi-node-x",
                serde_json::json!({"metadata": {"ownerReferences": [{"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "ebs-csi-node", "uid": "u"}]}}),
            ),
            pod("ebisu-system", "ebisu-operator-abc", serde_json::json!({})),
            pod("web", "frontend-7", serde_json::json!({})),
            pod(
                "batch",
                "job-1",
                serde_json::json!({"status": {"phase": "Succeeded"}}),
            ),
            pod(
                "other",
                "orders-0",
                serde_json::json!({"metadata": {"labels": {LABEL_CLUSTER: "orders"}}}),
            ),
        ];
        assert_eq!(
            bystanders(&pods, "shop", "orders", "ebisu-system"),
            vec!["shop/payments-1", "web/frontend-7", "other/orders-0"]
        );
    }
}
