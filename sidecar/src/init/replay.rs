//! A restore to a point, on the restored cluster's first instance before
//! its server opens: the archive's manifests are read and the replay
//! planned again (`ebisu_mysql::archive::replay`, as the operator did
//! before it made anything), each planned segment is fetched and checked
//! against its SHA-256, the transactions the server lacks up to the target
//! are written out behind their file's head, and the flavor's binary log
//! reader pipes them into a temporary server without networking (no client
//! can write before the replay ends). The GTID set reached is checked
//! against what the archive says the target holds, then recorded in the
//! data directory, so a replay interrupted by a crash runs again (skipping
//! what the server already holds) and a finished one never does.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use ebisu_api::{Flavor as FlavorFamily, agent::ReplayOrder};
use ebisu_mysql::{
    Flavor, GtidSet,
    archive::replay::{self, Plan, PlannedSegment, Target, Want},
    binlog,
};
use mysql_async::prelude::Queryable;
use tokio::io::AsyncWriteExt;
use tracing::info;

use super::{Settings, temp_server};
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
    /// The reader or the client failed.
    #[error("failed to apply the archive: {0}")]
    Apply(String),
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
    let client = ebisu_aws::s3(&ebisu_aws::config(std::time::Duration::from_secs(30)).await);
    let prefix = order.prefix.trim_end_matches('/');
    let manifests = archive_store::manifests(&client, &order.bucket, prefix).await?;
    let plan = replay::plan(flavor, &backup, &manifests, &target)
        .map_err(|r| Error::Refused(format!("{}: {r}", r.reason())))?;
    info!(%target, files = plan.files.len(), "replaying the archive");

    let mut temp = temp_server::start(settings, "root", credentials.root_password.reveal()).await?;
    let held = executed(&mut temp.conn, flavor).await?;
    let scratch = settings.run_dir.join("ebisu-replay");
    let _ = std::fs::remove_dir_all(&scratch);
    std::fs::create_dir_all(&scratch).map_err(io("make the replay's scratch directory"))?;
    let started = std::time::Instant::now();
    let outcome = async {
        let (files, applied) = write_files(&client, order, &plan, &target, &held, &scratch).await?;
        if !files.is_empty() {
            apply(settings, credentials, &temp.socket, &files).await?;
        }
        let reached = executed(&mut temp.conn, flavor).await?;
        plan.reached(&reached).map_err(Error::Short)?;
        if flavor == Flavor::MariaDb {
            // The replayed transactions are in the binary log under the
            // GTIDs of the servers that first wrote them; the applier's
            // position, which the server's current position and a copy
            // made from it follow, still says the backup's.
            temp.conn
                .query_drop(format!("SET GLOBAL gtid_slave_pos = '{reached}'"))
                .await
                .map_err(|source| {
                    Error::Server(server::Error::Sql {
                        action: "move gtid_slave_pos to the GTIDs replayed",
                        source,
                    })
                })?;
        }
        Ok::<_, Error>((reached, applied))
    }
    .await;
    let _ = std::fs::remove_dir_all(&scratch);
    let (reached, applied) = match outcome {
        Ok(done) => done,
        Err(error) => {
            let _ = temp.stop().await;
            return Err(error);
        }
    };
    temp.stop().await?;
    std::fs::write(&marker, format!("{reached}\n")).map_err(io("record the replay as done"))?;
    info!(%reached, transactions = applied, seconds = started.elapsed().as_secs_f64(), "replayed the archive to the target");
    Ok(())
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

/// Fetches the planned segments and writes, per file, its head and the
/// transactions to replay, a segment at a time; the files written and how
/// many transactions they hold.
async fn write_files(
    client: &aws_sdk_s3::Client,
    order: &ReplayOrder,
    plan: &Plan,
    target: &Target,
    executed: &GtidSet,
    scratch: &Path,
) -> Result<(Vec<PathBuf>, u64), Error> {
    let mut written = Vec::new();
    let mut applied = 0;
    for (n, file) in plan.files.iter().enumerate() {
        let path = scratch.join(format!("{n:06}.bin"));
        let mut out = tokio::fs::File::create(&path)
            .await
            .map_err(io("write a file to replay"))?;
        let mut count = 0;
        let mut stop = false;
        for segment in &file.segments {
            let bytes = archive_store::get(client, &order.bucket, &segment.data_key).await?;
            let (picked, found, passed) = pick(&bytes, segment, target, executed)?;
            out.write_all(&picked)
                .await
                .map_err(io("write a file to replay"))?;
            count += found;
            if passed {
                stop = true;
                break;
            }
        }
        out.flush().await.map_err(io("write a file to replay"))?;
        if count > 0 {
            written.push(path);
            applied += count;
        }
        if stop {
            break;
        }
    }
    Ok((written, applied))
}

/// Of one checked segment: its file's head (when it starts the file) and
/// the transactions to replay, how many, and whether the target time was
/// passed.
fn pick(
    bytes: &[u8],
    segment: &PlannedSegment,
    target: &Target,
    executed: &GtidSet,
) -> Result<(Vec<u8>, u64, bool), Error> {
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
    let at = |offset: u64| usize::try_from(offset - segment.start).unwrap_or(bytes.len());
    let mut out = Vec::new();
    if segment.start == 0 {
        // The head: format description and preceding GTIDs.
        let head_end = transactions.first().map_or(bytes.len(), |t| at(t.offset));
        out.extend_from_slice(&bytes[..head_end]);
    }
    let mut count = 0;
    for (i, transaction) in transactions.iter().enumerate() {
        let end = transactions
            .get(i + 1)
            .map_or(bytes.len(), |next| at(next.offset));
        match replay::wanted(target, executed, transaction) {
            Want::Apply => {
                out.extend_from_slice(&bytes[at(transaction.offset)..end]);
                count += 1;
            }
            Want::Skip => {}
            Want::Stop => return Ok((out, count, true)),
        }
    }
    Ok((out, count, false))
}

/// Pipes the files through the flavor's binary log reader into its client,
/// as root over the temporary server's socket.
async fn apply(
    settings: &Settings,
    credentials: &ClusterCredentials,
    socket: &Path,
    files: &[PathBuf],
) -> Result<(), Error> {
    let (reader, client) = match settings.family {
        FlavorFamily::Mariadb => ("mariadb-binlog", "mariadb"),
        FlavorFamily::Mysql => ("mysqlbinlog", "mysql"),
    };
    let defaults = settings.run_dir.join("ebisu-replay.cnf");
    crate::server_config::write_atomically(
        &defaults,
        crate::backup_tool::defaults_file("", "root", credentials.root_password.reveal(), socket)
            .as_bytes(),
    )
    .map_err(io("write the client's option file"))?;
    let mut read = tokio::process::Command::new(reader)
        .args(files)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| Error::Apply(format!("{reader}: {e}")))?;
    let events: Stdio = read
        .stdout
        .take()
        .ok_or_else(|| Error::Apply(format!("{reader} has no output")))?
        .try_into()
        .map_err(|e| Error::Apply(format!("{reader}'s output: {e}")))?;
    let write = tokio::process::Command::new(client)
        .arg(format!("--defaults-file={}", defaults.display()))
        // Statements of the binary log may hold any byte.
        .arg("--binary-mode")
        .stdin(events)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| Error::Apply(format!("{client}: {e}")))?;
    let (read, written) = tokio::join!(read.wait_with_output(), write.wait_with_output());
    let _ = std::fs::remove_file(&defaults);
    let read = read.map_err(|e| Error::Apply(format!("{reader}: {e}")))?;
    let written = written.map_err(|e| Error::Apply(format!("{client}: {e}")))?;
    for (tool, output) in [(reader, &read), (client, &written)] {
        if !output.status.success() {
            return Err(Error::Apply(format!(
                "{tool} {}",
                crate::backup_tool::failure(output)
            )));
        }
    }
    Ok(())
}
