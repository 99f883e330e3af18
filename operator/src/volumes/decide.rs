//! What to do about each instance's EBS volume, from what EC2 reports: the
//! tags that name its cluster, namespace and instance, and the IOPS and
//! throughput the spec asks for, within EC2's one modification per volume
//! every 6 hours. Pure: tested without EC2.

use std::collections::BTreeMap;

use ebisu_api::{VolumeModificationStatus, VolumeStatus};
use k8s_openapi::jiff::{SignedDuration, Timestamp};

/// EC2 allows one modification of a volume every 6 hours.
pub const MODIFICATION_INTERVAL: SignedDuration = SignedDuration::from_hours(6);

/// A volume as EC2 describes it, with its latest modification.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VolumeFacts {
    /// What status shows.
    pub status: VolumeStatus,
    /// Its tags.
    pub tags: BTreeMap<String, String>,
    /// When its latest modification started.
    pub modification_started: Option<Timestamp>,
}

/// The performance the spec asks for (`storage.ebs`), when ebisu owns it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Performance {
    /// `gp3` or `io2`.
    pub volume_type: &'static str,
    /// Provisioned IOPS (the type's baseline when unset).
    pub iops: Option<i32>,
    /// Throughput in MiB/s (gp3 only; its baseline when unset).
    pub throughput: Option<i32>,
}

/// gp3's baseline, which EC2 gives a volume created without IOPS/throughput.
const GP3_BASELINE: (i32, i32) = (3000, 125);

impl Performance {
    fn iops(&self) -> Option<i32> {
        self.iops
            .or((self.volume_type == "gp3").then_some(GP3_BASELINE.0))
    }
    fn throughput(&self) -> Option<i32> {
        if self.volume_type == "gp3" {
            Some(self.throughput.unwrap_or(GP3_BASELINE.1))
        } else {
            None
        }
    }
}

/// One call to make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// CreateTags on the volume.
    Tag {
        /// The instance (pod).
        pod: String,
        /// The volume.
        volume: String,
        /// The tags it lacks.
        tags: BTreeMap<String, String>,
    },
    /// ModifyVolume.
    Modify {
        /// The instance (pod).
        pod: String,
        /// The volume.
        volume: String,
        /// New IOPS, when it changes.
        iops: Option<i32>,
        /// New throughput, when it changes.
        throughput: Option<i32>,
        /// What changes, for the Event (`iops 3000 -> 4000`).
        change: String,
    },
}

/// A change the spec asks for that must wait.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deferred {
    /// The instance (pod).
    pub pod: String,
    /// The volume.
    pub volume: String,
    /// What waits and until when.
    pub why: String,
}

/// The plan for a cluster's volumes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    /// Calls to make.
    pub steps: Vec<Step>,
    /// Changes that wait (also written into each volume's status).
    pub deferred: Vec<Deferred>,
}

/// The tags every volume of an instance carries.
pub fn wanted_tags(namespace: &str, cluster: &str, pod: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            ebisu_api::names::LABEL_CLUSTER.to_owned(),
            cluster.to_owned(),
        ),
        (
            ebisu_api::names::LABEL_NAMESPACE.to_owned(),
            namespace.to_owned(),
        ),
        (ebisu_api::names::TAG_INSTANCE.to_owned(), pod.to_owned()),
    ])
}

/// Decides the calls for each pod's volume (`pod -> facts`), writing any
/// deferred change into the facts' status.
pub fn plan(
    namespace: &str,
    cluster: &str,
    performance: Option<Performance>,
    volumes: &mut BTreeMap<String, VolumeFacts>,
    now: Timestamp,
) -> Plan {
    let mut plan = Plan::default();
    for (pod, facts) in volumes.iter_mut() {
        let volume = facts.status.id.clone();
        let missing: BTreeMap<String, String> = wanted_tags(namespace, cluster, pod)
            .into_iter()
            .filter(|(k, v)| facts.tags.get(k) != Some(v))
            .collect();
        if !missing.is_empty() {
            plan.steps.push(Step::Tag {
                pod: pod.clone(),
                volume: volume.clone(),
                tags: missing,
            });
        }
        let Some(performance) = performance else {
            continue;
        };
        match modification(performance, facts, now) {
            Modification::None => {}
            Modification::Now {
                iops,
                throughput,
                change,
            } => plan.steps.push(Step::Modify {
                pod: pod.clone(),
                volume,
                iops,
                throughput,
                change,
            }),
            Modification::Wait(why) => {
                facts.status.pending_change = Some(why.clone());
                plan.deferred.push(Deferred {
                    pod: pod.clone(),
                    volume,
                    why,
                });
            }
        }
    }
    plan
}

enum Modification {
    None,
    Now {
        iops: Option<i32>,
        throughput: Option<i32>,
        change: String,
    },
    Wait(String),
}

fn modification(performance: Performance, facts: &VolumeFacts, now: Timestamp) -> Modification {
    let status = &facts.status;
    // What the volume has or is becoming: an unfinished modification's
    // targets count, so a change is never asked for twice.
    let running = status
        .modification
        .as_ref()
        .filter(|m| m.state == "modifying" || m.state == "optimizing");
    let has_iops = running
        .and_then(|m| m.target_iops)
        .or(status.iops)
        .or((performance.volume_type == "gp3").then_some(GP3_BASELINE.0));
    let has_throughput = running
        .and_then(|m| m.target_throughput)
        .or(status.throughput)
        .or((performance.volume_type == "gp3").then_some(GP3_BASELINE.1));
    let iops = performance.iops().filter(|w| Some(*w) != has_iops);
    let throughput = performance
        .throughput()
        .filter(|w| Some(*w) != has_throughput);
    if iops.is_none() && throughput.is_none() {
        return Modification::None;
    }
    let mut changes = Vec::new();
    if let Some(w) = iops {
        changes.push(format!("iops {} -> {w}", show(has_iops)));
    }
    if let Some(w) = throughput {
        changes.push(format!("throughput {} -> {w} MiB/s", show(has_throughput)));
    }
    let change = changes.join(", ");
    if let Some(m) = status
        .modification
        .as_ref()
        .filter(|m| m.state == "modifying")
    {
        return Modification::Wait(format!(
            "{change} waits until the modification under way ({}% done) is optimizing",
            m.progress.unwrap_or(0)
        ));
    }
    if let Some(started) = facts.modification_started {
        let allowed = started
            .saturating_add(MODIFICATION_INTERVAL)
            .unwrap_or(started);
        if allowed > now {
            return Modification::Wait(format!(
                "{change} waits until {allowed}: EC2 allows one modification per volume every \
                 6 hours and the last one started at {started}"
            ));
        }
    }
    Modification::Now {
        iops,
        throughput,
        change,
    }
}

fn show(value: Option<i32>) -> String {
    value.map_or_else(|| "unknown".to_owned(), |v| v.to_string())
}

/// A modification's status from its parts.
pub fn modification_status(
    state: String,
    progress: Option<i64>,
    target_iops: Option<i32>,
    target_throughput: Option<i32>,
    target_size_gib: Option<i32>,
    started: Option<Timestamp>,
) -> VolumeModificationStatus {
    VolumeModificationStatus {
        state,
        progress,
        target_iops,
        target_throughput,
        target_size_gib,
        started_at: started.map(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ebisu_api::names::TAG_INSTANCE;

    fn now() -> Timestamp {
        "2026-12-02T12:00:00Z".parse().unwrap()
    }

    fn gp3(iops: Option<i32>, throughput: Option<i32>) -> Performance {
        Performance {
            volume_type: "gp3",
            iops,
            throughput,
        }
    }

    fn tagged(pod: &str) -> BTreeMap<String, String> {
        wanted_tags("shop", "orders", pod)
    }

    fn volume(iops: Option<i32>, throughput: Option<i32>) -> VolumeFacts {
        VolumeFacts {
            status: VolumeStatus {
                id: "vol-1".to_owned(),
                volume_type: Some("gp3".to_owned()),
                iops,
                throughput,
                ..VolumeStatus::default()
            },
            tags: tagged("orders-0"),
            modification_started: None,
        }
    }

    fn run(performance: Option<Performance>, facts: VolumeFacts) -> (Plan, VolumeFacts) {
        let mut volumes = BTreeMap::from([("orders-0".to_owned(), facts)]);
        let plan = plan("shop", "orders", performance, &mut volumes, now());
        (plan, volumes.remove("orders-0").unwrap())
    }

    #[test]
    fn untagged_volumes_get_only_the_tags_they_lack() {
        let mut facts = volume(Some(3000), Some(125));
        facts.tags.remove(TAG_INSTANCE);
        facts.tags.insert(
            ebisu_api::names::LABEL_CLUSTER.to_owned(),
            "other".to_owned(),
        );
        let (plan, _) = run(None, facts);
        assert_eq!(
            plan.steps,
            vec![Step::Tag {
                pod: "orders-0".to_owned(),
                volume: "vol-1".to_owned(),
                tags: BTreeMap::from([
                    (
                        ebisu_api::names::LABEL_CLUSTER.to_owned(),
                        "orders".to_owned()
                    ),
                    (TAG_INSTANCE.to_owned(), "orders-0".to_owned()),
                ]),
            }]
        );
    }

    #[test]
    fn a_volume_at_the_asked_performance_is_left_alone() {
        assert_eq!(
            run(Some(gp3(None, None)), volume(Some(3000), Some(125))).0,
            Plan::default()
        );
        // EC2 leaving the baseline unreported is the baseline.
        assert_eq!(
            run(Some(gp3(None, None)), volume(None, None)).0,
            Plan::default()
        );
        assert_eq!(
            run(
                Some(gp3(Some(4000), Some(250))),
                volume(Some(4000), Some(250))
            )
            .0,
            Plan::default()
        );
        // No spec.storage.ebs (the user's own class): never modified.
        assert_eq!(run(None, volume(Some(3000), Some(125))).0, Plan::default());
    }

    #[test]
    fn a_changed_iops_or_throughput_is_one_modify_call_with_only_what_changes() {
        let (plan, _) = run(Some(gp3(Some(4000), None)), volume(Some(3000), Some(125)));
        assert_eq!(
            plan.steps,
            vec![Step::Modify {
                pod: "orders-0".to_owned(),
                volume: "vol-1".to_owned(),
                iops: Some(4000),
                throughput: None,
                change: "iops 3000 -> 4000".to_owned(),
            }]
        );
        let (plan, _) = run(
            Some(gp3(Some(4000), Some(500))),
            volume(Some(3000), Some(125)),
        );
        assert!(matches!(
            &plan.steps[..],
            [Step::Modify {
                iops: Some(4000),
                throughput: Some(500),
                ..
            }]
        ));
        // Removing iops from the spec goes back to the baseline.
        let (plan, _) = run(Some(gp3(None, None)), volume(Some(4000), Some(125)));
        assert!(matches!(
            &plan.steps[..],
            [Step::Modify {
                iops: Some(3000),
                throughput: None,
                ..
            }]
        ));
    }

    #[test]
    fn a_change_waits_six_hours_after_the_last_modification_started() {
        let mut facts = volume(Some(4000), Some(125));
        facts.modification_started = Some(now() - SignedDuration::from_hours(2));
        let (plan, facts) = run(Some(gp3(Some(5000), None)), facts);
        assert!(plan.steps.is_empty());
        assert_eq!(plan.deferred.len(), 1);
        let why = facts.status.pending_change.unwrap();
        assert!(why.contains("iops 4000 -> 5000"), "{why}");
        assert!(why.contains("2026-12-02T16:00:00Z"), "{why}");
        assert!(why.contains("every 6 hours"), "{why}");

        let mut facts = volume(Some(4000), Some(125));
        facts.modification_started = Some(now() - SignedDuration::from_hours(7));
        let (plan, _) = run(Some(gp3(Some(5000), None)), facts);
        assert_eq!(plan.steps.len(), 1);
    }

    #[test]
    fn a_running_modification_counts_as_done_and_blocks_another() {
        let mut facts = volume(Some(3000), Some(125));
        facts.status.modification = Some(modification_status(
            "modifying".to_owned(),
            Some(40),
            Some(4000),
            None,
            None,
            Some(now()),
        ));
        facts.modification_started = Some(now());
        // Asking for what it is becoming: nothing to do, nothing deferred.
        let (plan, _) = run(Some(gp3(Some(4000), None)), facts.clone());
        assert_eq!(plan, Plan::default());
        let (plan, facts) = run(Some(gp3(Some(6000), None)), facts);
        assert!(plan.steps.is_empty());
        let why = facts.status.pending_change.unwrap();
        assert!(why.contains("iops 4000 -> 6000"), "{why}");
        assert!(why.contains("40% done"), "{why}");
    }

    #[test]
    fn io2_has_no_throughput_to_set() {
        let perf = Performance {
            volume_type: "io2",
            iops: Some(8000),
            throughput: None,
        };
        let mut facts = volume(Some(8000), Some(500));
        facts.status.volume_type = Some("io2".to_owned());
        assert_eq!(run(Some(perf), facts).0, Plan::default());
    }
}
