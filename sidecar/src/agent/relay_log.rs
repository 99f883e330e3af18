//! A MariaDB replica's relay log across its server's restart (M6). MariaDB
//! (with GTID positioning) discards the relay log whenever replication
//! starts with both threads stopped, which is how every server starts here
//! (`skip_slave_start`). What it received but had not applied may be the
//! only copy of an acknowledged write once the primary is gone, so after
//! each start of its server the agent reads the relay log's last GTIDs and,
//! when neither its server nor its source (asked directly) holds them,
//! applies what the relay log holds beyond its server's position
//! (`mariadb-binlog` into the server, keeping the transactions' own GTIDs)
//! and moves `gtid_slave_pos` past it. A source that holds them serves them
//! again, faster than a client can apply them. Until that
//! is done for the running server (the agent then holds a user-level lock
//! on it, which a restart drops), `/status` says `relay_log_unread` and
//! the operator starts no replication there and chooses no failover
//! candidate. MySQL keeps its relay log across a restart and starts the
//! applier alone, so it needs none of this.

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    sync::Arc,
    time::Duration,
};

use ebisu_api::Flavor as FlavorFamily;
use ebisu_mysql::{MariaDbGtidPos, ThreadState};
use mysql_async::prelude::Queryable;
use tracing::{debug, info, warn};

use super::Shared;
use crate::server;

/// The relay log's base name (`relay_log` in the server's my.cnf).
const RELAY_LOG: &str = "relay-bin";

/// How often the agent looks whether its server started again.
const LOOK_EVERY: Duration = Duration::from_millis(500);

/// The user-level lock the agent holds on its server once the running
/// server's relay log is taken care of. The server forgets it when it
/// stops, so a restarted server is unread until the agent takes it again,
/// with no clock involved.
const READ_LOCK: &str = "ebisu_relay_log_read";

/// Why the relay log could not be read or applied.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The server could not be reached or refused a statement.
    #[error(transparent)]
    Server(#[from] server::Error),
    /// A statement failed.
    #[error("failed to {action}: {source}")]
    Sql {
        /// What was being done.
        action: &'static str,
        /// The driver's error.
        #[source]
        source: mysql_async::Error,
    },
    /// The relay log index or the scratch files could not be used.
    #[error("failed to {action}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// `mariadb-binlog` or the client failed.
    #[error("failed to apply the relay log: {0}")]
    Apply(String),
    /// Another connection holds the lock.
    #[error("failed to take the lock {READ_LOCK}: another connection holds it")]
    Locked,
}

fn sql(action: &'static str) -> impl FnOnce(mysql_async::Error) -> Error {
    move |source| Error::Sql { action, source }
}

/// Whether `/status` must say the relay log is unread: MariaDB, and the
/// running server's relay log not taken care of yet (nobody holds the lock).
pub async fn unread(shared: &Shared, conn: &mut mysql_async::Conn) -> Result<bool, Error> {
    if shared.config.family != FlavorFamily::Mariadb {
        return Ok(false);
    }
    let holder: Option<Option<u64>> = conn
        .query_first(format!("SELECT IS_USED_LOCK('{READ_LOCK}')"))
        .await
        .map_err(sql("read the relay log lock"))?;
    Ok(holder.flatten().is_none())
}

/// Takes care of the relay log after every start of the server, and holds
/// the lock that says so while the server runs.
pub async fn run(shared: Arc<Shared>) {
    if shared.config.family != FlavorFamily::Mariadb {
        return;
    }
    let mut held: Option<mysql_async::Conn> = None;
    loop {
        let alive = match held.as_mut() {
            Some(conn) => conn.ping().await.is_ok(),
            None => false,
        };
        if !alive {
            held = None;
            match take_care(&shared).await {
                Ok(conn) => {
                    held = Some(conn);
                    shared.relay_log_error.set(None);
                }
                // A server that does not answer is the other tasks' to report.
                Err(error @ Error::Server(_)) => {
                    debug!(%error, "the relay log is not read yet");
                }
                Err(error) => {
                    let error = error.to_string();
                    if shared.relay_log_error.set(Some(error.clone())) {
                        warn!(%error, "the relay log is not read yet; replication stays stopped until it is");
                    }
                }
            }
        }
        tokio::time::sleep(LOOK_EVERY).await;
    }
}

/// Applies the relay log if nobody started replication since the server
/// started and it holds transactions neither this server nor its source
/// has, then takes the lock on a connection opened before the look, so a
/// server that restarted meanwhile is never marked read.
async fn take_care(shared: &Shared) -> Result<mysql_async::Conn, Error> {
    let mut held = shared.monitor_conn().await?;
    let mut root = shared.root_conn().await?;
    let flavor = shared.flavor(&mut root).await?;
    let stopped = server::replica_status(&mut root, flavor)
        .await?
        .filter(|r| r.io_running == ThreadState::No && !r.sql_running);
    if let Some(replica) = stopped {
        // Nobody started replication since the server started (or it was
        // stopped since): the relay log is still what it received.
        let files = relay_log_files(&shared.config.data_dir)?;
        let applied = applied(&mut root).await?;
        let received = relay_log_end(&files).await?;
        if applied.contains(&received) {
            // Nothing unapplied.
        } else if !same_cluster(&shared.config.advertise_host, &replica.source_host) {
            // A server restored from a backup: what it received after the
            // backup's GTID set is not part of the backup.
            info!(source = %replica.source_host, "the relay log came from outside this cluster: not applied");
        } else if source_holds(shared, &replica, &received).await {
            info!(source = %replica.source_host, received = %received, "the source holds everything the relay log does: replication fetches it again");
        } else {
            salvage(shared, &mut root, &files, &applied).await?;
        }
    }
    drop(root);
    let got: Option<Option<i64>> = held
        .query_first(format!("SELECT GET_LOCK('{READ_LOCK}', 0)"))
        .await
        .map_err(sql("take the relay log lock"))?;
    if got.flatten() != Some(1) {
        return Err(Error::Locked);
    }
    Ok(held)
}

fn relay_log_files(data_dir: &Path) -> Result<Vec<PathBuf>, Error> {
    let index = data_dir.join(format!("{RELAY_LOG}.index"));
    match std::fs::read_to_string(&index) {
        Ok(text) => Ok(relay_files(&text, data_dir)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(source) => Err(Error::Io {
            action: "read the relay log index",
            source,
        }),
    }
}

/// What the server holds: per domain, the later of its binary log and its
/// applier's position (a copy seeded by a clone has the second alone; a
/// salvage cut short has the first ahead), so applying again after a crash
/// never repeats a transaction.
async fn applied(conn: &mut mysql_async::Conn) -> Result<MariaDbGtidPos, Error> {
    let (binlog, slave): (String, String) = conn
        .query_first("SELECT @@GLOBAL.gtid_binlog_pos, @@GLOBAL.gtid_slave_pos")
        .await
        .map_err(sql("read the server's GTID positions"))?
        .unwrap_or_default();
    Ok(gtid_pos(&binlog)?.union(&gtid_pos(&slave)?))
}

fn gtid_pos(text: &str) -> Result<MariaDbGtidPos, Error> {
    MariaDbGtidPos::parse(text).map_err(|e| Error::Apply(format!("a GTID position: {e}")))
}

/// The last GTID per domain in the relay log files.
async fn relay_log_end(files: &[PathBuf]) -> Result<MariaDbGtidPos, Error> {
    if files.is_empty() {
        return Ok(MariaDbGtidPos::new());
    }
    let output = tokio::process::Command::new("mariadb-binlog")
        .args(reader_args("", files))
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| Error::Apply(format!("mariadb-binlog: {e}")))?;
    if !output.status.success() {
        return Err(Error::Apply(format!(
            "mariadb-binlog {}{}",
            output.status,
            error_numbers(&output.stderr)
        )));
    }
    let text = String::from_utf8_lossy(&output.stdout);
    let mut end = MariaDbGtidPos::new();
    for gtid in text.lines().filter_map(gtid_of_line) {
        end = end.union(&gtid_pos(gtid)?);
    }
    Ok(end)
}

/// The GTID a `mariadb-binlog` header line announces (`... GTID 0-1-5 trans`).
fn gtid_of_line(line: &str) -> Option<&str> {
    if !line.starts_with('#') {
        return None;
    }
    let (_, rest) = line.split_once("\tGTID ")?;
    rest.split_whitespace().next()
}

/// Whether the replica's source answers and holds `received` (so the relay
/// log may be discarded and fetched again). Any account may read a global
/// variable; the replication account is the one meant for the source.
/// Whether `source` is a peer of this server: the same headless Service
/// domain (`<pod>.<cluster>.<namespace>...`).
fn same_cluster(own_host: &str, source: &str) -> bool {
    let domain = |host: &str| host.split_once('.').map(|(_, d)| d.to_owned());
    domain(own_host).is_some() && domain(own_host) == domain(source)
}

async fn source_holds(
    shared: &Shared,
    replica: &ebisu_mysql::ReplicaStatus,
    received: &MariaDbGtidPos,
) -> bool {
    let account = shared
        .credentials
        .users
        .get(ebisu_mysql::ServiceRole::Replication);
    let look = async {
        let endpoint = server::Endpoint::Tcp(replica.source_host.clone(), replica.source_port);
        let mut conn =
            server::connect(&endpoint, account.user.as_str(), account.password.reveal()).await?;
        Ok::<_, Error>(applied(&mut conn).await?.contains(received))
    };
    match tokio::time::timeout(Duration::from_secs(3), look).await {
        Ok(Ok(holds)) => holds,
        Ok(Err(error)) => {
            info!(%error, source = %replica.source_host, "the source cannot tell what it holds: the relay log is applied here");
            false
        }
        Err(_) => false,
    }
}

/// Applies what the relay log holds beyond `held`.
async fn salvage(
    shared: &Shared,
    conn: &mut mysql_async::Conn,
    files: &[PathBuf],
    held: &MariaDbGtidPos,
) -> Result<(), Error> {
    let start = held.to_string();

    let (_scratch, defaults) =
        shared
            .root_option_file("ebisu-relay-")
            .map_err(|source| Error::Io {
                action: "write the client's option file",
                source,
            })?;

    let mut reader = tokio::process::Command::new("mariadb-binlog");
    reader.args(reader_args(&start, files));
    let mut reader = reader
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| Error::Apply(format!("mariadb-binlog: {e}")))?;
    let events: Stdio = reader
        .stdout
        .take()
        .ok_or_else(|| Error::Apply("mariadb-binlog has no output".to_owned()))?
        .try_into()
        .map_err(|e| Error::Apply(format!("mariadb-binlog's output: {e}")))?;
    let client = tokio::process::Command::new("mariadb")
        .arg(format!("--defaults-file={}", defaults.display()))
        .stdin(events)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| Error::Apply(format!("mariadb: {e}")))?;
    let (read, written) = tokio::join!(reader.wait_with_output(), client.wait_with_output());
    let read = read.map_err(|e| Error::Apply(format!("mariadb-binlog: {e}")))?;
    let written = written.map_err(|e| Error::Apply(format!("mariadb: {e}")))?;
    for (tool, output) in [("mariadb-binlog", &read), ("mariadb", &written)] {
        if !output.status.success() {
            // The log keeps the tool's words; the error (read by anyone
            // through /status) keeps only error numbers: a statement's
            // text can carry row values.
            warn!(tool, failure = %crate::backup_tool::failure(output), "applying the relay log failed");
            return Err(Error::Apply(format!(
                "{tool} {}{}",
                output.status,
                error_numbers(&output.stderr)
            )));
        }
    }
    // The applied transactions are in the binary log under their own
    // GTIDs; replication resumes after them.
    let now = applied(conn).await?;
    conn.query_drop(format!("SET GLOBAL gtid_slave_pos = '{now}'"))
        .await
        .map_err(sql("move gtid_slave_pos past the relay log"))?;
    if now == *held {
        info!(held = %start, "the relay log held nothing beyond what was applied");
    } else {
        info!(from = %start, to = %now, "applied what the relay log held beyond what was applied before the server stopped");
    }
    Ok(())
}

/// The relay log files an index lists, oldest first (relative names are
/// the data directory's).
fn relay_files(index: &str, data_dir: &Path) -> Vec<PathBuf> {
    index
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|l| {
            let path = Path::new(l);
            if path.is_absolute() {
                path.to_owned()
            } else {
                data_dir.join(l.trim_start_matches("./"))
            }
        })
        .collect()
}

/// `mariadb-binlog`'s arguments: every transaction after `applied` (a GTID
/// position; empty: from the start) in `files`.
fn reader_args(applied: &str, files: &[PathBuf]) -> Vec<String> {
    // In its strict mode the reader fails on a relay log that holds no
    // transaction at all (it never "reaches" the start position); the
    // server applies with gtid_strict_mode on, so a transaction out of
    // order is still refused there.
    let mut args = vec!["--skip-gtid-strict-mode".to_owned()];
    if !applied.trim().is_empty() {
        args.push(format!("--start-position={}", applied.trim()));
    }
    args.extend(files.iter().map(|f| f.display().to_string()));
    args
}

/// `, errors 1062, 1146` for the server error numbers the client named.
fn error_numbers(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let numbers: Vec<&str> = text
        .split("ERROR ")
        .skip(1)
        .filter_map(|rest| {
            let digits = rest.split(|c: char| !c.is_ascii_digit()).next()?;
            (!digits.is_empty()).then_some(digits)
        })
        .collect();
    if numbers.is_empty() {
        String::new()
    } else {
        format!(", errors {}", numbers.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_peer_is_a_source_of_this_cluster() {
        let own = "shop-1.shop.prod.svc.cluster.local";
        assert!(same_cluster(own, "shop-0.shop.prod.svc.cluster.local"));
        assert!(!same_cluster(own, "old-0.old.prod.svc.cluster.local"));
        assert!(!same_cluster("shop-1", "shop-0"));
    }

    #[test]
    fn the_index_names_files_in_the_data_directory() {
        let dir = Path::new("/var/lib/mysql");
        assert_eq!(
            relay_files("./relay-bin.000001\n./relay-bin.000002\n\n", dir),
            [dir.join("relay-bin.000001"), dir.join("relay-bin.000002")]
        );
        assert_eq!(
            relay_files("/elsewhere/relay-bin.000009\n", dir),
            [PathBuf::from("/elsewhere/relay-bin.000009")]
        );
        assert!(relay_files("", dir).is_empty());
    }

    #[test]
    fn only_error_numbers_leave_the_tools_words() {
        assert_eq!(
            error_numbers(
                b"ERROR 1062 (23000) at line 40: Duplicate entry 'secret' for key 'PRIMARY'\n"
            ),
            ", errors 1062"
        );
        assert_eq!(error_numbers(b"ERROR: Could not read entry\n"), "");
    }

    #[test]
    fn gtids_are_read_from_the_readers_header_lines_only() {
        assert_eq!(
            gtid_of_line(
                "#261203 22:59:54 server id 2  end_log_pos 1183 CRC32 0xb079bc7d \tGTID 0-2-6 trans"
            ),
            Some("0-2-6")
        );
        assert_eq!(gtid_of_line("SET @@session.gtid_seq_no=6/*!*/;"), None);
        assert_eq!(gtid_of_line("# at 1183"), None);
    }

    #[test]
    fn the_reader_starts_after_what_was_applied() {
        let files = [PathBuf::from("/d/relay-bin.000002")];
        assert_eq!(
            reader_args("0-100-7", &files),
            [
                "--skip-gtid-strict-mode",
                "--start-position=0-100-7",
                "/d/relay-bin.000002"
            ]
        );
        assert_eq!(
            reader_args("", &files),
            ["--skip-gtid-strict-mode", "/d/relay-bin.000002"]
        );
    }
}
