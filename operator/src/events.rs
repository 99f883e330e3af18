//! Every Event ebisu publishes, with its wording, and publishing them: the
//! one place that answers "which Events exist". The policy is pure: every
//! action done is a Normal Event and every failed one a Warning; a problem
//! is announced once when it appears (keyed by reason and pod, not by its
//! message, whose numbers change) and again only after it went away and
//! came back; a change of primary gets one Event with how long writes were
//! blocked; an invalid spec is announced once per message; the rest
//! (credentials generated, claims grown, volumes modified, nodes fenced)
//! once per thing done. Features return facts; the words are here.

use ebisu_api::{MySQLClusterStatus, OperationKind, RoleChange};
use k8s_openapi::api::core::v1::{ObjectReference, Pod};
use kube::{
    Resource,
    runtime::events::{Event, EventType},
};
use tracing::warn;

use crate::{
    clustering::{
        Action,
        execute::{ActionError, Executed},
    },
    fencing::FencingReport,
    model::{Problem, well_known::OUT_OF_SERVICE},
};

/// One Event to publish: its type, reason, message and the pod it is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    /// Warning (needs attention) or not.
    pub warning: bool,
    /// Stable reason.
    pub reason: String,
    /// What happened.
    pub message: String,
    /// The pod it is about, if any.
    pub pod: Option<String>,
}

impl Note {
    fn normal(reason: &str, message: String, pod: Option<&str>) -> Self {
        Self {
            warning: false,
            reason: reason.to_owned(),
            message,
            pod: pod.map(str::to_owned),
        }
    }

    fn warning(reason: &str, message: String, pod: Option<&str>) -> Self {
        Self {
            warning: true,
            ..Self::normal(reason, message, pod)
        }
    }
}

/// Warnings for problems not announced yet, and the keys announced now
/// (what status remembers for the next pass).
pub fn for_problems(reported: &[String], problems: &[Problem]) -> (Vec<Note>, Vec<String>) {
    let mut keys: Vec<String> = Vec::new();
    let mut notes = Vec::new();
    for problem in problems {
        let key = problem.key();
        if keys.contains(&key) {
            continue;
        }
        if !reported.contains(&key) {
            notes.push(Note::warning(
                problem.reason(),
                problem.message(),
                problem.pod(),
            ));
        }
        keys.push(key);
    }
    (notes, keys)
}

/// The Warning about a spec that cannot be honoured, unless the status
/// already says so (a refused spec is announced once per message, not on
/// every reconcile).
pub fn for_invalid_spec(previous: Option<&MySQLClusterStatus>, message: &str) -> Option<Note> {
    let already_reported = previous.is_some_and(|s| {
        s.conditions.iter().any(|c| {
            c.type_ == crate::status::SPEC_VALID && c.status == "False" && c.message == message
        })
    });
    (!already_reported).then(|| Note::warning("InvalidSpec", message.to_owned(), None))
}

/// The Event of a restore that may not go ahead, once per reason.
pub fn for_restore_refused(previous: Option<&MySQLClusterStatus>, message: &str) -> Option<Note> {
    let already_reported = previous.is_some_and(|s| {
        s.conditions.iter().any(|c| {
            c.type_ == crate::status::RESTORE_REFUSED && c.status == "True" && c.message == message
        })
    });
    (!already_reported).then(|| Note::warning("RestoreRefused", message.to_owned(), None))
}

/// The Event of a restore verification that ended.
pub fn for_verified(verified: &ebisu_api::VerifiedRestore) -> Note {
    if verified.passed {
        Note::normal(
            "RestoreVerified",
            format!(
                "restored {} to {} in a scratch cluster in {} s: {}",
                verified.backup, verified.gtid_set, verified.seconds, verified.message
            ),
            None,
        )
    } else {
        Note::warning(
            "RestoreVerificationFailed",
            format!(
                "restoring {} in a scratch cluster failed its checks: {}",
                verified.backup, verified.message
            ),
            None,
        )
    }
}

/// The Events of the backups step.
pub fn for_backups(notes: &[crate::backups::BackupNote]) -> Vec<Note> {
    notes
        .iter()
        .map(|n| {
            if n.warning {
                Note::warning(n.reason, n.message.clone(), None)
            } else {
                Note::normal(n.reason, n.message.clone(), None)
            }
        })
        .collect()
}

/// The Events of the seeding step: how each new replica gets its data.
pub fn for_seeds(notes: &[crate::restore::seed::SeedNote]) -> Vec<Note> {
    notes
        .iter()
        .map(|n| Note::normal(n.reason, n.message.clone(), None))
        .collect()
}

/// The Event of missing credentials generated in the credentials Secret.
pub fn credentials_generated() -> Note {
    Note::normal(
        "CredentialsGenerated",
        "generated missing credentials in the credentials Secret".to_owned(),
        None,
    )
}

/// The Event of a data claim raised to the spec's size.
pub fn volume_expanding(claim: &str, size: &str) -> Note {
    Note::normal("VolumeExpanding", format!("raised {claim} to {size}"), None)
}

/// The Event of a volume modified at EC2 (`change` says what).
pub fn volume_modified(pod: &str, change: &str) -> Note {
    Note::normal(
        "VolumeModified",
        format!("modifying {pod}'s volume {change}"),
        Some(pod),
    )
}

/// One Event per node fenced or unfenced.
pub fn for_fencing(report: &FencingReport) -> Vec<Note> {
    let fenced = report.fenced_now.iter().map(|f| {
        Note::warning(
            "NodeFenced",
            format!(
                "node {} stopped answering with {} on it: stopped its EC2 instance {} \
                 (forced) and tainted it {OUT_OF_SERVICE}, so Kubernetes moves its pods and \
                 volumes to a healthy node in their zone",
                f.node,
                f.pods.join(", "),
                f.instance
            ),
            f.pods.first().map(String::as_str),
        )
    });
    let unfenced = report.unfenced_now.iter().map(|node| {
        Note::normal(
            "NodeUnfenced",
            format!("node {node} is Ready again: removed the {OUT_OF_SERVICE} taint"),
            None,
        )
    });
    fenced.chain(unfenced).collect()
}

/// One Event per action carried out or failed.
pub fn for_outcome(outcome: &Executed) -> Vec<Note> {
    let mut notes: Vec<Note> = outcome
        .done
        .iter()
        .filter_map(|action| {
            describe(action).map(|(reason, message)| Note::normal(reason, message, action.pod()))
        })
        .collect();
    for (action, error) in &outcome.failed {
        if matches!(error, ActionError::ReseedRefused { .. }) {
            // Reported as a problem: a condition and one Event.
            continue;
        }
        let what = describe(action).map_or_else(|| "record progress".to_owned(), |(_, m)| m);
        notes.push(Note::warning(
            "RepairFailed",
            format!("{what}: {error}"),
            action.pod(),
        ));
    }
    notes
}

/// The Event of a completed change of primary.
pub fn for_role_change(kind: OperationKind, change: &RoleChange) -> Note {
    let (reason, what) = match kind {
        OperationKind::Switchover => ("SwitchedOver", "switched over"),
        OperationKind::Failover => ("FailedOver", "failed over"),
    };
    let blocked = change.writes_blocked_ms.map_or_else(String::new, |ms| {
        format!("; writes were blocked for {ms} ms")
    });
    Note::normal(
        reason,
        format!(
            "{what} from {} to {} ({}){blocked}",
            change.from, change.to, change.reason
        ),
        Some(&change.to),
    )
}

/// A Warning when a switchover request was newly refused or a switchover undone.
pub fn for_refusal(before: Option<&str>, after: Option<&str>) -> Option<Note> {
    match after {
        Some(why) if before != Some(why) => {
            let reason = if why.starts_with(crate::clustering::FORCED_FAILOVER_REFUSAL) {
                "ForcedFailoverRefused"
            } else {
                "SwitchoverRefused"
            };
            Some(Note::warning(reason, why.to_owned(), None))
        }
        _ => None,
    }
}

/// The Event reason and message of an action, `None` for bookkeeping.
pub fn describe(action: &Action) -> Option<(&'static str, String)> {
    Some(match action {
        Action::Remember(_) | Action::ConsumeAnnotation(_) => return None,
        Action::LabelPrimary(pod) => (
            "PrimaryLabelled",
            format!("{pod} is the primary; the primary Service now selects it"),
        ),
        Action::LabelReplica(pod) => ("ReplicaLabelled", format!("{pod} is a replica")),
        Action::Unlabel(pod) => (
            "Unlabelled",
            format!("{pod} receives no traffic until it is repaired"),
        ),
        Action::LabelReads { pod, serve: true } => (
            "ServesReads",
            format!("{pod} replicates within the allowed lag; the read Service selects it"),
        ),
        Action::LabelReads { pod, serve: false } => (
            "StopsServingReads",
            format!("{pod} is out of the read Service"),
        ),
        Action::HoldLease { pod, .. } => (
            "PrimaryLeaseHeld",
            format!("named {pod} in the primary Lease: its agent renews it, any other fences"),
        ),
        Action::MakeWritable(pod) => ("PrimaryWritable", format!("made {pod} writable")),
        Action::Fence { pod, hand_over } => (
            "Fenced",
            if *hand_over {
                format!("made {pod} read-only and ended its client sessions: it hands over")
            } else {
                format!("made {pod} read-only and ended its client sessions: it is not the primary")
            },
        ),
        Action::Replicate { pod, source_host } => (
            "ReplicationRepaired",
            format!("pointed {pod} at {source_host} and started replication"),
        ),
        Action::EnableSemiSync { pod, as_primary } => (
            "SemiSyncEnabled",
            format!(
                "enabled semi-sync on {pod} as {}",
                if *as_primary { "source" } else { "replica" }
            ),
        ),
        Action::DisableSemiSync(pod) => (
            "SemiSyncDisabled",
            format!(
                "{pod} no longer waits for replicas to acknowledge commits: the spec asks for no semi-sync (one instance, or semiSync: false)"
            ),
        ),
        Action::StartApplier(pod) => (
            "ApplierStarted",
            format!(
                "started {pod}'s applier (stopped since its restart) so that it applies what it received"
            ),
        ),
        Action::StopReceiver(pod) => (
            "ReceiverStopped",
            format!("stopped {pod}'s receiver: the lost primary can be acknowledged nothing more"),
        ),
        Action::CatchUp { pod, source, .. } => (
            "CaughtUp",
            format!("{pod} applied every transaction {source} had"),
        ),
        Action::WaitApplied { pod, .. } => (
            "RelayLogApplied",
            format!("{pod} applied everything it had received"),
        ),
        Action::Promote(pod) => (
            "ReplicationStopped",
            format!("{pod} stopped replicating to become the primary"),
        ),
        Action::SetGlobals { pod, settings } => (
            "ConfigApplied",
            format!(
                "set {} on {pod} without a restart",
                settings
                    .iter()
                    .map(|(k, v)| format!("{k} = {v}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ),
        Action::Restart(pod) => (
            "RollingUpdate",
            format!("evicted {pod} so that it restarts on the current spec"),
        ),
        Action::Reseed { pod, reason } => (
            "Reseeding",
            format!(
                "{pod} restarts with its data set aside in .ebisu-kept on its volume (not \
                 deleted) and is copied afresh from a healthy peer: {reason}"
            ),
        ),
    })
}

/// Publishes `note` about `cluster` (and its pod); a failure is logged,
/// never fatal.
pub async fn publish(
    recorder: &kube::runtime::events::Recorder,
    cluster: &ebisu_api::MySQLCluster,
    action: &str,
    note: Note,
) {
    // The recorder folds Events with the same reason about the same objects
    // into one series that keeps the first note; naming the object an Event
    // is about keeps, say, a fence of orders-1 apart from one of orders-2.
    let namespace = cluster.metadata.namespace.clone().unwrap_or_default();
    let event = Event {
        type_: if note.warning {
            EventType::Warning
        } else {
            EventType::Normal
        },
        reason: note.reason.clone(),
        note: Some(note.message),
        action: action.to_owned(),
        secondary: note.pod.as_deref().map(|pod| about::<Pod>(&namespace, pod)),
    };
    if let Err(error) = recorder.publish(&event, &cluster.object_ref(&())).await {
        warn!(%error, reason = note.reason, "failed to publish event");
    }
}

/// A reference to an object of the cluster's namespace, for an Event.
pub fn about<K: Resource<DynamicType = ()>>(namespace: &str, name: &str) -> ObjectReference {
    ObjectReference {
        api_version: Some(K::api_version(&()).into_owned()),
        kind: Some(K::kind(&()).into_owned()),
        namespace: Some(namespace.to_owned()),
        name: Some(name.to_owned()),
        ..ObjectReference::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn broken(pod: &str, error: &str) -> Problem {
        Problem::ReplicationBroken {
            pod: pod.to_owned(),
            error: error.to_owned(),
        }
    }

    #[test]
    fn a_problem_is_announced_once_while_it_lasts_even_if_its_message_changes() {
        let (notes, reported) = for_problems(&[], &[broken("db-1", "error 1")]);
        assert_eq!(notes.len(), 1);
        assert!(notes[0].warning);
        assert_eq!(notes[0].reason, "ReplicationBroken");
        assert_eq!(notes[0].pod.as_deref(), Some("db-1"));
        let (notes, again) = for_problems(&reported, &[broken("db-1", "error 2")]);
        assert!(notes.is_empty(), "{notes:?}");
        assert_eq!(again, reported);
    }

    #[test]
    fn a_problem_that_went_away_and_came_back_is_announced_again() {
        let (_, reported) = for_problems(&[], &[broken("db-1", "e")]);
        let (_, cleared) = for_problems(&reported, &[]);
        assert!(cleared.is_empty());
        let (notes, _) = for_problems(&cleared, &[broken("db-1", "e")]);
        assert_eq!(notes.len(), 1);
    }

    #[test]
    fn the_same_problem_on_another_pod_is_another_event() {
        let (_, reported) = for_problems(&[], &[broken("db-1", "e")]);
        let (notes, keys) = for_problems(&reported, &[broken("db-1", "e"), broken("db-2", "e")]);
        assert_eq!(notes.len(), 1);
        assert_eq!(notes[0].pod.as_deref(), Some("db-2"));
        assert_eq!(keys.len(), 2);
    }

    #[test]
    fn every_action_done_is_a_normal_event_and_every_failure_a_warning() {
        let outcome = Executed {
            done: vec![
                Action::Remember(Box::default()),
                Action::Fence {
                    pod: "db-1".to_owned(),
                    hand_over: false,
                },
            ],
            failed: vec![(
                Action::MakeWritable("db-0".to_owned()),
                ActionError::TimedOut {
                    pod: "db-0".to_owned(),
                    action: "make it writable",
                },
            )],
            complete: false,
        };
        let notes = for_outcome(&outcome);
        assert_eq!(notes.len(), 2, "bookkeeping makes no Event: {notes:?}");
        assert_eq!(notes[0].reason, "Fenced");
        assert!(!notes[0].warning);
        assert_eq!(notes[1].reason, "RepairFailed");
        assert!(notes[1].warning && notes[1].message.contains("made db-0 writable"));
    }

    #[test]
    fn a_refusal_is_announced_when_it_is_new() {
        assert!(for_refusal(None, Some("no")).is_some());
        assert!(for_refusal(Some("no"), Some("no")).is_none());
        assert!(for_refusal(Some("no"), None).is_none());
    }

    #[test]
    fn an_invalid_spec_is_announced_once_per_message() {
        let message = "failed to validate spec.replicas: too many";
        let note = for_invalid_spec(None, message).expect("new");
        assert!(note.warning && note.reason == "InvalidSpec");
        let reported = MySQLClusterStatus {
            conditions: vec![k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
                type_: crate::status::SPEC_VALID.to_owned(),
                status: "False".to_owned(),
                reason: "InvalidSpec".to_owned(),
                message: message.to_owned(),
                observed_generation: None,
                last_transition_time: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                    k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
                ),
            }],
            ..MySQLClusterStatus::default()
        };
        assert!(for_invalid_spec(Some(&reported), message).is_none());
        assert!(for_invalid_spec(Some(&reported), "another reason").is_some());
    }

    #[test]
    fn a_fenced_node_is_a_warning_naming_its_servers_and_an_unfenced_one_a_note() {
        let report = FencingReport {
            fenced_now: vec![crate::fencing::Fenced {
                node: "node-a1".to_owned(),
                instance: "i-0a1".to_owned(),
                pods: vec!["orders-0".to_owned()],
            }],
            unfenced_now: vec!["node-b1".to_owned()],
            ..FencingReport::default()
        };
        let notes = for_fencing(&report);
        assert_eq!(notes.len(), 2);
        assert!(notes[0].warning && notes[0].reason == "NodeFenced");
        assert!(
            notes[0]
                .message
                .starts_with("node node-a1 stopped answering with orders-0 on it: stopped its EC2 instance i-0a1 (forced)"),
            "{}",
            notes[0].message
        );
        assert_eq!(notes[0].pod.as_deref(), Some("orders-0"));
        assert!(!notes[1].warning && notes[1].reason == "NodeUnfenced");
    }
}
