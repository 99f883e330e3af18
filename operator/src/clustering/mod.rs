//! Clustering: keep exactly one writable primary and every other server a
//! read-only replica of it, move the primary when its node is drained or
//! its pod deleted, roll pods onto a changed spec, and fail over when it is
//! lost without losing an acknowledged write. `observe` reads each server
//! (SQL and the agent's `/status`) with its pod and node; `policy` turns
//! the spec into what decisions take; `decide` is a pure function from
//! that to ordered steps; `execute` runs the steps in order and `act` does
//! each server and pod action; `prober` notices a silent primary between
//! reconciles. The rounds of observe -> decide -> execute that make one
//! pass are the reconcile's (`reconcile::pass`), which also records what
//! the decisions remember in status; what a pass found is a [`PassReport`].

pub mod act;
pub mod decide;
pub mod execute;
pub mod observe;
pub mod policy;
pub mod prober;

pub use decide::{
    Action, Again, Decision, FORCED_FAILOVER_REFUSAL, Input, Policy, Rollout, SwitchoverRequest,
    decide,
};

use ebisu_api::{ClusteringMemory, OperationKind, RoleChange};

use crate::model::Problem;
use observe::ObservedServer;

/// What a clustering pass leaves for status and the next reconcile.
#[derive(Debug, Default)]
pub struct PassReport {
    /// The primary the last decision settled on.
    pub primary: Option<String>,
    /// The servers as last observed.
    pub servers: Vec<ObservedServer>,
    /// What the operator will not repair by itself.
    pub problems: Vec<Problem>,
    /// What to remember.
    pub memory: ClusteringMemory,
    /// Changes of primary completed in this pass.
    pub completed: Vec<(OperationKind, RoleChange)>,
    /// Something was done, or is under way.
    pub acted: bool,
    /// When to look again.
    pub again: Option<Again>,
    /// Where a rolling update stands, when the servers were looked at.
    pub rollout: Option<Rollout>,
    /// The MySQLCluster as the pass last read or wrote it: status is
    /// written over this version, or not at all.
    pub cluster: Option<ebisu_api::MySQLCluster>,
}

impl PassReport {
    /// What the pass knows without looking at the servers: the memory kept
    /// in status (when the servers cannot be asked, such as without
    /// credentials).
    pub fn remembered(memory: ClusteringMemory) -> Self {
        Self {
            memory,
            ..Self::default()
        }
    }

    /// Transactions each errant server holds that the primary lacks.
    pub fn errant(&self, pod: &str) -> Option<&str> {
        self.problems.iter().find_map(|p| match p {
            Problem::ErrantTransactions { pod: errant, gtids } if errant == pod => {
                Some(gtids.as_str())
            }
            _ => None,
        })
    }
}
