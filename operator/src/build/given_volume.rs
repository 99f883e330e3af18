//! The PersistentVolume and claim for an EBS volume given in
//! `spec.storage.ebs.volumes`: the PV pre-bound to the instance's claim and
//! pinned to the volume's zone, the claim bound to the PV (the StatefulSet
//! adopts it, since it has the name the StatefulSet would give it).

use std::collections::BTreeMap;

use ebisu_api::names;
use k8s_openapi::api::core::v1::{
    CSIPersistentVolumeSource, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm,
    ObjectReference, PersistentVolume, PersistentVolumeClaim, PersistentVolumeClaimSpec,
    PersistentVolumeSpec, VolumeNodeAffinity, VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::model::well_known::ZONE_LABEL;
use crate::validate::ValidatedCluster;

/// The name of the PV ebisu makes for volume `id`.
pub fn volume_name(id: &str) -> String {
    format!("ebisu-{id}")
}

/// The PV for a given volume, pre-bound to its instance's claim.
pub fn volume(
    validated: &ValidatedCluster,
    class: &str,
    ordinal: u32,
    id: &str,
    zone: &str,
) -> PersistentVolume {
    PersistentVolume {
        metadata: ObjectMeta {
            name: Some(volume_name(id)),
            labels: Some(validated.labels()),
            ..ObjectMeta::default()
        },
        spec: Some(PersistentVolumeSpec {
            capacity: Some(BTreeMap::from([(
                "storage".to_owned(),
                validated.storage.size.clone(),
            )])),
            access_modes: Some(vec!["ReadWriteOnce".to_owned()]),
            storage_class_name: Some(class.to_owned()),
            // The user's volume: never deleted with its claim.
            persistent_volume_reclaim_policy: Some("Retain".to_owned()),
            claim_ref: Some(ObjectReference {
                api_version: Some("v1".to_owned()),
                kind: Some("PersistentVolumeClaim".to_owned()),
                namespace: Some(validated.namespace.clone()),
                name: Some(names::data_claim(&validated.name, ordinal)),
                ..ObjectReference::default()
            }),
            csi: Some(CSIPersistentVolumeSource {
                driver: validated.ebs_driver.provisioner().to_owned(),
                volume_handle: id.to_owned(),
                fs_type: Some("ext4".to_owned()),
                ..CSIPersistentVolumeSource::default()
            }),
            node_affinity: Some(VolumeNodeAffinity {
                required: Some(NodeSelector {
                    node_selector_terms: vec![NodeSelectorTerm {
                        match_expressions: Some(vec![NodeSelectorRequirement {
                            key: ZONE_LABEL.to_owned(),
                            operator: "In".to_owned(),
                            values: Some(vec![zone.to_owned()]),
                        }]),
                        ..NodeSelectorTerm::default()
                    }],
                }),
            }),
            ..PersistentVolumeSpec::default()
        }),
        ..PersistentVolume::default()
    }
}

/// The instance's claim, bound to the PV; the StatefulSet adopts it.
pub fn claim(
    validated: &ValidatedCluster,
    class: &str,
    ordinal: u32,
    id: &str,
) -> PersistentVolumeClaim {
    PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some(names::data_claim(&validated.name, ordinal)),
            namespace: Some(validated.namespace.clone()),
            labels: Some(validated.labels()),
            ..ObjectMeta::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".to_owned()]),
            storage_class_name: Some(class.to_owned()),
            volume_name: Some(volume_name(id)),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([(
                    "storage".to_owned(),
                    Quantity(validated.storage.size.0.clone()),
                )])),
                ..VolumeResourceRequirements::default()
            }),
            ..PersistentVolumeClaimSpec::default()
        }),
        ..PersistentVolumeClaim::default()
    }
}
