//! The sidecar agent's HTTP API: what `/status` answers, shared by the agent
//! (which serves it), by peers choosing a clone donor, and by the operator.

use serde::{Deserialize, Serialize};

pub use crate::cluster::InstanceRole;

/// Path of the liveness endpoint (the agent process is alive).
pub const PATH_HEALTHZ: &str = "/healthz";
/// Path of the readiness endpoint (the server accepts queries; never about lag).
pub const PATH_READYZ: &str = "/readyz";
/// Path of the status endpoint.
pub const PATH_STATUS: &str = "/status";
/// Path of the Prometheus metrics endpoint.
pub const PATH_METRICS: &str = "/metrics";
/// Path of the clone stream endpoint.
pub const PATH_CLONE: &str = "/clone";
/// Path of the re-seed request (`POST`, bearer clone token): the data is
/// set aside and copied afresh when the pod next starts.
pub const PATH_RESEED: &str = "/reseed";
/// Path of the archive assignment (`POST` [`ArchiveAssignment`], bearer
/// clone token): archive this server's binary logs for a while; answers
/// [`ArchiveProgress`].
pub const PATH_ARCHIVE: &str = "/archive";

/// Path of the agent's binary log purge (`POST`, a [`BinlogPurge`]).
pub const PATH_BINLOG_PURGE: &str = "/binlogs/purge";

/// Path of the table checks (`POST` [`TableCheckRequest`], bearer clone
/// token): checksums (and `CHECK TABLE`) of a sample of the server's
/// tables, all at one GTID set; answers [`TableCheck`].
pub const PATH_TABLE_CHECK: &str = "/tables/check";

/// Response header of `/readyz` on a server whose semi-sync source side is
/// enabled: [`SEMI_SYNC_WAITING`] while commits wait for a replica's
/// acknowledgement, [`SEMI_SYNC_FALLEN_BACK`] after a timeout made it
/// asynchronous. The operator's probe reads it so that a primary that
/// stopped waiting is known within a probe period, not a reconcile period.
pub const HEADER_SEMI_SYNC: &str = "ebisu-semi-sync";
/// [`HEADER_SEMI_SYNC`]: commits wait for an acknowledgement.
pub const SEMI_SYNC_WAITING: &str = "waiting";
/// [`HEADER_SEMI_SYNC`]: commits no longer wait (fell back to asynchronous).
pub const SEMI_SYNC_FALLEN_BACK: &str = "fallen-back";

/// Response header of `/readyz`: [`SERVER_WRITABLE`] or [`SERVER_READ_ONLY`],
/// so the operator's probe learns at once that its primary was fenced (by
/// its own agent, say) and reconciles it rather than at the next period.
pub const HEADER_SERVER: &str = "ebisu-server";
/// [`HEADER_SERVER`]: the server takes writes.
pub const SERVER_WRITABLE: &str = "writable";
/// [`HEADER_SERVER`]: the server is read-only.
pub const SERVER_READ_ONLY: &str = "read-only";

/// Why the operator asks for a re-seed.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ReseedRequest {
    /// What is wrong with the data (errant GTIDs, divergence).
    pub reason: String,
}

/// The operator's word to the one agent that archives the binary logs.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ArchiveAssignment {
    /// The S3 bucket.
    pub bucket: String,
    /// The key prefix every object of the cluster's archive is under.
    pub prefix: String,
    /// How long the agent archives unless told again, in seconds: an
    /// operator that stops asking (another archiver chosen, or gone) stops
    /// it.
    pub seconds: u64,
}

/// The operator's word to every agent on which of its server's binary log
/// files may go: each file older than `expire_seconds` whose transactions
/// every one of `held_by` holds, up to the first that may not.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct BinlogPurge {
    /// GTID sets in the flavor's notation (the archive's, each answering
    /// instance's): a file goes only when all of them hold its
    /// transactions.
    pub held_by: Vec<String>,
    /// How old the newest byte of a file must be, in seconds.
    pub expire_seconds: u64,
}

/// What a purge did.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct BinlogPurged {
    /// The files purged by this call.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub purged: Vec<String>,
    /// How many files the server keeps.
    pub kept: usize,
}

/// The operator's word to a restored cluster's first instance, in its
/// ConfigMap (key `replay`) until the restore is done: replay the archive
/// from the backup to the target before the server opens.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ReplayOrder {
    /// The pod that replays (the others are copied from it).
    pub pod: String,
    /// The archive's S3 bucket.
    pub bucket: String,
    /// Its key prefix.
    pub prefix: String,
    /// The GTID set the backup holds.
    pub backup_gtid_set: String,
    /// The target time, microseconds since the epoch...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_us: Option<i64>,
    /// ...or the target GTID set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gtid_set: Option<String>,
}

/// The operator's word to an agent to check tables (a restore being
/// verified, or a replica whose tables it is compared with).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct TableCheckRequest {
    /// Stop the server's applier while the checksums are taken, so they are
    /// all of one GTID set, and answer only once this agent's archive holds
    /// that set (a replica that archives); the applier is started again.
    #[serde(default)]
    pub hold: bool,
    /// The tables to check; when empty, up to `sample` of the server's own
    /// (outside the system schemas), spread evenly over them by name.
    #[serde(default)]
    pub tables: Vec<TableName>,
    /// How many tables to pick when `tables` is empty.
    #[serde(default)]
    pub sample: u32,
    /// Also run `CHECK TABLE` on each.
    #[serde(default)]
    pub check: bool,
}

/// A table.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct TableName {
    /// Its schema (database).
    pub schema: String,
    /// Its name.
    pub name: String,
}

impl std::fmt::Display for TableName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.schema, self.name)
    }
}

/// What the table checks found.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct TableCheck {
    /// The server's GTID set while the checksums were taken.
    pub gtid_set: String,
    /// Each table checked.
    pub tables: Vec<TableSum>,
}

/// One table's checksum and check.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct TableSum {
    /// The table.
    pub table: TableName,
    /// `CHECKSUM TABLE`'s answer; `None` when the table does not exist.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum: Option<u64>,
    /// `CHECK TABLE`'s verdict when asked: `OK`, or the server's messages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check: Option<String>,
}

/// How far the agent's archive got.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ArchiveProgress {
    /// Every transaction the archive holds, as this agent last read it, in
    /// the flavor's notation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archived: Option<String>,
    /// When the newest archived transaction committed, microseconds since
    /// the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archived_through_us: Option<i64>,
    /// How many segments this agent uploaded since it began.
    #[serde(default)]
    pub segments: u64,
    /// Why the last round failed, while it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Transactions the archive lacks that no binary log of this server
    /// holds any more (purged before they were archived), in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gap: Option<String>,
    /// With `gap`: the GTIDs before this server's oldest binary log, which
    /// hold the gap (a backup holding them makes it harmless).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gap_before: Option<String>,
}

/// What a server says about itself, as `/status` returns it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AgentStatus {
    /// Host name peers reach this server's MySQL port at.
    pub host: String,
    /// MySQL port.
    pub port: u16,
    /// The server answers queries.
    pub server_up: bool,
    /// Role as the server sees it: a replica has a replication source configured;
    /// a primary has none and is writable.
    pub role: InstanceRole,
    /// `read_only` (or `super_read_only` on MySQL) is on.
    pub read_only: bool,
    /// The server's executed GTID set, in its flavor's notation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gtid_executed: Option<String>,
    /// Replication, when the server is a replica.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replication: Option<ReplicationState>,
    /// The data is a fresh copy whose recorded position the agent has not
    /// applied yet: nobody else may point its replication anywhere.
    #[serde(default)]
    pub seed_pending: bool,
    /// MariaDB: the running server's relay log may hold received
    /// transactions nobody applied, and the agent has not applied them yet
    /// (it does after every start of its server). Nobody may start
    /// replication there (that discards the relay log) until it is false.
    #[serde(default)]
    pub relay_log_unread: bool,
    /// Why the relay log could not be applied (error numbers only), while
    /// it cannot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relay_log_error: Option<String>,
    /// The flavor's upgrade step after a start on a new release failed, and
    /// why (it is tried again every few seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upgrade_error: Option<String>,
    /// On a replica: how long ago, in milliseconds, its receiver last got
    /// anything (an event or a heartbeat) from its source, as the agent
    /// timed it; `None` when it is no replica or has not heard its source
    /// since the agent started. The operator's second witness of a lost
    /// primary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_heard_ms_ago: Option<u64>,
    /// The source the receiver last heard (its host).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_heard: Option<String>,
}

/// A replica's replication threads as the server reports them.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ReplicationState {
    /// Host replicated from.
    pub source_host: String,
    /// Port replicated from.
    pub source_port: u16,
    /// The receiver (IO) thread runs: connected or (re)connecting. The
    /// operator reads the same fact the same way.
    pub io_running: bool,
    /// The receiver is connected and streaming.
    #[serde(default)]
    pub io_connected: bool,
    /// The SQL (applier) thread is running.
    pub sql_running: bool,
    /// Seconds behind the source; `None` when the server cannot tell.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag_seconds: Option<u64>,
    /// The last IO or SQL error, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}
