//! Semi-synchronous replication settings for a server acting as primary or
//! as replica.
//!
//! MySQL (8.0.26+, 8.4) ships semi-sync as two plugins,
//! `rpl_semi_sync_source` and `rpl_semi_sync_replica`; both should be loaded
//! on every server, since roles change. Loading them from my.cnf
//! (`plugin-load-add`) is best: `INSTALL PLUGIN` writes to `mysql.plugin`,
//! which `super_read_only` forbids. MariaDB has semi-sync built in.
//!
//! MariaDB waits for one acknowledgement, whatever the number of replicas;
//! it has no `wait_for_replica_count`. Asking it to wait for more than one
//! is an error here rather than a silently weaker guarantee: reject such a
//! spec at validation time. MySQL paths are not run against a real MySQL on
//! the build machines.

use serde::{Deserialize, Serialize};

use super::SqlError;
use super::quote::quote_literal;
use crate::flavor::Flavor;

/// Largest `rpl_semi_sync_source_timeout` MySQL accepts, in milliseconds.
pub const MYSQL_MAX_SEMI_SYNC_TIMEOUT_MS: u64 = u32::MAX as u64;

/// Largest `rpl_semi_sync_source_wait_for_replica_count` MySQL accepts.
pub const MYSQL_MAX_WAIT_FOR_REPLICAS: u32 = 65_535;

/// Lists the loaded plugins, one `PLUGIN_NAME` per row; compare with
/// [`Flavor::semi_sync_plugins`] to know which to install.
pub const ACTIVE_PLUGINS_QUERY: &str =
    "SELECT PLUGIN_NAME FROM information_schema.PLUGINS WHERE PLUGIN_STATUS = 'ACTIVE'";

/// How a cluster uses semi-synchronous replication.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SemiSync {
    /// Whether commits on the primary wait for replica acknowledgement.
    pub enabled: bool,
    /// How many replicas must acknowledge (MariaDB: exactly 1).
    pub wait_for_replicas: u32,
    /// How long the primary waits before falling back to asynchronous.
    pub timeout_ms: u64,
}

/// Reads semi-sync state on either flavor: rows of (Variable_name, Value),
/// including [`Flavor::semi_sync_primary_status_variable`].
pub const SEMI_SYNC_STATUS_QUERY: &str = "SHOW GLOBAL STATUS LIKE 'Rpl_semi_sync_%'";

/// A server plugin that has to be loaded for semi-sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plugin {
    /// Name as listed in `information_schema.PLUGINS`.
    pub name: &'static str,
    /// Shared library in the server's plugin directory.
    pub library: &'static str,
}

impl Plugin {
    /// `INSTALL PLUGIN` for this plugin.
    pub fn install_statement(&self) -> String {
        format!(
            "INSTALL PLUGIN {} SONAME {}",
            self.name,
            quote_literal(self.library)
        )
    }
}

const MYSQL_SEMI_SYNC_PLUGINS: &[Plugin] = &[
    Plugin {
        name: "rpl_semi_sync_source",
        library: "semisync_source.so",
    },
    Plugin {
        name: "rpl_semi_sync_replica",
        library: "semisync_replica.so",
    },
];

impl Flavor {
    /// Plugins semi-sync needs on this flavor (none on MariaDB).
    pub fn semi_sync_plugins(self) -> &'static [Plugin] {
        match self {
            Flavor::MariaDb => &[],
            Flavor::MySql80 | Flavor::MySql84 => MYSQL_SEMI_SYNC_PLUGINS,
        }
    }

    /// Settings for the primary: wait for acknowledgements (after the
    /// binary log sync, so an acknowledged transaction is on a replica
    /// before any client sees it) or not, and never act as a semi-sync
    /// replica.
    pub fn semi_sync_as_primary(self, semi_sync: &SemiSync) -> Result<Vec<String>, SqlError> {
        let (source, replica) = self.semi_sync_prefixes();
        if !semi_sync.enabled {
            return Ok(vec![
                format!("SET GLOBAL {source}_enabled = OFF"),
                format!("SET GLOBAL {replica}_enabled = OFF"),
            ]);
        }
        if semi_sync.wait_for_replicas == 0 {
            return Err(SqlError::SemiSyncWaitsForNoReplica);
        }
        let timeout = semi_sync.timeout_ms;
        let mut statements = Vec::new();
        match self {
            Flavor::MariaDb => {
                if semi_sync.wait_for_replicas > 1 {
                    return Err(SqlError::SemiSyncWaitCountUnsupported {
                        requested: semi_sync.wait_for_replicas,
                    });
                }
            }
            Flavor::MySql80 | Flavor::MySql84 => {
                if semi_sync.wait_for_replicas > MYSQL_MAX_WAIT_FOR_REPLICAS {
                    return Err(SqlError::SemiSyncWaitCountTooLarge {
                        requested: semi_sync.wait_for_replicas,
                        maximum: MYSQL_MAX_WAIT_FOR_REPLICAS,
                    });
                }
                if timeout > MYSQL_MAX_SEMI_SYNC_TIMEOUT_MS {
                    return Err(SqlError::SemiSyncTimeoutTooLarge {
                        requested_ms: timeout,
                        maximum_ms: MYSQL_MAX_SEMI_SYNC_TIMEOUT_MS,
                    });
                }
                statements.push(format!(
                    "SET GLOBAL {source}_wait_for_replica_count = {}",
                    semi_sync.wait_for_replicas
                ));
            }
        }
        statements.extend([
            format!("SET GLOBAL {source}_timeout = {timeout}"),
            format!("SET GLOBAL {source}_wait_point = AFTER_SYNC"),
            format!("SET GLOBAL {source}_enabled = ON"),
            format!("SET GLOBAL {replica}_enabled = OFF"),
        ]);
        Ok(statements)
    }

    /// Settings for a replica: acknowledge when semi-sync is on, and never
    /// wait as a primary. Takes effect when the replica's I/O thread
    /// (re)connects, so apply it before [`Flavor::start_replication`].
    pub fn semi_sync_as_replica(self, semi_sync: &SemiSync) -> Vec<String> {
        let (source, replica) = self.semi_sync_prefixes();
        let on_off = if semi_sync.enabled { "ON" } else { "OFF" };
        vec![
            format!("SET GLOBAL {source}_enabled = OFF"),
            format!("SET GLOBAL {replica}_enabled = {on_off}"),
        ]
    }

    /// Stops waiting for acknowledgements on this server at once: commits
    /// blocked waiting for one complete. For a server that must stop being
    /// a primary after its clients' sessions were ended (so no client is
    /// told those commits succeeded); fencing cannot finish while they wait.
    pub fn semi_sync_source_off(self) -> String {
        let (source, _) = self.semi_sync_prefixes();
        format!("SET GLOBAL {source}_enabled = OFF")
    }

    /// The status variable that is `ON` while a primary is actually waiting
    /// for acknowledgements (it turns `OFF` after a timeout).
    pub fn semi_sync_primary_status_variable(self) -> &'static str {
        match self {
            Flavor::MariaDb => "Rpl_semi_sync_master_status",
            Flavor::MySql80 | Flavor::MySql84 => "Rpl_semi_sync_source_status",
        }
    }

    fn semi_sync_prefixes(self) -> (&'static str, &'static str) {
        match self {
            Flavor::MariaDb => ("rpl_semi_sync_master", "rpl_semi_sync_slave"),
            Flavor::MySql80 | Flavor::MySql84 => ("rpl_semi_sync_source", "rpl_semi_sync_replica"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ON_ONE: SemiSync = SemiSync {
        enabled: true,
        wait_for_replicas: 1,
        timeout_ms: 10_000,
    };

    #[test]
    fn mariadb_primary_enables_built_in_master_semi_sync_after_sync() {
        assert_eq!(
            Flavor::MariaDb.semi_sync_as_primary(&ON_ONE).unwrap(),
            vec![
                "SET GLOBAL rpl_semi_sync_master_timeout = 10000".to_owned(),
                "SET GLOBAL rpl_semi_sync_master_wait_point = AFTER_SYNC".to_owned(),
                "SET GLOBAL rpl_semi_sync_master_enabled = ON".to_owned(),
                "SET GLOBAL rpl_semi_sync_slave_enabled = OFF".to_owned(),
            ]
        );
    }

    #[test]
    fn mariadb_refuses_to_wait_for_more_than_one_replica() {
        let two = SemiSync {
            wait_for_replicas: 2,
            ..ON_ONE
        };
        assert_eq!(
            Flavor::MariaDb.semi_sync_as_primary(&two),
            Err(SqlError::SemiSyncWaitCountUnsupported { requested: 2 })
        );
    }

    #[test]
    fn mysql_primary_sets_wait_count_and_source_variables() {
        for flavor in [Flavor::MySql80, Flavor::MySql84] {
            let two = SemiSync {
                wait_for_replicas: 2,
                ..ON_ONE
            };
            let statements = flavor.semi_sync_as_primary(&two).unwrap();
            assert_eq!(
                statements,
                vec![
                    "SET GLOBAL rpl_semi_sync_source_wait_for_replica_count = 2".to_owned(),
                    "SET GLOBAL rpl_semi_sync_source_timeout = 10000".to_owned(),
                    "SET GLOBAL rpl_semi_sync_source_wait_point = AFTER_SYNC".to_owned(),
                    "SET GLOBAL rpl_semi_sync_source_enabled = ON".to_owned(),
                    "SET GLOBAL rpl_semi_sync_replica_enabled = OFF".to_owned(),
                ]
            );
        }
    }

    #[test]
    fn waiting_for_zero_replicas_is_refused() {
        let zero = SemiSync {
            wait_for_replicas: 0,
            ..ON_ONE
        };
        for flavor in [Flavor::MySql80, Flavor::MariaDb] {
            assert_eq!(
                flavor.semi_sync_as_primary(&zero),
                Err(SqlError::SemiSyncWaitsForNoReplica)
            );
        }
    }

    #[test]
    fn mysql_timeout_beyond_u32_is_refused() {
        let long = SemiSync {
            timeout_ms: u64::from(u32::MAX) + 1,
            ..ON_ONE
        };
        assert!(matches!(
            Flavor::MySql84.semi_sync_as_primary(&long),
            Err(SqlError::SemiSyncTimeoutTooLarge { .. })
        ));
        assert!(Flavor::MariaDb.semi_sync_as_primary(&long).is_ok());
    }

    #[test]
    fn disabled_semi_sync_turns_both_sides_off_without_checking_counts() {
        let off = SemiSync {
            enabled: false,
            wait_for_replicas: 0,
            timeout_ms: 0,
        };
        assert_eq!(
            Flavor::MariaDb.semi_sync_as_primary(&off).unwrap(),
            vec![
                "SET GLOBAL rpl_semi_sync_master_enabled = OFF".to_owned(),
                "SET GLOBAL rpl_semi_sync_slave_enabled = OFF".to_owned(),
            ]
        );
    }

    #[test]
    fn replica_acknowledges_and_stops_acting_as_source() {
        assert_eq!(
            Flavor::MySql80.semi_sync_as_replica(&ON_ONE),
            vec![
                "SET GLOBAL rpl_semi_sync_source_enabled = OFF".to_owned(),
                "SET GLOBAL rpl_semi_sync_replica_enabled = ON".to_owned(),
            ]
        );
        assert_eq!(
            Flavor::MariaDb.semi_sync_as_replica(&ON_ONE)[1],
            "SET GLOBAL rpl_semi_sync_slave_enabled = ON"
        );
    }

    #[test]
    fn only_mysql_needs_plugins() {
        assert!(Flavor::MariaDb.semi_sync_plugins().is_empty());
        let installs: Vec<_> = Flavor::MySql84
            .semi_sync_plugins()
            .iter()
            .map(Plugin::install_statement)
            .collect();
        assert_eq!(
            installs,
            vec![
                "INSTALL PLUGIN rpl_semi_sync_source SONAME 'semisync_source.so'".to_owned(),
                "INSTALL PLUGIN rpl_semi_sync_replica SONAME 'semisync_replica.so'".to_owned(),
            ]
        );
    }

    #[test]
    fn primary_status_variable_follows_flavor_vocabulary() {
        assert_eq!(
            Flavor::MariaDb.semi_sync_primary_status_variable(),
            "Rpl_semi_sync_master_status"
        );
        assert_eq!(
            Flavor::MySql80.semi_sync_primary_status_variable(),
            "Rpl_semi_sync_source_status"
        );
    }
}
