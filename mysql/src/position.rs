//! Where a physical backup stands in the replication stream, read from the
//! files the backup tools leave next to the data:
//! - `xtrabackup_binlog_info` (XtraBackup 8, mariadb-backup up to 10.11) and
//!   `mariadb_backup_binlog_info` (MariaDB 11): binary log file, offset and,
//!   when GTIDs are on, the GTIDs the copy contains, TAB-separated; MySQL's
//!   GTID set may continue over several lines. Plain files may have only
//!   file and offset.
//! - `xtrabackup_slave_info` / `mariadb_backup_slave_info` (written with
//!   `--slave-info` when the donor is a replica): the statements that would
//!   point a copy at the donor's source, carrying a GTID.
//!
//! The GTID in the binlog info file is the one to seed a copy with. On
//! MariaDB it is the donor's `gtid_current_pos`, not its binary log
//! position: a backup of a freshly cloned replica whose binary log was still
//! empty recorded its full position (seen with mariadb-backup 10.11), and
//! the slave info file was not written at all for a donor not configured as
//! a replica. The XtraBackup formats follow its documentation (used
//! only for images that carry xtrabackup; MySQL's own images clone with the
//! CLONE plugin, which needs no position file).
//!
//! Pure: the caller reads the files.

use crate::flavor::Flavor;
use crate::gtid::{GtidError, GtidSet};

/// Names of the binlog info file, newest tool first: read the first that
/// exists.
pub const POSITION_FILE_NAMES: [&str; 2] = ["mariadb_backup_binlog_info", "xtrabackup_binlog_info"];

/// Names of the slave info file, newest tool first.
pub const SLAVE_INFO_FILE_NAMES: [&str; 2] = ["mariadb_backup_slave_info", "xtrabackup_slave_info"];

const BINLOG_INFO: &str =
    "the backup's binlog info file (xtrabackup_binlog_info / mariadb_backup_binlog_info)";
const SLAVE_INFO: &str =
    "the backup's slave info file (xtrabackup_slave_info / mariadb_backup_slave_info)";

/// Why a backup position file could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PositionError {
    /// Nothing but whitespace.
    #[error("failed to parse {file}: it is empty")]
    Empty {
        /// Which file.
        file: &'static str,
    },
    /// A file name without an offset after it.
    #[error(
        "failed to parse {file}: expected a binary log file name and position, found {found:?}"
    )]
    MissingPosition {
        /// Which file.
        file: &'static str,
        /// The first line.
        found: String,
    },
    /// An offset that is not a number.
    #[error("failed to parse {file}: binary log position {value:?} is not a number")]
    InvalidPosition {
        /// Which file.
        file: &'static str,
        /// The refused offset.
        value: String,
    },
    /// A GTID that does not parse in the expected flavor.
    #[error("failed to parse {file}: {reason}")]
    Gtid {
        /// Which file.
        file: &'static str,
        /// Why the GTID did not parse.
        reason: GtidError,
    },
    /// No `SET GLOBAL <variable> = '...'` in a slave info file.
    #[error("failed to parse {file}: no `SET GLOBAL {variable} = '...'` statement found")]
    MissingGtidStatement {
        /// Which file.
        file: &'static str,
        /// The variable looked for.
        variable: &'static str,
    },
}

/// The position a backup corresponds to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupPosition {
    /// Binary log file of the donor at the time of the copy.
    pub binlog_file: String,
    /// Offset in that file.
    pub binlog_pos: u64,
    /// GTIDs the copy contains (empty when the file has none).
    pub gtid: GtidSet,
}

/// Parses a binlog info file's contents.
pub fn parse_binlog_info(flavor: Flavor, contents: &str) -> Result<BackupPosition, PositionError> {
    let contents = contents.trim();
    let Some((binlog_file, rest)) = split_token(contents) else {
        return Err(PositionError::Empty { file: BINLOG_INFO });
    };
    let Some((position, gtid_text)) = split_token(rest) else {
        return Err(PositionError::MissingPosition {
            file: BINLOG_INFO,
            found: contents.lines().next().unwrap_or_default().to_owned(),
        });
    };
    let binlog_pos = position
        .parse()
        .map_err(|_| PositionError::InvalidPosition {
            file: BINLOG_INFO,
            value: position.to_owned(),
        })?;
    let gtid = GtidSet::parse(flavor, gtid_text).map_err(|reason| PositionError::Gtid {
        file: BINLOG_INFO,
        reason,
    })?;
    Ok(BackupPosition {
        binlog_file: binlog_file.to_owned(),
        binlog_pos,
        gtid,
    })
}

/// Reads the GTID from a slave info file's contents: `gtid_slave_pos` on
/// MariaDB, `gtid_purged` on MySQL.
pub fn parse_slave_info(flavor: Flavor, contents: &str) -> Result<GtidSet, PositionError> {
    if contents.trim().is_empty() {
        return Err(PositionError::Empty { file: SLAVE_INFO });
    }
    let variable = if flavor.is_mariadb() {
        "gtid_slave_pos"
    } else {
        "gtid_purged"
    };
    let missing = || PositionError::MissingGtidStatement {
        file: SLAVE_INFO,
        variable,
    };
    let text = quoted_assignment(contents, variable).ok_or_else(missing)?;
    GtidSet::parse(flavor, text).map_err(|reason| PositionError::Gtid {
        file: SLAVE_INFO,
        reason,
    })
}

/// The first whitespace-delimited token and what follows it (trimmed).
fn split_token(text: &str) -> Option<(&str, &str)> {
    let text = text.trim_start();
    if text.is_empty() {
        return None;
    }
    let end = text.find(char::is_whitespace).unwrap_or(text.len());
    Some((&text[..end], text[end..].trim()))
}

/// The quoted value in `... <variable> = '<value>'`, variable matched
/// case-insensitively.
fn quoted_assignment<'a>(contents: &'a str, variable: &str) -> Option<&'a str> {
    let lower = contents.to_ascii_lowercase();
    let mut from = 0;
    while let Some(found) = lower[from..].find(variable) {
        let after = from + found + variable.len();
        from = after;
        let rest = contents[after..].trim_start();
        let Some(rest) = rest.strip_prefix('=') else {
            continue;
        };
        let Some(rest) = rest.trim_start().strip_prefix('\'') else {
            continue;
        };
        return rest.find('\'').map(|end| &rest[..end]);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mariadb_binlog_info_from_mariadb_backup_10_11() {
        // Exactly what mariadb-backup 10.11 wrote for a replica donor.
        let position =
            parse_binlog_info(Flavor::MariaDb, "mysql-bin.000001\t3596\t0-2-18\n").unwrap();
        assert_eq!(position.binlog_file, "mysql-bin.000001");
        assert_eq!(position.binlog_pos, 3596);
        assert_eq!(position.gtid.to_string(), "0-2-18");
    }

    #[test]
    fn mariadb_binlog_info_with_several_domains() {
        let position =
            parse_binlog_info(Flavor::MariaDb, "mysql-bin.000002\t342\t0-1-5,1-2-9").unwrap();
        assert_eq!(position.gtid.to_string(), "0-1-5,1-2-9");
    }

    #[test]
    fn mysql_binlog_info_gtid_set_may_span_lines() {
        let contents = "binlog.000003\t1234\t3E11FA47-71CA-11E1-9E33-C80AA9429562:1-5,\nd1b8e0e6-5a8f-11ee-8c99-0242ac120002:1-3\n";
        let position = parse_binlog_info(Flavor::MySql84, contents).unwrap();
        assert_eq!(position.binlog_file, "binlog.000003");
        assert_eq!(position.binlog_pos, 1234);
        assert_eq!(
            position.gtid.to_string(),
            "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5,d1b8e0e6-5a8f-11ee-8c99-0242ac120002:1-3"
        );
    }

    #[test]
    fn binlog_info_without_gtid_has_an_empty_set() {
        let position = parse_binlog_info(Flavor::MySql80, "mysql-bin.000001\t154\n").unwrap();
        assert_eq!(position.binlog_pos, 154);
        assert!(position.gtid.is_empty());
        assert!(position.gtid.matches_flavor(Flavor::MySql80));
    }

    #[test]
    fn empty_binlog_info_is_refused_naming_the_file() {
        let error = parse_binlog_info(Flavor::MariaDb, " \n").unwrap_err();
        assert_eq!(error, PositionError::Empty { file: BINLOG_INFO });
        assert!(error.to_string().contains("xtrabackup_binlog_info"));
    }

    #[test]
    fn binlog_info_without_position_is_refused() {
        assert!(matches!(
            parse_binlog_info(Flavor::MariaDb, "mysql-bin.000001\n"),
            Err(PositionError::MissingPosition { .. })
        ));
    }

    #[test]
    fn binlog_info_with_non_numeric_position_is_refused() {
        let error = parse_binlog_info(Flavor::MariaDb, "mysql-bin.000001\tabc\t0-1-1").unwrap_err();
        assert_eq!(
            error,
            PositionError::InvalidPosition {
                file: BINLOG_INFO,
                value: "abc".into()
            }
        );
    }

    #[test]
    fn binlog_info_with_the_other_flavors_gtid_is_refused() {
        let error = parse_binlog_info(Flavor::MySql80, "mysql-bin.000001\t342\t0-1-5").unwrap_err();
        assert!(matches!(error, PositionError::Gtid { .. }));
        assert!(
            error
                .to_string()
                .starts_with("failed to parse the backup's binlog info file")
        );
    }

    #[test]
    fn mariadb_slave_info_yields_gtid_slave_pos() {
        // Exactly what mariadb-backup 10.11 --slave-info wrote.
        let contents = "SET GLOBAL gtid_slave_pos = '0-2-18';\nCHANGE MASTER TO master_use_gtid = slave_pos;\n";
        assert_eq!(
            parse_slave_info(Flavor::MariaDb, contents)
                .unwrap()
                .to_string(),
            "0-2-18"
        );
    }

    #[test]
    fn mysql_slave_info_yields_gtid_purged() {
        let contents = "SET GLOBAL gtid_purged='3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5';\nCHANGE MASTER TO MASTER_AUTO_POSITION=1;\n";
        assert_eq!(
            parse_slave_info(Flavor::MySql80, contents)
                .unwrap()
                .to_string(),
            "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5"
        );
    }

    #[test]
    fn slave_info_without_gtid_statement_is_refused() {
        let contents = "CHANGE MASTER TO MASTER_LOG_FILE='mysql-bin.000001', MASTER_LOG_POS=481;\n";
        assert_eq!(
            parse_slave_info(Flavor::MariaDb, contents),
            Err(PositionError::MissingGtidStatement {
                file: SLAVE_INFO,
                variable: "gtid_slave_pos"
            })
        );
        assert!(matches!(
            parse_slave_info(Flavor::MariaDb, ""),
            Err(PositionError::Empty { .. })
        ));
    }

    #[test]
    fn slave_info_mentioning_the_variable_without_assignment_is_refused() {
        let contents = "-- gtid_slave_pos unknown\nSET GLOBAL gtid_slave_pos = '0-1-2";
        assert!(matches!(
            parse_slave_info(Flavor::MariaDb, contents),
            Err(PositionError::MissingGtidStatement { .. })
        ));
    }

    #[test]
    fn newest_file_names_come_first() {
        assert_eq!(POSITION_FILE_NAMES[0], "mariadb_backup_binlog_info");
        assert_eq!(SLAVE_INFO_FILE_NAMES[1], "xtrabackup_slave_info");
    }
}
