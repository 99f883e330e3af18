//! Unplanned primary changes: the primary stopped answering the operator.
//! It counts as lost only when more than one witness says so: the
//! operator has not reached it for `failoverAfterSeconds`, no replica
//! still hears it (its agent times what the receiver got from the source),
//! and the primary Lease shows that its agent has not renewed it for the
//! Lease's duration and a margin, so the agent has fenced it (or it is
//! frozen or gone). While a replica hears it, it is alive: a
//! `PrimaryUnreachable` problem, and nothing moves. Then, only when no
//! acknowledged write can be lost (semi-sync was waiting for
//! acknowledgements at the last look, and too few replicas are silent for
//! any of them to hold the only copy, checked again when the candidate is
//! chosen), every answering replica's receiver is stopped (already a third
//! of the way into the wait, once none hears the primary) so the old
//! primary can be acknowledged nothing more; then the replica holding what
//! every other one received applies its relay log, is named in the Lease
//! (only if nobody renewed it meanwhile) and is promoted. Otherwise the
//! cluster is Degraded with `FailoverBlocked`, until the primary returns or
//! the user forces it.

use ebisu_api::{Operation, OperationKind, OperationStep, names::ANNOTATION_FORCE_FAILOVER};

use super::{
    Action, Again, BlockedWhy, Decision, HEARD_WITHIN_MS, Input, LOOK_AGAIN_MS, Problem,
    elapsed_since, holdings, may_hold_data, ordinal, seconds, switchover,
};

use crate::model::ServerState;

/// The reason of a failover the user forced.
const FORCED: &str = "Forced";

/// The primary is silent: wait, refuse, or start a failover.
pub(super) fn consider(input: &Input<'_>, primary: &ServerState, decision: &mut Decision) {
    let since = match (&input.memory.primary_silent_since, input.probe_silent_since) {
        (Some(remembered), Some(probed)) => remembered.0.min(probed),
        (Some(remembered), None) => remembered.0,
        (None, Some(probed)) => probed,
        (None, None) => input.now,
    };
    let since = k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(since);
    decision.memory.primary_silent_since = Some(since.clone());
    // Whatever happens next, no other server may take writes.
    decision.step(super::fence_writable_others(input, &primary.pod));
    if population(input, &primary.pod).is_empty() {
        // A single instance: nobody to fail over to; its pod's readiness says
        // it is down, and a disruption says why.
        super::refuse_force(input, decision, "the cluster has a single instance");
        let draining = primary.node.as_ref().is_some_and(|n| n.draining);
        if primary.terminating || draining {
            decision.problems.push(Problem::SingleInstanceDisruption {
                pod: primary.pod.clone(),
                cause: if primary.terminating {
                    "its pod is being deleted".to_owned()
                } else {
                    "its node is being drained".to_owned()
                },
            });
        }
        return;
    }

    let forced = input.policy.force_failover.as_deref() == Some(primary.pod.as_str());
    if !input.policy.automatic() && !forced {
        decision.problems.push(Problem::PrimaryUnreachable {
            pod: primary.pod.clone(),
            heard_by: Vec::new(),
        });
        return;
    }
    let heard_by = hearing(input, primary);
    let silent_for = elapsed_since(input, &since);
    let debounce = seconds(input.policy.failover_after_secs);
    if silent_for < debounce && !forced {
        // The normal first seconds of an outage: look again soon, say nothing
        // yet. A third of the way in, once no replica hears the primary,
        // the receivers are stopped already: a receiver blocked on a dead
        // connection may take seconds to stop, and the failover must not
        // wait for that once it is due. If the primary answers again,
        // repair restarts them; its commits only waited for
        // acknowledgements meanwhile.
        if silent_for >= debounce / 3 && input.policy.semi_sync.is_some() && heard_by.is_empty() {
            decision.step(receivers_to_stop(input, primary));
        }
        let left = (debounce - silent_for).min(k8s_openapi::jiff::SignedDuration::from_millis(
            LOOK_AGAIN_MS,
        ));
        decision.sooner(Again::After(left));
        return;
    }
    if !forced && !heard_by.is_empty() {
        // Replicas hear it: it is alive and only the operator is cut off.
        // Nothing moves; the receivers keep running.
        decision.problems.push(Problem::PrimaryUnreachable {
            pod: primary.pod.clone(),
            heard_by,
        });
        decision.sooner(Again::After(seconds(1)));
        return;
    }
    if !forced && let Some(why) = blocked(input, primary) {
        decision.problems.push(Problem::FailoverBlocked {
            pod: primary.pod.clone(),
            why,
        });
        decision.sooner(Again::After(seconds(2)));
        return;
    }
    if let Some(left) = not_yet_fenced(input, &primary.pod) {
        // Its agent may still renew the Lease, and has not given up on it
        // yet: wait until it must have fenced its server.
        decision.step(receivers_to_stop(input, primary));
        decision.sooner(Again::After(left.min(
            k8s_openapi::jiff::SignedDuration::from_millis(LOOK_AGAIN_MS),
        )));
        return;
    }
    let operation = Operation {
        kind: OperationKind::Failover,
        from: primary.pod.clone(),
        to: None,
        reason: if forced { FORCED } else { "PrimaryLost" }.to_owned(),
        step: OperationStep::StoppingReceivers,
        started_at: input.now_time(),
        writes_blocked_since: since,
    };
    if forced {
        decision.step(vec![Action::ConsumeAnnotation(ANNOTATION_FORCE_FAILOVER)]);
    }
    decision.memory.operation = Some(operation);
    decision.remember();
    stop_receivers(input, primary, decision);
}

/// The replicas that still hear `primary` (the second witness).
fn hearing(input: &Input<'_>, primary: &ServerState) -> Vec<String> {
    input
        .others(&primary.pod)
        .filter(|s| s.answered() && s.hears(primary, HEARD_WITHIN_MS))
        .map(|s| s.pod.clone())
        .collect()
}

/// How long until `pod`'s agent must have fenced it, when it may not yet
/// have: it holds the Lease and renewed it too recently. An unreadable
/// Lease proves nothing: wait a look.
fn not_yet_fenced(input: &Input<'_>, pod: &str) -> Option<k8s_openapi::jiff::SignedDuration> {
    match input.lease {
        Some(lease) => lease.until_fenced(pod),
        None => Some(k8s_openapi::jiff::SignedDuration::from_millis(
            LOOK_AGAIN_MS,
        )),
    }
}

/// Replicas that count for the proof: every other pod except fresh copies
/// that never replicated (they cannot have acknowledged anything): one
/// whose agent applies its copy's position, or one still being seeded in
/// its init container whose server never ran on its volume.
fn population<'a>(input: &Input<'a>, primary: &'a str) -> Vec<&'a ServerState> {
    input
        .others(primary)
        .filter(|s| !(s.answered() && s.seed_pending && s.replication.is_none()))
        .filter(|s| may_hold_data(input, s))
        .collect()
}

/// Why no failover may happen, if none may.
fn blocked(input: &Input<'_>, primary: &ServerState) -> Option<BlockedWhy> {
    if input.policy.semi_sync.is_none() {
        return Some(BlockedWhy::SemiSyncOff);
    }
    if input.memory.semi_sync_active != Some(true) {
        return Some(BlockedWhy::SemiSyncInactive);
    }
    too_few(input, primary)
}

/// Too many replicas are silent for the answering ones to hold every
/// acknowledged write, if so.
fn too_few(input: &Input<'_>, primary: &ServerState) -> Option<BlockedWhy> {
    let semi_sync = input.policy.semi_sync?;
    // Each acknowledged commit is on `wait` replicas: with fewer than
    // `wait` silent, at least one answering replica has it.
    let silent: Vec<String> = population(input, &primary.pod)
        .into_iter()
        .filter(|s| !s.answered())
        .map(|s| s.pod.clone())
        .collect();
    // A raised wait count counts once the primary used it (remembered at
    // its last answer); a lowered one at once.
    let wait = semi_sync
        .wait_for_replicas
        .min(input.memory.semi_sync_wait.unwrap_or(u32::MAX))
        .max(1);
    if u32::try_from(silent.len()).unwrap_or(u32::MAX) >= wait {
        return Some(BlockedWhy::TooFewReplicas {
            silent,
            wait_for_replicas: wait,
        });
    }
    None
}

fn receivers_to_stop(input: &Input<'_>, primary: &ServerState) -> Vec<Action> {
    population(input, &primary.pod)
        .into_iter()
        .filter(|s| s.answered() && s.replication.as_ref().is_some_and(|r| r.io_running))
        .map(|s| Action::StopReceiver(s.pod.clone()))
        .collect()
}

fn stop_receivers(input: &Input<'_>, primary: &ServerState, decision: &mut Decision) {
    decision.step(receivers_to_stop(input, primary));
    decision.sooner(Again::Now);
}

/// Carries on with a failover a previous pass (or operator) started.
pub(super) fn resume(input: &Input<'_>, operation: &Operation, decision: &mut Decision) {
    let old = input.server(&operation.from);
    let candidate = operation
        .to
        .as_deref()
        .and_then(|pod| input.server(pod))
        .filter(|c| c.answered());
    if operation.step >= OperationStep::MakingWritable {
        let Some(candidate) = candidate else {
            // It may have taken writes: it is the primary now, and lost;
            // the failover rules take it from here.
            decision.memory.operation = None;
            decision.memory.primary.clone_from(&operation.to);
            decision.memory.primary_silent_since = Some(input.now_time());
            decision.remember();
            decision.sooner(Again::Now);
            return;
        };
        apply_and_promote(input, old, candidate, operation.clone(), decision);
        return;
    }
    let old_alive = old.is_some_and(ServerState::answered)
        || input
            .lease
            .is_some_and(|l| l.may_still_be_unfenced(&operation.from));
    if old_alive {
        // Back (or renewing its Lease) before anyone was made writable: it
        // stays the primary, its replicas reconnect, and nothing it
        // acknowledged was lost.
        decision.memory.operation = None;
        decision.memory.primary_silent_since = None;
        decision.remember();
        decision.sooner(Again::Now);
        return;
    }
    if operation.step >= OperationStep::Promoting {
        let Some(candidate) = candidate else {
            // Lost before it was made writable: choose again, counting it
            // as silent.
            let mut operation = operation.clone();
            operation.step = OperationStep::StoppingReceivers;
            operation.to = None;
            decision.memory.operation = Some(operation);
            decision.remember();
            decision.sooner(Again::Now);
            return;
        };
        apply_and_promote(input, old, candidate, operation.clone(), decision);
        return;
    }
    let Some(old) = old else {
        decision.memory.operation = None;
        decision.remember();
        return;
    };
    if input
        .others(&old.pod)
        .any(|s| s.answered() && s.replication.as_ref().is_some_and(|r| r.io_running))
    {
        stop_receivers(input, old, decision);
        return;
    }
    // A MariaDB replica restarted since it received has a relay log only
    // its agent can apply (starting the applier would discard it): nobody
    // is chosen until it has, within a second of the server's start (M6).
    if population(input, &old.pod)
        .into_iter()
        .any(|s| s.answered() && s.relay_log_at_risk())
    {
        decision.sooner(Again::After(
            k8s_openapi::jiff::SignedDuration::from_millis(LOOK_AGAIN_MS),
        ));
        return;
    }
    // A replica restarted since it received has its applier stopped (the
    // servers start with replication off): it may hold what nobody else
    // does, so it applies its relay log before anyone is chosen (M6).
    let appliers: Vec<Action> = population(input, &old.pod)
        .into_iter()
        .filter(|s| {
            s.answered()
                && s.replication
                    .as_ref()
                    .is_some_and(|r| !r.sql_running && r.sql_error.is_none())
        })
        .map(|s| Action::StartApplier(s.pod.clone()))
        .collect();
    if !appliers.is_empty() {
        decision.step(appliers);
        decision.sooner(Again::Now);
        return;
    }
    // The proof again, now that the candidate is chosen: a replica that
    // went silent since the failover started may hold the only copy.
    if operation.reason != FORCED
        && let Some(why @ BlockedWhy::TooFewReplicas { .. }) = too_few(input, old)
    {
        decision.problems.push(Problem::FailoverBlocked {
            pod: old.pod.clone(),
            why,
        });
        decision.sooner(Again::After(seconds(2)));
        return;
    }
    match choose(input, &old.pod) {
        Some(candidate) => {
            let mut operation = operation.clone();
            operation.step = OperationStep::Promoting;
            operation.to = Some(candidate.pod.clone());
            decision.memory.operation = Some(operation.clone());
            decision.remember();
            apply_and_promote(input, Some(old), candidate, operation, decision);
        }
        None => {
            // Nobody can take over without losing what another replica has:
            // let the replicas receive again and wait for the primary.
            decision.memory.operation = None;
            decision.remember();
            decision.problems.push(Problem::FailoverBlocked {
                pod: old.pod.clone(),
                why: BlockedWhy::NoCompleteCandidate,
            });
            decision.sooner(Again::After(seconds(2)));
        }
    }
}

/// The answering replica that holds everything every other answering
/// replica holds (executed or received), can apply it, and is best placed;
/// one whose volume still loads its snapshot only when no other is
/// complete (slow reads for a while beat losing acknowledged writes or
/// having no primary until the load ends).
fn choose<'a>(input: &Input<'a>, old: &'a str) -> Option<&'a ServerState> {
    let answering: Vec<&ServerState> = population(input, old)
        .into_iter()
        .filter(|s| s.answered())
        .collect();
    let mut complete: Vec<&ServerState> = answering
        .iter()
        .copied()
        .filter(|candidate| {
            let applies = candidate
                .replication
                .as_ref()
                .is_some_and(|r| r.sql_running && r.sql_error.is_none());
            let Some(mine) = holdings(candidate) else {
                return false;
            };
            applies
                && answering.iter().all(|other| {
                    holdings(other).is_some_and(|theirs| mine.contains(&theirs).unwrap_or(false))
                })
        })
        .collect();
    complete.sort_by_key(|s| {
        (
            !s.placeable(),
            s.volume_initializing.is_some(),
            ordinal(&s.pod),
        )
    });
    complete.first().copied()
}

fn apply_and_promote(
    input: &Input<'_>,
    old: Option<&ServerState>,
    candidate: &ServerState,
    operation: Operation,
    decision: &mut Decision,
) {
    if candidate.replication.is_some()
        && let Some(gtid) = holdings(candidate)
    {
        decision.step(vec![Action::WaitApplied {
            pod: candidate.pod.clone(),
            gtid,
            timeout_secs: input.policy.apply_timeout_secs,
        }]);
    }
    // Named in the Lease only if nobody renewed it since it was read: a
    // renewal would mean the old primary's agent is alive after all.
    let after = input.lease.map(|l| l.version.clone());
    switchover::promote(input, old, candidate, operation, after, decision);
}
