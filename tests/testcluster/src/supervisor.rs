//! The background process behind `testcluster up`: it owns the control plane
//! daemons, the nodes' heartbeats, the agent and the provisioner, answers
//! `node stop/start` on a unix socket, and stops its daemons on SIGTERM.

use std::collections::BTreeSet;
use std::sync::Arc;

use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixListener;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

use crate::agent::Agent;
use crate::certs::{self, CertsError};
use crate::controlplane::{self, ControlPlaneError};
use crate::ec2::{Ec2, Ec2Error};
use crate::kubelet_api::{self, KubeletApiError};
use crate::layout::{self, APISERVER_PORT, BRIDGE_ADDR, Layout};
use crate::network::{self, NetworkError};
use crate::nodes::{self, NodesError};
use crate::provisioner;
use crate::stores::Stores;

/// Why the cluster could not be started.
#[derive(Debug, thiserror::Error)]
pub enum SupervisorError {
    /// State files could not be written.
    #[error("failed to write {what}: {source}")]
    Files {
        /// Which files.
        what: &'static str,
        /// What the OS said.
        source: std::io::Error,
    },
    /// Key generation failed.
    #[error(transparent)]
    Certs(#[from] CertsError),
    /// The bridge could not be created.
    #[error(transparent)]
    Network(#[from] NetworkError),
    /// The control plane did not come up.
    #[error(transparent)]
    ControlPlane(#[from] ControlPlaneError),
    /// The kubeconfig could not be loaded.
    #[error("failed to build a client from the admin kubeconfig: {0}")]
    Client(String),
    /// The kubelet API could not listen.
    #[error(transparent)]
    KubeletApi(#[from] KubeletApiError),
    /// Nodes could not be registered.
    #[error(transparent)]
    Nodes(#[from] NodesError),
    /// The nodes' EC2 instances could not be made.
    #[error(transparent)]
    Ec2(#[from] Ec2Error),
}

fn files(what: &'static str) -> impl FnOnce(std::io::Error) -> SupervisorError {
    move |source| SupervisorError::Files { what, source }
}

/// A client from the admin kubeconfig.
pub async fn client(layout: &Layout) -> Result<Client, SupervisorError> {
    let kubeconfig = Kubeconfig::read_from(layout.kubeconfig())
        .map_err(|e| SupervisorError::Client(e.to_string()))?;
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .map_err(|e| SupervisorError::Client(e.to_string()))?;
    Client::try_from(config).map_err(|e| SupervisorError::Client(e.to_string()))
}

/// Runs the cluster until SIGTERM/SIGINT. Writes `ready` (`ok` or the error)
/// once it is usable or has failed.
pub async fn run(layout: Layout) -> Result<(), SupervisorError> {
    std::fs::create_dir_all(layout.pids()).map_err(files("the pid directory"))?;
    std::fs::write(
        layout.pids().join("supervisor.pid"),
        std::process::id().to_string(),
    )
    .map_err(files("the supervisor pid file"))?;
    let mut term = signal(SignalKind::terminate()).map_err(files("the signal handler"))?;
    let mut int = signal(SignalKind::interrupt()).map_err(files("the signal handler"))?;
    let started = tokio::select! {
        started = start(&layout) => started,
        _ = term.recv() => return Ok(()),
        _ = int.recv() => return Ok(()),
    };
    let (mut plane, agent) = match started {
        Ok(running) => {
            let _ = std::fs::write(layout.ready_file(), "ok\n");
            running
        }
        Err(error) => {
            let _ = std::fs::write(layout.ready_file(), format!("{error}\n"));
            return Err(error);
        }
    };
    let listener =
        UnixListener::bind(layout.control_socket()).map_err(files("the control socket"))?;
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            accepted = listener.accept() => {
                if let Ok((stream, _)) = accepted {
                    let agent = agent.clone();
                    tokio::spawn(async move { serve_control(stream, agent).await });
                }
            }
        }
    }
    tracing::info!("stopping the cluster");
    plane.stop().await;
    Ok(())
}

async fn start(
    layout: &Layout,
) -> Result<(controlplane::ControlPlane, Arc<Agent>), SupervisorError> {
    for dir in [
        layout.pki(),
        layout.logs(),
        layout.volumes(),
        layout.snapshots(),
        layout.pods(),
        layout.etcd_data(),
    ] {
        std::fs::create_dir_all(dir).map_err(files("the state directory"))?;
    }
    std::fs::write(
        layout.resolv_conf(),
        "# No DNS in the ebisu test cluster: names resolve through /etc/hosts.\nnameserver 127.0.0.1\noptions ndots:1 timeout:1 attempts:1\n",
    )
    .map_err(files("resolv.conf"))?;
    let node_specs = layout::nodes();
    let addresses: Vec<String> = node_specs
        .iter()
        .map(|n| network::node_address(n.index))
        .collect();
    let pki = certs::generate(&layout.pki(), &addresses).await?;
    std::fs::write(
        layout.kubeconfig(),
        certs::kubeconfig(&pki, &format!("https://{BRIDGE_ADDR}:{APISERVER_PORT}")),
    )
    .map_err(files("the kubeconfig"))?;
    let indexes: Vec<u8> = node_specs.iter().map(|n| n.index).collect();
    network::delete_bridge().await;
    network::create_bridge(&indexes).await?;
    kubelet_api::start(layout, &pki, &node_specs).await?;
    let plane = controlplane::start(layout, &pki).await?;
    let client = client(layout).await?;
    let ec2 = Ec2::start(&node_specs).await?;
    nodes::register(&client, &node_specs, &ec2).await?;
    ec2_credentials(&client).await?;
    let (stopped, _) = watch::channel(BTreeSet::new());
    for spec in &node_specs {
        tokio::spawn(nodes::heartbeat(
            client.clone(),
            spec.clone(),
            stopped.subscribe(),
        ));
    }
    let stores = Stores::start(&client).await;
    tokio::spawn(provisioner::run(
        client.clone(),
        stores.clone(),
        layout.clone(),
        ec2.clone(),
    ));
    let agent = Agent::new(client, stores, layout.clone(), node_specs, stopped, ec2);
    tokio::spawn(agent.clone().run());
    tokio::spawn(agent.clone().follow_instances());
    Ok((plane, agent))
}

/// The Secret `ebisu-system/local-ec2`: the local EC2 API's endpoint, region
/// and static credentials as environment variables, for the operator's
/// chart (`aws.envFromSecret`), as IRSA would give them on EKS.
async fn ec2_credentials(client: &Client) -> Result<(), SupervisorError> {
    use k8s_openapi::api::core::v1::{Namespace, Secret};
    use kube::api::{Api, PostParams};
    let ns = crate::ebisu::OPERATOR_NAMESPACE;
    let namespace: Namespace = serde_json::from_value(serde_json::json!({
        "metadata": { "name": ns },
    }))
    .map_err(|e| SupervisorError::Client(e.to_string()))?;
    let secret: Secret = serde_json::from_value(serde_json::json!({
        "metadata": { "name": "local-ec2", "namespace": ns },
        "stringData": {
            "AWS_REGION": crate::ec2::REGION,
            "AWS_ENDPOINT_URL_EC2": crate::ec2::endpoint(),
            "AWS_ACCESS_KEY_ID": crate::ec2::ACCESS_KEY_ID,
            "AWS_SECRET_ACCESS_KEY": crate::ec2::SECRET_ACCESS_KEY,
            "AWS_EC2_METADATA_DISABLED": "true",
        },
    }))
    .map_err(|e| SupervisorError::Client(e.to_string()))?;
    let failed = |e: kube::Error| {
        SupervisorError::Client(format!("failed to create the local EC2 credentials: {e}"))
    };
    match Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &namespace)
        .await
    {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 409 => {}
        Err(e) => return Err(failed(e)),
    }
    match Api::<Secret>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &secret)
        .await
    {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 409 => {}
        Err(e) => return Err(failed(e)),
    }
    Ok(())
}

/// One control connection: a line `node stop NAME` or `node start NAME`,
/// answered with `ok` or `error: ...`.
async fn serve_control(stream: tokio::net::UnixStream, agent: Arc<Agent>) {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let words: Vec<&str> = line.split_whitespace().collect();
        let reply = match words.as_slice() {
            ["node", "stop", name] => {
                if agent.stop_node(name).await {
                    "ok".to_owned()
                } else {
                    format!("error: no node {name}")
                }
            }
            ["node", "start", name] => {
                if agent.power_on_node(name).await {
                    "ok".to_owned()
                } else {
                    format!("error: no node {name}")
                }
            }
            _ => format!("error: unknown command {line:?}"),
        };
        if write
            .write_all(format!("{reply}\n").as_bytes())
            .await
            .is_err()
        {
            return;
        }
    }
}
