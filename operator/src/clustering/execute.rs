//! Carrying a decision's steps out in the order it promises: the actions of
//! a step are independent and run together, every one is attempted, and a
//! step with a failed action ends the pass, so nothing a later step does
//! (making a server writable, moving a label) can happen after an earlier
//! one (a fence) failed. How an action is done is the [`Executor`]'s
//! business: `act::ServerExecutor` does the server and pod actions, and
//! the reconcile's pass wraps it to record memory in status.

use std::future::Future;

use super::{
    decide::{Action, Steps},
    observe,
};

/// Does one action.
pub trait Executor {
    /// Carries `action` out.
    fn run(&self, action: &Action) -> impl Future<Output = Result<(), ActionError>> + Send;
}

/// Why an action failed.
#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    /// The server could not be reached or read.
    #[error(transparent)]
    Observe(#[from] observe::Error),
    /// The server did not finish in time.
    #[error("failed to {action} on {pod}: timed out")]
    TimedOut {
        /// The pod.
        pod: String,
        /// What was being done.
        action: &'static str,
    },
    /// The server refused a statement.
    #[error("failed to {action} on {pod}: {source}")]
    Refused {
        /// The pod.
        pod: String,
        /// What was being done.
        action: &'static str,
        /// The driver's error.
        #[source]
        source: mysql_async::Error,
    },
    /// The API server refused or failed a write.
    #[error("failed to {action}: {source}")]
    Api {
        /// What was being done.
        action: String,
        /// The client error.
        #[source]
        source: kube::Error,
    },
    /// A PodDisruptionBudget allows no disruption of the pod now.
    #[error("failed to evict {pod}: a PodDisruptionBudget allows no disruption now")]
    DisruptionRefused {
        /// The pod.
        pod: String,
    },
    /// More than one PodDisruptionBudget selects the pod: the eviction API
    /// refuses to evict it at all.
    #[error("failed to evict {pod}: more than one PodDisruptionBudget selects it")]
    OverlappingBudgets {
        /// The pod.
        pod: String,
    },
    /// This operator cannot prove it still leads (it was paused, or cannot
    /// renew its leader Lease): another may be acting.
    #[error("failed to act: this operator cannot prove it still leads")]
    NotLeader,
    /// The agent refused to set its data aside (too many copies kept, or
    /// no room for a fresh one): only the user can make room.
    #[error("failed to re-seed {pod}: {why}")]
    ReseedRefused {
        /// The pod.
        pod: String,
        /// What the agent said to do.
        why: String,
    },
    /// The action cannot be done with what was observed.
    #[error("failed to {action}: {why}")]
    Impossible {
        /// What was being done.
        action: String,
        /// Why not.
        why: String,
    },
}

impl ActionError {
    /// A disruption budget refused an eviction: the rolling update's to
    /// report, not a step failure to log.
    pub fn is_eviction_refused(&self) -> bool {
        matches!(
            self,
            Self::DisruptionRefused { .. } | Self::OverlappingBudgets { .. }
        )
    }
}

/// What happened to a decision's steps.
#[derive(Debug, Default)]
pub struct Executed {
    /// Actions that succeeded, in order.
    pub done: Vec<Action>,
    /// Actions that failed, with why (all from one step).
    pub failed: Vec<(Action, ActionError)>,
    /// Every step ran without a failure.
    pub complete: bool,
}

/// Runs `steps` in order, stopping after the first step with a failure.
pub async fn execute<E: Executor>(steps: &Steps, executor: &E) -> Executed {
    let mut outcome = Executed::default();
    for step in steps {
        let runs = step.iter().map(|action| async move {
            let started = std::time::Instant::now();
            let result = executor.run(action).await;
            tracing::debug!(
                ?action,
                ok = result.is_ok(),
                ms = started.elapsed().as_millis(),
                "action"
            );
            (action, result)
        });
        for (action, result) in futures::future::join_all(runs).await {
            match result {
                Ok(()) => outcome.done.push(action.clone()),
                Err(error) => outcome.failed.push((action.clone(), error)),
            }
        }
        if !outcome.failed.is_empty() {
            return outcome;
        }
    }
    outcome.complete = true;
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records what it was asked to do; fails the actions it was told to.
    struct Fake {
        ran: std::sync::Mutex<Vec<Action>>,
        fail: Vec<Action>,
    }

    impl Executor for Fake {
        async fn run(&self, action: &Action) -> Result<(), ActionError> {
            if let Ok(mut ran) = self.ran.lock() {
                ran.push(action.clone());
            }
            if self.fail.contains(action) {
                return Err(ActionError::TimedOut {
                    pod: action.pod().unwrap_or_default().to_owned(),
                    action: "fence",
                });
            }
            Ok(())
        }
    }

    fn fence(pod: &str) -> Action {
        Action::Fence {
            pod: pod.to_owned(),
            hand_over: false,
        }
    }

    fn run(steps: &Steps, fail: Vec<Action>) -> (Executed, Vec<Action>) {
        let fake = Fake {
            ran: std::sync::Mutex::new(Vec::new()),
            fail,
        };
        let outcome = futures::executor::block_on(execute(steps, &fake));
        (outcome, fake.ran.into_inner().unwrap())
    }

    #[test]
    fn no_server_is_made_writable_after_a_failed_fence() {
        let steps = vec![
            vec![fence("db-1"), fence("db-2")],
            vec![Action::MakeWritable("db-0".to_owned())],
            vec![Action::LabelPrimary("db-0".to_owned())],
        ];
        let (outcome, ran) = run(&steps, vec![fence("db-1")]);
        assert!(!outcome.complete);
        assert!(
            !ran.iter()
                .any(|a| matches!(a, Action::MakeWritable(_) | Action::LabelPrimary(_))),
            "{ran:?}"
        );
        // The rest of the failed step is still attempted: fences are independent.
        assert!(ran.contains(&fence("db-2")));
        assert_eq!(outcome.failed.len(), 1);
        assert_eq!(outcome.done, vec![fence("db-2")]);
    }

    #[test]
    fn every_step_runs_in_order_when_nothing_fails() {
        let steps = vec![
            vec![fence("db-1")],
            vec![Action::MakeWritable("db-0".to_owned())],
            vec![Action::LabelPrimary("db-0".to_owned())],
        ];
        let (outcome, ran) = run(&steps, Vec::new());
        assert!(outcome.complete);
        assert_eq!(ran, steps.concat());
    }
}
