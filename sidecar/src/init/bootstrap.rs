//! Initialising the cluster's first server: create the system tables, start
//! a temporary server reachable only through a private socket, create the
//! service users from the Secret (and the application's database and owner,
//! with `spec.database`), remove anonymous users and the test database, set
//! root's password, and stop it again.

use std::process::Stdio;

use ebisu_api::Flavor as FlavorFamily;
use ebisu_mysql::sql::{ACCOUNTS_TO_DROP_QUERY, Account, without_binlog};
use mysql_async::prelude::Queryable;
use tracing::info;

use super::{Settings, temp_server};
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
    /// The temporary server failed.
    #[error(transparent)]
    TempServer(#[from] temp_server::Error),
}

/// Bootstraps the data directory.
pub async fn run(settings: &Settings, credentials: &ClusterCredentials) -> Result<(), Error> {
    std::fs::create_dir_all(&settings.data_dir).map_err(|e| Error::Command {
        action: "create the data directory",
        detail: e.to_string(),
    })?;
    initialise(settings).await?;

    let mut temp = temp_server::start(settings, "root", "").await?;
    let conn = &mut temp.conn;
    let flavor = server::flavor(conn).await?;
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
    if let Some(app) = &settings.application {
        statements.extend(flavor.create_application(&app.database, &app.owner));
    }
    statements.extend(flavor.secure_installation(&accounts, &credentials.root_password)?);
    server::execute(conn, &without_binlog(statements), "create users").await?;
    info!(users = ?credentials.users.names().map(|n| n.as_str().to_owned()), "created service users; root has a password");
    if let Some(app) = &settings.application {
        info!(database = %app.database, owner = %app.owner.user, "created the application's database and owner");
    }
    temp.stop().await?;
    Ok(())
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
