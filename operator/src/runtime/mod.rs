//! The process's controller runtime: the watches that wake a cluster's
//! reconcile (its spec and annotations, its children, its pods, its
//! backups, the nodes it runs on, the fast probe), one controller over every namespace or one
//! per watched namespace, plus leader election and the health endpoints.

pub mod health;
pub mod leader;

use std::sync::Arc;

use ebisu_api::{
    MySQLBackup, MySQLCluster,
    names::{LABEL_CLUSTER, LABEL_MANAGED_BY, MANAGED_BY},
};
use futures::StreamExt;
use k8s_openapi::api::{
    apps::v1::StatefulSet,
    coordination::v1::Lease,
    core::v1::{ConfigMap, Node, Pod, Service},
    policy::v1::PodDisruptionBudget,
};
use kube::{
    Api, Client, ResourceExt,
    runtime::{Controller, WatchStreamExt, reflector::ObjectRef, watcher},
};
use tracing::warn;

use crate::{
    model::objects::node_facts,
    reconcile::{Context, ProbeTriggers, error_policy, reconcile},
};

/// What about a Node matters to the clusters on it: whether it is cordoned,
/// tainted for a drain, or not ready. Other changes (heartbeats) are ignored.
fn node_disruption(node: &Node) -> Option<u64> {
    use std::hash::{Hash, Hasher};
    let facts = node_facts("", Some(node));
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
    let namespaces = match &scope {
        Scope::All => vec![None],
        Scope::Namespaces(namespaces) => namespaces.iter().cloned().map(Some).collect(),
    };
    for namespace in namespaces {
        tokio::spawn(watch_primary_leases(ctx.clone(), namespace));
    }

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
    let ours = watcher::Config::default().labels(&format!("{LABEL_MANAGED_BY}={MANAGED_BY}"));
    let node_index = ctx.node_index.clone();
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
        // A new backup is taken by its cluster's reconcile.
        .watches(
            scoped::<MySQLBackup>(&client, ns),
            watcher::Config::default(),
            |backup| Some(ObjectRef::new(&backup.spec.cluster).within(&backup.namespace()?)),
        )
        // A cordon or drain taint on the primary's node starts a switchover; a
        // node that returns lets its pods be fenced and rejoined at once.
        .watches_stream(nodes, move |node| {
            node_index
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

/// Follows every cluster's primary Lease, so that the operator knows when
/// each was last renewed as it happens, not only when a reconcile reads it
/// (a failover waits for the old primary's agent to give up, counted from
/// the last renewal this process saw).
async fn watch_primary_leases(ctx: Arc<Context>, namespace: Option<String>) {
    let config = watcher::Config::default().labels(&format!("{LABEL_MANAGED_BY}={MANAGED_BY}"));
    let leases = watcher(scoped::<Lease>(&ctx.client, namespace.as_deref()), config)
        .default_backoff()
        .applied_objects();
    futures::pin_mut!(leases);
    while let Some(event) = leases.next().await {
        match event {
            Ok(lease) => {
                let (Some(cluster), Some(ns)) = (
                    lease.labels().get(LABEL_CLUSTER).cloned(),
                    lease.namespace(),
                ) else {
                    continue;
                };
                let key = ObjectRef::<MySQLCluster>::new(&cluster).within(&ns);
                ctx.lease_clock
                    .view(&key, &lease, std::time::Instant::now());
            }
            Err(error) => warn!(%error, "watching the primary Leases"),
        }
    }
}
