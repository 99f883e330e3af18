//! Whose rolling update it is: one cluster at a time, across every cluster
//! this operator manages. A new operator brings a new sidecar image, which
//! changes every cluster's pod template at once; rolling them all together
//! would put a bad release on every cluster before anyone saw it fail on
//! one. The turn lives in the leader's memory: a new leader hands it out
//! afresh, to the first cluster that asks.

use std::{
    sync::Mutex,
    time::{Duration, Instant},
};

use ebisu_api::UpdateStrategy;

use crate::{clustering::Rollout, model::ServerState};

/// How long a holder may go without a pass before another cluster may take
/// the turn: a cluster whose reconciles fail before the clustering pass
/// (or that stopped being reconciled) does not hold every other back.
pub const LAPSE: Duration = Duration::from_secs(600);

/// Who has the turn.
#[derive(Debug)]
struct Holder {
    /// `namespace/name`.
    cluster: String,
    /// It restarted a pod or handed over since it took the turn.
    started: bool,
    /// Its last pass.
    seen: Instant,
}

/// The cluster (`namespace/name`) whose rolling update has the turn.
#[derive(Debug, Default)]
pub struct RolloutTurns {
    holder: Mutex<Option<Holder>>,
}

impl RolloutTurns {
    /// Before a pass: takes the turn for `cluster` when it `wants` one and
    /// nobody has it (or the holder lapsed); gives it back when it no
    /// longer wants it. Returns the other cluster whose turn it is, when it
    /// is not this one's.
    pub fn claim(&self, cluster: &str, wants: bool) -> Option<String> {
        self.claim_at(cluster, wants, Instant::now())
    }

    fn claim_at(&self, cluster: &str, wants: bool, now: Instant) -> Option<String> {
        let Ok(mut holder) = self.holder.lock() else {
            // A poisoned lock: rolling without the turn is what every
            // cluster did before turns; better than rolling none.
            return None;
        };
        match holder.as_mut() {
            Some(h) if h.cluster != cluster && now.duration_since(h.seen) < LAPSE => {
                Some(h.cluster.clone())
            }
            Some(h) if h.cluster == cluster => {
                if wants {
                    h.seen = now;
                } else {
                    *holder = None;
                }
                None
            }
            _ => {
                *holder = wants.then(|| Holder {
                    cluster: cluster.to_owned(),
                    started: false,
                    seen: now,
                });
                None
            }
        }
    }

    /// After a pass of `cluster` whose rolling update stands at `rollout`:
    /// a holder that restarts or hands over has started, and keeps the
    /// turn until its update ends ([`keeps_turn`]).
    pub fn settle(&self, cluster: &str, rollout: &Rollout) {
        let Ok(mut holder) = self.holder.lock() else {
            return;
        };
        let Some(h) = holder.as_mut().filter(|h| h.cluster == cluster) else {
            return;
        };
        h.started |= matches!(rollout, Rollout::Restarting(_) | Rollout::SwitchingOver);
        if !keeps_turn(h.started, rollout) {
            *holder = None;
        }
    }

    /// A deleted cluster, or one whose spec cannot be honoured, gives the
    /// turn back.
    pub fn release(&self, cluster: &str) {
        if let Ok(mut holder) = self.holder.lock()
            && holder.as_ref().is_some_and(|h| h.cluster == cluster)
        {
            *holder = None;
        }
    }
}

/// A cluster wants the turn when the operator would restart its pods by
/// itself: some run an old revision and its strategy is `RollingUpdate`.
pub fn wants_turn(servers: &[ServerState], update: UpdateStrategy) -> bool {
    update == UpdateStrategy::RollingUpdate && servers.iter().any(|s| s.outdated)
}

/// A holder keeps the turn while it restarts or hands over and, once it
/// has `started`, while it waits (for a restarted pod to come back, a
/// replica to catch up, a human to switch over): a release that breaks the
/// first cluster's pods stops there. One that waits before its first
/// restart (a replica not caught up, a problem) gives the turn back, so
/// that it does not hold every other cluster back. An update that is done,
/// left to a human (`Manual`) or refused ends the turn.
pub fn keeps_turn(started: bool, rollout: &Rollout) -> bool {
    match rollout {
        Rollout::Restarting(_) | Rollout::SwitchingOver => true,
        Rollout::Waiting(_) => started,
        Rollout::UpToDate | Rollout::Manual | Rollout::Refused(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(pod: &str, outdated: bool) -> ServerState {
        ServerState {
            outdated,
            ..ServerState::unobserved(pod, pod)
        }
    }

    fn waiting() -> Rollout {
        Rollout::Waiting("orders-2 is restarting".to_owned())
    }

    #[test]
    fn one_cluster_holds_the_turn_until_it_gives_it_back() {
        let turns = RolloutTurns::default();
        assert_eq!(turns.claim("shop/orders", true), None);
        assert_eq!(
            turns.claim("shop/carts", true),
            Some("shop/orders".to_owned()),
            "the second waits"
        );
        assert_eq!(turns.claim("shop/orders", true), None, "the holder goes on");
        turns.settle("shop/carts", &Rollout::UpToDate);
        assert_eq!(
            turns.claim("shop/carts", true),
            Some("shop/orders".to_owned()),
            "only the holder gives it back"
        );
        turns.settle("shop/orders", &Rollout::Restarting("orders-2".to_owned()));
        assert_eq!(
            turns.claim("shop/carts", true),
            Some("shop/orders".to_owned())
        );
        turns.settle("shop/orders", &Rollout::UpToDate);
        assert_eq!(turns.claim("shop/carts", true), None, "then the next");
        assert_eq!(
            turns.claim("shop/orders", true),
            Some("shop/carts".to_owned())
        );
    }

    #[test]
    fn a_started_holder_keeps_the_turn_while_its_restarted_pod_comes_back() {
        let turns = RolloutTurns::default();
        assert_eq!(turns.claim("shop/orders", true), None);
        turns.settle("shop/orders", &Rollout::Restarting("orders-2".to_owned()));
        // The restarted pod is gone or terminating: every pod seen is old
        // and the rollout waits; the turn stays.
        assert_eq!(turns.claim("shop/orders", true), None);
        turns.settle("shop/orders", &waiting());
        assert_eq!(
            turns.claim("shop/carts", true),
            Some("shop/orders".to_owned())
        );
        turns.settle("shop/orders", &Rollout::SwitchingOver);
        turns.settle("shop/orders", &waiting());
        assert_eq!(
            turns.claim("shop/carts", true),
            Some("shop/orders".to_owned())
        );
    }

    #[test]
    fn a_holder_waiting_before_its_first_restart_lets_the_next_go() {
        let turns = RolloutTurns::default();
        assert_eq!(turns.claim("shop/orders", true), None);
        turns.settle("shop/orders", &waiting());
        assert_eq!(turns.claim("shop/carts", true), None);
    }

    #[test]
    fn a_holder_that_no_longer_wants_it_is_deleted_or_lapses_frees_it() {
        let turns = RolloutTurns::default();
        assert_eq!(turns.claim("shop/orders", false), None);
        assert_eq!(
            turns.claim("shop/carts", true),
            None,
            "not taken by wanting none"
        );
        assert_eq!(turns.claim("shop/carts", false), None);
        assert_eq!(
            turns.claim("shop/orders", true),
            None,
            "given back by wanting none"
        );
        turns.release("shop/orders");
        assert_eq!(
            turns.claim("shop/carts", true),
            None,
            "given back by deletion"
        );

        let now = Instant::now();
        turns.settle("shop/carts", &Rollout::Restarting("carts-1".to_owned()));
        assert_eq!(
            turns.claim_at("shop/orders", true, now + LAPSE / 2),
            Some("shop/carts".to_owned())
        );
        assert_eq!(
            turns.claim_at("shop/orders", true, now + LAPSE + LAPSE / 2),
            None,
            "a holder without a pass for longer than the lapse loses it"
        );
        assert_eq!(
            turns.claim("shop/carts", true),
            Some("shop/orders".to_owned())
        );
    }

    #[test]
    fn only_automatic_rolls_of_outdated_pods_want_the_turn() {
        let mixed = [server("db-0", true), server("db-1", false)];
        let current = [server("db-0", false), server("db-1", false)];
        assert!(wants_turn(&mixed, UpdateStrategy::RollingUpdate));
        assert!(!wants_turn(&mixed, UpdateStrategy::Manual));
        assert!(!wants_turn(&current, UpdateStrategy::RollingUpdate));
    }

    #[test]
    fn the_turn_is_kept_while_rolling_and_once_started() {
        for started in [false, true] {
            for rollout in [
                Rollout::Restarting("db-1".to_owned()),
                Rollout::SwitchingOver,
            ] {
                assert!(keeps_turn(started, &rollout), "{rollout:?}");
            }
            for rollout in [
                Rollout::UpToDate,
                Rollout::Manual,
                Rollout::Refused("older series".to_owned()),
            ] {
                assert!(!keeps_turn(started, &rollout), "{rollout:?}");
            }
        }
        assert!(keeps_turn(true, &waiting()), "started: kept while waiting");
        assert!(!keeps_turn(false, &waiting()), "not begun: given back");
    }
}
