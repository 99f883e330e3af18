//! The cluster's primary Lease as the operator applies it: only its
//! duration (how long a renewal counts). Its holder is named by the
//! clustering pass and its renewals are the holder's agent's, so apply
//! never touches them.

use ebisu_api::names;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};

use super::child_meta;
use crate::validate::ValidatedCluster;

/// The primary Lease, with no holder of its own.
pub fn build(cluster: &ValidatedCluster) -> Lease {
    Lease {
        metadata: child_meta(cluster, names::primary_lease(&cluster.name)),
        spec: Some(LeaseSpec {
            lease_duration_seconds: Some(
                i32::try_from(cluster.failover.primary_lease_seconds).unwrap_or(i32::MAX),
            ),
            ..LeaseSpec::default()
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::fixtures::{BASIC, validated};

    #[test]
    fn the_lease_lasts_a_second_less_than_the_failover_delay_and_names_nobody() {
        let lease = build(&validated(BASIC));
        let spec = lease.spec.expect("spec");
        assert_eq!(spec.lease_duration_seconds, Some(2));
        assert_eq!(spec.holder_identity, None);
        assert_eq!(spec.renew_time, None);
        assert_eq!(lease.metadata.name.as_deref(), Some("orders-primary"));
    }
}
