//! Where a test cluster keeps its files and which fixed names and addresses it
//! uses on the machine (bridge, subnets, ports, nodes and their zones).

use std::path::{Path, PathBuf};

/// The default state directory of `testcluster up`.
pub const DEFAULT_STATE_DIR: &str = "/tmp/ebisu-testcluster";
/// A file that marks a directory as a test cluster's state, so that cleanup
/// never removes a directory it did not create.
const MARKER: &str = ".ebisu-testcluster";

/// Names the state directory of the cluster that owns the machine's bridge,
/// subnet and ports: there can be one cluster per machine.
pub const OWNER_FILE: &str = "/run/ebisu-testcluster.owner";

/// The bridge every pod's veth is attached to.
pub const BRIDGE: &str = "ebisu0";
/// The host side of the bridge: the apiserver listens here, so pods reach it.
pub const BRIDGE_ADDR: &str = "10.244.0.1";
/// The pod network; node `i` hands out addresses from `10.244.(i+1).0/24`.
pub const POD_CIDR: &str = "10.244.0.0/16";
/// The Service range: blackholed, as there is no kube-proxy.
pub const SERVICE_CIDR: &str = "10.96.0.0/16";
/// Prefix of every network namespace and veth the cluster creates.
pub const NETNS_PREFIX: &str = "ebisu-";
/// Prefix of the host side of the pods' veth pairs.
pub const VETH_PREFIX: &str = "veb";

/// The apiserver's port, on [`BRIDGE_ADDR`].
pub const APISERVER_PORT: u16 = 6443;
/// The local EC2 API's port, on [`BRIDGE_ADDR`] (the operator's pod calls it).
pub const EC2_PORT: u16 = 24566;
/// moto's own port on loopback, behind the snapshot proxy on [`EC2_PORT`].
pub const MOTO_PORT: u16 = 24567;
/// The local OCI registry's port on loopback.
pub const REGISTRY_PORT: u16 = 25000;
/// etcd's client port on loopback.
pub const ETCD_CLIENT_PORT: u16 = 23790;
/// etcd's peer port on loopback.
pub const ETCD_PEER_PORT: u16 = 23800;
/// The controller-manager's secure port on loopback.
pub const CONTROLLER_MANAGER_PORT: u16 = 20257;
/// The scheduler's secure port on loopback.
pub const SCHEDULER_PORT: u16 = 20259;

/// The zone names, as on EKS in us-east-1.
pub const ZONES: [&str; 3] = ["us-east-1a", "us-east-1b", "us-east-1c"];

/// One simulated machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeSpec {
    /// The Node's name (also its hostname label).
    pub name: String,
    /// Its availability zone.
    pub zone: String,
    /// Its index: pod addresses come from `10.244.(index+1).0/24`.
    pub index: u8,
}

/// Six nodes, two per zone: a drained node's pods always have a sibling in
/// their zone, and cordoning both shows a zone with no room left.
pub fn nodes() -> Vec<NodeSpec> {
    let mut nodes = Vec::new();
    for (z, zone) in ZONES.iter().enumerate() {
        for n in 1..=2u8 {
            let index = u8::try_from(z).unwrap_or(0) * 2 + (n - 1);
            let letter = zone.chars().last().unwrap_or('x');
            nodes.push(NodeSpec {
                name: format!("node-{letter}{n}"),
                zone: (*zone).to_owned(),
                index,
            });
        }
    }
    nodes
}

/// The files of one cluster under its state directory.
#[derive(Debug, Clone)]
pub struct Layout {
    root: PathBuf,
}

impl Layout {
    /// The layout under `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The state directory itself.
    pub fn root(&self) -> &Path {
        &self.root
    }
    /// The marker file saying the directory is ours.
    pub fn marker(&self) -> PathBuf {
        self.root.join(MARKER)
    }
    /// The admin kubeconfig.
    pub fn kubeconfig(&self) -> PathBuf {
        self.root.join("kubeconfig")
    }
    /// Keys and certificates.
    pub fn pki(&self) -> PathBuf {
        self.root.join("pki")
    }
    /// Control plane and supervisor logs.
    pub fn logs(&self) -> PathBuf {
        self.root.join("logs")
    }
    /// Pid files of the daemons, read by `down` after a crash.
    pub fn pids(&self) -> PathBuf {
        self.root.join("pids")
    }
    /// etcd's data.
    pub fn etcd_data(&self) -> PathBuf {
        self.root.join("etcd")
    }
    /// The supervisor's control socket (`node stop/start`).
    pub fn control_socket(&self) -> PathBuf {
        self.root.join("control.sock")
    }
    /// Written by the supervisor once the cluster is usable (or failed).
    pub fn ready_file(&self) -> PathBuf {
        self.root.join("ready")
    }
    /// One directory per volume, named after its volume id.
    pub fn volumes(&self) -> PathBuf {
        self.root.join("volumes")
    }
    /// One directory per EBS snapshot (`snap-...`): the content of its
    /// volume when it was taken.
    pub fn snapshots(&self) -> PathBuf {
        self.root.join("snapshots")
    }
    /// One directory per pod (`<namespace>_<name>_<uid>`).
    pub fn pods(&self) -> PathBuf {
        self.root.join("pods")
    }
    /// The local registry's blobs.
    pub fn registry(&self) -> PathBuf {
        self.root.join("registry")
    }
    /// Images the nodes pulled, unpacked, one directory per manifest digest.
    pub fn images(&self) -> PathBuf {
        self.root.join("images")
    }
    /// The cluster hosts file of one namespace.
    pub fn hosts_file(&self, namespace: &str) -> PathBuf {
        self.root.join("hosts").join(namespace)
    }
    /// The resolv.conf every pod sees (no DNS: names come from the hosts file).
    pub fn resolv_conf(&self) -> PathBuf {
        self.root.join("resolv.conf")
    }
    /// Mount points created on the host's file system (removed by `down`).
    pub fn created_mount_points(&self) -> PathBuf {
        self.root.join("created-mount-points")
    }
}

/// The log file of a container of a running pod.
pub fn log_file(
    layout: &Layout,
    namespace: &str,
    pod: &str,
    container: Option<&str>,
) -> Result<PathBuf, String> {
    let prefix = format!("{namespace}_{pod}_");
    let dir = std::fs::read_dir(layout.pods())
        .map_err(|e| e.to_string())?
        .flatten()
        .find(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .ok_or_else(|| format!("pod {namespace}/{pod} is not running on this cluster"))?
        .path()
        .join("logs");
    if let Some(container) = container {
        let file = dir.join(format!("{container}.log"));
        return if file.exists() {
            Ok(file)
        } else {
            Err(format!(
                "container {container} of {namespace}/{pod} has no log yet"
            ))
        };
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map_err(|e| e.to_string())?
        .flatten()
        .map(|e| e.path())
        .collect();
    files.sort();
    match files.as_slice() {
        [one] => Ok(one.clone()),
        [] => Err(format!("{namespace}/{pod} has no container logs yet")),
        many => Err(format!(
            "{namespace}/{pod} has several containers, choose one with -c: {}",
            many.iter()
                .filter_map(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

/// A path inside the workspace this crate was built from.
pub fn workspace_path(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn six_nodes_two_per_zone_with_distinct_indexes() {
        let nodes = nodes();
        assert_eq!(nodes.len(), 6);
        for zone in ZONES {
            assert_eq!(nodes.iter().filter(|n| n.zone == zone).count(), 2, "{zone}");
        }
        let mut indexes: Vec<u8> = nodes.iter().map(|n| n.index).collect();
        indexes.dedup();
        assert_eq!(indexes, [0, 1, 2, 3, 4, 5]);
        assert_eq!(nodes[0].name, "node-a1");
    }
}
