//! `testcluster`: start, inspect and stop the local Kubernetes cluster.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use ebisu_testcluster::agent::launch;
use ebisu_testcluster::cluster::{self, TestCluster};
use ebisu_testcluster::{DEFAULT_STATE_DIR, Layout, cleanup, supervisor};
use k8s_openapi::api::core::v1::Node;
use kube::ResourceExt;
use kube::api::{Api, ListParams};

#[derive(Debug, Parser)]
#[command(
    name = "testcluster",
    about = "A local Kubernetes cluster: real control plane, pods as processes, EBS-like volumes"
)]
struct Cli {
    /// Where the cluster keeps its state (certificates, etcd, volumes, logs).
    #[arg(long, global = true, env = "EBISU_TESTCLUSTER_DIR", default_value = DEFAULT_STATE_DIR)]
    state_dir: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start the cluster in the background (cleaning up an earlier run first).
    Up,
    /// Stop everything the cluster started and remove its state.
    Down,
    /// Show whether the cluster runs, and its nodes.
    Status,
    /// Print a container's log.
    Logs {
        /// The pod.
        pod: String,
        /// The container (required when the pod has several).
        #[arg(short, long)]
        container: Option<String>,
        /// The pod's namespace.
        #[arg(short, long, default_value = "default")]
        namespace: String,
    },
    /// Stop or start a node.
    Node {
        #[command(subcommand)]
        action: NodeAction,
    },
    /// Run the cluster in the foreground (what `up` starts in the background).
    #[command(hide = true)]
    Supervise,
    /// Start a container's process (used by the agent inside the pod's namespaces).
    #[command(hide = true)]
    RunContainer {
        /// The launch spec.
        spec: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum NodeAction {
    /// Simulate a crashed machine: no heartbeats, pods frozen and unreachable.
    Stop {
        /// The node.
        name: String,
    },
    /// Bring a stopped machine back.
    Start {
        /// The node.
        name: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::RunContainer { spec } = &cli.command {
        // Replaces this process with the container's on success.
        let error = launch::exec(spec);
        eprintln!("testcluster run-container: {error}");
        return ExitCode::from(127);
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,kube=warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("testcluster: failed to start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("testcluster: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<(), Box<dyn std::error::Error>> {
    let layout = Layout::new(&cli.state_dir);
    match cli.command {
        Command::Up => {
            let exe = std::env::current_exe()?;
            let started = std::time::Instant::now();
            let cluster = TestCluster::up(&cli.state_dir, &exe).await?;
            let kubeconfig = cluster.kubeconfig();
            // The cluster keeps running after this process exits.
            std::mem::forget(cluster);
            eprintln!("testcluster: up in {:.1}s", started.elapsed().as_secs_f64());
            println!("export KUBECONFIG={}", kubeconfig.display());
        }
        Command::Down => cleanup::down(&layout).await?,
        Command::Status => {
            let ready = std::fs::read_to_string(layout.ready_file()).unwrap_or_default();
            if ready.trim() != "ok" {
                println!("not running (state dir {})", layout.root().display());
                return Ok(());
            }
            println!(
                "running; export KUBECONFIG={}",
                layout.kubeconfig().display()
            );
            let client = supervisor::client(&layout).await?;
            for node in Api::<Node>::all(client)
                .list(&ListParams::default())
                .await?
            {
                let ready = node
                    .status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
                    .map_or("Unknown".to_owned(), |c| c.status.clone());
                let zone = node
                    .labels()
                    .get("topology.kubernetes.io/zone")
                    .cloned()
                    .unwrap_or_default();
                println!("{}\t{zone}\tReady={ready}", node.name_any());
            }
        }
        Command::Logs {
            pod,
            container,
            namespace,
        } => {
            let file = cluster::log_file(&layout, &namespace, &pod, container.as_deref())?;
            print!("{}", std::fs::read_to_string(file)?);
        }
        Command::Node { action } => match action {
            NodeAction::Stop { name } => {
                cluster::control(&layout, &format!("node stop {name}")).await?
            }
            NodeAction::Start { name } => {
                cluster::control(&layout, &format!("node start {name}")).await?
            }
        },
        Command::Supervise => supervisor::run(layout).await?,
        Command::RunContainer { .. } => {}
    }
    Ok(())
}
