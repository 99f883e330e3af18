//! The server's upgrade step after it starts on a new release. MariaDB
//! leaves its system tables as the previous release made them until
//! `mariadb-upgrade` runs; MySQL (8.0.16 and later) upgrades its data
//! dictionary and system tables itself while starting, so nothing runs for
//! it. The step is local: nothing it does is written to the binary log, so
//! a replica gains no transaction the primary lacks.

use std::path::Path;

use ebisu_api::Flavor as FlavorFamily;
use ebisu_mysql::ServerVersion;
use tracing::info;

use super::Shared;
use crate::server;

/// The files MariaDB records the release its system tables match in
/// (`mysql_upgrade_info` until 11.x renamed it).
const INFO_FILES: [&str; 2] = ["mariadb_upgrade_info", "mysql_upgrade_info"];
/// What `mariadb-backup` leaves in a copy it made: the donor's release on
/// its `server_version` line. A copy carries no upgrade record, but its
/// tables are the donor's.
const BACKUP_INFO_FILES: [&str; 2] = ["mariadb_backup_info", "xtrabackup_info"];

/// Why the upgrade step did not run to the end.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The server could not be reached.
    #[error(transparent)]
    Server(#[from] server::Error),
    /// The server's version could not be read.
    #[error("failed to read the server's version: {0}")]
    Version(#[from] ebisu_mysql::driver::ReadError),
    /// The credentials file could not be written.
    #[error("failed to write the upgrade tool's credentials file: {0}")]
    Credentials(#[source] std::io::Error),
    /// The tool could not be started.
    #[error("failed to run mariadb-upgrade: {0}")]
    Spawn(#[source] std::io::Error),
    /// The tool failed.
    #[error(
        "failed to upgrade the system tables from {from} to {to}: mariadb-upgrade said: {output}"
    )]
    Failed {
        /// The release the tables matched.
        from: String,
        /// The running release.
        to: ServerVersion,
        /// The tool's last lines.
        output: String,
    },
}

/// Runs `mariadb-upgrade` once when the system tables were made by another
/// release than the running server's.
pub async fn run(shared: &Shared) -> Result<(), Error> {
    if shared.config.family != FlavorFamily::Mariadb {
        return Ok(());
    }
    let mut conn = shared.root_conn().await?;
    let (running, _) = ebisu_mysql::driver::read_version(&mut conn).await?;
    drop(conn);
    let recorded = recorded_release(&shared.config.data_dir);
    if !needs_upgrade(recorded.as_deref(), &running) {
        return Ok(());
    }
    let from = recorded.unwrap_or_else(|| "an unrecorded release".to_owned());
    info!(%from, to = %running, "upgrading the system tables");
    let (_scratch, defaults) = shared
        .root_option_file("ebisu-upgrade-")
        .map_err(Error::Credentials)?;
    let output = tokio::process::Command::new("mariadb-upgrade")
        .arg(format!("--defaults-file={}", defaults.display()))
        .args(["--skip-write-binlog", "--silent"])
        .kill_on_drop(true)
        .output()
        .await
        .map_err(Error::Spawn)?;
    if !output.status.success() {
        let text = String::from_utf8_lossy(&output.stderr);
        return Err(Error::Failed {
            from,
            to: running,
            output: text.lines().rev().take(5).collect::<Vec<_>>().join(" | "),
        });
    }
    info!(to = %running, "system tables upgraded");
    Ok(())
}

fn recorded_release(data_dir: &Path) -> Option<String> {
    let read = |name: &&str| std::fs::read_to_string(data_dir.join(name)).ok();
    INFO_FILES
        .iter()
        .find_map(|name| {
            read(name).map(|text| {
                text.trim_matches(|c: char| c.is_whitespace() || c == '\0')
                    .to_owned()
            })
        })
        .or_else(|| {
            BACKUP_INFO_FILES
                .iter()
                .find_map(|name| donor_release(&read(name)?))
        })
}

/// The `server_version` a backup's info file names.
fn donor_release(info: &str) -> Option<String> {
    info.lines().find_map(|line| {
        let (key, value) = line.split_once('=')?;
        (key.trim() == "server_version").then(|| value.trim().to_owned())
    })
}

/// Whether tables recorded as made by `recorded` (the info file's text,
/// `None` when there is none) need the upgrade step on `running`: another
/// release series (the tool itself skips a patch release of the same one).
fn needs_upgrade(recorded: Option<&str>, running: &ServerVersion) -> bool {
    match recorded.map(ServerVersion::parse) {
        Some(Ok(made_by)) => (made_by.major, made_by.minor) != (running.major, running.minor),
        // No record (a copy that did not carry it) or one nobody can read:
        // the tool checks and records itself.
        Some(Err(_)) | None => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mariadb(text: &str) -> ServerVersion {
        ServerVersion::parse(text).unwrap()
    }

    #[test]
    fn only_tables_of_another_series_or_unrecorded_ones_are_upgraded() {
        let running = mariadb("11.4.5-MariaDB-1");
        assert!(!needs_upgrade(Some("11.4.5-MariaDB"), &running));
        assert!(!needs_upgrade(Some("11.4.4-MariaDB"), &running));
        assert!(needs_upgrade(Some("11.2.4-MariaDB"), &running));
        assert!(needs_upgrade(Some("10.11.9-MariaDB"), &running));
        assert!(needs_upgrade(None, &running));
        assert!(needs_upgrade(Some("garbage"), &running));
    }

    #[test]
    fn a_copy_counts_as_made_by_its_donors_release() {
        let info = "tool_version = 10.11.19-MariaDB\nserver_version = 10.11.9-MariaDB-0+deb12u1\nstart_time = x\n";
        assert_eq!(
            donor_release(info).as_deref(),
            Some("10.11.9-MariaDB-0+deb12u1")
        );
        assert_eq!(donor_release("tool_version = 1\n"), None);
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("xtrabackup_info"), info).unwrap();
        assert_eq!(
            recorded_release(dir.path()).as_deref(),
            Some("10.11.9-MariaDB-0+deb12u1")
        );
        std::fs::write(dir.path().join("mysql_upgrade_info"), "10.11.19-MariaDB").unwrap();
        assert_eq!(
            recorded_release(dir.path()).as_deref(),
            Some("10.11.19-MariaDB")
        );
    }
}
