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
    /// The pod's server container has started at least once (its volume
    /// was seeded; it may have acknowledged writes).
    pub server_started: bool,
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
            server_started: false,
        }
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
    /// The applier thread runs.
    pub sql_running: bool,
    /// The applier's last error: data trouble, never repaired blindly.
    pub sql_error: Option<String>,
    /// Seconds behind.
    pub lag_seconds: Option<u64>,
    /// GTIDs received from the source (applied or not).
    pub received: Option<GtidSet>,
}

impl Replication {
    /// The source refused to stream because this server holds transactions
    /// the source lacks or wants ones it purged (error 1236 on both flavors):
    /// the copies diverged.
    pub fn diverged(&self) -> bool {
        self.io_errno == ER_SOURCE_FATAL_ERROR_READING_BINLOG
    }
}

/// `ER_MASTER_FATAL_ERROR_READING_BINLOG` / `ER_SOURCE_FATAL_ERROR_READING_BINLOG`.
pub const ER_SOURCE_FATAL_ERROR_READING_BINLOG: u32 = 1236;

/// The operator's account on the servers.
#[derive(Clone)]
pub struct OperatorAccount {
    /// User name.
    pub user: String,
    /// Password (never logged).
    pub password: String,
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
