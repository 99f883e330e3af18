//! The policy a decision takes, from the validated spec and the cluster's
//! annotations (a requested switchover, a forced failover). Pure.

use ebisu_api::{
    MySQLCluster,
    names::{ANNOTATION_FORCE_FAILOVER, ANNOTATION_SWITCHOVER, SWITCHOVER_ANY},
};

use super::decide::{Policy, SwitchoverRequest};
use crate::validate::ValidatedCluster;

/// How long a failover waits for its candidate to apply what it received.
const APPLY_TIMEOUT_SECS: u64 = 60;
/// A switchover's candidate may take this much longer than its allowed lag
/// to catch up.
const CATCH_UP_MARGIN_SECS: u64 = 10;
/// The longest a switchover keeps writes fenced waiting for its candidate
/// to catch up (L5): past it the switchover is undone and the old primary
/// takes writes again, whatever `maxLagForPromotionSeconds` allows.
pub const MAX_CATCH_UP_SECS: u64 = 60;

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
        semi_sync: validated.semi_sync,
        mode: failover.mode,
        failover_after_secs: failover.after_seconds,
        max_lag_for_promotion_secs: failover.max_lag_for_promotion_seconds,
        max_lag_for_reads_secs: failover.max_lag_for_reads_seconds,
        catch_up_timeout_secs: (failover.max_lag_for_promotion_seconds + CATCH_UP_MARGIN_SECS)
            .min(MAX_CATCH_UP_SECS),
        apply_timeout_secs: APPLY_TIMEOUT_SECS,
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
        instances: u32::try_from(validated.replicas).unwrap_or(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::fixtures::{BASIC, validated};

    #[test]
    fn annotations_become_requests_and_blank_ones_ask_nothing() {
        let validated = validated(BASIC);
        let mut cluster: MySQLCluster = serde_yaml::from_str(BASIC).expect("fixture");
        let policy_with = |cluster: &MySQLCluster| policy(cluster, &validated);
        assert_eq!(policy_with(&cluster).switchover_request, None);
        cluster.metadata.annotations = Some(
            [
                (ANNOTATION_SWITCHOVER.to_owned(), " any ".to_owned()),
                (ANNOTATION_FORCE_FAILOVER.to_owned(), " ".to_owned()),
            ]
            .into(),
        );
        let asked = policy_with(&cluster);
        assert_eq!(asked.switchover_request, Some(SwitchoverRequest::Any));
        assert_eq!(asked.force_failover, None);
        cluster.metadata.annotations =
            Some([(ANNOTATION_SWITCHOVER.to_owned(), "orders-2".to_owned())].into());
        assert_eq!(
            policy_with(&cluster).switchover_request,
            Some(SwitchoverRequest::Pod("orders-2".to_owned()))
        );
        assert_eq!(
            asked.catch_up_timeout_secs,
            validated.failover.max_lag_for_promotion_seconds + CATCH_UP_MARGIN_SECS
        );
    }

    #[test]
    fn a_switchover_never_keeps_writes_fenced_longer_than_a_minute() {
        let mut validated = validated(BASIC);
        validated.failover.max_lag_for_promotion_seconds = 86_400;
        let cluster: MySQLCluster = serde_yaml::from_str(BASIC).expect("fixture");
        assert_eq!(
            policy(&cluster, &validated).catch_up_timeout_secs,
            MAX_CATCH_UP_SECS
        );
    }
}
