//! What every reconcile shares: the API and EC2 clients, the Event
//! recorder, the HTTP client for the agents, the fast primary probe, the
//! latest volume looks, and the index of which nodes concern which
//! cluster. `runtime` builds it once; nothing below `reconcile` sees it.

use std::{
    collections::{BTreeSet, HashMap},
    sync::{Arc, Mutex},
};

use ebisu_api::MySQLCluster;
use kube::{
    Client,
    runtime::{
        events::{Recorder, Reporter},
        reflector::ObjectRef,
    },
};

use crate::{
    clustering::{observe, prober::Prober},
    validate::OperatorSettings,
    volumes::VolumeLooks,
};

/// What every reconcile shares.
#[derive(Clone)]
pub struct Context {
    /// API client.
    pub client: Client,
    /// Operator-wide settings.
    pub settings: OperatorSettings,
    /// Event recorder.
    pub recorder: Recorder,
    /// HTTP client for the instance agents, shared so its connections are reused.
    pub agents: reqwest::Client,
    /// The fast primary probe.
    pub prober: Arc<Prober>,
    /// EC2, for the volumes and fencing.
    pub ec2: aws_sdk_ec2::Client,
    /// The latest look at each cluster's volumes.
    pub volume_looks: Arc<VolumeLooks>,
    /// Which nodes concern which cluster.
    pub node_index: Arc<NodeIndex>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// The clusters the prober wants reconciled.
pub type ProbeTriggers = futures::channel::mpsc::UnboundedReceiver<ObjectRef<MySQLCluster>>;

impl Context {
    /// A context whose Events are reported as coming from `instance`, and
    /// the stream of reconciles its prober asks for.
    pub fn new(
        client: Client,
        ec2: aws_sdk_ec2::Client,
        settings: OperatorSettings,
        instance: Option<String>,
    ) -> (Self, ProbeTriggers) {
        let reporter = Reporter {
            controller: ebisu_api::names::FIELD_MANAGER.to_owned(),
            instance,
        };
        let recorder = Recorder::new(client.clone(), reporter);
        // A silent agent must cost a failover check little: connecting inside a
        // cluster takes milliseconds, so half a second means it is gone.
        let agents = reqwest::Client::builder()
            .connect_timeout(observe::CONNECT_TIMEOUT)
            .build()
            .unwrap_or_default();
        let (prober, triggers) = Prober::new(agents.clone());
        (
            Self {
                client,
                settings,
                recorder,
                agents,
                prober,
                ec2,
                volume_looks: Arc::default(),
                node_index: Arc::default(),
            },
            triggers,
        )
    }

    /// Forgets a cluster that is gone or whose spec cannot be honoured: no
    /// probe of its primary, no node that wakes it.
    pub fn forget(&self, cluster: &ObjectRef<MySQLCluster>) {
        self.prober.forget(cluster);
        self.node_index.forget(cluster);
    }
}

/// The nodes each cluster's pods run on (and the nodes it fenced), so that
/// a change to a node (a cordon, its return) wakes the clusters it
/// concerns. Written by each reconcile.
#[derive(Debug, Default)]
pub struct NodeIndex {
    nodes: Mutex<HashMap<ObjectRef<MySQLCluster>, BTreeSet<String>>>,
}

impl NodeIndex {
    /// `cluster` is concerned by `nodes` from now on.
    pub fn set(&self, cluster: ObjectRef<MySQLCluster>, nodes: BTreeSet<String>) {
        if let Ok(mut index) = self.nodes.lock() {
            index.insert(cluster, nodes);
        }
    }

    /// Forgets `cluster`.
    pub fn forget(&self, cluster: &ObjectRef<MySQLCluster>) {
        if let Ok(mut index) = self.nodes.lock() {
            index.remove(cluster);
        }
    }

    /// The clusters a change to `node` concerns.
    pub fn clusters_on(&self, node: &str) -> Vec<ObjectRef<MySQLCluster>> {
        self.nodes.lock().map_or_else(
            |_| Vec::new(),
            |index| {
                index
                    .iter()
                    .filter(|(_, nodes)| nodes.contains(node))
                    .map(|(cluster, _)| cluster.clone())
                    .collect()
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_wakes_the_clusters_on_it_until_they_are_forgotten() {
        let index = NodeIndex::default();
        let orders = ObjectRef::new("orders").within("shop");
        let stock = ObjectRef::new("stock").within("shop");
        index.set(orders.clone(), ["node-a1".to_owned()].into());
        index.set(
            stock.clone(),
            ["node-a1".to_owned(), "node-b1".to_owned()].into(),
        );
        assert_eq!(index.clusters_on("node-b1"), vec![stock.clone()]);
        assert_eq!(index.clusters_on("node-a1").len(), 2);
        index.set(orders.clone(), ["node-c1".to_owned()].into());
        assert_eq!(index.clusters_on("node-a1"), vec![stock.clone()]);
        index.forget(&stock);
        assert!(index.clusters_on("node-b1").is_empty());
    }
}
