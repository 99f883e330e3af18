//! Static provisioning (`spec.storage.ebs.volumes`): existing EBS volumes
//! given to instances. Before the StatefulSet makes an instance's claim,
//! ebisu checks its volume through EC2 and creates the PV (pre-bound to the
//! claim) and the claim itself (bound to the PV), which the StatefulSet
//! then adopts. A volume that fails the check holds that instance and the
//! ones after it, so the claim is never made and given a new, empty volume.

use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_ec2::error::ProvideErrorMetadata;
use aws_sdk_ec2::types::{Volume, VolumeState};
use ebisu_api::names::{self, DATA_VOLUME};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{
    CSIPersistentVolumeSource, Node, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm,
    ObjectReference, PersistentVolume, PersistentVolumeClaim, PersistentVolumeClaimSpec,
    PersistentVolumeSpec, VolumeNodeAffinity, VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, ListParams, PostParams};
use kube::{Client, ResourceExt};

use crate::build::stateful_set::ZONE_LABEL;
use crate::build::storage_class::EBS_PROVISIONER;
use crate::clustering::Problem;
use crate::dereference::Initialised;
use crate::validate::{StorageClassChoice, ValidatedCluster};

/// What static provisioning allows.
#[derive(Debug, Default)]
pub struct Outcome {
    /// The StatefulSet may have at most this many instances now (the first
    /// instance whose volume failed its check), when a volume failed.
    pub hold_at: Option<i32>,
    /// The failed checks.
    pub problems: Vec<Problem>,
}

/// Checks one given volume: the zone it lives in, or why it cannot be used.
pub fn check(
    volume: Option<&Volume>,
    id: &str,
    min_bytes: u64,
    zones: &BTreeSet<String>,
) -> Result<String, String> {
    let Some(volume) = volume else {
        return Err(format!(
            "volume {id} does not exist in this account and region: check the id in spec.storage.ebs.volumes"
        ));
    };
    let zone = volume.availability_zone().unwrap_or_default().to_owned();
    if !zones.contains(&zone) {
        return Err(format!(
            "volume {id} is in zone {zone}, where the cluster has no nodes (it has {}): an EBS volume attaches only in its own zone; move it with a snapshot or add nodes there",
            zones.iter().cloned().collect::<Vec<_>>().join(", ")
        ));
    }
    let attached: Vec<&str> = volume
        .attachments()
        .iter()
        .filter_map(|a| a.instance_id())
        .collect();
    if !attached.is_empty() || volume.state() != Some(&VolumeState::Available) {
        return Err(format!(
            "volume {id} is {} (attached to {}): detach it from there first",
            volume.state().map_or("in an unknown state", |s| s.as_str()),
            if attached.is_empty() {
                "nothing".to_owned()
            } else {
                attached.join(", ")
            }
        ));
    }
    let gib = u64::try_from(volume.size().unwrap_or(0)).unwrap_or(0);
    if gib.saturating_mul(1 << 30) < min_bytes {
        return Err(format!(
            "volume {id} holds {gib} GiB, less than spec.storage.size: grow it with ModifyVolume or lower spec.storage.size"
        ));
    }
    Ok(zone)
}

/// How many instances the StatefulSet may have when the instance at
/// `refused` could not get its volume: none from there on, except that
/// instances which already exist (`running`) stay. Removing one would stop
/// a server that holds data, possibly the primary, over a claim someone
/// deleted by hand; at worst the StatefulSet gives that instance a new
/// volume, which is seeded by a clone while the given one is kept.
pub fn hold(refused: Option<i32>, running: i32) -> Option<i32> {
    refused.map(|r| r.max(running))
}

/// Makes the PVs and claims of the given volumes whose claims do not exist
/// yet, and says how many instances may exist.
pub async fn prepare(
    client: &Client,
    ec2: &aws_sdk_ec2::Client,
    validated: &ValidatedCluster,
    existing: &Initialised,
) -> Outcome {
    let mut outcome = refusals(client, ec2, validated, existing).await;
    if outcome.hold_at.is_some() {
        let sets: Api<StatefulSet> = Api::namespaced(client.clone(), &validated.namespace);
        let running = match sets.get_opt(&names::statefulset(&validated.name)).await {
            Ok(set) => set
                .and_then(|s| s.spec)
                .and_then(|s| s.replicas)
                .unwrap_or(0),
            // Unknown: keep what the spec says rather than guess lower.
            Err(_) => validated.replicas,
        };
        outcome.hold_at = hold(outcome.hold_at, running);
    }
    outcome
}

/// `existing`: the data claims the reconcile found (by name, as
/// [`crate::dereference::initialised`] reads them).
async fn refusals(
    client: &Client,
    ec2: &aws_sdk_ec2::Client,
    validated: &ValidatedCluster,
    existing: &Initialised,
) -> Outcome {
    let mut outcome = Outcome::default();
    let StorageClassChoice::Managed { name: class, ebs } = &validated.storage.class else {
        return outcome;
    };
    let wanted = usize::try_from(validated.replicas.max(0)).unwrap_or(0);
    let given: Vec<(usize, &String)> = ebs.volumes.iter().take(wanted).enumerate().collect();
    if given.is_empty() {
        return outcome;
    }
    let existing: BTreeSet<&String> = existing
        .marked_claims
        .iter()
        .chain(&existing.unmarked_claims)
        .collect();
    let todo: Vec<(usize, &String)> = given
        .into_iter()
        .filter(|(i, _)| !existing.contains(&claim_name(&validated.name, *i)))
        .collect();
    if todo.is_empty() {
        return outcome;
    }
    let zones = match node_zones(client).await {
        Ok(zones) => zones,
        Err(error) => {
            outcome.hold_at = todo.first().and_then(|(i, _)| i32::try_from(*i).ok());
            outcome
                .problems
                .push(not_made(&format!("failed to list nodes: {error}")));
            return outcome;
        }
    };
    let ids: Vec<String> = todo.iter().map(|(_, id)| (*id).clone()).collect();
    // DescribeVolumes fails as a whole for a missing id: ask one by one.
    let mut found: BTreeMap<String, Volume> = BTreeMap::new();
    for id in &ids {
        match ec2.describe_volumes().volume_ids(id).send().await {
            Ok(out) => {
                if let Some(v) = out.volumes().first() {
                    found.insert(id.clone(), v.clone());
                }
            }
            // Missing: the check below says so, naming the id.
            Err(error) if error.code() == Some("InvalidVolume.NotFound") => {}
            Err(error) => {
                outcome.hold_at = todo.first().and_then(|(i, _)| i32::try_from(*i).ok());
                let error = crate::ebs::call(format!("describe volume {id}"))(error);
                outcome
                    .problems
                    .push(Problem::Ec2Unavailable(error.to_string()));
                return outcome;
            }
        }
    }
    for (ordinal, id) in todo {
        let pod = names::pod(&validated.name, u32::try_from(ordinal).unwrap_or(0));
        let made = match check(found.get(id), id, validated.storage.size_bytes, &zones) {
            Ok(zone) => bind(client, validated, class, ordinal, id, &zone).await,
            Err(why) => Err(why),
        };
        if let Err(why) = made {
            outcome.hold_at = i32::try_from(ordinal).ok();
            outcome.problems.push(refused(&pod, id, &why));
            break;
        }
    }
    outcome
}

/// The API could not be asked: nothing is wrong with a volume yet.
fn not_made(why: &str) -> Problem {
    Problem::ChildNotApplied {
        what: format!("the claims of spec.storage.ebs.volumes were not made: {why}"),
    }
}

fn refused(pod: &str, volume: &str, why: &str) -> Problem {
    Problem::StaticVolumeRefused {
        pod: pod.to_owned(),
        volume: volume.to_owned(),
        why: why.to_owned(),
    }
}

fn claim_name(cluster: &str, ordinal: usize) -> String {
    format!(
        "{DATA_VOLUME}-{}",
        names::pod(cluster, u32::try_from(ordinal).unwrap_or(0))
    )
}

async fn node_zones(client: &Client) -> Result<BTreeSet<String>, kube::Error> {
    let nodes: Api<Node> = Api::all(client.clone());
    Ok(nodes
        .list(&ListParams::default())
        .await?
        .items
        .iter()
        .filter_map(|n| n.labels().get(ZONE_LABEL).cloned())
        .collect())
}

/// The PV for a given volume, pre-bound to its instance's claim.
pub fn volume_object(
    validated: &ValidatedCluster,
    class: &str,
    ordinal: usize,
    id: &str,
    zone: &str,
) -> PersistentVolume {
    PersistentVolume {
        metadata: ObjectMeta {
            name: Some(format!("ebisu-{id}")),
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
                name: Some(claim_name(&validated.name, ordinal)),
                ..ObjectReference::default()
            }),
            csi: Some(CSIPersistentVolumeSource {
                driver: EBS_PROVISIONER.to_owned(),
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
pub fn claim_object(
    validated: &ValidatedCluster,
    class: &str,
    ordinal: usize,
    id: &str,
) -> PersistentVolumeClaim {
    PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some(claim_name(&validated.name, ordinal)),
            namespace: Some(validated.namespace.clone()),
            labels: Some(validated.labels()),
            ..ObjectMeta::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".to_owned()]),
            storage_class_name: Some(class.to_owned()),
            volume_name: Some(format!("ebisu-{id}")),
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

async fn bind(
    client: &Client,
    validated: &ValidatedCluster,
    class: &str,
    ordinal: usize,
    id: &str,
    zone: &str,
) -> Result<(), String> {
    let pvs: Api<PersistentVolume> = Api::all(client.clone());
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &validated.namespace);
    let pv = volume_object(validated, class, ordinal, id, zone);
    match pvs.create(&PostParams::default(), &pv).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 409 => release(&pvs, &pv).await?,
        Err(e) => {
            return Err(format!(
                "failed to create the PersistentVolume for {id}: {e}"
            ));
        }
    }
    match claims
        .create(
            &PostParams::default(),
            &claim_object(validated, class, ordinal, id),
        )
        .await
    {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 409 => {}
        Err(e) => return Err(format!("failed to create the claim for {id}: {e}")),
    }
    tracing::info!(volume = id, %zone, ordinal, "bound a given volume");
    Ok(())
}

/// A PV of ours left Released by a deleted claim still names that claim's
/// uid, so the new claim would wait forever: forget the old uid so the
/// volume binds to its instance's claim again (same name, same data).
async fn release(pvs: &Api<PersistentVolume>, pv: &PersistentVolume) -> Result<(), String> {
    let name = pv.name_any();
    let current = pvs
        .get(&name)
        .await
        .map_err(|e| format!("failed to read the PersistentVolume {name}: {e}"))?;
    if !rebindable(&current, pv) {
        return Ok(());
    }
    let patch = serde_json::json!({"spec": {"claimRef": {"uid": null, "resourceVersion": null}}});
    pvs.patch(
        &name,
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(&patch),
    )
    .await
    .map_err(|e| format!("failed to free the PersistentVolume {name} for its claim: {e}"))?;
    tracing::info!(
        volume = name,
        "freed a released given volume for its new claim"
    );
    Ok(())
}

/// Whether `current` is the PV we would have made, Released from the same
/// claim name (never one bound elsewhere or made by someone else).
fn rebindable(current: &PersistentVolume, wanted: &PersistentVolume) -> bool {
    let released = current.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Released");
    let claim = |pv: &PersistentVolume| {
        pv.spec
            .as_ref()
            .and_then(|s| s.claim_ref.as_ref())
            .map(|r| (r.namespace.clone(), r.name.clone()))
    };
    let handle = |pv: &PersistentVolume| {
        pv.spec
            .as_ref()
            .and_then(|s| s.csi.as_ref())
            .map(|c| c.volume_handle.clone())
    };
    released && claim(current) == claim(wanted) && handle(current) == handle(wanted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_ec2::types::VolumeAttachment;

    fn zones() -> BTreeSet<String> {
        ["us-east-1a", "us-east-1b"].map(str::to_owned).into()
    }

    fn volume(zone: &str, gib: i32, attached: Option<&str>) -> Volume {
        let mut v = Volume::builder()
            .volume_id("vol-0abc")
            .availability_zone(zone)
            .size(gib)
            .state(if attached.is_some() {
                VolumeState::InUse
            } else {
                VolumeState::Available
            });
        if let Some(instance) = attached {
            v = v.attachments(VolumeAttachment::builder().instance_id(instance).build());
        }
        v.build()
    }

    #[test]
    fn a_refused_volume_never_removes_an_instance_that_exists() {
        assert_eq!(hold(None, 3), None);
        // Growing from 2: the third instance waits for its volume.
        assert_eq!(hold(Some(2), 2), Some(2));
        assert_eq!(hold(Some(0), 0), Some(0));
        // A middle claim deleted by hand: instances 1 and 2 stay.
        assert_eq!(hold(Some(1), 3), Some(3));
    }

    fn given_pv(phase: &str, claim: &str, handle: &str) -> PersistentVolume {
        let mut pv: PersistentVolume = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "ebisu-vol-0abc"},
            "spec": {
                "claimRef": {"namespace": "db", "name": claim, "uid": "old"},
                "csi": {"driver": EBS_PROVISIONER, "volumeHandle": handle},
            },
        }))
        .unwrap();
        pv.status = Some(k8s_openapi::api::core::v1::PersistentVolumeStatus {
            phase: Some(phase.to_owned()),
            ..Default::default()
        });
        pv
    }

    #[test]
    fn only_our_released_volume_is_freed_for_the_same_claim() {
        let wanted = given_pv("", "data-db-1", "vol-0abc");
        assert!(rebindable(
            &given_pv("Released", "data-db-1", "vol-0abc"),
            &wanted
        ));
        assert!(!rebindable(
            &given_pv("Bound", "data-db-1", "vol-0abc"),
            &wanted
        ));
        assert!(!rebindable(
            &given_pv("Released", "data-other-0", "vol-0abc"),
            &wanted
        ));
        assert!(!rebindable(
            &given_pv("Released", "data-db-1", "vol-0fff"),
            &wanted
        ));
    }

    #[test]
    fn a_free_volume_big_enough_in_a_zone_with_nodes_is_used_there() {
        let v = volume("us-east-1b", 20, None);
        assert_eq!(
            check(Some(&v), "vol-0abc", 10 << 30, &zones()),
            Ok("us-east-1b".to_owned())
        );
        assert_eq!(
            check(Some(&v), "vol-0abc", 20 << 30, &zones()),
            Ok("us-east-1b".to_owned())
        );
    }

    #[test]
    fn wrong_volumes_are_refused_naming_the_volume_and_the_fix() {
        let missing = check(None, "vol-0dead", 1, &zones()).unwrap_err();
        assert!(missing.contains("vol-0dead does not exist"), "{missing}");
        let far = check(
            Some(&volume("eu-west-1a", 20, None)),
            "vol-0abc",
            1,
            &zones(),
        )
        .unwrap_err();
        assert!(
            far.contains("zone eu-west-1a") && far.contains("us-east-1a, us-east-1b"),
            "{far}"
        );
        let used = check(
            Some(&volume("us-east-1a", 20, Some("i-0123"))),
            "vol-0abc",
            1,
            &zones(),
        )
        .unwrap_err();
        assert!(
            used.contains("attached to i-0123") && used.contains("detach"),
            "{used}"
        );
        let small = check(
            Some(&volume("us-east-1a", 5, None)),
            "vol-0abc",
            10 << 30,
            &zones(),
        )
        .unwrap_err();
        assert!(
            small.contains("5 GiB") && small.contains("spec.storage.size"),
            "{small}"
        );
    }
}
