//! Fencing a server (no client writes), unfencing and promoting it, and
//! finding and killing client connections during a switchover.
//!
//! MySQL fences with `super_read_only`, which stops every account, the
//! operator's included. MariaDB has no such variable: `read_only` stops
//! every account except holders of READ_ONLY ADMIN, which each server's
//! agent takes from every account but the operator's and those that log in
//! only from inside the pod (see `read_only_admin`). So on MariaDB fencing
//! also relies on the operator never writing data and on root sessions
//! being killed.
//!
//! Setting either variable waits for the commits in progress; until then
//! the server still reports itself writable. [`Flavor::fence_urgently`]
//! closes that gap on MySQL with `offline_mode`.

use super::credentials::UserName;
use super::quote::quote_literal;
use crate::flavor::Flavor;

impl Flavor {
    /// Stops client writes. MySQL: `super_read_only` (which implies
    /// `read_only`). MariaDB: `read_only`.
    pub fn fence(self) -> Vec<String> {
        vec![format!("SET GLOBAL {} = ON", self.fence_variable())]
    }

    /// Stops client writes on a server that may have been replaced
    /// already (its agent's fence). MySQL: `offline_mode` first, which
    /// turns away every client without CONNECTION_ADMIN at once (read-only
    /// waits for the commits in progress, and meanwhile a client would
    /// still find the server writable), then `super_read_only`, then
    /// clients are let back in to a read-only server. MariaDB has no
    /// `offline_mode`: [`Flavor::fence`].
    pub fn fence_urgently(self) -> Vec<String> {
        match self {
            Flavor::MariaDb => self.fence(),
            Flavor::MySql80 | Flavor::MySql84 => vec![
                "SET GLOBAL offline_mode = ON".to_owned(),
                "SET GLOBAL super_read_only = ON".to_owned(),
                "SET GLOBAL offline_mode = OFF".to_owned(),
            ],
        }
    }

    /// Allows client writes again (both variables on MySQL, since turning
    /// off `super_read_only` leaves `read_only` on).
    pub fn unfence(self) -> Vec<String> {
        match self {
            Flavor::MariaDb => vec!["SET GLOBAL read_only = OFF".to_owned()],
            // `offline_mode` too, should an urgent fence have stopped
            // half-way: clients are never left turned away.
            Flavor::MySql80 | Flavor::MySql84 => vec![
                "SET GLOBAL offline_mode = OFF".to_owned(),
                "SET GLOBAL super_read_only = OFF".to_owned(),
                "SET GLOBAL read_only = OFF".to_owned(),
            ],
        }
    }

    /// Makes a caught-up replica the primary: stop and forget replication,
    /// then accept writes. The caller has already waited for it to apply
    /// everything it received; semi-sync is switched separately with
    /// [`Flavor::semi_sync_as_primary`].
    pub fn promote(self) -> Vec<String> {
        let mut statements = vec![self.stop_replication(), self.reset_replication()];
        statements.extend(self.unfence());
        statements
    }

    /// Lists the ids of client connections to kill after fencing: everyone
    /// except this connection, the server's own threads, replicas streaming
    /// binary logs, and the accounts in `keep_users` (pass the service users;
    /// leave root out on MariaDB, where root can write through `read_only`).
    pub fn client_connections_query(self, keep_users: &[&UserName]) -> String {
        let mut kept = vec![
            quote_literal("system user"),
            quote_literal("event_scheduler"),
        ];
        kept.extend(keep_users.iter().map(|user| quote_literal(user.as_str())));
        format!(
            "SELECT ID FROM information_schema.PROCESSLIST \
             WHERE ID <> CONNECTION_ID() AND USER NOT IN ({}) \
             AND COMMAND NOT IN ('Binlog Dump', 'Binlog Dump GTID', 'Daemon', 'Killed')",
            kept.join(", ")
        )
    }

    /// Ends one connection and its running statement.
    pub fn kill_connection(self, id: u64) -> String {
        format!("KILL CONNECTION {id}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mysql_fences_with_super_read_only() {
        for flavor in [Flavor::MySql80, Flavor::MySql84] {
            assert_eq!(
                flavor.fence(),
                vec!["SET GLOBAL super_read_only = ON".to_owned()]
            );
        }
    }

    #[test]
    fn mariadb_fences_with_read_only() {
        assert_eq!(
            Flavor::MariaDb.fence(),
            vec!["SET GLOBAL read_only = ON".to_owned()]
        );
    }

    #[test]
    fn mysql_unfence_turns_off_super_read_only_before_read_only() {
        assert_eq!(
            Flavor::MySql84.unfence(),
            vec![
                "SET GLOBAL offline_mode = OFF".to_owned(),
                "SET GLOBAL super_read_only = OFF".to_owned(),
                "SET GLOBAL read_only = OFF".to_owned(),
            ]
        );
    }

    #[test]
    fn an_urgent_mysql_fence_turns_clients_away_until_read_only_holds() {
        let statements = Flavor::MySql84.fence_urgently();
        assert_eq!(
            statements.first().map(String::as_str),
            Some("SET GLOBAL offline_mode = ON")
        );
        assert_eq!(statements[1], "SET GLOBAL super_read_only = ON");
        assert_eq!(
            statements.last().map(String::as_str),
            Some("SET GLOBAL offline_mode = OFF")
        );
        assert_eq!(Flavor::MariaDb.fence_urgently(), Flavor::MariaDb.fence());
    }

    #[test]
    fn promotion_stops_and_forgets_replication_before_accepting_writes() {
        assert_eq!(
            Flavor::MariaDb.promote(),
            vec![
                "STOP SLAVE".to_owned(),
                "RESET SLAVE ALL".to_owned(),
                "SET GLOBAL read_only = OFF".to_owned(),
            ]
        );
        let mysql = Flavor::MySql80.promote();
        assert_eq!(
            mysql[..2],
            ["STOP REPLICA".to_owned(), "RESET REPLICA ALL".to_owned()]
        );
        assert_eq!(mysql.last().unwrap(), "SET GLOBAL read_only = OFF");
    }

    #[test]
    fn client_connections_query_keeps_service_users_and_replica_streams() {
        let operator = UserName::new("ebisu_operator").unwrap();
        let repl = UserName::new("ebisu_repl").unwrap();
        let query = Flavor::MariaDb.client_connections_query(&[&operator, &repl]);
        assert!(query.contains(
            "USER NOT IN ('system user', 'event_scheduler', 'ebisu_operator', 'ebisu_repl')"
        ));
        assert!(query.contains("ID <> CONNECTION_ID()"));
        assert!(query.contains("'Binlog Dump GTID'"));
        assert!(!query.contains("'root'"));
    }

    #[test]
    fn kill_connection_names_the_id() {
        assert_eq!(Flavor::MySql84.kill_connection(42), "KILL CONNECTION 42");
    }
}
