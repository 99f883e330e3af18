//! Initialising the cluster's first server: create the system tables, start
//! a temporary server reachable only through a private socket, create the
//! service users from the Secret, remove anonymous users and the test
//! database, set root's password, and stop it again.

use std::{path::PathBuf, process::Stdio, time::Duration};

use ebisu_api::Flavor as FlavorFamily;
use ebisu_mysql::sql::{ACCOUNTS_TO_DROP_QUERY, Account, without_binlog};
use mysql_async::prelude::Queryable;
use tracing::info;

use super::Settings;
use crate::{credentials::ClusterCredentials, server};

/// Why bootstrapping failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A program could not be started or failed.
    #[error("failed to {action}: {detail}")]
    Command {
        /// What was being done.
        action: &'static str,
        /// Exit status or error.
        detail: String,
    },
    /// The temporary server refused a statement.
    #[error(transparent)]
    Server(#[from] server::Error),
    /// The statements could not be built.
    #[error("failed to build the user statements: {0}")]
    Sql(#[from] ebisu_mysql::SqlError),
    /// The temporary server did not come up.
    #[error(
        "failed to start the temporary server: it did not accept connections on {0} within 120s"
    )]
    NotUp(PathBuf),
}

/// Bootstraps the data directory.
pub async fn run(settings: &Settings, credentials: &ClusterCredentials) -> Result<(), Error> {
    std::fs::create_dir_all(&settings.data_dir).map_err(|e| Error::Command {
        action: "create the data directory",
        detail: e.to_string(),
    })?;
    initialise(settings).await?;

    let socket = settings.run_dir.join("ebisu-init.sock");
    let mut temp = tokio::process::Command::new(settings.family.server_command())
        .arg(format!(
            "--defaults-file={}",
            settings.server_config.display()
        ))
        .arg("--skip-networking")
        // Every server starts read-only (the common my.cnf part); this one
        // must create its users first.
        .args(writable(settings.family))
        .arg(format!("--socket={}", socket.display()))
        .arg(format!(
            "--pid-file={}",
            settings.run_dir.join("ebisu-init.pid").display()
        ))
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| Error::Command {
            action: "start the temporary server",
            detail: e.to_string(),
        })?;

    let endpoint = server::Endpoint::Socket(socket.clone());
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
    let mut conn = conn.ok_or(Error::NotUp(socket))?;
    let flavor = server::flavor(&mut conn).await?;
    let accounts: Vec<(String, String)> =
        conn.query(ACCOUNTS_TO_DROP_QUERY)
            .await
            .map_err(|source| server::Error::Sql {
                action: "list anonymous accounts",
                source,
            })?;
    let accounts: Vec<Account> = accounts
        .into_iter()
        .map(|(user, host)| Account { user, host })
        .collect();
    // Users exist in the data files every replica copies; keeping them out of
    // the binary log keeps the cluster's GTID history to real writes.
    let mut statements = flavor.create_service_users(&credentials.users);
    statements.extend(flavor.secure_installation(&accounts, &credentials.root_password)?);
    server::execute(&mut conn, &without_binlog(statements), "create users").await?;
    info!(users = ?credentials.users.names().map(|n| n.as_str().to_owned()), "created service users; root has a password");
    server::execute(
        &mut conn,
        &["SHUTDOWN".to_owned()],
        "stop the temporary server",
    )
    .await?;
    drop(conn);
    match tokio::time::timeout(Duration::from_secs(120), temp.wait()).await {
        Ok(Ok(status)) if status.success() => Ok(()),
        Ok(Ok(status)) => Err(Error::Command {
            action: "stop the temporary server",
            detail: status.to_string(),
        }),
        Ok(Err(e)) => Err(Error::Command {
            action: "stop the temporary server",
            detail: e.to_string(),
        }),
        Err(_) => {
            let _ = temp.kill().await;
            Err(Error::Command {
                action: "stop the temporary server",
                detail: "it did not stop in 120s".to_owned(),
            })
        }
    }
}

/// MySQL's `--initialize` wants an empty directory, and a fresh volume's
/// root holds `lost+found`: initialise in a directory beside it, then move
/// the files up. The temporary server sets root's password before anything
/// can connect.
async fn initialise_mysql(settings: &Settings) -> Result<(), Error> {
    let fresh = settings.data_dir.join("ebisu-initialise");
    if fresh.exists() {
        std::fs::remove_dir_all(&fresh).map_err(|e| Error::Command {
            action: "clear a previous initialisation",
            detail: e.to_string(),
        })?;
    }
    let output = tokio::process::Command::new("mysqld")
        .arg(format!(
            "--defaults-file={}",
            settings.server_config.display()
        ))
        .arg(format!("--datadir={}", fresh.display()))
        .args([
            "--initialize-insecure",
            "--super-read-only=OFF",
            "--read-only=OFF",
        ])
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|e| Error::Command {
            action: "initialise the data directory",
            detail: e.to_string(),
        })?;
    if !output.status.success() {
        return Err(Error::Command {
            action: "initialise the data directory",
            detail: crate::backup_tool::failure(&output),
        });
    }
    super::move_contents(&fresh, &settings.data_dir).map_err(|e| Error::Command {
        action: "move the initialised files into the data directory",
        detail: e.to_string(),
    })?;
    info!("initialised the data directory");
    Ok(())
}

/// Flags that let the temporary server take writes despite the common part.
fn writable(family: FlavorFamily) -> &'static [&'static str] {
    match family {
        FlavorFamily::Mariadb => &["--read-only=OFF"],
        FlavorFamily::Mysql => &["--super-read-only=OFF", "--read-only=OFF"],
    }
}

/// Creates the system tables in the empty data directory.
async fn initialise(settings: &Settings) -> Result<(), Error> {
    if settings.family == FlavorFamily::Mysql {
        return initialise_mysql(settings).await;
    }
    let defaults = format!("--defaults-file={}", settings.server_config.display());
    let datadir = format!("--datadir={}", settings.data_dir.display());
    let mut cmd = tokio::process::Command::new("mariadb-install-db");
    cmd.args([
        defaults,
        datadir,
        "--auth-root-authentication-method=normal".to_owned(),
        "--skip-test-db".to_owned(),
    ]);
    let output = cmd
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|e| Error::Command {
            action: "initialise the data directory",
            detail: e.to_string(),
        })?;
    if output.status.success() {
        info!("initialised the data directory");
        Ok(())
    } else {
        Err(Error::Command {
            action: "initialise the data directory",
            detail: crate::backup_tool::failure(&output),
        })
    }
}
