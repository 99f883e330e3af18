//! What the operator observed about one server and its pod and node, in the
//! shape decisions take, and the accounts it talks to servers with. Built by
//! `clustering::observe` and `dereference`; read by every decision.

use ebisu_api::InstanceRole;
use ebisu_mysql::{GtidSet, ServerVersion};

/// How the server answered this look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// It answered every query: the server fields below are what it said.
    Answered,
    /// It is up but refused the operator (authentication, too many
    /// connections, a query error): alive, so never failed over, but
    /// nothing can be done to it this pass.
    Refused,
    /// Nothing answered in time (no address, connection refused or timed
    /// out) and its agent does not report the server up: it may be lost.
    Silent,
}

/// The pod's node, as far as decisions care.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeFacts {
    /// Node name.
    pub name: String,
    /// Cordoned (`spec.unschedulable`) or carrying a drain taint: pods are
    /// about to be evicted from it.
    pub draining: bool,
    /// Its Ready condition is True.
    pub ready: bool,
}

/// One server as observed.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerState {
    /// Pod name.
    pub pod: String,
    /// Host other servers replicate from (the pod's DNS name).
    pub host: String,
    /// The pod's `ebisu.dev/role` label.
    pub role_label: Option<InstanceRole>,
    /// The pod's `ebisu.dev/reads` label says it serves reads.
    pub reads_label: bool,
    /// The pod is Ready (serves queries) and not being deleted.
    pub pod_ready: bool,
    /// The pod is being deleted.
    pub terminating: bool,
    /// The pod's node, once scheduled.
    pub node: Option<NodeFacts>,
    /// How the server answered; the fields below are unknown unless `Answered`.
    pub answer: Answer,
    /// `read_only` / `super_read_only` is on.
    pub read_only: bool,
    /// Executed GTIDs.
    pub gtid: Option<GtidSet>,
    /// The server's version.
    pub version: Option<ServerVersion>,
    /// Its agent says the upgrade step after a new release failed, and why.
    pub upgrade_error: Option<String>,
    /// Replication, when a source is configured.
    pub replication: Option<Replication>,
    /// Semi-sync source (primary) side enabled.
    pub semi_sync_source: bool,
    /// Semi-sync source side is actually waiting for acknowledgements.
    pub semi_sync_active: bool,
    /// Semi-sync replica side enabled.
    pub semi_sync_replica: bool,
    /// How long the source side waits before falling back, in milliseconds.
    pub semi_sync_timeout_ms: Option<u64>,
    /// How many acknowledgements the source side waits for.
    pub semi_sync_wait: Option<u32>,
    /// On a replica: how long ago (milliseconds) its receiver last got
    /// anything from the source it replicates from, as its agent timed it;
    /// `None` when unknown (no agent answer, no replica, not heard yet).
    pub hears_source_ms_ago: Option<u64>,
    /// The pod was made from an older revision of the StatefulSet than its
    /// update revision: the server runs an old spec until it restarts.
    pub outdated: bool,
    /// A fresh copy whose agent has not applied its recorded position yet
    /// (or an agent that did not say): its replication is the agent's to set up.
    pub seed_pending: bool,
    /// MariaDB: its agent has not yet applied what the running server's
    /// relay log held at its start (or did not say). Starting replication
    /// there would discard that relay log: it may hold acknowledged
    /// writes nobody else has.
    pub relay_log_unread: bool,
    /// Why its agent cannot apply that relay log, while it cannot.
    pub relay_log_error: Option<String>,
    /// The pod's server container has started at least once (its volume
    /// was seeded; it may have acknowledged writes).
    pub server_started: bool,
    /// Its volume, made from a snapshot, is still loading blocks from it
    /// (percent done, 0 when EC2 did not say): a read may wait on S3, so it
    /// serves no reads and is chosen in no switchover.
    pub volume_initializing: Option<i64>,
}

impl ServerState {
    /// A server nobody has heard from yet: silent, read-only as far as
    /// anyone knows, and (since its agent has not said otherwise) with a
    /// seed pending, so nothing races an agent applying a copy.
    pub fn unobserved(pod: &str, host: &str) -> Self {
        Self {
            pod: pod.to_owned(),
            host: host.to_owned(),
            role_label: None,
            reads_label: false,
            pod_ready: false,
            terminating: false,
            node: None,
            answer: Answer::Silent,
            read_only: true,
            gtid: None,
            version: None,
            upgrade_error: None,
            replication: None,
            semi_sync_source: false,
            semi_sync_active: false,
            semi_sync_replica: false,
            semi_sync_timeout_ms: None,
            semi_sync_wait: None,
            hears_source_ms_ago: None,
            outdated: false,
            seed_pending: true,
            relay_log_unread: true,
            relay_log_error: None,
            server_started: false,
            volume_initializing: None,
        }
    }

    /// A replica whose both threads are stopped (as every server starts)
    /// and whose relay log its agent has not applied yet: nothing may
    /// start its replication, and no failover may choose past it.
    pub fn relay_log_at_risk(&self) -> bool {
        self.relay_log_unread
            && self
                .replication
                .as_ref()
                .is_some_and(|r| !r.io_running && !r.sql_running)
    }

    /// The server answered this look.
    pub fn answered(&self) -> bool {
        self.answer == Answer::Answered
    }

    /// The replica still hears `source` (its receiver got an event or a
    /// heartbeat from that host within `within_ms`).
    pub fn hears(&self, source: &ServerState, within_ms: u64) -> bool {
        self.replication
            .as_ref()
            .is_some_and(|r| r.source_host == source.host)
            && self.hears_source_ms_ago.is_some_and(|ago| ago < within_ms)
    }

    /// A replica on a healthy, schedulable node whose pod serves: where a
    /// primary may move.
    pub fn placeable(&self) -> bool {
        self.pod_ready
            && !self.terminating
            && self
                .node
                .as_ref()
                .is_some_and(|node| node.ready && !node.draining)
    }
}

/// A server's replication, as observed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replication {
    /// Host it replicates from.
    pub source_host: String,
    /// The receiver thread runs (connected or reconnecting).
    pub io_running: bool,
    /// The receiver's last error number (0: none).
    pub io_errno: u32,
    /// The receiver's last error message: read to tell a diverged copy from
    /// other fatal source errors, never shown (it stays in the server).
    pub io_error: Option<String>,
    /// The applier thread runs.
    pub sql_running: bool,
    /// The applier's last error: data trouble, never repaired blindly.
    pub sql_error: Option<String>,
    /// Seconds behind.
    pub lag_seconds: Option<u64>,
    /// GTIDs received from the source (applied or not).
    pub received: Option<GtidSet>,
}

/// Why the source stopped streaming to a replica for good.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceRefusal {
    /// The replica holds transactions the source lacks, or needs ones the
    /// source purged: only a fresh copy helps.
    Diverged,
    /// An event larger than the source's `max_allowed_packet`: a setting
    /// to raise, and a fresh copy would stop at the same event.
    EventTooLarge,
    /// The source's binary log is damaged (truncated, corrupt, bad
    /// checksum): a fresh copy would stop there too.
    SourceLogDamaged,
}

impl SourceRefusal {
    /// What it means and what to do, without the server's message (which
    /// may quote data).
    pub fn describe(self) -> &'static str {
        match self {
            Self::Diverged => "its copy diverged from the primary's",
            Self::EventTooLarge => {
                "the primary cannot send a binary log event larger than max_allowed_packet: \
                 raise max_allowed_packet (spec.mysqlConfig)"
            }
            Self::SourceLogDamaged => {
                "the primary's binary log is damaged where the replica needs it: check the \
                 primary's error log; a fresh copy would stop at the same place"
            }
        }
    }
}

impl Replication {
    /// Why the source refuses to stream to this replica, when it does:
    /// the fatal source errors (1236 on both flavors, 13114 on MySQL 8.0.26+)
    /// told apart by their message, since not all of them mean divergence.
    pub fn source_refusal(&self) -> Option<SourceRefusal> {
        if !matches!(
            self.io_errno,
            ER_SOURCE_FATAL_ERROR_READING_BINLOG | ER_SERVER_SOURCE_FATAL_ERROR_READING_BINLOG
        ) {
            return None;
        }
        let message = self
            .io_error
            .as_deref()
            .unwrap_or_default()
            .to_ascii_lowercase();
        Some(if message.contains("max_allowed_packet") {
            SourceRefusal::EventTooLarge
        } else if [
            "truncated",
            "corrupt",
            "checksum",
            "bogus data",
            "wrong magic",
        ]
        .iter()
        .any(|m| message.contains(m))
        {
            SourceRefusal::SourceLogDamaged
        } else {
            SourceRefusal::Diverged
        })
    }

    /// The copies diverged (see [`Replication::source_refusal`]).
    pub fn diverged(&self) -> bool {
        self.source_refusal() == Some(SourceRefusal::Diverged)
    }
}

/// `ER_MASTER_FATAL_ERROR_READING_BINLOG` / `ER_SOURCE_FATAL_ERROR_READING_BINLOG`.
pub const ER_SOURCE_FATAL_ERROR_READING_BINLOG: u32 = 1236;
/// MySQL's `ER_SERVER_SOURCE_FATAL_ERROR_READING_BINLOG` (8.0.26+).
pub const ER_SERVER_SOURCE_FATAL_ERROR_READING_BINLOG: u32 = 13114;

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(errno: u32, message: &str) -> Option<SourceRefusal> {
        Replication {
            source_host: "db-0".to_owned(),
            io_running: false,
            io_errno: errno,
            io_error: Some(message.to_owned()),
            sql_running: true,
            sql_error: None,
            lag_seconds: None,
            received: None,
        }
        .source_refusal()
    }

    #[test]
    fn fatal_source_errors_are_told_apart_by_their_message() {
        // MariaDB 10.11 and MySQL 8.4 wordings.
        for (errno, message) in [
            (
                1236,
                "Got fatal error 1236 from master when reading data from binary log: 'Error: connecting slave requested to start from GTID 0-100-12, which is not in the master's binlog'",
            ),
            (
                1236,
                "Got fatal error 1236 from master when reading data from binary log: 'Could not find GTID state requested by slave in any binlog files. Probably the slave state is too old and required binlog files have been purged.'",
            ),
            (
                13114,
                "Got fatal error 1236 from source when reading data from binary log: 'Cannot replicate because the source purged required binary logs.'",
            ),
            (
                13114,
                "Got fatal error 1236 from source when reading data from binary log: 'Slave has more GTIDs than the master has, using the master's SERVER_UUID.'",
            ),
        ] {
            assert_eq!(
                refused(errno, message),
                Some(SourceRefusal::Diverged),
                "{message}"
            );
        }
        assert_eq!(
            refused(
                1236,
                "Got fatal error 1236 from master when reading data from binary log: 'log event entry exceeded max_allowed_packet; Increase max_allowed_packet on master'"
            ),
            Some(SourceRefusal::EventTooLarge)
        );
        assert_eq!(
            refused(
                13114,
                "Got fatal error 1236 from source when reading data from binary log: 'binlog truncated in the middle of event; consider out of disk space on source'"
            ),
            Some(SourceRefusal::SourceLogDamaged)
        );
        assert_eq!(refused(2003, "Can't connect to server"), None);
        assert_eq!(refused(0, ""), None);
    }
}

/// The operator's account on the servers.
#[derive(Clone)]
pub struct OperatorAccount {
    /// User name.
    pub user: String,
    /// Password (never logged).
    pub password: String,
}

impl OperatorAccount {
    /// How to connect to the server at `ip` (its pod IP) as the operator.
    pub fn opts(&self, ip: &str) -> mysql_async::OptsBuilder {
        mysql_async::OptsBuilder::default()
            .ip_or_hostname(ip.to_owned())
            .tcp_port(ebisu_api::names::MYSQL_PORT)
            .user(Some(self.user.clone()))
            .pass(Some(self.password.clone()))
            .prefer_socket(false)
    }
}

impl std::fmt::Debug for OperatorAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OperatorAccount")
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

/// The accounts the operator uses on the servers, from the credentials Secret.
pub struct Accounts {
    /// The operator's own account.
    pub operator: OperatorAccount,
    /// The account replicas replicate as.
    pub replication: ebisu_mysql::Credentials,
    /// Service users whose sessions a fence keeps.
    pub service_users: Vec<ebisu_mysql::UserName>,
    /// The token agents want before they serve a clone or take a re-seed request.
    pub clone_token: Option<String>,
}

impl std::fmt::Debug for Accounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the token or a password.
        f.debug_struct("Accounts")
            .field("operator", &self.operator)
            .field("service_users", &self.service_users)
            .finish_non_exhaustive()
    }
}
