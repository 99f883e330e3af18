//! The cluster as tests and the CLI use it: `up` (clean up, start the
//! supervisor in the background, wait until the cluster is usable), `down`,
//! `node stop/start` through the supervisor's socket, and container logs.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use kube::Client;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

use crate::cleanup::{self, CleanupError};
use crate::layout::{Layout, OWNER_FILE};
use crate::supervisor::{self, SupervisorError};

/// How long `up` waits for the supervisor to report.
const UP_TIMEOUT: Duration = Duration::from_secs(180);

/// Why a cluster operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// Cleanup failed.
    #[error(transparent)]
    Cleanup(#[from] CleanupError),
    /// Another cluster holds the machine's bridge and ports.
    #[error(
        "failed to start: another test cluster is running with state dir {0}; stop it with `testcluster down --state-dir {0}`"
    )]
    Busy(String),
    /// The supervisor could not be started.
    #[error("failed to start the supervisor: {0}")]
    Spawn(std::io::Error),
    /// The supervisor reported a failure, or exited.
    #[error("failed to start the cluster: {0}")]
    Start(String),
    /// The supervisor's control socket failed.
    #[error("failed to talk to the supervisor at {path}: {source}")]
    Control {
        /// The socket.
        path: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
    /// The supervisor refused a command.
    #[error("failed to {command}: {reply}")]
    Refused {
        /// The command.
        command: String,
        /// Its answer.
        reply: String,
    },
    /// A client could not be built.
    #[error(transparent)]
    Client(#[from] SupervisorError),
    /// No such pod or container log.
    #[error("failed to find logs: {0}")]
    Logs(String),
}

/// A running cluster. Dropping it tears the cluster down (best effort,
/// through `testcluster down`), so tests clean up even when they fail.
#[derive(Debug)]
pub struct TestCluster {
    layout: Layout,
    exe: PathBuf,
    torn_down: bool,
}

impl TestCluster {
    /// Cleans up any earlier run in `state_dir`, starts `exe supervise` in the
    /// background and waits until the cluster is usable. `exe` is the
    /// `testcluster` binary.
    pub async fn up(state_dir: &Path, exe: &Path) -> Result<Self, ClusterError> {
        let layout = Layout::new(state_dir);
        claim_machine(&layout).await?;
        cleanup::down(&layout).await?;
        std::fs::write(OWNER_FILE, layout.root().display().to_string())
            .map_err(ClusterError::Spawn)?;
        std::fs::create_dir_all(layout.logs()).map_err(ClusterError::Spawn)?;
        std::fs::write(layout.marker(), "").map_err(ClusterError::Spawn)?;
        let log = std::fs::File::create(layout.logs().join("supervisor.log"))
            .map_err(ClusterError::Spawn)?;
        let log_err = log.try_clone().map_err(ClusterError::Spawn)?;
        let mut child = std::process::Command::new(exe)
            .arg("supervise")
            .arg("--state-dir")
            .arg(state_dir)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            // Its own process group: it outlives `up` and a Ctrl-C there.
            .process_group(0)
            .spawn()
            .map_err(ClusterError::Spawn)?;
        let cluster = Self {
            layout,
            exe: exe.to_owned(),
            torn_down: false,
        };
        let started = Instant::now();
        loop {
            if let Ok(text) = std::fs::read_to_string(cluster.layout.ready_file()) {
                if text.trim() == "ok" {
                    return Ok(cluster);
                }
                return Err(ClusterError::Start(text.trim().to_owned()));
            }
            if let Ok(Some(status)) = child.try_wait() {
                return Err(ClusterError::Start(format!(
                    "the supervisor exited with {status}; see {}",
                    cluster.layout.logs().join("supervisor.log").display()
                )));
            }
            if started.elapsed() > UP_TIMEOUT {
                return Err(ClusterError::Start(format!(
                    "not ready within {UP_TIMEOUT:?}"
                )));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The state directory.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The admin kubeconfig.
    pub fn kubeconfig(&self) -> PathBuf {
        self.layout.kubeconfig()
    }

    /// An admin client.
    pub async fn client(&self) -> Result<Client, ClusterError> {
        Ok(supervisor::client(&self.layout).await?)
    }

    /// Simulates a crashed machine.
    pub async fn node_stop(&self, name: &str) -> Result<(), ClusterError> {
        control(&self.layout, &format!("node stop {name}")).await
    }

    /// Brings a stopped machine back.
    pub async fn node_start(&self, name: &str) -> Result<(), ClusterError> {
        control(&self.layout, &format!("node start {name}")).await
    }

    /// Stops everything and removes the state.
    pub async fn down(mut self) -> Result<(), ClusterError> {
        self.torn_down = true;
        cleanup::down(&self.layout).await?;
        Ok(())
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        if self.torn_down {
            return;
        }
        // Drop cannot await: run the CLI's `down` synchronously.
        let _ = std::process::Command::new(&self.exe)
            .arg("down")
            .arg("--state-dir")
            .arg(self.layout.root())
            .stdin(Stdio::null())
            .status();
    }
}

/// Refuses to start while another cluster's supervisor is alive; cleans up
/// after one that crashed.
async fn claim_machine(layout: &Layout) -> Result<(), ClusterError> {
    let Ok(owner) = std::fs::read_to_string(OWNER_FILE) else {
        return Ok(());
    };
    let owner = owner.trim();
    if owner.is_empty() || Path::new(owner) == layout.root() {
        return Ok(());
    }
    let other = Layout::new(owner);
    let alive = std::fs::read_to_string(other.pids().join("supervisor.pid"))
        .ok()
        .and_then(|pid| pid.trim().parse().ok())
        .is_some_and(crate::command::pid_alive);
    if alive {
        return Err(ClusterError::Busy(owner.to_owned()));
    }
    cleanup::down(&other).await?;
    Ok(())
}

/// Sends one command to the supervisor of the cluster at `layout`.
pub async fn control(layout: &Layout, command: &str) -> Result<(), ClusterError> {
    let path = layout.control_socket();
    let err = |source| ClusterError::Control {
        path: path.clone(),
        source,
    };
    let stream = UnixStream::connect(&path).await.map_err(err)?;
    let (read, mut write) = stream.into_split();
    write
        .write_all(format!("{command}\n").as_bytes())
        .await
        .map_err(err)?;
    let mut reply = String::new();
    BufReader::new(read)
        .read_line(&mut reply)
        .await
        .map_err(err)?;
    if reply.trim() == "ok" {
        Ok(())
    } else {
        Err(ClusterError::Refused {
            command: command.to_owned(),
            reply: reply.trim().to_owned(),
        })
    }
}

/// The log file of a container of a running pod.
pub fn log_file(
    layout: &Layout,
    namespace: &str,
    pod: &str,
    container: Option<&str>,
) -> Result<PathBuf, ClusterError> {
    crate::layout::log_file(layout, namespace, pod, container).map_err(ClusterError::Logs)
}
