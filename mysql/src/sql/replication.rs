//! Pointing a server at its replication source with GTID auto-positioning,
//! seeding the position of a freshly restored copy, and stopping/forgetting
//! replication.
//!
//! The statements run against real MariaDB 10.11 and MySQL 9.7 servers in
//! the data-plane and end-to-end tests.

use super::SqlError;
use super::credentials::Credentials;
use super::quote::{quote_literal, validate_host};
use crate::flavor::Flavor;
use crate::gtid::GtidSet;

/// Seconds between reconnection attempts when none is given. Short, so a
/// replica is back within a second of its source restarting: with
/// semi-sync the primary's commits wait for a replica to reconnect.
pub const DEFAULT_CONNECT_RETRY_SECS: u32 = 1;

/// How many reconnection attempts MySQL makes before the I/O thread gives up:
/// MySQL 8.0's documented default, written out so a lost primary does not
/// stop replicas for good whatever the server's default is. MariaDB 10.x
/// takes this from the server option `master_retry_count` (default 100000),
/// not from `CHANGE MASTER`.
pub const MYSQL_SOURCE_RETRY_COUNT: u32 = 86_400;

/// How often a source sends a replica a heartbeat when it has no event to
/// send: each replica's agent times what it last got from its source (an
/// event or a heartbeat) to say whether it still hears it, so the period
/// bounds how soon a silent source is told from an idle one.
pub const HEARTBEAT_PERIOD: &str = "0.5";

/// Where a replica streams from, and as whom.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicationSource {
    host: String,
    port: u16,
    credentials: Credentials,
    connect_retry_secs: u32,
}

impl ReplicationSource {
    /// Validates the host (a DNS name or IP address) and port (not 0).
    pub fn new(host: &str, port: u16, credentials: Credentials) -> Result<Self, SqlError> {
        validate_host(host)?;
        if port == 0 {
            return Err(SqlError::InvalidPort);
        }
        Ok(Self {
            host: host.to_owned(),
            port,
            credentials,
            connect_retry_secs: DEFAULT_CONNECT_RETRY_SECS,
        })
    }

    /// Sets the seconds between reconnection attempts (at least 1).
    pub fn with_connect_retry(mut self, secs: u32) -> Self {
        self.connect_retry_secs = secs.max(1);
        self
    }

    /// The source's host.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The source's port.
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Flavor {
    /// Replicates from `source` with GTID auto-positioning: stops any
    /// running replication, repoints, starts. Also right for repointing
    /// after a switchover.
    ///
    /// On MariaDB the replica position is first set to
    /// `@@GLOBAL.gtid_current_pos`: for a server that was a primary this adds
    /// the transactions it wrote itself (which `gtid_slave_pos` lacks, so it
    /// would otherwise ask for them again), and for a replica or a fresh
    /// copy it changes nothing. A server holding transactions the source
    /// lacks is then refused by the source (error 1236) instead of silently
    /// diverging. Errant transactions must still be checked first.
    ///
    /// To receive semi-sync acknowledgements correctly, apply
    /// [`Flavor::semi_sync_as_replica`] before this.
    pub fn start_replication(self, source: &ReplicationSource) -> Vec<String> {
        let host = quote_literal(&source.host);
        let port = source.port;
        let user = quote_literal(source.credentials.user.as_str());
        let password = quote_literal(source.credentials.password.reveal());
        let retry = source.connect_retry_secs;
        match self {
            Flavor::MariaDb => vec![
                self.stop_replication(),
                "SET GLOBAL gtid_slave_pos = @@GLOBAL.gtid_current_pos".to_owned(),
                format!(
                    "CHANGE MASTER TO MASTER_HOST={host}, MASTER_PORT={port}, \
                     MASTER_USER={user}, MASTER_PASSWORD={password}, \
                     MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY={retry}, \
                     MASTER_HEARTBEAT_PERIOD={HEARTBEAT_PERIOD}"
                ),
                self.start_replica_threads(),
            ],
            Flavor::MySql80 | Flavor::MySql84 => vec![
                self.stop_replication(),
                format!(
                    "CHANGE REPLICATION SOURCE TO SOURCE_HOST={host}, SOURCE_PORT={port}, \
                     SOURCE_USER={user}, SOURCE_PASSWORD={password}, \
                     SOURCE_AUTO_POSITION=1, SOURCE_CONNECT_RETRY={retry}, \
                     SOURCE_RETRY_COUNT={MYSQL_SOURCE_RETRY_COUNT}, GET_SOURCE_PUBLIC_KEY=1, \
                     SOURCE_HEARTBEAT_PERIOD={HEARTBEAT_PERIOD}"
                ),
                self.start_replica_threads(),
            ],
        }
    }

    /// Records that a freshly restored copy already contains `gtid`, so
    /// replication continues after it. Run before the first
    /// [`Flavor::start_replication`], with replication stopped.
    ///
    /// MariaDB sets `gtid_slave_pos`. MySQL empties the binary log and
    /// `gtid_executed` (`RESET MASTER` on 8.0, `RESET BINARY LOGS AND GTIDS`
    /// on 8.4) and sets `gtid_purged`.
    pub fn seed_gtid_position(self, gtid: &GtidSet) -> Result<Vec<String>, SqlError> {
        if !gtid.matches_flavor(self) {
            return Err(SqlError::GtidFlavorMismatch {
                flavor: self,
                gtid: gtid.to_string(),
            });
        }
        let position = quote_literal(&gtid.to_string());
        Ok(match self {
            Flavor::MariaDb => vec![format!("SET GLOBAL gtid_slave_pos = {position}")],
            Flavor::MySql80 => vec![
                "RESET MASTER".to_owned(),
                format!("SET GLOBAL gtid_purged = {position}"),
            ],
            Flavor::MySql84 => vec![
                "RESET BINARY LOGS AND GTIDS".to_owned(),
                format!("SET GLOBAL gtid_purged = {position}"),
            ],
        })
    }

    /// Stops both replication threads (a no-op with a note when stopped).
    pub fn stop_replication(self) -> String {
        match self {
            Flavor::MariaDb => "STOP SLAVE".to_owned(),
            Flavor::MySql80 | Flavor::MySql84 => "STOP REPLICA".to_owned(),
        }
    }

    /// Forgets the replication source entirely (after stopping).
    pub fn reset_replication(self) -> String {
        match self {
            Flavor::MariaDb => "RESET SLAVE ALL".to_owned(),
            Flavor::MySql80 | Flavor::MySql84 => "RESET REPLICA ALL".to_owned(),
        }
    }

    /// Stops only the receiver (I/O) thread: what was received stays in
    /// the relay log for the applier, and the source gets no more
    /// acknowledgements from this replica.
    pub fn stop_receiver(self) -> String {
        match self {
            Flavor::MariaDb => "STOP SLAVE IO_THREAD".to_owned(),
            Flavor::MySql80 | Flavor::MySql84 => "STOP REPLICA IO_THREAD".to_owned(),
        }
    }

    /// Starts only the receiver (I/O) thread.
    pub fn start_receiver(self) -> String {
        match self {
            Flavor::MariaDb => "START SLAVE IO_THREAD".to_owned(),
            Flavor::MySql80 | Flavor::MySql84 => "START REPLICA IO_THREAD".to_owned(),
        }
    }

    /// Stops only the applier (SQL) thread, at a transaction boundary:
    /// the server then holds an exact GTID set while the receiver keeps
    /// acknowledging the source.
    pub fn stop_applier(self) -> String {
        match self {
            Flavor::MariaDb => "STOP SLAVE SQL_THREAD".to_owned(),
            Flavor::MySql80 | Flavor::MySql84 => "STOP REPLICA SQL_THREAD".to_owned(),
        }
    }

    /// Points the applier at binary log files laid out as the server's relay
    /// log (`first` names the first, as its index lists it) and starts it
    /// alone, with `workers` parallel workers (0: serial). The source named
    /// is never reached: only the applier runs. For a restore's replay on a
    /// server without networking.
    pub fn apply_relay_log(self, first: &str, workers: u32) -> Vec<String> {
        let file = quote_literal(first);
        match self {
            Flavor::MariaDb => vec![
                format!("SET GLOBAL slave_parallel_threads = {workers}"),
                format!(
                    "CHANGE MASTER TO MASTER_HOST = 'replay.invalid', MASTER_USE_GTID = no, \
                     RELAY_LOG_FILE = {file}, RELAY_LOG_POS = 4"
                ),
                "START SLAVE SQL_THREAD".to_owned(),
            ],
            Flavor::MySql80 | Flavor::MySql84 => vec![
                format!("SET GLOBAL replica_parallel_workers = {workers}"),
                format!(
                    "CHANGE REPLICATION SOURCE TO SOURCE_HOST = 'replay.invalid', \
                     RELAY_LOG_FILE = {file}, RELAY_LOG_POS = 4"
                ),
                "START REPLICA SQL_THREAD".to_owned(),
            ],
        }
    }

    /// Starts only the applier (SQL) thread: a replica restarted with its
    /// threads stopped applies what its relay log holds, without asking
    /// any source for more.
    pub fn start_applier(self) -> String {
        match self {
            Flavor::MariaDb => "START SLAVE SQL_THREAD".to_owned(),
            Flavor::MySql80 | Flavor::MySql84 => "START REPLICA SQL_THREAD".to_owned(),
        }
    }

    fn start_replica_threads(self) -> String {
        match self {
            Flavor::MariaDb => "START SLAVE".to_owned(),
            Flavor::MySql80 | Flavor::MySql84 => "START REPLICA".to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::credentials::tests::creds;

    fn source() -> ReplicationSource {
        ReplicationSource::new("orders-1.orders", 3306, creds("ebisu_repl", "s3cr'et")).unwrap()
    }

    #[test]
    fn mariadb_replication_uses_slave_pos_gtid() {
        let statements = Flavor::MariaDb.start_replication(&source());
        assert_eq!(
            statements,
            vec![
                "STOP SLAVE".to_owned(),
                "SET GLOBAL gtid_slave_pos = @@GLOBAL.gtid_current_pos".to_owned(),
                "CHANGE MASTER TO MASTER_HOST='orders-1.orders', MASTER_PORT=3306, \
                 MASTER_USER='ebisu_repl', MASTER_PASSWORD='s3cr''et', \
                 MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=1, \
                 MASTER_HEARTBEAT_PERIOD=0.5"
                    .to_owned(),
                "START SLAVE".to_owned(),
            ]
        );
    }

    #[test]
    fn mysql_replication_uses_auto_position_and_requests_public_key() {
        for flavor in [Flavor::MySql80, Flavor::MySql84] {
            let statements = flavor.start_replication(&source().with_connect_retry(5));
            assert_eq!(statements[0], "STOP REPLICA");
            let change = &statements[1];
            assert!(change.starts_with(
                "CHANGE REPLICATION SOURCE TO SOURCE_HOST='orders-1.orders', SOURCE_PORT=3306, "
            ));
            assert!(change.contains("SOURCE_USER='ebisu_repl', SOURCE_PASSWORD='s3cr''et'"));
            assert!(change.contains("SOURCE_AUTO_POSITION=1"));
            assert!(change.contains("SOURCE_CONNECT_RETRY=5"));
            assert!(change.contains("SOURCE_RETRY_COUNT=86400"));
            assert!(change.contains("GET_SOURCE_PUBLIC_KEY=1"));
            assert!(change.contains("SOURCE_HEARTBEAT_PERIOD=0.5"));
            assert!(!change.contains("MASTER"));
            assert_eq!(statements[2], "START REPLICA");
        }
    }

    #[test]
    fn a_relay_log_is_applied_by_the_applier_alone() {
        assert_eq!(
            Flavor::MariaDb.apply_relay_log("relay-bin.000001", 0),
            [
                "SET GLOBAL slave_parallel_threads = 0",
                "CHANGE MASTER TO MASTER_HOST = 'replay.invalid', MASTER_USE_GTID = no, \
                 RELAY_LOG_FILE = 'relay-bin.000001', RELAY_LOG_POS = 4",
                "START SLAVE SQL_THREAD",
            ]
        );
        let mysql = Flavor::MySql84.apply_relay_log("relay-bin.000001", 4);
        assert_eq!(mysql[0], "SET GLOBAL replica_parallel_workers = 4");
        assert!(
            mysql[1].starts_with("CHANGE REPLICATION SOURCE TO SOURCE_HOST = 'replay.invalid'")
        );
        assert!(mysql[1].ends_with("RELAY_LOG_FILE = 'relay-bin.000001', RELAY_LOG_POS = 4"));
        assert_eq!(mysql[2], "START REPLICA SQL_THREAD");
        assert!(
            Flavor::MySql84.apply_relay_log("x'y", 0)[1].contains("'x''y'"),
            "the file name is quoted"
        );
    }

    #[test]
    fn connect_retry_is_at_least_one_second() {
        let statements = Flavor::MariaDb.start_replication(&source().with_connect_retry(0));
        assert!(statements[2].contains("MASTER_CONNECT_RETRY=1"));
    }

    #[test]
    fn replication_source_refuses_bad_host_and_port_zero() {
        assert!(matches!(
            ReplicationSource::new("h'; --", 3306, creds("r", "p")),
            Err(SqlError::InvalidHost { .. })
        ));
        assert_eq!(
            ReplicationSource::new("h", 0, creds("r", "p")),
            Err(SqlError::InvalidPort)
        );
    }

    #[test]
    fn mariadb_seed_sets_gtid_slave_pos() {
        let gtid = GtidSet::parse(Flavor::MariaDb, "0-1-5,1-2-9").unwrap();
        assert_eq!(
            Flavor::MariaDb.seed_gtid_position(&gtid).unwrap(),
            vec!["SET GLOBAL gtid_slave_pos = '0-1-5,1-2-9'".to_owned()]
        );
    }

    #[test]
    fn mysql80_seed_resets_master_then_sets_gtid_purged() {
        let gtid =
            GtidSet::parse(Flavor::MySql80, "3E11FA47-71CA-11E1-9E33-C80AA9429562:1-5").unwrap();
        assert_eq!(
            Flavor::MySql80.seed_gtid_position(&gtid).unwrap(),
            vec![
                "RESET MASTER".to_owned(),
                "SET GLOBAL gtid_purged = '3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5'".to_owned(),
            ]
        );
    }

    #[test]
    fn mysql84_seed_uses_reset_binary_logs_and_gtids() {
        let gtid =
            GtidSet::parse(Flavor::MySql84, "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5").unwrap();
        let statements = Flavor::MySql84.seed_gtid_position(&gtid).unwrap();
        assert_eq!(statements[0], "RESET BINARY LOGS AND GTIDS");
        assert!(statements[1].starts_with("SET GLOBAL gtid_purged = '3e11fa47"));
    }

    #[test]
    fn seeding_with_the_other_flavors_gtid_is_an_error() {
        let gtid = GtidSet::parse(Flavor::MariaDb, "0-1-5").unwrap();
        assert!(matches!(
            Flavor::MySql80.seed_gtid_position(&gtid),
            Err(SqlError::GtidFlavorMismatch { .. })
        ));
    }

    #[test]
    fn stop_and_reset_use_each_flavors_words() {
        assert_eq!(Flavor::MariaDb.stop_replication(), "STOP SLAVE");
        assert_eq!(Flavor::MariaDb.reset_replication(), "RESET SLAVE ALL");
        assert_eq!(Flavor::MySql80.stop_replication(), "STOP REPLICA");
        assert_eq!(Flavor::MySql84.reset_replication(), "RESET REPLICA ALL");
    }

    #[test]
    fn receiver_alone_is_stopped_and_started_in_each_flavors_words() {
        assert_eq!(Flavor::MariaDb.stop_receiver(), "STOP SLAVE IO_THREAD");
        assert_eq!(Flavor::MySql84.stop_receiver(), "STOP REPLICA IO_THREAD");
        assert_eq!(Flavor::MariaDb.start_receiver(), "START SLAVE IO_THREAD");
        assert_eq!(Flavor::MySql80.start_receiver(), "START REPLICA IO_THREAD");
    }
}
