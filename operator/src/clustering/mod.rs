//! Clustering: keep exactly one writable primary and every other server a
//! read-only replica of it. `observe` reads each server (SQL and the agent's
//! `/status`), `decide` is a pure function from what was observed to actions
//! and problems, `act` carries the actions out. This part repairs drift; it
//! never promotes a replica (failover and switchover come later) and never
//! re-joins a server that holds transactions the primary lacks.

pub mod act;
pub mod decide;
pub mod observe;
pub mod state;

pub use decide::{Action, Decision, Problem, decide};
pub use state::{Replication, ServerState};
