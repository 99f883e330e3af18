//! The one reader of a server's state: the operator (deciding roles) and the
//! sidecar (its `/status`, donor ranking and replication bootstrap) both call
//! [`read_server`], so every field means the same on both sides. It runs the
//! queries on a connection the caller opened and parses them with this
//! crate's pure parsers; it never connects, retries or times out by itself.

use mysql_async::{Conn, Row, prelude::Queryable};

use crate::{
    flavor::{Flavor, FlavorError, ServerVersion},
    gtid::{GtidError, GtidSet},
    replica_status::{ReplicaStatus, ReplicaStatusError},
    sql::VERSION_QUERY,
};

use super::rows::named_columns;

/// Why a server's state could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// A query failed (the server answered with an error, or the connection broke).
    #[error("failed to {action}: {source}")]
    Query {
        /// What was being read.
        action: &'static str,
        /// The driver's error.
        #[source]
        source: mysql_async::Error,
    },
    /// The server is not a supported version.
    #[error("failed to recognise the server: {0}")]
    Flavor(#[from] FlavorError),
    /// The executed GTIDs did not parse.
    #[error("failed to read executed GTIDs: {0}")]
    Gtid(#[from] GtidError),
    /// The replica status row did not parse.
    #[error(transparent)]
    ReplicaStatus(#[from] ReplicaStatusError),
}

/// Semi-synchronous replication as the server reports it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SemiSyncState {
    /// The source (primary) side is enabled.
    pub source_enabled: bool,
    /// The replica side is enabled.
    pub replica_enabled: bool,
    /// The source side is actually waiting for acknowledgements
    /// (`Rpl_semi_sync_*_status`): false while enabled means it fell back
    /// to asynchronous replication.
    pub source_active: bool,
    /// Semi-sync replicas connected to this source, when reported.
    pub clients: Option<u32>,
    /// `rpl_semi_sync_*_timeout` in milliseconds, when reported.
    pub timeout_ms: Option<u64>,
    /// Acknowledgements each commit waits for: MySQL's
    /// `rpl_semi_sync_source_wait_for_replica_count`; MariaDB always waits
    /// for one.
    pub wait_for_replicas: Option<u32>,
}

/// Where a replica's receiver stands: what it got from its source so far.
/// Two looks that differ mean the source was heard in between.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiverProgress {
    /// The receiver is connected to its source.
    pub connected: bool,
    /// The source it receives from.
    pub source_host: String,
    /// Heartbeats, events read and GTIDs received, as one comparable value.
    pub got: String,
}

/// One look at a server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerRead {
    /// Its version.
    pub version: ServerVersion,
    /// Its flavor, from its version.
    pub flavor: Flavor,
    /// `read_only` (MariaDB) or `super_read_only` (MySQL) is on.
    pub read_only: bool,
    /// The GTIDs it holds (see [`Flavor::gtid_executed_query`] for which variable).
    pub gtid_executed: GtidSet,
    /// Its replication, when a source is configured; `None` for a server
    /// that replicates from nobody.
    pub replica: Option<ReplicaStatus>,
    /// Semi-sync, on both sides.
    pub semi_sync: SemiSyncState,
}

/// Reads the server's flavor from its version.
pub async fn read_flavor(conn: &mut Conn) -> Result<Flavor, ReadError> {
    Ok(read_version(conn).await?.1)
}

/// Reads the server's version and the flavor it makes.
pub async fn read_version(conn: &mut Conn) -> Result<(ServerVersion, Flavor), ReadError> {
    let version: Option<String> = conn
        .query_first(VERSION_QUERY)
        .await
        .map_err(query("read the version"))?;
    let version = version.unwrap_or_default();
    let parsed = ServerVersion::parse(&version)?;
    Ok((parsed, Flavor::from_server_version(&version)?))
}

/// Reads everything decisions and `/status` need, in one fixed order.
pub async fn read_server(conn: &mut Conn) -> Result<ServerRead, ReadError> {
    let (version, flavor) = read_version(conn).await?;
    let read_only: Option<i64> = conn
        .query_first(flavor.fence_state_query())
        .await
        .map_err(query("read the fence state"))?;
    let gtid: Option<String> = conn
        .query_first(flavor.gtid_executed_query())
        .await
        .map_err(query("read executed GTIDs"))?;
    let gtid_executed = GtidSet::parse(flavor, &gtid.unwrap_or_default())?;
    let replica = replica_status(conn, flavor).await?;
    let semi_sync = read_semi_sync(conn, flavor).await?;
    Ok(ServerRead {
        version,
        flavor,
        // Unknown counts as fenced: never mistake a server for writable.
        read_only: read_only.unwrap_or(1) != 0,
        gtid_executed,
        replica,
        semi_sync,
    })
}

/// The replica status, `None` when no source is configured (no row, an
/// all-NULL row, or a reset source host).
pub async fn replica_status(
    conn: &mut Conn,
    flavor: Flavor,
) -> Result<Option<ReplicaStatus>, ReadError> {
    let row: Option<Row> = conn
        .query_first(flavor.replica_status_query())
        .await
        .map_err(query("read replica status"))?;
    let Some(row) = row else { return Ok(None) };
    let named = named_columns(&row);
    if named.iter().all(|(_, v)| v.is_none()) {
        return Ok(None);
    }
    let status = ReplicaStatus::from_row(flavor, &named)?;
    Ok((!status.source_host.is_empty()).then_some(status))
}

/// Where the replica's receiver stands, `None` on a server that is no replica.
pub async fn receiver_progress(
    conn: &mut Conn,
    flavor: Flavor,
) -> Result<Option<ReceiverProgress>, ReadError> {
    let Some(status) = replica_status(conn, flavor).await? else {
        return Ok(None);
    };
    let heartbeats: Option<String> = conn
        .query_first(flavor.received_heartbeats_query())
        .await
        .map_err(query("read received heartbeats"))?;
    Ok(Some(ReceiverProgress {
        connected: status.receiver_connected(),
        got: format!(
            "{}/{}/{}",
            heartbeats.unwrap_or_default(),
            status.read_position.as_deref().unwrap_or_default(),
            status.received_gtid
        ),
        source_host: status.source_host,
    }))
}

/// The server's semi-sync settings and whether its source side waits.
pub async fn read_semi_sync(conn: &mut Conn, flavor: Flavor) -> Result<SemiSyncState, ReadError> {
    // SHOW never fails when a MySQL plugin is not loaded: its names are just absent.
    let variables: Vec<(String, String)> = conn
        .query("SHOW GLOBAL VARIABLES LIKE 'rpl_semi_sync_%'")
        .await
        .map_err(query("read semi-sync settings"))?;
    let status: Vec<(String, String)> = conn
        .query(crate::sql::SEMI_SYNC_STATUS_QUERY)
        .await
        .map_err(query("read semi-sync status"))?;
    Ok(parse_semi_sync(flavor, &variables, &status))
}

/// Semi-sync state from `SHOW GLOBAL VARIABLES` and `SHOW GLOBAL STATUS`
/// rows (name, value); pure.
pub fn parse_semi_sync(
    flavor: Flavor,
    variables: &[(String, String)],
    status: &[(String, String)],
) -> SemiSyncState {
    let (source, replica) = if flavor.is_mariadb() {
        ("rpl_semi_sync_master", "rpl_semi_sync_slave")
    } else {
        ("rpl_semi_sync_source", "rpl_semi_sync_replica")
    };
    let find = |rows: &[(String, String)], name: &str| {
        rows.iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim().to_owned())
    };
    let on =
        |value: Option<String>| value.is_some_and(|v| v.eq_ignore_ascii_case("ON") || v == "1");
    SemiSyncState {
        source_enabled: on(find(variables, &format!("{source}_enabled"))),
        replica_enabled: on(find(variables, &format!("{replica}_enabled"))),
        source_active: on(find(status, flavor.semi_sync_primary_status_variable())),
        clients: find(status, &format!("{}_clients", capitalised(source)))
            .and_then(|v| v.parse().ok()),
        timeout_ms: find(variables, &format!("{source}_timeout")).and_then(|v| v.parse().ok()),
        wait_for_replicas: if flavor.is_mariadb() {
            Some(1)
        } else {
            find(variables, &format!("{source}_wait_for_replica_count"))
                .and_then(|v| v.parse().ok())
        },
    }
}

/// `rpl_semi_sync_master` -> `Rpl_semi_sync_master` (status variable names).
fn capitalised(name: &str) -> String {
    let mut chars = name.chars();
    chars
        .next()
        .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
        .unwrap_or_default()
}

fn query(action: &'static str) -> impl FnOnce(mysql_async::Error) -> ReadError {
    move |source| ReadError::Query { action, source }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn mariadb_semi_sync_reads_master_and_slave_names() {
        let state = parse_semi_sync(
            Flavor::MariaDb,
            &rows(&[
                ("rpl_semi_sync_master_enabled", "ON"),
                ("rpl_semi_sync_master_timeout", "4294967295"),
                ("rpl_semi_sync_slave_enabled", "OFF"),
            ]),
            &rows(&[
                ("Rpl_semi_sync_master_status", "ON"),
                ("Rpl_semi_sync_master_clients", "2"),
            ]),
        );
        assert_eq!(
            state,
            SemiSyncState {
                source_enabled: true,
                replica_enabled: false,
                source_active: true,
                clients: Some(2),
                timeout_ms: Some(4_294_967_295),
                wait_for_replicas: Some(1),
            }
        );
    }

    #[test]
    fn mysql_reports_its_wait_count_and_mariadb_always_waits_for_one() {
        let state = parse_semi_sync(
            Flavor::MySql84,
            &rows(&[
                ("rpl_semi_sync_source_enabled", "ON"),
                ("rpl_semi_sync_source_wait_for_replica_count", "2"),
            ]),
            &[],
        );
        assert_eq!(state.wait_for_replicas, Some(2));
        assert_eq!(
            parse_semi_sync(Flavor::MariaDb, &[], &[]).wait_for_replicas,
            Some(1)
        );
    }

    #[test]
    fn enabled_but_inactive_is_a_fallback_to_async() {
        let state = parse_semi_sync(
            Flavor::MySql84,
            &rows(&[("rpl_semi_sync_source_enabled", "ON")]),
            &rows(&[("Rpl_semi_sync_source_status", "OFF")]),
        );
        assert!(state.source_enabled && !state.source_active);
    }

    #[test]
    fn a_mysql_server_without_the_plugins_has_semi_sync_off() {
        let state = parse_semi_sync(Flavor::MySql84, &[], &[]);
        assert!(!state.source_enabled && !state.replica_enabled && !state.source_active);
        assert_eq!(state.wait_for_replicas, None);
    }
}
