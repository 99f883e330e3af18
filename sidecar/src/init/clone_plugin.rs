//! Seeding a MySQL instance with the CLONE plugin, which every MySQL 8.0.17+
//! server has (the official images carry no xtrabackup). A temporary server
//! on a scratch directory inside the volume, reachable only through a
//! private socket, runs `CLONE INSTANCE FROM` the donor into a second
//! directory on the same volume; once it succeeded, that copy's files move
//! into the data directory. The copy carries its GTIDs (`gtid_executed`),
//! so the agent only points replication at the source with
//! auto-positioning. The donor needs BACKUP_ADMIN (the clone user); this
//! recipient uses its own root, which no peer can reach. Only the chosen
//! donor is a valid donor, `spec.clone.rateLimit` caps what is read, and
//! progress goes to the init container's log every few seconds.

use std::{path::Path, process::Stdio, time::Duration};

use ebisu_mysql::{ServiceRole, sql::quote_literal};
use mysql_async::prelude::Queryable;
use tracing::info;

use super::Settings;
use crate::{credentials::ClusterCredentials, donor::Donor, seed_marker, server};

/// Where the temporary server keeps its own (throw-away) data. (MySQL
/// cannot start on a data directory whose name begins with a dot.)
pub const SCRATCH_SERVER: &str = "ebisu-clone-server";
/// Where the copy lands before it moves into place.
pub const LANDING: &str = "ebisu-clone";

/// Why a CLONE-plugin seed failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A program or file operation failed.
    #[error("failed to {action}: {detail}")]
    Step {
        /// What was being done.
        action: &'static str,
        /// What went wrong.
        detail: String,
    },
    /// The temporary server refused or broke.
    #[error(transparent)]
    Server(#[from] server::Error),
    /// The marker could not be written.
    #[error(transparent)]
    Marker(#[from] seed_marker::Error),
}

fn step(action: &'static str) -> impl FnOnce(std::io::Error) -> Error {
    move |e| Error::Step {
        action,
        detail: e.to_string(),
    }
}

/// Clones `donor` into the empty data directory; returns the bytes copied.
pub async fn seed_from(
    settings: &Settings,
    donor: &Donor,
    credentials: &ClusterCredentials,
) -> Result<u64, Error> {
    let data = &settings.data_dir;
    let scratch = data.join(SCRATCH_SERVER);
    let landing = data.join(LANDING);
    for dir in [&scratch, &landing] {
        if dir.exists() {
            std::fs::remove_dir_all(dir).map_err(step("clear a previous attempt"))?;
        }
    }
    std::fs::create_dir_all(&scratch).map_err(step("create the scratch directory"))?;
    initialise(&scratch).await?;
    let socket = settings.run_dir.join("ebisu-clone.sock");
    let mut temp = tokio::process::Command::new("mysqld")
        .arg("--no-defaults")
        .arg(format!("--datadir={}", scratch.display()))
        .arg(format!("--socket={}", socket.display()))
        .arg(format!(
            "--pid-file={}",
            settings.run_dir.join("ebisu-clone.pid").display()
        ))
        .arg(format!(
            "--log-error={}",
            scratch.join("error.log").display()
        ))
        .args([
            "--skip-networking",
            "--mysqlx=OFF",
            "--secure-file-priv=NULL",
            "--plugin-load-add=mysql_clone.so",
        ])
        .args(as_root(&scratch))
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(step("start the temporary server"))?;
    let result = clone(
        &mut temp,
        &scratch.join("error.log"),
        &socket,
        donor,
        credentials,
        settings.clone_rate_limit,
        &landing,
    )
    .await;
    let _ = temp.start_kill();
    let _ = tokio::time::timeout(Duration::from_secs(60), temp.wait()).await;
    let bytes = result?;
    std::fs::remove_dir_all(&scratch).map_err(step("remove the scratch directory"))?;
    super::move_contents(&landing, data).map_err(step("move the copy into place"))?;
    info!(donor = %donor.server.0, bytes, "cloned with the CLONE plugin");
    // The copy carries its own gtid_executed.
    seed_marker::write(data, &donor.seed_marker(String::new(), bytes))?;
    Ok(bytes)
}

async fn initialise(scratch: &Path) -> Result<(), Error> {
    let output = tokio::process::Command::new("mysqld")
        .arg("--no-defaults")
        .arg(format!("--datadir={}", scratch.display()))
        .args(["--initialize-insecure", "--secure-file-priv=NULL"])
        .args(as_root(scratch))
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(step("initialise the temporary server"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(Error::Step {
            action: "initialise the temporary server",
            detail: crate::backup_tool::failure(&output),
        })
    }
}

/// mysqld refuses to run as root unless told to: pods run as the image's
/// mysql user, but a sidecar started as root (a test harness, a permissive
/// pod security context) says so rather than failing.
fn as_root(scratch: &Path) -> Option<&'static str> {
    use std::os::unix::fs::MetadataExt;
    // The scratch directory was just made by this process, so it belongs to
    // its effective user (a container may have no /proc to ask).
    let root = std::fs::metadata(scratch).is_ok_and(|m| m.uid() == 0);
    root.then_some("--user=root")
}

/// Waits for the temporary server's socket; fails as soon as the server
/// exits, with the end of its error log.
async fn connect_when_up(
    temp: &mut tokio::process::Child,
    error_log: &Path,
    endpoint: &server::Endpoint,
) -> Result<mysql_async::Conn, Error> {
    for _ in 0..240 {
        if let Ok(Some(status)) = temp.try_wait() {
            let log = std::fs::read_to_string(error_log).unwrap_or_default();
            let mut tail: Vec<&str> = log.lines().rev().take(5).collect();
            tail.reverse();
            // Errors before the log opens go to this container's output.
            let why = if tail.is_empty() {
                "its messages are in this log above".to_owned()
            } else {
                tail.join(" | ")
            };
            return Err(Error::Step {
                action: "start the temporary server",
                detail: format!("it exited ({status}): {why}"),
            });
        }
        match server::connect(endpoint, "root", "").await {
            Ok(conn) => return Ok(conn),
            Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
    Err(Error::Step {
        action: "start the temporary server",
        detail: "it did not accept connections within 2 minutes".to_owned(),
    })
}

async fn clone(
    temp: &mut tokio::process::Child,
    error_log: &Path,
    socket: &Path,
    donor: &Donor,
    credentials: &ClusterCredentials,
    rate_limit: Option<u64>,
    landing: &Path,
) -> Result<u64, Error> {
    let endpoint = server::Endpoint::Socket(socket.to_owned());
    let mut conn = connect_when_up(temp, error_log, &endpoint).await?;
    let clone_user = credentials.users.get(ServiceRole::Clone);
    let (host, port) = &donor.server;
    let mut settings = vec![format!(
        "SET GLOBAL clone_valid_donor_list = {}",
        quote_literal(&format!("{host}:{port}"))
    )];
    if let Some(bytes) = rate_limit {
        settings.push(format!(
            "SET GLOBAL clone_max_data_bandwidth = {}",
            bandwidth_mib(bytes)
        ));
    }
    server::execute(&mut conn, &settings, "limit the clone").await?;
    let statements = [format!(
        // Encrypted: the clone user's password, and the data, cross the network.
        "CLONE INSTANCE FROM {}@{}:{port} IDENTIFIED BY {} DATA DIRECTORY = {} REQUIRE SSL",
        quote_literal(clone_user.user.as_str()),
        quote_literal(host),
        quote_literal(clone_user.password.reveal()),
        quote_literal(&landing.display().to_string()),
    )];
    // The init container has no metrics endpoint: progress goes to its log
    // (`kubectl logs <pod> -c init`), read from the recipient's own
    // performance_schema on a second session.
    let mut watcher = server::connect(&endpoint, "root", "").await.ok();
    // The first report comes soon, to show the clone is under way.
    let mut every =
        tokio::time::interval_at(tokio::time::Instant::now() + FIRST_PROGRESS, PROGRESS_EVERY);
    {
        let cloning = server::execute(&mut conn, &statements, "clone from the donor");
        tokio::pin!(cloning);
        loop {
            tokio::select! {
                result = &mut cloning => {
                    result?;
                    break;
                }
                _ = every.tick() => {
                    if let Some(watcher) = watcher.as_mut() {
                        log_progress(watcher).await;
                    }
                }
            }
        }
    }
    let bytes: Option<u64> = conn
        .query_first("SELECT COALESCE(SUM(DATA), 0) FROM performance_schema.clone_progress")
        .await
        .unwrap_or(None);
    let _ = conn.query_drop("SHUTDOWN").await;
    Ok(bytes.unwrap_or(0))
}

/// `clone_max_data_bandwidth` (whole MiB per second, 0 meaning unlimited)
/// for a limit in bytes per second: rounded down, and never below 1 MiB/s
/// (the API refuses less).
fn bandwidth_mib(bytes_per_second: u64) -> u64 {
    (bytes_per_second >> 20).max(1)
}

/// When a running clone's progress is first logged, and how often after.
const FIRST_PROGRESS: Duration = Duration::from_secs(1);
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// Logs the stage the clone is in and how much of it is done.
async fn log_progress(conn: &mut mysql_async::Conn) {
    let row: Result<Option<(String, u64, u64)>, _> = conn
        .query_first(
            "SELECT STAGE, CAST(DATA AS UNSIGNED), CAST(ESTIMATE AS UNSIGNED) \
             FROM performance_schema.clone_progress WHERE STATE = 'In Progress' LIMIT 1",
        )
        .await;
    if let Ok(Some((stage, data, estimate))) = row {
        info!(
            stage,
            bytes = data,
            estimate,
            "{}",
            progress_line(data, estimate)
        );
    }
}

/// "41% of 1.0 GiB" style summary of a stage's progress.
fn progress_line(data: u64, estimate: u64) -> String {
    const GIB: f64 = 1024.0 * 1024.0 * 1024.0;
    if estimate == 0 {
        return format!("clone in progress, {:.2} GiB", data as f64 / GIB);
    }
    let percent = (data.min(estimate) as f64 * 100.0 / estimate as f64).floor();
    format!(
        "clone in progress, {percent}% of {:.2} GiB",
        estimate as f64 / GIB
    )
}

#[cfg(test)]
mod tests {
    use super::{bandwidth_mib, progress_line};

    #[test]
    fn rate_limits_become_whole_mebibytes() {
        assert_eq!(bandwidth_mib(200 << 20), 200);
        assert_eq!(bandwidth_mib((3 << 20) + 5), 3);
        assert_eq!(bandwidth_mib(1), 1, "a limit never turns into unlimited");
    }

    #[test]
    fn progress_reads_as_a_share_of_the_estimate() {
        assert_eq!(progress_line(0, 0), "clone in progress, 0.00 GiB");
        assert_eq!(
            progress_line(1 << 29, 1 << 30),
            "clone in progress, 50% of 1.00 GiB"
        );
        // The estimate may be passed (files grow while they are copied).
        assert_eq!(
            progress_line(3 << 30, 1 << 30),
            "clone in progress, 100% of 1.00 GiB"
        );
    }
}
