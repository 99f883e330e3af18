//! The EBS CSI driver's controller side for StorageClasses whose provisioner
//! is `ebs.csi.aws.com`: an EC2 volume (CreateVolume in the local EC2 API,
//! with the class's type, IOPS, throughput and tags) and a PV per claim,
//! pinned to the zone of the node the scheduler selected
//! (WaitForFirstConsumer), with a host directory named after the volume id
//! as its disk; claims grow (ModifyVolume) when the class allows expansion;
//! released volumes are deleted (DeleteVolume) when their reclaim policy
//! says so. Attaching is the agent's, when it mounts volumes.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{
    CSIPersistentVolumeSource, Node, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm,
    ObjectReference, PersistentVolume, PersistentVolumeClaim, PersistentVolumeSpec,
    VolumeNodeAffinity,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::json;

use k8s_openapi::api::storage::v1::StorageClass;

use crate::ec2::{Ec2, Ec2Error, NewVolume, gib_ceil, is_not_found};
use crate::layout::Layout;
use crate::nodes::ZONE_LABEL;
use crate::stores::Stores;

/// The CSI driver name we stand in for.
pub const DRIVER: &str = "ebs.csi.aws.com";
/// The scheduler's annotation naming the node a WaitForFirstConsumer claim is for.
const SELECTED_NODE: &str = "volume.kubernetes.io/selected-node";

/// Why one provisioning step failed (retried on the next pass).
#[derive(Debug, thiserror::Error)]
pub enum ProvisionerError {
    /// An API call failed.
    #[error("failed to {action}: {source}")]
    Api {
        /// What we tried.
        action: String,
        /// The API error.
        source: kube::Error,
    },
    /// An EC2 call failed.
    #[error(transparent)]
    Ec2(#[from] Ec2Error),
    /// The volume's directory could not be made or removed.
    #[error("failed to {action} volume directory {path}: {source}")]
    Disk {
        /// What we tried.
        action: &'static str,
        /// The directory.
        path: String,
        /// What the OS said.
        source: std::io::Error,
    },
}

/// The provisioner loop: one pass a second over the cached claims.
pub async fn run(client: Client, stores: Stores, layout: Layout, ec2: Ec2) {
    loop {
        for claim in stores.claims.state() {
            if let Err(error) = reconcile_claim(&client, &stores, &layout, &ec2, &claim).await {
                tracing::warn!(claim = %claim.name_any(), %error, "provisioner");
            }
        }
        for volume in stores.volumes.state() {
            if let Err(error) = reclaim(&client, &layout, &ec2, &volume).await {
                tracing::warn!(volume = %volume.name_any(), %error, "provisioner");
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

fn requested(claim: &PersistentVolumeClaim) -> Option<Quantity> {
    claim
        .spec
        .as_ref()?
        .resources
        .as_ref()?
        .requests
        .as_ref()?
        .get("storage")
        .cloned()
}

/// Parses a storage quantity into bytes (binary and decimal suffixes).
pub fn quantity_bytes(q: &Quantity) -> Option<u128> {
    let s = q.0.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(s.len());
    let (number, suffix) = s.split_at(split);
    let number: f64 = number.parse().ok()?;
    let factor: f64 = match suffix {
        "" => 1.0,
        "Ki" => 1024.0,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        _ => return None,
    };
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    Some((number * factor) as u128)
}

async fn reconcile_claim(
    client: &Client,
    stores: &Stores,
    layout: &Layout,
    ec2: &Ec2,
    claim: &PersistentVolumeClaim,
) -> Result<(), ProvisionerError> {
    let Some(spec) = claim.spec.as_ref() else {
        return Ok(());
    };
    let Some(class_name) = spec.storage_class_name.as_deref() else {
        return Ok(());
    };
    let Some(class) = stores
        .classes
        .state()
        .into_iter()
        .find(|c| c.name_any() == class_name)
    else {
        return Ok(());
    };
    if class.provisioner != DRIVER || claim.metadata.deletion_timestamp.is_some() {
        return Ok(());
    }
    match spec.volume_name.as_deref().filter(|v| !v.is_empty()) {
        None => provision(client, stores, layout, ec2, claim, &class).await,
        Some(volume) => {
            if class.allow_volume_expansion == Some(true) {
                expand(client, stores, ec2, claim, volume).await
            } else {
                Ok(())
            }
        }
    }
}

async fn provision(
    client: &Client,
    stores: &Stores,
    layout: &Layout,
    ec2: &Ec2,
    claim: &PersistentVolumeClaim,
    class: &StorageClass,
) -> Result<(), ProvisionerError> {
    let pv_name = format!("pvc-{}", claim.uid().unwrap_or_default());
    if stores
        .volumes
        .state()
        .iter()
        .any(|v| v.name_any() == pv_name)
    {
        return Ok(());
    }
    let wait_for_consumer = class.volume_binding_mode.as_deref() == Some("WaitForFirstConsumer");
    let selected = claim.annotations().get(SELECTED_NODE).cloned();
    let zone = match selected {
        Some(node) => {
            let nodes: Api<Node> = Api::all(client.clone());
            let node = nodes
                .get(&node)
                .await
                .map_err(|source| ProvisionerError::Api {
                    action: format!("read selected node {node}"),
                    source,
                })?;
            node.labels().get(ZONE_LABEL).cloned()
        }
        None if wait_for_consumer => return Ok(()),
        // Immediate binding: any zone; the pod follows the volume.
        None => Some(crate::layout::ZONES[0].to_owned()),
    };
    let Some(zone) = zone else {
        return Ok(());
    };
    let Some(size) = requested(claim) else {
        return Ok(());
    };
    let Some(bytes) = quantity_bytes(&size) else {
        return Ok(());
    };
    let new = new_volume(class, claim, &pv_name, &zone, gib_ceil(bytes));
    let volume_id = ec2.create_volume(&new).await?;
    let dir = layout.volumes().join(&volume_id);
    std::fs::create_dir_all(&dir).map_err(|source| ProvisionerError::Disk {
        action: "create",
        path: dir.display().to_string(),
        source,
    })?;
    let spec = claim.spec.clone().unwrap_or_default();
    let pv = PersistentVolume {
        metadata: ObjectMeta {
            name: Some(pv_name.clone()),
            annotations: Some(BTreeMap::from([(
                "pv.kubernetes.io/provisioned-by".to_owned(),
                DRIVER.to_owned(),
            )])),
            ..ObjectMeta::default()
        },
        spec: Some(PersistentVolumeSpec {
            capacity: Some(BTreeMap::from([("storage".to_owned(), size)])),
            access_modes: spec.access_modes.clone(),
            volume_mode: spec.volume_mode.clone(),
            storage_class_name: class.metadata.name.clone(),
            persistent_volume_reclaim_policy: Some(
                class
                    .reclaim_policy
                    .clone()
                    .unwrap_or_else(|| "Delete".to_owned()),
            ),
            mount_options: class.mount_options.clone(),
            claim_ref: Some(ObjectReference {
                api_version: Some("v1".to_owned()),
                kind: Some("PersistentVolumeClaim".to_owned()),
                namespace: claim.namespace(),
                name: claim.metadata.name.clone(),
                uid: claim.uid(),
                ..ObjectReference::default()
            }),
            csi: Some(CSIPersistentVolumeSource {
                driver: DRIVER.to_owned(),
                volume_handle: volume_id.clone(),
                fs_type: Some("ext4".to_owned()),
                ..CSIPersistentVolumeSource::default()
            }),
            node_affinity: Some(VolumeNodeAffinity {
                required: Some(NodeSelector {
                    node_selector_terms: vec![NodeSelectorTerm {
                        match_expressions: Some(vec![NodeSelectorRequirement {
                            key: ZONE_LABEL.to_owned(),
                            operator: "In".to_owned(),
                            values: Some(vec![zone.clone()]),
                        }]),
                        ..NodeSelectorTerm::default()
                    }],
                }),
            }),
            ..PersistentVolumeSpec::default()
        }),
        ..PersistentVolume::default()
    };
    let api: Api<PersistentVolume> = Api::all(client.clone());
    match api.create(&PostParams::default(), &pv).await {
        Ok(_) => {
            tracing::info!(claim = %claim.name_any(), %volume_id, %zone, "provisioned");
            Ok(())
        }
        Err(kube::Error::Api(status)) if status.code == 409 => {
            let _ = std::fs::remove_dir(&dir);
            let _ = ec2.delete_volume(&volume_id).await;
            Ok(())
        }
        Err(source) => {
            let _ = std::fs::remove_dir(&dir);
            let _ = ec2.delete_volume(&volume_id).await;
            Err(ProvisionerError::Api {
                action: format!("create volume {pv_name}"),
                source,
            })
        }
    }
}

/// The EC2 volume for a claim: the class's `type`, `iops`, `throughput`,
/// `encrypted` and `tagSpecification_N` (`key=value`) parameters, and the
/// tags the EBS CSI driver adds (`CSIVolumeName`, the claim's and PV's names).
fn new_volume(
    class: &StorageClass,
    claim: &PersistentVolumeClaim,
    pv_name: &str,
    zone: &str,
    size_gib: i32,
) -> NewVolume {
    let empty = BTreeMap::new();
    let params = class.parameters.as_ref().unwrap_or(&empty);
    let number = |key: &str| params.get(key).and_then(|v| v.parse::<i32>().ok());
    let mut tags = BTreeMap::from([
        ("CSIVolumeName".to_owned(), pv_name.to_owned()),
        ("ebs.csi.aws.com/cluster".to_owned(), "true".to_owned()),
        (
            "kubernetes.io/created-for/pvc/name".to_owned(),
            claim.name_any(),
        ),
        (
            "kubernetes.io/created-for/pvc/namespace".to_owned(),
            claim.namespace().unwrap_or_default(),
        ),
        (
            "kubernetes.io/created-for/pv/name".to_owned(),
            pv_name.to_owned(),
        ),
    ]);
    for (key, value) in params {
        if key.starts_with("tagSpecification_")
            && let Some((k, v)) = value.split_once('=')
        {
            tags.insert(k.to_owned(), v.to_owned());
        }
    }
    NewVolume {
        zone: zone.to_owned(),
        size_gib,
        volume_type: params
            .get("type")
            .cloned()
            .unwrap_or_else(|| "gp3".to_owned()),
        iops: number("iops"),
        throughput: number("throughput"),
        encrypted: params.get("encrypted").is_some_and(|v| v == "true"),
        tags,
    }
}

/// Grows the volume at EC2, the PV and then the claim's status when the
/// request exceeds them.
async fn expand(
    client: &Client,
    stores: &Stores,
    ec2: &Ec2,
    claim: &PersistentVolumeClaim,
    volume: &str,
) -> Result<(), ProvisionerError> {
    let Some(want) = requested(claim) else {
        return Ok(());
    };
    let Some(want_bytes) = quantity_bytes(&want) else {
        return Ok(());
    };
    let Some(pv) = stores
        .volumes
        .state()
        .into_iter()
        .find(|v| v.name_any() == volume)
    else {
        return Ok(());
    };
    let pv_bytes = pv
        .spec
        .as_ref()
        .and_then(|s| s.capacity.as_ref())
        .and_then(|c| c.get("storage"))
        .and_then(quantity_bytes)
        .unwrap_or(0);
    let err = |action: String| move |source| ProvisionerError::Api { action, source };
    if pv_bytes < want_bytes {
        if let Some(csi) = pv.spec.as_ref().and_then(|s| s.csi.as_ref()) {
            ec2.resize(&csi.volume_handle, gib_ceil(want_bytes)).await?;
        }
        let api: Api<PersistentVolume> = Api::all(client.clone());
        let patch = json!({ "spec": { "capacity": { "storage": want } } });
        api.patch(volume, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(err(format!("resize volume {volume}")))?;
    }
    let claim_bytes = claim
        .status
        .as_ref()
        .and_then(|s| s.capacity.as_ref())
        .and_then(|c| c.get("storage"))
        .and_then(quantity_bytes)
        .unwrap_or(0);
    if claim_bytes < want_bytes
        && claim.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound")
    {
        let api: Api<PersistentVolumeClaim> =
            Api::namespaced(client.clone(), &claim.namespace().unwrap_or_default());
        let patch = json!({
            "status": {
                "capacity": { "storage": want },
                "allocatedResources": { "storage": want },
                "conditions": null,
                "allocatedResourceStatuses": null,
            }
        });
        api.patch_status(
            &claim.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
        .map_err(err(format!(
            "update the capacity of claim {}",
            claim.name_any()
        )))?;
        tracing::info!(claim = %claim.name_any(), size = %want.0, "expanded");
    }
    Ok(())
}

/// Deletes released volumes of ours whose reclaim policy is Delete.
async fn reclaim(
    client: &Client,
    layout: &Layout,
    ec2: &Ec2,
    pv: &PersistentVolume,
) -> Result<(), ProvisionerError> {
    let Some(spec) = pv.spec.as_ref() else {
        return Ok(());
    };
    let Some(csi) = spec.csi.as_ref().filter(|c| c.driver == DRIVER) else {
        return Ok(());
    };
    let released = pv.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Released");
    if !released || spec.persistent_volume_reclaim_policy.as_deref() != Some("Delete") {
        return Ok(());
    }
    // Still attached (its pod is stopping): DeleteVolume refuses, retry.
    match ec2.delete_volume(&csi.volume_handle).await {
        Err(error) if !is_not_found(&error) => return Err(error.into()),
        _ => {}
    }
    let dir = layout.volumes().join(&csi.volume_handle);
    if dir.exists() {
        std::fs::remove_dir_all(&dir).map_err(|source| ProvisionerError::Disk {
            action: "remove",
            path: dir.display().to_string(),
            source,
        })?;
    }
    let api: Api<PersistentVolume> = Api::all(client.clone());
    let name = pv.name_any();
    // Our own finalizer goes first, as the external provisioner does.
    let patch = json!({ "metadata": { "finalizers": null } });
    let _ = api
        .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await;
    match api.delete(&name, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(source) => Err(ProvisionerError::Api {
            action: format!("delete volume {name}"),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volumes_take_the_class_parameters_and_the_drivers_tags() {
        let class: StorageClass = serde_json::from_value(json!({
            "metadata": { "name": "ebisu-orders" },
            "provisioner": DRIVER,
            "parameters": {
                "type": "io2", "iops": "4000", "encrypted": "true",
                "tagSpecification_1": "ebisu.dev/cluster=orders",
            },
        }))
        .unwrap();
        let claim: PersistentVolumeClaim = serde_json::from_value(json!({
            "metadata": { "name": "data-orders-0", "namespace": "shop" },
        }))
        .unwrap();
        let v = new_volume(&class, &claim, "pvc-1", "us-east-1b", 20);
        assert_eq!((v.zone.as_str(), v.size_gib), ("us-east-1b", 20));
        assert_eq!(v.volume_type, "io2");
        assert_eq!(
            (v.iops, v.throughput, v.encrypted),
            (Some(4000), None, true)
        );
        assert_eq!(v.tags["ebisu.dev/cluster"], "orders");
        assert_eq!(v.tags["kubernetes.io/created-for/pvc/namespace"], "shop");
        assert_eq!(v.tags["CSIVolumeName"], "pvc-1");
    }

    #[test]
    fn quantities_parse_binary_and_decimal_suffixes() {
        let q = |s: &str| quantity_bytes(&Quantity(s.to_owned()));
        assert_eq!(q("1Gi"), Some(1 << 30));
        assert_eq!(q("1.5Gi"), Some(3 << 29));
        assert_eq!(q("20G"), Some(20_000_000_000));
        assert_eq!(q("512"), Some(512));
        assert!(q("2Gi") > q("1Gi"));
        assert_eq!(q("1Xi"), None);
    }
}
