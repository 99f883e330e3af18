//! The IO shell of static provisioning (`spec.storage.ebs.volumes`): before
//! the StatefulSet makes an instance's claim, ebisu asks EC2 about its
//! volume and, as [`super::given_decide`] plans, creates the PV (pre-bound
//! to the claim) and the claim itself (bound to the PV), which the
//! StatefulSet then adopts. A volume that fails the check holds that
//! instance and the ones after it, so the claim is never made and given a
//! new, empty volume.

use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_ec2::error::ProvideErrorMetadata;
use aws_sdk_ec2::types::Volume;
use ebisu_api::names;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Node, PersistentVolume, PersistentVolumeClaim};
use kube::api::{Api, ListParams, PostParams};
use kube::{Client, ResourceExt};

use super::given_decide::{self, Bind};
use crate::build::given_volume;
use crate::model::{DataRecord, Problem, well_known::ZONE_LABEL};
use crate::validate::{StorageClassChoice, ValidatedCluster};

/// What static provisioning allows now.
#[derive(Debug, Default)]
pub struct GivenVolumes {
    /// The StatefulSet may have at most this many instances now (the first
    /// instance whose volume failed its check), when a volume failed.
    pub max_replicas: Option<i32>,
    /// The failed checks.
    pub problems: Vec<Problem>,
}

/// Makes the PVs and claims of the given volumes whose claims do not exist
/// yet, and says how many instances may exist.
pub async fn prepare(
    client: &Client,
    ec2: &aws_sdk_ec2::Client,
    validated: &ValidatedCluster,
    record: &DataRecord,
) -> GivenVolumes {
    let mut given = refusals(client, ec2, validated, record).await;
    if given.max_replicas.is_some() {
        let sets: Api<StatefulSet> = Api::namespaced(client.clone(), &validated.namespace);
        let running = match sets.get_opt(&names::statefulset(&validated.name)).await {
            Ok(set) => set
                .and_then(|s| s.spec)
                .and_then(|s| s.replicas)
                .unwrap_or(0),
            // Unknown: keep what the spec says rather than guess lower.
            Err(_) => validated.replicas,
        };
        given.max_replicas = given_decide::max_replicas(given.max_replicas, running);
    }
    given
}

async fn refusals(
    client: &Client,
    ec2: &aws_sdk_ec2::Client,
    validated: &ValidatedCluster,
    record: &DataRecord,
) -> GivenVolumes {
    let mut given = GivenVolumes::default();
    let StorageClassChoice::Managed { name: class, ebs } = &validated.storage.class else {
        return given;
    };
    let unbound = given_decide::unbound(
        &validated.name,
        validated.replicas,
        &ebs.volumes,
        &validated.seeded,
        record,
    );
    let Some(&(first, _)) = unbound.first() else {
        return given;
    };
    let hold_all = |given: &mut GivenVolumes, problem| {
        given.max_replicas = i32::try_from(first).ok();
        given.problems.push(problem);
    };
    let zones = match node_zones(client).await {
        Ok(zones) => zones,
        Err(error) => {
            hold_all(
                &mut given,
                not_made(&format!("failed to list nodes: {error}")),
            );
            return given;
        }
    };
    // DescribeVolumes fails as a whole for a missing id: ask one by one.
    let mut found: BTreeMap<String, Volume> = BTreeMap::new();
    for (_, id) in &unbound {
        match ec2.describe_volumes().volume_ids(*id).send().await {
            Ok(out) => {
                if let Some(v) = out.volumes().first() {
                    found.insert((*id).clone(), v.clone());
                }
            }
            // Missing: the plan says so, naming the id.
            Err(error) if error.code() == Some("InvalidVolume.NotFound") => {}
            Err(error) => {
                let error = crate::ec2::call(format!("describe volume {id}"))(error);
                hold_all(&mut given, Problem::Ec2Unavailable(error.to_string()));
                return given;
            }
        }
    }
    let (binds, refusal) = given_decide::plan(
        &unbound,
        &found,
        validated.storage.size_bytes,
        &zones,
        &validated.key(),
    );
    for bind in &binds {
        if let Err(why) = make(client, validated, class, bind).await {
            given.max_replicas = i32::try_from(bind.ordinal).ok();
            given
                .problems
                .push(refused(validated, bind.ordinal, &bind.volume, &why));
            return given;
        }
    }
    if let Some(refusal) = refusal {
        given.max_replicas = i32::try_from(refusal.ordinal).ok();
        given.problems.push(refused(
            validated,
            refusal.ordinal,
            &refusal.volume,
            &refusal.why,
        ));
    }
    given
}

/// The API could not be asked: nothing is wrong with a volume yet.
fn not_made(why: &str) -> Problem {
    Problem::ChildNotApplied {
        what: format!("the claims of spec.storage.ebs.volumes were not made: {why}"),
    }
}

fn refused(validated: &ValidatedCluster, ordinal: u32, volume: &str, why: &str) -> Problem {
    Problem::StaticVolumeRefused {
        pod: names::pod(&validated.name, ordinal),
        volume: volume.to_owned(),
        why: why.to_owned(),
    }
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

/// Creates the PV and the claim of one bind (each may exist already).
async fn make(
    client: &Client,
    validated: &ValidatedCluster,
    class: &str,
    bind: &Bind,
) -> Result<(), String> {
    let Bind {
        ordinal,
        volume: id,
        zone,
    } = bind;
    let pvs: Api<PersistentVolume> = Api::all(client.clone());
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &validated.namespace);
    let pv = given_volume::volume(validated, class, *ordinal, id, zone);
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
            &given_volume::claim(validated, class, *ordinal, id),
        )
        .await
    {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 409 => {}
        Err(e) => return Err(format!("failed to create the claim for {id}: {e}")),
    }
    tracing::info!(volume = %id, %zone, ordinal, "bound a given volume");
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
    if !given_decide::rebindable(&current, pv) {
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
