//! `ebisu-sidecar`: the helper binary in every ebisu instance pod.

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};
use ebisu_api::names::{CONFIG_TEMPLATE_DIR, SERVER_CONFIG_FILE};
use ebisu_sidecar::{identity, install, server_config};
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
    /// Give the server its identity and write its my.cnf (init container).
    Init(InitArgs),
}

#[derive(Debug, clap::Args)]
struct InitArgs {
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
    /// Directory holding the ConfigMap's my.cnf parts.
    #[arg(long, default_value = CONFIG_TEMPLATE_DIR)]
    config_parts: PathBuf,
    /// Where to write the server's my.cnf.
    #[arg(long, default_value = SERVER_CONFIG_FILE)]
    output: PathBuf,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let result = match Cli::parse().command {
        Command::Install { dest } => install::install(&dest).map_err(|e| e.to_string()),
        Command::Init(args) => init(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            error!("{message}");
            ExitCode::FAILURE
        }
    }
}

fn init(args: InitArgs) -> Result<(), String> {
    let hostname = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok());
    let env = identity::Environment {
        pod_name: args.pod_name,
        hostname,
        namespace: args.namespace,
        cluster: args.cluster,
        server_id_base: args.server_id_base,
        role_label: args.role,
    };
    let me = identity::resolve(&env).map_err(|e| e.to_string())?;
    info!(pod = %me.pod_name, server_id = me.server_id, role = ?me.role, report_host = %me.report_host, "resolved identity");
    server_config::write(&args.config_parts, &args.output, &me).map_err(|e| e.to_string())?;
    info!(path = %args.output.display(), "wrote server config");
    Ok(())
}
