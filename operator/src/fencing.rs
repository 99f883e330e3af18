//! Fencing lost nodes (`spec.replication.fenceNodes`): a node that stopped
//! answering keeps its StatefulSet pods and their EBS volumes forever, so
//! once the primary serves elsewhere ebisu stops the node's EC2 instance
//! (forced) and gives the node the `node.kubernetes.io/out-of-service`
//! taint; Kubernetes then deletes its pods and detaches their volumes, and
//! the instances come back on healthy nodes in their volumes' zones. The
//! taint is removed when the node is Ready again. The decision is pure
//! ([`decide`]); [`act`] makes the calls.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Node, Taint};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::Client;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

use crate::clustering::Problem;
use crate::clustering::state::{Answer, ServerState};

/// The taint that tells Kubernetes a node is shut down for good.
pub const OUT_OF_SERVICE: &str = "node.kubernetes.io/out-of-service";
/// The annotation on a node ebisu fenced, naming the cluster (`ns/name`),
/// so that only a taint ebisu set is ever removed by ebisu.
pub const FENCED_BY: &str = "ebisu.dev/fenced-by";
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

/// The instance id in a providerID such as `aws:///us-east-1a/i-0abc`.
pub fn instance_of(provider_id: &str) -> Option<String> {
    let rest = provider_id.strip_prefix("aws://")?;
    let id = rest.rsplit('/').next()?;
    id.starts_with("i-").then(|| id.to_owned())
}

/// What fencing sees of a Node.
pub fn node_view(node: &Node) -> NodeView {
    let ready_condition = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"));
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

/// Decides which nodes to fence and unfence for cluster `me` (`ns/name`).
/// A node is fenced only when fencing is on, it has been NotReady for a
/// while, every server of ours on it is silent (none answered, none
/// refused: a server that refuses is alive), it is not the primary's, and
/// the primary answers elsewhere. Nodes we fenced that are Ready again are
/// unfenced, whether or not fencing is still on.
pub fn decide(
    me: &str,
    enabled: bool,
    servers: &[ServerState],
    primary: Option<&str>,
    nodes: &BTreeMap<String, NodeView>,
    now: Timestamp,
) -> (Vec<Step>, Vec<Problem>) {
    let mut steps = Vec::new();
    let mut problems = Vec::new();
    for (name, node) in nodes {
        if node.ready && node.fenced_by.as_deref() == Some(me) {
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

/// Why a fencing call failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// StopInstances failed.
    #[error(transparent)]
    Stop(crate::ebs::Error),
    /// The node could not be read or patched.
    #[error("failed to {action} node {node}: {source}")]
    Node {
        /// What we tried.
        action: &'static str,
        /// The node.
        node: String,
        /// The API error.
        source: kube::Error,
    },
}

/// Makes a step's calls. Fencing stops the instance first: the taint makes
/// Kubernetes free the volumes, which must never happen while the old
/// server may still write to them.
pub async fn act(
    client: &Client,
    ec2: &aws_sdk_ec2::Client,
    me: &str,
    step: &Step,
) -> Result<(), Error> {
    match step {
        Step::Fence { node, instance, .. } => {
            ec2.stop_instances()
                .instance_ids(instance)
                .force(true)
                .send()
                .await
                .map_err(crate::ebs::call(format!("stop instance {instance}")))
                .map_err(Error::Stop)?;
            set_taint(client, node, Some(me)).await
        }
        Step::Unfence { node } => set_taint(client, node, None).await,
    }
}

/// Unfences the nodes a deleted cluster fenced, whether or not they are
/// back: nothing else would ever remove the taint, and a node out of
/// service runs no pod of anyone's.
pub async fn release(client: &Client, me: &str, fenced: &[String]) -> Result<(), Error> {
    let api: Api<Node> = Api::all(client.clone());
    for node in fenced {
        let current = api.get_opt(node).await.map_err(|source| Error::Node {
            action: "read",
            node: node.clone(),
            source,
        })?;
        if current.is_some_and(|n| node_view(&n).fenced_by.as_deref() == Some(me)) {
            set_taint(client, node, None).await?;
            tracing::info!(%node, "unfenced a node of a deleted cluster");
        }
    }
    Ok(())
}

/// Adds (`fenced_by` set) or removes the out-of-service taint and the
/// annotation, guarded by the node's resourceVersion.
async fn set_taint(client: &Client, node: &str, fenced_by: Option<&str>) -> Result<(), Error> {
    let api: Api<Node> = Api::all(client.clone());
    let err = |action| {
        move |source| Error::Node {
            action,
            node: node.to_owned(),
            source,
        }
    };
    let current = api.get(node).await.map_err(err("read"))?;
    let mut taints: Vec<Taint> = current
        .spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default()
        .into_iter()
        .filter(|t| t.key != OUT_OF_SERVICE)
        .collect();
    if fenced_by.is_some() {
        taints.push(Taint {
            key: OUT_OF_SERVICE.to_owned(),
            value: Some("nodeshutdown".to_owned()),
            effect: "NoExecute".to_owned(),
            time_added: None,
        });
    }
    let patch = json!({
        "metadata": {
            "resourceVersion": current.metadata.resource_version,
            "annotations": { FENCED_BY: fenced_by },
        },
        "spec": { "taints": taints },
    });
    api.patch(node, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(err("taint"))?;
    Ok(())
}

/// What a fencing pass did.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Nodes fenced for this cluster after the pass.
    pub fenced: Vec<String>,
    /// What could not be done.
    pub problems: Vec<Problem>,
    /// Events to publish (`reason`, message, pod).
    pub notes: Vec<crate::events::Note>,
}

/// What a fencing pass looks at.
#[derive(Debug, Clone, Copy)]
pub struct Inputs<'a> {
    /// The cluster, as `namespace/name`.
    pub me: &'a str,
    /// `spec.replication.fenceNodes`.
    pub enabled: bool,
    /// The servers as the clustering pass saw them.
    pub servers: &'a [ServerState],
    /// The primary the pass settled on.
    pub primary: Option<&'a str>,
    /// The nodes of the cluster's pods.
    pub observed_nodes: &'a BTreeMap<String, Node>,
    /// The nodes fenced for the cluster before (`status.fencedNodes`).
    pub fenced_before: &'a [String],
}

/// Looks at the nodes of the cluster's servers and those it fenced before,
/// and fences or unfences them.
pub async fn run(client: &Client, ec2: &aws_sdk_ec2::Client, inputs: Inputs<'_>) -> Outcome {
    let Inputs {
        me,
        enabled,
        servers,
        primary,
        observed_nodes,
        fenced_before,
    } = inputs;
    let mut views: BTreeMap<String, NodeView> = observed_nodes
        .iter()
        .map(|(name, node)| (name.clone(), node_view(node)))
        .collect();
    let api: Api<Node> = Api::all(client.clone());
    let mut fenced: Vec<String> = Vec::new();
    for name in fenced_before {
        if !views.contains_key(name) {
            match api.get_opt(name).await {
                Ok(Some(node)) => {
                    views.insert(name.clone(), node_view(&node));
                }
                // Deleted (replaced by the autoscaler): nothing left to undo.
                Ok(None) => continue,
                Err(error) => {
                    tracing::warn!(node = %name, %error, "failed to read a fenced node");
                }
            }
        }
        // Replaced under the same name, or unfenced by hand: not ours any more.
        if views
            .get(name)
            .is_some_and(|v| v.fenced_by.as_deref() != Some(me))
        {
            continue;
        }
        fenced.push(name.clone());
    }
    let (steps, problems) = decide(me, enabled, servers, primary, &views, Timestamp::now());
    let mut outcome = Outcome {
        problems,
        ..Outcome::default()
    };
    for step in steps {
        let result = act(client, ec2, me, &step).await;
        match (&step, result) {
            (
                Step::Fence {
                    node,
                    instance,
                    pods,
                },
                Ok(()),
            ) => {
                tracing::info!(%node, %instance, "fenced a lost node");
                fenced.push(node.clone());
                outcome.notes.push(crate::events::Note {
                    warning: true,
                    reason: "NodeFenced".to_owned(),
                    message: format!(
                        "node {node} stopped answering with {} on it: stopped its EC2 \
                         instance {instance} (forced) and tainted it {OUT_OF_SERVICE}, so \
                         Kubernetes moves its pods and volumes to a healthy node in their zone",
                        pods.join(", ")
                    ),
                    pod: pods.first().cloned(),
                });
            }
            (Step::Unfence { node }, Ok(())) => {
                tracing::info!(%node, "unfenced a node that is back");
                fenced.retain(|n| n != node);
                outcome.notes.push(crate::events::Note {
                    warning: false,
                    reason: "NodeUnfenced".to_owned(),
                    message: format!(
                        "node {node} is Ready again: removed the {OUT_OF_SERVICE} taint"
                    ),
                    pod: None,
                });
            }
            (Step::Fence { pods, .. }, Err(error)) => {
                outcome.problems.push(Problem::FenceImpossible {
                    pod: pods.join(", "),
                    why: error.to_string(),
                });
            }
            (Step::Unfence { .. }, Err(error)) => {
                tracing::warn!(%error, "failed to unfence a node; retrying");
            }
        }
    }
    fenced.sort();
    fenced.dedup();
    outcome.fenced = fenced;
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clustering::state::NodeFacts;

    const ME: &str = "shop/orders";

    fn now() -> Timestamp {
        "2026-12-02T12:00:00Z".parse().unwrap()
    }

    fn server(pod: &str, node: &str, answer: Answer, read_only: bool) -> ServerState {
        ServerState {
            pod: pod.to_owned(),
            host: format!("{pod}.orders.shop.svc.cluster.local"),
            role_label: None,
            reads_label: false,
            pod_ready: answer != Answer::Silent,
            terminating: false,
            node: Some(NodeFacts {
                name: node.to_owned(),
                draining: false,
                ready: answer != Answer::Silent,
            }),
            answer,
            read_only,
            gtid: None,
            version: None,
            upgrade_error: None,
            replication: None,
            semi_sync_source: false,
            semi_sync_active: false,
            semi_sync_replica: false,
            semi_sync_timeout_ms: None,
            outdated: false,
            seed_pending: false,
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
}
