//! What the operator observed about one server, in the shape decisions take.

use ebisu_api::InstanceRole;
use ebisu_mysql::GtidSet;

/// One server as observed.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerState {
    /// Pod name.
    pub pod: String,
    /// Host other servers replicate from (the pod's DNS name).
    pub host: String,
    /// The pod's `ebisu.dev/role` label.
    pub role_label: Option<InstanceRole>,
    /// The server answered; when false the fields below are unknown.
    pub reachable: bool,
    /// `read_only` / `super_read_only` is on.
    pub read_only: bool,
    /// Executed GTIDs.
    pub gtid: Option<GtidSet>,
    /// Replication, when a source is configured.
    pub replication: Option<Replication>,
    /// Semi-sync source (master) side enabled.
    pub semi_sync_source: bool,
    /// Semi-sync replica (slave) side enabled.
    pub semi_sync_replica: bool,
    /// A fresh copy whose agent has not applied its recorded position yet
    /// (or an agent that did not say): its replication is the agent's to set up.
    pub seed_pending: bool,
}

/// A server's replication, as observed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replication {
    /// Host it replicates from.
    pub source_host: String,
    /// The receiver thread is connected or connecting.
    pub io_running: bool,
    /// The applier thread runs.
    pub sql_running: bool,
    /// The applier's last error: data trouble, never repaired blindly.
    pub sql_error: Option<String>,
    /// Seconds behind.
    pub lag_seconds: Option<u64>,
}
