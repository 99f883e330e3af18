//! A MariaDB replica's relay log across its server's restart (M6). MariaDB
//! (with GTID positioning) discards the relay log whenever replication
//! starts with both threads stopped, which is how every server starts here
//! (`skip_slave_start`). What it received but had not applied may be the
//! only copy of an acknowledged write once the primary is gone, so after
//! each start of its server the agent applies what the relay log holds
//! beyond `gtid_slave_pos` (`mariadb-binlog` into the server, keeping the
//! transactions' own GTIDs) and moves `gtid_slave_pos` past it. Until that
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
use ebisu_mysql::ThreadState;
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
                    shared.set_relay_log_error(None);
                }
                // A server that does not answer is the other tasks' to report.
                Err(error @ Error::Server(_)) => {
                    debug!(%error, "the relay log is not read yet");
                }
                Err(error) => {
                    let error = error.to_string();
                    if shared.relay_log_error().as_deref() != Some(error.as_str()) {
                        warn!(%error, "the relay log is not read yet; replication stays stopped until it is");
                    }
                    shared.set_relay_log_error(Some(error));
                }
            }
        }
        tokio::time::sleep(LOOK_EVERY).await;
    }
}

/// Applies the relay log if nobody started replication since the server
/// started, then takes the lock on a connection opened before the look, so
/// a server that restarted meanwhile is never marked read.
async fn take_care(shared: &Shared) -> Result<mysql_async::Conn, Error> {
    let mut held = shared.monitor_conn().await?;
    let mut root = shared.root_conn().await?;
    let flavor = shared.flavor(&mut root).await?;
    let stopped = server::replica_status(&mut root, flavor)
        .await?
        .is_some_and(|r| r.io_running == ThreadState::No && !r.sql_running);
    if stopped {
        // Nobody started replication since the server started (or it was
        // stopped since): the relay log is still what it received.
        salvage(shared, &mut root).await?;
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

/// Applies what the relay log holds beyond `gtid_slave_pos`.
async fn salvage(shared: &Shared, conn: &mut mysql_async::Conn) -> Result<(), Error> {
    let data_dir = &shared.config.data_dir;
    let index = data_dir.join(format!("{RELAY_LOG}.index"));
    let files = match std::fs::read_to_string(&index) {
        Ok(text) => relay_files(&text, data_dir),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(source) => {
            return Err(Error::Io {
                action: "read the relay log index",
                source,
            });
        }
    };
    if files.is_empty() {
        return Ok(());
    }
    let applied: String = conn
        .query_first("SELECT @@GLOBAL.gtid_slave_pos")
        .await
        .map_err(|source| Error::Sql {
            action: "read gtid_slave_pos",
            source,
        })?
        .unwrap_or_default();
    let before: String = binlog_pos(conn).await?;

    let (_scratch, defaults) =
        shared
            .root_option_file("ebisu-relay-")
            .map_err(|source| Error::Io {
                action: "write the client's option file",
                source,
            })?;

    let mut reader = tokio::process::Command::new("mariadb-binlog");
    reader.args(reader_args(&applied, &files));
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
            warn!(tool, stderr = %last_lines(&output.stderr), "applying the relay log failed");
            return Err(Error::Apply(format!(
                "{tool} {}{}",
                output.status,
                error_numbers(&output.stderr)
            )));
        }
    }
    // The applied transactions are in the binary log under their own
    // GTIDs; replication resumes after them.
    conn.query_drop("SET GLOBAL gtid_slave_pos = @@GLOBAL.gtid_binlog_pos")
        .await
        .map_err(|source| Error::Sql {
            action: "move gtid_slave_pos past the relay log",
            source,
        })?;
    let after = binlog_pos(conn).await?;
    if after == before {
        info!(gtid_slave_pos = %applied, "the relay log held nothing beyond what was applied");
    } else {
        info!(from = %before, to = %after, "applied what the relay log held beyond what was applied before the server stopped");
    }
    Ok(())
}

async fn binlog_pos(conn: &mut mysql_async::Conn) -> Result<String, Error> {
    Ok(conn
        .query_first("SELECT @@GLOBAL.gtid_binlog_pos")
        .await
        .map_err(|source| Error::Sql {
            action: "read gtid_binlog_pos",
            source,
        })?
        .unwrap_or_default())
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

fn last_lines(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let lines: Vec<&str> = text.lines().rev().take(3).collect();
    lines.into_iter().rev().collect::<Vec<_>>().join(" | ")
}

#[cfg(test)]
mod tests {
    use super::*;

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
