//! The `<name>-config` ConfigMap: the my.cnf parts every instance's init step
//! assembles into its server configuration (common, plus the primary or the
//! replica part, plus the per-pod identity the init step adds itself).

use std::{collections::BTreeMap, fmt::Write};

use ebisu_api::{
    Flavor,
    names::{
        self, CONFIG_COMMON, CONFIG_PRIMARY, CONFIG_REPLAY, CONFIG_REPLICA, DATA_DIR, MYSQL_PORT,
        RUN_DIR,
    },
};
use k8s_openapi::api::core::v1::ConfigMap;

use super::child_meta;
use crate::validate::ValidatedCluster;

/// ConfigMap key read by each instance's init step: `allowed` until the
/// cluster has had a primary, `forbidden` after, so an instance whose volume
/// was lost copies from a peer instead of starting an empty primary.
pub const BOOTSTRAP_KEY: &str = "bootstrap";

/// Builds the ConfigMap. `holds_data`: the cluster has had a primary.
/// The replay order goes in too while a restore to a point is not done.
pub fn build(cluster: &ValidatedCluster, holds_data: bool) -> ConfigMap {
    let mut data = BTreeMap::from([
        (CONFIG_COMMON.to_owned(), common(cluster)),
        (CONFIG_PRIMARY.to_owned(), primary(cluster)),
        (CONFIG_REPLICA.to_owned(), replica(cluster)),
        (
            BOOTSTRAP_KEY.to_owned(),
            if holds_data { "forbidden" } else { "allowed" }.to_owned(),
        ),
    ]);
    if let Some(order) = &cluster.replay
        && let Ok(json) = serde_json::to_string(order)
    {
        data.insert(CONFIG_REPLAY.to_owned(), json);
    }
    ConfigMap {
        metadata: child_meta(cluster, names::config_map(&cluster.name)),
        data: Some(data),
        ..ConfigMap::default()
    }
}

/// A digest of the my.cnf parts every server reads at start (hex, 16
/// characters): stable across operator builds, as it marks pod templates.
/// Settings that reach running servers without a restart are left out:
/// the role parts (semi-sync, which the operator sets on the servers
/// itself) and the user's settings that apply online.
pub fn server_config_digest(cluster: &ValidatedCluster) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(common_with(cluster, false).as_bytes())[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Settings every instance has, whatever its role. Every server starts
/// read-only: only the operator makes a server writable, so a restarted
/// former primary can never take writes behind its back.
fn common(cluster: &ValidatedCluster) -> String {
    common_with(cluster, true)
}

/// [`common`], with or without the user's settings that apply online.
fn common_with(cluster: &ValidatedCluster, online_too: bool) -> String {
    let mut cnf = String::from("[mysqld]\n");
    let mut set = |key: &str, value: &str| {
        // Writing to a String cannot fail.
        let _ = writeln!(cnf, "{key} = {value}");
    };
    set("datadir", DATA_DIR);
    set("socket", &format!("{RUN_DIR}/mysqld.sock"));
    set("pid_file", &format!("{RUN_DIR}/mysqld.pid"));
    set("port", &MYSQL_PORT.to_string());
    set("bind_address", "0.0.0.0");
    set("skip_name_resolve", "ON");
    set("read_only", "ON");
    set("sync_binlog", "1");
    set("innodb_flush_log_at_trx_commit", "1");
    set("relay_log", "relay-bin");
    // Keep what a replica received but did not apply across its restart: it
    // may be the only copy of an acknowledged write once the primary is gone
    // (a failover starts the applier of such a replica before it chooses).
    // The relay log is synced every sync_relay_log events (the server
    // default, 10000), so a machine's crash can still lose what a replica
    // received since the last sync (a killed server loses nothing: the file
    // system has it). MariaDB discards the relay log when replication
    // starts with both threads stopped, so after each start of a MariaDB
    // server its agent applies the relay log first and nobody starts
    // replication there before (sidecar agent/relay_log.rs).
    set("relay_log_recovery", "OFF");
    // The agents purge instead, on the operator's word, once every
    // instance and the archive hold a file's transactions
    // (spec.binaryLogs).
    set("binlog_expire_logs_seconds", "0");
    // A replica notices a silent source within the failover delay (the
    // source sends heartbeats at half this period), so by the time a
    // failover stops the receivers they are reconnecting rather than
    // blocked on a dead connection, and stop at once.
    let net_timeout = cluster.failover.after_seconds.max(2).to_string();
    match cluster.flavor {
        Flavor::Mariadb => {
            set("log_bin", "mysql-bin");
            set("binlog_format", "ROW");
            set("log_slave_updates", "ON");
            set("gtid_strict_mode", "ON");
            // Replication restarts only when the sidecar or operator asks, after
            // they have checked where it should point.
            set("skip_slave_start", "ON");
            set("slave_net_timeout", &net_timeout);
            // Directories on the volume that are not databases: the file
            // system's, and data set aside before a re-seed. The backup tool
            // reads this file too, so it never streams them.
            set("ignore_db_dirs", "lost+found");
            set("ignore_db_dirs", ebisu_api::names::KEPT_DIR);
        }
        Flavor::Mysql => {
            set("log_bin", "binlog");
            set("gtid_mode", "ON");
            set("enforce_gtid_consistency", "ON");
            set("log_replica_updates", "ON");
            set("super_read_only", "ON");
            set("skip_replica_start", "ON");
            set("replica_net_timeout", &net_timeout);
        }
    }
    if cluster.flavor == Flavor::Mysql {
        // New instances are seeded with the CLONE plugin: every server may donate.
        set("plugin_load_add", "mysql_clone.so");
        // No file import or export, and no dependence on a directory the
        // image may lack.
        set("secure_file_priv", "NULL");
        set("mysqlx", "OFF");
    }
    if cluster.semi_sync_config.is_some() && cluster.flavor == Flavor::Mysql {
        set("plugin_load_add", "semisync_source.so");
        set("plugin_load_add", "semisync_replica.so");
    }
    let user: Vec<(&String, &String)> = cluster
        .mysql_config
        .iter()
        .filter(|(key, value)| online_too || !crate::online_config::applies_online(key, value))
        .collect();
    if !user.is_empty() {
        cnf.push_str("# spec.mysqlConfig\n");
        for (key, value) in user {
            let _ = writeln!(cnf, "{key} = {value}");
        }
    }
    cnf
}

/// Added on the instance that is (or bootstraps as) the primary. The
/// source side of semi-sync is switched on by the operator, once a replica
/// holds data (so a new cluster's writes never wait for a seed); these are
/// the settings it then runs with: wait after the binary log sync, and for
/// as long as the spec says (by default, for ever).
fn primary(cluster: &ValidatedCluster) -> String {
    let mut cnf = String::from("[mysqld]\n");
    if let Some(semi) = cluster.semi_sync_config {
        match cluster.flavor {
            Flavor::Mariadb => {
                let _ = writeln!(cnf, "rpl_semi_sync_master_timeout = {}", semi.timeout_ms);
                let _ = writeln!(cnf, "rpl_semi_sync_master_wait_point = AFTER_SYNC");
            }
            Flavor::Mysql => {
                // `loose_` lets the server start even if the plugin failed to load;
                // the operator checks semi-sync at runtime.
                let _ = writeln!(
                    cnf,
                    "loose_rpl_semi_sync_source_timeout = {}",
                    semi.timeout_ms
                );
                let _ = writeln!(
                    cnf,
                    "loose_rpl_semi_sync_source_wait_for_replica_count = {}",
                    semi.wait_for_replicas
                );
                let _ = writeln!(cnf, "loose_rpl_semi_sync_source_wait_point = AFTER_SYNC");
            }
        }
    }
    cnf
}

/// Added on replicas.
fn replica(cluster: &ValidatedCluster) -> String {
    let mut cnf = String::from("[mysqld]\n");
    if cluster.semi_sync_config.is_some() {
        match cluster.flavor {
            Flavor::Mariadb => {
                let _ = writeln!(cnf, "rpl_semi_sync_slave_enabled = ON");
            }
            Flavor::Mysql => {
                let _ = writeln!(cnf, "loose_rpl_semi_sync_replica_enabled = ON");
            }
        }
    }
    cnf
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::fixtures::{BASIC, MYSQL_PRODUCTION, SINGLE, validated};

    fn build_fresh(cluster: &ValidatedCluster) -> ConfigMap {
        build(cluster, false)
    }

    #[test]
    fn bootstrap_is_forbidden_once_the_cluster_had_a_primary() {
        let cluster = validated(BASIC);
        assert_eq!(part(&build(&cluster, false), BOOTSTRAP_KEY), "allowed");
        assert_eq!(part(&build(&cluster, true), BOOTSTRAP_KEY), "forbidden");
    }

    fn part(cm: &ConfigMap, key: &str) -> String {
        cm.data
            .as_ref()
            .and_then(|d| d.get(key))
            .cloned()
            .expect("part exists")
    }

    #[test]
    fn every_server_starts_read_only_with_binlog_and_gtid() {
        let mariadb = build_fresh(&validated(BASIC));
        let common = part(&mariadb, CONFIG_COMMON);
        assert!(common.starts_with("[mysqld]\n"));
        for line in [
            "read_only = ON",
            "log_bin = mysql-bin",
            "log_slave_updates = ON",
            "gtid_strict_mode = ON",
            "sync_binlog = 1",
            "relay_log_recovery = OFF",
            "slave_net_timeout = 3",
        ] {
            assert!(common.contains(line), "{line} missing from {common}");
        }
        let mysql = part(&build_fresh(&validated(MYSQL_PRODUCTION)), CONFIG_COMMON);
        for line in [
            "super_read_only = ON",
            "gtid_mode = ON",
            "enforce_gtid_consistency = ON",
            "log_replica_updates = ON",
        ] {
            assert!(mysql.contains(line), "{line} missing from {mysql}");
        }
    }

    #[test]
    fn semi_sync_is_configured_per_role_and_flavor() {
        let basic = build_fresh(&validated(BASIC));
        assert!(
            !part(&basic, CONFIG_PRIMARY).contains("rpl_semi_sync_master_enabled"),
            "the operator switches the source side on once a replica holds data"
        );
        assert!(
            part(&basic, CONFIG_PRIMARY).contains("rpl_semi_sync_master_timeout = 4294967295"),
            "no timeout set: never fall back to asynchronous"
        );
        assert!(
            part(&basic, CONFIG_PRIMARY).contains("rpl_semi_sync_master_wait_point = AFTER_SYNC")
        );
        assert!(part(&basic, CONFIG_REPLICA).contains("rpl_semi_sync_slave_enabled = ON"));

        let production = build_fresh(&validated(MYSQL_PRODUCTION));
        assert!(
            part(&production, CONFIG_PRIMARY)
                .contains("loose_rpl_semi_sync_source_wait_for_replica_count = 2")
        );
        assert!(
            part(&production, CONFIG_PRIMARY)
                .contains("loose_rpl_semi_sync_source_timeout = 30000")
        );
        assert!(part(&production, CONFIG_COMMON).contains("plugin_load_add = semisync_source.so"));
        assert!(
            part(&production, CONFIG_COMMON).contains("plugin_load_add = mysql_clone.so"),
            "MySQL seeds new instances with the CLONE plugin"
        );
    }

    #[test]
    fn semi_sync_settings_are_configured_unless_turned_off() {
        // One instance: the settings are there (the operator leaves the
        // source side off at runtime), so scaling up restarts nothing.
        let single = build_fresh(&validated(SINGLE));
        assert!(part(&single, CONFIG_PRIMARY).contains("rpl_semi_sync_master_timeout"));
        let off = build_fresh(&validated(&format!(
            "{SINGLE}  replication: {{semiSync: false}}\n"
        )));
        assert!(!part(&off, CONFIG_PRIMARY).contains("semi_sync"));
        assert!(!part(&off, CONFIG_REPLICA).contains("semi_sync"));
    }

    #[test]
    fn user_settings_come_after_managed_ones() {
        let common = part(&build_fresh(&validated(MYSQL_PRODUCTION)), CONFIG_COMMON);
        let managed = common.find("read_only = ON").expect("managed setting");
        let user = common
            .find("innodb_buffer_pool_size = 12G")
            .expect("user setting");
        assert!(managed < user);
        assert!(common.contains("max_connections = 2000"));
    }

    #[test]
    fn the_config_digest_follows_settings_that_need_a_restart() {
        let basic = validated(BASIC);
        let digest = server_config_digest(&basic);
        assert_eq!(digest.len(), 16);
        assert_eq!(digest, server_config_digest(&validated(BASIC)), "stable");
        let mut tuned = basic.clone();
        tuned
            .mysql_config
            .insert("max_connections".to_owned(), "300".to_owned());
        assert_eq!(
            server_config_digest(&tuned),
            digest,
            "a setting applied online restarts nothing"
        );
        tuned
            .mysql_config
            .insert("back_log".to_owned(), "100".to_owned());
        assert_ne!(server_config_digest(&tuned), digest, "a static setting");
        assert!(common(&tuned).contains("max_connections = 300"));
        assert_ne!(server_config_digest(&validated(MYSQL_PRODUCTION)), digest);
    }

    #[test]
    fn scaling_to_one_and_back_changes_no_configuration() {
        // A new configuration is a new revision: every server would restart.
        let many = validated(BASIC);
        let one = validated(&BASIC.replace(&format!("replicas: {}", many.replicas), "replicas: 1"));
        assert_eq!(one.replicas, 1, "the fixture names its replicas");
        assert_eq!(one.semi_sync, None);
        assert_eq!(build(&many, true).data, build(&one, true).data);
    }
}
