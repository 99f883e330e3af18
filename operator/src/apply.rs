//! Apply: the only step that writes a cluster's children to the API server.
//! Server-side apply with one field manager, in a fixed order: storage,
//! credentials and configuration before the Services, the disruption budget
//! and finally the StatefulSet that consumes them. Deletes nothing but the
//! primary's disruption budget when a cluster no longer needs it.

use ebisu_api::names::{self, FIELD_MANAGER, LABEL_CLUSTER, MANAGED_BY};
use ebisu_api::{MySQLCluster, MySQLClusterStatus};
use k8s_openapi::api::{
    apps::v1::StatefulSet,
    core::v1::{ConfigMap, PersistentVolumeClaim, Secret, Service},
    policy::v1::PodDisruptionBudget,
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
    build::{Children, secret},
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
}

impl Error {
    /// A short label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Api { .. } => "apply_api",
            Error::ForeignStorageClass(_) => "foreign_storage_class",
        }
    }
}

/// What applying changed beyond the declared objects, for Events.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Applied {
    /// The credentials Secret was created or completed.
    pub credentials_generated: bool,
    /// Volume claims whose size was raised.
    pub resized_claims: Vec<String>,
}

/// Applies every child of `cluster`.
pub async fn all(
    client: &Client,
    cluster: &ValidatedCluster,
    children: Children,
) -> Result<Applied, Error> {
    let Children {
        storage_class,
        config_map,
        headless_service,
        primary_service,
        read_service,
        pod_disruption_budget,
        primary_pod_disruption_budget,
        stateful_set,
    } = children;
    let ns = cluster.namespace.as_str();

    if let Some(class) = storage_class {
        apply_storage_class(client, class).await?;
    }
    let credentials_generated = ensure_credentials(client, cluster).await?;
    ssa(
        &Api::<ConfigMap>::namespaced(client.clone(), ns),
        "ConfigMap",
        &config_map,
    )
    .await?;
    let services = Api::<Service>::namespaced(client.clone(), ns);
    for service in [&headless_service, &primary_service, &read_service] {
        ssa(&services, "Service", service).await?;
    }
    let budgets = Api::<PodDisruptionBudget>::namespaced(client.clone(), ns);
    ssa(&budgets, "PodDisruptionBudget", &pod_disruption_budget).await?;
    let primary_budget = names::primary_pod_disruption_budget(&cluster.name);
    match primary_pod_disruption_budget {
        Some(budget) => {
            ssa(&budgets, "PodDisruptionBudget", &budget).await?;
        }
        // A single instance must never hold a drain forever.
        None => match budgets
            .delete(&primary_budget, &DeleteParams::default())
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(source) => {
                return Err(Error::Api {
                    action: "delete",
                    kind: "PodDisruptionBudget",
                    name: primary_budget,
                    source,
                });
            }
        },
    }
    apply_stateful_set(client, ns, stateful_set).await?;
    let resized_claims = expand_claims(client, cluster).await?;
    Ok(Applied {
        credentials_generated,
        resized_claims,
    })
}

/// Writes a cluster's status with server-side apply (the one field
/// manager), unless it is what the cluster already says: a status write
/// must not cause a reconcile of its own.
pub async fn status(
    client: &Client,
    cluster: &MySQLCluster,
    status: &MySQLClusterStatus,
) -> Result<(), kube::Error> {
    if cluster.status.as_ref() == Some(status) {
        return Ok(());
    }
    let api =
        Api::<MySQLCluster>::namespaced(client.clone(), &cluster.namespace().unwrap_or_default());
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
    .map(drop)
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
    .map_err(|source| Error::Api {
        action: "apply",
        kind,
        name,
        source,
    })
}

async fn apply_storage_class(client: &Client, class: StorageClass) -> Result<(), Error> {
    let api = Api::<StorageClass>::all(client.clone());
    let name = class.metadata.name.clone().unwrap_or_default();
    let existing = api.get_opt(&name).await.map_err(|source| Error::Api {
        action: "read",
        kind: "StorageClass",
        name: name.clone(),
        source,
    })?;
    if let Some(existing) = existing {
        let ours = existing
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get("app.kubernetes.io/managed-by"))
            .is_some_and(|v| v == MANAGED_BY);
        if !ours {
            return Err(Error::ForeignStorageClass(name));
        }
    }
    ssa(&api, "StorageClass", &class).await.map(drop)
}

/// Creates the credentials Secret, or adds the entries it lacks; never changes
/// an existing entry, so users may also bring their own credentials.
async fn ensure_credentials(client: &Client, cluster: &ValidatedCluster) -> Result<bool, Error> {
    let api = Api::<Secret>::namespaced(client.clone(), &cluster.namespace);
    let name = names::credentials_secret(&cluster.name);
    let api_error = |action, source| Error::Api {
        action,
        kind: "Secret",
        name: name.clone(),
        source,
    };
    let existing = api.get_opt(&name).await.map_err(|e| api_error("read", e))?;
    let missing = secret::missing_entries(
        existing.as_ref().and_then(|s| s.data.as_ref()),
        secret::generate_secret,
    );
    if missing.is_empty() {
        return Ok(false);
    }
    match existing {
        // Create, not apply: a concurrent creator makes this fail instead of
        // overwriting passwords a server may already use.
        None => api
            .create(&PostParams::default(), &secret::build(cluster, missing))
            .await
            .map_err(|e| api_error("create", e))?,
        Some(_) => api
            .patch(
                &name,
                &PatchParams::default(),
                &Patch::Merge(json!({ "stringData": missing })),
            )
            .await
            .map_err(|e| api_error("complete", e))?,
    };
    Ok(true)
}

/// A StatefulSet's volumeClaimTemplates are immutable: keep the existing ones
/// and grow volumes through their claims instead (see [`expand_claims`]).
async fn apply_stateful_set(
    client: &Client,
    ns: &str,
    mut desired: StatefulSet,
) -> Result<(), Error> {
    let api = Api::<StatefulSet>::namespaced(client.clone(), ns);
    let name = desired.metadata.name.clone().unwrap_or_default();
    let existing = api.get_opt(&name).await.map_err(|source| Error::Api {
        action: "read",
        kind: "StatefulSet",
        name: name.clone(),
        source,
    })?;
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
        .map_err(|source| Error::Api {
            action: "list",
            kind: "PersistentVolumeClaim",
            name: selector,
            source,
        })?;
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
            .map_err(|source| Error::Api {
                action: "resize",
                kind: "PersistentVolumeClaim",
                name: name.clone(),
                source,
            })?;
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
