//! What to do about the volumes given in `spec.storage.ebs.volumes`, from
//! what EC2 says about them: whether each can be used (and in which zone),
//! which instances' claims to make now and where to stop, how many
//! instances may exist meanwhile, and whether a Released PV of ours may be
//! bound again. Pure: tested without EC2 or an API server.

use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_ec2::types::{Volume, VolumeState};
use k8s_openapi::api::core::v1::PersistentVolume;

use ebisu_api::names::TAG_ADOPT_BY;

use crate::model::DataRecord;

/// An instance whose claim is to be made, bound to its given volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bind {
    /// The instance's ordinal.
    pub ordinal: u32,
    /// The volume.
    pub volume: String,
    /// The volume's zone.
    pub zone: String,
}

/// A given volume that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The instance's ordinal.
    pub ordinal: u32,
    /// The volume.
    pub volume: String,
    /// Why, and what to do.
    pub why: String,
}

/// The given volumes (instance ordinal, volume id) whose claims do not
/// exist yet, for the instances the spec asks for: those the spec names
/// (by position) and those made from a snapshot for new replicas
/// (`seeded`, by ordinal), in ordinal order.
pub fn unbound<'a>(
    cluster: &str,
    replicas: i32,
    volumes: &'a [String],
    seeded: &'a BTreeMap<u32, String>,
    record: &DataRecord,
) -> Vec<(u32, &'a String)> {
    let wanted = usize::try_from(replicas.max(0)).unwrap_or(0);
    let existing: BTreeSet<&String> = record.claims().collect();
    let mut unbound: Vec<(u32, &String)> = volumes
        .iter()
        .take(wanted)
        .zip(0u32..)
        .map(|(id, ordinal)| (ordinal, id))
        .chain(
            seeded
                .iter()
                .filter(|(ordinal, _)| {
                    usize::try_from(**ordinal).is_ok_and(|o| o >= volumes.len() && o < wanted)
                })
                .map(|(ordinal, id)| (*ordinal, id)),
        )
        .filter(|(ordinal, _)| !existing.contains(&ebisu_api::names::data_claim(cluster, *ordinal)))
        .collect();
    unbound.sort_by_key(|(ordinal, _)| *ordinal);
    unbound
}

/// Which of `unbound` to bind now, in order, and the first that cannot be
/// used (it and every later one wait, so none gets a new, empty volume).
pub fn plan(
    unbound: &[(u32, &String)],
    found: &BTreeMap<String, Volume>,
    min_bytes: u64,
    zones: &BTreeSet<String>,
    adopter: &str,
) -> (Vec<Bind>, Option<Refusal>) {
    let mut binds = Vec::new();
    for (ordinal, id) in unbound {
        match check(found.get(*id), id, min_bytes, zones, adopter) {
            Ok(zone) => binds.push(Bind {
                ordinal: *ordinal,
                volume: (*id).clone(),
                zone,
            }),
            Err(why) => {
                return (
                    binds,
                    Some(Refusal {
                        ordinal: *ordinal,
                        volume: (*id).clone(),
                        why,
                    }),
                );
            }
        }
    }
    (binds, None)
}

/// Checks one given volume: the zone it lives in, or why it cannot be
/// used. `adopter` is the cluster's `<namespace>/<name>`: the volume's
/// owner must have tagged it so (H4), or anyone who may create a cluster
/// could read any detached volume whose id they learn.
pub fn check(
    volume: Option<&Volume>,
    id: &str,
    min_bytes: u64,
    zones: &BTreeSet<String>,
    adopter: &str,
) -> Result<String, String> {
    let Some(volume) = volume else {
        return Err(format!(
            "volume {id} does not exist in this account and region: check the id in spec.storage.ebs.volumes"
        ));
    };
    let tagged = volume
        .tags()
        .iter()
        .any(|t| t.key() == Some(TAG_ADOPT_BY) && t.value() == Some(adopter));
    if !tagged {
        return Err(format!(
            "volume {id} is not tagged {TAG_ADOPT_BY}={adopter}: its owner gives it to this \
             cluster with `aws ec2 create-tags --resources {id} --tags Key={TAG_ADOPT_BY},Value={adopter}`"
        ));
    }
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
pub fn max_replicas(refused: Option<i32>, running: i32) -> Option<i32> {
    refused.map(|r| r.max(running))
}

/// Whether `current` is the PV we would have made, Released from the same
/// claim name (never one bound elsewhere or made by someone else).
pub fn rebindable(current: &PersistentVolume, wanted: &PersistentVolume) -> bool {
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
    use crate::model::ebs_driver::ADD_ON as EBS_PROVISIONER;
    use aws_sdk_ec2::types::{Tag, VolumeAttachment};

    fn zones() -> BTreeSet<String> {
        ["us-east-1a", "us-east-1b"].map(str::to_owned).into()
    }

    const ADOPTER: &str = "shop/db";

    fn volume(zone: &str, gib: i32, attached: Option<&str>) -> Volume {
        tagged(zone, gib, attached, Some(ADOPTER))
    }

    fn tagged(zone: &str, gib: i32, attached: Option<&str>, adopter: Option<&str>) -> Volume {
        let mut v = Volume::builder().volume_id("vol-0abc");
        if let Some(adopter) = adopter {
            v = v.tags(Tag::builder().key(TAG_ADOPT_BY).value(adopter).build());
        }
        let mut v = v
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
        assert_eq!(max_replicas(None, 3), None);
        // Growing from 2: the third instance waits for its volume.
        assert_eq!(max_replicas(Some(2), 2), Some(2));
        assert_eq!(max_replicas(Some(0), 0), Some(0));
        // A middle claim deleted by hand: instances 1 and 2 stay.
        assert_eq!(max_replicas(Some(1), 3), Some(3));
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
            check(Some(&v), "vol-0abc", 10 << 30, &zones(), ADOPTER),
            Ok("us-east-1b".to_owned())
        );
        assert_eq!(
            check(Some(&v), "vol-0abc", 20 << 30, &zones(), ADOPTER),
            Ok("us-east-1b".to_owned())
        );
    }

    #[test]
    fn wrong_volumes_are_refused_naming_the_volume_and_the_fix() {
        let missing = check(None, "vol-0dead", 1, &zones(), ADOPTER).unwrap_err();
        assert!(missing.contains("vol-0dead does not exist"), "{missing}");
        let far = check(
            Some(&volume("eu-west-1a", 20, None)),
            "vol-0abc",
            1,
            &zones(),
            ADOPTER,
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
            ADOPTER,
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
            ADOPTER,
        )
        .unwrap_err();
        assert!(
            small.contains("5 GiB") && small.contains("spec.storage.size"),
            "{small}"
        );
    }

    #[test]
    fn only_instances_the_spec_asks_for_whose_claims_are_missing_are_bound() {
        let volumes = ["vol-0a", "vol-0b", "vol-0c"].map(str::to_owned).to_vec();
        let record = DataRecord {
            marked_claims: vec!["data-db-0".to_owned()],
            ..DataRecord::default()
        };
        let none = BTreeMap::new();
        assert_eq!(
            unbound("db", 2, &volumes, &none, &record),
            vec![(1, &volumes[1])],
            "the first exists, the third is not asked for"
        );
        assert!(unbound("db", 0, &volumes, &none, &record).is_empty());
    }

    #[test]
    fn seeded_volumes_are_bound_after_the_given_ones_for_instances_asked_for() {
        let volumes = ["vol-0a"].map(str::to_owned).to_vec();
        let seeded = BTreeMap::from([
            (0, "vol-0shadowed".to_owned()),
            (3, "vol-0s3".to_owned()),
            (2, "vol-0s2".to_owned()),
            (5, "vol-0s5".to_owned()),
        ]);
        let record = DataRecord {
            marked_claims: vec!["data-db-1".to_owned()],
            ..DataRecord::default()
        };
        assert_eq!(
            unbound("db", 4, &volumes, &seeded, &record),
            vec![(0, &volumes[0]), (2, &seeded[&2]), (3, &seeded[&3]),],
            "the spec's volume wins over a seed for the same instance; 5 is not asked for"
        );
    }

    #[test]
    fn binding_stops_at_the_first_volume_that_cannot_be_used() {
        let ids = ["vol-0a", "vol-0b", "vol-0c"].map(str::to_owned);
        let unbound: Vec<(u32, &String)> = ids.iter().zip(0u32..).map(|(id, o)| (o, id)).collect();
        let found = BTreeMap::from([
            (ids[0].clone(), volume("us-east-1a", 20, None)),
            (ids[2].clone(), volume("us-east-1b", 20, None)),
        ]);
        let (binds, refusal) = plan(&unbound, &found, 1 << 30, &zones(), ADOPTER);
        assert_eq!(
            binds,
            vec![Bind {
                ordinal: 0,
                volume: "vol-0a".to_owned(),
                zone: "us-east-1a".to_owned()
            }]
        );
        let refusal = refusal.expect("the missing volume is refused");
        assert_eq!((refusal.ordinal, refusal.volume.as_str()), (1, "vol-0b"));
        assert!(refusal.why.contains("does not exist"), "{}", refusal.why);
    }

    #[test]
    fn a_volume_is_adopted_only_when_its_owner_tagged_it_for_this_cluster() {
        // H4: another tenant's detached volume, or one tagged for another
        // cluster, is refused naming the tag to set.
        for v in [
            tagged("us-east-1a", 20, None, None),
            tagged("us-east-1a", 20, None, Some("other/db")),
        ] {
            let why = check(Some(&v), "vol-0abc", 1, &zones(), ADOPTER).unwrap_err();
            assert!(
                why.contains("not tagged ebisu.dev/adopt-by=shop/db")
                    && why.contains("create-tags"),
                "{why}"
            );
        }
    }
}
