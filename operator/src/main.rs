//! `ebisu-operator`: runs the MySQLCluster controller against the cluster it
//! finds (in-cluster service account, or KUBECONFIG).

use clap::Parser;
use ebisu_operator::{
    model::EbsDriver,
    reconcile::Context,
    runtime::{self, health, leader::Candidate},
    validate::OperatorSettings,
};
use k8s_openapi::api::storage::v1::CSIDriver;
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

    /// Namespace of the leader-election Lease: the operator's own (defaults
    /// to the service account's namespace in-cluster, the context's outside).
    #[arg(long, env = "POD_NAMESPACE")]
    namespace: Option<String>,

    /// Namespaces to manage MySQLClusters in (comma-separated); every
    /// namespace when empty. With a list, the operator needs Roles in those
    /// namespaces only (the chart's `watchNamespaces`).
    #[arg(long, env = "EBISU_WATCH_NAMESPACES", value_delimiter = ',')]
    watch_namespaces: Vec<String>,

    /// Allow `spec.storage.ebs.volumes` (needs PersistentVolume create and
    /// patch).
    #[arg(long, env = "EBISU_GIVEN_VOLUMES")]
    given_volumes: bool,

    /// Allow `spec.replication.fenceNodes` (needs Node patch).
    #[arg(long, env = "EBISU_FENCE_NODES")]
    fence_nodes: bool,

    /// The EBS CSI driver of the volumes ebisu makes: `ebs.csi.aws.com` (the
    /// EBS CSI add-on) or `ebs.csi.eks.amazonaws.com` (EKS Auto Mode).
    /// Unset: detected from the cluster's CSIDriver objects.
    #[arg(long, env = "EBISU_EBS_PROVISIONER")]
    ebs_provisioner: Option<String>,

    /// The EKS cluster's name: on Auto Mode, volumes ebisu makes are tagged
    /// `eks:eks-cluster-name` with it, without which Auto Mode will not
    /// attach them.
    #[arg(long, env = "EBISU_EKS_CLUSTER_NAME")]
    eks_cluster_name: Option<String>,

    /// Address of the health endpoints (/healthz, /readyz).
    #[arg(long, env = "EBISU_HEALTH_LISTEN", default_value = "0.0.0.0:8080")]
    health_listen: String,
}

/// The install's EBS driver, or the one the cluster's CSIDriver objects
/// say it has. A cluster whose drivers cannot be listed gets the add-on's,
/// with a warning.
async fn ebs_driver(
    client: &kube::Client,
    forced: Option<&str>,
) -> Result<EbsDriver, ebisu_operator::model::ebs_driver::Error> {
    let installed: Vec<String> = if forced.is_some_and(|f| !f.is_empty()) {
        Vec::new()
    } else {
        match kube::Api::<CSIDriver>::all(client.clone())
            .list_metadata(&kube::api::ListParams::default())
            .await
        {
            Ok(list) => list
                .items
                .into_iter()
                .filter_map(|d| d.metadata.name)
                .collect(),
            Err(error) => {
                tracing::warn!(%error, "failed to list CSIDrivers; assuming the EBS CSI add-on (set the chart's storage.ebsProvisioner to choose)");
                Vec::new()
            }
        }
    };
    let driver = EbsDriver::choose(forced, installed.iter().map(String::as_str))?;
    tracing::info!(
        provisioner = driver.provisioner(),
        ?installed,
        "EBS CSI driver"
    );
    Ok(driver)
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

    let namespace = args
        .namespace
        .clone()
        .unwrap_or_else(|| client.default_namespace().to_owned());
    let identity = args.instance.clone().unwrap_or_else(|| {
        use rand::distr::{Alphanumeric, SampleString};
        format!(
            "ebisu-operator-{}",
            Alphanumeric.sample_string(&mut rand::rng(), 8)
        )
    });
    let candidate = match Candidate::new(client.clone(), &namespace, &identity).await {
        Ok(candidate) => candidate,
        Err(error) => {
            tracing::error!(%error, "failed to stand for election");
            return std::process::ExitCode::FAILURE;
        }
    };
    // A standby is ready: it is what a rollout waits for before stopping the
    // leader, and it takes over as soon as the Lease is free.
    readiness.set_ready();
    tracing::info!(%identity, %namespace, lease = runtime::leader::LEASE_NAME, "standing for election");
    tokio::select! {
        () = candidate.acquire() => {}
        () = shutdown_signal() => return std::process::ExitCode::SUCCESS,
    }

    let ebs_driver = match ebs_driver(&client, args.ebs_provisioner.as_deref()).await {
        Ok(driver) => driver,
        Err(error) => {
            tracing::error!(%error, "failed to choose the EBS CSI driver");
            return std::process::ExitCode::FAILURE;
        }
    };
    let settings = OperatorSettings {
        ebs_driver,
        eks_cluster_name: args.eks_cluster_name.filter(|n| !n.trim().is_empty()),
        sidecar_image: args.sidecar_image,
        operator_namespace: namespace.clone(),
        features: ebisu_operator::rbac::Features {
            given_volumes: args.given_volumes,
            fence_nodes: args.fence_nodes,
        },
    };
    tracing::info!(sidecar_image = %settings.sidecar_image, "starting the MySQLCluster controller");
    let namespaces: Vec<String> = args
        .watch_namespaces
        .iter()
        .map(|n| n.trim().to_owned())
        .filter(|n| !n.is_empty())
        .collect();
    let scope = if namespaces.is_empty() {
        runtime::Scope::All
    } else {
        tracing::info!(
            ?namespaces,
            "managing MySQLClusters in these namespaces only"
        );
        runtime::Scope::Namespaces(namespaces)
    };
    // Bounded calls: a fencing step runs inside a reconcile.
    let aws = ebisu_aws::config(std::time::Duration::from_secs(10)).await;
    let ec2 = aws_sdk_ec2::Client::new(&aws);
    let s3 = ebisu_aws::s3(&aws);
    let (mut ctx, triggers) = Context::new(client.clone(), ec2, s3, settings, args.instance);
    let clock = std::sync::Arc::new(ebisu_operator::reconcile::LeaderClock::new(
        runtime::leader::ACT_FOR,
        std::time::Instant::now(),
    ));
    ctx.leader = clock.clone();
    tokio::spawn(runtime::leader::confirm_renewals(
        client,
        namespace.clone(),
        identity.clone(),
        clock,
    ));
    tokio::select! {
        () = runtime::run(ctx, triggers, scope) => {}
        error = candidate.lost() => {
            // Another operator may already be acting: stop now, mid-reconcile
            // if need be, and stand again from a fresh process.
            tracing::error!(%error, "stopping: no longer the leader");
            return std::process::ExitCode::FAILURE;
        }
    }
    if let Err(error) = candidate.release().await {
        tracing::warn!(%error, "the next operator waits for the Lease to run out");
    }
    std::process::ExitCode::SUCCESS
}

/// SIGTERM (the kubelet stopping the pod) or Ctrl-C.
async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::warn!(%error, "failed to watch for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        () = terminate => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
