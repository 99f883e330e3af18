//! One look at a cluster's EBS volumes at EC2, the IO shell around
//! [`super::decide`]: DescribeVolumes and DescribeVolumesModifications for
//! each instance's volume, DescribeVolumeStatus for those made from a
//! snapshot (status), then CreateTags and ModifyVolume as the plan says. Only volumes of the EBS CSI driver are looked at.

use std::collections::BTreeMap;

use aws_sdk_ec2::Client;
use aws_sdk_ec2::types::{Filter, Tag, Volume, VolumeModification, VolumeStatusItem};
use ebisu_api::{VolumeInitializationStatus, VolumeStatus};
use k8s_openapi::jiff::Timestamp;
use tracing::info;

use super::decide::{self, Performance, Plan, Step, VolumeFacts};
use crate::ec2::{Error, call};
use crate::model::{ClusterObjects, EbsDriver, Problem, objects};
use crate::validate::{StorageClassChoice, ValidatedCluster};

/// What one look at the volumes found and did.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct VolumeLook {
    /// Each instance's volume, by pod.
    pub volumes: BTreeMap<String, VolumeStatus>,
    /// What the operator cannot do about them now.
    pub problems: Vec<Problem>,
    /// Changes made (`pod`, what changed), for Events.
    pub modified: Vec<(String, String)>,
}

impl VolumeLook {
    /// The pods whose volumes are still loading their snapshot's blocks,
    /// with the percent done when EC2 said.
    pub fn initializing(&self) -> impl Iterator<Item = (&str, Option<i64>)> {
        self.volumes.iter().filter_map(|(pod, volume)| {
            let init = volume.initialization.as_ref()?;
            init.in_progress().then_some((pod.as_str(), init.progress))
        })
    }

    /// The pods whose volumes may still be loading, with the percent done
    /// (0 when unknown): those a look found loading, and those whose
    /// volume ebisu made itself (`made`, pod to volume id: from a snapshot,
    /// or given) when no look has seen that volume yet. A replica on such a
    /// volume can be Ready before the first look at it ends; until EC2
    /// says otherwise, it counts as loading.
    pub fn loading(&self, made: &BTreeMap<String, String>) -> BTreeMap<String, i64> {
        let mut loading: BTreeMap<String, i64> = self
            .initializing()
            .map(|(pod, progress)| (pod.to_owned(), progress.unwrap_or(0)))
            .collect();
        for (pod, id) in made {
            let seen = self.volumes.get(pod).is_some_and(|v| &v.id == id);
            if !seen {
                loading.entry(pod.clone()).or_insert(0);
            }
        }
        loading
    }
}

/// Each instance's volume that ebisu made itself (its PV carries the
/// cluster's labels: made from a backup's snapshot, or given), by pod.
pub fn made_volumes(
    validated: &ValidatedCluster,
    objects: &ClusterObjects,
) -> BTreeMap<String, String> {
    volume_ids(validated, objects)
        .into_iter()
        .filter(|(pod, _)| {
            objects
                .claim_volume(&validated.name, pod)
                .and_then(|pv| pv.metadata.labels.as_ref())
                .and_then(|labels| labels.get(ebisu_api::names::LABEL_MANAGED_BY))
                .is_some_and(|by| by == ebisu_api::names::MANAGED_BY)
        })
        .collect()
}

/// Each instance's EBS volume id, by pod, from the PV bound to its data
/// claim (also claims whose pod is gone, such as after a scale-down).
pub fn volume_ids(
    validated: &ValidatedCluster,
    objects: &ClusterObjects,
) -> BTreeMap<String, String> {
    objects
        .claims
        .iter()
        .filter_map(|claim| {
            let ordinal = ebisu_api::names::data_claim_ordinal(
                &validated.name,
                claim.metadata.name.as_deref()?,
            )?;
            let pod = ebisu_api::names::pod(&validated.name, ordinal);
            let volume = objects.claim_volume(&validated.name, &pod).filter(|pv| {
                pv.spec
                    .as_ref()
                    .and_then(|s| s.csi.as_ref())
                    .is_some_and(|csi| EbsDriver::is_ebs(&csi.driver))
            })?;
            Some((pod, objects::volume_handle(volume)?.to_owned()))
        })
        .collect()
}

/// Looks at the cluster's volumes at EC2 and applies the tags and the
/// performance the spec asks for.
pub async fn look(
    ec2: &Client,
    validated: &ValidatedCluster,
    objects: &ClusterObjects,
) -> VolumeLook {
    let ids = volume_ids(validated, objects);
    let mut outcome = VolumeLook::default();
    if ids.is_empty() {
        return outcome;
    }
    let mut facts = match describe(ec2, &ids).await {
        Ok(facts) => facts,
        Err(error) => {
            outcome
                .problems
                .push(Problem::Ec2Unavailable(error.to_string()));
            return outcome;
        }
    };
    let performance = match &validated.storage.class {
        StorageClassChoice::Managed { ebs, .. } => Some(Performance {
            volume_type: ebs.volume_type.as_str(),
            iops: ebs.iops,
            throughput: ebs.throughput,
        }),
        _ => None,
    };
    let plan: Plan = decide::plan(
        &validated.namespace,
        &validated.name,
        performance,
        &mut facts,
        Timestamp::now(),
    );
    for step in &plan.steps {
        match run(ec2, step).await {
            Ok(Some(done)) => outcome.modified.push(done),
            Ok(None) => {}
            Err(error) => outcome
                .problems
                .push(Problem::Ec2Unavailable(error.to_string())),
        }
    }
    for deferred in plan.deferred {
        outcome.problems.push(Problem::VolumeChangeDeferred {
            pod: deferred.pod,
            why: deferred.why,
        });
    }
    outcome.volumes = facts.into_iter().map(|(pod, f)| (pod, f.status)).collect();
    outcome
}

/// Makes one call; returns `(pod, change)` for a modification.
async fn run(ec2: &Client, step: &Step) -> Result<Option<(String, String)>, Error> {
    match step {
        Step::Tag { volume, tags, .. } => {
            ec2.create_tags()
                .resources(volume)
                .set_tags(Some(
                    tags.iter()
                        .map(|(k, v)| Tag::builder().key(k).value(v).build())
                        .collect(),
                ))
                .send()
                .await
                .map_err(call(format!("tag volume {volume}")))?;
            Ok(None)
        }
        Step::Modify {
            pod,
            volume,
            iops,
            throughput,
            change,
        } => {
            ec2.modify_volume()
                .volume_id(volume)
                .set_iops(*iops)
                .set_throughput(*throughput)
                .send()
                .await
                .map_err(call(format!("modify volume {volume} ({change})")))?;
            info!(%pod, %volume, %change, "modifying volume");
            Ok(Some((pod.clone(), format!("{volume}: {change}"))))
        }
    }
}

/// DescribeVolumes and DescribeVolumesModifications for the cluster's volumes.
async fn describe(
    ec2: &Client,
    ids: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, VolumeFacts>, Error> {
    let wanted: Vec<String> = ids.values().cloned().collect();
    let volumes = ec2
        .describe_volumes()
        .set_volume_ids(Some(wanted.clone()))
        .send()
        .await
        .map_err(call("describe the cluster's volumes"))?;
    let modifications = ec2
        .describe_volumes_modifications()
        .filters(
            Filter::builder()
                .name("volume-id")
                .set_values(Some(wanted))
                .build(),
        )
        .send()
        .await
        .map_err(call("describe the volumes' modifications"))?;
    let mut latest: BTreeMap<&str, &VolumeModification> = BTreeMap::new();
    for m in modifications.volumes_modifications() {
        let Some(id) = m.volume_id() else { continue };
        let newer = latest.get(id).is_none_or(|old| started(old) < started(m));
        if newer {
            latest.insert(id, m);
        }
    }
    let from_snapshots: Vec<String> = volumes
        .volumes()
        .iter()
        .filter(|v| v.snapshot_id().is_some_and(|s| !s.is_empty()))
        .filter_map(|v| v.volume_id().map(str::to_owned))
        .collect();
    let initializations = initializations(ec2, from_snapshots).await?;
    let mut facts = BTreeMap::new();
    for (pod, id) in ids {
        let Some(volume) = volumes.volumes().iter().find(|v| v.volume_id() == Some(id)) else {
            continue;
        };
        let mut found = volume_facts(volume, latest.get(id.as_str()).copied());
        found.status.initialization = initializations.get(id.as_str()).cloned();
        facts.insert(pod.clone(), found);
    }
    Ok(facts)
}

/// DescribeVolumeStatus for volumes made from a snapshot: how far EBS got
/// loading each one's blocks.
async fn initializations(
    ec2: &Client,
    ids: Vec<String>,
) -> Result<BTreeMap<String, VolumeInitializationStatus>, Error> {
    if ids.is_empty() {
        return Ok(BTreeMap::new());
    }
    let statuses = ec2
        .describe_volume_status()
        .set_volume_ids(Some(ids))
        .send()
        .await
        .map_err(call(
            "describe the initialization of volumes made from snapshots",
        ))?;
    Ok(statuses
        .volume_statuses()
        .iter()
        .filter_map(|item| Some((item.volume_id()?.to_owned(), initialization(item)?)))
        .collect())
}

fn initialization(item: &VolumeStatusItem) -> Option<VolumeInitializationStatus> {
    let details = item.initialization_status_details()?;
    Some(VolumeInitializationStatus {
        initialization_type: details.initialization_type().map(|t| t.as_str().to_owned()),
        progress: details.progress(),
        estimated_seconds_left: details.estimated_time_to_complete_in_seconds(),
    })
}

fn started(m: &VolumeModification) -> Option<Timestamp> {
    m.start_time()
        .and_then(|t| Timestamp::from_second(t.secs()).ok())
}

fn volume_facts(volume: &Volume, modification: Option<&VolumeModification>) -> VolumeFacts {
    let attachment = volume.attachments().first();
    VolumeFacts {
        status: VolumeStatus {
            id: volume.volume_id().unwrap_or_default().to_owned(),
            zone: volume.availability_zone().map(str::to_owned),
            volume_type: volume.volume_type().map(|t| t.as_str().to_owned()),
            size_gib: volume.size(),
            iops: volume.iops(),
            throughput: volume.throughput(),
            state: volume.state().map(|s| s.as_str().to_owned()),
            attached_to: attachment.and_then(|a| a.instance_id()).map(str::to_owned),
            attachment_state: attachment
                .and_then(|a| a.state())
                .map(|s| s.as_str().to_owned()),
            modification: modification.map(|m| {
                decide::modification_status(
                    m.modification_state()
                        .map(|s| s.as_str().to_owned())
                        .unwrap_or_default(),
                    m.progress(),
                    m.target_iops(),
                    m.target_throughput(),
                    m.target_size(),
                    started(m),
                )
            }),
            pending_change: None,
            initialization: None,
        },
        tags: volume
            .tags()
            .iter()
            .filter_map(|t| Some((t.key()?.to_owned(), t.value()?.to_owned())))
            .collect(),
        modification_started: modification.and_then(started),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ebisu_api::VolumeInitializationStatus;

    fn status(id: &str, progress: Option<i64>) -> VolumeStatus {
        VolumeStatus {
            id: id.to_owned(),
            initialization: progress.map(|p| VolumeInitializationStatus {
                progress: Some(p),
                ..VolumeInitializationStatus::default()
            }),
            ..VolumeStatus::default()
        }
    }

    #[test]
    fn a_volume_ebisu_made_loads_until_a_look_says_otherwise() {
        let look = VolumeLook {
            volumes: BTreeMap::from([
                ("db-0".to_owned(), status("vol-0", None)),
                ("db-1".to_owned(), status("vol-1", Some(40))),
                ("db-2".to_owned(), status("vol-2", Some(100))),
                ("db-3".to_owned(), status("vol-old", Some(100))),
            ]),
            ..VolumeLook::default()
        };
        let made = BTreeMap::from([
            ("db-2".to_owned(), "vol-2".to_owned()),
            ("db-3".to_owned(), "vol-3".to_owned()),
            ("db-4".to_owned(), "vol-4".to_owned()),
        ]);
        assert_eq!(
            look.loading(&made),
            BTreeMap::from([
                // Loading, as EC2 said.
                ("db-1".to_owned(), 40),
                // A new volume the last look did not see, and one never looked at.
                ("db-3".to_owned(), 0),
                ("db-4".to_owned(), 0),
            ]),
            "db-0 (provisioned empty) and db-2 (loaded) are not loading"
        );
        assert!(VolumeLook::default().loading(&BTreeMap::new()).is_empty());
    }
}
