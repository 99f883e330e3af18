//! Creating the service users with the privileges each role needs, and
//! hardening a freshly initialised server (anonymous accounts, the `test`
//! database, the root password).
//!
//! The MariaDB lists were checked against MariaDB 10.11; the MySQL lists
//! follow the MySQL 8.0/8.4 and Percona XtraBackup 8 manuals and cannot be
//! run against a real MySQL on the build machines.
//!
//! All of this runs as root@localhost (the service users cannot create
//! users). Statements that create users are written to the binary log. Run them on
//! the server that bootstraps the cluster (replicas get the accounts through
//! the clone), wrapped in [`super::without_binlog`] where a GTID of their own
//! would be unwelcome. Never run them on a replica with binary logging on:
//! they would be errant transactions.

use super::SqlError;
use super::credentials::{Credentials, Password, ServiceRole, ServiceUsers};
use super::quote::{quote_identifier, quote_literal};
use crate::flavor::Flavor;

/// Lists the accounts [`Flavor::secure_installation`] removes: anonymous
/// users, and `root` anywhere but `localhost`. Returns rows of (User, Host).
/// Reading `mysql.user` takes root; no service user may.
pub const ACCOUNTS_TO_DROP_QUERY: &str =
    "SELECT User, Host FROM mysql.user WHERE User = '' OR (User = 'root' AND Host <> 'localhost')";

/// One `GRANT privileges ON object` line of a role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grant {
    /// Comma-separated privilege names, as written in `GRANT`.
    pub privileges: &'static str,
    /// What they apply to, e.g. `*.*`.
    pub on: &'static str,
}

const fn global(privileges: &'static str) -> Grant {
    Grant {
        privileges,
        on: "*.*",
    }
}

// MariaDB: READ_ONLY ADMIN is the only privilege that may change
// `read_only` (since 10.5.2; SUPER is not enough, checked on 10.11), so the
// operator cannot fence without it. It also lets its holder write through
// `read_only`, which is why the operator account must never run a data
// changing statement and no other account gets it. SUPER and ALL are left out:
// before 10.11 SUPER included READ_ONLY ADMIN.
const MARIADB_OPERATOR: &[Grant] = &[global(
    "RELOAD, PROCESS, BINLOG MONITOR, BINLOG ADMIN, SLAVE MONITOR, \
     REPLICATION SLAVE ADMIN, REPLICATION MASTER ADMIN, CONNECTION ADMIN, READ_ONLY ADMIN",
)];
const MARIADB_REPLICATION: &[Grant] = &[global("REPLICATION SLAVE, BINLOG MONITOR")];
// mariadb-backup: BACKUP STAGE needs RELOAD; --slave-info needs SLAVE MONITOR.
const MARIADB_CLONE: &[Grant] = &[global(
    "RELOAD, PROCESS, LOCK TABLES, BINLOG MONITOR, SLAVE MONITOR",
)];
const MARIADB_MONITOR: &[Grant] = &[global("PROCESS, BINLOG MONITOR, SLAVE MONITOR")];

// MySQL: dynamic privileges instead of the deprecated SUPER. Even with them,
// super_read_only stops the operator from writing, so fencing also fences it.
const MYSQL_OPERATOR: &[Grant] = &[
    global(
        "RELOAD, PROCESS, REPLICATION CLIENT, REPLICATION_SLAVE_ADMIN, \
         SYSTEM_VARIABLES_ADMIN, SESSION_VARIABLES_ADMIN, CONNECTION_ADMIN",
    ),
    Grant {
        privileges: "SELECT",
        on: "performance_schema.*",
    },
    // INSTALL PLUGIN (the semi-sync plugins) inserts into mysql.plugin.
    Grant {
        privileges: "INSERT",
        on: "mysql.plugin",
    },
];
const MYSQL_REPLICATION: &[Grant] = &[global("REPLICATION SLAVE, REPLICATION CLIENT")];
// XtraBackup 8 and the donor side of the CLONE plugin. CLONE_ADMIN (run
// `CLONE INSTANCE FROM` on the recipient) is deliberately absent: a peer
// holding it could wipe this server by cloning into it. The recipient runs
// the clone as its local root.
const MYSQL_CLONE: &[Grant] = &[
    global("BACKUP_ADMIN, RELOAD, PROCESS, LOCK TABLES, REPLICATION CLIENT"),
    Grant {
        privileges: "SELECT",
        on: "performance_schema.log_status",
    },
    Grant {
        privileges: "SELECT",
        on: "performance_schema.keyring_component_status",
    },
];
const MYSQL_MONITOR: &[Grant] = &[
    global("PROCESS, REPLICATION CLIENT"),
    Grant {
        privileges: "SELECT",
        on: "performance_schema.*",
    },
];

/// An account found by [`ACCOUNTS_TO_DROP_QUERY`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// `User` column.
    pub user: String,
    /// `Host` column.
    pub host: String,
}

impl Flavor {
    /// The grants a role receives on this flavor.
    pub fn grants(self, role: ServiceRole) -> &'static [Grant] {
        match (self.is_mariadb(), role) {
            (true, ServiceRole::Operator) => MARIADB_OPERATOR,
            (true, ServiceRole::Replication) => MARIADB_REPLICATION,
            (true, ServiceRole::Clone) => MARIADB_CLONE,
            (true, ServiceRole::Monitor) => MARIADB_MONITOR,
            (false, ServiceRole::Operator) => MYSQL_OPERATOR,
            (false, ServiceRole::Replication) => MYSQL_REPLICATION,
            (false, ServiceRole::Clone) => MYSQL_CLONE,
            (false, ServiceRole::Monitor) => MYSQL_MONITOR,
        }
    }

    /// Creates (or updates the password of) one service user and grants it
    /// its role. Safe to run again: `IF NOT EXISTS`, then `ALTER USER` sets
    /// the password whether or not the user already existed.
    pub fn create_user(self, credentials: &Credentials, role: ServiceRole) -> Vec<String> {
        let account = credentials.user.account();
        let password = quote_literal(credentials.password.reveal());
        let mut statements = vec![
            format!("CREATE USER IF NOT EXISTS {account} IDENTIFIED BY {password}"),
            format!("ALTER USER {account} IDENTIFIED BY {password}"),
        ];
        statements.extend(
            self.grants(role)
                .iter()
                .map(|grant| format!("GRANT {} ON {} TO {account}", grant.privileges, grant.on)),
        );
        statements
    }

    /// Creates the application's database and its owner (`spec.database`),
    /// granted every privilege on that database and nothing else. Safe to
    /// run again, like [`Flavor::create_user`].
    pub fn create_application(self, database: &str, owner: &Credentials) -> Vec<String> {
        let account = owner.user.account();
        let password = quote_literal(owner.password.reveal());
        let schema = quote_identifier(database);
        vec![
            format!("CREATE DATABASE IF NOT EXISTS {schema}"),
            format!("CREATE USER IF NOT EXISTS {account} IDENTIFIED BY {password}"),
            format!("ALTER USER {account} IDENTIFIED BY {password}"),
            format!("GRANT ALL PRIVILEGES ON {schema}.* TO {account}"),
        ]
    }

    /// [`Flavor::create_user`] for all four service users.
    pub fn create_service_users(self, users: &ServiceUsers) -> Vec<String> {
        ServiceRole::ALL
            .iter()
            .flat_map(|&role| self.create_user(users.get(role), role))
            .collect()
    }

    /// Hardens a freshly initialised server: drops `accounts` (the rows of
    /// [`ACCOUNTS_TO_DROP_QUERY`]), the `test` database and, on MariaDB, the
    /// default grants on `test` and `test_%`; then sets root@localhost's
    /// password. The password comes last because it may end the
    /// password-less access the caller is using.
    ///
    /// Refuses an account that is neither anonymous nor a non-local root,
    /// so a wrong list can never drop a real user or root@localhost.
    pub fn secure_installation(
        self,
        accounts: &[Account],
        root_password: &Password,
    ) -> Result<Vec<String>, SqlError> {
        let mut statements = Vec::new();
        let mut to_drop = Vec::with_capacity(accounts.len());
        for account in accounts {
            let droppable =
                account.user.is_empty() || (account.user == "root" && account.host != "localhost");
            if !droppable {
                return Err(SqlError::AccountNotDroppable {
                    user: account.user.clone(),
                    host: account.host.clone(),
                });
            }
            to_drop.push(format!(
                "{}@{}",
                quote_literal(&account.user),
                quote_literal(&account.host)
            ));
        }
        if !to_drop.is_empty() {
            statements.push(format!("DROP USER IF EXISTS {}", to_drop.join(", ")));
        }
        statements.push("DROP DATABASE IF EXISTS test".to_owned());
        if self.is_mariadb() {
            // mariadb-install-db grants everyone access to test and test_*.
            statements.push(format!(
                "DELETE FROM mysql.db WHERE Db = 'test' OR Db = {}",
                quote_literal("test\\_%")
            ));
            statements.push("FLUSH PRIVILEGES".to_owned());
        }
        statements.push(format!(
            "ALTER USER 'root'@'localhost' IDENTIFIED BY {}",
            quote_literal(root_password.reveal())
        ));
        Ok(statements)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::credentials::tests::{creds, service_users};

    const ALL_FLAVORS: [Flavor; 3] = [Flavor::MySql80, Flavor::MySql84, Flavor::MariaDb];

    fn grants_text(flavor: Flavor, role: ServiceRole) -> String {
        flavor
            .grants(role)
            .iter()
            .map(|g| format!("{} ON {}", g.privileges, g.on))
            .collect::<Vec<_>>()
            .join("; ")
    }

    #[test]
    fn mariadb_operator_may_toggle_read_only_but_holds_no_super_or_all() {
        let grants = grants_text(Flavor::MariaDb, ServiceRole::Operator);
        assert!(grants.contains("READ_ONLY ADMIN"));
        assert!(grants.contains("REPLICATION SLAVE ADMIN"));
        assert!(grants.contains("CONNECTION ADMIN"));
        assert!(grants.contains("SLAVE MONITOR"));
        assert!(!grants.contains("SUPER"));
        assert!(!grants.contains("ALL"));
    }

    #[test]
    fn only_the_operator_can_write_through_read_only_on_mariadb() {
        for role in [
            ServiceRole::Replication,
            ServiceRole::Clone,
            ServiceRole::Monitor,
        ] {
            let grants = grants_text(Flavor::MariaDb, role);
            assert!(!grants.contains("READ_ONLY ADMIN"), "{role:?}: {grants}");
            assert!(!grants.contains("SUPER"), "{role:?}: {grants}");
        }
    }

    #[test]
    fn mysql_operator_uses_dynamic_privileges_not_super() {
        for flavor in [Flavor::MySql80, Flavor::MySql84] {
            let grants = grants_text(flavor, ServiceRole::Operator);
            for needed in [
                "SYSTEM_VARIABLES_ADMIN",
                "REPLICATION_SLAVE_ADMIN",
                "CONNECTION_ADMIN",
                "REPLICATION CLIENT",
                "RELOAD",
            ] {
                assert!(grants.contains(needed), "{flavor}: missing {needed}");
            }
            assert!(!grants.contains("SUPER"));
            assert!(!grants.contains("ALL"));
        }
    }

    #[test]
    fn replication_user_can_stream_binlogs() {
        assert!(
            grants_text(Flavor::MariaDb, ServiceRole::Replication).contains("REPLICATION SLAVE")
        );
        assert!(
            grants_text(Flavor::MySql84, ServiceRole::Replication).contains("REPLICATION SLAVE")
        );
    }

    #[test]
    fn mariadb_clone_user_has_what_mariadb_backup_needs() {
        let grants = grants_text(Flavor::MariaDb, ServiceRole::Clone);
        for needed in [
            "RELOAD",
            "PROCESS",
            "LOCK TABLES",
            "BINLOG MONITOR",
            "SLAVE MONITOR",
        ] {
            assert!(grants.contains(needed), "missing {needed}");
        }
    }

    #[test]
    fn mysql_clone_user_has_what_xtrabackup_and_clone_donor_need() {
        let grants = grants_text(Flavor::MySql80, ServiceRole::Clone);
        for needed in [
            "BACKUP_ADMIN",
            "RELOAD",
            "PROCESS",
            "LOCK TABLES",
            "REPLICATION CLIENT",
            "SELECT ON performance_schema.log_status",
        ] {
            assert!(grants.contains(needed), "missing {needed}");
        }
        assert!(!grants.contains("CLONE_ADMIN"));
    }

    #[test]
    fn monitor_user_can_see_processes_and_replication() {
        assert!(
            grants_text(Flavor::MariaDb, ServiceRole::Monitor)
                .contains("PROCESS, BINLOG MONITOR, SLAVE MONITOR")
        );
        assert!(
            grants_text(Flavor::MySql84, ServiceRole::Monitor)
                .contains("PROCESS, REPLICATION CLIENT")
        );
    }

    #[test]
    fn create_user_is_idempotent_and_sets_password_twice() {
        for flavor in ALL_FLAVORS {
            let statements =
                flavor.create_user(&creds("ebisu_repl", "pa'ss"), ServiceRole::Replication);
            assert_eq!(
                statements[0],
                "CREATE USER IF NOT EXISTS 'ebisu_repl'@'%' IDENTIFIED BY 'pa''ss'"
            );
            assert_eq!(
                statements[1],
                "ALTER USER 'ebisu_repl'@'%' IDENTIFIED BY 'pa''ss'"
            );
            assert!(statements[2].starts_with("GRANT REPLICATION SLAVE"));
            assert!(statements[2].ends_with(" ON *.* TO 'ebisu_repl'@'%'"));
            assert!(statements.iter().all(|s| !s.ends_with(';')));
        }
    }

    #[test]
    fn service_users_are_all_created_with_their_own_grants() {
        let statements = Flavor::MariaDb.create_service_users(&service_users());
        let creates: Vec<_> = statements
            .iter()
            .filter(|s| s.starts_with("CREATE USER"))
            .collect();
        assert_eq!(creates.len(), 4);
        let operator_grant = statements
            .iter()
            .find(|s| s.starts_with("GRANT") && s.ends_with("'ebisu_operator'@'%'"))
            .unwrap();
        assert!(operator_grant.contains("READ_ONLY ADMIN"));
        let monitor_grant = statements
            .iter()
            .find(|s| s.starts_with("GRANT") && s.ends_with("'ebisu_monitor'@'%'"))
            .unwrap();
        assert!(!monitor_grant.contains("READ_ONLY ADMIN"));
    }

    #[test]
    fn secure_installation_drops_anonymous_users_and_test_then_sets_root_password_last() {
        let accounts = [
            Account {
                user: String::new(),
                host: "localhost".into(),
            },
            Account {
                user: String::new(),
                host: "orders-0".into(),
            },
        ];
        let password = Password::new("r00t").unwrap();
        let statements = Flavor::MariaDb
            .secure_installation(&accounts, &password)
            .unwrap();
        assert_eq!(
            statements[0],
            "DROP USER IF EXISTS ''@'localhost', ''@'orders-0'"
        );
        assert!(statements.contains(&"DROP DATABASE IF EXISTS test".to_owned()));
        // Verbatim what cleared mariadb-install-db's test and test\_% grants.
        assert!(
            statements
                .contains(&r"DELETE FROM mysql.db WHERE Db = 'test' OR Db = 'test\\_%'".to_owned())
        );
        assert_eq!(
            statements.last().unwrap(),
            "ALTER USER 'root'@'localhost' IDENTIFIED BY 'r00t'"
        );
    }

    #[test]
    fn secure_installation_on_mysql_does_not_touch_grant_tables() {
        let password = Password::new("r00t").unwrap();
        let statements = Flavor::MySql84.secure_installation(&[], &password).unwrap();
        assert_eq!(
            statements,
            vec![
                "DROP DATABASE IF EXISTS test".to_owned(),
                "ALTER USER 'root'@'localhost' IDENTIFIED BY 'r00t'".to_owned(),
            ]
        );
    }

    #[test]
    fn secure_installation_drops_remote_root_but_refuses_local_root_and_real_users() {
        let password = Password::new("r00t").unwrap();
        let remote_root = Account {
            user: "root".into(),
            host: "127.0.0.1".into(),
        };
        let statements = Flavor::MariaDb
            .secure_installation(std::slice::from_ref(&remote_root), &password)
            .unwrap();
        assert_eq!(statements[0], "DROP USER IF EXISTS 'root'@'127.0.0.1'");

        for (user, host) in [("root", "localhost"), ("app", "%")] {
            let account = Account {
                user: user.into(),
                host: host.into(),
            };
            assert_eq!(
                Flavor::MariaDb.secure_installation(&[account], &password),
                Err(SqlError::AccountNotDroppable {
                    user: user.into(),
                    host: host.into()
                })
            );
        }
    }

    #[test]
    fn secure_installation_quotes_hosts_reported_by_the_server() {
        let password = Password::new("r00t").unwrap();
        let account = Account {
            user: String::new(),
            host: "we'ird".into(),
        };
        let statements = Flavor::MySql80
            .secure_installation(&[account], &password)
            .unwrap();
        assert_eq!(statements[0], "DROP USER IF EXISTS ''@'we''ird'");
    }

    #[test]
    fn the_application_owner_is_granted_on_its_database_only() {
        let owner = Credentials::new("shop", "it's-secret").unwrap();
        let statements = Flavor::MariaDb.create_application("shop_db", &owner);
        assert_eq!(
            statements,
            vec![
                "CREATE DATABASE IF NOT EXISTS `shop_db`",
                "CREATE USER IF NOT EXISTS 'shop'@'%' IDENTIFIED BY 'it''s-secret'",
                "ALTER USER 'shop'@'%' IDENTIFIED BY 'it''s-secret'",
                "GRANT ALL PRIVILEGES ON `shop_db`.* TO 'shop'@'%'",
            ]
        );
        assert!(
            statements.iter().all(|s| !s.contains("*.*")),
            "no global grant"
        );
    }
}
