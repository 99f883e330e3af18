//! Reading every server of a cluster (over SQL as the operator user, at the
//! pod's IP, with the reader the sidecar uses too) and its agent's
//! `/status`, together with the pod and node facts decisions take.
//! Replicas are read together, the labelled primary after them, so a
//! replica can never seem to hold a transaction the primary committed after
//! it was read.

use std::{collections::BTreeMap, time::Duration};

use ebisu_api::{
    InstanceRole,
    agent::AgentStatus,
    names::{self, LABEL_READS, LABEL_ROLE, MYSQL_PORT, READS_SERVED, ROLE_PRIMARY, ROLE_REPLICA},
};
use ebisu_mysql::{Flavor, driver::ServerRead};
use k8s_openapi::api::core::v1::{Node, Pod};
use mysql_async::{Conn, OptsBuilder};
use tracing::debug;

use super::state::{Answer, NodeFacts, Replication, ServerState};

/// How long connecting may take before a server counts as silent this
/// pass. Short: inside a cluster a connection takes milliseconds, and a
/// silent primary is what failover waits on.
pub const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
/// How long a server or agent may take to answer once connected: a hung
/// pod must not stall the reconcile of the others.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(3);

/// Taints that say a node is about to be emptied (a drain, the cluster
/// autoscaler, Karpenter); `spec.unschedulable` says it too.
pub const DRAIN_TAINTS: &[&str] = &[
    "node.kubernetes.io/unschedulable",
    "ToBeDeletedByClusterAutoscaler",
    "karpenter.sh/disrupted",
    "karpenter.sh/disruption",
];

/// Why a server could not be read.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The pod has no IP yet.
    #[error("failed to reach {pod}: it has no address yet")]
    NoAddress {
        /// The pod.
        pod: String,
    },
    /// Nothing answered (connection refused, reset or no route).
    #[error("failed to reach {pod}: {source}")]
    Unreachable {
        /// The pod.
        pod: String,
        /// The driver's error.
        #[source]
        source: mysql_async::Error,
    },
    /// It did not answer in time.
    #[error("failed to {action} on {pod}: timed out")]
    TimedOut {
        /// The pod.
        pod: String,
        /// What was being done.
        action: &'static str,
    },
    /// The server answered with an error (authentication, too many
    /// connections, a query it refused).
    #[error("failed to read {pod}: {source}")]
    Refused {
        /// The pod.
        pod: String,
        /// What went wrong.
        #[source]
        source: ebisu_mysql::driver::ReadError,
    },
}

impl Error {
    /// Whether the server may be gone (as opposed to up and refusing).
    pub fn is_silence(&self) -> bool {
        matches!(
            self,
            Self::NoAddress { .. } | Self::Unreachable { .. } | Self::TimedOut { .. }
        )
    }
}

/// The operator's account on the servers.
#[derive(Clone)]
pub struct OperatorAccount {
    /// User name.
    pub user: String,
    /// Password (never logged).
    pub password: String,
}

impl std::fmt::Debug for OperatorAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OperatorAccount")
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

/// A server's state plus what talking to it needs later.
#[derive(Debug, Clone)]
pub struct Observed {
    /// The state decisions take.
    pub state: ServerState,
    /// Its flavor, when it answered.
    pub flavor: Option<Flavor>,
    /// Its pod IP.
    pub ip: Option<String>,
    /// Seconds behind its source.
    pub lag_seconds: Option<u64>,
}

/// The pod label the StatefulSet controller sets to the revision a pod
/// was made from.
pub const REVISION_LABEL: &str = "controller-revision-hash";

/// Whether `pod` was made from another revision than `update_revision`
/// (unknown revisions are not: nothing is restarted on a guess).
pub fn outdated(pod: &Pod, update_revision: Option<&str>) -> bool {
    let revision = pod
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(REVISION_LABEL));
    matches!((revision, update_revision), (Some(rev), Some(update)) if rev != update)
}

/// Reads every pod's server; `skip` lists pods known to be silent in this
/// reconcile (they are not waited for again).
pub async fn servers(
    cluster: &str,
    namespace: &str,
    pods: &[Pod],
    nodes: &BTreeMap<String, Node>,
    account: &OperatorAccount,
    agents: &reqwest::Client,
    skip: &[String],
) -> Vec<Observed> {
    let (primaries, replicas): (Vec<&Pod>, Vec<&Pod>) = pods
        .iter()
        .partition(|p| role_label(p) == Some(InstanceRole::Primary));
    let read = |pod| {
        let skipped = skip.iter().any(|s| Some(s) == pod_name(pod));
        one(cluster, namespace, pod, nodes, account, agents, skipped)
    };
    let mut out = futures::future::join_all(replicas.into_iter().map(read)).await;
    out.extend(futures::future::join_all(primaries.into_iter().map(read)).await);
    out
}

async fn one(
    cluster: &str,
    namespace: &str,
    pod: &Pod,
    nodes: &BTreeMap<String, Node>,
    account: &OperatorAccount,
    agents: &reqwest::Client,
    skipped: bool,
) -> Observed {
    let name = pod.metadata.name.clone().unwrap_or_default();
    let ordinal = names::ordinal_of(&name).unwrap_or_default();
    let ip = pod.status.as_ref().and_then(|s| s.pod_ip.clone());
    let mut state = ServerState {
        pod: name.clone(),
        host: names::pod_host(cluster, namespace, ordinal),
        role_label: role_label(pod),
        reads_label: pod
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(LABEL_READS))
            .is_some_and(|v| v == READS_SERVED),
        pod_ready: pod_ready(pod),
        terminating: pod.metadata.deletion_timestamp.is_some(),
        node: pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.as_deref())
            .map(|node| node_facts(node, nodes.get(node))),
        answer: Answer::Silent,
        read_only: true,
        gtid: None,
        version: None,
        upgrade_error: None,
        replication: None,
        semi_sync_source: false,
        semi_sync_active: false,
        semi_sync_replica: false,
        semi_sync_timeout_ms: None,
        // Set by the pass, which knows the StatefulSet.
        outdated: false,
        // Unknown counts as pending: never race an agent applying a seed.
        seed_pending: true,
    };
    let mut observed = Observed {
        state,
        flavor: None,
        ip: ip.clone(),
        lag_seconds: None,
    };
    if skipped {
        return observed;
    }
    let Some(ip) = ip else { return observed };
    let (agent, read) = tokio::join!(agent_status(agents, &ip), read(&name, &ip, account));
    state = observed.state;
    if let Some(agent) = &agent {
        state.seed_pending = agent.seed_pending;
        state.upgrade_error.clone_from(&agent.upgrade_error);
    }
    match read {
        Ok(read) => {
            state.answer = Answer::Answered;
            state.read_only = read.read_only;
            state.gtid = Some(read.gtid_executed);
            state.version = Some(read.version);
            observed.lag_seconds = read.replica.as_ref().and_then(|r| r.seconds_behind);
            state.replication = read.replica.map(|r| Replication {
                io_running: r.receiver_running(),
                io_errno: r.last_io_errno,
                sql_running: r.sql_running,
                sql_error: r.last_sql_error.clone(),
                lag_seconds: r.seconds_behind,
                received: Some(r.received_gtid.clone()),
                source_host: r.source_host,
            });
            state.semi_sync_source = read.semi_sync.source_enabled;
            state.semi_sync_active = read.semi_sync.source_active;
            state.semi_sync_timeout_ms = read.semi_sync.timeout_ms;
            state.semi_sync_replica = read.semi_sync.replica_enabled;
            observed.flavor = Some(read.flavor);
        }
        Err(error) => {
            // An agent that reports its server up contradicts silence: the
            // server lives, the operator just cannot use it this pass.
            let up = agent.as_ref().is_some_and(|a| a.server_up);
            state.answer = if error.is_silence() && !up {
                Answer::Silent
            } else {
                Answer::Refused
            };
            debug!(pod = %name, %error, "server did not answer");
        }
    }
    observed.state = state;
    observed
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
    let ready = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
    NodeFacts {
        name: name.to_owned(),
        draining: cordoned || tainted,
        ready,
    }
}

/// What the pod's agent says, when it answers.
async fn agent_status(agents: &reqwest::Client, ip: &str) -> Option<AgentStatus> {
    let url = format!(
        "http://{ip}:{}{}",
        names::AGENT_PORT,
        ebisu_api::agent::PATH_STATUS
    );
    let bytes = agents
        .get(url)
        .timeout(ANSWER_TIMEOUT)
        .send()
        .await
        .ok()?
        .error_for_status()
        .ok()?
        .bytes()
        .await
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

fn pod_name(pod: &Pod) -> Option<&String> {
    pod.metadata.name.as_ref()
}

fn role_label(pod: &Pod) -> Option<InstanceRole> {
    match pod.metadata.labels.as_ref()?.get(LABEL_ROLE)?.as_str() {
        ROLE_PRIMARY => Some(InstanceRole::Primary),
        ROLE_REPLICA => Some(InstanceRole::Replica),
        _ => None,
    }
}

fn pod_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Connects to a server as the operator.
pub async fn connect(pod: &str, ip: &str, account: &OperatorAccount) -> Result<Conn, Error> {
    let opts = OptsBuilder::default()
        .ip_or_hostname(ip.to_owned())
        .tcp_port(MYSQL_PORT)
        .user(Some(account.user.clone()))
        .pass(Some(account.password.clone()))
        .prefer_socket(false);
    match tokio::time::timeout(CONNECT_TIMEOUT, Conn::new(opts)).await {
        Err(_) => Err(Error::TimedOut {
            pod: pod.to_owned(),
            action: "connect",
        }),
        Ok(Err(source @ (mysql_async::Error::Io(_) | mysql_async::Error::Driver(_)))) => {
            Err(Error::Unreachable {
                pod: pod.to_owned(),
                source,
            })
        }
        Ok(Err(source)) => Err(Error::Refused {
            pod: pod.to_owned(),
            source: ebisu_mysql::driver::ReadError::Query {
                action: "connect",
                source,
            },
        }),
        Ok(Ok(conn)) => Ok(conn),
    }
}

async fn read(pod: &str, ip: &str, account: &OperatorAccount) -> Result<ServerRead, Error> {
    let mut conn = connect(pod, ip, account).await?;
    let read = tokio::time::timeout(ANSWER_TIMEOUT, ebisu_mysql::driver::read_server(&mut conn))
        .await
        .map_err(|_| Error::TimedOut {
            pod: pod.to_owned(),
            action: "read the server",
        })?
        .map_err(|source| Error::Refused {
            pod: pod.to_owned(),
            source,
        })?;
    let _ = conn.disconnect().await;
    Ok(read)
}
