//! What a replica says about its replication: one row of `SHOW REPLICA
//! STATUS` (MySQL) or `SHOW SLAVE STATUS` (MariaDB), parsed into
//! [`ReplicaStatus`] by a pure function.
//!
//! Columns are looked up by name, case-insensitively, under either
//! vocabulary (`Source_Host` or `Master_Host`, `Replica_IO_Running` or
//! `Slave_IO_Running`, ...), so the same parser reads MySQL 8 and MariaDB
//! rows; the flavor only decides how GTID columns are read. MariaDB rows
//! were checked against MariaDB 10.11; MySQL rows follow the MySQL 8.4
//! manual and are what MySQL 9.7 returns in the end-to-end test.

use std::str::FromStr;

use crate::flavor::Flavor;
use crate::gtid::{GtidError, GtidSet};

/// Why a replica status row could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplicaStatusError {
    /// A column every server reports is absent.
    #[error("failed to read replica status: column {column} is missing")]
    MissingColumn {
        /// The column, in MySQL 8 words.
        column: &'static str,
    },
    /// A column whose value makes no sense.
    #[error("failed to read replica status: column {column} has {value:?}, expected {expected}")]
    InvalidValue {
        /// The column, in MySQL 8 words.
        column: &'static str,
        /// What the server sent.
        value: String,
        /// What was expected.
        expected: &'static str,
    },
    /// A GTID column that does not parse.
    #[error("failed to read replica status: column {column} is not a GTID list: {reason}")]
    Gtid {
        /// The column.
        column: &'static str,
        /// Why it did not parse.
        reason: GtidError,
    },
}

/// State of the replica's receiver (I/O) thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ThreadState {
    /// Connected and streaming.
    Yes,
    /// Stopped, by request or after an error.
    No,
    /// Trying to connect (MariaDB's `Preparing` counts as this).
    Connecting,
}

/// How the replica positions itself on its source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GtidPositioning {
    /// MySQL `SOURCE_AUTO_POSITION=1`.
    AutoPosition,
    /// MariaDB `MASTER_USE_GTID=slave_pos`.
    SlavePos,
    /// MariaDB `MASTER_USE_GTID=current_pos`.
    CurrentPos,
    /// Binary log file and offset: not what ebisu sets up.
    FilePosition,
}

/// One replica's view of its replication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaStatus {
    /// Host it replicates from (empty when the source was reset).
    pub source_host: String,
    /// Port it replicates from.
    pub source_port: u16,
    /// Account it connects as.
    pub source_user: Option<String>,
    /// `server_id` of the source, when connected at least once.
    pub source_server_id: Option<u32>,
    /// Receiver thread state.
    pub io_running: ThreadState,
    /// Whether the applier (SQL) thread runs.
    pub sql_running: bool,
    /// Lag in seconds; `None` means unknown (NULL: not connected or the
    /// applier is stopped), never "caught up".
    pub seconds_behind: Option<u64>,
    /// Last receiver error number (0: none).
    pub last_io_errno: u32,
    /// Last receiver error message.
    pub last_io_error: Option<String>,
    /// Last applier error number (0: none).
    pub last_sql_errno: u32,
    /// Last applier error message.
    pub last_sql_error: Option<String>,
    /// How it positions itself on the source.
    pub positioning: GtidPositioning,
    /// GTIDs received from the source: MySQL `Retrieved_Gtid_Set`, MariaDB
    /// `Gtid_IO_Pos`. Received is not applied.
    pub received_gtid: GtidSet,
    /// GTIDs applied: MySQL `Executed_Gtid_Set`; MariaDB `Gtid_Slave_Pos`,
    /// which only `SHOW ALL SLAVES STATUS` reports (`None` otherwise).
    pub executed_gtid: Option<GtidSet>,
    /// How far the receiver has read the source's binary log, as
    /// `file:position` (`Source_Log_File`, `Read_Source_Log_Pos`): it moves
    /// with every event received, so a change means the source was heard.
    pub read_position: Option<String>,
    /// The applier (its coordinator, with parallel workers) has read all
    /// its relay log and waits for more (`Replica_SQL_Running_State`).
    pub read_all_relay_log: bool,
}

impl ReplicaStatus {
    /// Parses one status row given as (column name, value) pairs; `None`
    /// values are SQL NULL.
    pub fn from_row(
        flavor: Flavor,
        row: &[(String, Option<String>)],
    ) -> Result<Self, ReplicaStatusError> {
        let row = Row(row);
        let positioning = if flavor.is_mariadb() {
            match row.optional(&["Using_Gtid"]) {
                Some(v) if v.eq_ignore_ascii_case("Slave_Pos") => GtidPositioning::SlavePos,
                Some(v) if v.eq_ignore_ascii_case("Current_Pos") => GtidPositioning::CurrentPos,
                _ => GtidPositioning::FilePosition,
            }
        } else if row.optional(&["Auto_Position"]) == Some("1") {
            GtidPositioning::AutoPosition
        } else {
            GtidPositioning::FilePosition
        };
        let (received_column, executed_column) = if flavor.is_mariadb() {
            ("Gtid_IO_Pos", "Gtid_Slave_Pos")
        } else {
            ("Retrieved_Gtid_Set", "Executed_Gtid_Set")
        };
        let gtid = |column: &'static str, text: &str| {
            GtidSet::parse(flavor, text)
                .map_err(|reason| ReplicaStatusError::Gtid { column, reason })
        };
        Ok(Self {
            source_host: row
                .required("Source_Host", &["Source_Host", "Master_Host"])?
                .to_owned(),
            source_port: row.number("Source_Port", &["Source_Port", "Master_Port"])?,
            source_user: row
                .optional(&["Source_User", "Master_User"])
                .filter(|u| !u.is_empty())
                .map(str::to_owned),
            source_server_id: row
                .optional_number(
                    "Source_Server_Id",
                    &["Source_Server_Id", "Master_Server_Id"],
                )?
                .filter(|&id| id != 0),
            io_running: row.io_state()?,
            sql_running: row.yes_no(
                "Replica_SQL_Running",
                &["Replica_SQL_Running", "Slave_SQL_Running"],
            )?,
            seconds_behind: row.optional_number(
                "Seconds_Behind_Source",
                &["Seconds_Behind_Source", "Seconds_Behind_Master"],
            )?,
            last_io_errno: row
                .optional_number("Last_IO_Errno", &["Last_IO_Errno"])?
                .unwrap_or(0),
            last_io_error: row.message(&["Last_IO_Error"]),
            last_sql_errno: row
                .optional_number("Last_SQL_Errno", &["Last_SQL_Errno"])?
                .unwrap_or(0),
            last_sql_error: row.message(&["Last_SQL_Error"]),
            positioning,
            received_gtid: gtid(
                received_column,
                row.optional(&[received_column]).unwrap_or(""),
            )?,
            executed_gtid: row
                .optional(&[executed_column])
                .map(|text| gtid(executed_column, text))
                .transpose()?,
            read_position: match (
                row.optional(&["Source_Log_File", "Master_Log_File"]),
                row.optional(&["Read_Source_Log_Pos", "Read_Master_Log_Pos"]),
            ) {
                (Some(file), Some(pos)) if !file.is_empty() => Some(format!("{file}:{pos}")),
                _ => None,
            },
            read_all_relay_log: row
                .optional(&["Replica_SQL_Running_State", "Slave_SQL_Running_State"])
                .is_some_and(|state| state.contains("read all relay log")),
        })
    }

    /// Both threads running: the replica is streaming and applying.
    pub fn is_replicating(&self) -> bool {
        self.receiver_connected() && self.sql_running
    }

    /// The receiver thread runs: connected, or (re)connecting to its source.
    /// A replica whose receiver runs needs no restart, only patience.
    pub fn receiver_running(&self) -> bool {
        self.io_running != ThreadState::No
    }

    /// The receiver is connected and streaming from its source.
    pub fn receiver_connected(&self) -> bool {
        self.io_running == ThreadState::Yes
    }
}

struct Row<'a>(&'a [(String, Option<String>)]);

impl<'a> Row<'a> {
    /// The value of the first of `names` present; `Some(None)` for NULL.
    fn lookup(&self, names: &[&str]) -> Option<Option<&'a str>> {
        names.iter().find_map(|name| {
            self.0
                .iter()
                .find(|(column, _)| column.eq_ignore_ascii_case(name))
                .map(|(_, value)| value.as_deref())
        })
    }

    fn optional(&self, names: &[&str]) -> Option<&'a str> {
        self.lookup(names).flatten()
    }

    fn required(
        &self,
        column: &'static str,
        names: &[&str],
    ) -> Result<&'a str, ReplicaStatusError> {
        match self.lookup(names) {
            None => Err(ReplicaStatusError::MissingColumn { column }),
            Some(value) => Ok(value.unwrap_or("")),
        }
    }

    /// A message column; empty and NULL both mean no message.
    fn message(&self, names: &[&str]) -> Option<String> {
        self.optional(names)
            .map(str::trim)
            .filter(|m| !m.is_empty())
            .map(str::to_owned)
    }

    fn optional_number<T: FromStr>(
        &self,
        column: &'static str,
        names: &[&str],
    ) -> Result<Option<T>, ReplicaStatusError> {
        match self.optional(names).map(str::trim) {
            None | Some("") => Ok(None),
            Some(text) => text
                .parse()
                .map(Some)
                .map_err(|_| ReplicaStatusError::InvalidValue {
                    column,
                    value: text.to_owned(),
                    expected: "a non-negative number or NULL",
                }),
        }
    }

    fn number<T: FromStr>(
        &self,
        column: &'static str,
        names: &[&str],
    ) -> Result<T, ReplicaStatusError> {
        let text = self.required(column, names)?.trim();
        text.parse().map_err(|_| ReplicaStatusError::InvalidValue {
            column,
            value: text.to_owned(),
            expected: "a number",
        })
    }

    fn yes_no(&self, column: &'static str, names: &[&str]) -> Result<bool, ReplicaStatusError> {
        let value = self.required(column, names)?;
        if value.eq_ignore_ascii_case("Yes") {
            Ok(true)
        } else if value.eq_ignore_ascii_case("No") {
            Ok(false)
        } else {
            Err(ReplicaStatusError::InvalidValue {
                column,
                value: value.to_owned(),
                expected: "Yes or No",
            })
        }
    }

    fn io_state(&self) -> Result<ThreadState, ReplicaStatusError> {
        const COLUMN: &str = "Replica_IO_Running";
        let value = self.required(COLUMN, &[COLUMN, "Slave_IO_Running"])?;
        match value.to_ascii_lowercase().as_str() {
            "yes" => Ok(ThreadState::Yes),
            "no" => Ok(ThreadState::No),
            "connecting" | "preparing" => Ok(ThreadState::Connecting),
            _ => Err(ReplicaStatusError::InvalidValue {
                column: COLUMN,
                value: value.to_owned(),
                expected: "Yes, No, Connecting or Preparing",
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(pairs: &[(&str, Option<&str>)]) -> Vec<(String, Option<String>)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.map(str::to_owned)))
            .collect()
    }

    /// A `SHOW SLAVE STATUS` row as MariaDB 10.11 printed it for a replica
    /// whose source refused its position (abridged).
    fn mariadb_refused_row() -> Vec<(String, Option<String>)> {
        row(&[
            ("Slave_IO_State", Some("")),
            ("Master_Host", Some("127.0.0.1")),
            ("Master_User", Some("repl")),
            ("Master_Port", Some("23306")),
            ("Connect_Retry", Some("10")),
            ("Slave_IO_Running", Some("No")),
            ("Slave_SQL_Running", Some("Yes")),
            ("Last_Errno", Some("0")),
            ("Last_Error", Some("")),
            ("Seconds_Behind_Master", None),
            ("Last_IO_Errno", Some("1236")),
            (
                "Last_IO_Error",
                Some(
                    "Got fatal error 1236 from master when reading data from binary log: 'Error: connecting slave requested to start from GTID 0-2-1, which is not in the master's binlog'",
                ),
            ),
            ("Last_SQL_Errno", Some("0")),
            ("Last_SQL_Error", Some("")),
            ("Master_Server_Id", Some("1")),
            ("Using_Gtid", Some("Slave_Pos")),
            ("Gtid_IO_Pos", Some("0-2-1")),
        ])
    }

    fn mysql_row() -> Vec<(String, Option<String>)> {
        row(&[
            ("Replica_IO_State", Some("Waiting for source to send event")),
            ("Source_Host", Some("orders-0.orders")),
            ("Source_User", Some("ebisu_repl")),
            ("Source_Port", Some("3306")),
            ("Replica_IO_Running", Some("Yes")),
            ("Replica_SQL_Running", Some("Yes")),
            ("Seconds_Behind_Source", Some("3")),
            ("Last_IO_Errno", Some("0")),
            ("Last_IO_Error", Some("")),
            ("Last_SQL_Errno", Some("0")),
            ("Last_SQL_Error", Some("")),
            ("Source_Server_Id", Some("100")),
            (
                "Retrieved_Gtid_Set",
                Some("3e11fa47-71ca-11e1-9e33-c80aa9429562:1-120"),
            ),
            (
                "Executed_Gtid_Set",
                Some(
                    "3E11FA47-71CA-11E1-9E33-C80AA9429562:1-117,\nd1b8e0e6-5a8f-11ee-8c99-0242ac120002:1-3",
                ),
            ),
            ("Auto_Position", Some("1")),
            (
                "Replica_SQL_Running_State",
                Some("Replica has read all relay log; waiting for more updates"),
            ),
        ])
    }

    #[test]
    fn mariadb_row_with_refused_position_is_read() {
        let status = ReplicaStatus::from_row(Flavor::MariaDb, &mariadb_refused_row()).unwrap();
        assert_eq!(status.source_host, "127.0.0.1");
        assert_eq!(status.source_port, 23306);
        assert_eq!(status.source_user.as_deref(), Some("repl"));
        assert_eq!(status.io_running, ThreadState::No);
        assert!(status.sql_running);
        assert!(!status.is_replicating());
        assert_eq!(status.last_io_errno, 1236);
        assert!(
            status
                .last_io_error
                .as_deref()
                .unwrap()
                .contains("not in the master's binlog")
        );
        assert_eq!(status.last_sql_error, None);
        assert_eq!(status.positioning, GtidPositioning::SlavePos);
        assert_eq!(status.received_gtid.to_string(), "0-2-1");
        assert_eq!(status.executed_gtid, None);
        assert_eq!(status.source_server_id, Some(1));
        assert!(!status.read_all_relay_log, "no state column: not idle");
    }

    #[test]
    fn null_seconds_behind_means_unknown_not_zero() {
        let status = ReplicaStatus::from_row(Flavor::MariaDb, &mariadb_refused_row()).unwrap();
        assert_eq!(status.seconds_behind, None);
        let mut caught_up = mariadb_refused_row();
        for (column, value) in &mut caught_up {
            if column == "Seconds_Behind_Master" {
                *value = Some("0".into());
            }
        }
        let status = ReplicaStatus::from_row(Flavor::MariaDb, &caught_up).unwrap();
        assert_eq!(status.seconds_behind, Some(0));
    }

    #[test]
    fn mysql_row_reads_source_words_and_gtid_sets() {
        let status = ReplicaStatus::from_row(Flavor::MySql84, &mysql_row()).unwrap();
        assert!(status.read_all_relay_log);
        assert_eq!(status.source_host, "orders-0.orders");
        assert_eq!(status.source_port, 3306);
        assert!(status.is_replicating());
        assert_eq!(status.seconds_behind, Some(3));
        assert_eq!(status.positioning, GtidPositioning::AutoPosition);
        assert_eq!(
            status.received_gtid.to_string(),
            "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-120"
        );
        let executed = status.executed_gtid.unwrap();
        assert_eq!(
            executed.to_string(),
            "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-117,d1b8e0e6-5a8f-11ee-8c99-0242ac120002:1-3"
        );
        assert!(!executed.contains(&status.received_gtid).unwrap());
    }

    #[test]
    fn mysql_80_rows_with_master_words_are_read_too() {
        let legacy = row(&[
            ("Master_Host", Some("h")),
            ("Master_Port", Some("3306")),
            ("Slave_IO_Running", Some("Connecting")),
            ("Slave_SQL_Running", Some("No")),
            ("Seconds_Behind_Master", None),
            ("Retrieved_Gtid_Set", Some("")),
            ("Executed_Gtid_Set", Some("")),
            ("Auto_Position", Some("0")),
        ]);
        let status = ReplicaStatus::from_row(Flavor::MySql80, &legacy).unwrap();
        assert_eq!(status.io_running, ThreadState::Connecting);
        assert!(!status.sql_running);
        assert_eq!(status.positioning, GtidPositioning::FilePosition);
        assert!(status.received_gtid.is_empty());
    }

    #[test]
    fn mariadb_preparing_io_thread_counts_as_connecting() {
        let mut preparing = mariadb_refused_row();
        for (column, value) in &mut preparing {
            if column == "Slave_IO_Running" {
                *value = Some("Preparing".into());
            }
        }
        let status = ReplicaStatus::from_row(Flavor::MariaDb, &preparing).unwrap();
        assert_eq!(status.io_running, ThreadState::Connecting);
    }

    #[test]
    fn mariadb_all_slaves_status_gives_the_applied_position() {
        let mut all = mariadb_refused_row();
        all.push(("Gtid_Slave_Pos".into(), Some("0-1-17".into())));
        let status = ReplicaStatus::from_row(Flavor::MariaDb, &all).unwrap();
        assert_eq!(status.executed_gtid.unwrap().to_string(), "0-1-17");
    }

    #[test]
    fn missing_host_column_is_an_error() {
        let broken: Vec<_> = mysql_row()
            .into_iter()
            .filter(|(c, _)| c != "Source_Host")
            .collect();
        assert_eq!(
            ReplicaStatus::from_row(Flavor::MySql80, &broken),
            Err(ReplicaStatusError::MissingColumn {
                column: "Source_Host"
            })
        );
    }

    #[test]
    fn unknown_thread_state_and_bad_numbers_are_errors() {
        let mut odd = mysql_row();
        odd[4].1 = Some("Maybe".into());
        let error = ReplicaStatus::from_row(Flavor::MySql80, &odd).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("Replica_IO_Running has \"Maybe\"")
        );

        let mut bad_lag = mysql_row();
        bad_lag[6].1 = Some("-1".into());
        assert!(matches!(
            ReplicaStatus::from_row(Flavor::MySql80, &bad_lag),
            Err(ReplicaStatusError::InvalidValue {
                column: "Seconds_Behind_Source",
                ..
            })
        ));
    }

    #[test]
    fn malformed_gtid_column_names_the_column() {
        let mut bad = mysql_row();
        bad[12].1 = Some("nonsense".into());
        assert!(matches!(
            ReplicaStatus::from_row(Flavor::MySql80, &bad),
            Err(ReplicaStatusError::Gtid {
                column: "Retrieved_Gtid_Set",
                ..
            })
        ));
    }

    #[test]
    fn column_names_match_case_insensitively() {
        let lower: Vec<_> = mysql_row()
            .into_iter()
            .map(|(c, v)| (c.to_lowercase(), v))
            .collect();
        assert!(ReplicaStatus::from_row(Flavor::MySql80, &lower).is_ok());
    }
}
