//! Reading every server of a cluster over SQL, as the operator user, at the
//! pod's IP. The labelled primary is read last, so a replica can never seem
//! to hold a transaction the primary committed after it was read.

use std::time::Duration;

use ebisu_api::{
    InstanceRole,
    names::{self, LABEL_ROLE, MYSQL_PORT, ROLE_PRIMARY, ROLE_REPLICA},
};
use ebisu_mysql::{Flavor, GtidSet, ReplicaStatus, ThreadState};
use k8s_openapi::api::core::v1::Pod;
use mysql_async::{Conn, OptsBuilder, Row, prelude::Queryable};
use tracing::debug;

use super::state::{Replication, ServerState};

/// How long a server or agent may take to answer before it counts as down
/// for this pass: a hung pod must not stall the reconcile of the others.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(3);

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

/// Reads every pod's server.
pub async fn servers(
    cluster: &str,
    namespace: &str,
    pods: &[Pod],
    account: &OperatorAccount,
    agents: &reqwest::Client,
) -> Vec<Observed> {
    let mut ordered: Vec<&Pod> = pods.iter().collect();
    // Replicas first, the labelled primary last.
    ordered.sort_by_key(|p| role_label(p) == Some(InstanceRole::Primary));
    let mut out = Vec::with_capacity(ordered.len());
    for pod in ordered {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let ordinal = names::ordinal_of(&name).unwrap_or_default();
        let ip = pod.status.as_ref().and_then(|s| s.pod_ip.clone());
        let mut state = ServerState {
            pod: name.clone(),
            host: names::pod_host(cluster, namespace, ordinal),
            role_label: role_label(pod),
            reachable: false,
            read_only: true,
            gtid: None,
            replication: None,
            semi_sync_source: false,
            semi_sync_replica: false,
            seed_pending: true,
        };
        let mut flavor = None;
        let mut lag_seconds = None;
        if let Some(ip) = &ip {
            // Unknown counts as pending: never race an agent applying a seed.
            state.seed_pending = agent_seed_pending(agents, ip).await.unwrap_or(true);
            match read(ip, account).await {
                Ok(read) => {
                    state.reachable = true;
                    state.read_only = read.read_only;
                    state.gtid = Some(read.gtid);
                    lag_seconds = read.replica.as_ref().and_then(|r| r.seconds_behind);
                    state.replication =
                        read.replica
                            .filter(|r| !r.source_host.is_empty())
                            .map(|r| Replication {
                                io_running: r.io_running != ThreadState::No,
                                sql_running: r.sql_running,
                                sql_error: r.last_sql_error.clone(),
                                lag_seconds: r.seconds_behind,
                                source_host: r.source_host,
                            });
                    state.semi_sync_source = read.semi_sync.0;
                    state.semi_sync_replica = read.semi_sync.1;
                    flavor = Some(read.flavor);
                }
                Err(error) => debug!(pod = %name, %error, "server did not answer"),
            }
        }
        out.push(Observed {
            state,
            flavor,
            ip,
            lag_seconds,
        });
    }
    out
}

/// Whether the pod's agent reports a seed it has not applied yet.
async fn agent_seed_pending(agents: &reqwest::Client, ip: &str) -> Option<bool> {
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
    serde_json::from_slice::<ebisu_api::agent::AgentStatus>(&bytes)
        .ok()
        .map(|s| s.seed_pending)
}

fn role_label(pod: &Pod) -> Option<InstanceRole> {
    match pod.metadata.labels.as_ref()?.get(LABEL_ROLE)?.as_str() {
        ROLE_PRIMARY => Some(InstanceRole::Primary),
        ROLE_REPLICA => Some(InstanceRole::Replica),
        _ => None,
    }
}

struct Read {
    flavor: Flavor,
    read_only: bool,
    gtid: GtidSet,
    replica: Option<ReplicaStatus>,
    semi_sync: (bool, bool),
}

/// Connects to a server as the operator.
pub async fn connect(ip: &str, account: &OperatorAccount) -> Result<Conn, String> {
    let opts = OptsBuilder::default()
        .ip_or_hostname(ip.to_owned())
        .tcp_port(MYSQL_PORT)
        .user(Some(account.user.clone()))
        .pass(Some(account.password.clone()))
        .prefer_socket(false);
    tokio::time::timeout(ANSWER_TIMEOUT, Conn::new(opts))
        .await
        .map_err(|_| "failed to connect: timed out".to_owned())?
        .map_err(|e| format!("failed to connect: {e}"))
}

async fn read(ip: &str, account: &OperatorAccount) -> Result<Read, String> {
    let mut conn = connect(ip, account).await?;
    let sql = |e: mysql_async::Error| format!("failed to query: {e}");
    let version: Option<String> = conn
        .query_first(ebisu_mysql::sql::VERSION_QUERY)
        .await
        .map_err(sql)?;
    let flavor =
        Flavor::from_server_version(&version.unwrap_or_default()).map_err(|e| e.to_string())?;
    let read_only: Option<i64> = conn
        .query_first(flavor.fence_state_query())
        .await
        .map_err(sql)?;
    let gtid: Option<String> = conn
        .query_first(flavor.gtid_executed_query())
        .await
        .map_err(sql)?;
    let gtid = GtidSet::parse(flavor, &gtid.unwrap_or_default()).map_err(|e| e.to_string())?;
    let row: Option<Row> = conn
        .query_first(flavor.replica_status_query())
        .await
        .map_err(sql)?;
    let replica = match row {
        Some(row) => Some(
            ReplicaStatus::from_row(flavor, &ebisu_mysql::driver::named_columns(&row))
                .map_err(|e| e.to_string())?,
        ),
        None => None,
    };
    let semi_query = if flavor.is_mariadb() {
        "SELECT @@GLOBAL.rpl_semi_sync_master_enabled, @@GLOBAL.rpl_semi_sync_slave_enabled"
    } else {
        "SELECT @@GLOBAL.rpl_semi_sync_source_enabled, @@GLOBAL.rpl_semi_sync_replica_enabled"
    };
    // Missing variables (a MySQL plugin not loaded) mean semi-sync is off.
    let semi: Option<(i64, i64)> = conn.query_first(semi_query).await.unwrap_or(None);
    let semi_sync = semi.map_or((false, false), |(s, r)| (s != 0, r != 0));
    let _ = conn.disconnect().await;
    Ok(Read {
        flavor,
        read_only: read_only.unwrap_or(1) != 0,
        gtid,
        replica,
        semi_sync,
    })
}
