//! Faults of one pod, made the way they happen on a real node: a packet
//! filter inside the pod's network namespace (the operator cut off, clients
//! and replicas not), the pod's link down while its node stays Ready, and a
//! signal to its server or agent process (SIGSTOP freezes it, SIGCONT
//! resumes it, SIGKILL kills it). Each fault names the pod by namespace, name and uid
//! (the network namespace is `ebisu-<uid>`).

use crate::{command, network::PodNetwork};

/// Why a fault could not be made.
#[derive(Debug, thiserror::Error)]
pub enum FaultError {
    /// A command failed.
    #[error(transparent)]
    Command(#[from] command::CommandError),
    /// The pod's process was not found.
    #[error("failed to find the {process:?} process in {netns}")]
    NoProcess {
        /// Which.
        process: Process,
        /// The pod's network namespace.
        netns: String,
    },
}

/// The server binaries of both flavors, as `/proc/PID/comm` shows them.
const SERVER_COMMANDS: &[&str] = &["mariadbd", "mysqld"];

/// A process of a pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Process {
    /// The database server.
    Server,
    /// The ebisu agent (`ebisu-sidecar agent`).
    Agent,
}

impl Process {
    fn is(self, pid: u32) -> bool {
        match self {
            Process::Server => {
                let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
                SERVER_COMMANDS.contains(&comm.trim())
            }
            Process::Agent => {
                let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
                args.first().is_some_and(|a| a.ends_with(b"ebisu-sidecar"))
                    && args.get(1) == Some(&b"agent".as_slice())
            }
        }
    }
}

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

/// Drops every TCP packet the pod sends to `port` (on any address), or
/// stops dropping them: one service on the bridge is cut off while the
/// rest (the API server, the operator's calls) still reach the pod.
/// Connections already open to it are closed too: a pooled keep-alive
/// connection would otherwise go on past the rule.
pub async fn block_port(pod: &PodNetwork, port: u16, heal: bool) -> Result<(), FaultError> {
    let port = port.to_string();
    let verb = if heal { "del" } else { "add" };
    let args = [
        "-n",
        pod.netns.as_str(),
        "rule",
        verb,
        "ipproto",
        "tcp",
        "dport",
        &port,
        "blackhole",
    ];
    if heal {
        command::run_quiet("ip", &args).await;
    } else {
        command::run("ip", &args).await?;
        let open = format!("dport = :{port}");
        command::run("ss", &["-N", pod.netns.as_str(), "-K", "-t", open.as_str()]).await?;
    }
    Ok(())
}

/// Takes the pod's link down (it reaches nobody and nobody reaches it; its
/// node stays Ready) or up again.
pub async fn link(pod: &PodNetwork, up: bool) {
    pod.set_link(up).await;
}

/// Sends `signal` (`STOP`, `CONT`, `KILL`) to the pod's `process`.
pub async fn signal(pod: &PodNetwork, process: Process, signal: &str) -> Result<u32, FaultError> {
    for pid in crate::network::namespace_pids(&pod.netns).await {
        if process.is(pid) {
            command::run("kill", &[&format!("-{signal}"), &pid.to_string()]).await?;
            return Ok(pid);
        }
    }
    Err(FaultError::NoProcess {
        process,
        netns: pod.netns.clone(),
    })
}
