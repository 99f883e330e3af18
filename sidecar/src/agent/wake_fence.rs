//! Fencing on waking up. A process that was frozen (its node stopped, the
//! machine paused) for longer than the cluster's failover delay may wake
//! up as a primary that has already been replaced: the operator may have
//! promoted a replica meanwhile. Such a server must not take writes for a
//! moment longer, so the agent notices the gap in its own clock and, if its
//! server is writable, fences it ([`super::fence`]) before anything else.
//! The operator makes it writable again if it is still the primary. (With
//! a primary Lease, [`super::primary_lease`] fences it on waking too.)

use std::{sync::Arc, time::Duration};

use mysql_async::prelude::Queryable;
use tokio::time::Instant;
use tracing::{info, warn};

use super::Shared;
use crate::server;

/// How often the agent looks at its own clock.
const TICK: Duration = Duration::from_millis(500);

/// Whether a gap of `gap` between two ticks means this process may have
/// been replaced while it was frozen; pure.
pub fn woke_from_a_freeze(gap: Duration, failover_after: Duration) -> bool {
    gap >= failover_after.max(TICK * 2)
}

/// Watches the clock until the process ends.
pub async fn run(shared: Arc<Shared>, failover_after: Duration) {
    let mut last = Instant::now();
    loop {
        tokio::time::sleep(TICK).await;
        let now = Instant::now();
        let gap = now.duration_since(last);
        last = now;
        if woke_from_a_freeze(gap, failover_after) {
            match fence_if_writable(&shared).await {
                Ok(true) => info!(
                    frozen_ms = gap.as_millis(),
                    "woke up after a freeze as a writable server: fenced it until the operator decides"
                ),
                Ok(false) => {}
                Err(error) => warn!(%error, "woke up after a freeze; could not check the server"),
            }
        }
    }
}

async fn fence_if_writable(shared: &Shared) -> Result<bool, server::Error> {
    let mut conn = shared.root_conn().await?;
    let flavor = shared.flavor(&mut conn).await?;
    let read_only: Option<i64> =
        conn.query_first(flavor.fence_state_query())
            .await
            .map_err(|source| server::Error::Sql {
                action: "read the fence state",
                source,
            })?;
    if read_only.unwrap_or(1) != 0 {
        return Ok(false);
    }
    shared.fencer.fence(shared, true).await?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_gap_as_long_as_the_failover_delay_counts_as_a_freeze() {
        let after = Duration::from_secs(3);
        assert!(!woke_from_a_freeze(Duration::from_millis(600), after));
        assert!(!woke_from_a_freeze(Duration::from_millis(2900), after));
        assert!(woke_from_a_freeze(Duration::from_secs(3), after));
        assert!(woke_from_a_freeze(Duration::from_secs(40), after));
        // A tiny failover delay still needs more than scheduling noise.
        assert!(!woke_from_a_freeze(
            Duration::from_millis(700),
            Duration::from_millis(1)
        ));
    }
}
