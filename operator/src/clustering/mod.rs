//! Clustering: keep exactly one writable primary and every other server a
//! read-only replica of it, move the primary when its node is drained or
//! its pod deleted, roll pods onto a changed spec, and fail over when it is lost without losing an
//! acknowledged write. `observe` reads each server (SQL and the agent's
//! `/status`) with its pod and node; `decide` is a pure function from that
//! to ordered steps; `execute` runs the steps in order and `act` does each
//! action; `pass` strings them together for a reconcile; `prober` notices
//! a silent primary between reconciles.

pub mod act;
pub mod decide;
pub mod execute;
pub mod observe;
pub mod pass;
pub mod prober;
pub mod state;

pub use decide::{
    Action, Again, BlockedWhy, Decision, Input, Policy, Problem, Rollout, SemiSyncPolicy,
    SwitchoverRequest, decide,
};
pub use state::{Answer, NodeFacts, Replication, ServerState};
