//! The per-pod helper of an ebisu instance.
//!
//! - `install` copies the binary into the pod so containers of the server's
//!   image can run it (their backup tools then match the server's version).
//! - `init` gives the server its identity (server id from the pod ordinal,
//!   report host), writes its my.cnf, and fills an empty data directory:
//!   bootstrapping the cluster's first server, or copying a peer's data.
//! - `agent` runs beside the server: health, readiness, status, metrics,
//!   clone streams to peers, and replication setup after a copy.
//! - `pre-stop` holds a deleted primary's server up until the operator has
//!   moved the primary away.
//!
//! The sidecar acts only on its own pod's server and data directory. It never
//! decides who is primary and never makes a server writable: that is the
//! operator's job. It must not log credentials.

pub mod agent;
pub mod backup_tool;
pub mod clone_stream;
pub mod credentials;
pub mod data_owner;
pub mod donor;
pub mod identity;
pub mod init;
pub mod install;
pub mod pre_stop;
pub mod seed_marker;
pub mod server;
pub mod server_config;
pub mod set_aside;
