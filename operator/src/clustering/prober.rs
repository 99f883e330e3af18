//! The fast primary probe. A settled cluster is reconciled only every half
//! minute, far too seldom to notice a lost primary; so between reconciles
//! the operator asks every cluster's primary agent twice a second whether
//! its server answers (`/readyz`: the agent runs `SELECT 1` over the local
//! socket). It asks the agent rather than the server so that the probes
//! never count as aborted connections on the server, which blocks a host
//! after `max_connect_errors` of them. When a primary stops answering, its
//! cluster is reconciled at once and told since when the probe found it
//! silent; the reconcile's own look decides.
//!
//! It never acts on a server: it only triggers reconciles.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use ebisu_api::{MySQLCluster, agent::PATH_READYZ, names::AGENT_PORT};
use futures::channel::mpsc;
use k8s_openapi::jiff::Timestamp;
use kube::runtime::reflector::ObjectRef;

/// How often each primary is probed.
pub const PERIOD: Duration = Duration::from_millis(500);
/// How long the answer may take.
pub const TIMEOUT: Duration = Duration::from_millis(500);

#[derive(Debug, Clone, PartialEq, Eq)]
struct Target {
    /// The primary's pod IP, when there is a primary to probe.
    ip: Option<String>,
    /// The nodes the cluster's pods run on.
    nodes: Vec<String>,
    silent_since: Option<Timestamp>,
}

/// The primaries being probed and the channel that triggers reconciles.
#[derive(Debug)]
pub struct Prober {
    targets: Mutex<HashMap<ObjectRef<MySQLCluster>, Target>>,
    trigger: mpsc::UnboundedSender<ObjectRef<MySQLCluster>>,
    agents: reqwest::Client,
}

impl Prober {
    /// A prober and the stream of clusters it wants reconciled.
    pub fn new(
        agents: reqwest::Client,
    ) -> (Arc<Self>, mpsc::UnboundedReceiver<ObjectRef<MySQLCluster>>) {
        let (trigger, triggered) = mpsc::unbounded();
        (
            Arc::new(Self {
                targets: Mutex::new(HashMap::new()),
                trigger,
                agents,
            }),
            triggered,
        )
    }

    /// From now on probes `cluster`'s primary at `primary_ip` (none: no
    /// primary to probe) and wakes the cluster when one of `nodes` changes.
    pub fn watch(
        &self,
        cluster: ObjectRef<MySQLCluster>,
        primary_ip: Option<String>,
        nodes: Vec<String>,
    ) {
        let Ok(mut targets) = self.targets.lock() else {
            return;
        };
        let target = targets.entry(cluster).or_insert_with(|| Target {
            ip: None,
            nodes: Vec::new(),
            silent_since: None,
        });
        if target.ip != primary_ip {
            target.silent_since = None;
        }
        target.ip = primary_ip;
        target.nodes = nodes;
    }

    /// Forgets `cluster` (deleted, or its spec cannot be honoured).
    pub fn forget(&self, cluster: &ObjectRef<MySQLCluster>) {
        if let Ok(mut targets) = self.targets.lock() {
            targets.remove(cluster);
        }
    }

    /// Since when the probe has found `cluster`'s primary silent, if it has.
    pub fn silent_since(&self, cluster: &ObjectRef<MySQLCluster>) -> Option<Timestamp> {
        self.targets
            .lock()
            .ok()?
            .get(cluster)
            .and_then(|t| t.silent_since)
    }

    /// The clusters with a pod on `node` (a change to the node, such as a
    /// cordon or its return, concerns them).
    pub fn clusters_on(&self, node: &str) -> Vec<ObjectRef<MySQLCluster>> {
        self.targets.lock().map_or_else(
            |_| Vec::new(),
            |targets| {
                targets
                    .iter()
                    .filter(|(_, t)| t.nodes.iter().any(|n| n == node))
                    .map(|(cluster, _)| cluster.clone())
                    .collect()
            },
        )
    }

    /// Probes every target, forever.
    pub async fn run(self: Arc<Self>) {
        let mut tick = tokio::time::interval(PERIOD);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let targets: Vec<(ObjectRef<MySQLCluster>, String)> = match self.targets.lock() {
                Ok(targets) => targets
                    .iter()
                    .filter_map(|(c, t)| Some((c.clone(), t.ip.clone()?)))
                    .collect(),
                Err(_) => return,
            };
            let agents = &self.agents;
            let probes = targets.into_iter().map(|(cluster, ip)| async move {
                let started = Timestamp::now();
                let answered = answers(agents, &ip).await;
                (cluster, ip, answered, started)
            });
            for (cluster, ip, greeted, started) in futures::future::join_all(probes).await {
                self.record(cluster, &ip, greeted, started);
            }
        }
    }

    fn record(
        &self,
        cluster: ObjectRef<MySQLCluster>,
        ip: &str,
        greeted: bool,
        started: Timestamp,
    ) {
        let Ok(mut targets) = self.targets.lock() else {
            return;
        };
        let Some(target) = targets
            .get_mut(&cluster)
            .filter(|t| t.ip.as_deref() == Some(ip))
        else {
            return;
        };
        match (greeted, target.silent_since) {
            (true, _) => target.silent_since = None,
            (false, Some(_)) => {}
            (false, None) => {
                target.silent_since = Some(started);
                tracing::info!(cluster = %cluster, primary = ip, "primary stopped answering the probe");
                let _ = self.trigger.unbounded_send(cluster);
            }
        }
    }
}

/// Whether the agent at `ip` says its server answers, in time.
async fn answers(agents: &reqwest::Client, ip: &str) -> bool {
    agents
        .get(format!("http://{ip}:{AGENT_PORT}{PATH_READYZ}"))
        .timeout(TIMEOUT)
        .send()
        .await
        .is_ok_and(|response| response.status().is_success())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster() -> ObjectRef<MySQLCluster> {
        ObjectRef::new("orders").within("shop")
    }

    #[test]
    fn silence_is_recorded_once_and_triggers_one_reconcile() {
        let (prober, mut triggered) = Prober::new(reqwest::Client::new());
        prober.watch(
            cluster(),
            Some("10.0.0.1".to_owned()),
            vec!["node-a1".to_owned()],
        );
        let at = Timestamp::UNIX_EPOCH;
        prober.record(cluster(), "10.0.0.1", false, at);
        prober.record(cluster(), "10.0.0.1", false, Timestamp::now());
        assert_eq!(prober.silent_since(&cluster()), Some(at));
        assert_eq!(triggered.try_recv().ok(), Some(cluster()));
        assert!(triggered.try_recv().is_err(), "one trigger per outage");
        prober.record(cluster(), "10.0.0.1", true, Timestamp::now());
        assert_eq!(prober.silent_since(&cluster()), None);
    }

    #[test]
    fn a_new_primary_starts_with_a_clean_record() {
        let (prober, _triggered) = Prober::new(reqwest::Client::new());
        prober.watch(cluster(), Some("10.0.0.1".to_owned()), Vec::new());
        prober.record(cluster(), "10.0.0.1", false, Timestamp::now());
        prober.watch(
            cluster(),
            Some("10.0.0.2".to_owned()),
            vec!["node-b1".to_owned()],
        );
        assert_eq!(prober.silent_since(&cluster()), None);
        assert_eq!(prober.clusters_on("node-b1"), vec![cluster()]);
        // A late answer about the old address changes nothing.
        prober.record(cluster(), "10.0.0.1", false, Timestamp::now());
        assert_eq!(prober.silent_since(&cluster()), None);
        prober.forget(&cluster());
        assert!(prober.clusters_on("node-b1").is_empty());
    }
}
