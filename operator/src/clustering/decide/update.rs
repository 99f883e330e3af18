//! Rolling updates: pods made from an older StatefulSet revision (an old
//! image, my.cnf or pod template) are restarted one at a time, replicas
//! first, each only while every server serves and every replica is caught
//! up; then the primary hands over to an updated replica (a switchover with
//! reason `RollingUpdate`) and is restarted last, as a replica. Nothing is
//! restarted onto an older release series (see `version`), nor while
//! another cluster's rolling update has the turn (see
//! `reconcile::rollout_turn`).

use ebisu_api::UpdateStrategy;

use super::{Action, Again, Decision, Input, Problem, Rollout, ordinal, seconds, version};
use crate::model::ServerState;

/// The switchover reason of a rolling update.
pub(super) const REASON: &str = "RollingUpdate";

/// How soon to look again after a restart was asked for.
const AFTER_RESTART_SECS: u64 = 2;

/// Why no pod may be restarted now, if none may: every server must serve
/// on a healthy node and every replica must be caught up with the primary.
fn hold(input: &Input<'_>, primary: &ServerState) -> Option<String> {
    for server in input.servers {
        let pod = &server.pod;
        if server.terminating {
            return Some(format!("{pod} is restarting"));
        }
        if !server.pod_ready || !server.answered() {
            return Some(format!("waiting for {pod} to serve"));
        }
        match &server.node {
            Some(node) if node.draining || !node.ready => {
                return Some(format!(
                    "{pod}'s node {} is being drained or is not ready",
                    node.name
                ));
            }
            Some(_) => {}
            None => return Some(format!("{pod} is not scheduled")),
        }
        if server.upgrade_error.is_some() {
            return Some(format!("{pod}'s upgrade step failed"));
        }
        if server.pod == primary.pod {
            continue;
        }
        let max_lag = input.policy.max_lag_for_promotion_secs;
        let caught_up = server.replication.as_ref().is_some_and(|r| {
            r.source_host == primary.host
                && r.io_running
                && r.sql_running
                && r.sql_error.is_none()
                && r.lag_seconds.is_some_and(|lag| lag <= max_lag)
        });
        if !caught_up {
            return Some(format!(
                "waiting for {pod} to catch up with {}",
                primary.pod
            ));
        }
    }
    None
}

/// The primary is the last pod on an old spec and may hand over now.
pub(super) fn primary_due(input: &Input<'_>, primary: &ServerState) -> bool {
    input.policy.update == UpdateStrategy::RollingUpdate
        && input.policy.automatic()
        && primary.outdated
        && input.others(&primary.pod).next().is_some()
        && input.others(&primary.pod).all(|s| !s.outdated)
        && input.rollout_turn.is_none()
        && hold(input, primary).is_none()
        && version::refusal(input, primary).is_none()
}

/// Restarts the next replica on an old spec when the cluster is healthy
/// and nothing else is being done; says why not otherwise.
pub(super) fn roll(input: &Input<'_>, primary: &ServerState, decision: &mut Decision) {
    let outdated: Vec<&ServerState> = input.servers.iter().filter(|s| s.outdated).collect();
    if outdated.is_empty() {
        decision.rollout = Rollout::UpToDate;
        return;
    }
    if input.policy.update == UpdateStrategy::Manual {
        decision.rollout = Rollout::Manual;
        return;
    }
    if let Some(why) = version::refusal(input, primary) {
        decision
            .problems
            .push(Problem::DowngradeRefused(why.clone()));
        decision.rollout = Rollout::Refused(why);
        return;
    }
    if let Some(other) = input.rollout_turn {
        decision.rollout = Rollout::Waiting(format!(
            "{other} is rolling out first: clusters roll one at a time"
        ));
        return;
    }
    if let Some(why) = hold(input, primary) {
        decision.rollout = Rollout::Waiting(why);
        return;
    }
    if !decision.is_settled() {
        decision.rollout = Rollout::Waiting(match decision.problems.first() {
            Some(problem) => format!("the cluster needs attention: {}", problem.message()),
            None => "the cluster is being repaired".to_owned(),
        });
        return;
    }
    // Highest ordinal first, as a StatefulSet rolls.
    let next = outdated
        .iter()
        .filter(|s| s.pod != primary.pod)
        .max_by_key(|s| ordinal(&s.pod));
    if let Some(replica) = next {
        decision.step(vec![Action::Restart(replica.pod.clone())]);
        decision.rollout = Rollout::Restarting(replica.pod.clone());
        decision.sooner(Again::After(seconds(AFTER_RESTART_SECS)));
        return;
    }
    let pod = &primary.pod;
    decision.rollout = Rollout::Waiting(if input.others(pod).next().is_none() {
        format!(
            "{pod} is the only instance: delete its pod to update it (writes stop while it \
             restarts), or add a replica first"
        )
    } else if !input.policy.automatic() {
        format!(
            "spec.replication.failover is Manual: switch over (annotate the MySQLCluster \
             with ebisu.dev/switchover=any) and {pod} is then restarted as a replica"
        )
    } else {
        format!("no updated replica can take over from {pod} yet")
    });
}
