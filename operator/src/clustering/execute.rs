//! Carrying a decision's steps out in the order it promises: the actions of
//! a step are independent and run together, every one is attempted, and a
//! step with a failed action ends the pass, so nothing a later step does
//! (making a server writable, moving a label) can happen after an earlier
//! one (a fence) failed. How an action is done is the [`Executor`]'s
//! business; `act` is the real one.

use std::future::Future;

use super::{act, decide::Action, decide::Steps};

/// Does one action.
pub trait Executor {
    /// Carries `action` out.
    fn run(&self, action: &Action) -> impl Future<Output = Result<(), act::Error>> + Send;
}

/// What happened to a decision's steps.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Actions that succeeded, in order.
    pub done: Vec<Action>,
    /// Actions that failed, with why (all from one step).
    pub failed: Vec<(Action, act::Error)>,
    /// Every step ran without a failure.
    pub complete: bool,
}

/// Runs `steps` in order, stopping after the first step with a failure.
pub async fn execute<E: Executor>(steps: &Steps, executor: &E) -> Outcome {
    let mut outcome = Outcome::default();
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
        async fn run(&self, action: &Action) -> Result<(), act::Error> {
            if let Ok(mut ran) = self.ran.lock() {
                ran.push(action.clone());
            }
            if self.fail.contains(action) {
                return Err(act::Error::TimedOut {
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

    fn run(steps: &Steps, fail: Vec<Action>) -> (Outcome, Vec<Action>) {
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
