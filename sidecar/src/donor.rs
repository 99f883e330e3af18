//! Choosing whom to copy a new instance's data from: a running, caught-up
//! replica before the primary, so seeding does not load the server taking
//! writes; never a server that is down or reports replication errors.

use ebisu_api::{DonorPreference, InstanceRole, agent::AgentStatus};

/// A replica more than this many seconds behind is used only after the primary.
pub const CAUGHT_UP_LAG_SECONDS: u64 = 10;

/// A peer and what its agent said (or `None` when it did not answer).
#[derive(Debug, Clone)]
pub struct Peer {
    /// Base URL of the peer's agent, such as `http://orders-1.orders:9080`.
    pub agent_url: String,
    /// Its `/status`, if it answered.
    pub status: Option<AgentStatus>,
}

/// Where the copy's replication should point: the donor's own source, or the
/// donor itself when it is the primary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Donor {
    /// Base URL of the donor's agent.
    pub agent_url: String,
    /// The donor server itself (host, port), for copies it serves directly
    /// (MySQL's CLONE plugin).
    pub server: (String, u16),
    /// Host the copy replicates from.
    pub source_host: String,
    /// Port the copy replicates from.
    pub source_port: u16,
}

impl Donor {
    /// The seed marker of a copy from this donor at `gtid` (empty when the
    /// copy carries its own position), `bytes` long.
    pub fn seed_marker(&self, gtid: String, bytes: u64) -> crate::seed_marker::SeedMarker {
        crate::seed_marker::SeedMarker {
            gtid,
            source_host: self.source_host.clone(),
            source_port: self.source_port,
            donor: self.agent_url.clone(),
            bytes,
        }
    }
}

/// Donors to try, best first.
pub fn rank(peers: &[Peer], preference: DonorPreference) -> Vec<Donor> {
    let mut caught_up: Vec<(u64, Donor)> = Vec::new();
    let mut primaries: Vec<Donor> = Vec::new();
    let mut lagging: Vec<(u64, Donor)> = Vec::new();
    for peer in peers {
        let Some(status) = &peer.status else { continue };
        if !status.server_up {
            continue;
        }
        match (status.role, &status.replication) {
            (InstanceRole::Primary, None) if !status.read_only => primaries.push(Donor {
                agent_url: peer.agent_url.clone(),
                server: (status.host.clone(), status.port),
                source_host: status.host.clone(),
                source_port: status.port,
            }),
            (InstanceRole::Replica, Some(r))
                if r.io_connected && r.sql_running && r.last_error.is_none() =>
            {
                let donor = Donor {
                    agent_url: peer.agent_url.clone(),
                    server: (status.host.clone(), status.port),
                    source_host: r.source_host.clone(),
                    source_port: r.source_port,
                };
                match r.lag_seconds {
                    Some(lag) if lag <= CAUGHT_UP_LAG_SECONDS => caught_up.push((lag, donor)),
                    // Unknown lag is treated as far behind, not as caught up.
                    lag => lagging.push((lag.unwrap_or(u64::MAX), donor)),
                }
            }
            _ => {}
        }
    }
    if preference == DonorPreference::PrimaryOnly {
        return primaries;
    }
    caught_up.sort_by_key(|(lag, _)| *lag);
    lagging.sort_by_key(|(lag, _)| *lag);
    caught_up
        .into_iter()
        .map(|(_, d)| d)
        .chain(primaries)
        .chain(lagging.into_iter().map(|(_, d)| d))
        .collect()
}

/// Whether any peer may hold data: then this instance must copy, never
/// bootstrap. An agent that answers runs beside a data directory, even
/// while its server is down.
pub fn any_peer_has_data(peers: &[Peer]) -> bool {
    peers.iter().any(|p| p.status.is_some())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ebisu_api::agent::ReplicationState;

    fn primary(url: &str) -> Peer {
        Peer {
            agent_url: url.to_owned(),
            status: Some(AgentStatus {
                host: format!("{url}-db"),
                port: 3306,
                server_up: true,
                role: InstanceRole::Primary,
                read_only: false,
                gtid_executed: Some("0-100-5".to_owned()),
                replication: None,
                seed_pending: false,
                relay_log_unread: false,
                relay_log_error: None,
                upgrade_error: None,
                source_heard: None,
                source_heard_ms_ago: None,
            }),
        }
    }

    fn replica(url: &str, lag: Option<u64>, error: Option<&str>, running: bool) -> Peer {
        Peer {
            agent_url: url.to_owned(),
            status: Some(AgentStatus {
                host: format!("{url}-db"),
                port: 3306,
                server_up: true,
                role: InstanceRole::Replica,
                read_only: true,
                gtid_executed: Some("0-100-5".to_owned()),
                replication: Some(ReplicationState {
                    source_host: "p-db".to_owned(),
                    source_port: 3306,
                    io_running: running,
                    io_connected: running,
                    sql_running: running,
                    lag_seconds: lag,
                    last_error: error.map(str::to_owned),
                }),
                seed_pending: false,
                relay_log_unread: false,
                relay_log_error: None,
                upgrade_error: None,
                source_heard: None,
                source_heard_ms_ago: None,
            }),
        }
    }

    fn urls(donors: &[Donor]) -> Vec<&str> {
        donors.iter().map(|d| d.agent_url.as_str()).collect()
    }

    #[test]
    fn caught_up_replicas_come_before_the_primary() {
        let peers = [
            primary("p"),
            replica("r2", Some(3), None, true),
            replica("r1", Some(0), None, true),
        ];
        let donors = rank(&peers, DonorPreference::PreferReplica);
        assert_eq!(urls(&donors), vec!["r1", "r2", "p"]);
        assert_eq!(
            (
                donors[0].source_host.as_str(),
                donors[2].source_host.as_str()
            ),
            ("p-db", "p-db")
        );
    }

    #[test]
    fn broken_down_or_silent_servers_are_never_donors() {
        let mut down = primary("down");
        if let Some(s) = down.status.as_mut() {
            s.server_up = false;
        }
        let peers = [
            replica("erroring", Some(0), Some("Duplicate entry"), true),
            replica("stopped", Some(0), None, false),
            down,
            Peer {
                agent_url: "silent".to_owned(),
                status: None,
            },
        ];
        assert!(rank(&peers, DonorPreference::PreferReplica).is_empty());
    }

    #[test]
    fn lagging_replicas_are_a_last_resort() {
        let peers = [
            replica("far", Some(600), None, true),
            replica("unknown", None, None, true),
            primary("p"),
        ];
        assert_eq!(
            urls(&rank(&peers, DonorPreference::PreferReplica)),
            vec!["p", "far", "unknown"]
        );
    }

    #[test]
    fn primary_only_preference_skips_replicas() {
        let peers = [replica("r", Some(0), None, true), primary("p")];
        assert_eq!(urls(&rank(&peers, DonorPreference::PrimaryOnly)), vec!["p"]);
    }

    #[test]
    fn a_fenced_server_without_replication_is_not_a_primary_donor() {
        let mut fenced = primary("fenced");
        if let Some(s) = fenced.status.as_mut() {
            s.read_only = true;
        }
        assert!(rank(&[fenced.clone()], DonorPreference::PreferReplica).is_empty());
        assert!(
            any_peer_has_data(&[fenced]),
            "it still holds data: never bootstrap beside it"
        );
    }
}
