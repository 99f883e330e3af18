//! What a deleted cluster leaves to undo outside its namespace, run by the
//! finalizer: the probe and volume looks forget it, the nodes it fenced
//! are unfenced, and the StorageClass the operator made for it is deleted.
//! Volumes are retained (reclaim policy Retain); claims and the
//! credentials Secret are never deleted here.

use ebisu_api::{
    MySQLCluster,
    names::{LABEL_CLUSTER, LABEL_MANAGED_BY, LABEL_NAMESPACE, MANAGED_BY},
};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::{
    Api, ResourceExt,
    api::{DeleteParams, ListParams},
    runtime::{controller::Action, reflector::ObjectRef},
};
use tracing::info;

use super::{Context, Error};
use crate::fencing;

/// Undoes what the cluster made outside its namespace.
pub async fn cleanup(cluster: &MySQLCluster, ctx: &Context) -> Result<Action, Error> {
    let key = ObjectRef::from_obj(cluster);
    ctx.forget(&key);
    ctx.volume_looks.forget(&key);
    let cluster_key = format!(
        "{}/{}",
        cluster.namespace().unwrap_or_default(),
        cluster.name_any()
    );
    let fenced = cluster
        .status
        .as_ref()
        .map(|s| s.fenced_nodes.as_slice())
        .unwrap_or_default();
    fencing::release(&ctx.client, &cluster_key, fenced)
        .await
        .map_err(Error::Unfence)?;
    let api = Api::<StorageClass>::all(ctx.client.clone());
    let selector = format!(
        "{LABEL_CLUSTER}={},{LABEL_NAMESPACE}={},{LABEL_MANAGED_BY}={MANAGED_BY}",
        cluster.name_any(),
        cluster.namespace().unwrap_or_default()
    );
    let classes = api
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(Error::api("list storage classes"))?;
    for class in classes {
        let name = class.name_any();
        info!(storage_class = name, "deleting managed StorageClass");
        match api.delete(&name, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(Error::api("delete storage class")(e)),
        }
    }
    Ok(Action::await_change())
}
