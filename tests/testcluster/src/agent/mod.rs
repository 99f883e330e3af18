//! The node agent (our kubelet) for every simulated node: it runs each pod
//! bound to one of them as processes in the pod's own network, UTS and mount
//! namespaces, keeps the cluster hosts files current, and freezes a node's
//! pods when the node is stopped. It never schedules: the scheduler does.

pub mod container;
pub mod env;
pub mod hosts;
pub mod images;
pub mod launch;
pub mod pod;
pub mod probe;
pub mod status;
pub mod volumes;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Client, Resource, ResourceExt};
use tokio::sync::watch;

use aws_sdk_ec2::types::InstanceStateName;

use crate::command;
use crate::ec2::Ec2;
use crate::layout::{Layout, NodeSpec};
use crate::network;
use crate::nodes::StoppedNodes;
use crate::stores::Stores;
use pod::{Deletion, PodHandle, PodSlots};
use volumes::Attachments;

/// The agent's shared state.
pub struct Agent {
    /// API access.
    pub client: Client,
    /// Caches.
    pub stores: Stores,
    /// The cluster's files.
    pub layout: Layout,
    /// The simulated nodes.
    pub nodes: Vec<NodeSpec>,
    /// Which nodes are stopped.
    pub stopped: StoppedNodes,
    /// Volume attachments.
    pub attachments: Attachments,
    /// The nodes' instances and volumes.
    pub ec2: Ec2,
    /// Nodes whose instance was stopped at EC2 (powered off, not just
    /// unreachable): their processes never run again.
    powered_off: Mutex<BTreeSet<String>>,
    /// Held across a power change and across the look at EC2 that decides
    /// one, so that a look begun before `node start` never powers the node
    /// off again with the state it read before the start.
    power: tokio::sync::Mutex<()>,
    pods: Mutex<HashMap<String, PodHandle>>,
    /// Pod uid -> address.
    ips: Mutex<BTreeMap<String, String>>,
    /// Per node subnet, the last host number handed out.
    last_ip: Mutex<BTreeMap<u8, u8>>,
    recorder: Recorder,
}

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent")
            .field("nodes", &self.nodes)
            .finish_non_exhaustive()
    }
}

impl Agent {
    /// A new agent.
    pub fn new(
        client: Client,
        stores: Stores,
        layout: Layout,
        nodes: Vec<NodeSpec>,
        stopped: StoppedNodes,
        ec2: Ec2,
    ) -> Arc<Self> {
        let recorder = Recorder::new(
            client.clone(),
            Reporter {
                controller: "kubelet".to_owned(),
                instance: None,
            },
        );
        Arc::new(Self {
            client,
            stores,
            layout,
            nodes,
            stopped,
            attachments: Attachments::default(),
            ec2,
            powered_off: Mutex::new(BTreeSet::new()),
            power: tokio::sync::Mutex::new(()),
            pods: Mutex::new(HashMap::new()),
            ips: Mutex::new(BTreeMap::new()),
            last_ip: Mutex::new(BTreeMap::new()),
            recorder,
        })
    }

    /// Whether `node` is stopped.
    pub fn is_stopped(&self, node: &str) -> bool {
        self.stopped.borrow().contains(node)
    }

    /// Publishes an event about `pod`.
    pub async fn event(&self, pod: &Pod, node: &str, type_: EventType, reason: &str, note: String) {
        let event = Event {
            type_,
            reason: reason.to_owned(),
            note: Some(format!("{note} (node {node})")),
            action: reason.to_owned(),
            secondary: None,
        };
        if let Err(error) = self.recorder.publish(&event, &pod.object_ref(&())).await {
            tracing::debug!(%error, "event");
        }
    }

    /// A free address in the node's /24 for the pod.
    pub fn allocate_ip(&self, node: &NodeSpec, uid: &str) -> Option<String> {
        let mut ips = self.ips.lock().ok()?;
        if let Some(ip) = ips.get(uid) {
            return Some(ip.clone());
        }
        let used: BTreeSet<&String> = ips.values().collect();
        let subnet = u32::from(node.index) + 1;
        // Round robin, not lowest-free: a reused address would meet stale ARP
        // entries (the old pod's MAC) in the host and in other pods.
        let mut last = self.last_ip.lock().ok()?;
        let start = last.get(&node.index).copied().unwrap_or(1);
        let host = (1..=253u16)
            .map(|step| u8::try_from((u16::from(start) - 1 + step) % 253 + 2).unwrap_or(2))
            .find(|host| !used.contains(&format!("10.244.{subnet}.{host}")))?;
        last.insert(node.index, host);
        let ip = format!("10.244.{subnet}.{host}");
        ips.insert(uid.to_owned(), ip.clone());
        Some(ip)
    }

    /// Frees a pod's address.
    pub fn release_ip(&self, uid: &str) {
        if let Ok(mut ips) = self.ips.lock() {
            ips.remove(uid);
        }
    }

    fn node(&self, name: &str) -> Option<&NodeSpec> {
        self.nodes.iter().find(|n| n.name == name)
    }

    /// `node stop`: heartbeats stop, the node's pods are frozen (SIGSTOP) and
    /// cut off the bridge, its address disappears.
    pub async fn stop_node(&self, name: &str) -> bool {
        let Some(node) = self.node(name).cloned() else {
            return false;
        };
        self.stopped.send_modify(|s| {
            s.insert(name.to_owned());
        });
        for (network, pids) in self.node_pods(name) {
            for pid in pids {
                command::signal_group(pid, "STOP").await;
            }
            if let Some(network) = network {
                network.set_link(false).await;
            }
        }
        network::remove_node_address(node.index).await;
        true
    }

    /// `node start`: the reverse of [`Agent::stop_node`]. The pods' processes
    /// run a moment before their network is back, as on a node whose
    /// partition heals (its processes were never frozen by the network):
    /// a returning primary's agent fences its server on waking, locally,
    /// before a client can reach it. (A paused machine that resumes with
    /// its network live gives clients the agent's first tick, a few ms.)
    pub async fn start_node(&self, name: &str) -> bool {
        let Some(node) = self.node(name).cloned() else {
            return false;
        };
        if let Err(error) = network::add_node_address(node.index).await {
            tracing::warn!(%error, "node start");
        }
        let pods = self.node_pods(name);
        for (_, pids) in &pods {
            for pid in pids {
                command::signal_group(*pid, "CONT").await;
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        for (network, _) in pods {
            if let Some(network) = network {
                network.set_link(true).await;
            }
        }
        self.stopped.send_modify(|s| {
            s.remove(name);
        });
        true
    }

    /// Follows the nodes' instances at EC2: one stopped there (fenced) is
    /// powered off here, and one started again boots with no old process.
    pub async fn follow_instances(self: Arc<Self>) {
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let _power = self.power.lock().await;
            let states = match self.ec2.instance_states().await {
                Ok(states) => states,
                Err(error) => {
                    tracing::warn!(%error, "following instances");
                    continue;
                }
            };
            for (node, state) in states {
                let off = self.powered_off.lock().is_ok_and(|p| p.contains(&node));
                let running = matches!(
                    state,
                    InstanceStateName::Running | InstanceStateName::Pending
                );
                if !running && !off {
                    tracing::info!(%node, ?state, "instance stopped at EC2: powering the node off");
                    if let Ok(mut p) = self.powered_off.lock() {
                        p.insert(node.clone());
                    }
                    self.stop_node(&node).await;
                    // Powered off: nothing it ran holds a file or a lock any
                    // more (a frozen server would keep InnoDB's locks on a
                    // volume its successor mounts).
                    self.kill_node_processes(&node).await;
                } else if running && off {
                    tracing::info!(%node, "instance running again: booting the node");
                    self.boot_node(&node).await;
                }
            }
        }
    }

    /// `node start`: a stopped node resumes; a powered-off one is started at
    /// EC2 and boots.
    pub async fn power_on_node(&self, name: &str) -> bool {
        let _power = self.power.lock().await;
        if self.powered_off.lock().is_ok_and(|p| p.contains(name)) {
            if let Err(error) = self.ec2.start_instance(name).await {
                tracing::warn!(%error, "node start");
                return false;
            }
            self.boot_node(name).await;
            return true;
        }
        self.start_node(name).await
    }

    /// A powered-off node comes back: what ran on it is gone (killed while
    /// frozen, so it never runs again), then it rejoins like a restarted
    /// kubelet and starts its pods afresh.
    async fn boot_node(&self, name: &str) {
        self.kill_node_processes(name).await;
        // Pods deleted while it was off are never started again: stop their
        // tasks before the node resumes, so no container of theirs restarts
        // on a volume that now serves another node.
        let live: BTreeSet<String> = self
            .stores
            .pods
            .state()
            .iter()
            .filter_map(|p| p.uid())
            .collect();
        if let Ok(handles) = self.pods.lock() {
            for (uid, handle) in handles.iter() {
                if handle.node == name && !live.contains(uid) {
                    let _ = handle.deleting.send(Some(Deletion {
                        grace: Duration::ZERO,
                        delete_object: false,
                    }));
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        if let Ok(mut p) = self.powered_off.lock() {
            p.remove(name);
        }
        self.start_node(name).await;
    }

    async fn kill_node_processes(&self, name: &str) {
        for (_, pids) in self.node_pods(name) {
            for pid in pids {
                command::signal_group(pid, "KILL").await;
            }
        }
    }

    fn node_pods(&self, name: &str) -> Vec<(Option<network::PodNetwork>, Vec<u32>)> {
        let Ok(pods) = self.pods.lock() else {
            return Vec::new();
        };
        pods.values()
            .filter(|h| h.node == name)
            .map(|h| {
                let network = h.slots.network.lock().ok().and_then(|n| n.clone());
                let pids = h
                    .slots
                    .runs
                    .lock()
                    .map(|runs| {
                        runs.iter()
                            .filter_map(|r| container::snapshot(r).pid)
                            .collect()
                    })
                    .unwrap_or_default();
                (network, pids)
            })
            .collect()
    }

    /// The agent's loop: start, stop and forget pods as the cache says.
    pub async fn run(self: Arc<Self>) {
        tokio::spawn(self.clone().follow_names());
        loop {
            self.sync_pods().await;
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Rewrites the hosts files as soon as a pod or an endpoint changes, as
    /// kube-proxy and cluster DNS follow their watches.
    async fn follow_names(self: Arc<Self>) {
        loop {
            if let Err(error) = hosts::sync(&self.layout, &self.stores) {
                tracing::warn!(%error, "hosts");
            }
            tokio::select! {
                () = self.stores.names_changed.notified() => {}
                () = tokio::time::sleep(Duration::from_millis(500)) => {}
            }
        }
    }

    async fn sync_pods(self: &Arc<Self>) {
        let pods = self.stores.pods.state();
        let mut seen = BTreeSet::new();
        let mut final_deletes = Vec::new();
        {
            let Ok(mut handles) = self.pods.lock() else {
                return;
            };
            for pod in &pods {
                let Some(node_name) = pod.spec.as_ref().and_then(|s| s.node_name.clone()) else {
                    continue;
                };
                let Some(node) = self.node(&node_name).cloned() else {
                    continue;
                };
                let uid = pod.uid().unwrap_or_default();
                seen.insert(uid.clone());
                if self.is_stopped(&node_name) {
                    continue;
                }
                let deleting = pod.metadata.deletion_timestamp.is_some();
                match handles.get(&uid) {
                    Some(handle) if deleting => {
                        if handle.deleting.borrow().is_none() {
                            let grace = pod
                                .metadata
                                .deletion_grace_period_seconds
                                .unwrap_or(0)
                                .max(0);
                            let _ = handle.deleting.send(Some(Deletion {
                                grace: Duration::from_secs(u64::try_from(grace).unwrap_or(0)),
                                delete_object: true,
                            }));
                        }
                    }
                    Some(_) => {}
                    None if deleting => final_deletes.push((**pod).clone()),
                    None => {
                        let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
                        if matches!(phase, Some("Succeeded" | "Failed")) {
                            continue;
                        }
                        let (tx, rx) = watch::channel(None);
                        let slots = PodSlots::default();
                        handles.insert(
                            uid.clone(),
                            PodHandle {
                                node: node_name.clone(),
                                deleting: tx,
                                slots: slots.clone(),
                            },
                        );
                        tracing::info!(pod = %pod.name_any(), node = %node_name, "starting pod");
                        let agent = self.clone();
                        let pod = (**pod).clone();
                        tokio::spawn(async move {
                            pod::run(agent.clone(), pod, node, rx, slots).await;
                            if let Ok(mut handles) = agent.pods.lock() {
                                handles.remove(&uid);
                            }
                        });
                    }
                }
            }
            // Pods removed without us (force deletion): stop them at once.
            for (uid, handle) in handles.iter() {
                if !seen.contains(uid)
                    && !self.is_stopped(&handle.node)
                    && handle.deleting.borrow().is_none()
                {
                    let _ = handle.deleting.send(Some(Deletion {
                        grace: Duration::ZERO,
                        delete_object: false,
                    }));
                }
            }
        }
        // Deleted before we ever started them: nothing to clean up.
        for pod in final_deletes {
            pod::delete_finally(&self.client, &pod).await;
        }
    }
}
