//! What both the operator and the sidecar say to a MySQL or MariaDB server:
//! which flavor it is ([`Flavor`]), the SQL statements that create users,
//! set up and repoint replication, fence, promote and configure semi-sync
//! ([`sql`]), the GTIDs servers hold and how they compare ([`gtid`]), how to
//! read a replica's status ([`ReplicaStatus`]), where a physical backup
//! stands ([`position`]), which transactions a binary log holds
//! ([`binlog`]) and what the binary log archive holds and replays
//! ([`archive`]).
//!
//! It must stay pure: no IO, no connections, no clocks. Callers execute the
//! statements, read the files and pass rows in; everything here is a
//! function of its inputs, so it is unit-tested without a server. The one
//! exception is the `driver` feature: [`driver::read_server`] runs the
//! observation queries on a connection the caller opened, so the operator
//! and the sidecar read a server the same way. The statements run for
//! real in the sidecar's data-plane tests and the end-to-end tests, on
//! MariaDB 10.11 and MySQL 9.7 (8.4's SQL); MySQL 8.0's spellings are
//! unit-tested against the manuals only.

pub mod archive;
pub mod binlog;
#[cfg(feature = "driver")]
pub mod driver;
pub mod flavor;
pub mod gtid;
pub mod position;
pub mod replica_status;
pub mod sql;

pub use flavor::{Flavor, FlavorError, ServerVersion};
pub use gtid::{GtidDifference, GtidError, GtidSet, MariaDbGtidPos, MySqlGtidSet};
pub use position::{BackupPosition, PositionError, parse_binlog_info, parse_slave_info};
pub use replica_status::{GtidPositioning, ReplicaStatus, ReplicaStatusError, ThreadState};
pub use sql::{
    Credentials, Password, ReplicationSource, SemiSync, ServiceRole, ServiceUsers, SqlError,
    UserName,
};
