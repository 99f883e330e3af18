//! The controller: watches MySQLClusters, their children, their pods and
//! the nodes their primaries run on, and runs one reconcile per cluster:
//! validate -> build -> apply -> dereference -> the clustering pass ->
//! status. Also the finalizer that removes the cluster-scoped StorageClass
//! the operator made, and the fast primary probe that wakes a cluster up
//! between reconciles.

use std::{sync::Arc, time::Duration};

use ebisu_api::{
    MySQLCluster, MySQLClusterStatus, Phase,
    names::{LABEL_CLUSTER, MANAGED_BY},
};
use futures::StreamExt;
use k8s_openapi::{
    api::{
        apps::v1::StatefulSet,
        core::v1::{ConfigMap, Node, Pod, Secret, Service},
        policy::v1::PodDisruptionBudget,
        storage::v1::StorageClass,
    },
    apimachinery::pkg::apis::meta::v1::Time,
    jiff::Timestamp,
};
use kube::{
    Api, Client, ResourceExt,
    api::{DeleteParams, ListParams},
    runtime::{
        Controller, WatchStreamExt,
        controller::Action,
        events::{Recorder, Reporter},
        finalizer::{self, Event as FinalizerEvent},
        reflector::ObjectRef,
        watcher,
    },
};
use tracing::{info, instrument, warn};

use crate::{
    apply, build,
    build::storage_class::LABEL_NAMESPACE,
    claims,
    clustering::{self, prober::Prober},
    dereference, events, init_failures, status,
    validate::{self, OperatorSettings},
};

/// Finalizer that lets the operator remove the cluster-scoped StorageClass.
pub const FINALIZER: &str = "ebisu.dev/cleanup";

/// How soon to look again while a cluster is still settling.
const UNSETTLED_REQUEUE: Duration = Duration::from_secs(10);
/// How soon to look again when everything is as desired. Drift on a server
/// (replication stopped, a replica made writable, errant transactions)
/// changes nothing Kubernetes watches: this period is how soon it is found.
/// A silent primary is noticed sooner, by the fast probe.
const SETTLED_REQUEUE: Duration = Duration::from_secs(30);
/// How soon to retry after an error.
const ERROR_REQUEUE: Duration = Duration::from_secs(15);

/// Why a reconcile failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Applying children failed.
    #[error(transparent)]
    Apply(#[from] apply::Error),
    /// Reading children failed.
    #[error(transparent)]
    Dereference(dereference::Error),
    /// Writing status failed.
    #[error("failed to {action}: {source}")]
    Api {
        /// What was being done.
        action: &'static str,
        /// The client error.
        #[source]
        source: kube::Error,
    },
    /// A node the deleted cluster fenced could not be unfenced.
    #[error("failed to unfence a node of the deleted cluster: {0}")]
    Unfence(#[source] crate::fencing::Error),
    /// The finalizer machinery failed.
    #[error("failed to run the finalizer: {0}")]
    Finalizer(#[source] Box<finalizer::Error<Error>>),
}

impl Error {
    /// A short label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Apply(e) => e.metric_label(),
            Error::Dereference(_) => "dereference",
            Error::Api { .. } => "api",
            Error::Unfence(_) => "unfence",
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
    /// The fast primary probe.
    pub prober: Arc<Prober>,
    /// EC2, for the volumes.
    pub ec2: aws_sdk_ec2::Client,
    /// The latest look at each cluster's volumes.
    pub volume_looks: Arc<crate::ebs::looks::Looks>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// The clusters the prober wants reconciled.
pub type ProbeTriggers = futures::channel::mpsc::UnboundedReceiver<ObjectRef<MySQLCluster>>;

impl Context {
    /// A context whose Events are reported as coming from `instance`, and
    /// the stream of reconciles its prober asks for.
    pub fn new(
        client: Client,
        ec2: aws_sdk_ec2::Client,
        settings: OperatorSettings,
        instance: Option<String>,
    ) -> (Self, ProbeTriggers) {
        let reporter = Reporter {
            controller: ebisu_api::names::FIELD_MANAGER.to_owned(),
            instance,
        };
        let recorder = Recorder::new(client.clone(), reporter);
        // A silent agent must cost a failover check little: connecting inside a
        // cluster takes milliseconds, so half a second means it is gone.
        let agents = reqwest::Client::builder()
            .connect_timeout(clustering::observe::CONNECT_TIMEOUT)
            .build()
            .unwrap_or_default();
        let (prober, triggers) = Prober::new(agents.clone());
        (
            Self {
                client,
                settings,
                recorder,
                agents,
                prober,
                ec2,
                volume_looks: Arc::default(),
            },
            triggers,
        )
    }
}

/// What about a Node matters to the clusters on it: whether it is cordoned,
/// tainted for a drain, or not ready. Other changes (heartbeats) are ignored.
fn node_disruption(node: &Node) -> Option<u64> {
    use std::hash::{Hash, Hasher};
    let facts = clustering::observe::node_facts("", Some(node));
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    (facts.draining, facts.ready).hash(&mut hasher);
    Some(hasher.finish())
}

/// What about a MySQLCluster asks for a reconcile.
fn asks_for_work(cluster: &MySQLCluster) -> Option<u64> {
    use std::hash::{Hash, Hasher};
    let annotation = |key: &str| {
        cluster
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(key).cloned())
    };
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    (
        cluster.metadata.generation,
        cluster.metadata.deletion_timestamp.is_some(),
        &cluster.metadata.finalizers,
        annotation(ebisu_api::names::ANNOTATION_SWITCHOVER),
        annotation(ebisu_api::names::ANNOTATION_FORCE_FAILOVER),
    )
        .hash(&mut hasher);
    Some(hasher.finish())
}

/// Where the operator looks for MySQLClusters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Every namespace (a ClusterRole grants it).
    All,
    /// These namespaces only (a Role in each grants it).
    Namespaces(Vec<String>),
}

/// Runs the controller(s) until a shutdown signal: one over every
/// namespace, or one per watched namespace.
pub async fn run(ctx: Context, triggers: ProbeTriggers, scope: Scope) {
    tokio::spawn(ctx.prober.clone().run());
    let ctx = Arc::new(ctx);
    match scope {
        Scope::All => controller(ctx, None, triggers).await,
        Scope::Namespaces(namespaces) => {
            // The prober's triggers go to the controller of their namespace.
            let mut routes = std::collections::HashMap::new();
            let mut controllers = Vec::new();
            for ns in namespaces {
                let (tx, rx) = futures::channel::mpsc::unbounded();
                routes.insert(ns.clone(), tx);
                controllers.push(controller(ctx.clone(), Some(ns), rx));
            }
            let route = triggers.for_each(move |cluster| {
                if let Some(tx) = cluster.namespace.as_ref().and_then(|ns| routes.get(ns)) {
                    let _ = tx.unbounded_send(cluster);
                }
                std::future::ready(())
            });
            futures::future::join(futures::future::join_all(controllers), route).await;
        }
    }
}

fn scoped<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    K::DynamicType: Default,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// One controller over `namespace` (every namespace when `None`).
async fn controller(ctx: Arc<Context>, namespace: Option<String>, triggers: ProbeTriggers) {
    let client = ctx.client.clone();
    let ns = namespace.as_deref();
    let ours =
        watcher::Config::default().labels(&format!("app.kubernetes.io/managed-by={MANAGED_BY}"));
    let prober = ctx.prober.clone();
    let nodes = watcher(Api::<Node>::all(client.clone()), watcher::Config::default())
        .default_backoff()
        .touched_objects()
        .predicate_filter(node_disruption, Default::default());
    // Only what asks for work wakes a cluster: its spec (generation), the
    // annotations that ask for a switchover or a forced failover, and its
    // deletion. Its own status writes do not.
    let (store, writer) = kube::runtime::reflector::store();
    let clusters = watcher(
        scoped::<MySQLCluster>(&client, ns),
        watcher::Config::default(),
    )
    .default_backoff()
    .reflect(writer)
    .touched_objects()
    .predicate_filter(asks_for_work, Default::default());
    let only = namespace.clone();
    Controller::for_stream(clusters, store)
        .owns(scoped::<StatefulSet>(&client, ns), ours.clone())
        .owns(scoped::<Service>(&client, ns), ours.clone())
        .owns(scoped::<ConfigMap>(&client, ns), ours.clone())
        // The credentials Secret outlives the cluster (no owner reference):
        // map it to its cluster by label.
        .watches(scoped::<Secret>(&client, ns), ours.clone(), |secret| {
            let cluster = secret.labels().get(LABEL_CLUSTER)?.clone();
            Some(ObjectRef::new(&cluster).within(&secret.namespace()?))
        })
        .owns(scoped::<PodDisruptionBudget>(&client, ns), ours)
        // Pod readiness, deletion and role labels change status and trigger
        // switchovers; pods are owned by the StatefulSet, so map them to their
        // cluster by label.
        .watches(
            scoped::<Pod>(&client, ns),
            watcher::Config::default().labels(LABEL_CLUSTER),
            |pod| {
                let cluster = pod.labels().get(LABEL_CLUSTER)?.clone();
                Some(ObjectRef::new(&cluster).within(&pod.namespace()?))
            },
        )
        // A cordon or drain taint on the primary's node starts a switchover; a
        // node that returns lets its pods be fenced and rejoined at once.
        .watches_stream(nodes, move |node| {
            prober
                .clusters_on(&node.name_any())
                .into_iter()
                .filter(|c| only.is_none() || c.namespace == only)
                .collect::<Vec<_>>()
        })
        .reconcile_on(triggers)
        .shutdown_on_signal()
        .run(reconcile, error_policy, ctx)
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
    let key = ObjectRef::from_obj(cluster);
    let validated = match validate::validate(cluster, &ctx.settings) {
        Ok(validated) => validated,
        Err(error) => {
            ctx.prober.forget(&key);
            let message = error.to_string();
            let already_reported = cluster.status.as_ref().is_some_and(|s| {
                s.conditions.iter().any(|c| {
                    c.type_ == status::SPEC_VALID && c.status == "False" && c.message == message
                })
            });
            if !already_reported {
                warn!(%message, "spec cannot be honoured");
                events::publish(
                    &ctx.recorder,
                    cluster,
                    "Validate",
                    events::Note {
                        warning: true,
                        reason: "InvalidSpec".to_owned(),
                        message: message.clone(),
                        pod: None,
                    },
                )
                .await;
            }
            write_status(ctx, cluster, status::invalid(cluster, &message, &now)).await?;
            // Nothing will change until the user edits the spec.
            return Ok(Action::await_change());
        }
    };

    let record = dereference::initialised(&ctx.client, &validated.namespace, &validated.name)
        .await
        .map_err(Error::Dereference)?;
    let had_primary = cluster
        .status
        .as_ref()
        .is_some_and(|s| s.current_primary.is_some());
    let initialised = record.holds_data(had_primary);
    let statics = crate::static_volumes::prepare(&ctx.client, &ctx.ec2, &validated, &record).await;
    let children = match statics.hold_at {
        Some(hold) if hold < validated.replicas => build::children(
            &validate::ValidatedCluster {
                replicas: hold,
                ..validated.clone()
            },
            initialised,
        ),
        _ => build::children(&validated, initialised),
    };
    let applied = apply::all(&ctx.client, &validated, children, initialised).await;
    if applied.credentials_generated {
        events::publish(
            &ctx.recorder,
            cluster,
            "Apply",
            events::Note {
                warning: false,
                reason: "CredentialsGenerated".to_owned(),
                message: "generated missing credentials in the credentials Secret".to_owned(),
                pod: None,
            },
        )
        .await;
    }
    for claim in &applied.resized_claims {
        info!(claim, size = %validated.storage.size.0, "expanding volume claim");
        events::publish(
            &ctx.recorder,
            cluster,
            "Resize",
            events::Note {
                warning: false,
                reason: "VolumeExpanding".to_owned(),
                message: format!("raised {claim} to {}", validated.storage.size.0),
                pod: None,
            },
        )
        .await;
    }
    // What the operator cannot fix about the objects: reported, and the
    // servers are still looked after.
    let mut problems: Vec<clustering::Problem> = applied
        .failures
        .iter()
        .map(|e| {
            warn!(kind = e.metric_label(), error = %e, "child not applied");
            clustering::Problem::ChildNotApplied {
                what: e.to_string(),
            }
        })
        .collect();
    if !applied.credentials_missing.is_empty() {
        problems.push(clustering::Problem::CredentialsMissing {
            keys: applied
                .credentials_missing
                .iter()
                .map(|k| (*k).to_owned())
                .collect(),
        });
    }

    let observed = dereference::children(&ctx.client, &validated.namespace, &validated.name)
        .await
        .map_err(Error::Dereference)?;
    problems.extend(claims::pending(
        &observed.claims,
        &observed.storage_classes,
        Timestamp::now(),
    ));
    problems.extend(init_failures::failing(&observed.pods));
    problems.extend(statics.problems);
    let (volumes, due) =
        ctx.volume_looks
            .latest(&key, cluster.metadata.generation, std::time::Instant::now());
    if due {
        tokio::spawn(look_at_volumes(
            ctx.clone(),
            cluster.clone(),
            validated.clone(),
            observed.clone(),
        ));
    }
    problems.extend(volumes.problems.iter().cloned());
    let accounts = if applied.credentials_missing.is_empty() {
        dereference::accounts(&ctx.client, &validated.namespace, &validated.name)
            .await
            .map_err(Error::Dereference)?
    } else {
        // Never act on servers with credentials that may not be theirs.
        None
    };
    let mut pass = match &accounts {
        Some(accounts) => {
            clustering::pass::run(
                ctx,
                cluster,
                &validated,
                &observed,
                accounts,
                ctx.prober.silent_since(&key),
                initialised,
            )
            .await
        }
        None => clustering::pass::PassResult {
            memory: cluster
                .status
                .as_ref()
                .map(|s| s.clustering.clone())
                .unwrap_or_default(),
            ..clustering::pass::PassResult::default()
        },
    };
    if pass.primary.is_some()
        && (!record.secret_marked || !record.unmarked_claims.is_empty())
        && let Err(error) = apply::record_initialised(&ctx.client, &validated, &record).await
    {
        warn!(%error, "failed to record that the cluster holds data; retrying next time");
    }
    let servers: Vec<_> = pass.servers.iter().map(|s| s.state.clone()).collect();
    let me = format!("{}/{}", validated.namespace, validated.name);
    let fencing = crate::fencing::run(
        &ctx.client,
        &ctx.ec2,
        crate::fencing::Inputs {
            me: &me,
            enabled: validated.failover.fence_nodes,
            servers: &servers,
            primary: pass.primary.as_deref(),
            observed_nodes: &observed.nodes,
            fenced_before: cluster
                .status
                .as_ref()
                .map(|s| s.fenced_nodes.as_slice())
                .unwrap_or_default(),
        },
    )
    .await;
    for note in fencing.notes {
        events::publish(&ctx.recorder, cluster, "Fence", note).await;
    }
    problems.extend(fencing.problems);
    pass.problems.extend(problems);
    let (notes, reported) = events::for_problems(&pass.memory.reported, &pass.problems);
    for note in notes {
        warn!(reason = note.reason, message = %note.message, "cluster problem");
        events::publish(&ctx.recorder, cluster, "Cluster", note).await;
    }
    pass.memory.reported = reported;
    ctx.prober.watch(
        key,
        primary_ip(&observed, pass.primary.as_deref()),
        observed
            .nodes
            .keys()
            .chain(&fencing.fenced)
            .cloned()
            .collect(),
    );
    let mut new_status = status::compute(cluster, &observed, &pass, &volumes.volumes, &now);
    new_status.fenced_nodes = fencing.fenced;
    let settled = new_status.phase == Some(Phase::Running) && !pass.acted;
    write_status(ctx, cluster, new_status).await?;
    Ok(Action::requeue(match pass.again {
        Some(clustering::Again::Now) => Duration::from_millis(200),
        Some(clustering::Again::After(after)) => after
            .try_into()
            .unwrap_or(UNSETTLED_REQUEUE)
            .clamp(Duration::from_millis(200), UNSETTLED_REQUEUE),
        _ if settled => SETTLED_REQUEUE,
        _ => UNSETTLED_REQUEUE,
    }))
}

/// One look at the cluster's volumes at EC2, in the background: what it
/// changed is an Event, and news asks for a reconcile to write status.
async fn look_at_volumes(
    ctx: Context,
    cluster: MySQLCluster,
    validated: validate::ValidatedCluster,
    observed: dereference::Observed,
) {
    let key = ObjectRef::from_obj(&cluster);
    let outcome = match tokio::time::timeout(
        crate::ebs::looks::TIMEOUT,
        crate::ebs::reconcile(&ctx.ec2, &validated, &observed),
    )
    .await
    {
        Ok(outcome) => outcome,
        Err(_) => crate::ebs::Outcome {
            problems: vec![clustering::Problem::Ec2Unavailable(format!(
                "no answer within {:?}",
                crate::ebs::looks::TIMEOUT
            ))],
            ..crate::ebs::Outcome::default()
        },
    };
    for (pod, change) in &outcome.modified {
        events::publish(
            &ctx.recorder,
            &cluster,
            "ModifyVolume",
            events::Note {
                warning: false,
                reason: "VolumeModified".to_owned(),
                message: format!("modifying {pod}'s volume {change}"),
                pod: Some(pod.clone()),
            },
        )
        .await;
    }
    let generation = cluster.metadata.generation;
    if ctx
        .volume_looks
        .store(&key, generation, outcome, std::time::Instant::now())
    {
        ctx.prober.trigger(key);
    }
}

/// The primary's pod IP, for the fast probe.
fn primary_ip(observed: &dereference::Observed, primary: Option<&str>) -> Option<String> {
    let primary = primary?;
    observed
        .pods
        .iter()
        .find(|p| p.metadata.name.as_deref() == Some(primary))?
        .status
        .as_ref()?
        .pod_ip
        .clone()
}

/// Deletes the StorageClass the operator created for this cluster. Volumes are
/// retained (reclaim policy Retain) and PVCs are never deleted here.
async fn cleanup(cluster: &MySQLCluster, ctx: &Context) -> Result<Action, Error> {
    ctx.prober.forget(&ObjectRef::from_obj(cluster));
    ctx.volume_looks.forget(&ObjectRef::from_obj(cluster));
    let me = format!(
        "{}/{}",
        cluster.namespace().unwrap_or_default(),
        cluster.name_any()
    );
    let fenced = cluster
        .status
        .as_ref()
        .map(|s| s.fenced_nodes.as_slice())
        .unwrap_or_default();
    crate::fencing::release(&ctx.client, &me, fenced)
        .await
        .map_err(Error::Unfence)?;
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

/// Writes status only when it changed, so that status writes do not trigger
/// reconciles of their own.
async fn write_status(
    ctx: &Context,
    cluster: &MySQLCluster,
    status: MySQLClusterStatus,
) -> Result<(), Error> {
    apply::status(&ctx.client, cluster, &status)
        .await
        .map_err(api_error("write status"))
}
