//! The shared vocabulary at the bottom of the operator: what it observed
//! about servers, pods and nodes (with one reader per fact), the problems
//! any feature reports, and the keys Kubernetes and AWS own. Pure, and it
//! imports nothing from the crate: every layer above may use it.

pub mod ebs_driver;
pub mod lease;
pub mod objects;
pub mod problem;
pub mod server;
pub mod well_known;

pub use ebs_driver::EbsDriver;
pub use lease::LeaseView;
pub use objects::{ClusterObjects, DataRecord};
pub use problem::{BlockedWhy, Problem};
pub use server::{
    Accounts, Answer, NodeFacts, OperatorAccount, Replication, ServerState, SourceRefusal,
};
