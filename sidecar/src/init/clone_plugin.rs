//! Seeding a MySQL instance with the CLONE plugin, which every MySQL 8.0.17+
//! server has (the official images carry no xtrabackup). A temporary server
//! on a scratch directory inside the volume, reachable only through a
//! private socket, runs `CLONE INSTANCE FROM` the donor into a second
//! directory on the same volume; once it succeeded, that copy's files move
//! into the data directory. The copy carries its GTIDs (`gtid_executed`),
//! so the agent only points replication at the source with
//! auto-positioning. The donor needs BACKUP_ADMIN (the clone user); this
//! recipient uses its own root, which no peer can reach.

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use ebisu_mysql::{ServiceRole, sql::quote_literal};
use mysql_async::prelude::Queryable;
use tracing::info;

use super::Settings;
use crate::{
    credentials::ClusterCredentials,
    donor::Donor,
    seed_marker::{self, SeedMarker},
    server,
};

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
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(step("start the temporary server"))?;
    let result = clone(&socket, donor, credentials, &landing).await;
    let _ = temp.start_kill();
    let _ = tokio::time::timeout(Duration::from_secs(60), temp.wait()).await;
    let bytes = result?;
    std::fs::remove_dir_all(&scratch).map_err(step("remove the scratch directory"))?;
    move_into_place(&landing, data)?;
    info!(donor = %donor.server.0, bytes, "cloned with the CLONE plugin");
    seed_marker::write(
        data,
        &SeedMarker {
            // The copy carries its own gtid_executed.
            gtid: String::new(),
            source_host: donor.source_host.clone(),
            source_port: donor.source_port,
            donor: donor.agent_url.clone(),
            bytes,
        },
    )?;
    Ok(bytes)
}

async fn initialise(scratch: &Path) -> Result<(), Error> {
    let output = tokio::process::Command::new("mysqld")
        .arg("--no-defaults")
        .arg(format!("--datadir={}", scratch.display()))
        .args(["--initialize-insecure", "--secure-file-priv=NULL"])
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

async fn clone(
    socket: &Path,
    donor: &Donor,
    credentials: &ClusterCredentials,
    landing: &Path,
) -> Result<u64, Error> {
    let endpoint = server::Endpoint::Socket(socket.to_owned());
    let mut conn = None;
    for _ in 0..240 {
        match server::connect(&endpoint, "root", "").await {
            Ok(c) => {
                conn = Some(c);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
    let mut conn = conn.ok_or(Error::Step {
        action: "start the temporary server",
        detail: format!("it did not accept connections on {}", socket.display()),
    })?;
    let clone_user = credentials.users.get(ServiceRole::Clone);
    let (host, port) = &donor.server;
    let statements = [
        format!(
            "SET GLOBAL clone_valid_donor_list = {}",
            quote_literal(&format!("{host}:{port}"))
        ),
        format!(
            // Encrypted: the clone user's password, and the data, cross the network.
            "CLONE INSTANCE FROM {}@{}:{port} IDENTIFIED BY {} DATA DIRECTORY = {} REQUIRE SSL",
            quote_literal(clone_user.user.as_str()),
            quote_literal(host),
            quote_literal(clone_user.password.reveal()),
            quote_literal(&landing.display().to_string()),
        ),
    ];
    server::execute(&mut conn, &statements, "clone from the donor").await?;
    let bytes: Option<u64> = conn
        .query_first("SELECT COALESCE(SUM(DATA), 0) FROM performance_schema.clone_progress")
        .await
        .unwrap_or(None);
    let _ = conn.query_drop("SHUTDOWN").await;
    Ok(bytes.unwrap_or(0))
}

/// Moves every entry of `landing` into `data` (the same file system).
fn move_into_place(landing: &Path, data: &Path) -> Result<(), Error> {
    let entries: Vec<PathBuf> = std::fs::read_dir(landing)
        .map_err(step("list the copy"))?
        .flatten()
        .map(|e| e.path())
        .collect();
    for entry in entries {
        if let Some(name) = entry.file_name() {
            std::fs::rename(&entry, data.join(name)).map_err(step("move the copy into place"))?;
        }
    }
    std::fs::remove_dir(landing).map_err(step("remove the landing directory"))
}
