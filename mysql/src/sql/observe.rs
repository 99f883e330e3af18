//! The queries the operator and the sidecar use to observe a server:
//! version, replica status, the GTIDs it holds, whether it is fenced, and
//! waiting until it has applied a GTID set.
//!
//! Which GTID variable means "what this server has" (the value compared
//! between servers to pick a failover candidate and to find errant
//! transactions):
//! - MySQL: `gtid_executed`, every transaction applied or written here,
//!   binary log or not.
//! - MariaDB: `gtid_current_pos`. It is `gtid_slave_pos` (what replication
//!   applied), overridden per domain by this server's own later writes in
//!   its binary log. `gtid_binlog_pos` is wrong for a freshly restored copy:
//!   its binary log starts empty, so it reports nothing for every domain
//!   until new transactions arrive (seen on MariaDB 10.11), and a caught-up
//!   replica would look empty. Requires `log_slave_updates=ON` and
//!   `gtid_strict_mode=ON` on every server, which ebisu's config sets.
//!
//! The queries run against real MariaDB 10.11 and MySQL 9.7 servers in the
//! data-plane and end-to-end tests.

use super::SqlError;
use super::quote::quote_literal;
use crate::flavor::Flavor;
use crate::gtid::GtidSet;

/// The server's version string, for [`Flavor::from_server_version`].
pub const VERSION_QUERY: &str = "SELECT VERSION()";

impl Flavor {
    /// How many heartbeats the replica's receiver has got from its source,
    /// one number (none on a server that is no replica). A source sends one
    /// every [`crate::sql::HEARTBEAT_PERIOD`] when it has no event to send;
    /// the count survives a stop and start of the receiver and restarts at
    /// zero when replication is repointed.
    pub fn received_heartbeats_query(self) -> &'static str {
        match self {
            Flavor::MariaDb => {
                "SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS \
                 WHERE VARIABLE_NAME = 'SLAVE_RECEIVED_HEARTBEATS'"
            }
            Flavor::MySql80 | Flavor::MySql84 => {
                "SELECT COUNT_RECEIVED_HEARTBEATS FROM \
                 performance_schema.replication_connection_status LIMIT 1"
            }
        }
    }

    /// Replica status, parsed by [`crate::ReplicaStatus::from_row`]. No row
    /// means the server is not configured as a replica.
    pub fn replica_status_query(self) -> &'static str {
        match self {
            Flavor::MariaDb => "SHOW SLAVE STATUS",
            Flavor::MySql80 | Flavor::MySql84 => "SHOW REPLICA STATUS",
        }
    }

    /// One row, one column: the GTIDs this server holds (see the module
    /// docs for why these variables), parsed with [`GtidSet::parse`].
    pub fn gtid_executed_query(self) -> &'static str {
        match self {
            Flavor::MariaDb => "SELECT @@GLOBAL.gtid_current_pos",
            Flavor::MySql80 | Flavor::MySql84 => "SELECT @@GLOBAL.gtid_executed",
        }
    }

    /// The server's own binary log position: file in the first column,
    /// offset in the second (`SHOW MASTER STATUS` is gone from MySQL 8.4).
    pub fn binlog_position_query(self) -> &'static str {
        match self {
            Flavor::MariaDb | Flavor::MySql80 => "SHOW MASTER STATUS",
            Flavor::MySql84 => "SHOW BINARY LOG STATUS",
        }
    }

    /// The variable that fences the server from client writes.
    pub fn fence_variable(self) -> &'static str {
        match self {
            Flavor::MariaDb => "read_only",
            Flavor::MySql80 | Flavor::MySql84 => "super_read_only",
        }
    }

    /// One row, one column: 1 when fenced, 0 when writable.
    pub fn fence_state_query(self) -> &'static str {
        match self {
            Flavor::MariaDb => "SELECT @@GLOBAL.read_only",
            Flavor::MySql80 | Flavor::MySql84 => "SELECT @@GLOBAL.super_read_only",
        }
    }

    /// Blocks until the server has applied `gtid` or `timeout_secs` pass.
    /// One row, one column: MySQL `WAIT_FOR_EXECUTED_GTID_SET` returns 0 when
    /// reached and 1 on timeout; MariaDB `MASTER_GTID_WAIT` returns 0 when
    /// reached and -1 on timeout. [`Flavor::gtid_wait_succeeded`] reads it.
    pub fn wait_for_gtid_query(
        self,
        gtid: &GtidSet,
        timeout_secs: u32,
    ) -> Result<String, SqlError> {
        if !gtid.matches_flavor(self) {
            return Err(SqlError::GtidFlavorMismatch {
                flavor: self,
                gtid: gtid.to_string(),
            });
        }
        let gtid = quote_literal(&gtid.to_string());
        Ok(match self {
            Flavor::MariaDb => format!("SELECT MASTER_GTID_WAIT({gtid}, {timeout_secs})"),
            Flavor::MySql80 | Flavor::MySql84 => {
                format!("SELECT WAIT_FOR_EXECUTED_GTID_SET({gtid}, {timeout_secs})")
            }
        })
    }

    /// Whether the value returned by [`Flavor::wait_for_gtid_query`] means
    /// the GTIDs were applied (0 on both flavors; NULL, which both return on
    /// bad input, arrives here as `None`).
    pub fn gtid_wait_succeeded(self, result: Option<i64>) -> bool {
        result == Some(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replica_status_query_uses_each_flavors_words() {
        assert_eq!(Flavor::MariaDb.replica_status_query(), "SHOW SLAVE STATUS");
        assert_eq!(
            Flavor::MySql80.replica_status_query(),
            "SHOW REPLICA STATUS"
        );
        assert_eq!(
            Flavor::MySql84.replica_status_query(),
            "SHOW REPLICA STATUS"
        );
    }

    #[test]
    fn mariadb_compares_servers_by_gtid_current_pos() {
        assert_eq!(
            Flavor::MariaDb.gtid_executed_query(),
            "SELECT @@GLOBAL.gtid_current_pos"
        );
        assert_eq!(
            Flavor::MySql84.gtid_executed_query(),
            "SELECT @@GLOBAL.gtid_executed"
        );
    }

    #[test]
    fn fence_state_reads_the_fencing_variable() {
        for flavor in [Flavor::MySql80, Flavor::MySql84, Flavor::MariaDb] {
            assert!(
                flavor
                    .fence_state_query()
                    .ends_with(flavor.fence_variable())
            );
        }
        assert_eq!(Flavor::MySql80.fence_variable(), "super_read_only");
        assert_eq!(Flavor::MariaDb.fence_variable(), "read_only");
    }

    #[test]
    fn wait_for_gtid_uses_each_flavors_function() {
        let mariadb = GtidSet::parse(Flavor::MariaDb, "0-1-17").unwrap();
        assert_eq!(
            Flavor::MariaDb.wait_for_gtid_query(&mariadb, 5).unwrap(),
            "SELECT MASTER_GTID_WAIT('0-1-17', 5)"
        );
        let mysql =
            GtidSet::parse(Flavor::MySql80, "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5").unwrap();
        assert_eq!(
            Flavor::MySql80.wait_for_gtid_query(&mysql, 30).unwrap(),
            "SELECT WAIT_FOR_EXECUTED_GTID_SET('3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5', 30)"
        );
        assert!(Flavor::MySql80.wait_for_gtid_query(&mariadb, 5).is_err());
    }

    #[test]
    fn gtid_wait_succeeds_only_on_zero() {
        assert!(Flavor::MariaDb.gtid_wait_succeeded(Some(0)));
        assert!(!Flavor::MariaDb.gtid_wait_succeeded(Some(-1)));
        assert!(!Flavor::MySql80.gtid_wait_succeeded(Some(1)));
        assert!(!Flavor::MySql80.gtid_wait_succeeded(None));
    }
}
