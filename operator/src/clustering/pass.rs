//! One clustering pass of a reconcile: observe every server, decide, carry
//! the steps out, announce what happened, and go round again at once while
//! a decision says its steps changed what the next one depends on (a
//! switchover or failover moving on), a few rounds at most. The memory a
//! round leaves is what the last step that ran made durable.

use std::collections::BTreeMap;

use ebisu_api::{
    ClusteringMemory, MySQLCluster, OperationKind, RoleChange,
    names::{ANNOTATION_FORCE_FAILOVER, ANNOTATION_SWITCHOVER, SWITCHOVER_ANY},
};
use k8s_openapi::{apimachinery::pkg::apis::meta::v1::Time, jiff::Timestamp};
use tracing::{info, warn};

use super::{
    Action, Again, Decision, Input, Policy, Problem, SemiSyncPolicy, SwitchoverRequest, act,
    decide::decide,
    execute::{Outcome, execute},
    observe::{self, Observed},
    state::Answer,
};
use crate::{
    controller::Context,
    dereference::{self, Accounts},
    events,
    validate::ValidatedCluster,
};

/// Rounds of observe-decide-act within one reconcile, at most.
const MAX_ROUNDS: usize = 6;

/// What a pass leaves for status and the next reconcile.
#[derive(Debug, Default)]
pub struct PassResult {
    /// The primary the last decision settled on.
    pub primary: Option<String>,
    /// The servers as last observed.
    pub servers: Vec<Observed>,
    /// What the operator will not repair by itself.
    pub problems: Vec<Problem>,
    /// Transactions each errant server holds that the primary lacks.
    pub errant: BTreeMap<String, String>,
    /// What to remember.
    pub memory: ClusteringMemory,
    /// Changes of primary completed in this pass.
    pub completed: Vec<(OperationKind, RoleChange)>,
    /// Something was done, or is under way.
    pub acted: bool,
    /// When to look again.
    pub again: Option<Again>,
    /// Where a rolling update stands, when the servers were looked at.
    pub rollout: Option<super::Rollout>,
}

/// The policy the spec and the cluster's annotations ask for.
pub fn policy(cluster: &MySQLCluster, validated: &ValidatedCluster) -> Policy {
    let annotation = |key: &str| {
        cluster
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(key))
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    };
    let failover = validated.failover;
    Policy {
        semi_sync: validated.semi_sync.map(|s| SemiSyncPolicy {
            wait_for_replicas: s.wait_for_replicas,
            timeout_ms: s.timeout_ms,
        }),
        mode: failover.mode,
        failover_after_secs: failover.after_seconds,
        max_lag_for_promotion_secs: failover.max_lag_for_promotion_seconds,
        max_lag_for_reads_secs: failover.max_lag_for_reads_seconds,
        catch_up_timeout_secs: failover.max_lag_for_promotion_seconds + 10,
        apply_timeout_secs: 60,
        switchover_request: annotation(ANNOTATION_SWITCHOVER).map(|v| {
            if v == SWITCHOVER_ANY {
                SwitchoverRequest::Any
            } else {
                SwitchoverRequest::Pod(v)
            }
        }),
        force_failover: annotation(ANNOTATION_FORCE_FAILOVER),
        update: cluster.spec.update_strategy,
        online_config: crate::online_config::online(&validated.mysql_config),
        image: validated.image.clone(),
    }
}

/// The StatefulSet's update revision (the pod template of the current spec).
pub fn update_revision(observed: &dereference::Observed) -> Option<&str> {
    observed
        .stateful_set
        .as_ref()?
        .status
        .as_ref()?
        .update_revision
        .as_deref()
}

/// The StatefulSet controller has seen the pod template last applied, so
/// its update revision is the current spec's. Until then a pod may look
/// outdated against a revision the spec has just moved away from (a change
/// undone within seconds would restart a pod for nothing).
pub fn template_observed(observed: &dereference::Observed) -> bool {
    observed.stateful_set.as_ref().is_some_and(|sts| {
        let seen = sts.status.as_ref().and_then(|s| s.observed_generation);
        matches!((seen, sts.metadata.generation), (Some(seen), Some(current)) if seen >= current)
    })
}

/// Runs the clustering pass for a cluster whose children were applied.
pub async fn run(
    ctx: &Context,
    cluster: &MySQLCluster,
    validated: &ValidatedCluster,
    observed: &dereference::Observed,
    accounts: &Accounts,
    probe_silent_since: Option<Timestamp>,
    initialised: bool,
) -> PassResult {
    let policy = policy(cluster, validated);
    let mut memory = cluster
        .status
        .as_ref()
        .map(|s| s.clustering.clone())
        .unwrap_or_default();
    let refusal_before = memory.last_refusal.clone();
    let mut result = PassResult::default();
    let mut silent: Vec<String> = Vec::new();
    for round in 0..MAX_ROUNDS {
        let mut servers = observe::servers(
            &validated.name,
            &validated.namespace,
            &observed.pods,
            &observed.nodes,
            &accounts.operator,
            &ctx.agents,
            &silent,
        )
        .await;
        let template_observed = template_observed(observed);
        for server in &mut servers {
            server.state.outdated = template_observed
                && observed
                    .pods
                    .iter()
                    .find(|p| p.metadata.name.as_deref() == Some(server.state.pod.as_str()))
                    .is_some_and(|pod| observe::outdated(pod, update_revision(observed)));
        }
        let states: Vec<_> = servers.iter().map(|s| s.state.clone()).collect();
        tracing::debug!(round, silent = ?states.iter().filter(|s| !s.answered()).map(|s| &s.pod).collect::<Vec<_>>(), "observed");
        let decision = decide(&Input {
            servers: &states,
            policy: &policy,
            memory: &memory,
            probe_silent_since,
            new_cluster: !initialised,
            now: Timestamp::now(),
        });
        if memory.operation.is_none()
            && let Some(operation) = &decision.memory.operation
        {
            let blocked_ms = Timestamp::now()
                .duration_since(operation.writes_blocked_since.0)
                .as_millis();
            info!(kind = ?operation.kind, from = %operation.from, reason = %operation.reason, blocked_ms, "starting a change of primary");
        }
        let target = act::Target {
            client: &ctx.client,
            cluster,
            namespace: &validated.namespace,
            servers: &servers,
            account: &accounts.operator,
            replication: &accounts.replication,
            semi_sync: validated.semi_sync.map(|s| ebisu_mysql::SemiSync {
                enabled: true,
                wait_for_replicas: s.wait_for_replicas,
                timeout_ms: s.timeout_ms,
            }),
            keep_sessions: &accounts.service_users,
            clone_token: accounts.clone_token.as_deref(),
            agents: &ctx.agents,
        };
        let outcome = execute(&decision.steps, &target).await;
        // A budget refusing an eviction now is the rolling update's to
        // report in its condition (budgets lag pods becoming ready, so it
        // passes), not a failure to log on every pass.
        let evictions_refused: Vec<&act::Error> = outcome
            .failed
            .iter()
            .map(|(_, error)| error)
            .filter(|e| e.is_eviction_refused())
            .collect();
        for (action, error) in &outcome.failed {
            if !error.is_eviction_refused() {
                warn!(?action, %error, "clustering step failed");
            }
        }
        for note in events::for_outcome(&outcome) {
            info!(reason = note.reason, message = %note.message, "clustering");
            events::publish(&ctx.recorder, cluster, "Cluster", note).await;
        }
        memory = kept_memory(&memory, &decision, &outcome);
        if outcome.complete
            && let Some(completed) = &decision.completed
        {
            let operation = &completed.operation;
            let blocked = Timestamp::now().duration_since(operation.writes_blocked_since.0);
            let change = RoleChange {
                from: operation.from.clone(),
                to: completed.to.clone(),
                reason: operation.reason.clone(),
                started_at: operation.started_at.clone(),
                writes_blocked_ms: Some(i64::try_from(blocked.as_millis()).unwrap_or(i64::MAX)),
            };
            info!(kind = ?operation.kind, from = %change.from, to = %change.to, ms = ?change.writes_blocked_ms, "primary moved");
            events::publish(
                &ctx.recorder,
                cluster,
                "Cluster",
                events::for_role_change(operation.kind, &change),
            )
            .await;
            result.completed.push((operation.kind, change));
        }
        result.acted |= !outcome.done.is_empty() || !outcome.failed.is_empty();
        silent = servers
            .iter()
            .filter(|s| s.state.answer == Answer::Silent)
            .map(|s| s.state.pod.clone())
            .collect();
        result.errant = decision
            .problems
            .iter()
            .filter_map(|p| match p {
                Problem::ErrantTransactions { pod, gtids } => Some((pod.clone(), gtids.clone())),
                _ => None,
            })
            .collect();
        result.primary.clone_from(&decision.primary);
        result.problems = decision.problems;
        result.rollout = Some(decision.rollout);
        match evictions_refused.first() {
            Some(act::Error::OverlappingBudgets { pod }) => {
                let problem = Problem::OverlappingBudgets(pod.clone());
                result.rollout = Some(super::Rollout::Waiting(problem.message()));
                result.problems.push(problem);
            }
            Some(act::Error::DisruptionRefused { pod }) => {
                result.rollout = Some(super::Rollout::Waiting(format!(
                    "a PodDisruptionBudget allows no disruption of {pod} now"
                )));
            }
            _ => {}
        }
        result.servers = servers;
        let again = if outcome.complete {
            decision.again
        } else if evictions_refused
            .iter()
            .any(|e| matches!(e, act::Error::OverlappingBudgets { .. }))
        {
            // Only the user can remove the other budget.
            Again::After(k8s_openapi::jiff::SignedDuration::from_secs(10))
        } else {
            // A failed step: look again soon, with everything re-read.
            Again::After(k8s_openapi::jiff::SignedDuration::from_secs(2))
        };
        if again == Again::Now && round + 1 < MAX_ROUNDS {
            continue;
        }
        result.again = Some(again);
        break;
    }
    if let Some(note) =
        events::for_refusal(refusal_before.as_deref(), memory.last_refusal.as_deref())
    {
        warn!(message = %note.message, "switchover refused");
        events::publish(&ctx.recorder, cluster, "Switchover", note).await;
    }
    result.memory = memory;
    result
}

/// What is durable after `outcome`: everything the decision meant to
/// remember when every step ran; otherwise the last memory a step wrote,
/// or, when none did, the decision's bookkeeping without its change of
/// operation (that was never recorded).
fn kept_memory(
    before: &ClusteringMemory,
    decision: &Decision,
    outcome: &Outcome,
) -> ClusteringMemory {
    if outcome.complete {
        return decision.memory.clone();
    }
    let written = outcome.done.iter().rev().find_map(|action| match action {
        Action::Remember(memory) => Some(memory.as_ref().clone()),
        _ => None,
    });
    written.unwrap_or_else(|| ClusteringMemory {
        operation: before.operation.clone(),
        ..decision.memory.clone()
    })
}

/// `Time` for now, for callers that stamp status.
pub fn now() -> Time {
    Time(Timestamp::now())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ebisu_api::{Operation, OperationStep};

    fn operation(step: OperationStep) -> Operation {
        Operation {
            kind: OperationKind::Switchover,
            from: "db-0".to_owned(),
            to: Some("db-1".to_owned()),
            reason: "NodeDrain".to_owned(),
            step,
            started_at: Time(Timestamp::UNIX_EPOCH),
            writes_blocked_since: Time(Timestamp::UNIX_EPOCH),
        }
    }

    fn decision(memory: ClusteringMemory, steps: Vec<Vec<Action>>) -> Decision {
        Decision {
            primary: None,
            steps,
            problems: Vec::new(),
            memory,
            again: Again::Later,
            completed: None,
            rollout: crate::clustering::Rollout::UpToDate,
        }
    }

    #[test]
    fn a_failed_step_keeps_the_last_memory_a_step_wrote() {
        let fencing = ClusteringMemory {
            operation: Some(operation(OperationStep::Fencing)),
            ..ClusteringMemory::default()
        };
        let finished = ClusteringMemory::default();
        let d = decision(
            finished,
            vec![vec![Action::Remember(Box::new(fencing.clone()))]],
        );
        let outcome = Outcome {
            done: vec![Action::Remember(Box::new(fencing.clone()))],
            failed: Vec::new(),
            complete: false,
        };
        assert_eq!(
            kept_memory(&ClusteringMemory::default(), &d, &outcome),
            fencing
        );
    }

    #[test]
    fn an_operation_never_written_is_not_remembered() {
        let before = ClusteringMemory::default();
        let planned = ClusteringMemory {
            operation: Some(operation(OperationStep::Fencing)),
            ..ClusteringMemory::default()
        };
        let d = decision(planned, Vec::new());
        let outcome = Outcome::default();
        assert_eq!(kept_memory(&before, &d, &outcome).operation, None);
    }

    #[test]
    fn pods_are_compared_only_with_a_revision_of_the_applied_template() {
        use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetStatus};
        let sts = |generation: i64, seen: Option<i64>| dereference::Observed {
            stateful_set: Some(StatefulSet {
                metadata: kube::api::ObjectMeta {
                    generation: Some(generation),
                    ..Default::default()
                },
                status: Some(StatefulSetStatus {
                    observed_generation: seen,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert!(template_observed(&sts(4, Some(4))));
        assert!(
            !template_observed(&sts(5, Some(4))),
            "a template just applied"
        );
        assert!(!template_observed(&sts(1, None)));
        assert!(!template_observed(&dereference::Observed::default()));
    }
}
