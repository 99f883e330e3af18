//! Status: what `kubectl get mysqlcluster` shows, computed from the objects
//! the operator applied and observed (StatefulSet, pods, volumes), what
//! the clustering pass found and did, and what fencing and the volume look
//! report. Pure: the caller passes in what it read and the current time.

use std::collections::BTreeMap;

use ebisu_api::{
    ClusteringMemory, InstanceRole, InstanceStatus, MySQLCluster, MySQLClusterStatus,
    OperationKind, Phase, VolumeStatus, names,
};
use k8s_openapi::{
    api::core::v1::Pod,
    apimachinery::pkg::apis::meta::v1::{Condition, Time},
};

use crate::{
    clustering::{PassReport, Rollout},
    model::{ClusterObjects, Problem, objects},
};

/// Condition: the primary takes writes (what `kubectl wait
/// --for=condition=Ready` waits for; with `spec.database` the application's
/// database and owner exist by then, made before the first server opened).
pub const READY: &str = "Ready";
/// Condition: at least one instance serves queries.
pub const AVAILABLE: &str = "Available";
/// Condition: every desired instance serves queries.
pub const HEALTHY: &str = "Healthy";
/// Condition: fewer instances serve than desired, after the cluster was up.
pub const DEGRADED: &str = "Degraded";
/// Condition: the spec can be honoured.
pub const SPEC_VALID: &str = "SpecValid";
/// Condition: a change of primary is in progress (False says why the last
/// request was refused, if it was).
pub const SWITCHING: &str = "Switching";
/// Condition: the credentials Secret lacks keys the cluster's data needs.
pub const CREDENTIALS_MISSING: &str = "CredentialsMissing";
/// Condition: the primary is lost and ebisu refuses to fail over, because
/// it cannot prove that no acknowledged write would be lost.
pub const FAILOVER_BLOCKED: &str = "FailoverBlocked";
/// True while some instances run an old spec (an older StatefulSet revision).
pub const UPDATING: &str = "Updating";
/// Condition: the binary log archive is further behind the primary than
/// `spec.backup.archive.maxBehindSeconds`, or fails (only with an archive).
pub const ARCHIVE_BEHIND: &str = "ArchiveBehind";
/// Condition: archive retention's last look failed (only with an archive).
pub const ARCHIVE_RETENTION_FAILED: &str = "ArchiveRetentionFailed";
/// Condition: the last verified restore failed (only with
/// `spec.backup.verify`).
pub const RESTORE_VERIFICATION_FAILED: &str = "RestoreVerificationFailed";
/// Condition: the operator cannot reach the primary (it is alive, as its
/// replicas say, or failover is manual): nothing moves.
pub const PRIMARY_UNREACHABLE: &str = "PrimaryUnreachable";

/// Everything a valid cluster's status is computed from.
#[derive(Debug, Clone, Copy)]
pub struct StatusInputs<'a> {
    /// The cluster as read at the start of the reconcile.
    pub cluster: &'a MySQLCluster,
    /// Its children and nodes.
    pub objects: &'a ClusterObjects,
    /// What the clustering pass found and did.
    pub pass: &'a PassReport,
    /// Each instance's volume at EC2, by pod.
    pub volumes: &'a BTreeMap<String, VolumeStatus>,
    /// The nodes fenced for the cluster.
    pub fenced: &'a [String],
    /// The restore the cluster started from.
    pub restore: Option<&'a ebisu_api::RestoreStatus>,
    /// How the instances without a volume yet are seeded.
    pub seeds: &'a [ebisu_api::SeedStatus],
    /// The binary log archive, when the spec asks for one.
    pub archive: Option<&'a ebisu_api::ArchiveStatus>,
    /// The last verified restore (`spec.backup.verify`), this reconcile's
    /// or the one status held.
    pub verified: Option<&'a ebisu_api::VerifiedRestore>,
    /// Now.
    pub now: &'a Time,
}

/// Status of a cluster whose spec is valid and whose children were applied.
pub fn compute(inputs: StatusInputs<'_>) -> MySQLClusterStatus {
    let StatusInputs {
        cluster,
        objects,
        pass,
        volumes,
        fenced,
        restore,
        seeds,
        archive,
        verified,
        now,
    } = inputs;
    let previous = cluster.status.clone().unwrap_or_default();
    let name = cluster.metadata.name.as_deref().unwrap_or_default();
    let desired = cluster.spec.replicas;
    let generation = cluster.metadata.generation;

    let mut instances = instances(name, objects);
    for instance in &mut instances {
        if let Some(server) = pass
            .servers
            .iter()
            .find(|s| s.state.pod == instance.pod && s.state.answered())
        {
            instance.gtid = server
                .state
                .gtid
                .as_ref()
                .map(ToString::to_string)
                .filter(|g| !g.is_empty());
            instance.lag_seconds = server
                .state
                .replication
                .as_ref()
                .and_then(|r| r.lag_seconds)
                .and_then(|l| i64::try_from(l).ok());
            instance.version = server.state.version.map(|v| v.to_string());
        }
        instance.errant_gtids = pass.errant(&instance.pod).map(str::to_owned);
        instance.volume = volumes.get(&instance.pod).cloned();
    }
    let ready = i32::try_from(instances.iter().filter(|i| i.ready).count()).unwrap_or(i32::MAX);
    let update_revision = objects.update_revision().map(str::to_owned);
    let updated = i32::try_from(instances.iter().filter(|i| i.updated).count()).unwrap_or(i32::MAX);
    let current_primary = pass.primary.clone().or_else(|| {
        instances
            .iter()
            .find(|i| i.role == InstanceRole::Primary)
            .map(|i| i.pod.clone())
    });
    let existing = objects
        .stateful_set
        .as_ref()
        .and_then(|s| s.status.as_ref())
        .map_or(0, |s| s.replicas);

    let degrading: Vec<&Problem> = pass.problems.iter().filter(|p| p.degrades()).collect();
    let troubled = !degrading.is_empty();
    let problems_message = pass
        .problems
        .iter()
        .map(Problem::message)
        .collect::<Vec<_>>()
        .join("; ");
    let operation = pass.memory.operation.as_ref();
    let phase = match phase(previous.phase, desired, ready) {
        _ if operation.is_some() => Phase::Switching,
        Phase::Running if troubled => Phase::Degraded,
        phase => phase,
    };
    let condition = |type_: &str, status: bool, reason: &str, message: &str| {
        condition(&previous, type_, status, reason, message, generation, now)
    };
    let blocked = pass
        .problems
        .iter()
        .find(|p| matches!(p, Problem::FailoverBlocked { .. }));
    let primary_ready = current_primary.as_ref().and_then(|pod| {
        instances
            .iter()
            .find(|i| &i.pod == pod && i.role == InstanceRole::Primary && i.ready)
    });
    let conditions = vec![
        condition(SPEC_VALID, true, "Valid", "the spec can be honoured"),
        match primary_ready {
            Some(primary) => condition(
                READY,
                true,
                "PrimaryReady",
                &format!("{} takes writes", primary.pod),
            ),
            None => condition(
                READY,
                false,
                "NoPrimaryReady",
                "no primary takes writes yet",
            ),
        },
        if ready > 0 {
            condition(
                AVAILABLE,
                true,
                "InstancesReady",
                &format!("{ready} of {desired} instances serve queries"),
            )
        } else {
            condition(
                AVAILABLE,
                false,
                "NoInstanceReady",
                "no instance serves queries yet",
            )
        },
        if troubled {
            condition(HEALTHY, false, degrading[0].reason(), &problems_message)
        } else if ready == desired {
            condition(
                HEALTHY,
                true,
                "AllInstancesReady",
                "every instance serves queries",
            )
        } else {
            condition(
                HEALTHY,
                false,
                "InstancesNotReady",
                &format!("{ready} of {desired} instances serve queries"),
            )
        },
        if troubled {
            condition(DEGRADED, true, degrading[0].reason(), &problems_message)
        } else if phase == Phase::Degraded {
            condition(
                DEGRADED,
                true,
                "InstancesNotReady",
                &format!(
                    "{} of {desired} instances do not serve queries",
                    desired - ready
                ),
            )
        } else {
            condition(DEGRADED, false, "AsDesired", "no instance is missing")
        },
        switching(&previous, &pass.memory, generation, now),
        match pass
            .problems
            .iter()
            .find(|p| matches!(p, Problem::CredentialsMissing { .. }))
        {
            Some(problem) => condition(
                CREDENTIALS_MISSING,
                true,
                "CredentialsMissing",
                &problem.message(),
            ),
            None => condition(
                CREDENTIALS_MISSING,
                false,
                "CredentialsPresent",
                "the credentials Secret has every key",
            ),
        },
        updating(
            &instances,
            pass.rollout.as_ref(),
            |status, reason, message| condition(UPDATING, status, reason, message),
        ),
        match blocked {
            Some(problem) => condition(
                FAILOVER_BLOCKED,
                true,
                "CannotProveNoLoss",
                &problem.message(),
            ),
            None => condition(
                FAILOVER_BLOCKED,
                false,
                "NotBlocked",
                "no failover is being refused",
            ),
        },
        match pass.problems.iter().find_map(|p| match p {
            Problem::PrimaryUnreachable { heard_by, .. } => Some((p, heard_by.is_empty())),
            _ => None,
        }) {
            Some((problem, manual)) => condition(
                PRIMARY_UNREACHABLE,
                true,
                if manual {
                    "ManualFailover"
                } else {
                    "ReplicasHearIt"
                },
                &problem.message(),
            ),
            None => condition(
                PRIMARY_UNREACHABLE,
                false,
                "Reachable",
                "the operator reaches the primary, or no primary is expected to answer",
            ),
        },
    ];
    let mut conditions = conditions;
    if archive.is_some() {
        conditions.push(
            match pass
                .problems
                .iter()
                .find(|p| matches!(p, Problem::ArchiveBehind(_)))
            {
                Some(problem) => {
                    condition(ARCHIVE_BEHIND, true, "ArchiveBehind", &problem.message())
                }
                None => condition(
                    ARCHIVE_BEHIND,
                    false,
                    "WithinBound",
                    "the binary log archive keeps up with the primary",
                ),
            },
        );
        conditions.push(
            match pass
                .problems
                .iter()
                .find(|p| matches!(p, Problem::ArchiveRetentionFailed(_)))
            {
                Some(problem) => condition(
                    ARCHIVE_RETENTION_FAILED,
                    true,
                    "PruneFailed",
                    &problem.message(),
                ),
                None => condition(
                    ARCHIVE_RETENTION_FAILED,
                    false,
                    "Pruned",
                    "archive retention's last look succeeded, or it has not looked yet",
                ),
            },
        );
    }
    if cluster
        .spec
        .backup
        .as_ref()
        .is_some_and(|b| b.verify.is_some())
    {
        conditions.push(match verified.filter(|v| !v.passed) {
            Some(failed) => condition(
                RESTORE_VERIFICATION_FAILED,
                true,
                "VerificationFailed",
                &format!(
                    "the restore of {} verified at {} failed: {}. The backup or the archive \
                     may not bring the data back: look at the scratch cluster's Events and \
                     logs while the next verification runs, and take a new backup",
                    failed.backup, failed.finished_at.0, failed.message
                ),
            ),
            None => condition(
                RESTORE_VERIFICATION_FAILED,
                false,
                "Verified",
                "the last verified restore passed, or none has run yet",
            ),
        });
    }
    let mut last_switchover = previous.last_switchover;
    let mut last_failover = previous.last_failover;
    for (kind, change) in &pass.completed {
        match kind {
            OperationKind::Switchover => last_switchover = Some(change.clone()),
            OperationKind::Failover => last_failover = Some(change.clone()),
        }
    }

    MySQLClusterStatus {
        phase: Some(phase),
        observed_generation: generation,
        replicas: existing,
        ready_replicas: ready,
        update_revision,
        updated_replicas: updated,
        selector: Some(names::selector_string(&names::selector_labels(name))),
        current_primary,
        instances,
        conditions,
        last_switchover,
        last_failover,
        clustering: pass.memory.clone(),
        fenced_nodes: fenced.to_vec(),
        restore: restore.cloned(),
        seeds: seeds.to_vec(),
        archive: archive.cloned(),
        last_verified_restore: verified.cloned(),
    }
}

/// The `Updating` condition: True while pods run an old spec, with what
/// the rolling update does about them.
fn updating(
    instances: &[InstanceStatus],
    rollout: Option<&Rollout>,
    condition: impl Fn(bool, &str, &str) -> Condition,
) -> Condition {
    let old: Vec<&str> = instances
        .iter()
        .filter(|i| !i.updated && i.revision.is_some())
        .map(|i| i.pod.as_str())
        .collect();
    if old.is_empty() {
        return condition(false, "UpToDate", "every instance runs the current spec");
    }
    let pending = format!(
        "{} of {} instances run an old spec ({})",
        old.len(),
        instances.len(),
        old.join(", ")
    );
    match rollout {
        Some(Rollout::Manual) => condition(
            true,
            "UpdatePending",
            &format!(
                "{pending}; spec.updateStrategy is Manual: delete their pods to update them, \
                 replicas first, the primary after a switchover"
            ),
        ),
        Some(Rollout::Restarting(pod)) => condition(
            true,
            "RollingUpdate",
            &format!("{pending}; restarting {pod}"),
        ),
        Some(Rollout::SwitchingOver) => condition(
            true,
            "RollingUpdate",
            &format!("{pending}; the primary hands over to an updated replica"),
        ),
        Some(Rollout::Waiting(why)) => {
            condition(true, "UpdatePaused", &format!("{pending}; waiting: {why}"))
        }
        Some(Rollout::Refused(why)) => condition(
            true,
            "DowngradeRefused",
            &format!("{pending}; refused: {why}"),
        ),
        // The update is done as far as decisions go; pods catch up.
        Some(Rollout::UpToDate) | None => condition(true, "UpdatePending", &pending),
    }
}

/// The `Switching` condition: True while a change of primary is in
/// progress, False with the last refusal's reason otherwise.
fn switching(
    previous: &MySQLClusterStatus,
    memory: &ClusteringMemory,
    generation: Option<i64>,
    now: &Time,
) -> Condition {
    match (&memory.operation, &memory.last_refusal) {
        (Some(op), _) => condition(
            previous,
            SWITCHING,
            true,
            &op.reason,
            &format!(
                "moving the primary from {} to {} ({:?})",
                op.from,
                op.to.as_deref().unwrap_or("a replica yet to be chosen"),
                op.step
            ),
            generation,
            now,
        ),
        (None, Some(refusal)) => condition(
            previous, SWITCHING, false, "Refused", refusal, generation, now,
        ),
        (None, None) => condition(
            previous,
            SWITCHING,
            false,
            "Idle",
            "no change of primary in progress",
            generation,
            now,
        ),
    }
}

/// The status `previous` with `memory` in it, as written between the
/// steps of a change of primary: the memory, the `Switching` condition and
/// the phase, the rest as it was.
pub fn with_memory(
    cluster: &MySQLCluster,
    memory: &ClusteringMemory,
    now: &Time,
) -> MySQLClusterStatus {
    let previous = cluster.status.clone().unwrap_or_default();
    let generation = cluster.metadata.generation;
    let mut conditions: Vec<Condition> = previous
        .conditions
        .iter()
        .filter(|c| c.type_ != SWITCHING)
        .cloned()
        .collect();
    conditions.push(switching(&previous, memory, generation, now));
    MySQLClusterStatus {
        phase: if memory.operation.is_some() {
            Some(Phase::Switching)
        } else {
            previous.phase
        },
        conditions,
        clustering: memory.clone(),
        ..previous
    }
}

/// Status of a cluster whose spec cannot be honoured: say why, keep the rest.
pub fn invalid(cluster: &MySQLCluster, message: &str, now: &Time) -> MySQLClusterStatus {
    failed(cluster, SPEC_VALID, false, "InvalidSpec", message, now)
}

/// The previous status, phase Failed, with the condition `type_` (first)
/// saying why.
fn failed(
    cluster: &MySQLCluster,
    type_: &str,
    status: bool,
    reason: &str,
    message: &str,
    now: &Time,
) -> MySQLClusterStatus {
    let previous = cluster.status.clone().unwrap_or_default();
    let generation = cluster.metadata.generation;
    let mut conditions: Vec<Condition> = previous
        .conditions
        .iter()
        .filter(|c| c.type_ != type_)
        .cloned()
        .collect();
    conditions.insert(
        0,
        condition(&previous, type_, status, reason, message, generation, now),
    );
    MySQLClusterStatus {
        phase: Some(Phase::Failed),
        observed_generation: generation,
        conditions,
        ..previous
    }
}

/// The condition of a cluster whose restore from a backup may not go ahead.
pub const RESTORE_REFUSED: &str = "RestoreRefused";

/// Status of a cluster whose restore may not go ahead (nothing was made):
/// `RestoreRefused` says why and what to do.
pub fn restore_refused(cluster: &MySQLCluster, message: &str, now: &Time) -> MySQLClusterStatus {
    failed(
        cluster,
        RESTORE_REFUSED,
        true,
        "CannotRestore",
        message,
        now,
    )
}

/// Initializing until every instance has served once, Degraded when one stops
/// serving afterwards.
pub fn phase(previous: Option<Phase>, desired: i32, ready: i32) -> Phase {
    if ready >= desired {
        return Phase::Running;
    }
    match previous {
        None | Some(Phase::Initializing) => Phase::Initializing,
        // A fixed spec starts over: its instances may never have run.
        Some(Phase::Failed) if ready == 0 => Phase::Initializing,
        Some(_) => Phase::Degraded,
    }
}

fn instances(cluster: &str, objects: &ClusterObjects) -> Vec<InstanceStatus> {
    let mut pods: Vec<(u32, &Pod)> = objects
        .pods
        .iter()
        .filter_map(|p| Some((names::ordinal_of(p.metadata.name.as_deref()?)?, p)))
        .collect();
    pods.sort_by_key(|(ordinal, _)| *ordinal);
    pods.into_iter()
        .map(|(ordinal, pod)| {
            let pod_name = names::pod(cluster, ordinal);
            let volume = objects.claim_volume(cluster, &pod_name);
            let revision = objects::pod_revision(pod).map(str::to_owned);
            InstanceStatus {
                updated: revision.is_some() && !objects.is_outdated(pod),
                revision,
                role: objects::pod_role(pod).unwrap_or(InstanceRole::Unknown),
                ready: objects::pod_ready(pod),
                zone: volume.and_then(objects::volume_zone),
                volume_id: volume.and_then(objects::volume_handle).map(str::to_owned),
                gtid: None,
                lag_seconds: None,
                version: None,
                errant_gtids: None,
                volume: None,
                pod: pod_name,
            }
        })
        .collect()
}

/// A condition that keeps its previous transition time unless its status changed.
fn condition(
    previous: &MySQLClusterStatus,
    type_: &str,
    status: bool,
    reason: &str,
    message: &str,
    generation: Option<i64>,
    now: &Time,
) -> Condition {
    let status = if status { "True" } else { "False" };
    let last_transition_time = previous
        .conditions
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .map_or_else(|| now.clone(), |c| c.last_transition_time.clone());
    Condition {
        type_: type_.to_owned(),
        status: status.to_owned(),
        reason: reason.to_owned(),
        message: message.to_owned(),
        observed_generation: generation,
        last_transition_time,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::clustering::observe::ObservedServer;
    use crate::model::{Answer, Replication, ServerState};
    use ebisu_api::names::LABEL_ROLE;
    use k8s_openapi::{
        api::core::v1::{
            CSIPersistentVolumeSource, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm,
            PersistentVolume, PersistentVolumeClaim, PersistentVolumeClaimSpec,
            PersistentVolumeSpec, PodCondition, PodStatus, VolumeNodeAffinity,
        },
        apimachinery::pkg::apis::meta::v1::ObjectMeta,
        jiff::Timestamp,
    };

    fn cluster(replicas: i32, status: Option<MySQLClusterStatus>) -> MySQLCluster {
        let mut c: MySQLCluster = serde_yaml::from_str(&format!(
            "apiVersion: ebisu.dev/v1alpha1\nkind: MySQLCluster\nmetadata: {{name: orders, namespace: shop, generation: 4}}\nspec: {{replicas: {replicas}, storage: {{size: 10Gi}}}}\n"
        ))
        .expect("cluster");
        c.status = status;
        c
    }

    fn pod(ordinal: u32, ready: bool, role: Option<&str>) -> Pod {
        let mut labels = names::selector_labels("orders");
        if let Some(role) = role {
            labels.insert(LABEL_ROLE.to_owned(), role.to_owned());
        }
        Pod {
            metadata: ObjectMeta {
                name: Some(format!("orders-{ordinal}")),
                labels: Some(labels),
                ..ObjectMeta::default()
            },
            status: Some(PodStatus {
                conditions: Some(vec![PodCondition {
                    type_: "Ready".to_owned(),
                    status: if ready { "True" } else { "False" }.to_owned(),
                    ..PodCondition::default()
                }]),
                ..PodStatus::default()
            }),
            ..Pod::default()
        }
    }

    fn status_of(
        cluster: &MySQLCluster,
        objects: &ClusterObjects,
        pass: &PassReport,
        now: &Time,
    ) -> MySQLClusterStatus {
        compute(StatusInputs {
            cluster,
            objects,
            pass,
            volumes: &BTreeMap::new(),
            fenced: &[],
            restore: None,
            seeds: &[],
            archive: None,
            verified: None,
            now,
        })
    }

    fn at(seconds: i64) -> Time {
        Time(Timestamp::from_second(seconds).expect("time"))
    }

    fn find<'a>(status: &'a MySQLClusterStatus, type_: &str) -> &'a Condition {
        status
            .conditions
            .iter()
            .find(|c| c.type_ == type_)
            .expect("condition")
    }

    #[test]
    fn phase_starts_initializing_then_runs_then_degrades() {
        assert_eq!(phase(None, 3, 0), Phase::Initializing);
        assert_eq!(phase(Some(Phase::Initializing), 3, 2), Phase::Initializing);
        assert_eq!(phase(Some(Phase::Initializing), 3, 3), Phase::Running);
        assert_eq!(phase(Some(Phase::Running), 3, 2), Phase::Degraded);
        assert_eq!(phase(Some(Phase::Degraded), 3, 3), Phase::Running);
        assert_eq!(phase(Some(Phase::Failed), 3, 0), Phase::Initializing);
        assert_eq!(phase(Some(Phase::Failed), 3, 1), Phase::Degraded);
    }

    #[test]
    fn instances_are_listed_by_ordinal_with_role_and_readiness() {
        let observed = ClusterObjects {
            pods: vec![
                pod(2, false, None),
                pod(0, true, Some("primary")),
                pod(1, true, Some("replica")),
            ],
            ..ClusterObjects::default()
        };
        let status = status_of(
            &cluster(3, None),
            &observed,
            &PassReport::default(),
            &at(100),
        );
        let summary: Vec<(&str, InstanceRole, bool)> = status
            .instances
            .iter()
            .map(|i| (i.pod.as_str(), i.role, i.ready))
            .collect();
        assert_eq!(
            summary,
            vec![
                ("orders-0", InstanceRole::Primary, true),
                ("orders-1", InstanceRole::Replica, true),
                ("orders-2", InstanceRole::Unknown, false)
            ]
        );
        assert_eq!(status.ready_replicas, 2);
        assert_eq!(status.current_primary.as_deref(), Some("orders-0"));
        assert_eq!(status.phase, Some(Phase::Initializing));
        assert_eq!(status.observed_generation, Some(4));
        assert_eq!(
            status.selector.as_deref(),
            Some(
                "app.kubernetes.io/instance=orders,app.kubernetes.io/name=mysql,ebisu.dev/cluster=orders"
            )
        );
        assert_eq!(find(&status, AVAILABLE).status, "True");
        assert_eq!(find(&status, HEALTHY).status, "False");
        assert!(
            status
                .conditions
                .iter()
                .all(|c| c.observed_generation == Some(4))
        );
    }

    #[test]
    fn zone_and_volume_id_come_from_the_bound_volume() {
        let claim = PersistentVolumeClaim {
            metadata: ObjectMeta {
                name: Some("data-orders-0".to_owned()),
                ..ObjectMeta::default()
            },
            spec: Some(PersistentVolumeClaimSpec {
                volume_name: Some("pv-1".to_owned()),
                ..PersistentVolumeClaimSpec::default()
            }),
            ..PersistentVolumeClaim::default()
        };
        let volume = PersistentVolume {
            spec: Some(PersistentVolumeSpec {
                csi: Some(CSIPersistentVolumeSource {
                    driver: "ebs.csi.aws.com".to_owned(),
                    volume_handle: "vol-0abc".to_owned(),
                    ..CSIPersistentVolumeSource::default()
                }),
                node_affinity: Some(VolumeNodeAffinity {
                    required: Some(NodeSelector {
                        node_selector_terms: vec![NodeSelectorTerm {
                            match_expressions: Some(vec![NodeSelectorRequirement {
                                key: "topology.kubernetes.io/zone".to_owned(),
                                operator: "In".to_owned(),
                                values: Some(vec!["us-east-1b".to_owned()]),
                            }]),
                            ..NodeSelectorTerm::default()
                        }],
                    }),
                }),
                ..PersistentVolumeSpec::default()
            }),
            ..PersistentVolume::default()
        };
        let observed = ClusterObjects {
            pods: vec![pod(0, true, None)],
            claims: vec![claim],
            volumes: BTreeMap::from([("pv-1".to_owned(), volume)]),
            ..ClusterObjects::default()
        };
        let instance =
            &status_of(&cluster(1, None), &observed, &PassReport::default(), &at(1)).instances[0];
        assert_eq!(instance.zone.as_deref(), Some("us-east-1b"));
        assert_eq!(instance.volume_id.as_deref(), Some("vol-0abc"));
    }

    #[test]
    fn unchanged_conditions_keep_their_transition_time() {
        let observed = ClusterObjects {
            pods: vec![pod(0, true, None)],
            ..ClusterObjects::default()
        };
        let first = status_of(
            &cluster(1, None),
            &observed,
            &PassReport::default(),
            &at(100),
        );
        let second = status_of(
            &cluster(1, Some(first.clone())),
            &observed,
            &PassReport::default(),
            &at(200),
        );
        assert_eq!(
            first, second,
            "a recomputed status with nothing new is identical"
        );
        let down = ClusterObjects {
            pods: vec![pod(0, false, None)],
            ..ClusterObjects::default()
        };
        let third = status_of(
            &cluster(1, Some(second)),
            &down,
            &PassReport::default(),
            &at(300),
        );
        assert_eq!(find(&third, HEALTHY).last_transition_time, at(300));
        assert_eq!(find(&third, SPEC_VALID).last_transition_time, at(100));
        assert_eq!(third.phase, Some(Phase::Degraded));
        assert_eq!(find(&third, DEGRADED).status, "True");
    }

    #[test]
    fn server_problems_degrade_a_running_cluster_and_gtids_reach_the_instances() {
        let observed = ClusterObjects {
            pods: vec![pod(0, true, Some("primary")), pod(1, true, Some("replica"))],
            ..ClusterObjects::default()
        };
        let pass = PassReport {
            primary: Some("orders-0".to_owned()),
            servers: vec![
                server("orders-0", "0-100-9", None),
                server("orders-1", "0-100-8", Some(2)),
            ],
            problems: vec![Problem::ErrantTransactions {
                pod: "orders-1".to_owned(),
                gtids: "0-101-3".to_owned(),
            }],
            ..PassReport::default()
        };
        let status = status_of(&cluster(2, None), &observed, &pass, &at(5));
        assert_eq!(status.phase, Some(Phase::Degraded));
        assert_eq!(find(&status, DEGRADED).status, "True");
        assert_eq!(find(&status, DEGRADED).reason, "ErrantTransactions");
        assert!(find(&status, DEGRADED).message.contains("0-101-3"));
        assert_eq!(find(&status, HEALTHY).status, "False");
        assert_eq!(status.instances[1].gtid.as_deref(), Some("0-100-8"));
        assert_eq!(status.instances[1].lag_seconds, Some(2));
        assert_eq!(status.instances[1].errant_gtids.as_deref(), Some("0-101-3"));
        assert_eq!(status.current_primary.as_deref(), Some("orders-0"));
    }

    #[test]
    fn a_blocked_failover_is_a_condition_that_says_what_to_do() {
        let observed = ClusterObjects {
            pods: vec![
                pod(0, false, Some("primary")),
                pod(1, true, Some("replica")),
            ],
            ..ClusterObjects::default()
        };
        let pass = PassReport {
            problems: vec![Problem::FailoverBlocked {
                pod: "orders-0".to_owned(),
                why: crate::model::BlockedWhy::SemiSyncInactive,
            }],
            ..PassReport::default()
        };
        let running = MySQLClusterStatus {
            phase: Some(Phase::Running),
            ..MySQLClusterStatus::default()
        };
        let status = status_of(&cluster(2, Some(running)), &observed, &pass, &at(5));
        assert_eq!(status.phase, Some(Phase::Degraded));
        let blocked = find(&status, FAILOVER_BLOCKED);
        assert_eq!(blocked.status, "True");
        assert!(
            blocked
                .message
                .contains("ebisu.dev/force-failover=orders-0"),
            "{}",
            blocked.message
        );
        assert_eq!(find(&status, SWITCHING).status, "False");
    }

    #[test]
    fn a_failed_retention_is_a_condition_that_does_not_degrade() {
        let observed = ClusterObjects {
            pods: vec![pod(0, true, Some("primary"))],
            ..ClusterObjects::default()
        };
        let running = MySQLClusterStatus {
            phase: Some(Phase::Running),
            ..MySQLClusterStatus::default()
        };
        let cluster = cluster(1, Some(running));
        let archive = ebisu_api::ArchiveStatus {
            prune_error: Some("AccessDenied on DeleteObjects".to_owned()),
            ..ebisu_api::ArchiveStatus::default()
        };
        let with = |problems: Vec<Problem>| {
            compute(StatusInputs {
                cluster: &cluster,
                objects: &observed,
                pass: &PassReport {
                    problems,
                    ..PassReport::default()
                },
                volumes: &BTreeMap::new(),
                fenced: &[],
                restore: None,
                seeds: &[],
                archive: Some(&archive),
                verified: None,
                now: &at(5),
            })
        };
        let failed = with(vec![Problem::ArchiveRetentionFailed(
            "AccessDenied on DeleteObjects".to_owned(),
        )]);
        assert_eq!(failed.phase, Some(Phase::Running));
        let condition = find(&failed, ARCHIVE_RETENTION_FAILED);
        assert_eq!(condition.status, "True");
        assert!(
            condition.message.contains("AccessDenied")
                && condition.message.contains("s3:DeleteObject"),
            "{}",
            condition.message
        );
        assert_eq!(
            find(&with(Vec::new()), ARCHIVE_RETENTION_FAILED).status,
            "False"
        );
    }

    #[test]
    fn a_change_of_primary_in_progress_is_the_switching_phase() {
        let observed = ClusterObjects {
            pods: vec![pod(0, true, Some("primary")), pod(1, true, Some("replica"))],
            ..ClusterObjects::default()
        };
        let pass = PassReport {
            memory: ebisu_api::ClusteringMemory {
                operation: Some(ebisu_api::Operation {
                    kind: OperationKind::Switchover,
                    from: "orders-0".to_owned(),
                    to: Some("orders-1".to_owned()),
                    reason: "NodeDrain".to_owned(),
                    step: ebisu_api::OperationStep::Fencing,
                    started_at: at(4),
                    writes_blocked_since: at(4),
                }),
                ..ebisu_api::ClusteringMemory::default()
            },
            ..PassReport::default()
        };
        let status = status_of(&cluster(2, None), &observed, &pass, &at(5));
        assert_eq!(status.phase, Some(Phase::Switching));
        let switching = find(&status, SWITCHING);
        assert_eq!(
            (switching.status.as_str(), switching.reason.as_str()),
            ("True", "NodeDrain")
        );
        assert!(switching.message.contains("from orders-0 to orders-1"));
        assert!(
            status.clustering.operation.is_some(),
            "the memory is kept in status"
        );
    }

    fn server(pod: &str, gtid: &str, lag: Option<u64>) -> ObservedServer {
        let gtid = ebisu_mysql::GtidSet::parse(ebisu_mysql::Flavor::MariaDb, gtid).expect("gtid");
        ObservedServer {
            state: ServerState {
                pod_ready: true,
                answer: Answer::Answered,
                gtid: Some(gtid.clone()),
                replication: lag.map(|lag| Replication {
                    source_host: "orders-0.orders".to_owned(),
                    io_running: true,
                    io_errno: 0,
                    io_error: None,
                    sql_running: true,
                    sql_error: None,
                    lag_seconds: Some(lag),
                    received: Some(gtid),
                }),
                seed_pending: false,
                ..ServerState::unobserved(pod, &format!("{pod}.orders"))
            },
            flavor: Some(ebisu_mysql::Flavor::MariaDb),
            ip: None,
        }
    }

    #[test]
    fn invalid_spec_fails_with_the_reason_and_keeps_instances() {
        let observed = ClusterObjects {
            pods: vec![pod(0, true, Some("primary"))],
            ..ClusterObjects::default()
        };
        let running = status_of(&cluster(1, None), &observed, &PassReport::default(), &at(1));
        let failed = invalid(
            &cluster(1, Some(running)),
            "failed to validate spec.x: bad",
            &at(2),
        );
        assert_eq!(failed.phase, Some(Phase::Failed));
        let valid = find(&failed, SPEC_VALID);
        assert_eq!(
            (valid.status.as_str(), valid.message.as_str()),
            ("False", "failed to validate spec.x: bad")
        );
        assert_eq!(failed.instances.len(), 1);
        assert_eq!(
            failed
                .conditions
                .iter()
                .filter(|c| c.type_ == SPEC_VALID)
                .count(),
            1
        );
    }
}
