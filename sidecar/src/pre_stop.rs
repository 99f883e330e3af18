//! `ebisu-sidecar pre-stop`: the preStop hook of the server and agent
//! containers. A primary pod that is deleted directly (not evicted, which
//! the primary's disruption budget holds) must keep its server up until
//! the operator has moved the primary away: the candidate needs the old
//! primary's binary log to catch up. So the hook waits, bounded, while this
//! server is (or is handing over as) the primary and a replica could take
//! over; it returns at once for replicas and for a primary nobody can
//! replace. It only reads, over the agents' `/status` (its own and its
//! peers'), so the server's container needs no credentials for it.

use std::time::{Duration, Instant};

use ebisu_api::{InstanceRole, agent::AgentStatus};

use crate::init::clone_client;

/// Why the hook lets the container stop (or keeps waiting).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Stop now, for this reason.
    Stop(String),
    /// Keep the server up a little longer.
    Wait(&'static str),
}

/// Decides from this server's state (`None`: it does not answer) and its
/// peers' states; pure.
pub fn verdict(local: Option<&AgentStatus>, peers: &[AgentStatus]) -> Verdict {
    let Some(local) = local else {
        return Verdict::Stop("the server does not answer".to_owned());
    };
    if local.role == InstanceRole::Replica {
        return Verdict::Stop("this server is a replica".to_owned());
    }
    if let Some(primary) = peers
        .iter()
        .find(|p| p.server_up && p.role == InstanceRole::Primary && !p.read_only)
    {
        return Verdict::Stop(format!("the primary moved to {}", primary.host));
    }
    let replicating = peers.iter().any(|p| {
        p.server_up
            && p.replication
                .as_ref()
                .is_some_and(|r| r.sql_running && r.last_error.is_none())
    });
    match (local.read_only, replicating) {
        (false, false) => Verdict::Stop("no replica can take over".to_owned()),
        (false, true) => Verdict::Wait("this server is the primary; waiting for the switchover"),
        (true, _) => Verdict::Wait("this server is fenced; waiting for the new primary"),
    }
}

/// Waits until [`verdict`] says stop, or `timeout` passes; returns why it stopped.
pub async fn run(local_agent: &str, peers: &[String], timeout: Duration) -> String {
    let deadline = Instant::now() + timeout;
    let mut last = "";
    let local_agent = [local_agent.to_owned()];
    while Instant::now() < deadline {
        let local = clone_client::fetch_peers(&local_agent)
            .await
            .into_iter()
            .find_map(|p| p.status)
            .filter(|s| s.server_up);
        let peers: Vec<AgentStatus> = clone_client::fetch_peers(peers)
            .await
            .into_iter()
            .filter_map(|p| p.status)
            .collect();
        match verdict(local.as_ref(), &peers) {
            Verdict::Stop(why) => return why,
            Verdict::Wait(why) => {
                if why != last {
                    tracing::info!(why, "pre-stop: holding the server up");
                    last = why;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    format!("gave up waiting after {}s", timeout.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ebisu_api::agent::ReplicationState;

    fn status(host: &str, role: InstanceRole, read_only: bool, replicating: bool) -> AgentStatus {
        AgentStatus {
            host: host.to_owned(),
            port: 3306,
            server_up: true,
            role,
            read_only,
            gtid_executed: None,
            replication: replicating.then(|| ReplicationState {
                source_host: "db-0".to_owned(),
                source_port: 3306,
                io_running: true,
                io_connected: true,
                sql_running: true,
                lag_seconds: Some(0),
                last_error: None,
            }),
            seed_pending: false,
            relay_log_unread: false,
            relay_log_error: None,
            upgrade_error: None,
            source_heard: None,
            source_heard_ms_ago: None,
        }
    }

    #[test]
    fn a_primary_with_a_healthy_replica_waits_for_the_switchover() {
        let me = status("db-0", InstanceRole::Primary, false, false);
        let peers = [status("db-1", InstanceRole::Replica, true, true)];
        assert!(matches!(verdict(Some(&me), &peers), Verdict::Wait(_)));
        // Fenced, not yet replaced: still waiting.
        let fenced = status("db-0", InstanceRole::Unknown, true, false);
        assert!(matches!(verdict(Some(&fenced), &peers), Verdict::Wait(_)));
    }

    #[test]
    fn the_hook_lets_go_once_the_primary_moved() {
        let fenced = status("db-0", InstanceRole::Unknown, true, false);
        let peers = [status("db-1", InstanceRole::Primary, false, false)];
        assert_eq!(
            verdict(Some(&fenced), &peers),
            Verdict::Stop("the primary moved to db-1".to_owned())
        );
        let repointed = status("db-0", InstanceRole::Replica, true, true);
        assert!(matches!(verdict(Some(&repointed), &[]), Verdict::Stop(_)));
    }

    #[test]
    fn a_primary_nobody_can_replace_stops_at_once() {
        let me = status("db-0", InstanceRole::Primary, false, false);
        assert!(matches!(verdict(Some(&me), &[]), Verdict::Stop(_)));
        let broken = AgentStatus {
            replication: Some(ReplicationState {
                last_error: Some("boom".to_owned()),
                ..status("db-1", InstanceRole::Replica, true, true)
                    .replication
                    .expect("replication")
            }),
            ..status("db-1", InstanceRole::Replica, true, true)
        };
        assert!(matches!(verdict(Some(&me), &[broken]), Verdict::Stop(_)));
        assert!(matches!(verdict(None, &[]), Verdict::Stop(_)));
    }
}
