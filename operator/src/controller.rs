//! The controller: watches MySQLClusters and their children and runs one
//! reconcile per cluster (validate -> build -> apply -> status), plus the
//! finalizer that removes the cluster-scoped StorageClass the operator made.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use ebisu_api::{
    MySQLCluster, MySQLClusterStatus, Phase,
    names::{FIELD_MANAGER, LABEL_CLUSTER, MANAGED_BY},
};
use futures::StreamExt;
use k8s_openapi::{
    api::{
        apps::v1::StatefulSet,
        core::v1::{
            ConfigMap, ObjectReference, PersistentVolume, PersistentVolumeClaim, Pod, Secret,
            Service,
        },
        policy::v1::PodDisruptionBudget,
        storage::v1::StorageClass,
    },
    apimachinery::pkg::apis::meta::v1::Time,
    jiff::Timestamp,
};
use kube::{
    Api, Client, Resource, ResourceExt,
    api::{DeleteParams, ListParams, Patch, PatchParams},
    runtime::{
        Controller,
        controller::Action,
        events::{Event, EventType, Recorder, Reporter},
        finalizer::{self, Event as FinalizerEvent},
        reflector::ObjectRef,
        watcher,
    },
};
use serde_json::json;
use tracing::{info, instrument, warn};

use crate::{
    apply, build,
    build::storage_class::LABEL_NAMESPACE,
    clustering,
    status::{self, Observed},
    validate::{self, OperatorSettings},
};

/// Finalizer that lets the operator remove the cluster-scoped StorageClass.
pub const FINALIZER: &str = "ebisu.dev/cleanup";

/// How soon to look again while a cluster is still settling.
const UNSETTLED_REQUEUE: Duration = Duration::from_secs(10);
/// How soon to look again when everything is as desired. Drift on a server
/// (replication stopped, a replica made writable, errant transactions)
/// changes nothing Kubernetes watches: this period is how soon it is found.
const SETTLED_REQUEUE: Duration = Duration::from_secs(30);
/// How soon to retry after an error.
const ERROR_REQUEUE: Duration = Duration::from_secs(15);

/// Why a reconcile failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Applying children failed.
    #[error(transparent)]
    Apply(#[from] apply::Error),
    /// Reading children or writing status failed.
    #[error("failed to {action}: {source}")]
    Api {
        /// What was being done.
        action: &'static str,
        /// The client error.
        #[source]
        source: kube::Error,
    },
    /// The finalizer machinery failed.
    #[error("failed to run the finalizer: {0}")]
    Finalizer(#[source] Box<finalizer::Error<Error>>),
}

impl Error {
    /// A short label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Apply(e) => e.metric_label(),
            Error::Api { .. } => "api",
            Error::Finalizer(_) => "finalizer",
        }
    }
}

fn api_error(action: &'static str) -> impl FnOnce(kube::Error) -> Error {
    move |source| Error::Api { action, source }
}

/// What every reconcile shares.
#[derive(Clone)]
pub struct Context {
    /// API client.
    pub client: Client,
    /// Operator-wide settings.
    pub settings: OperatorSettings,
    /// Event recorder.
    pub recorder: Recorder,
    /// HTTP client for the instance agents, shared so its connections are reused.
    pub agents: reqwest::Client,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl Context {
    /// A context whose Events are reported as coming from `instance`.
    pub fn new(client: Client, settings: OperatorSettings, instance: Option<String>) -> Self {
        let reporter = Reporter {
            controller: FIELD_MANAGER.to_owned(),
            instance,
        };
        let recorder = Recorder::new(client.clone(), reporter);
        Self {
            client,
            settings,
            recorder,
            agents: reqwest::Client::new(),
        }
    }
}

/// Runs the controller until a shutdown signal.
pub async fn run(ctx: Context) {
    let client = ctx.client.clone();
    let ours =
        watcher::Config::default().labels(&format!("app.kubernetes.io/managed-by={MANAGED_BY}"));
    Controller::new(
        Api::<MySQLCluster>::all(client.clone()),
        watcher::Config::default(),
    )
    .owns(Api::<StatefulSet>::all(client.clone()), ours.clone())
    .owns(Api::<Service>::all(client.clone()), ours.clone())
    .owns(Api::<ConfigMap>::all(client.clone()), ours.clone())
    .owns(Api::<Secret>::all(client.clone()), ours.clone())
    .owns(Api::<PodDisruptionBudget>::all(client.clone()), ours)
    // Pod readiness and role labels change status; pods are owned by the
    // StatefulSet, so map them to their cluster by label.
    .watches(
        Api::<Pod>::all(client.clone()),
        watcher::Config::default().labels(LABEL_CLUSTER),
        |pod| {
            let cluster = pod.labels().get(LABEL_CLUSTER)?.clone();
            Some(ObjectRef::new(&cluster).within(&pod.namespace()?))
        },
    )
    .shutdown_on_signal()
    .run(reconcile, error_policy, Arc::new(ctx))
    .for_each(|result| async move {
        if let Err(error) = result {
            warn!(%error, "reconcile failed");
        }
    })
    .await;
}

/// Reconciles one cluster.
#[instrument(skip_all, fields(cluster = %cluster.name_any(), namespace = cluster.namespace().unwrap_or_default()))]
pub async fn reconcile(cluster: Arc<MySQLCluster>, ctx: Arc<Context>) -> Result<Action, Error> {
    let ns = cluster.namespace().unwrap_or_default();
    let api = Api::<MySQLCluster>::namespaced(ctx.client.clone(), &ns);
    finalizer::finalizer(&api, FINALIZER, cluster, |event| async {
        match event {
            FinalizerEvent::Apply(cluster) => apply_cluster(&cluster, &ctx).await,
            FinalizerEvent::Cleanup(cluster) => cleanup(&cluster, &ctx).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)))
}

/// Logs and retries.
pub fn error_policy(cluster: Arc<MySQLCluster>, error: &Error, _ctx: Arc<Context>) -> Action {
    warn!(cluster = %cluster.name_any(), kind = error.metric_label(), %error, "reconcile failed; retrying");
    Action::requeue(ERROR_REQUEUE)
}

async fn apply_cluster(cluster: &MySQLCluster, ctx: &Context) -> Result<Action, Error> {
    let now = Time(Timestamp::now());
    let validated = match validate::validate(cluster, &ctx.settings) {
        Ok(validated) => validated,
        Err(error) => {
            let message = error.to_string();
            let already_reported = cluster.status.as_ref().is_some_and(|s| {
                s.conditions.iter().any(|c| {
                    c.type_ == status::SPEC_VALID && c.status == "False" && c.message == message
                })
            });
            if !already_reported {
                warn!(%message, "spec cannot be honoured");
                publish(
                    ctx,
                    cluster,
                    EventType::Warning,
                    "InvalidSpec",
                    "Validate",
                    message.clone(),
                    None,
                )
                .await;
            }
            write_status(ctx, cluster, status::invalid(cluster, &message, &now)).await?;
            // Nothing will change until the user edits the spec.
            return Ok(Action::await_change());
        }
    };

    let initialised = cluster
        .status
        .as_ref()
        .is_some_and(|s| s.current_primary.is_some());
    let children = build::children(&validated, initialised);
    let applied = apply::all(&ctx.client, &validated, children).await?;
    if applied.credentials_generated {
        publish(
            ctx,
            cluster,
            EventType::Normal,
            "CredentialsGenerated",
            "Apply",
            "generated missing credentials in the credentials Secret".to_owned(),
            None,
        )
        .await;
    }
    for claim in &applied.resized_claims {
        info!(claim, size = %validated.storage.size.0, "expanding volume claim");
        publish(
            ctx,
            cluster,
            EventType::Normal,
            "VolumeExpanding",
            "Resize",
            format!("raised {claim} to {}", validated.storage.size.0),
            Some(about::<PersistentVolumeClaim>(&validated.namespace, claim)),
        )
        .await;
    }

    let observed = observe(&ctx.client, &validated.namespace, &validated.name).await?;
    let (view, acted) = cluster_servers(ctx, cluster, &validated, &observed).await?;
    let new_status = status::compute(cluster, &observed, &view, &now);
    let settled = new_status.phase == Some(Phase::Running) && !acted;
    write_status(ctx, cluster, new_status).await?;
    Ok(Action::requeue(if settled {
        SETTLED_REQUEUE
    } else {
        UNSETTLED_REQUEUE
    }))
}

/// Reads every server, decides and repairs; returns what status should say
/// and whether anything was done (then the cluster is not settled yet).
async fn cluster_servers(
    ctx: &Context,
    cluster: &MySQLCluster,
    validated: &validate::ValidatedCluster,
    observed: &Observed,
) -> Result<(status::ServerView, bool), Error> {
    let Some(accounts) = read_accounts(&ctx.client, validated).await? else {
        return Ok((status::ServerView::default(), false));
    };
    let servers = clustering::observe::servers(
        &validated.name,
        &validated.namespace,
        &observed.pods,
        &accounts.operator,
        &ctx.agents,
    )
    .await;
    let states: Vec<_> = servers.iter().map(|s| s.state.clone()).collect();
    let decision = clustering::decide(&states, validated.semi_sync.is_some());
    let target = clustering::act::Target {
        client: &ctx.client,
        namespace: &validated.namespace,
        servers: &servers,
        account: &accounts.operator,
        replication: &accounts.replication,
        semi_sync: validated.semi_sync.map(|s| ebisu_mysql::SemiSync {
            enabled: true,
            wait_for_replicas: s.wait_for_replicas,
            timeout_ms: s.timeout_ms,
        }),
    };
    for action in &decision.actions {
        let (reason, message) = clustering::act::describe(action);
        let pod = || Some(about::<Pod>(&validated.namespace, action.pod()));
        match clustering::act::apply(action, &target).await {
            Ok(()) => {
                info!(reason, %message, "repaired");
                publish(
                    ctx,
                    cluster,
                    EventType::Normal,
                    reason,
                    "Cluster",
                    message,
                    pod(),
                )
                .await;
            }
            Err(error) => {
                warn!(reason, %error, "repair failed");
                publish(
                    ctx,
                    cluster,
                    EventType::Warning,
                    "RepairFailed",
                    "Cluster",
                    format!("{message}: {error}"),
                    pod(),
                )
                .await;
            }
        }
    }
    let described: Vec<_> = decision
        .problems
        .iter()
        .map(|problem| (problem, describe_problem(problem)))
        .collect();
    let problems: Vec<String> = described
        .iter()
        .map(|(_, (_, message))| message.clone())
        .collect();
    let previous = cluster.status.as_ref().and_then(|s| {
        s.conditions
            .iter()
            .find(|c| c.type_ == status::DEGRADED)
            .map(|c| c.message.clone())
    });
    if !problems.is_empty() && previous.as_deref() != Some(problems.join("; ").as_str()) {
        for (problem, (reason, message)) in &described {
            warn!(reason, %message, "cluster problem");
            publish(
                ctx,
                cluster,
                EventType::Warning,
                reason,
                "Cluster",
                message.clone(),
                problem
                    .pod()
                    .map(|pod| about::<Pod>(&validated.namespace, pod)),
            )
            .await;
        }
    }
    let view = status::ServerView {
        primary: decision.primary.clone(),
        servers: servers
            .iter()
            .filter(|s| s.state.reachable)
            .map(|s| {
                (
                    s.state.pod.clone(),
                    (
                        s.state.gtid.as_ref().map(ToString::to_string),
                        s.lag_seconds,
                    ),
                )
            })
            .collect(),
        problems,
    };
    Ok((view, !decision.actions.is_empty()))
}

/// The Event reason and the message (also the Degraded condition's) of a problem.
fn describe_problem(problem: &clustering::Problem) -> (&'static str, String) {
    use clustering::Problem;
    match problem {
        Problem::PrimaryUnreachable(pod) => (
            "PrimaryUnreachable",
            format!("primary {pod} does not answer; no replica is promoted automatically yet"),
        ),
        Problem::NoPrimary(why) => ("NoPrimary", format!("no primary: {why}")),
        Problem::ErrantTransactions { pod, gtids } => (
            "ErrantTransactions",
            format!(
                "{pod} holds transactions the primary lacks ({gtids}); it is fenced and left out until re-cloned"
            ),
        ),
        Problem::ReplicationBroken { pod, error } => (
            "ReplicationBroken",
            format!("replication on {pod} stopped: {error}"),
        ),
        Problem::PrimaryReplicates(pod) => (
            "PrimaryReplicates",
            format!("primary {pod} is configured to replicate from another server"),
        ),
    }
}

struct Accounts {
    operator: clustering::observe::OperatorAccount,
    replication: ebisu_mysql::Credentials,
}

/// The operator and replication accounts from the credentials Secret.
async fn read_accounts(
    client: &Client,
    validated: &validate::ValidatedCluster,
) -> Result<Option<Accounts>, Error> {
    use ebisu_api::names::secret_keys;
    let secret = Api::<Secret>::namespaced(client.clone(), &validated.namespace)
        .get_opt(&ebisu_api::names::credentials_secret(&validated.name))
        .await
        .map_err(api_error("read the credentials Secret"))?;
    let Some(data) = secret.and_then(|s| s.data) else {
        return Ok(None);
    };
    let get = |key: &str| {
        data.get(key)
            .map(|v| String::from_utf8_lossy(&v.0).into_owned())
    };
    let (Some(user), Some(password), Some(repl_user), Some(repl_password)) = (
        get(secret_keys::OPERATOR_USER),
        get(secret_keys::OPERATOR_PASSWORD),
        get(secret_keys::REPLICATION_USER),
        get(secret_keys::REPLICATION_PASSWORD),
    ) else {
        return Ok(None);
    };
    let Ok(replication) = ebisu_mysql::Credentials::new(&repl_user, &repl_password) else {
        return Ok(None);
    };
    Ok(Some(Accounts {
        operator: clustering::observe::OperatorAccount { user, password },
        replication,
    }))
}

/// Deletes the StorageClass the operator created for this cluster. Volumes are
/// retained (reclaim policy Retain) and PVCs are never deleted here.
async fn cleanup(cluster: &MySQLCluster, ctx: &Context) -> Result<Action, Error> {
    let api = Api::<StorageClass>::all(ctx.client.clone());
    let selector = format!(
        "{LABEL_CLUSTER}={},{LABEL_NAMESPACE}={},app.kubernetes.io/managed-by={MANAGED_BY}",
        cluster.name_any(),
        cluster.namespace().unwrap_or_default()
    );
    let classes = api
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(api_error("list storage classes"))?;
    for class in classes {
        let name = class.name_any();
        info!(storage_class = name, "deleting managed StorageClass");
        match api.delete(&name, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(api_error("delete storage class")(e)),
        }
    }
    Ok(Action::await_change())
}

async fn observe(client: &Client, ns: &str, name: &str) -> Result<Observed, Error> {
    let selector = format!("{LABEL_CLUSTER}={name}");
    let stateful_set = Api::<StatefulSet>::namespaced(client.clone(), ns)
        .get_opt(name)
        .await
        .map_err(api_error("read the StatefulSet"))?;
    let pods = Api::<Pod>::namespaced(client.clone(), ns)
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(api_error("list pods"))?
        .items;
    let claims = Api::<PersistentVolumeClaim>::namespaced(client.clone(), ns)
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(api_error("list volume claims"))?
        .items;
    let volume_api = Api::<PersistentVolume>::all(client.clone());
    let mut volumes = BTreeMap::new();
    for volume_name in claims
        .iter()
        .filter_map(|c| c.spec.as_ref()?.volume_name.clone())
    {
        if let Some(volume) = volume_api
            .get_opt(&volume_name)
            .await
            .map_err(api_error("read a volume"))?
        {
            volumes.insert(volume_name, volume);
        }
    }
    Ok(Observed {
        stateful_set,
        pods,
        claims,
        volumes,
    })
}

/// Writes status only when it changed, so that status writes do not trigger
/// reconciles of their own.
async fn write_status(
    ctx: &Context,
    cluster: &MySQLCluster,
    status: MySQLClusterStatus,
) -> Result<(), Error> {
    if cluster.status.as_ref() == Some(&status) {
        return Ok(());
    }
    let api = Api::<MySQLCluster>::namespaced(
        ctx.client.clone(),
        &cluster.namespace().unwrap_or_default(),
    );
    let patch = json!({
        "apiVersion": MySQLCluster::api_version(&()),
        "kind": MySQLCluster::kind(&()),
        "status": status,
    });
    api.patch_status(
        &cluster.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(patch),
    )
    .await
    .map_err(api_error("write status"))?;
    Ok(())
}

async fn publish(
    ctx: &Context,
    cluster: &MySQLCluster,
    type_: EventType,
    reason: &str,
    action: &str,
    note: String,
    about: Option<ObjectReference>,
) {
    // The recorder folds Events with the same reason about the same objects
    // into one series that keeps the first note; naming the object an Event
    // is about keeps, say, a fence of orders-1 apart from one of orders-2.
    let event = Event {
        type_,
        reason: reason.to_owned(),
        note: Some(note),
        action: action.to_owned(),
        secondary: about,
    };
    // An Event that cannot be written must not fail the reconcile.
    if let Err(error) = ctx.recorder.publish(&event, &cluster.object_ref(&())).await {
        warn!(%error, reason, "failed to publish event");
    }
}

/// A reference to an object of the cluster's namespace, for an Event.
fn about<K: Resource<DynamicType = ()>>(namespace: &str, name: &str) -> ObjectReference {
    ObjectReference {
        api_version: Some(K::api_version(&()).into_owned()),
        kind: Some(K::kind(&()).into_owned()),
        namespace: Some(namespace.to_owned()),
        name: Some(name.to_owned()),
        ..ObjectReference::default()
    }
}
