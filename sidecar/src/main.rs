//! `ebisu-sidecar`: the helper binary in every ebisu instance pod.

use std::{path::PathBuf, process::ExitCode, time::Duration};

use clap::{Parser, Subcommand};
use ebisu_api::{
    DonorPreference, Flavor,
    cluster::MAX_REPLICAS,
    names::{
        self, AGENT_PORT, CONFIG_TEMPLATE_DIR, CREDENTIALS_DIR, DATA_DIR, MYSQL_PORT, RUN_DIR,
        SERVER_CONFIG_FILE,
    },
};
use ebisu_sidecar::{agent, credentials, identity, init, install, server::Endpoint, server_config};
use tracing::{error, info};

#[derive(Debug, Parser)]
#[command(version, about = "Per-pod helper of an ebisu MySQL/MariaDB instance")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Copy this binary to DEST (used by the install-sidecar init container).
    Install {
        /// Where to put the binary.
        dest: PathBuf,
    },
    /// Give the server its identity, write its my.cnf and seed an empty data directory.
    Init(InitArgs),
    /// Serve health, status, metrics and clones; set up replication after a clone.
    Agent(AgentArgs),
    /// preStop hook: keep a primary's server up until the operator moved the primary away.
    PreStop(PreStopArgs),
}

#[derive(Debug, clap::Args)]
struct PreStopArgs {
    #[command(flatten)]
    pod: PodArgs,
    /// This pod's agent.
    #[arg(long, default_value_t = format!("http://127.0.0.1:{AGENT_PORT}"))]
    agent: String,
    /// The longest the hook holds the server up (keep it below the pod's
    /// termination grace period).
    #[arg(long, default_value_t = 90)]
    timeout_seconds: u64,
}

/// Who this pod is; shared by `init` and `agent`.
#[derive(Debug, clap::Args)]
struct PodArgs {
    /// Pod name, `<cluster>-<ordinal>`; the hostname when unset.
    #[arg(long, env = "POD_NAME")]
    pod_name: Option<String>,
    /// Pod namespace.
    #[arg(long, env = "POD_NAMESPACE")]
    namespace: Option<String>,
    /// Cluster name; the pod name's prefix when unset.
    #[arg(long, env = "EBISU_CLUSTER")]
    cluster: Option<String>,
    /// First server id of the cluster.
    #[arg(long, env = "EBISU_SERVER_ID_BASE", default_value_t = 100)]
    server_id_base: i64,
    /// The pod's role label, empty until the operator sets one.
    #[arg(long, env = "EBISU_ROLE")]
    role: Option<String>,
    /// Server family.
    #[arg(long, env = "EBISU_FLAVOR", default_value = "mariadb", value_parser = parse_flavor)]
    flavor: Flavor,
    /// Data directory.
    #[arg(long, default_value = DATA_DIR)]
    data_dir: PathBuf,
    /// The server's my.cnf.
    #[arg(long, default_value = SERVER_CONFIG_FILE)]
    server_config: PathBuf,
    /// Directory of the mounted credentials Secret.
    #[arg(long, default_value = CREDENTIALS_DIR)]
    credentials: PathBuf,
    /// Peers' agent URLs; derived from the cluster's pod names when none are given.
    #[arg(long = "peer", env = "EBISU_PEERS", value_delimiter = ',')]
    peers: Vec<String>,
}

#[derive(Debug, clap::Args)]
struct InitArgs {
    #[command(flatten)]
    pod: PodArgs,
    /// Directory holding the ConfigMap's my.cnf parts.
    #[arg(long, default_value = CONFIG_TEMPLATE_DIR)]
    config_parts: PathBuf,
    /// Directory for the temporary server's socket.
    #[arg(long, default_value = RUN_DIR)]
    run_dir: PathBuf,
    /// Only the primary may serve copies.
    #[arg(long, env = "EBISU_CLONE_PRIMARY_ONLY")]
    clone_from_primary_only: bool,
    /// How long to keep trying donors before failing (the container then restarts).
    #[arg(long, default_value_t = 600)]
    donor_timeout_seconds: u64,
    /// Bytes per second a MySQL CLONE may read from its donor (the donor
    /// agent enforces it for MariaDB's streamed copies).
    #[arg(long, env = "EBISU_CLONE_RATE_LIMIT")]
    clone_rate_limit: Option<u64>,
    /// The application's database to create when bootstrapping.
    #[arg(long, env = "EBISU_APP_DATABASE", requires = "app_owner")]
    app_database: Option<String>,
    /// Its owner account (password: the credentials' `app-password`).
    #[arg(long, env = "EBISU_APP_OWNER", requires = "app_database")]
    app_owner: Option<String>,
}

#[derive(Debug, clap::Args)]
struct AgentArgs {
    #[command(flatten)]
    pod: PodArgs,
    /// Address to serve HTTP on.
    #[arg(long, env = "EBISU_AGENT_LISTEN", default_value_t = format!("0.0.0.0:{AGENT_PORT}"))]
    listen: String,
    /// The server's socket.
    #[arg(long, default_value_t = format!("{RUN_DIR}/mysqld.sock"))]
    socket: String,
    /// Host peers reach the server at; the pod's DNS name when unset.
    #[arg(long)]
    advertise_host: Option<String>,
    /// Port peers reach the server at.
    #[arg(long, default_value_t = MYSQL_PORT)]
    advertise_port: u16,
    /// Directory for temporary files.
    #[arg(long, default_value = "/tmp")]
    scratch_dir: PathBuf,
    /// Bytes per second a clone may be served at.
    #[arg(long, env = "EBISU_CLONE_RATE_LIMIT")]
    clone_rate_limit: Option<u64>,
    /// The cluster's failover delay (spec.replication.failoverAfterSeconds).
    #[arg(long, env = "EBISU_FAILOVER_AFTER_SECONDS", default_value_t = 3)]
    failover_after_seconds: u64,
    /// The cluster's primary Lease: renewed while this pod holds it, and
    /// the server fenced when it cannot be (none: no Lease, as outside
    /// Kubernetes). The pod's ServiceAccount must be able to read and
    /// patch it.
    #[arg(long, env = "EBISU_PRIMARY_LEASE")]
    primary_lease: Option<String>,
}

fn parse_flavor(s: &str) -> Result<Flavor, String> {
    match s {
        "mariadb" => Ok(Flavor::Mariadb),
        "mysql" => Ok(Flavor::Mysql),
        other => Err(format!(
            "unknown flavor {other:?}: expected mariadb or mysql"
        )),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let result = match Cli::parse().command {
        Command::Install { dest } => install::install(&dest).map_err(|e| e.to_string()),
        Command::Init(args) => run_init(args).await,
        Command::Agent(args) => run_agent(args).await,
        Command::PreStop(args) => run_pre_stop(args).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            error!("{message}");
            ExitCode::FAILURE
        }
    }
}

fn resolve_identity(pod: &PodArgs) -> Result<identity::Identity, String> {
    let hostname = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok());
    identity::resolve(&identity::Environment {
        pod_name: pod.pod_name.clone(),
        hostname,
        namespace: pod.namespace.clone(),
        cluster: pod.cluster.clone(),
        server_id_base: pod.server_id_base,
        role_label: pod.role.clone(),
    })
    .map_err(|e| e.to_string())
}

/// The peers' agents: given, or every other ordinal of the cluster.
fn peer_urls(pod: &PodArgs, me: &identity::Identity) -> Vec<String> {
    if !pod.peers.is_empty() {
        return pod
            .peers
            .iter()
            .filter(|p| !p.is_empty())
            .cloned()
            .collect();
    }
    let cluster = pod
        .cluster
        .clone()
        .or_else(|| me.pod_name.rsplit_once('-').map(|(c, _)| c.to_owned()))
        .unwrap_or_default();
    let namespace = pod.namespace.clone().unwrap_or_default();
    (0..MAX_REPLICAS.unsigned_abs())
        .filter(|n| *n != me.ordinal)
        .map(|n| {
            format!(
                "http://{}:{AGENT_PORT}",
                names::pod_host(&cluster, &namespace, n)
            )
        })
        .collect()
}

async fn run_init(args: InitArgs) -> Result<(), String> {
    let me = resolve_identity(&args.pod)?;
    info!(pod = %me.pod_name, server_id = me.server_id, role = ?me.role, report_host = %me.report_host, "resolved identity");
    server_config::write(&args.config_parts, &args.pod.server_config, &me)
        .map_err(|e| e.to_string())?;
    info!(path = %args.pod.server_config.display(), "wrote server config");
    let credentials = credentials::read(&args.pod.credentials).map_err(|e| e.to_string())?;
    // Only an explicit "allowed" allows it: the operator writes it only for a
    // cluster that never had data, so a lost volume is refilled from a peer
    // instead of becoming an empty primary. Missing or unreadable forbids.
    let bootstrap_allowed = std::fs::read_to_string(args.config_parts.join("bootstrap"))
        .is_ok_and(|s| s.trim() == "allowed");
    let application = match (args.app_database, args.app_owner) {
        (Some(database), Some(owner)) => Some(init::Application {
            database,
            owner: credentials::read_application(&args.pod.credentials, &owner)
                .map_err(|e| e.to_string())?,
        }),
        _ => None,
    };
    let settings = init::Settings {
        family: args.pod.flavor,
        data_dir: args.pod.data_dir.clone(),
        server_config: args.pod.server_config.clone(),
        run_dir: args.run_dir,
        peers: peer_urls(&args.pod, &me),
        donor_preference: if args.clone_from_primary_only {
            DonorPreference::PrimaryOnly
        } else {
            DonorPreference::PreferReplica
        },
        bootstrap_allowed,
        donor_timeout: Duration::from_secs(args.donor_timeout_seconds),
        clone_rate_limit: args.clone_rate_limit,
        application,
    };
    init::run(&settings, &me, &credentials)
        .await
        .map_err(|e| e.to_string())?;
    // A restore to a point: the archive is replayed before the server opens.
    if let Some(order) =
        init::replay::order_for(&args.config_parts, &me.pod_name).map_err(|e| e.to_string())?
    {
        init::replay::run(&settings, &order, &credentials)
            .await
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

async fn run_pre_stop(args: PreStopArgs) -> Result<(), String> {
    let me = resolve_identity(&args.pod)?;
    let why = ebisu_sidecar::pre_stop::run(
        &args.agent,
        &peer_urls(&args.pod, &me),
        Duration::from_secs(args.timeout_seconds),
    )
    .await;
    info!(pod = %me.pod_name, why, "pre-stop: letting the container stop");
    Ok(())
}

async fn run_agent(args: AgentArgs) -> Result<(), String> {
    let me = resolve_identity(&args.pod)?;
    let credentials = credentials::read(&args.pod.credentials).map_err(|e| e.to_string())?;
    let config = agent::Config {
        listen: args.listen,
        endpoint: Endpoint::Socket(PathBuf::from(args.socket)),
        advertise_host: args.advertise_host.unwrap_or(me.report_host),
        advertise_port: args.advertise_port,
        family: args.pod.flavor,
        data_dir: args.pod.data_dir,
        server_config: args.pod.server_config,
        scratch_dir: args.scratch_dir,
        clone_rate_limit: args.clone_rate_limit,
        failover_after: Duration::from_secs(args.failover_after_seconds),
        lease: args
            .primary_lease
            .map(|name| agent::primary_lease::LeaseConfig {
                name,
                namespace: args.pod.namespace.clone().unwrap_or_default(),
                pod: me.pod_name.clone(),
            }),
    };
    agent::run(agent::Shared::new(config, credentials))
        .await
        .map_err(|e| e.to_string())
}
