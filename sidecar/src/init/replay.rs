//! A restore to a point, on the restored cluster's first instance before
//! its server opens: the archive's manifests are read and the replay
//! planned again (`ebisu_mysql::archive::replay`, as the operator did
//! before it made anything), each planned segment is fetched and checked
//! against its SHA-256, the transactions the server lacks up to the target
//! are written out behind their file's head as the server's relay log, and
//! the server's own applier applies all of them in a temporary server
//! without networking (no client can write before the replay ends), under
//! a server id none of the replayed events carry. Once the applier has
//! stopped, the GTID set reached must be exactly what the server held plus
//! what was written, and within what the archive says the target holds; on
//! MariaDB the server's replica position is set to it (its binary log holds
//! the replayed transactions under other servers' ids, which a copy of it
//! follows). It is then recorded in the data directory, so a replay
//! interrupted by a crash runs again (skipping what the server already
//! holds) and a finished one never does.

use std::collections::BTreeSet;
use std::path::Path;

use ebisu_api::{Flavor as FlavorFamily, agent::ReplayOrder};
use ebisu_mysql::{
    Flavor, GtidSet,
    archive::replay::{self, Plan, PlannedSegment, Target, Want},
    binlog,
};
use mysql_async::prelude::Queryable;
use tokio::io::AsyncWriteExt;
use tracing::info;

use super::{Settings, applier, temp_server};
use crate::{credentials::ClusterCredentials, server};
use ebisu_aws::archive as archive_store;

/// Written in the data directory once the replay reached its target: the
/// GTID set reached.
pub const REPLAYED_MARKER: &str = "ebisu-replayed";

/// Why the replay failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The order cannot be understood.
    #[error("failed to read the replay order: {0}")]
    Order(String),
    /// The archive cannot reach the target.
    #[error("failed to plan the replay: {0}")]
    Refused(String),
    /// S3 failed.
    #[error(transparent)]
    S3(#[from] archive_store::Error),
    /// A segment is not what its manifest says.
    #[error("failed to check archive segment {key}: {why}")]
    Segment {
        /// The object.
        key: String,
        /// What is wrong.
        why: String,
    },
    /// A file could not be written.
    #[error("failed to {action}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The temporary server failed.
    #[error(transparent)]
    TempServer(#[from] temp_server::Error),
    /// A statement failed.
    #[error(transparent)]
    Server(#[from] server::Error),
    /// The applier failed.
    #[error("failed to apply the archive: {0}")]
    Apply(String),
    /// The applier's relay log or state could not be handled.
    #[error(transparent)]
    Applier(#[from] applier::Error),
    /// The server did not reach the target.
    #[error("failed to reach the target: {0}")]
    Short(String),
}

fn io(action: &'static str) -> impl FnOnce(std::io::Error) -> Error {
    move |source| Error::Io { action, source }
}

/// The order in the ConfigMap, if it is for `pod`.
pub fn order_for(config_parts: &Path, pod: &str) -> Result<Option<ReplayOrder>, Error> {
    let path = config_parts.join(ebisu_api::names::CONFIG_REPLAY);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::Order(format!("{}: {e}", path.display()))),
    };
    let order: ReplayOrder =
        serde_json::from_str(&text).map_err(|e| Error::Order(e.to_string()))?;
    Ok((order.pod == pod).then_some(order))
}

fn flavor(family: FlavorFamily) -> Flavor {
    match family {
        FlavorFamily::Mariadb => Flavor::MariaDb,
        FlavorFamily::Mysql => Flavor::MySql84,
    }
}

/// The order's target.
fn target(order: &ReplayOrder, flavor: Flavor) -> Result<Target, Error> {
    match (&order.time_us, &order.gtid_set) {
        (Some(us), None) => Ok(Target::Time(*us)),
        (None, Some(set)) => GtidSet::parse(flavor, set)
            .map(Target::Gtids)
            .map_err(|e| Error::Order(e.to_string())),
        _ => Err(Error::Order("it names no target, or two".to_owned())),
    }
}

/// Replays the archive as `order` says, unless done before.
pub async fn run(
    settings: &Settings,
    order: &ReplayOrder,
    credentials: &ClusterCredentials,
) -> Result<(), Error> {
    let marker = settings.data_dir.join(REPLAYED_MARKER);
    if let Ok(reached) = std::fs::read_to_string(&marker) {
        info!(reached = %reached.trim(), "the archive was replayed before");
        return Ok(());
    }
    let flavor = flavor(settings.family);
    let target = target(order, flavor)?;
    let backup =
        GtidSet::parse(flavor, &order.backup_gtid_set).map_err(|e| Error::Order(e.to_string()))?;
    let client = ebisu_aws::s3(&ebisu_aws::config(archive_store::OPERATION_TIMEOUT).await);
    let prefix = order.prefix.trim_end_matches('/');
    let manifests = archive_store::manifests(&client, &order.bucket, prefix).await?;
    let plan = replay::plan(flavor, &backup, &manifests, &target)
        .map_err(|r| Error::Refused(format!("{}: {r}", r.reason())))?;
    info!(%target, files = plan.files.len(), "replaying the archive");

    // What the server holds, and the snapshot's replication forgotten, so
    // its relay log can be laid out anew.
    let password = credentials.root_password.reveal();
    let mut temp = temp_server::start(settings, "root", password).await?;
    let prepared = prepare(&mut temp.conn, flavor).await;
    let stopped = temp.stop().await;
    let (held, relay) = prepared?;
    stopped?;

    let started = std::time::Instant::now();
    relay.clear()?;
    let written = write_files(&client, order, &plan, &target, &held, &relay, flavor).await?;
    relay.write_index(written.files)?;
    let server_id = applier::replay_server_id(&written.server_ids);
    let mut temp = temp_server::start_with(
        settings,
        "root",
        password,
        &[
            format!("--server-id={server_id}"),
            // The index names its files by full path; a server whose
            // relay log is named relative to its data directory looks
            // them up as `./name`, so name it by full path too.
            format!("--relay-log={}", relay.basename().display()),
            format!("--relay-log-index={}", relay.index().display()),
        ],
    )
    .await?;
    // Everything the relay log holds is to be applied: what the plan's
    // bounds allow is not enough, the cut inside a segment is in the files.
    let expected = held
        .union(&written.gtids)
        .map_err(|e| Error::Apply(e.to_string()))?;
    let outcome = async {
        if written.files > 0 {
            apply(&mut temp.conn, flavor, &relay, &expected).await?;
        }
        // Stopped before the look, so nothing is applied after it: the
        // position set below is what the data and the binary log hold.
        server::execute(
            &mut temp.conn,
            &[flavor.stop_replication()],
            "stop the replay's applier",
        )
        .await?;
        let reached = executed(&mut temp.conn, flavor).await?;
        all_applied(&expected, &reached)?;
        plan.reached(&reached).map_err(Error::Short)?;
        let mut forget = vec![flavor.reset_replication()];
        if flavor == Flavor::MariaDb {
            // The replayed transactions are in the binary log under the
            // GTIDs of the servers that first wrote them; the applier's
            // position, which the server's current position and a copy
            // made from it follow, is to say the same.
            forget.extend(
                flavor
                    .seed_gtid_position(&reached)
                    .map_err(|e| Error::Apply(e.to_string()))?,
            );
        }
        server::execute(&mut temp.conn, &forget, "forget the replay's applier").await?;
        Ok::<_, Error>(reached)
    }
    .await;
    let reached = match outcome {
        Ok(done) => done,
        Err(error) => {
            let _ = temp.stop().await;
            return Err(error);
        }
    };
    temp.stop().await?;
    relay.clear()?;
    std::fs::write(&marker, format!("{reached}\n")).map_err(io("record the replay as done"))?;
    info!(%reached, transactions = written.transactions, server_id, seconds = started.elapsed().as_secs_f64(), "replayed the archive to the target");
    Ok(())
}

/// What the server holds; its replication stopped and forgotten (a
/// snapshot of a replica still names its source), which also removes its
/// relay log; where the relay log goes.
async fn prepare(
    conn: &mut mysql_async::Conn,
    flavor: Flavor,
) -> Result<(GtidSet, applier::RelayLog), Error> {
    let held = executed(conn, flavor).await?;
    server::execute(
        conn,
        &[flavor.stop_replication(), flavor.reset_replication()],
        "forget the restored server's replication",
    )
    .await?;
    let relay = applier::relay_log(conn).await?;
    Ok((held, relay))
}

/// Runs the server's applier over the relay log until the server holds
/// `expected` (what it held and every transaction written to the relay
/// log). An applier that stops with an error fails the replay; one idle
/// with nothing left to apply ends the wait, and the check after says
/// what was not applied.
async fn apply(
    conn: &mut mysql_async::Conn,
    flavor: Flavor,
    relay: &applier::RelayLog,
    expected: &GtidSet,
) -> Result<(), Error> {
    server::execute(
        conn,
        &flavor.apply_relay_log(&relay.first_name(), applier::workers(flavor)),
        "start the applier on the files to replay",
    )
    .await?;
    // Idle this many looks in a row, with nothing new applied: done.
    const SETTLED: u32 = 20;
    let mut idle = 0;
    let mut last = None;
    loop {
        let reached = executed(conn, flavor).await?;
        if reached.contains(expected).unwrap_or(false) {
            return Ok(());
        }
        match applier::state(conn, flavor).await? {
            applier::State::Stopped(why) => {
                return Err(Error::Apply(format!("the applier stopped: {why}")));
            }
            applier::State::Idle if last.as_ref() == Some(&reached) => idle += 1,
            applier::State::Idle | applier::State::Applying => idle = 0,
        }
        if idle >= SETTLED {
            return Ok(());
        }
        last = Some(reached);
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// What the server holds (MariaDB: the later of its binary log's and its
/// applier's position per domain; a snapshot of a replica has the second).
async fn executed(conn: &mut mysql_async::Conn, flavor: Flavor) -> Result<GtidSet, Error> {
    let sql = |source| {
        Error::Server(server::Error::Sql {
            action: "read the server's GTIDs",
            source,
        })
    };
    let parse = |text: &str| GtidSet::parse(flavor, text).map_err(|e| Error::Apply(e.to_string()));
    match flavor {
        Flavor::MySql80 | Flavor::MySql84 => {
            let set: Option<String> = conn
                .query_first("SELECT @@GLOBAL.gtid_executed")
                .await
                .map_err(sql)?;
            parse(&set.unwrap_or_default())
        }
        Flavor::MariaDb => {
            let (binlog, slave): (String, String) = conn
                .query_first("SELECT @@GLOBAL.gtid_binlog_pos, @@GLOBAL.gtid_slave_pos")
                .await
                .map_err(sql)?
                .unwrap_or_default();
            parse(&binlog)?
                .union(&parse(&slave)?)
                .map_err(|e| Error::Apply(e.to_string()))
        }
    }
}

/// Whether the server holds exactly `expected` once its applier stopped:
/// less is a replay cut short, more a transaction the relay log did not
/// hold.
fn all_applied(expected: &GtidSet, reached: &GtidSet) -> Result<(), Error> {
    let holds = |a: &GtidSet, b: &GtidSet| a.contains(b).map_err(|e| Error::Apply(e.to_string()));
    match (holds(reached, expected)?, holds(expected, reached)?) {
        (true, true) => Ok(()),
        (false, _) => Err(Error::Short(format!(
            "the applier stopped at {reached}, short of {expected}, everything the relay log holds"
        ))),
        (true, false) => Err(Error::Apply(format!(
            "the server holds {reached}, past {expected}, everything the relay log holds"
        ))),
    }
}

/// What [`write_files`] wrote.
#[derive(Debug)]
struct Written {
    /// Relay log files (the first ones of the relay log).
    files: usize,
    /// Transactions in them.
    transactions: u64,
    /// Their GTIDs.
    gtids: GtidSet,
    /// The server ids their events carry.
    server_ids: BTreeSet<u32>,
}

/// Fetches the planned segments and writes, per file that holds any, its
/// head and the transactions to replay as the next file of the relay log,
/// a segment at a time.
async fn write_files(
    client: &aws_sdk_s3::Client,
    order: &ReplayOrder,
    plan: &Plan,
    target: &Target,
    executed: &GtidSet,
    relay: &applier::RelayLog,
    flavor: Flavor,
) -> Result<Written, Error> {
    let mut written = Written {
        files: 0,
        transactions: 0,
        gtids: GtidSet::empty(flavor),
        server_ids: BTreeSet::new(),
    };
    for file in &plan.files {
        let path = relay.file(written.files);
        let mut out = tokio::fs::File::create(&path)
            .await
            .map_err(io("write a file to replay"))?;
        let mut count = 0;
        let mut stop = false;
        for segment in &file.segments {
            let bytes = archive_store::get(client, &order.bucket, &segment.data_key).await?;
            let picked = pick(&bytes, segment, target, executed)?;
            out.write_all(&picked.bytes)
                .await
                .map_err(io("write a file to replay"))?;
            count += picked.transactions;
            written.gtids = written
                .gtids
                .union(&picked.gtids)
                .map_err(|e| Error::Apply(e.to_string()))?;
            written.server_ids.extend(picked.server_ids);
            if picked.passed {
                stop = true;
                break;
            }
        }
        out.sync_all().await.map_err(io("write a file to replay"))?;
        drop(out);
        if count > 0 {
            written.files += 1;
            written.transactions += count;
        } else {
            tokio::fs::remove_file(&path)
                .await
                .map_err(io("remove an empty file to replay"))?;
        }
        if stop {
            break;
        }
    }
    Ok(written)
}

/// What [`pick`] took of one segment.
struct Picked {
    /// Its file's head (when it starts the file) and the transactions to
    /// replay.
    bytes: Vec<u8>,
    /// How many transactions.
    transactions: u64,
    /// Their GTIDs.
    gtids: GtidSet,
    /// The server ids the segment's events carry.
    server_ids: BTreeSet<u32>,
    /// The target time was passed.
    passed: bool,
}

/// Of one checked segment: its file's head (when it starts the file) and
/// the transactions to replay.
fn pick(
    bytes: &[u8],
    segment: &PlannedSegment,
    target: &Target,
    executed: &GtidSet,
) -> Result<Picked, Error> {
    let sha256 = archive_store::sha256_hex(bytes);
    if sha256 != segment.sha256 {
        return Err(Error::Segment {
            key: segment.data_key.clone(),
            why: format!(
                "its SHA-256 is {sha256}, its manifest says {}",
                segment.sha256
            ),
        });
    }
    let transactions = binlog::transactions(bytes, segment.start).map_err(|e| Error::Segment {
        key: segment.data_key.clone(),
        why: e.to_string(),
    })?;
    let server_ids = binlog::events(bytes, segment.start)
        .filter_map(Result::ok)
        .map(|event| event.server_id)
        .collect();
    let at = |offset: u64| usize::try_from(offset - segment.start).unwrap_or(bytes.len());
    let mut out = Vec::new();
    if segment.start == 0 {
        // The head: format description and preceding GTIDs.
        let head_end = transactions.first().map_or(bytes.len(), |t| at(t.offset));
        out.extend_from_slice(&bytes[..head_end]);
    }
    let mut taken = Vec::new();
    for (i, transaction) in transactions.iter().enumerate() {
        let end = transactions
            .get(i + 1)
            .map_or(bytes.len(), |next| at(next.offset));
        match replay::wanted(target, executed, transaction) {
            Want::Apply => {
                out.extend_from_slice(&bytes[at(transaction.offset)..end]);
                taken.push(*transaction);
            }
            Want::Skip => {}
            Want::Stop => return Ok(picked(out, &taken, executed, server_ids, true)),
        }
    }
    Ok(picked(out, &taken, executed, server_ids, false))
}

fn picked(
    bytes: Vec<u8>,
    taken: &[binlog::Transaction],
    executed: &GtidSet,
    server_ids: BTreeSet<u32>,
    passed: bool,
) -> Picked {
    Picked {
        bytes,
        transactions: taken.len() as u64,
        gtids: binlog::gtid_set(taken, matches!(executed, GtidSet::MariaDb(_))),
        server_ids,
        passed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(flavor: Flavor, text: &str) -> GtidSet {
        GtidSet::parse(flavor, text).expect("a GTID set")
    }

    #[test]
    fn the_replay_ends_holding_exactly_what_the_relay_log_brought() {
        let mariadb = |t| set(Flavor::MariaDb, t);
        let expected = mariadb("0-102-14799");
        assert!(all_applied(&expected, &mariadb("0-102-14799")).is_ok());
        // Read while the applier was one transaction behind.
        assert!(matches!(
            all_applied(&expected, &mariadb("0-102-14798")),
            Err(Error::Short(_))
        ));
        assert!(matches!(
            all_applied(&expected, &mariadb("0-102-14800")),
            Err(Error::Apply(_))
        ));
        let uuid = "3e11fa47-71ca-11e1-9e33-c80aa9429562";
        let mysql = |t: &str| set(Flavor::MySql84, &t.replace("U", uuid));
        let expected = mysql("U:1-40");
        assert!(all_applied(&expected, &mysql("U:1-40")).is_ok());
        assert!(all_applied(&expected, &mysql("U:1-39")).is_err());
        assert!(all_applied(&expected, &mysql("U:1-38:40")).is_err());
    }
}
