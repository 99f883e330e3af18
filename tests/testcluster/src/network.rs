//! The pod network: one bridge on the host, a network namespace per pod with
//! a veth on the bridge, and blackhole routes for the Service range so that no
//! packet meant for a ClusterIP (there is no kube-proxy) leaves the machine.
//! Pods get no default route: only the bridge's subnet is reachable.

use crate::command::{self, CommandError};
use crate::layout::{BRIDGE, BRIDGE_ADDR, NETNS_PREFIX, SERVICE_CIDR, VETH_PREFIX};

/// Why the network could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    /// An `ip` command failed.
    #[error("failed to configure the pod network: {0}")]
    Ip(#[from] CommandError),
}

/// The prefix length of the pod network (`10.244.0.0/16`).
const POD_PREFIX_LEN: u8 = 16;

/// The address of node `index` on the bridge (its InternalIP).
pub fn node_address(index: u8) -> String {
    format!("10.244.0.{}", 10 + u32::from(index))
}

/// Creates the bridge with the host's address, the nodes' addresses and the
/// Service blackhole.
pub async fn create_bridge(node_indexes: &[u8]) -> Result<(), NetworkError> {
    command::run("ip", &["link", "add", BRIDGE, "type", "bridge"]).await?;
    let addr = format!("{BRIDGE_ADDR}/{POD_PREFIX_LEN}");
    command::run("ip", &["addr", "add", &addr, "dev", BRIDGE]).await?;
    for index in node_indexes {
        add_node_address(*index).await?;
    }
    command::run("ip", &["link", "set", BRIDGE, "up"]).await?;
    command::run("ip", &["route", "replace", "blackhole", SERVICE_CIDR]).await?;
    Ok(())
}

/// Gives a node its address back (`node start`).
pub async fn add_node_address(index: u8) -> Result<(), NetworkError> {
    let addr = format!("{}/32", node_address(index));
    command::run("ip", &["addr", "replace", &addr, "dev", BRIDGE]).await?;
    Ok(())
}

/// Takes a node's address away (`node stop`: the machine is gone).
pub async fn remove_node_address(index: u8) {
    let addr = format!("{}/32", node_address(index));
    command::run_quiet("ip", &["addr", "del", &addr, "dev", BRIDGE]).await;
}

/// Removes the bridge and the host's blackhole route (idempotent).
pub async fn delete_bridge() {
    command::run_quiet("ip", &["link", "del", BRIDGE]).await;
    command::run_quiet("ip", &["route", "del", "blackhole", SERVICE_CIDR]).await;
}

/// The network of one pod.
#[derive(Debug, Clone)]
pub struct PodNetwork {
    /// The network namespace's name (`ebisu-<pod uid>`).
    pub netns: String,
    /// The host side of its veth.
    pub veth: String,
    /// The pod's address.
    pub ip: String,
}

impl PodNetwork {
    /// The names for a pod with this uid and address.
    pub fn new(uid: &str, ip: &str) -> Self {
        let short: String = uid
            .chars()
            .filter(char::is_ascii_hexdigit)
            .take(10)
            .collect();
        Self {
            netns: format!("{NETNS_PREFIX}{uid}"),
            veth: format!("{VETH_PREFIX}{short}"),
            ip: ip.to_owned(),
        }
    }

    /// Creates the namespace, the veth pair on the bridge, the address and the
    /// routes. A leftover of an earlier attempt is removed first.
    pub async fn create(&self) -> Result<(), NetworkError> {
        self.delete().await;
        let ns = self.netns.as_str();
        command::run("ip", &["netns", "add", ns]).await?;
        command::run(
            "ip",
            &[
                "link", "add", &self.veth, "type", "veth", "peer", "name", "eth0", "netns", ns,
            ],
        )
        .await?;
        command::run("ip", &["link", "set", &self.veth, "master", BRIDGE, "up"]).await?;
        let addr = format!("{}/{POD_PREFIX_LEN}", self.ip);
        command::run("ip", &["-n", ns, "addr", "add", &addr, "dev", "eth0"]).await?;
        command::run("ip", &["-n", ns, "link", "set", "lo", "up"]).await?;
        command::run("ip", &["-n", ns, "link", "set", "eth0", "up"]).await?;
        command::run("ip", &["-n", ns, "route", "add", "blackhole", SERVICE_CIDR]).await?;
        // The host may still map this address to an earlier pod's MAC.
        command::run_quiet("ip", &["neigh", "flush", "to", &self.ip, "dev", BRIDGE]).await;
        Ok(())
    }

    /// Cuts the pod off the bridge (`node stop`) or reconnects it.
    pub async fn set_link(&self, up: bool) {
        let state = if up { "up" } else { "down" };
        command::run_quiet("ip", &["link", "set", &self.veth, state]).await;
    }

    /// Removes the namespace and with it the veth pair (idempotent).
    pub async fn delete(&self) {
        command::run_quiet("ip", &["netns", "del", &self.netns]).await;
        command::run_quiet("ip", &["link", "del", &self.veth]).await;
    }
}

/// Every network namespace this crate may have created (for cleanup).
pub async fn leftover_namespaces() -> Vec<String> {
    let Ok(list) = command::run("ip", &["netns", "list"]).await else {
        return Vec::new();
    };
    list.lines()
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| name.starts_with(NETNS_PREFIX))
        .map(str::to_owned)
        .collect()
}

/// Pids of the processes still inside a network namespace.
pub async fn namespace_pids(netns: &str) -> Vec<u32> {
    let Ok(list) = command::run("ip", &["netns", "pids", netns]).await else {
        return Vec::new();
    };
    list.lines().filter_map(|l| l.trim().parse().ok()).collect()
}
