//! Probes, run from the host against the pod's address (tcp, http) or inside
//! the container's namespaces (exec, via `nsenter` and `setpriv`).

use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::Command;

use super::launch::LaunchSpec;

/// Why a probe failed.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// The probe names a port the container does not declare.
    #[error("failed to resolve port {0}")]
    Port(String),
    /// The check ran and failed.
    #[error("failed probe: {0}")]
    Failed(String),
    /// The probe did not answer in time.
    #[error("failed probe: timed out after {0:?}")]
    Timeout(Duration),
}

/// Resolves a probe or hook port (a number or a container port name).
pub fn port(container: &Container, port: &IntOrString) -> Result<u16, ProbeError> {
    match port {
        IntOrString::Int(n) => u16::try_from(*n).map_err(|_| ProbeError::Port(n.to_string())),
        IntOrString::String(name) => container
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some(name.as_str()))
            .and_then(|p| u16::try_from(p.container_port).ok())
            .or_else(|| name.parse().ok())
            .ok_or_else(|| ProbeError::Port(name.clone())),
    }
}

/// The probe's timeout (Kubernetes default 1 s).
pub fn timeout(probe: &Probe) -> Duration {
    Duration::from_secs(u64::try_from(probe.timeout_seconds.unwrap_or(1).max(1)).unwrap_or(1))
}

/// Runs one probe of `container` whose main process is `pid`, in the pod at `ip`.
pub async fn run(
    probe: &Probe,
    container: &Container,
    ip: &str,
    pid: u32,
    launch: &LaunchSpec,
) -> Result<(), ProbeError> {
    let limit = timeout(probe);
    let check = async {
        if let Some(tcp) = &probe.tcp_socket {
            let port = port(container, &tcp.port)?;
            TcpStream::connect((ip, port))
                .await
                .map(drop)
                .map_err(|e| ProbeError::Failed(format!("dial tcp {ip}:{port}: {e}")))
        } else if let Some(http) = &probe.http_get {
            let port = port(container, &http.port)?;
            http_get(ip, port, http.path.as_deref().unwrap_or("/")).await
        } else if let Some(exec) = &probe.exec {
            exec_in(pid, launch, exec.command.as_deref().unwrap_or_default()).await
        } else if probe.grpc.is_some() {
            Err(ProbeError::Failed(
                "grpc probes are not supported by the test cluster".to_owned(),
            ))
        } else {
            Ok(())
        }
    };
    tokio::time::timeout(limit, check)
        .await
        .map_err(|_| ProbeError::Timeout(limit))?
}

async fn http_get(ip: &str, port: u16, path: &str) -> Result<(), ProbeError> {
    let fail = |e: std::io::Error| ProbeError::Failed(format!("Get http://{ip}:{port}{path}: {e}"));
    let mut stream = TcpStream::connect((ip, port)).await.map_err(fail)?;
    let request =
        format!("GET {path} HTTP/1.0\r\nHost: {ip}:{port}\r\nUser-Agent: kube-probe/1.34\r\n\r\n");
    stream.write_all(request.as_bytes()).await.map_err(fail)?;
    let mut head = vec![0u8; 64];
    let n = stream.read(&mut head).await.map_err(fail)?;
    let line = String::from_utf8_lossy(&head[..n]);
    let code: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    if (200..400).contains(&code) {
        Ok(())
    } else {
        Err(ProbeError::Failed(format!(
            "HTTP probe failed with statuscode: {code}"
        )))
    }
}

/// Runs `argv` inside the container's namespaces as its user, with its env.
pub async fn exec_in(pid: u32, launch: &LaunchSpec, argv: &[String]) -> Result<(), ProbeError> {
    let inner = launch.command(argv);
    let mut cmd = Command::new("nsenter");
    // --root: a container of an image with its own root file system runs
    // its exec probes and hooks inside that root too.
    cmd.arg(format!("--target={pid}"))
        .args(["--mount", "--net", "--uts", "--root", "--wd", "--"])
        .arg(inner.get_program())
        .args(inner.get_args())
        .env_clear()
        .envs(launch.env.iter().map(|(k, v)| (k, v)))
        .kill_on_drop(true);
    let output = cmd
        .output()
        .await
        .map_err(|e| ProbeError::Failed(format!("exec {argv:?}: {e}")))?;
    if output.status.success() {
        Ok(())
    } else {
        let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&output.stderr));
        Err(ProbeError::Failed(format!(
            "command {argv:?} exited with {}: {}",
            output.status,
            text.trim()
        )))
    }
}
