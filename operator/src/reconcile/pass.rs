//! One clustering pass of a reconcile: observe every server, decide, carry
//! the steps out, announce what happened, and go round again at once while
//! a decision says its steps changed what the next one depends on (a
//! switchover or failover moving on), a few rounds at most; while a decision
//! asks to look again within half a second (a silent primary being
//! watched), it looks again after that pause, for a few seconds, without
//! the rest of a reconcile in between. The memory a

//! round leaves is what the last step that ran made durable: the pass
//! writes it to status itself (`Remember`), as it removes the annotations
//! a decision consumed, and leaves every server and pod action to
//! `clustering::act`.

use std::collections::BTreeMap;
use std::sync::Mutex;

use ebisu_api::{ClusteringMemory, MySQLCluster, RoleChange};
use k8s_openapi::{
    api::coordination::v1::Lease,
    apimachinery::pkg::apis::meta::v1::Time,
    jiff::{SignedDuration, Timestamp},
};

use kube::{Api, runtime::reflector::ObjectRef};
use tracing::{info, warn};

use super::{Context, context::LeaderClock, rollout_turn};
use crate::{
    apply,
    clustering::{
        Action, Again, Decision, Input, PassReport, Rollout,
        act::ServerExecutor,
        decide,
        execute::{ActionError, Executed, Executor, execute},
        observe, policy,
    },
    events,
    model::{Accounts, Answer, ClusterObjects, LeaseView, Problem, ServerState},
    status,
    validate::ValidatedCluster,
};

/// Rounds of observe-decide-act within one reconcile that follow at once,
/// at most.
const MAX_ROUNDS: usize = 6;
/// A decision that asks to look again this soon (a silent primary being
/// watched) is looked at again within the same reconcile, without the
/// rest of a reconcile in between, for this long at most.
const WATCH_WITHIN: SignedDuration = SignedDuration::from_millis(500);
const WATCH_FOR: std::time::Duration = std::time::Duration::from_secs(8);

/// The executor of a pass: the MySQLCluster's own changes here (status
/// memory, consumed annotations, each conditional on the cluster being as
/// this pass last wrote or read it), everything else by `ServerExecutor`;
/// nothing at all once this operator cannot prove it still leads.
struct PassExecutor<'a> {
    cluster: Mutex<MySQLCluster>,
    servers: ServerExecutor<'a>,
    leader: &'a LeaderClock,
}

impl PassExecutor<'_> {
    fn cluster(&self) -> MySQLCluster {
        self.cluster
            .lock()
            .map(|c| c.clone())
            .unwrap_or_else(|poisoned| poisoned.into_inner().clone())
    }

    fn keep(&self, written: MySQLCluster) {
        if let Ok(mut cluster) = self.cluster.lock() {
            *cluster = written;
        }
    }
}

impl Executor for PassExecutor<'_> {
    async fn run(&self, action: &Action) -> Result<(), ActionError> {
        if !self.leader.valid(std::time::Instant::now()) {
            return Err(ActionError::NotLeader);
        }
        let cluster = self.cluster();
        match action {
            Action::Remember(memory) => {
                let status = status::with_memory(&cluster, memory, &Time(Timestamp::now()));
                let written = apply::write_status(self.servers.client, &cluster, &status)
                    .await
                    .map_err(|source| ActionError::Api {
                        action: "remember the clustering state in status".to_owned(),
                        source,
                    })?;
                if let Some(written) = written {
                    self.keep(written);
                }
                Ok(())
            }
            Action::ConsumeAnnotation(key) => {
                let written = apply::remove_annotation(self.servers.client, &cluster, key)
                    .await
                    .map_err(|source| ActionError::Api {
                        action: format!("remove annotation {key}"),
                        source,
                    })?;
                self.keep(written);
                Ok(())
            }
            other => self.servers.run(other).await,
        }
    }
}

/// What the reconcile knows before the pass looks at the servers.
#[derive(Debug, Clone, Copy)]
pub struct Known<'a> {
    /// When the fast probe first found the primary silent, if it did.
    pub probe_silent_since: Option<Timestamp>,
    /// The cluster holds data (it had a primary).
    pub holds_data: bool,
    /// Pods whose volumes still load their snapshot, with the percent done.
    pub initializing: &'a BTreeMap<String, i64>,
}

/// Runs the clustering pass for a cluster whose children were applied.
/// `cluster` was read from the API server just now (not from the cache:
/// a stale memory could replay a finished change of primary).
pub async fn run(
    ctx: &Context,
    cluster: &MySQLCluster,
    validated: &ValidatedCluster,
    objects: &ClusterObjects,
    accounts: &Accounts,
    known: Known<'_>,
) -> PassReport {
    let Known {
        probe_silent_since,
        holds_data,
        initializing,
    } = known;
    let key = ObjectRef::from_obj(cluster);
    let mut written = cluster.clone();
    let mut memory = cluster
        .status
        .as_ref()
        .map(|s| s.clustering.clone())
        .unwrap_or_default();
    let refusal_before = memory.last_refusal.clone();
    // A restored first server forgets its old source before anything else.
    let restored = cluster
        .status
        .as_ref()
        .and_then(|s| s.restore.as_ref())
        .filter(|r| !r.done)
        .map(|_| ebisu_api::names::pod(&validated.name, 0));
    let mut report = PassReport::default();
    // A primary the fast probe finds silent gets only a glance.

    let mut silent: Vec<String> = memory
        .primary
        .clone()
        .filter(|_| probe_silent_since.is_some())
        .into_iter()
        .collect();
    let started = std::time::Instant::now();
    let mut round = 0;
    let mut immediate = 0;
    loop {
        // From the cluster as this pass last wrote it: an annotation a
        // round consumed asks nothing of the next.
        let policy = policy::policy(&written, validated);
        let servers = observe::servers(
            &validated.name,
            &validated.namespace,
            objects,
            &accounts.operator,
            &ctx.agents,
            &silent,
        )
        .await;
        let states: Vec<_> = servers
            .iter()
            .map(|s| ServerState {
                volume_initializing: initializing.get(&s.state.pod).copied(),
                ..s.state.clone()
            })
            .collect();
        let lease = read_lease(ctx, &key, &validated.namespace, &validated.name).await;
        let held = ctx.verify_jobs.held(&validated.key());
        let rollout_turn = ctx.rollout_turns.claim(
            &validated.key(),
            rollout_turn::wants_turn(&states, policy.update),
        );
        tracing::debug!(round, silent = ?states.iter().filter(|s| !s.answered()).map(|s| &s.pod).collect::<Vec<_>>(), ?lease, "observed");
        let decision = decide(&Input {
            servers: &states,
            policy: &policy,
            memory: &memory,
            probe_silent_since,
            lease: lease.as_ref(),
            new_cluster: !holds_data,
            restored: restored.as_deref(),
            held: held.as_deref(),
            rollout_turn: rollout_turn.as_deref(),
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
        let lease_name = ebisu_api::names::primary_lease(&validated.name);
        let executor = PassExecutor {
            cluster: Mutex::new(written.clone()),
            leader: &ctx.leader,
            servers: ServerExecutor {
                client: &ctx.client,
                namespace: &validated.namespace,
                lease: &lease_name,
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
            },
        };
        let outcome = execute(&decision.steps, &executor).await;
        written = executor.cluster();
        for (action, error) in &outcome.failed {
            // A budget refusing an eviction now is the rolling update's to
            // report in its condition (budgets lag pods becoming ready, so it
            // passes), not a failure to log on every pass.
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
            report.completed.push((operation.kind, change));
        }
        report.acted |= !outcome.done.is_empty() || !outcome.failed.is_empty();
        silent = servers
            .iter()
            .filter(|s| s.state.answer == Answer::Silent)
            .map(|s| s.state.pod.clone())
            .collect();
        let again = again_after(&decision, &outcome);
        let (rollout, budget_problem) = after_evictions(decision.rollout.clone(), &outcome);
        ctx.rollout_turns.settle(&validated.key(), &rollout);
        report.primary.clone_from(&decision.primary);
        report.problems = decision.problems;
        report.problems.extend(budget_problem);
        report.problems.extend(refused_reseeds(&outcome));
        report.rollout = Some(rollout);
        report.servers = servers;
        if again == Again::Now && immediate + 1 < MAX_ROUNDS {
            immediate += 1;
            round += 1;
            continue;
        }
        if let Again::After(after) = again
            && after <= WATCH_WITHIN
            && started.elapsed() < WATCH_FOR
        {
            tokio::time::sleep(after.unsigned_abs()).await;
            round += 1;
            continue;
        }
        report.again = Some(again);
        break;
    }

    if let Some(note) =
        events::for_refusal(refusal_before.as_deref(), memory.last_refusal.as_deref())
    {
        warn!(message = %note.message, "switchover refused");
        events::publish(&ctx.recorder, cluster, "Switchover", note).await;
    }
    report.memory = memory;
    report.cluster = Some(written);
    report
}

/// The primary Lease, read from the API server, with how long the
/// operator has seen its version unchanged; `None` when it cannot be read.
async fn read_lease(
    ctx: &Context,
    key: &ObjectRef<MySQLCluster>,
    namespace: &str,
    cluster: &str,
) -> Option<LeaseView> {
    let api: Api<Lease> = Api::namespaced(ctx.client.clone(), namespace);
    match api.get_opt(&ebisu_api::names::primary_lease(cluster)).await {
        Ok(Some(lease)) => Some(ctx.lease_clock.view(key, &lease, std::time::Instant::now())),
        // Not applied yet: nobody holds it.
        Ok(None) => Some(LeaseView {
            holder: None,
            version: String::new(),
            unrenewed_for: k8s_openapi::jiff::SignedDuration::MAX,
            duration: k8s_openapi::jiff::SignedDuration::ZERO,
        }),
        Err(error) => {
            warn!(%error, "failed to read the primary Lease");
            None
        }
    }
}

/// When to look again after a round: as the decision says when every step
/// ran; otherwise soon, with everything re-read, or later when only the
/// user can remove what refused an eviction (a second budget).
fn again_after(decision: &Decision, outcome: &Executed) -> Again {
    if outcome.complete {
        decision.again
    } else if outcome.failed.iter().any(|(_, e)| {
        matches!(
            e,
            ActionError::OverlappingBudgets { .. } | ActionError::ReseedRefused { .. }
        )
    }) {
        Again::After(k8s_openapi::jiff::SignedDuration::from_secs(10))
    } else {
        Again::After(k8s_openapi::jiff::SignedDuration::from_secs(2))
    }
}

/// Re-seeds an agent refused: only the user can make room, so each is a
/// problem (a condition and one Event) rather than a failure per pass.
fn refused_reseeds(outcome: &Executed) -> Vec<Problem> {
    outcome
        .failed
        .iter()
        .filter_map(|(_, error)| match error {
            ActionError::ReseedRefused { pod, why } => Some(Problem::ReseedRefused {
                pod: pod.clone(),
                why: why.clone(),
            }),
            _ => None,
        })
        .collect()
}

/// Where the rolling update stands once a budget refused an eviction (it
/// waits), and the problem when two budgets select the pod (only the user
/// can fix that).
fn after_evictions(rollout: Rollout, outcome: &Executed) -> (Rollout, Option<Problem>) {
    let refused = outcome
        .failed
        .iter()
        .map(|(_, error)| error)
        .find(|e| e.is_eviction_refused());
    match refused {
        Some(ActionError::OverlappingBudgets { pod }) => {
            let problem = Problem::OverlappingBudgets(pod.clone());
            (Rollout::Waiting(problem.message()), Some(problem))
        }
        Some(ActionError::DisruptionRefused { pod }) => (
            Rollout::Waiting(format!(
                "a PodDisruptionBudget allows no disruption of {pod} now"
            )),
            None,
        ),
        _ => (rollout, None),
    }
}

/// What is durable after `outcome`: everything the decision meant to
/// remember when every step ran; otherwise the last memory a step wrote,
/// or, when none did, the decision's bookkeeping without its change of
/// operation (that was never recorded).
fn kept_memory(
    before: &ClusteringMemory,
    decision: &Decision,
    outcome: &Executed,
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

#[cfg(test)]
mod tests {
    use super::*;
    use ebisu_api::{Operation, OperationKind, OperationStep};

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
            rollout: Rollout::UpToDate,
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
        let outcome = Executed {
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
        let outcome = Executed::default();
        assert_eq!(kept_memory(&before, &d, &outcome).operation, None);
    }

    fn evicting(error: ActionError) -> Executed {
        Executed {
            done: Vec::new(),
            failed: vec![(Action::Restart("db-2".to_owned()), error)],
            complete: false,
        }
    }

    #[test]
    fn a_refused_reseed_is_a_problem_retried_slowly() {
        let outcome = Executed {
            done: Vec::new(),
            failed: vec![(
                Action::Reseed {
                    pod: "db-1".to_owned(),
                    reason: "errant".to_owned(),
                },
                ActionError::ReseedRefused {
                    pod: "db-1".to_owned(),
                    why: "2 earlier copies are set aside".to_owned(),
                },
            )],
            complete: false,
        };
        let problems = refused_reseeds(&outcome);
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].key(), "ReseedRefused/db-1");
        assert!(problems[0].message().contains("2 earlier copies"));
        assert!(refused_reseeds(&evicting(ActionError::NotLeader)).is_empty());
        assert!(
            events::for_outcome(&outcome).is_empty(),
            "no Event per pass"
        );
    }

    #[test]
    fn a_budget_that_refuses_now_pauses_the_rollout_and_two_budgets_are_a_problem() {
        let (rollout, problem) = after_evictions(
            Rollout::Restarting("db-2".to_owned()),
            &evicting(ActionError::DisruptionRefused {
                pod: "db-2".to_owned(),
            }),
        );
        assert!(
            matches!(rollout, Rollout::Waiting(why) if why.contains("allows no disruption of db-2"))
        );
        assert_eq!(problem, None);
        let twice = evicting(ActionError::OverlappingBudgets {
            pod: "db-2".to_owned(),
        });
        let (rollout, problem) = after_evictions(Rollout::Restarting("db-2".to_owned()), &twice);
        assert!(matches!(rollout, Rollout::Waiting(_)));
        assert_eq!(
            problem,
            Some(Problem::OverlappingBudgets("db-2".to_owned()))
        );
        let d = decision(ClusteringMemory::default(), Vec::new());
        assert_eq!(
            again_after(&d, &twice),
            Again::After(k8s_openapi::jiff::SignedDuration::from_secs(10)),
            "only the user can remove the other budget"
        );
        let (rollout, _) = after_evictions(Rollout::UpToDate, &Executed::default());
        assert_eq!(rollout, Rollout::UpToDate);
    }

    #[test]
    fn a_failed_step_looks_again_soon_and_a_complete_one_when_the_decision_says() {
        let d = decision(ClusteringMemory::default(), Vec::new());
        let failed = evicting(ActionError::TimedOut {
            pod: "db-2".to_owned(),
            action: "x",
        });
        assert_eq!(
            again_after(&d, &failed),
            Again::After(k8s_openapi::jiff::SignedDuration::from_secs(2))
        );
        let done = Executed {
            complete: true,
            ..Executed::default()
        };
        assert_eq!(again_after(&d, &done), Again::Later);
    }
}
