//! Apply: writes to the cluster's own objects in the API server. Its
//! children, with server-side apply and one field manager, in a fixed
//! order: storage, credentials and configuration before the Services, the
//! disruption budget and finally the StatefulSet that consumes them; the
//! managed StorageClass is replaced when its (immutable) parameters
//! change, and the primary's disruption budget deleted when a cluster no
//! longer needs it. Also the claims' growth, the durable record that the
//! cluster holds data, its status and its consumed annotations. Anything
//! else the operator writes (servers, pods, nodes, EC2) is listed in
//! `lib.rs`.

use ebisu_api::names::{self, FIELD_MANAGER, LABEL_CLUSTER, LABEL_MANAGED_BY, MANAGED_BY};
use ebisu_api::{MySQLCluster, MySQLClusterStatus};
use k8s_openapi::api::{
    apps::v1::StatefulSet,
    coordination::v1::Lease,
    core::v1::{ConfigMap, PersistentVolumeClaim, Secret, Service, ServiceAccount},
    networking::v1::NetworkPolicy,
    policy::v1::PodDisruptionBudget,
    rbac::v1::{Role, RoleBinding},
    storage::v1::StorageClass,
};
use kube::{
    Api, Client, Resource, ResourceExt,
    api::{DeleteParams, ListParams, Patch, PatchParams, PostParams},
};
use serde::{Serialize, de::DeserializeOwned};
use serde_json::json;
use std::fmt::Debug;

use crate::{
    build::{Children, app_secret, secret},
    model::DataRecord,
    quantity,
    validate::ValidatedCluster,
};

/// Why applying a cluster's children failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The API server refused or failed a write or read.
    #[error("failed to {action} {kind} {name}: {source}")]
    Api {
        /// What was being done.
        action: &'static str,
        /// Object kind.
        kind: &'static str,
        /// Object name.
        name: String,
        /// The client error.
        #[source]
        source: kube::Error,
    },
    /// A StorageClass with the managed name exists and belongs to someone else.
    #[error(
        "failed to take over StorageClass {0}: it exists and is not managed by ebisu; delete it or set spec.storage.storageClassName to use it"
    )]
    ForeignStorageClass(String),
    /// An object with a child's name exists and belongs to someone else.
    #[error(
        "failed to apply {kind} {name}: an object of that name exists that this cluster does not own; ebisu does not take it over: rename or delete it"
    )]
    Foreign {
        /// Its kind.
        kind: &'static str,
        /// Its name.
        name: String,
    },
}

impl Error {
    /// What kind of failure it is, for logs.
    pub fn category(&self) -> &'static str {
        match self {
            Error::Api { .. } => "apply_api",
            Error::ForeignStorageClass(_) => "foreign_storage_class",
            Error::Foreign { .. } => "foreign_child",
        }
    }
}

/// Maps a client error of `action` on `kind` `name` to [`Error::Api`].
fn api_error(
    action: &'static str,
    kind: &'static str,
    name: &str,
) -> impl FnOnce(kube::Error) -> Error {
    let name = name.to_owned();
    move |source| Error::Api {
        action,
        kind,
        name,
        source,
    }
}

/// What applying changed beyond the declared objects, and what it could
/// not apply (each failure is reported; the rest is applied anyway).
#[derive(Debug, Default)]
pub struct Applied {
    /// The credentials Secret was created or completed.
    pub credentials_generated: bool,
    /// Keys the credentials Secret lacks that were not generated, because
    /// the cluster holds data made with the old ones.
    pub credentials_missing: Vec<&'static str>,
    /// Passwords (or the token) in the Secret that are too weak.
    pub credentials_weak: Vec<&'static str>,
    /// Volume claims whose size was raised.
    pub resized_claims: Vec<String>,
    /// Children that could not be applied.
    pub failures: Vec<Error>,
}

/// Applies every child of `cluster`, in order. A child that fails is
/// reported and the others are still applied, except that the StatefulSet
/// waits for its storage, credentials and configuration.
pub async fn all(
    client: &Client,
    cluster: &ValidatedCluster,
    children: Children,
    holds_data: bool,
) -> Applied {
    let Children {
        storage_class,
        config_map,
        headless_service,
        primary_service,
        read_service,
        network_policy,
        pod_disruption_budget,
        primary_pod_disruption_budget,
        primary_lease,
        agent_service_account,
        agent_role,
        agent_role_binding,
        stateful_set,
    } = children;
    let ns = cluster.namespace.as_str();
    let mut applied = Applied::default();
    let mut ready_for_pods = true;

    if let Some(class) = storage_class
        && let Err(e) = apply_storage_class(client, class).await
    {
        applied.failures.push(e);
        ready_for_pods = false;
    }
    // Given volumes may hold another cluster's data: new passwords would
    // lock everyone out of it (M13), so they are never generated for them.
    let app_password =
        match ensure_credentials(client, cluster, holds_data || cluster.given_volumes()).await {
            Ok((Credentials::Present, app)) => app,
            Ok((Credentials::Generated, app)) => {
                applied.credentials_generated = true;
                app
            }
            Ok((Credentials::Missing(keys), app)) => {
                applied.credentials_missing = keys;
                ready_for_pods = false;
                app
            }
            Ok((Credentials::Weak(keys), app)) => {
                // A cluster that runs already keeps running on them (its
                // servers' accounts use them); a new one does not start.
                applied.credentials_weak = keys;
                ready_for_pods &= holds_data;
                app
            }
            Err(e) => {
                applied.failures.push(e);
                ready_for_pods = false;
                None
            }
        };
    if let Some(password) = app_password
        && let Err(e) = apply_app_secret(client, cluster, &password).await
    {
        applied.failures.push(e);
    }
    let config_maps = Api::<ConfigMap>::namespaced(client.clone(), ns);
    if let Err(e) = ours_then_ssa(&config_maps, "ConfigMap", &config_map, cluster).await {
        applied.failures.push(e);
        ready_for_pods = false;
    }
    let services = Api::<Service>::namespaced(client.clone(), ns);
    for service in [&headless_service, &primary_service, &read_service] {
        if let Err(e) = ours_then_ssa(&services, "Service", service, cluster).await {
            applied.failures.push(e);
        }
    }
    let policies = Api::<NetworkPolicy>::namespaced(client.clone(), ns);
    if let Err(e) = ours_then_ssa(&policies, "NetworkPolicy", &network_policy, cluster).await {
        applied.failures.push(e);
    }
    let budgets = Api::<PodDisruptionBudget>::namespaced(client.clone(), ns);
    if let Err(e) = ours_then_ssa(
        &budgets,
        "PodDisruptionBudget",
        &pod_disruption_budget,
        cluster,
    )
    .await
    {
        applied.failures.push(e);
    }
    if let Err(e) = primary_budget(&budgets, cluster, primary_pod_disruption_budget).await {
        applied.failures.push(e);
    }
    // What the agents need before the pods start.
    let leases = Api::<Lease>::namespaced(client.clone(), ns);
    if let Err(e) = ours_then_ssa(&leases, "Lease", &primary_lease, cluster).await {
        applied.failures.push(e);
        ready_for_pods = false;
    }
    let accounts = Api::<ServiceAccount>::namespaced(client.clone(), ns);
    if let Err(e) =
        ours_then_ssa(&accounts, "ServiceAccount", &agent_service_account, cluster).await
    {
        applied.failures.push(e);
        ready_for_pods = false;
    }
    let roles = Api::<Role>::namespaced(client.clone(), ns);
    if let Err(e) = ours_then_ssa(&roles, "Role", &agent_role, cluster).await {
        applied.failures.push(e);
        ready_for_pods = false;
    }
    let bindings = Api::<RoleBinding>::namespaced(client.clone(), ns);
    if let Err(e) = ours_then_ssa(&bindings, "RoleBinding", &agent_role_binding, cluster).await {
        applied.failures.push(e);
        ready_for_pods = false;
    }
    if ready_for_pods && let Err(e) = apply_stateful_set(client, cluster, stateful_set).await {
        applied.failures.push(e);
    }
    match expand_claims(client, cluster).await {
        Ok(resized) => applied.resized_claims = resized,
        Err(e) => applied.failures.push(e),
    }
    applied
}

async fn primary_budget(
    budgets: &Api<PodDisruptionBudget>,
    cluster: &ValidatedCluster,
    budget: Option<PodDisruptionBudget>,
) -> Result<(), Error> {
    let name = names::primary_pod_disruption_budget(&cluster.name);
    match budget {
        Some(budget) => ours_then_ssa(budgets, "PodDisruptionBudget", &budget, cluster).await,
        // A single instance must never hold a drain forever.
        None => {
            if budgets
                .get_opt(&name)
                .await
                .ok()
                .flatten()
                .is_some_and(|b| owned_by(&b, cluster))
            {
                match budgets.delete(&name, &DeleteParams::default()).await {
                    Ok(_) => {}
                    Err(kube::Error::Api(e)) if e.code == 404 => {}
                    Err(source) => {
                        return Err(api_error("delete", "PodDisruptionBudget", &name)(source));
                    }
                }
            }
            Ok(())
        }
    }
}

/// Whether `object` carries this cluster's owner reference.
fn owned_by<K: Resource>(object: &K, cluster: &ValidatedCluster) -> bool {
    object
        .meta()
        .owner_references
        .iter()
        .flatten()
        .any(|o| o.uid == cluster.owner.uid)
}

/// Reads the object of `object`'s name, refusing one that this cluster
/// does not own: that one is someone else's, never taken over.
async fn read_ours<K>(
    api: &Api<K>,
    kind: &'static str,
    name: &str,
    cluster: &ValidatedCluster,
) -> Result<Option<K>, Error>
where
    K: Resource + Serialize + DeserializeOwned + Clone + Debug,
{
    let existing = api
        .get_opt(name)
        .await
        .map_err(api_error("read", kind, name))?;
    match existing {
        Some(existing) if !owned_by(&existing, cluster) => Err(Error::Foreign {
            kind,
            name: name.to_owned(),
        }),
        existing => Ok(existing),
    }
}

/// Server-side applies `object` unless an object of that name exists that
/// this cluster does not own.
async fn ours_then_ssa<K>(
    api: &Api<K>,
    kind: &'static str,
    object: &K,
    cluster: &ValidatedCluster,
) -> Result<(), Error>
where
    K: Resource + Serialize + DeserializeOwned + Clone + Debug,
{
    let name = object.meta().name.clone().unwrap_or_default();
    read_ours(api, kind, &name, cluster).await?;
    ssa(api, kind, object).await.map(drop)
}

/// Removes annotation `key` from the MySQLCluster (a request that was
/// handled); returns the cluster as written.
pub async fn remove_annotation(
    client: &Client,
    cluster: &MySQLCluster,
    key: &str,
) -> Result<MySQLCluster, kube::Error> {
    let api =
        Api::<MySQLCluster>::namespaced(client.clone(), &cluster.namespace().unwrap_or_default());
    let patch = json!({ "metadata": { "annotations": { key: null } } });
    api.patch(
        &cluster.name_any(),
        &PatchParams::default(),
        &Patch::Merge(patch),
    )
    .await
}

/// Writes a cluster's status with server-side apply (the one field
/// manager), unless it is what the cluster already says (a status write
/// must not cause a reconcile of its own), and only if the cluster is still
/// at the version read (another operator, or this one before a pause, may
/// have written since: then the write fails with a conflict). Returns the
/// cluster as written, when it was.
pub async fn write_status(
    client: &Client,
    cluster: &MySQLCluster,
    status: &MySQLClusterStatus,
) -> Result<Option<MySQLCluster>, kube::Error> {
    if cluster.status.as_ref() == Some(status) {
        return Ok(None);
    }
    let api =
        Api::<MySQLCluster>::namespaced(client.clone(), &cluster.namespace().unwrap_or_default());
    let mut patch = json!({
        "apiVersion": MySQLCluster::api_version(&()),
        "kind": MySQLCluster::kind(&()),
        "status": status,
    });
    if let Some(version) = &cluster.metadata.resource_version {
        patch["metadata"] = json!({ "resourceVersion": version });
    }
    api.patch_status(
        &cluster.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(patch),
    )
    .await
    .map(Some)
}

async fn ssa<K>(api: &Api<K>, kind: &'static str, object: &K) -> Result<K, Error>
where
    K: Resource + Serialize + DeserializeOwned + Clone + Debug,
{
    let name = object.meta().name.clone().unwrap_or_default();
    api.patch(
        &name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(object),
    )
    .await
    .map_err(api_error("apply", kind, &name))
}

async fn apply_storage_class(client: &Client, class: StorageClass) -> Result<(), Error> {
    let api = Api::<StorageClass>::all(client.clone());
    let name = class.metadata.name.clone().unwrap_or_default();
    let existing = api
        .get_opt(&name)
        .await
        .map_err(api_error("read", "StorageClass", &name))?;
    if let Some(existing) = existing {
        let ours = existing
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(LABEL_MANAGED_BY))
            .is_some_and(|v| v == MANAGED_BY);
        if !ours {
            return Err(Error::ForeignStorageClass(name));
        }
        // A StorageClass's parameters are immutable. Claims and volumes name
        // their class only, so a changed spec.storage.ebs (IOPS, throughput)
        // replaces the class for new volumes; existing ones are modified at EC2.
        if existing.parameters != class.parameters {
            api.delete(&name, &Default::default())
                .await
                .map_err(api_error("replace", "StorageClass", &name))?;
        }
    }
    ssa(&api, "StorageClass", &class).await.map(drop)
}

/// What the credentials Secret holds after [`ensure_credentials`].
enum Credentials {
    /// Every key.
    Present,
    /// Missing keys were generated (a cluster that never had data).
    Generated,
    /// These keys are missing, and were not generated: the servers hold
    /// accounts made with the old values.
    Missing(Vec<&'static str>),
    /// These passwords (or the token) are too weak.
    Weak(Vec<&'static str>),
}

/// Creates the credentials Secret, or adds the entries it lacks, but only
/// for a cluster that never had data and is given no volumes
/// (`holds_data` false); never changes
/// an existing entry, so users may also bring their own credentials. The
/// Secret has no owner reference: like the volumes, it outlives the
/// MySQLCluster, so re-creating the cluster over its volumes finds the
/// passwords its servers use. Also returns the application owner's
/// password as the Secret now holds it (`spec.database`), if it does.
async fn ensure_credentials(
    client: &Client,
    cluster: &ValidatedCluster,
    holds_data: bool,
) -> Result<(Credentials, Option<String>), Error> {
    let api = Api::<Secret>::namespaced(client.clone(), &cluster.namespace);
    let name = names::credentials_secret(&cluster.name);
    let existing = api
        .get_opt(&name)
        .await
        .map_err(api_error("read", "Secret", &name))?;
    if let Some(secret) = &existing
        && owned_by(secret, cluster)
    {
        // Secrets made by earlier versions were owned by the cluster: a
        // deleted cluster took the passwords of its kept volumes with it.
        api.patch(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({ "metadata": { "ownerReferences": null } })),
        )
        .await
        .map_err(api_error("release", "Secret", &name))?;
    }
    let data = existing.as_ref().and_then(|s| s.data.as_ref());
    let app_password = data
        .and_then(|data| data.get(names::secret_keys::APP_PASSWORD))
        .and_then(|v| names::secret_value(&v.0));
    let keys = secret::keys(cluster);
    let weak = secret::weak_entries(&keys, data);
    if !weak.is_empty() {
        return Ok((Credentials::Weak(weak), app_password));
    }
    let missing = secret::missing_entries(&keys, data, secret::generate_secret);
    if missing.is_empty() {
        return Ok((Credentials::Present, app_password));
    }
    if holds_data {
        let keys = keys
            .into_iter()
            .filter(|k| missing.contains_key(*k))
            .collect();
        return Ok((Credentials::Missing(keys), app_password));
    }
    let app_password = missing
        .get(names::secret_keys::APP_PASSWORD)
        .cloned()
        .or(app_password);
    match existing {
        // Create, not apply: a concurrent creator makes this fail instead of
        // overwriting passwords a server may already use.
        None => api
            .create(&PostParams::default(), &secret::build(cluster, missing))
            .await
            .map_err(api_error("create", "Secret", &name))?,
        Some(_) => api
            .patch(
                &name,
                &PatchParams::default(),
                &Patch::Merge(json!({ "stringData": missing })),
            )
            .await
            .map_err(api_error("complete", "Secret", &name))?,
    };
    Ok((Credentials::Generated, app_password))
}

/// Applies the `<name>-app` Secret with the owner's `password` from the
/// credentials Secret (nothing while the spec declares no database).
async fn apply_app_secret(
    client: &Client,
    cluster: &ValidatedCluster,
    password: &str,
) -> Result<(), Error> {
    let Some(app) = app_secret::build(cluster, password) else {
        return Ok(());
    };
    let api = Api::<Secret>::namespaced(client.clone(), &cluster.namespace);
    ours_then_ssa(&api, "Secret", &app, cluster).await
}

/// Records durably that the cluster holds data: the initialised annotation
/// on the credentials Secret and on every data claim that lacks it.
pub async fn mark_initialised(
    client: &Client,
    cluster: &ValidatedCluster,
    record: &DataRecord,
) -> Result<(), Error> {
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    let patch = json!({ "metadata": { "annotations": { names::ANNOTATION_INITIALIZED: now } } });
    if !record.secret_marked && record.secret_exists {
        let name = names::credentials_secret(&cluster.name);
        Api::<Secret>::namespaced(client.clone(), &cluster.namespace)
            .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(api_error("mark initialised", "Secret", &name))?;
    }
    let claims = Api::<PersistentVolumeClaim>::namespaced(client.clone(), &cluster.namespace);
    for name in &record.unmarked_claims {
        claims
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(api_error("mark initialised", "PersistentVolumeClaim", name))?;
    }
    Ok(())
}

/// A StatefulSet's volumeClaimTemplates are immutable: keep the existing ones
/// and grow volumes through their claims instead (see [`expand_claims`]).
async fn apply_stateful_set(
    client: &Client,
    cluster: &ValidatedCluster,
    mut desired: StatefulSet,
) -> Result<(), Error> {
    let api = Api::<StatefulSet>::namespaced(client.clone(), &cluster.namespace);
    let name = desired.metadata.name.clone().unwrap_or_default();
    let existing = read_ours(&api, "StatefulSet", &name, cluster).await?;
    if let (Some(existing), Some(spec)) = (existing.and_then(|s| s.spec), desired.spec.as_mut()) {
        spec.volume_claim_templates = existing.volume_claim_templates;
    }
    ssa(&api, "StatefulSet", &desired).await.map(drop)
}

/// Raises the size of every claim of the cluster that is smaller than the spec.
async fn expand_claims(client: &Client, cluster: &ValidatedCluster) -> Result<Vec<String>, Error> {
    let api = Api::<PersistentVolumeClaim>::namespaced(client.clone(), &cluster.namespace);
    let selector = format!("{LABEL_CLUSTER}={}", cluster.name);
    let claims = api
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(api_error("list", "PersistentVolumeClaim", &selector))?;
    let mut resized = Vec::new();
    for claim in claims {
        if !claim_needs_growth(&claim, cluster.storage.size_bytes) {
            continue;
        }
        let name = claim.metadata.name.clone().unwrap_or_default();
        let patch =
            json!({ "spec": { "resources": { "requests": { "storage": cluster.storage.size } } } });
        api.patch(&name, &PatchParams::default(), &Patch::Merge(patch))
            .await
            .map_err(api_error("resize", "PersistentVolumeClaim", &name))?;
        resized.push(name);
    }
    Ok(resized)
}

/// Whether `claim` requests fewer bytes than `desired`. Unparseable sizes are
/// left alone: resizing on a guess could fail or, worse, loop.
pub fn claim_needs_growth(claim: &PersistentVolumeClaim, desired: u64) -> bool {
    claim
        .spec
        .as_ref()
        .and_then(|s| s.resources.as_ref())
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage"))
        .and_then(quantity::to_bytes)
        .is_some_and(|current| current < desired)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PersistentVolumeClaimSpec, VolumeResourceRequirements};
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
    use std::collections::BTreeMap;

    fn claim(size: &str) -> PersistentVolumeClaim {
        PersistentVolumeClaim {
            spec: Some(PersistentVolumeClaimSpec {
                resources: Some(VolumeResourceRequirements {
                    requests: Some(BTreeMap::from([(
                        "storage".to_owned(),
                        Quantity(size.to_owned()),
                    )])),
                    ..VolumeResourceRequirements::default()
                }),
                ..PersistentVolumeClaimSpec::default()
            }),
            ..PersistentVolumeClaim::default()
        }
    }

    #[test]
    fn only_smaller_claims_grow() {
        let twenty = 20 * quantity::GIB;
        assert!(claim_needs_growth(&claim("10Gi"), twenty));
        assert!(!claim_needs_growth(&claim("20Gi"), twenty));
        assert!(!claim_needs_growth(&claim("20480Mi"), twenty));
        assert!(!claim_needs_growth(&claim("30Gi"), twenty), "never shrink");
        assert!(!claim_needs_growth(&claim("garbage"), twenty));
        assert!(!claim_needs_growth(
            &PersistentVolumeClaim::default(),
            twenty
        ));
    }
}
