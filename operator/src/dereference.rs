//! Dereference: read what a cluster is made of in Kubernetes (its
//! StatefulSet, pods, claims and volumes, the nodes its pods run on), the
//! durable record of whether it holds data, and the accounts in its
//! credentials Secret. Reads only; it decides nothing.

use std::collections::BTreeMap;

use ebisu_api::names::{self, LABEL_CLUSTER, secret_keys};
use k8s_openapi::api::{
    apps::v1::StatefulSet,
    core::v1::{Node, PersistentVolume, PersistentVolumeClaim, Pod, Secret},
    storage::v1::StorageClass,
};
use kube::{Api, Client, api::ListParams};

use crate::model::{Accounts, ClusterObjects, DataRecord, OperatorAccount};

/// Why reading a cluster's objects failed.
#[derive(Debug, thiserror::Error)]
#[error("failed to {action}: {source}")]
pub struct Error {
    /// What was being read.
    pub action: &'static str,
    /// The client error.
    #[source]
    pub source: kube::Error,
}

fn error(action: &'static str) -> impl FnOnce(kube::Error) -> Error {
    move |source| Error { action, source }
}

/// Reads a cluster's children and the nodes of its pods.
pub async fn children(client: &Client, ns: &str, name: &str) -> Result<ClusterObjects, Error> {
    let selector = format!("{LABEL_CLUSTER}={name}");
    let stateful_set = Api::<StatefulSet>::namespaced(client.clone(), ns)
        .get_opt(name)
        .await
        .map_err(error("read the StatefulSet"))?;
    let pods = Api::<Pod>::namespaced(client.clone(), ns)
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(error("list pods"))?
        .items;
    let claims = Api::<PersistentVolumeClaim>::namespaced(client.clone(), ns)
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(error("list volume claims"))?
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
            .map_err(error("read a volume"))?
        {
            volumes.insert(volume_name, volume);
        }
    }
    let node_api = Api::<Node>::all(client.clone());
    let mut nodes = BTreeMap::new();
    for node_name in pods
        .iter()
        .filter_map(|p| p.spec.as_ref()?.node_name.clone())
    {
        if nodes.contains_key(&node_name) {
            continue;
        }
        if let Some(node) = node_api
            .get_opt(&node_name)
            .await
            .map_err(error("read a node"))?
        {
            nodes.insert(node_name, node);
        }
    }
    let storage_classes = if claims
        .iter()
        .any(|c| c.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Pending"))
    {
        Api::<StorageClass>::all(client.clone())
            .list(&ListParams::default())
            .await
            .map_err(error("list storage classes"))?
            .items
    } else {
        Vec::new()
    };
    Ok(ClusterObjects {
        stateful_set,
        pods,
        claims,
        volumes,
        nodes,
        storage_classes,
    })
}

/// Reads what records whether `cluster` holds data.
pub async fn data_record(client: &Client, ns: &str, cluster: &str) -> Result<DataRecord, Error> {
    let marked = |annotations: Option<&std::collections::BTreeMap<String, String>>| {
        annotations.is_some_and(|a| a.contains_key(names::ANNOTATION_INITIALIZED))
    };
    let secret = Api::<Secret>::namespaced(client.clone(), ns)
        .get_opt(&names::credentials_secret(cluster))
        .await
        .map_err(error("read the credentials Secret"))?;
    let mut record = DataRecord {
        secret_exists: secret.is_some(),
        secret_marked: secret
            .as_ref()
            .is_some_and(|s| marked(s.metadata.annotations.as_ref())),
        ..DataRecord::default()
    };
    let claims = Api::<PersistentVolumeClaim>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await
        .map_err(error("list volume claims"))?;
    for claim in claims {
        let Some(name) = claim.metadata.name.clone() else {
            continue;
        };
        let Some(ordinal) = names::data_claim_ordinal(cluster, &name) else {
            continue;
        };
        record.claims_beyond_the_first |= ordinal > 0;
        if marked(claim.metadata.annotations.as_ref()) {
            record.marked_claims.push(name);
        } else {
            record.unmarked_claims.push(name);
        }
    }
    Ok(record)
}

/// The accounts from the credentials Secret; `None` while it is missing or incomplete.
/// The IP of pod `pod`, when it has one.
pub async fn pod_ip(client: &Client, ns: &str, pod: &str) -> Result<Option<String>, Error> {
    Ok(
        Api::<k8s_openapi::api::core::v1::Pod>::namespaced(client.clone(), ns)
            .get_opt(pod)
            .await
            .map_err(error("read the primary's pod"))?
            .and_then(|p| p.status?.pod_ip),
    )
}

/// The accounts the operator uses on the servers, from the credentials
/// Secret.
pub async fn accounts(client: &Client, ns: &str, cluster: &str) -> Result<Option<Accounts>, Error> {
    let secret = Api::<Secret>::namespaced(client.clone(), ns)
        .get_opt(&names::credentials_secret(cluster))
        .await
        .map_err(error("read the credentials Secret"))?;
    let Some(data) = secret.and_then(|s| s.data) else {
        return Ok(None);
    };
    // Read as the sidecar reads the mounted files.
    let get = |key: &str| data.get(key).and_then(|v| names::secret_value(&v.0));
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
    let service_users = [
        secret_keys::OPERATOR_USER,
        secret_keys::REPLICATION_USER,
        secret_keys::CLONE_USER,
        secret_keys::MONITOR_USER,
    ]
    .into_iter()
    .filter_map(|key| ebisu_mysql::UserName::new(&get(key)?).ok())
    .collect();
    Ok(Some(Accounts {
        operator: OperatorAccount { user, password },
        replication,
        service_users,
        clone_token: get(secret_keys::CLONE_TOKEN),
    }))
}
