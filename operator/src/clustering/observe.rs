//! Reading every server of a cluster (over SQL as the operator user, at the
//! pod's IP, with the reader the sidecar uses too) and its agent's
//! `/status`, together with the pod and node facts decisions take.
//! Replicas are read together, the labelled primary after them, so a
//! replica can never seem to hold a transaction the primary committed after
//! it was read.

use std::time::Duration;

use ebisu_api::{InstanceRole, agent::AgentStatus, names};
use ebisu_mysql::{Flavor, driver::ServerRead};
use k8s_openapi::api::core::v1::Pod;
use mysql_async::Conn;
use tracing::debug;

use crate::model::{
    Answer, ClusterObjects, OperatorAccount, Replication, ServerState,
    objects::{self, node_facts, pod_role},
};

/// How long connecting may take before a server counts as silent this
/// pass. Short: inside a cluster a connection takes milliseconds, and a
/// silent primary is what failover waits on.
pub const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
/// How long a server may take to answer once connected: a hung pod must
/// not stall the reconcile of the others.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(3);
/// How long an agent may take to answer `/status` (it answers within a
/// second even when its server is frozen): a frozen pod must not stall a
/// failover's look at the others.
const AGENT_TIMEOUT: Duration = Duration::from_millis(1500);
/// How long a server found silent earlier in the reconcile is waited for
/// on a later look: inside a cluster a server that is up answers in a few
/// milliseconds.
pub const QUICK_LOOK: Duration = Duration::from_millis(150);

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

/// A server's state plus what talking to it needs later.
#[derive(Debug, Clone)]
pub struct ObservedServer {
    /// The state decisions take.
    pub state: ServerState,
    /// Its flavor, when it answered.
    pub flavor: Option<Flavor>,
    /// Its pod IP.
    pub ip: Option<String>,
}

/// Reads every pod's server; `quick` lists pods found silent earlier in
/// this reconcile: they get a glance of [`QUICK_LOOK`] (a killed server
/// that restarted answers within it; a frozen or cut-off one is not waited
/// for again).
pub async fn servers(
    cluster: &str,
    namespace: &str,
    objects: &ClusterObjects,
    account: &OperatorAccount,
    agents: &reqwest::Client,
    quick: &[String],
) -> Vec<ObservedServer> {
    let (primaries, replicas): (Vec<&Pod>, Vec<&Pod>) = objects
        .pods
        .iter()
        .partition(|p| pod_role(p) == Some(InstanceRole::Primary));
    let read = |pod| {
        let quick = quick.iter().any(|s| Some(s) == pod_name(pod));
        one(cluster, namespace, pod, objects, account, agents, quick)
    };
    let mut out = futures::future::join_all(replicas.into_iter().map(read)).await;
    out.extend(futures::future::join_all(primaries.into_iter().map(read)).await);
    out
}

async fn one(
    cluster: &str,
    namespace: &str,
    pod: &Pod,
    objects: &ClusterObjects,
    account: &OperatorAccount,
    agents: &reqwest::Client,
    quick: bool,
) -> ObservedServer {
    let name = pod.metadata.name.clone().unwrap_or_default();
    let ordinal = names::ordinal_of(&name).unwrap_or_default();
    let ip = objects::pod_ip(pod).map(str::to_owned);
    // Unknown counts as pending (`unobserved`): never race an agent
    // applying a seed.
    let mut state = ServerState {
        role_label: pod_role(pod),
        reads_label: objects::pod_serves_reads(pod),
        pod_ready: objects::pod_ready(pod),
        terminating: objects::pod_terminating(pod),
        node: objects::pod_node(pod).map(|node| node_facts(node, objects.nodes.get(node))),
        outdated: objects.is_outdated(pod),
        server_started: objects::container_started(pod, names::SERVER_CONTAINER),

        ..ServerState::unobserved(&name, &names::pod_host(cluster, namespace, ordinal))
    };
    let mut observed = ObservedServer {
        state,
        flavor: None,
        ip: ip.clone(),
    };
    let Some(ip) = ip else { return observed };
    // The glance bounds each look on its own: a frozen agent says nothing
    // about its server.
    let server = async {
        if !quick {
            return read(&name, &ip, account).await;
        }
        tokio::time::timeout(QUICK_LOOK, read(&name, &ip, account))
            .await
            .unwrap_or_else(|_| {
                Err(Error::TimedOut {
                    pod: name.clone(),
                    action: "connect",
                })
            })
    };
    let agent_patience = if quick { QUICK_LOOK } else { AGENT_TIMEOUT };
    let (agent, read) = tokio::join!(agent_status(agents, &ip, agent_patience), server);
    state = observed.state;
    if let Some(agent) = &agent {
        state.seed_pending = agent.seed_pending;
        state.relay_log_unread = agent.relay_log_unread;
        state.relay_log_error.clone_from(&agent.relay_log_error);
        state.upgrade_error.clone_from(&agent.upgrade_error);
    }
    let heard = agent
        .as_ref()
        .and_then(|a| Some((a.source_heard.clone()?, a.source_heard_ms_ago?)));
    match read {
        Ok(read) => {
            state.answer = Answer::Answered;
            state.read_only = read.read_only;
            state.gtid = Some(read.gtid_executed);
            state.version = Some(read.version);
            state.replication = read.replica.map(|r| Replication {
                io_running: r.receiver_running(),
                io_errno: r.last_io_errno,
                io_error: r.last_io_error.clone(),
                sql_running: r.sql_running,
                // The applier's message can quote row values: only its
                // number leaves the server (L3).
                sql_error: r
                    .last_sql_error
                    .as_ref()
                    .map(|_| applier_error(r.last_sql_errno)),
                lag_seconds: r.seconds_behind,
                received: Some(r.received_gtid.clone()),
                source_host: r.source_host,
            });
            state.semi_sync_source = read.semi_sync.source_enabled;
            state.semi_sync_active = read.semi_sync.source_active;
            state.semi_sync_timeout_ms = read.semi_sync.timeout_ms;
            state.semi_sync_wait = read.semi_sync.wait_for_replicas;
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
    // What the agent heard counts for the source the server replicates
    // from now (or, when the server did not answer, any it last heard).
    state.hears_source_ms_ago = heard
        .filter(|(source, _)| {
            state
                .replication
                .as_ref()
                .is_none_or(|r| r.source_host == *source)
        })
        .map(|(_, ago)| ago);
    observed.state = state;
    observed
}

/// What the pod's agent says, when it answers.
async fn agent_status(
    agents: &reqwest::Client,
    ip: &str,
    patience: Duration,
) -> Option<AgentStatus> {
    let url = format!(
        "http://{ip}:{}{}",
        names::AGENT_PORT,
        ebisu_api::agent::PATH_STATUS
    );
    let bytes = agents
        .get(url)
        .timeout(patience)
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

/// Connects to a server as the operator.
pub async fn connect(pod: &str, ip: &str, account: &OperatorAccount) -> Result<Conn, Error> {
    match tokio::time::timeout(CONNECT_TIMEOUT, Conn::new(account.opts(ip))).await {
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

/// How an applier error is shown: its number, and where its text is.
fn applier_error(errno: u32) -> String {
    format!("applier error {errno} (`SHOW REPLICA STATUS` on the replica has its text)")
}
