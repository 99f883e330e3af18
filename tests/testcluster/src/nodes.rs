//! The simulated machines as the control plane sees them: Node objects in
//! three zones, kept Ready by renewing their Leases in `kube-node-lease` and
//! refreshing the Ready condition, exactly what a kubelet's heartbeat does.
//! A stopped node simply stops heartbeating.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{
    DaemonEndpoint, Node, NodeAddress, NodeCondition, NodeDaemonEndpoints, NodeSpec as K8sNodeSpec,
    NodeStatus, NodeSystemInfo,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;
use tokio::sync::watch;

use crate::ec2::Ec2;
use crate::layout::NodeSpec;
use crate::network;

/// How often a running node renews its Lease (the controller-manager's grace
/// period is 12 s).
const LEASE_RENEW: Duration = Duration::from_secs(3);
/// Every how many renewals the Ready condition's heartbeat is refreshed.
const STATUS_EVERY: u32 = 10;
/// The Lease's duration.
const LEASE_SECONDS: i32 = 40;

/// The zone labels the scheduler and the EBS driver look at.
pub const ZONE_LABEL: &str = "topology.kubernetes.io/zone";
/// The EBS CSI driver's own zone label.
pub const EBS_ZONE_LABEL: &str = "topology.ebs.csi.aws.com/zone";
/// The hostname label.
pub const HOSTNAME_LABEL: &str = "kubernetes.io/hostname";

/// Why a node could not be registered or heartbeated.
#[derive(Debug, thiserror::Error)]
pub enum NodesError {
    /// An API call failed.
    #[error("failed to {action} node {node}: {source}")]
    Api {
        /// What we tried.
        action: &'static str,
        /// The node.
        node: String,
        /// The API error.
        source: kube::Error,
    },
}

/// The set of nodes that are stopped (`node stop`), shared by the heartbeat,
/// the agent and the control socket.
pub type StoppedNodes = watch::Sender<BTreeSet<String>>;

fn quantity(s: &str) -> Quantity {
    Quantity(s.to_owned())
}

fn now() -> Time {
    Time(Timestamp::now())
}

fn ready_conditions() -> Vec<NodeCondition> {
    let condition = |type_: &str, status: &str, reason: &str, message: &str| NodeCondition {
        type_: type_.to_owned(),
        status: status.to_owned(),
        reason: Some(reason.to_owned()),
        message: Some(message.to_owned()),
        last_heartbeat_time: Some(now()),
        last_transition_time: Some(now()),
    };
    vec![
        condition(
            "MemoryPressure",
            "False",
            "KubeletHasSufficientMemory",
            "kubelet has sufficient memory available",
        ),
        condition(
            "DiskPressure",
            "False",
            "KubeletHasNoDiskPressure",
            "kubelet has no disk pressure",
        ),
        condition(
            "PIDPressure",
            "False",
            "KubeletHasSufficientPID",
            "kubelet has sufficient PID available",
        ),
        condition(
            "Ready",
            "True",
            "KubeletReady",
            "ebisu testcluster agent is posting ready status",
        ),
    ]
}

fn node_status(spec: &NodeSpec) -> NodeStatus {
    let capacity = BTreeMap::from([
        ("cpu".to_owned(), quantity("4")),
        ("memory".to_owned(), quantity("16Gi")),
        ("pods".to_owned(), quantity("110")),
        ("ephemeral-storage".to_owned(), quantity("100Gi")),
    ]);
    NodeStatus {
        allocatable: Some(capacity.clone()),
        capacity: Some(capacity),
        conditions: Some(ready_conditions()),
        addresses: Some(vec![
            NodeAddress {
                type_: "InternalIP".to_owned(),
                address: network::node_address(spec.index),
            },
            NodeAddress {
                type_: "Hostname".to_owned(),
                address: spec.name.clone(),
            },
        ]),
        daemon_endpoints: Some(NodeDaemonEndpoints {
            kubelet_endpoint: Some(DaemonEndpoint { port: 10250 }),
        }),
        node_info: Some(NodeSystemInfo {
            architecture: "amd64".to_owned(),
            boot_id: String::new(),
            container_runtime_version: "ebisu-testcluster://0.1".to_owned(),
            kernel_version: String::new(),
            kube_proxy_version: String::new(),
            kubelet_version: "v1.34.4".to_owned(),
            machine_id: spec.name.clone(),
            operating_system: "linux".to_owned(),
            os_image: "ebisu testcluster".to_owned(),
            system_uuid: spec.name.clone(),
            ..NodeSystemInfo::default()
        }),
        ..NodeStatus::default()
    }
}

fn node_object(spec: &NodeSpec, instance: &str) -> Node {
    let labels = BTreeMap::from([
        (HOSTNAME_LABEL.to_owned(), spec.name.clone()),
        ("kubernetes.io/os".to_owned(), "linux".to_owned()),
        ("kubernetes.io/arch".to_owned(), "amd64".to_owned()),
        (
            "node.kubernetes.io/instance-type".to_owned(),
            "m5.large".to_owned(),
        ),
        (
            "topology.kubernetes.io/region".to_owned(),
            "us-east-1".to_owned(),
        ),
        (ZONE_LABEL.to_owned(), spec.zone.clone()),
        (EBS_ZONE_LABEL.to_owned(), spec.zone.clone()),
    ]);
    Node {
        metadata: ObjectMeta {
            name: Some(spec.name.clone()),
            labels: Some(labels),
            ..ObjectMeta::default()
        },
        spec: Some(K8sNodeSpec {
            pod_cidr: Some(format!("10.244.{}.0/24", u32::from(spec.index) + 1)),
            provider_id: Some(format!("aws:///{}/{instance}", spec.zone)),
            ..K8sNodeSpec::default()
        }),
        status: Some(node_status(spec)),
    }
}

/// Creates the Node objects (status included, `spec.providerID` naming the
/// node's EC2 instance) and their Leases.
pub async fn register(client: &Client, nodes: &[NodeSpec], ec2: &Ec2) -> Result<(), NodesError> {
    let api: Api<Node> = Api::all(client.clone());
    for spec in nodes {
        let err = |action| {
            move |source| NodesError::Api {
                action,
                node: spec.name.clone(),
                source,
            }
        };
        let instance = ec2.instance(&spec.name).unwrap_or_default();
        api.create(&PostParams::default(), &node_object(spec, instance))
            .await
            .map_err(err("create"))?;
        post_ready(client, spec).await?;
        renew_lease(client, spec).await?;
    }
    Ok(())
}

/// Writes the node's status with a fresh Ready heartbeat.
pub async fn post_ready(client: &Client, spec: &NodeSpec) -> Result<(), NodesError> {
    let api: Api<Node> = Api::all(client.clone());
    let patch = json!({ "status": node_status(spec) });
    api.patch_status(&spec.name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(|source| NodesError::Api {
            action: "update the status of",
            node: spec.name.clone(),
            source,
        })?;
    Ok(())
}

/// Renews (or creates) the node's Lease.
pub async fn renew_lease(client: &Client, spec: &NodeSpec) -> Result<(), NodesError> {
    let api: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let err = |action| {
        move |source| NodesError::Api {
            action,
            node: spec.name.clone(),
            source,
        }
    };
    let patch = json!({ "spec": { "renewTime": MicroTime(Timestamp::now()) } });
    match api
        .patch(&spec.name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(spec.name.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(spec.name.clone()),
                    lease_duration_seconds: Some(LEASE_SECONDS),
                    renew_time: Some(MicroTime(Timestamp::now())),
                    ..LeaseSpec::default()
                }),
            };
            api.create(&PostParams::default(), &lease)
                .await
                .map_err(err("create the lease of"))?;
            Ok(())
        }
        Err(source) => Err(err("renew the lease of")(source)),
    }
}

/// Heartbeats one node until the process ends; pauses while it is stopped and
/// posts Ready at once when it is started again.
pub async fn heartbeat(client: Client, spec: NodeSpec, stopped: watch::Receiver<BTreeSet<String>>) {
    let mut ticks: u32 = 0;
    let mut was_stopped = false;
    loop {
        let is_stopped = stopped.borrow().contains(&spec.name);
        if !is_stopped {
            if let Err(error) = renew_lease(&client, &spec).await {
                tracing::warn!(%error, "heartbeat");
            }
            if (was_stopped || ticks.is_multiple_of(STATUS_EVERY))
                && let Err(error) = post_ready(&client, &spec).await
            {
                tracing::warn!(%error, "heartbeat");
            }
            ticks = ticks.wrapping_add(1);
        }
        was_stopped = is_stopped;
        tokio::time::sleep(LEASE_RENEW).await;
    }
}
