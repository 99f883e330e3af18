//! A temporary server on the data directory, reachable only through a
//! private socket (no networking: no client can reach it), writable, for
//! the init step's own statements: creating the first users, replaying the
//! archive.

use std::{path::PathBuf, process::Stdio, time::Duration};

use ebisu_api::Flavor as FlavorFamily;
use tokio::process::Child;

use super::Settings;
use crate::server;

/// Why the temporary server failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// It could not be started or stopped.
    #[error("failed to {action} the temporary server: {detail}")]
    Command {
        /// Start or stop.
        action: &'static str,
        /// Exit status or error.
        detail: String,
    },
    /// It did not come up.
    #[error(
        "failed to start the temporary server: it did not accept connections on {0} within 120s"
    )]
    NotUp(PathBuf),
    /// It refused a statement.
    #[error(transparent)]
    Server(#[from] server::Error),
}

/// A running temporary server and a connection to it.
#[derive(Debug)]
pub struct TempServer {
    child: Child,
    /// The connection.
    pub conn: mysql_async::Conn,
}

/// Flags that let the temporary server take writes despite the common part
/// (every server starts read-only).
fn writable(family: FlavorFamily) -> &'static [&'static str] {
    match family {
        FlavorFamily::Mariadb => &["--read-only=OFF"],
        FlavorFamily::Mysql => &["--super-read-only=OFF", "--read-only=OFF"],
    }
}

/// Starts it and connects as `user`.
pub async fn start(settings: &Settings, user: &str, password: &str) -> Result<TempServer, Error> {
    start_with(settings, user, password, &[]).await
}

/// Starts it with `options` on its command line (over the configuration's)
/// and connects as `user`.
pub async fn start_with(
    settings: &Settings,
    user: &str,
    password: &str,
    options: &[String],
) -> Result<TempServer, Error> {
    let socket = settings.run_dir.join("ebisu-init.sock");
    let child = tokio::process::Command::new(settings.family.server_command())
        .arg(format!(
            "--defaults-file={}",
            settings.server_config.display()
        ))
        .arg("--skip-networking")
        .args(writable(settings.family))
        .args(options)
        .arg(format!("--socket={}", socket.display()))
        .arg(format!(
            "--pid-file={}",
            settings.run_dir.join("ebisu-init.pid").display()
        ))
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| Error::Command {
            action: "start",
            detail: e.to_string(),
        })?;
    let endpoint = server::Endpoint::Socket(socket.clone());
    for _ in 0..240 {
        match server::connect(&endpoint, user, password).await {
            Ok(conn) => {
                return Ok(TempServer { child, conn });
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
    Err(Error::NotUp(socket))
}

impl TempServer {
    /// Shuts it down and waits for it to stop.
    pub async fn stop(self) -> Result<(), Error> {
        let Self {
            mut child,
            mut conn,
            ..
        } = self;
        server::execute(
            &mut conn,
            &["SHUTDOWN".to_owned()],
            "stop the temporary server",
        )
        .await?;
        drop(conn);
        match tokio::time::timeout(Duration::from_secs(120), child.wait()).await {
            Ok(Ok(status)) if status.success() => Ok(()),
            Ok(Ok(status)) => Err(Error::Command {
                action: "stop",
                detail: status.to_string(),
            }),
            Ok(Err(e)) => Err(Error::Command {
                action: "stop",
                detail: e.to_string(),
            }),
            Err(_) => {
                let _ = child.kill().await;
                Err(Error::Command {
                    action: "stop",
                    detail: "it did not stop in 120s".to_owned(),
                })
            }
        }
    }
}
