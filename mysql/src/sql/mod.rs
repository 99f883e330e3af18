//! SQL statements ebisu sends to a server, built as plain strings for the
//! caller to execute one by one (none ends with a semicolon). Literals all go
//! through [`quote_literal`]; names and passwords are checked when their
//! types are built, so statement builders only fail on contradictory input.
//!
//! MariaDB statements were checked against MariaDB 10.11. MySQL cannot be
//! installed on the build machines: its statements are unit-tested against
//! the MySQL 8.0/8.4 manuals only.

mod credentials;
mod fencing;
mod observe;
mod quote;
mod read_only_admin;
mod replication;
mod semisync;
mod users;

pub use credentials::{Credentials, Password, ServiceRole, ServiceUsers, UserName};
pub use observe::VERSION_QUERY;
pub use quote::{
    MAX_HOST_LEN, MAX_USER_NAME_LEN, quote_identifier, quote_literal, validate_host,
    validate_user_name,
};
pub use read_only_admin::{Grantee, READ_ONLY_ADMIN_HOLDERS_QUERY, read_only_admins_to_revoke};
pub use replication::{
    DEFAULT_CONNECT_RETRY_SECS, HEARTBEAT_PERIOD, MYSQL_SOURCE_RETRY_COUNT, ReplicationSource,
};
pub use semisync::{
    ACTIVE_PLUGINS_QUERY, MYSQL_MAX_SEMI_SYNC_TIMEOUT_MS, MYSQL_MAX_WAIT_FOR_REPLICAS, Plugin,
    SEMI_SYNC_STATUS_QUERY, SemiSync,
};
pub use users::{ACCOUNTS_TO_DROP_QUERY, Account, Grant};

use crate::flavor::Flavor;

/// Why a statement could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SqlError {
    /// A user name outside `[A-Za-z0-9_]{1,32}`.
    #[error("failed to accept user name {name:?}: use 1 to 32 of A-Z, a-z, 0-9 and _")]
    InvalidUserName {
        /// The refused name.
        name: String,
    },
    /// An empty password.
    #[error("failed to accept password: it is empty")]
    EmptyPassword,
    /// An empty password for a named user.
    #[error("failed to accept password for user {user}: it is empty")]
    EmptyPasswordFor {
        /// Whose password it was.
        user: String,
    },
    /// Two service users with the same name.
    #[error("failed to accept service users: {name:?} is used for two roles")]
    DuplicateUserName {
        /// The repeated name.
        name: String,
    },
    /// A service user named `root`.
    #[error("failed to accept service user {name:?}: root is reserved")]
    ReservedUserName {
        /// The refused name.
        name: String,
    },
    /// A replication source host that is not a DNS name or IP address.
    #[error("failed to accept host {host:?}: use a DNS name or IP address of at most 255 bytes")]
    InvalidHost {
        /// The refused host.
        host: String,
    },
    /// Port 0.
    #[error("failed to accept port 0 for a replication source")]
    InvalidPort,
    /// An account [`Flavor::secure_installation`] must not drop.
    #[error(
        "failed to drop account '{user}'@'{host}': only anonymous accounts and root outside localhost are dropped"
    )]
    AccountNotDroppable {
        /// `User` of the refused account.
        user: String,
        /// `Host` of the refused account.
        host: String,
    },
    /// A GTID of one flavor given for a server of another.
    #[error("failed to use GTID {gtid:?} on a {flavor} server: it is another flavor's GTID")]
    GtidFlavorMismatch {
        /// The server's flavor.
        flavor: Flavor,
        /// The GTID text.
        gtid: String,
    },
    /// Semi-sync enabled with nobody to wait for.
    #[error("failed to configure semi-sync: enabled but waiting for 0 replicas")]
    SemiSyncWaitsForNoReplica,
    /// MariaDB asked to wait for more than one acknowledgement.
    #[error(
        "failed to configure semi-sync: MariaDB waits for exactly one replica, {requested} were requested"
    )]
    SemiSyncWaitCountUnsupported {
        /// The requested count.
        requested: u32,
    },
    /// MySQL asked to wait for more replicas than it can count.
    #[error(
        "failed to configure semi-sync: waiting for {requested} replicas, MySQL allows at most {maximum}"
    )]
    SemiSyncWaitCountTooLarge {
        /// The requested count.
        requested: u32,
        /// MySQL's limit.
        maximum: u32,
    },
    /// MySQL asked for a longer timeout than it accepts.
    #[error(
        "failed to configure semi-sync: timeout {requested_ms} ms exceeds MySQL's maximum of {maximum_ms} ms"
    )]
    SemiSyncTimeoutTooLarge {
        /// The requested timeout.
        requested_ms: u64,
        /// MySQL's limit.
        maximum_ms: u64,
    },
}

/// Wraps `statements` so this session does not write them to the binary log
/// (no GTID, not replicated): for local housekeeping such as
/// [`Flavor::secure_installation`] that must never show up as a transaction
/// other servers lack. Needs BINLOG ADMIN (MariaDB) or
/// SYSTEM_VARIABLES_ADMIN/SESSION_VARIABLES_ADMIN (MySQL); root has them.
/// Run all of them on one connection.
pub fn without_binlog(statements: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut wrapped = vec!["SET SESSION sql_log_bin = 0".to_owned()];
    wrapped.extend(statements);
    wrapped.push("SET SESSION sql_log_bin = 1".to_owned());
    wrapped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_binlog_brackets_statements_with_sql_log_bin() {
        let wrapped = without_binlog(["DROP DATABASE IF EXISTS test".to_owned()]);
        assert_eq!(
            wrapped,
            vec![
                "SET SESSION sql_log_bin = 0".to_owned(),
                "DROP DATABASE IF EXISTS test".to_owned(),
                "SET SESSION sql_log_bin = 1".to_owned(),
            ]
        );
    }

    #[test]
    fn error_messages_say_what_failed() {
        let message = SqlError::EmptyPasswordFor {
            user: "ebisu_repl".into(),
        }
        .to_string();
        assert_eq!(
            message,
            "failed to accept password for user ebisu_repl: it is empty"
        );
        let message = SqlError::SemiSyncWaitCountUnsupported { requested: 2 }.to_string();
        assert!(message.starts_with("failed to configure semi-sync"));
    }
}
