//! Tearing a cluster down, whether its supervisor is alive or crashed long
//! ago: stop the supervisor, kill what the pid files and the pod network
//! namespaces still hold, remove namespaces, veths, the bridge and the state.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::command;
use crate::layout::{Layout, OWNER_FILE, VETH_PREFIX};
use crate::network;

/// Why cleanup could not finish.
#[derive(Debug, thiserror::Error)]
pub enum CleanupError {
    /// The state directory is not one of ours: refuse to delete it.
    #[error(
        "failed to clean up {0}: it exists but is not a testcluster state directory (no marker file)"
    )]
    NotOurs(PathBuf),
    /// The state directory could not be removed.
    #[error("failed to remove {path}: {source}")]
    Remove {
        /// The directory.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
}

/// How long the supervisor gets to stop its pods and daemons itself.
const SUPERVISOR_GRACE: Duration = Duration::from_secs(15);

fn read_pid(path: &std::path::Path) -> Option<u32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Removes the mount points containers created on the host, innermost
/// first, and only while they are still empty: anything else is not ours.
fn remove_created_mount_points(layout: &Layout) {
    let Ok(text) = std::fs::read_to_string(layout.created_mount_points()) else {
        return;
    };
    let mut paths: Vec<&str> = text.lines().filter(|l| l.starts_with('/')).collect();
    paths.sort_unstable();
    paths.dedup();
    for path in paths.iter().rev() {
        let path = Path::new(path);
        match std::fs::symlink_metadata(path) {
            Ok(m) if m.is_dir() => {
                let _ = std::fs::remove_dir(path);
            }
            Ok(m) if m.is_file() && m.len() == 0 => {
                let _ = std::fs::remove_file(path);
            }
            _ => {}
        }
    }
}

/// Stops everything a cluster with this layout started and removes its state.
/// Safe to run at any time, any number of times.
pub async fn down(layout: &Layout) -> Result<(), CleanupError> {
    let root = layout.root();
    if root.exists()
        && !layout.marker().exists()
        && root.read_dir().is_ok_and(|mut d| d.next().is_some())
    {
        return Err(CleanupError::NotOurs(root.to_owned()));
    }

    // The supervisor first: it stops pods and daemons in order when it can.
    let supervisor_pid = read_pid(&layout.pids().join("supervisor.pid"));
    if let Some(pid) = supervisor_pid.filter(|pid| command::pid_alive(*pid)) {
        command::signal_pid(pid, "TERM").await;
        let started = Instant::now();
        while command::pid_alive(pid) && started.elapsed() < SUPERVISOR_GRACE {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        command::signal_group(pid, "KILL").await;
        command::signal_pid(pid, "KILL").await;
    }

    // Daemons whose supervisor died without stopping them.
    if let Ok(entries) = std::fs::read_dir(layout.pids()) {
        for entry in entries.flatten() {
            if let Some(pid) = read_pid(&entry.path()).filter(|pid| command::pid_alive(*pid)) {
                command::signal_group(pid, "KILL").await;
                command::signal_pid(pid, "KILL").await;
            }
        }
    }

    // Pods: whatever still runs in a pod network namespace is ours.
    for netns in network::leftover_namespaces().await {
        for pid in network::namespace_pids(&netns).await {
            command::signal_pid(pid, "KILL").await;
        }
        command::run_quiet("ip", &["netns", "del", &netns]).await;
    }
    if let Ok(links) = command::run("ip", &["-o", "link", "show"]).await {
        for line in links.lines() {
            let name = line.split(':').nth(1).map(str::trim).unwrap_or_default();
            let name = name.split('@').next().unwrap_or_default();
            if name.starts_with(VETH_PREFIX) {
                command::run_quiet("ip", &["link", "del", name]).await;
            }
        }
    }
    network::delete_bridge().await;
    remove_created_mount_points(layout);

    if std::fs::read_to_string(OWNER_FILE).is_ok_and(|o| Path::new(o.trim()) == root) {
        let _ = std::fs::remove_file(OWNER_FILE);
    }
    if root.exists() {
        std::fs::remove_dir_all(root).map_err(|source| CleanupError::Remove {
            path: root.to_owned(),
            source,
        })?;
    }
    Ok(())
}
