//! The local server as the sidecar sees it: connecting (socket or TCP),
//! detecting its flavor, and reading its role, fencing, GTIDs and replication.

use std::{path::PathBuf, time::Duration};

use ebisu_api::{
    InstanceRole,
    agent::{AgentStatus, ReplicationState},
};
use ebisu_mysql::{Flavor, ReplicaStatus, ThreadState, sql::VERSION_QUERY};
use mysql_async::{Conn, OptsBuilder, Row, prelude::Queryable};

/// Why talking to the server failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Connecting or querying failed.
    #[error("failed to {action}: {source}")]
    Sql {
        /// What was being done.
        action: &'static str,
        /// The driver's error.
        #[source]
        source: mysql_async::Error,
    },
    /// The server is not a supported version.
    #[error("failed to recognise the server: {0}")]
    Flavor(#[from] ebisu_mysql::FlavorError),
    /// The server's replica status could not be read.
    #[error("failed to read replica status: {0}")]
    ReplicaStatus(#[from] ebisu_mysql::ReplicaStatusError),
    /// The server did not answer in time.
    #[error("failed to {0}: timed out")]
    Timeout(&'static str),
}

/// How to reach the local server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// A Unix socket (in the pod).
    Socket(PathBuf),
    /// Host and port.
    Tcp(String, u16),
}

/// Connects as `user`.
pub async fn connect(endpoint: &Endpoint, user: &str, password: &str) -> Result<Conn, Error> {
    let mut opts = OptsBuilder::default()
        .user(Some(user))
        .pass((!password.is_empty()).then_some(password))
        .prefer_socket(false);
    opts = match endpoint {
        Endpoint::Socket(path) => opts.socket(Some(path.display().to_string())),
        Endpoint::Tcp(host, port) => opts.ip_or_hostname(host.clone()).tcp_port(*port),
    };
    tokio::time::timeout(Duration::from_secs(5), Conn::new(opts))
        .await
        .map_err(|_| Error::Timeout("connect to the server"))?
        .map_err(|source| Error::Sql {
            action: "connect to the server",
            source,
        })
}

/// Runs statements in order.
pub async fn execute(
    conn: &mut Conn,
    statements: &[String],
    action: &'static str,
) -> Result<(), Error> {
    for statement in statements {
        conn.query_drop(statement)
            .await
            .map_err(|source| Error::Sql { action, source })?;
    }
    Ok(())
}

/// The server's flavor, from its version string.
pub async fn flavor(conn: &mut Conn) -> Result<Flavor, Error> {
    let version: Option<String> =
        conn.query_first(VERSION_QUERY)
            .await
            .map_err(|source| Error::Sql {
                action: "read the version",
                source,
            })?;
    Ok(Flavor::from_server_version(&version.unwrap_or_default())?)
}

/// The replica status row, `None` when the server is not a replica.
pub async fn replica_status(
    conn: &mut Conn,
    flavor: Flavor,
) -> Result<Option<ReplicaStatus>, Error> {
    let row: Option<Row> = conn
        .query_first(flavor.replica_status_query())
        .await
        .map_err(|source| Error::Sql {
            action: "read replica status",
            source,
        })?;
    let Some(row) = row else { return Ok(None) };
    let named = ebisu_mysql::driver::named_columns(&row);
    if named.iter().all(|(_, v)| v.is_none()) {
        return Ok(None);
    }
    Ok(Some(ReplicaStatus::from_row(flavor, &named)?))
}

/// Everything `/status` reports, read from the server.
pub async fn status(
    conn: &mut Conn,
    flavor: Flavor,
    host: &str,
    port: u16,
) -> Result<AgentStatus, Error> {
    let read_only: Option<i64> =
        conn.query_first(flavor.fence_state_query())
            .await
            .map_err(|source| Error::Sql {
                action: "read the fence state",
                source,
            })?;
    let read_only = read_only.unwrap_or(1) != 0;
    let gtid: Option<String> = conn
        .query_first(flavor.gtid_executed_query())
        .await
        .map_err(|source| Error::Sql {
            action: "read executed GTIDs",
            source,
        })?;
    let replica = replica_status(conn, flavor).await?;
    let role = match (&replica, read_only) {
        (Some(r), _) if !r.source_host.is_empty() => InstanceRole::Replica,
        (None, false) => InstanceRole::Primary,
        _ => InstanceRole::Unknown,
    };
    let replication = replica
        .filter(|r| !r.source_host.is_empty())
        .map(|r| ReplicationState {
            io_running: r.io_running == ThreadState::Yes,
            sql_running: r.sql_running,
            lag_seconds: r.seconds_behind,
            last_error: r.last_io_error.clone().or_else(|| r.last_sql_error.clone()),
            source_port: r.source_port,
            source_host: r.source_host,
        });
    Ok(AgentStatus {
        host: host.to_owned(),
        port,
        server_up: true,
        role,
        read_only,
        gtid_executed: gtid.filter(|g| !g.is_empty()),
        replication,
        seed_pending: false,
    })
}
