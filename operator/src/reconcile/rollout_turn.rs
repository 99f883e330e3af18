//! Whose rolling update it is: one cluster at a time, across every cluster
//! this operator manages. A new operator brings a new sidecar image, which
//! changes every cluster's pod template at once; rolling them all together
//! would put a bad release on every cluster before anyone saw it fail on
//! one. The turn lives in the leader's memory: a new leader hands it out
//! afresh, to the first cluster that asks.

use std::sync::Mutex;

use ebisu_api::UpdateStrategy;

use crate::{clustering::Rollout, model::ServerState};

/// The cluster (`namespace/name`) whose rolling update has the turn.
#[derive(Debug, Default)]
pub struct RolloutTurns {
    holder: Mutex<Option<String>>,
}

impl RolloutTurns {
    /// Before a pass: takes the turn for `cluster` when it `wants` one and
    /// nobody has it; gives it back when it no longer wants it. Returns the
    /// other cluster whose turn it is, when it is not this one's.
    pub fn claim(&self, cluster: &str, wants: bool) -> Option<String> {
        let Ok(mut holder) = self.holder.lock() else {
            // A poisoned lock: rolling without the turn is what every
            // cluster did before turns; better than rolling none.
            return None;
        };
        match holder.as_deref() {
            Some(other) if other != cluster => Some(other.to_owned()),
            Some(_) => {
                if !wants {
                    *holder = None;
                }
                None
            }
            None => {
                if wants {
                    *holder = Some(cluster.to_owned());
                }
                None
            }
        }
    }

    /// After a pass: `cluster` gives the turn back unless it `keeps` it.
    pub fn settle(&self, cluster: &str, keeps: bool) {
        if keeps {
            return;
        }
        if let Ok(mut holder) = self.holder.lock()
            && holder.as_deref() == Some(cluster)
        {
            *holder = None;
        }
    }

    /// A deleted cluster gives the turn back.
    pub fn release(&self, cluster: &str) {
        self.settle(cluster, false);
    }
}

/// A cluster wants the turn when the operator would restart its pods by
/// itself: some run an old revision and its strategy is `RollingUpdate`.
pub fn wants_turn(servers: &[ServerState], update: UpdateStrategy) -> bool {
    update == UpdateStrategy::RollingUpdate && servers.iter().any(|s| s.outdated)
}

/// A cluster keeps the turn while it restarts or hands over, and while its
/// rolling update is under way (some pods updated, some not), even when it
/// waits: a release that breaks the first cluster stops there. One that
/// waits before its first restart (a replica not caught up, a problem)
/// gives the turn back, so that it does not hold every other cluster back.
pub fn keeps_turn(servers: &[ServerState], rollout: &Rollout) -> bool {
    match rollout {
        Rollout::Restarting(_) | Rollout::SwitchingOver => true,
        Rollout::Waiting(_) => {
            servers.iter().any(|s| s.outdated) && servers.iter().any(|s| !s.outdated)
        }
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
        turns.settle("shop/carts", false);
        assert_eq!(
            turns.claim("shop/carts", true),
            Some("shop/orders".to_owned()),
            "only the holder gives it back"
        );
        turns.settle("shop/orders", true);
        assert_eq!(
            turns.claim("shop/carts", true),
            Some("shop/orders".to_owned())
        );
        turns.settle("shop/orders", false);
        assert_eq!(turns.claim("shop/carts", true), None, "then the next");
        assert_eq!(
            turns.claim("shop/orders", true),
            Some("shop/carts".to_owned())
        );
    }

    #[test]
    fn a_holder_that_no_longer_wants_it_or_is_deleted_frees_it() {
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
    fn the_turn_is_kept_while_rolling_and_mid_roll_only() {
        let all_old = [server("db-0", true), server("db-1", true)];
        let mixed = [server("db-0", true), server("db-1", false)];
        let waiting = Rollout::Waiting("waiting for db-1 to catch up".to_owned());
        for rollout in [
            Rollout::Restarting("db-1".to_owned()),
            Rollout::SwitchingOver,
        ] {
            assert!(keeps_turn(&all_old, &rollout), "{rollout:?}");
        }
        assert!(
            keeps_turn(&mixed, &waiting),
            "under way: kept while waiting"
        );
        assert!(!keeps_turn(&all_old, &waiting), "not begun: given back");
        for rollout in [
            Rollout::UpToDate,
            Rollout::Manual,
            Rollout::Refused("older series".to_owned()),
        ] {
            assert!(!keeps_turn(&mixed, &rollout), "{rollout:?}");
        }
    }
}
