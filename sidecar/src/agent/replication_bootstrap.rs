//! First start after a clone: tell the server which GTIDs its copy holds,
//! point it at the recorded source with GTID auto-positioning and start
//! replication, leaving it read-only. Idempotent across restarts: a server
//! that already has a replication source is never set up again.

use ebisu_mysql::{GtidSet, ReplicationSource, ServiceRole};
use tracing::info;

use super::Shared;
use crate::{seed_marker, server};

/// Why replication could not be set up yet.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The marker could not be read or removed.
    #[error(transparent)]
    Marker(#[from] seed_marker::Error),
    /// The server could not be reached or refused a statement.
    #[error(transparent)]
    Server(#[from] server::Error),
    /// The recorded position is not a GTID set of the server's flavor.
    #[error("failed to read the seeded GTID position {gtid:?}: {source}")]
    Gtid {
        /// The recorded text.
        gtid: String,
        /// The parse error.
        #[source]
        source: ebisu_mysql::GtidError,
    },
    /// The statements could not be built.
    #[error("failed to build replication statements: {0}")]
    Sql(#[from] ebisu_mysql::SqlError),
}

/// Sets up replication if the data directory holds a seed marker.
pub async fn run(shared: &Shared) -> Result<(), Error> {
    let data_dir = &shared.config.data_dir;
    let Some(marker) = seed_marker::read(data_dir)? else {
        return Ok(());
    };
    shared.metrics.clone_bytes_received.inc_by(marker.bytes);
    // root over the local socket: the one account that may change replication
    // before the operator's users are trusted here.
    let mut conn = shared.root_conn().await?;
    let flavor = shared.flavor(&mut conn).await?;
    // A copy made by the CLONE plugin carries its GTIDs (an empty position
    // in the marker) and may carry its donor's replication settings: point
    // it at the source either way. A streamed copy is pointed once.
    let carries_gtids = marker.gtid.is_empty();
    if !carries_gtids && let Some(existing) = server::replica_status(&mut conn, flavor).await? {
        info!(source = %existing.source_host, "replication already set up; not setting it up twice");
        seed_marker::remove(data_dir)?;
        return Ok(());
    }
    let replication = shared
        .credentials
        .users
        .get(ServiceRole::Replication)
        .clone();
    let source = ReplicationSource::new(&marker.source_host, marker.source_port, replication)?;
    let mut statements = vec![flavor.stop_replication()];
    if carries_gtids {
        // A clone of a replica carries that replica's channel, whose relay
        // logs were not copied: forget it (GTIDs are kept).
        statements.push(flavor.reset_replication());
    } else {
        let gtid = GtidSet::parse(flavor, &marker.gtid).map_err(|source| Error::Gtid {
            gtid: marker.gtid.clone(),
            source,
        })?;
        statements.extend(flavor.seed_gtid_position(&gtid)?);
    }
    statements.extend(flavor.start_replication(&source));
    server::execute(
        &mut conn,
        &statements,
        "start replication from the seeded position",
    )
    .await?;
    info!(gtid = %marker.gtid, source = %marker.source_host, port = marker.source_port, "replication started from the cloned position");
    seed_marker::remove(data_dir)?;
    Ok(())
}
