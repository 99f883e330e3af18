//! `ebisu-operator`: runs the MySQLCluster controller against the cluster it
//! finds (in-cluster service account, or KUBECONFIG).

use clap::Parser;
use ebisu_operator::{
    controller::{self, Context},
    health,
    validate::OperatorSettings,
};
use tracing_subscriber::{EnvFilter, fmt};

#[derive(Debug, Parser)]
#[command(
    version,
    about = "Runs replicated MySQL and MariaDB clusters on Kubernetes"
)]
struct Args {
    /// Image with the ebisu-sidecar binary, used by every instance pod.
    #[arg(long, env = "EBISU_SIDECAR_IMAGE", default_value = concat!("ghcr.io/ebisu-dev/ebisu-sidecar:", env!("CARGO_PKG_VERSION")))]
    sidecar_image: String,

    /// Log as JSON lines instead of text.
    #[arg(long, env = "EBISU_LOG_JSON")]
    log_json: bool,

    /// Name of this operator instance in Events (the pod name when in-cluster).
    #[arg(long, env = "POD_NAME")]
    instance: Option<String>,

    /// Address of the health endpoints (/healthz, /readyz).
    #[arg(long, env = "EBISU_HEALTH_LISTEN", default_value = "0.0.0.0:8080")]
    health_listen: String,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    if args.log_json {
        fmt().json().with_env_filter(filter).init();
    } else {
        fmt()
            .with_env_filter(filter)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init();
    }

    let client = match kube::Client::try_default().await {
        Ok(client) => client,
        Err(error) => {
            tracing::error!(%error, "failed to create a Kubernetes client");
            return std::process::ExitCode::FAILURE;
        }
    };
    let listener = match tokio::net::TcpListener::bind(&args.health_listen).await {
        Ok(listener) => listener,
        Err(error) => {
            tracing::error!(%error, addr = %args.health_listen, "failed to listen for health checks");
            return std::process::ExitCode::FAILURE;
        }
    };
    let readiness = health::Readiness::default();
    tokio::spawn(health::serve(listener, readiness.clone()));
    let settings = OperatorSettings {
        sidecar_image: args.sidecar_image,
    };
    tracing::info!(sidecar_image = %settings.sidecar_image, "starting the MySQLCluster controller");
    readiness.set_ready();
    controller::run(Context::new(client, settings, args.instance)).await;
    std::process::ExitCode::SUCCESS
}
