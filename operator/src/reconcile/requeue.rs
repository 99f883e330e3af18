//! When a cluster is reconciled again. Pure.

use std::time::Duration;

use crate::clustering::Again;

/// How soon to look again while a cluster is still settling.
pub const UNSETTLED: Duration = Duration::from_secs(10);
/// How soon to look again when everything is as desired. Drift on a server
/// (replication stopped, a replica made writable, errant transactions)
/// changes nothing Kubernetes watches: this period is how soon it is found.
/// A silent primary is noticed sooner, by the fast probe.
pub const SETTLED: Duration = Duration::from_secs(30);
/// How soon to retry after an error.
pub const AFTER_ERROR: Duration = Duration::from_secs(15);
/// How soon to look again after a status write found the cluster changed.
pub const AFTER_CONFLICT: Duration = Duration::from_millis(500);
/// The soonest a cluster is looked at again.
const SOONEST: Duration = Duration::from_millis(200);

/// How soon to reconcile again: when the clustering pass asked (`again`),
/// within the unsettled period; else the settled period once the cluster
/// runs and nothing was done, the unsettled one otherwise.
pub fn after(again: Option<Again>, settled: bool) -> Duration {
    match again {
        Some(Again::Now) => SOONEST,
        Some(Again::After(after)) => after
            .try_into()
            .unwrap_or(UNSETTLED)
            .clamp(SOONEST, UNSETTLED),
        _ if settled => SETTLED,
        _ => UNSETTLED,
    }
}

/// How soon a refused restore is looked at again (a backup may complete,
/// a Secret may be brought).
pub const RESTORE_REFUSED: Duration = Duration::from_secs(30);

/// While a new replica's seed waits (its volume is being made from a
/// snapshot, or the primary could not be asked).
pub const SEED_WAITING: Duration = Duration::from_secs(2);

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::SignedDuration;

    #[test]
    fn a_pass_that_asks_is_looked_at_within_the_unsettled_period() {
        assert_eq!(after(Some(Again::Now), true), SOONEST);
        assert_eq!(
            after(Some(Again::After(SignedDuration::from_secs(2))), true),
            Duration::from_secs(2)
        );
        assert_eq!(
            after(Some(Again::After(SignedDuration::from_secs(60))), true),
            UNSETTLED
        );
        assert_eq!(
            after(Some(Again::After(SignedDuration::from_millis(1))), false),
            SOONEST
        );
        assert_eq!(
            after(Some(Again::After(SignedDuration::from_secs(-5))), false),
            UNSETTLED,
            "a negative wait is no wait the clock can give"
        );
    }

    #[test]
    fn a_settled_cluster_is_looked_at_less_often() {
        assert_eq!(after(Some(Again::Later), true), SETTLED);
        assert_eq!(after(None, true), SETTLED);
        assert_eq!(after(Some(Again::Later), false), UNSETTLED);
        assert_eq!(after(None, false), UNSETTLED);
    }
}
