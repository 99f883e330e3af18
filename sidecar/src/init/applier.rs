//! The server's own replication applier as the replay's engine: the files
//! to replay laid out as the server's relay log, the server id it runs
//! under (one none of their events carry, since an applier skips its own
//! server's events), and what the applier is doing. Measured against piping
//! the binary log reader into a client (`tests/bench-replay.sh`): 1.8× as
//! fast on MariaDB serially, 3.4× on MySQL with 4 workers.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};

use ebisu_mysql::{Flavor, driver};
use mysql_async::{Conn, prelude::Queryable};

/// Why the applier's state could not be read.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The server did not answer.
    #[error("failed to read the applier's relay log or state: {0}")]
    Read(String),
    /// A relay log file could not be handled.
    #[error("failed to {action} {}: {source}", path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

/// Parallel workers for the replay: MySQL's multi-threaded applier with 4
/// (3.4× the pipe on two cores); serial on MariaDB, whose parallel applier
/// crashed 10.11.19 on such a relay log, in both of its modes.
pub fn workers(flavor: Flavor) -> u32 {
    if flavor.is_mariadb() { 0 } else { 4 }
}

/// The server id the replay runs under: the highest that none of the
/// replayed events carry.
pub fn replay_server_id(used: &BTreeSet<u32>) -> u32 {
    (1..=u32::MAX)
        .rev()
        .find(|id| !used.contains(id))
        .unwrap_or(u32::MAX)
}

/// The server's relay log: `<basename>.000001`, … listed in
/// `<basename>.index`.
#[derive(Debug, Clone)]
pub struct RelayLog {
    basename: PathBuf,
}

impl RelayLog {
    /// The relay log at `basename`.
    pub fn new(basename: impl Into<PathBuf>) -> Self {
        Self {
            basename: basename.into(),
        }
    }

    /// The `n`th file (from 0).
    pub fn file(&self, n: usize) -> PathBuf {
        PathBuf::from(format!("{}.{:06}", self.basename.display(), n + 1))
    }

    /// The first file's name, as `RELAY_LOG_FILE` takes it.
    pub fn first_name(&self) -> String {
        self.file(0)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    /// The path its files' names begin with.
    pub fn basename(&self) -> &Path {
        &self.basename
    }

    /// Its index.
    pub fn index(&self) -> PathBuf {
        PathBuf::from(format!("{}.index", self.basename.display()))
    }

    /// Removes every file of the relay log and its index (an earlier
    /// server's, or a replay's interrupted by a crash).
    pub fn clear(&self) -> Result<(), Error> {
        let io = |action, path: &Path| {
            let path = path.to_owned();
            move |source| Error::Io {
                action,
                path,
                source,
            }
        };
        let dir = self
            .basename
            .parent()
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
        let stem = self
            .basename
            .file_name()
            .map(|n| format!("{}.", n.to_string_lossy()))
            .unwrap_or_default();
        for entry in std::fs::read_dir(&dir).map_err(io("list", &dir))? {
            let entry = entry.map_err(io("list", &dir))?;
            if entry.file_name().to_string_lossy().starts_with(&stem) {
                let path = entry.path();
                std::fs::remove_file(&path).map_err(io("remove", &path))?;
            }
        }
        Ok(())
    }

    /// Writes the index listing the first `count` files.
    pub fn write_index(&self, count: usize) -> Result<(), Error> {
        let path = self.index();
        let mut out = std::fs::File::create(&path).map_err(|source| Error::Io {
            action: "write",
            path: path.clone(),
            source,
        })?;
        let lines: String = (0..count)
            .map(|n| format!("{}\n", self.file(n).display()))
            .collect();
        out.write_all(lines.as_bytes())
            .and_then(|()| out.sync_all())
            .map_err(|source| Error::Io {
                action: "write",
                path,
                source,
            })
    }
}

/// What the applier is doing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// Reading or applying.
    Applying,
    /// It has applied everything its relay log holds.
    Idle,
    /// It stopped, for this reason.
    Stopped(String),
}

/// Reads what the applier is doing. With parallel workers, idle means the
/// coordinator read everything and no worker applies a transaction.
pub async fn state(conn: &mut Conn, flavor: Flavor) -> Result<State, Error> {
    let status = driver::replica_status(conn, flavor)
        .await
        .map_err(|e| Error::Read(e.to_string()))?;
    let Some(status) = status else {
        return Ok(State::Stopped(
            "the server has no applier configured".to_owned(),
        ));
    };
    if status.last_sql_errno != 0 || !status.sql_running {
        return Ok(State::Stopped(match status.last_sql_error {
            Some(error) => format!("error {}: {error}", status.last_sql_errno),
            None => "it stopped without an error".to_owned(),
        }));
    }
    if !status.read_all_relay_log {
        return Ok(State::Applying);
    }
    if flavor.is_mariadb() {
        return Ok(State::Idle);
    }
    let busy: Option<u64> = conn
        .query_first(
            "SELECT COUNT(*) FROM performance_schema.replication_applier_status_by_worker \
             WHERE APPLYING_TRANSACTION <> ''",
        )
        .await
        .map_err(|e| Error::Read(e.to_string()))?;
    Ok(if busy.unwrap_or(0) == 0 {
        State::Idle
    } else {
        State::Applying
    })
}

/// The server's relay log: `relay_log` (which the configuration sets), in
/// the data directory unless it names a path.
pub async fn relay_log(conn: &mut Conn) -> Result<RelayLog, Error> {
    let read: Option<(String, Option<String>)> = conn
        .query_first("SELECT @@GLOBAL.datadir, @@GLOBAL.relay_log")
        .await
        .map_err(|e| Error::Read(e.to_string()))?;
    match read {
        Some((datadir, Some(name))) if !name.is_empty() => {
            Ok(RelayLog::new(Path::new(&datadir).join(name)))
        }
        _ => Err(Error::Read(
            "the server names no relay log (relay_log is not set)".to_owned(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_replay_runs_under_an_id_no_event_carries() {
        assert_eq!(replay_server_id(&BTreeSet::new()), u32::MAX);
        assert_eq!(replay_server_id(&[100, 101, 102].into()), u32::MAX);
        assert_eq!(
            replay_server_id(&[u32::MAX, u32::MAX - 1, 7].into()),
            u32::MAX - 2
        );
    }

    #[test]
    fn serial_on_mariadb_four_workers_on_mysql() {
        assert_eq!(workers(Flavor::MariaDb), 0);
        assert_eq!(workers(Flavor::MySql84), 4);
    }

    #[test]
    fn the_relay_log_is_laid_out_beside_its_index_and_cleared_whole() {
        let dir = std::env::temp_dir().join(format!("ebisu-relay-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("relay-bin.000007"), b"old").unwrap();
        std::fs::write(dir.join("ibdata1"), b"keep").unwrap();
        let relay = RelayLog::new(dir.join("relay-bin"));
        relay.clear().unwrap();
        assert!(!dir.join("relay-bin.000007").exists());
        assert!(dir.join("ibdata1").exists(), "only the relay log's files");
        assert_eq!(relay.file(0), dir.join("relay-bin.000001"));
        assert_eq!(relay.first_name(), "relay-bin.000001");
        relay.write_index(2).unwrap();
        let index = std::fs::read_to_string(dir.join("relay-bin.index")).unwrap();
        assert_eq!(
            index,
            format!(
                "{}\n{}\n",
                dir.join("relay-bin.000001").display(),
                dir.join("relay-bin.000002").display()
            )
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
