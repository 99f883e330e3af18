//! Fencing lost nodes (`spec.replication.fenceNodes`): a node that stopped
//! answering keeps its StatefulSet pods and their EBS volumes forever, so
//! once the primary serves elsewhere ebisu stops the node's EC2 instance
//! (forced) and gives the node the `node.kubernetes.io/out-of-service`
//! taint; Kubernetes then deletes its pods and detaches their volumes, and
//! the instances come back on healthy nodes in their volumes' zones. The
//! taint is removed when the node is Ready again. The decision is pure
//! ([`decide`]); this module makes the calls and reports what it did as
//! facts (the Events' wording is `events`').

pub mod decide;

use std::collections::{BTreeMap, BTreeSet};

use ebisu_api::names::FENCED_BY;
use k8s_openapi::api::core::v1::{Node, Pod, Taint};
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, ListParams, Patch, PatchParams};
use serde_json::json;

use crate::model::{Problem, ServerState, well_known::OUT_OF_SERVICE};
use decide::{NodeView, Step, node_view};

/// Why a fencing call failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// StopInstances failed.
    #[error(transparent)]
    Stop(crate::ec2::Error),
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
    cluster_key: &str,
    step: &Step,
) -> Result<(), Error> {
    match step {
        Step::Fence { node, instance, .. } => {
            ec2.stop_instances()
                .instance_ids(instance)
                .force(true)
                .send()
                .await
                .map_err(crate::ec2::call(format!("stop instance {instance}")))
                .map_err(Error::Stop)?;
            set_taint(client, node, Some(cluster_key)).await
        }
        Step::Unfence { node } => set_taint(client, node, None).await,
    }
}

/// Unfences the nodes a deleted cluster fenced, whether or not they are
/// back: nothing else would ever remove the taint, and a node out of
/// service runs no pod of anyone's.
pub async fn release(client: &Client, cluster_key: &str, fenced: &[String]) -> Result<(), Error> {
    let api: Api<Node> = Api::all(client.clone());
    for node in fenced {
        let current = api.get_opt(node).await.map_err(|source| Error::Node {
            action: "read",
            node: node.clone(),
            source,
        })?;
        if current.is_some_and(|n| node_view(&n).fenced_by.as_deref() == Some(cluster_key)) {
            set_taint(client, node, None).await?;
            tracing::info!(%node, "unfenced a node of a deleted cluster");
        }
    }
    Ok(())
}

/// How many times a taint change is tried when the node changed between
/// the read and the write (a returning node's heartbeats and the node
/// controller's taints change it often).
const TAINT_ATTEMPTS: usize = 3;

/// Adds (`fenced_by` set) or removes the out-of-service taint and the
/// annotation, guarded by the node's resourceVersion; read again and
/// retried when the node changed in between.
async fn set_taint(client: &Client, node: &str, fenced_by: Option<&str>) -> Result<(), Error> {
    let mut attempt = 1;
    loop {
        match try_set_taint(client, node, fenced_by).await {
            Err(Error::Node {
                source: kube::Error::Api(status),
                ..
            }) if status.code == 409 && attempt < TAINT_ATTEMPTS => attempt += 1,
            done => return done,
        }
    }
}

async fn try_set_taint(client: &Client, node: &str, fenced_by: Option<&str>) -> Result<(), Error> {
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

/// What a fencing pass did, as facts.
#[derive(Debug, Default)]
pub struct FencingReport {
    /// Nodes fenced for this cluster after the pass.
    pub fenced: Vec<String>,
    /// Nodes fenced in this pass.
    pub fenced_now: Vec<Fenced>,
    /// Nodes unfenced in this pass.
    pub unfenced_now: Vec<String>,
    /// What could not be done.
    pub problems: Vec<Problem>,
}

/// A node fenced in this pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fenced {
    /// The node.
    pub node: String,
    /// Its EC2 instance, stopped.
    pub instance: String,
    /// The lost servers on it.
    pub pods: Vec<String>,
}

/// What a fencing pass looks at.
#[derive(Debug, Clone, Copy)]
pub struct Inputs<'a> {
    /// The cluster, as `namespace/name`.
    pub cluster_key: &'a str,
    /// The cluster's namespace.
    pub cluster_namespace: &'a str,
    /// The cluster's name.
    pub cluster_name: &'a str,
    /// The operator's namespace (its pods are no bystanders).
    pub operator_namespace: &'a str,
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
pub async fn run(client: &Client, ec2: &aws_sdk_ec2::Client, inputs: Inputs<'_>) -> FencingReport {
    let Inputs {
        cluster_key,
        cluster_namespace,
        cluster_name,
        operator_namespace,
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
    let mut gone = BTreeSet::new();
    for name in fenced_before
        .iter()
        .filter(|n| !observed_nodes.contains_key(*n))
    {
        match api.get_opt(name).await {
            Ok(Some(node)) => {
                views.insert(name.clone(), node_view(&node));
            }
            Ok(None) => {
                gone.insert(name.clone());
            }
            Err(error) => {
                tracing::warn!(node = %name, %error, "failed to read a fenced node");
            }
        }
    }
    let mut fenced = decide::still_ours(cluster_key, fenced_before, &views, &gone);
    let (steps, problems) = decide::decide(
        cluster_key,
        enabled,
        servers,
        primary,
        &views,
        Timestamp::now(),
    );
    let mut report = FencingReport {
        problems,
        ..FencingReport::default()
    };
    for step in steps {
        if let Step::Fence { node, pods, .. } = &step {
            // M11: a stopped machine takes every pod on it down.
            let on_node = Api::<Pod>::all(client.clone())
                .list(&ListParams::default().fields(&format!("spec.nodeName={node}")))
                .await;
            let why = match on_node {
                Ok(list) => {
                    let others = decide::bystanders(
                        &list.items,
                        cluster_namespace,
                        cluster_name,
                        operator_namespace,
                    );
                    (!others.is_empty()).then(|| {
                        format!(
                            "node {node} also runs {}, which stopping its machine would take \
                             down; ebisu stops only machines that run nothing but this \
                             cluster's servers, DaemonSets and ebisu itself",
                            others.join(", ")
                        )
                    })
                }
                Err(error) => Some(format!(
                    "the other pods on node {node} could not be listed ({error}), so stopping \
                     its machine could take down pods of others"
                )),
            };
            if let Some(why) = why {
                report.problems.push(Problem::FenceImpossible {
                    pod: pods.join(", "),
                    why,
                });
                continue;
            }
        }
        let result = act(client, ec2, cluster_key, &step).await;
        match (step, result) {
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
                report.fenced_now.push(Fenced {
                    node,
                    instance,
                    pods,
                });
            }
            (Step::Unfence { node }, Ok(())) => {
                tracing::info!(%node, "unfenced a node that is back");
                fenced.retain(|n| *n != node);
                report.unfenced_now.push(node);
            }
            (Step::Fence { pods, .. }, Err(error)) => {
                report.problems.push(Problem::FenceImpossible {
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
    report.fenced = fenced;
    report
}
