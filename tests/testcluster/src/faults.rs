//! Faults of one pod, made the way they happen on a real node: a packet
//! filter inside the pod's network namespace (the operator cut off, clients
//! and replicas not), the pod's link down while its node stays Ready, and a
//! signal to its server process (SIGSTOP freezes it, SIGCONT resumes it,
//! SIGKILL kills it). Each fault names the pod by namespace, name and uid
//! (the network namespace is `ebisu-<uid>`).

use crate::{command, network::PodNetwork};

/// Why a fault could not be made.
#[derive(Debug, thiserror::Error)]
pub enum FaultError {
    /// A command failed.
    #[error(transparent)]
    Command(#[from] command::CommandError),
    /// The pod's server process was not found.
    #[error("failed to find the server process in {netns}")]
    NoServer {
        /// The pod's network namespace.
        netns: String,
    },
}

/// The server binaries of both flavors, as `/proc/PID/comm` shows them.
const SERVER_COMMANDS: &[&str] = &["mariadbd", "mysqld"];

/// A pod's network: namespace, host side of its veth, address.
pub fn pod_network(uid: &str, ip: &str) -> PodNetwork {
    PodNetwork::new(uid, ip)
}

/// Drops every packet from the pod to `peers` (their replies never come
/// back, so neither side can talk to the other); `heal` removes it again.
pub async fn cut_off(pod: &PodNetwork, peers: &[String], heal: bool) -> Result<(), FaultError> {
    for peer in peers {
        let route = format!("{peer}/32");
        let verb = if heal { "del" } else { "add" };
        let args = ["-n", pod.netns.as_str(), "route", verb, "blackhole", &route];
        if heal {
            command::run_quiet("ip", &args).await;
        } else {
            command::run("ip", &args).await?;
        }
    }
    Ok(())
}

/// Takes the pod's link down (it reaches nobody and nobody reaches it; its
/// node stays Ready) or up again.
pub async fn link(pod: &PodNetwork, up: bool) {
    pod.set_link(up).await;
}

/// Sends `signal` (`STOP`, `CONT`, `KILL`) to the pod's server process.
pub async fn signal_server(pod: &PodNetwork, signal: &str) -> Result<u32, FaultError> {
    for pid in crate::network::namespace_pids(&pod.netns).await {
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        if SERVER_COMMANDS.contains(&comm.trim()) {
            command::run("kill", &[&format!("-{signal}"), &pid.to_string()]).await?;
            return Ok(pid);
        }
    }
    Err(FaultError::NoServer {
        netns: pod.netns.clone(),
    })
}
