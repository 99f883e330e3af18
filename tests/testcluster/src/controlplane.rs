//! The real control plane as child processes: etcd, the local EC2 API (moto),
//! the local OCI registry (crane), kube-apiserver, kube-controller-manager and kube-scheduler, started in order, each waited
//! on until healthy, with logs and pid files under the state directory.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};

use crate::certs::Pki;
use crate::command;
use crate::layout::{
    APISERVER_PORT, BRIDGE_ADDR, CONTROLLER_MANAGER_PORT, ETCD_CLIENT_PORT, ETCD_PEER_PORT, Layout,
    MOTO_PORT, SCHEDULER_PORT, SERVICE_CIDR,
};

/// How long one daemon may take to become healthy.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(90);

/// Why the control plane could not be started.
#[derive(Debug, thiserror::Error)]
pub enum ControlPlaneError {
    /// A binary is missing from the bin directory.
    #[error(
        "failed to find {0}: build it with tests/build-controlplane.sh and set EBISU_CONTROLPLANE_BIN"
    )]
    Missing(PathBuf),
    /// moto's server is not installed.
    #[error("failed to find the local EC2 API {0}: install it with tests/install-moto.sh")]
    MissingMoto(PathBuf),
    /// crane, which serves the registry, is not installed.
    #[error(
        "failed to find crane {0} for the local registry: install it with tests/build-images.sh"
    )]
    MissingCrane(PathBuf),
    /// The EC2 endpoint in front of moto could not start.
    #[error(transparent)]
    Proxy(#[from] crate::snapshots::ProxyError),
    /// A daemon could not be started or its files written.
    #[error("failed to start {name}: {source}")]
    Start {
        /// The daemon.
        name: String,
        /// What the OS said.
        source: std::io::Error,
    },
    /// A daemon did not become healthy in time.
    #[error("failed to see {name} healthy within {timeout:?} (see {log})")]
    Unhealthy {
        /// The daemon.
        name: String,
        /// How long we waited.
        timeout: Duration,
        /// Its log file.
        log: String,
    },
    /// A daemon exited while starting.
    #[error("failed to keep {name} running: it exited with {status} (see {log})")]
    Exited {
        /// The daemon.
        name: String,
        /// Its exit status.
        status: std::process::ExitStatus,
        /// Its log file.
        log: String,
    },
}

/// A running daemon.
#[derive(Debug)]
pub struct Daemon {
    /// Its name (and the file names of its log and pid file).
    pub name: String,
    /// The process (in its own process group).
    pub child: Child,
}

/// The running control plane.
#[derive(Debug)]
pub struct ControlPlane {
    /// The daemons in start order.
    pub daemons: Vec<Daemon>,
}

impl ControlPlane {
    /// Stops the daemons in reverse start order.
    pub async fn stop(&mut self) {
        for daemon in self.daemons.iter_mut().rev() {
            if let Some(pid) = daemon.child.id() {
                command::signal_group(pid, "TERM").await;
            }
            if tokio::time::timeout(Duration::from_secs(5), daemon.child.wait())
                .await
                .is_err()
            {
                let _ = daemon.child.start_kill();
                let _ = daemon.child.wait().await;
            }
        }
    }
}

/// Where the control plane binaries are: `$EBISU_CONTROLPLANE_BIN`, else the
/// output of `tests/build-controlplane.sh --print-dir`.
pub fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("EBISU_CONTROLPLANE_BIN") {
        return PathBuf::from(dir);
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../build-controlplane.sh");
    std::process::Command::new("bash")
        .arg(script)
        .arg("--print-dir")
        .output()
        .ok()
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))
        .unwrap_or_default()
}

fn s(path: &Path) -> String {
    path.display().to_string()
}

fn spawn(
    layout: &Layout,
    bin: &Path,
    name: &str,
    args: &[String],
) -> Result<Daemon, ControlPlaneError> {
    spawn_program(layout, &bin.join(name), name, args, &[])
}

fn spawn_program(
    layout: &Layout,
    program: &Path,
    name: &str,
    args: &[String],
    envs: &[(&str, &str)],
) -> Result<Daemon, ControlPlaneError> {
    if !program.is_file() {
        return Err(ControlPlaneError::Missing(program.to_owned()));
    }
    let start = |source| ControlPlaneError::Start {
        name: name.to_owned(),
        source,
    };
    let log = std::fs::File::create(layout.logs().join(format!("{name}.log"))).map_err(start)?;
    let log_err = log.try_clone().map_err(start)?;
    let child = Command::new(program)
        .args(args)
        .envs(envs.iter().copied())
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err)
        // Its own group: `down` can kill it and anything it started at once.
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(start)?;
    if let Some(pid) = child.id() {
        std::fs::write(layout.pids().join(format!("{name}.pid")), pid.to_string())
            .map_err(start)?;
    }
    Ok(Daemon {
        name: name.to_owned(),
        child,
    })
}

/// Polls `url` with curl until it answers `ok`, or the daemon exits.
async fn wait_healthy(
    layout: &Layout,
    daemon: &mut Daemon,
    url: &str,
    curl_args: &[&str],
) -> Result<(), ControlPlaneError> {
    let started = Instant::now();
    let log = s(&layout.logs().join(format!("{}.log", daemon.name)));
    loop {
        let mut args = vec!["-s", "--max-time", "2"];
        args.extend_from_slice(curl_args);
        args.push(url);
        if let Ok(body) = command::run("curl", &args).await
            && (body.trim() == "ok" || body.contains("\"health\":\"true\""))
        {
            return Ok(());
        }
        if let Ok(Some(status)) = daemon.child.try_wait() {
            return Err(ControlPlaneError::Exited {
                name: daemon.name.clone(),
                status,
                log,
            });
        }
        if started.elapsed() > HEALTH_TIMEOUT {
            return Err(ControlPlaneError::Unhealthy {
                name: daemon.name.clone(),
                timeout: HEALTH_TIMEOUT,
                log,
            });
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Starts etcd, the apiserver, the controller-manager and the scheduler, each
/// healthy before the next starts.
pub async fn start(layout: &Layout, pki: &Pki) -> Result<ControlPlane, ControlPlaneError> {
    let bin = bin_dir();
    let mut plane = ControlPlane {
        daemons: Vec::new(),
    };
    let result = start_all(layout, pki, &bin, &mut plane).await;
    if let Err(error) = result {
        plane.stop().await;
        return Err(error);
    }
    Ok(plane)
}

async fn start_all(
    layout: &Layout,
    pki: &Pki,
    bin: &Path,
    plane: &mut ControlPlane,
) -> Result<(), ControlPlaneError> {
    let etcd_url = format!("http://127.0.0.1:{ETCD_CLIENT_PORT}");
    let mut etcd = spawn(
        layout,
        bin,
        "etcd",
        &[
            "--name=ebisu".to_owned(),
            format!("--data-dir={}", s(&layout.etcd_data())),
            format!("--listen-client-urls={etcd_url}"),
            format!("--advertise-client-urls={etcd_url}"),
            format!("--listen-peer-urls=http://127.0.0.1:{ETCD_PEER_PORT}"),
            format!("--initial-advertise-peer-urls=http://127.0.0.1:{ETCD_PEER_PORT}"),
            format!("--initial-cluster=ebisu=http://127.0.0.1:{ETCD_PEER_PORT}"),
            // Test data: durability across power loss does not matter, speed does.
            "--unsafe-no-fsync".to_owned(),
            "--log-level=warn".to_owned(),
        ],
    )?;
    wait_healthy(layout, &mut etcd, &format!("{etcd_url}/health"), &[]).await?;
    plane.daemons.push(etcd);

    let moto = crate::ec2::moto_server();
    if !moto.is_file() {
        return Err(ControlPlaneError::MissingMoto(moto));
    }
    crate::snapshots::start(layout).await?;
    let mut ec2 = spawn_program(
        layout,
        &moto,
        "moto",
        &["--host=127.0.0.1".to_owned(), format!("--port={MOTO_PORT}")],
        // No built-in AMIs and snapshots: the account holds only what we make.
        &[("MOTO_EC2_LOAD_DEFAULT_AMIS", "false")],
    )?;
    wait_healthy(
        layout,
        &mut ec2,
        &format!("{}/moto-api/data.json", crate::ec2::endpoint()),
        // Any successful answer prints `ok`.
        &["-f", "-o", "/dev/null", "-w", "ok"],
    )
    .await?;
    plane.daemons.push(ec2);

    let crane = crate::registry::crane();
    if !crane.is_file() {
        return Err(ControlPlaneError::MissingCrane(crane));
    }
    std::fs::create_dir_all(layout.registry()).map_err(|source| ControlPlaneError::Start {
        name: "registry".to_owned(),
        source,
    })?;
    let mut registry = spawn_program(
        layout,
        &crane,
        "registry",
        &crate::registry::serve_args(&layout.registry()),
        &[],
    )?;
    wait_healthy(
        layout,
        &mut registry,
        &format!("http://{}/v2/", crate::registry::address()),
        &["-f", "-o", "/dev/null", "-w", "ok"],
    )
    .await?;
    plane.daemons.push(registry);

    let mut apiserver = spawn(
        layout,
        bin,
        "kube-apiserver",
        &[
            format!("--etcd-servers={etcd_url}"),
            // The bridge address: reachable from the host and from every pod.
            format!("--bind-address={BRIDGE_ADDR}"),
            format!("--advertise-address={BRIDGE_ADDR}"),
            format!("--secure-port={APISERVER_PORT}"),
            format!("--tls-cert-file={}", s(&pki.apiserver_cert)),
            format!("--tls-private-key-file={}", s(&pki.apiserver_key)),
            format!("--client-ca-file={}", s(&pki.ca_cert)),
            format!("--token-auth-file={}", s(&pki.token_file)),
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local".to_owned(),
            format!("--service-account-key-file={}", s(&pki.sa_pub)),
            format!("--service-account-signing-key-file={}", s(&pki.sa_key)),
            format!("--service-cluster-ip-range={SERVICE_CIDR}"),
            "--authorization-mode=RBAC".to_owned(),
            // Node names do not resolve: reach the kubelet API (logs) at the node's address.
            "--kubelet-preferred-address-types=InternalIP".to_owned(),
            "--allow-privileged=true".to_owned(),
            "--profiling=false".to_owned(),
        ],
    )?;
    let token_header = format!("Authorization: Bearer {}", pki.admin_token);
    let ca = s(&pki.ca_cert);
    wait_healthy(
        layout,
        &mut apiserver,
        &format!("https://{BRIDGE_ADDR}:{APISERVER_PORT}/readyz"),
        &["--cacert", &ca, "-H", &token_header],
    )
    .await?;
    plane.daemons.push(apiserver);

    let kubeconfig = format!("--kubeconfig={}", s(&layout.kubeconfig()));
    let mut controller_manager = spawn(
        layout,
        bin,
        "kube-controller-manager",
        &[
            kubeconfig.clone(),
            "--leader-elect=false".to_owned(),
            "--controllers=*".to_owned(),
            format!("--root-ca-file={}", s(&pki.ca_cert)),
            format!("--service-account-private-key-file={}", s(&pki.sa_key)),
            format!("--cluster-signing-cert-file={}", s(&pki.ca_cert)),
            format!("--cluster-signing-key-file={}", s(&pki.ca_key)),
            "--bind-address=127.0.0.1".to_owned(),
            format!("--secure-port={CONTROLLER_MANAGER_PORT}"),
            "--kube-api-qps=100".to_owned(),
            "--kube-api-burst=200".to_owned(),
            // Node-failure tests should not wait 40 s for NotReady.
            "--node-monitor-period=2s".to_owned(),
            "--node-monitor-grace-period=12s".to_owned(),
            "--profiling=false".to_owned(),
        ],
    )?;
    wait_healthy(
        layout,
        &mut controller_manager,
        &format!("https://127.0.0.1:{CONTROLLER_MANAGER_PORT}/healthz"),
        &["-k"],
    )
    .await?;
    plane.daemons.push(controller_manager);

    let mut scheduler = spawn(
        layout,
        bin,
        "kube-scheduler",
        &[
            kubeconfig,
            "--leader-elect=false".to_owned(),
            "--bind-address=127.0.0.1".to_owned(),
            format!("--secure-port={SCHEDULER_PORT}"),
            "--profiling=false".to_owned(),
        ],
    )?;
    wait_healthy(
        layout,
        &mut scheduler,
        &format!("https://127.0.0.1:{SCHEDULER_PORT}/healthz"),
        &["-k"],
    )
    .await?;
    plane.daemons.push(scheduler);
    Ok(())
}
