//! Planned primary changes: when the primary's node is drained or cordoned,
//! its pod is deleted, or the user asks. The old primary answers, so it
//! hands over: fenced (read-only, sessions ended), the candidate waits
//! until it applied everything the old primary has, then it is promoted,
//! everyone is repointed and the labels move. Before `Promoting` is
//! recorded a failed switchover is undone; after it, never.

use ebisu_api::{
    InstanceRole, Operation, OperationKind, OperationStep, names::ANNOTATION_SWITCHOVER,
};

use super::{
    Action, Again, Completed, Decision, Input, Problem, SwitchoverRequest, elapsed_since, ordinal,
    repair, seconds, update,
};
use crate::model::ServerState;

/// Why the primary should move now, if it should.
/// The reason of a switchover away from an instance scaled away.
const SCALE_DOWN: &str = "ScaleDown";

fn trigger(input: &Input<'_>, primary: &ServerState) -> Option<&'static str> {
    if input.policy.switchover_request.is_some() {
        return Some("Requested");
    }
    if ordinal(&primary.pod) >= input.policy.instances {
        // Scaled below the primary (by the user, whatever the failover
        // mode): its pod is kept until it has moved.
        return Some(SCALE_DOWN);
    }
    if !input.policy.automatic() {
        return None;
    }
    if primary.terminating {
        return Some("PodDeleted");
    }
    if primary.node.as_ref().is_some_and(|node| node.draining) {
        return Some("NodeDrain");
    }
    update::primary_due(input, primary).then_some(update::REASON)
}

/// Starts a switchover when one is due; returns whether it started (the
/// rest of the pass is then the switchover's). A refused request is
/// consumed and remembered, and the cluster is repaired as usual.
pub(super) fn consider(input: &Input<'_>, primary: &ServerState, decision: &mut Decision) -> bool {
    let Some(reason) = trigger(input, primary) else {
        return false;
    };
    let requested = input.policy.switchover_request.as_ref();
    if input.others(&primary.pod).next().is_none() {
        if let Some(request) = requested {
            refuse(
                decision,
                request,
                "the cluster has a single instance: add replicas first",
            );
            return false;
        }
        decision.problems.push(Problem::SingleInstanceDisruption {
            pod: primary.pod.clone(),
            cause: if reason == "PodDeleted" {
                "its pod is being deleted".to_owned()
            } else {
                "its node is being drained".to_owned()
            },
        });
        return false;
    }
    if requested.is_none() && retry_later(input) {
        return false;
    }
    match choose(input, primary, requested) {
        Ok(candidate) => {
            start(input, primary, candidate, reason, decision);
            true
        }
        Err(why) => {
            if let Some(request) = requested {
                refuse(decision, request, &why);
                return false;
            }
            decision.problems.push(Problem::NoSwitchoverCandidate {
                pod: primary.pod.clone(),
                why,
            });
            false
        }
    }
}

/// A request that cannot be honoured: consumed, remembered for the
/// `Switching` condition, and nothing else changes.
fn refuse(decision: &mut Decision, request: &SwitchoverRequest, why: &str) {
    let target = match request {
        SwitchoverRequest::Any => "any replica".to_owned(),
        SwitchoverRequest::Pod(pod) => pod.clone(),
    };
    decision.memory.last_refusal = Some(format!("switchover to {target} refused: {why}"));
    decision.step(vec![Action::ConsumeAnnotation(ANNOTATION_SWITCHOVER)]);
    decision.remember();
}

/// After a switchover was undone, automatic triggers wait this long
/// before trying again, so a candidate that cannot catch up does not
/// block writes over and over.
const RETRY_AFTER_SECS: u64 = 30;

fn retry_later(input: &Input<'_>) -> bool {
    input
        .memory
        .undone_at
        .as_ref()
        .is_some_and(|at| elapsed_since(input, at) < seconds(RETRY_AFTER_SECS))
}

/// Why `server` cannot take over from `primary`, if it cannot.
fn unsuitable(
    input: &Input<'_>,
    server: &ServerState,
    primary: &ServerState,
    check_lag: bool,
) -> Option<String> {
    let pod = &server.pod;
    if !server.answered() {
        return Some(format!("{pod} does not answer"));
    }
    if server.terminating {
        return Some(format!("{pod} is being deleted"));
    }
    if !server.pod_ready {
        return Some(format!("{pod} is not ready"));
    }
    match &server.node {
        Some(node) if node.draining => {
            return Some(format!("{pod}'s node {} is being drained", node.name));
        }
        Some(node) if !node.ready => {
            return Some(format!("{pod}'s node {} is not ready", node.name));
        }
        Some(_) => {}
        None => return Some(format!("{pod} is not scheduled")),
    }
    if let Some(progress) = server.volume_initializing {
        return Some(format!(
            "{pod}'s volume is still loading its snapshot ({progress}% done)"
        ));
    }
    if let Some(problem) = repair::unfit_to_rejoin(server, primary) {
        return Some(match problem {
            Problem::ErrantTransactions { gtids, .. } => {
                format!("{pod} holds transactions the primary lacks ({gtids})")
            }
            _ => format!("{pod}'s copy diverged from the primary's"),
        });
    }
    let Some(replication) = &server.replication else {
        return Some(format!("{pod} does not replicate"));
    };
    if replication.source_host != primary.host {
        return Some(format!("{pod} replicates from another server"));
    }
    if let Some(error) = &replication.sql_error {
        return Some(format!("{pod}'s replication is broken: {error}"));
    }
    if !replication.io_running || !replication.sql_running {
        return Some(format!("{pod}'s replication is stopped"));
    }
    if ordinal(pod) >= input.policy.instances {
        return Some(format!(
            "{pod} is scaled away (spec.replicas is {})",
            input.policy.instances
        ));
    }
    if !check_lag {
        return None;
    }
    let max = input.policy.max_lag_for_promotion_secs;
    match replication.lag_seconds {
        Some(lag) if lag <= max => None,
        Some(lag) => Some(format!(
            "{pod} is {lag} s behind (spec.replication.maxLagForPromotionSeconds is {max})"
        )),
        None => Some(format!("{pod}'s lag is unknown")),
    }
}

/// The replica to hand over to: the requested one if it is suitable, else
/// the most advanced suitable one (least lag, then lowest ordinal).
fn choose<'a>(
    input: &Input<'a>,
    primary: &'a ServerState,
    requested: Option<&SwitchoverRequest>,
) -> Result<&'a ServerState, String> {
    if let Some(SwitchoverRequest::Pod(pod)) = requested {
        if *pod == primary.pod {
            return Err(format!("{pod} is already the primary"));
        }
        let server = input
            .server(pod)
            .ok_or_else(|| format!("{pod} is not an instance of this cluster"))?;
        return match unsuitable(input, server, primary, true) {
            None => Ok(server),
            Some(why) => Err(why),
        };
    }
    let mut reasons = Vec::new();
    let mut suitable: Vec<&ServerState> = Vec::new();
    for server in input.others(&primary.pod) {
        match unsuitable(input, server, primary, true) {
            None => suitable.push(server),
            Some(why) => reasons.push(why),
        }
    }
    suitable.sort_by_key(|s| {
        (
            s.replication
                .as_ref()
                .and_then(|r| r.lag_seconds)
                .unwrap_or(u64::MAX),
            ordinal(&s.pod),
        )
    });
    let ahead = suitable.iter().copied().find(|candidate| {
        suitable
            .iter()
            .all(|other| match (&candidate.gtid, &other.gtid) {
                (Some(mine), Some(theirs)) => mine.contains(theirs).unwrap_or(false),
                _ => false,
            })
    });
    ahead
        .or_else(|| suitable.first().copied())
        .ok_or_else(|| reasons.join("; "))
}

fn start(
    input: &Input<'_>,
    primary: &ServerState,
    candidate: &ServerState,
    reason: &str,
    decision: &mut Decision,
) {
    if input.policy.switchover_request.is_some() {
        decision.step(vec![Action::ConsumeAnnotation(ANNOTATION_SWITCHOVER)]);
    }
    let operation = Operation {
        kind: OperationKind::Switchover,
        from: primary.pod.clone(),
        to: Some(candidate.pod.clone()),
        reason: reason.to_owned(),
        step: OperationStep::Fencing,
        started_at: input.now_time(),
        writes_blocked_since: input.now_time(),
    };
    decision.memory.last_refusal = None;
    decision.memory.undone_at = None;
    hand_over(
        input,
        primary,
        candidate,
        operation,
        input.policy.catch_up_timeout_secs,
        decision,
    );
}

/// The steps from the fence on; each is safe to run again after a restart.
fn hand_over(
    input: &Input<'_>,
    old: &ServerState,
    candidate: &ServerState,
    mut operation: Operation,
    catch_up_secs: u64,
    decision: &mut Decision,
) {
    if operation.step < OperationStep::Promoting {
        decision.memory.operation = Some(operation.clone());
        decision.remember();
        decision.step(vec![Action::fence(&old.pod, true)]);
        decision.step(vec![Action::CatchUp {
            pod: candidate.pod.clone(),
            source: old.pod.clone(),
            timeout_secs: catch_up_secs.max(1),
        }]);
        operation.step = OperationStep::Promoting;
        decision.memory.operation = Some(operation.clone());
        decision.remember();
    }
    promote(input, Some(old), candidate, operation, None, decision);
}

/// Promotes `candidate` (which has everything), repoints every other
/// answering server at it, and moves the labels. Shared with failover.
pub(super) fn promote(
    input: &Input<'_>,
    old: Option<&ServerState>,
    candidate: &ServerState,
    mut operation: Operation,
    lease_after: Option<String>,
    decision: &mut Decision,
) {
    if candidate.replication.is_some() {
        decision.step(vec![Action::Promote(candidate.pod.clone())]);
    }
    // Replicas first, so the new primary's first commits find acknowledgers.
    let repoint: Vec<Action> = input
        .others(&candidate.pod)
        .filter(|s| s.answered() && !(s.seed_pending && s.replication.is_none()))
        .filter(|s| {
            // The lost old primary cannot be repointed; it rejoins when it returns.
            s.pod != operation.from || operation.kind == OperationKind::Switchover
        })
        .filter(|s| {
            s.replication
                .as_ref()
                .is_none_or(|r| r.source_host != candidate.host || !r.io_running || !r.sql_running)
        })
        .map(|s| Action::Replicate {
            pod: s.pod.clone(),
            source_host: candidate.host.clone(),
        })
        .collect();
    decision.step(repoint);
    if input.policy.semi_sync.is_some() && !candidate.semi_sync_source {
        decision.step(vec![Action::EnableSemiSync {
            pod: candidate.pod.clone(),
            as_primary: true,
        }]);
    }
    if input
        .lease
        .is_none_or(|l| l.holder.as_deref() != Some(candidate.pod.as_str()))
    {
        // Named in the Lease before it may take writes (in a failover only
        // if nobody renewed the Lease since it was read): a failure leaves
        // the change undoable, as the old holder is alive after all.
        decision.step(vec![Action::HoldLease {
            pod: candidate.pod.clone(),
            after: lease_after,
        }]);
    }
    if candidate.read_only {
        // From here on it may take writes: never undone.
        if operation.step < OperationStep::MakingWritable {
            operation.step = OperationStep::MakingWritable;
            decision.memory.operation = Some(operation.clone());
            decision.remember();
        }
        decision.step(vec![Action::MakeWritable(candidate.pod.clone())]);
    }
    // The old primary loses its label before the new one gets it: never two.
    if let Some(old) = old {
        let relabel = match operation.kind {
            OperationKind::Switchover if old.role_label != Some(InstanceRole::Replica) => {
                Some(Action::LabelReplica(old.pod.clone()))
            }
            OperationKind::Failover if old.role_label.is_some() => {
                Some(Action::Unlabel(old.pod.clone()))
            }
            _ => None,
        };
        decision.step(relabel.into_iter().collect());
    }
    let mut label = Vec::new();
    if candidate.role_label != Some(InstanceRole::Primary) {
        label.push(Action::LabelPrimary(candidate.pod.clone()));
    }
    if candidate.reads_label {
        label.push(Action::LabelReads {
            pod: candidate.pod.clone(),
            serve: false,
        });
    }
    decision.step(label);
    decision.primary = Some(candidate.pod.clone());
    decision.memory.operation = None;
    decision.memory.primary_silent_since = None;
    decision.completed = Some(Completed {
        to: candidate.pod.clone(),
        operation,
    });
    decision.again = Again::Later;
}

/// Carries on with a switchover a previous pass (or operator) started.
pub(super) fn resume(input: &Input<'_>, operation: &Operation, decision: &mut Decision) {
    let old = input.server(&operation.from);
    let candidate = operation.to.as_deref().and_then(|pod| input.server(pod));
    if operation.step >= OperationStep::MakingWritable {
        match candidate.filter(|c| c.answered()) {
            Some(candidate) => promote(input, old, candidate, operation.clone(), None, decision),
            None => {
                // It may have taken writes: it is the primary now, and lost;
                // the failover rules take it from here (the old primary
                // stays fenced).
                decision.memory.operation = None;
                decision.memory.primary.clone_from(&operation.to);
                decision.memory.primary_silent_since = Some(input.now_time());
                decision.remember();
                decision.sooner(Again::Now);
            }
        }
        return;
    }
    let Some(candidate) = candidate.filter(|c| c.answered()) else {
        // Never made writable, so the old primary still has everything.
        let why = if candidate.is_some() {
            "the candidate stopped answering"
        } else {
            "the candidate is gone"
        };
        abandon(input, operation, old, why, decision);
        return;
    };
    if operation.step >= OperationStep::Promoting {
        promote(input, old, candidate, operation.clone(), None, decision);
        return;
    }
    let waited = elapsed_since(input, &operation.started_at);
    let budget = seconds(input.policy.catch_up_timeout_secs);
    let Some(old) = old.filter(|s| s.answered()) else {
        // The old primary went silent mid-handover: it is fenced and its
        // replicas are intact, so the failover rules take it from here.
        decision.memory.operation = None;
        decision.memory.last_refusal = Some(format!(
            "switchover from {} to {} stopped: {} stopped answering",
            operation.from, candidate.pod, operation.from
        ));
        decision.remember();
        decision.sooner(Again::Now);
        return;
    };
    if waited >= budget {
        abandon(
            input,
            operation,
            Some(old),
            &format!(
                "{} did not apply everything {} had within {} s",
                candidate.pod, old.pod, input.policy.catch_up_timeout_secs
            ),
            decision,
        );
        return;
    }
    if let Some(why) = unsuitable(input, candidate, old, false) {
        abandon(input, operation, Some(old), &why, decision);
        return;
    }
    let left = u64::try_from((budget - waited).as_secs()).unwrap_or(1);
    hand_over(input, old, candidate, operation.clone(), left, decision);
}

/// Gives up a switchover that had not promoted anyone: the old primary,
/// still labelled primary, takes writes again.
fn abandon(
    input: &Input<'_>,
    operation: &Operation,
    old: Option<&ServerState>,
    why: &str,
    decision: &mut Decision,
) {
    decision.memory.operation = None;
    decision.memory.undone_at = Some(input.now_time());
    decision.memory.last_refusal = Some(format!(
        "switchover from {} to {} undone: {why}",
        operation.from,
        operation.to.as_deref().unwrap_or("?")
    ));
    decision.remember();
    if let Some(old) = old.filter(|s| s.answered() && s.read_only) {
        decision.make_writable(input, &old.pod, None);
    }
    decision.sooner(Again::Now);
}
