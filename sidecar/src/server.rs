//! The local server as the sidecar sees it: connecting (socket or TCP),
//! detecting its flavor, and reading its role, fencing, GTIDs and replication.

use std::{path::PathBuf, time::Duration};

use ebisu_api::{
    InstanceRole,
    agent::{AgentStatus, ReplicationState},
};
use ebisu_mysql::{Flavor, ReplicaStatus};
use mysql_async::{Conn, OptsBuilder, prelude::Queryable};

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
    /// The server's state could not be read.
    #[error("failed to read the server: {0}")]
    Read(#[from] ebisu_mysql::driver::ReadError),
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

/// The server's flavor, from its version.
pub async fn flavor(conn: &mut Conn) -> Result<Flavor, Error> {
    Ok(ebisu_mysql::driver::read_flavor(conn).await?)
}

/// The replica status, `None` when the server replicates from nobody.
pub async fn replica_status(
    conn: &mut Conn,
    flavor: Flavor,
) -> Result<Option<ReplicaStatus>, Error> {
    Ok(ebisu_mysql::driver::replica_status(conn, flavor).await?)
}

/// Everything `/status` reports, read with the reader the operator uses.
pub async fn status(conn: &mut Conn, host: &str, port: u16) -> Result<AgentStatus, Error> {
    let read = ebisu_mysql::driver::read_server(conn).await?;
    let role = match (&read.replica, read.read_only) {
        (Some(_), _) => InstanceRole::Replica,
        (None, false) => InstanceRole::Primary,
        (None, true) => InstanceRole::Unknown,
    };
    let replication = read.replica.map(|r| ReplicationState {
        io_running: r.receiver_running(),
        io_connected: r.receiver_connected(),
        sql_running: r.sql_running,
        lag_seconds: r.seconds_behind,
        // Numbers only: the endpoint is unauthenticated and an applier's
        // message can quote row values.
        last_error: r
            .last_io_error
            .as_ref()
            .map(|_| format!("receiver error {}", r.last_io_errno))
            .or_else(|| {
                r.last_sql_error
                    .as_ref()
                    .map(|_| format!("applier error {}", r.last_sql_errno))
            }),
        source_port: r.source_port,
        source_host: r.source_host,
    });
    let gtid = read.gtid_executed.to_string();
    Ok(AgentStatus {
        host: host.to_owned(),
        port,
        server_up: true,
        role,
        read_only: read.read_only,
        gtid_executed: (!gtid.is_empty()).then_some(gtid),
        replication,
        seed_pending: false,
        relay_log_unread: false,
        relay_log_error: None,
        upgrade_error: None,
        source_heard: None,
        source_heard_ms_ago: None,
    })
}
