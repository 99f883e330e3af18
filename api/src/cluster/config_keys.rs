//! Which `spec.mysqlConfig` keys ebisu refuses: the settings it manages
//! itself, and the ones that would remove authentication, cut the
//! operator off, or give up durability ebisu promises. The servers accept
//! an option in many spellings (any case, `-` or `_`, and the `loose-`,
//! `skip-`, `enable-`, `disable-`, `maximum-` and `autoset-` prefixes), so
//! keys are compared in one normal form, by the schema's CEL rule and by
//! the operator alike, both built from this one list.

/// Option names refused, in normal form (lowercase, `_`). A trailing `*`
/// refuses every option that starts with the rest.
pub const REFUSED_MYSQL_CONFIG_KEYS: &[&str] = &[
    // Identity, paths and ports the init step and the operator depend on.
    "server_id",
    "datadir",
    "port",
    "socket",
    "pid_file",
    "bind_address",
    "report_host",
    "skip_name_resolve",
    "ignore_db_dirs",
    // Binary log, GTIDs and relay logs: replication and failover rely on them.
    "log_bin",
    "binlog_format",
    // Binary logs are purged by ebisu, only once every instance and the
    // archive hold them (spec.binaryLogs.expireSeconds).
    "binlog_expire_logs_seconds",
    "expire_logs_days",
    "max_binlog_total_size",
    "binlog_space_limit",
    "gtid_*",
    "enforce_gtid_consistency",
    "log_slave_updates",
    "log_replica_updates",
    "relay_log*",
    "skip_slave_start",
    "skip_replica_start",
    "slave_net_timeout",
    "replica_net_timeout",
    "rpl_semi_sync_*",
    // Filters and error skipping: a transaction that is acknowledged but
    // not binlogged or not applied is lost at failover, silently.
    "binlog_do_db",
    "binlog_ignore_db",
    "replicate_*",
    "slave_skip_errors",
    "replica_skip_errors",
    "slave_exec_mode",
    "replica_exec_mode",
    // Statements every replica's applier runs (a `SET GLOBAL read_only=0`
    // there makes every replica writable).
    "init_slave",
    "init_replica",
    // Fencing.
    "read_only",
    "super_read_only",
    // Durability of acknowledged writes, and of what a replica received.
    "sync_binlog",
    "innodb_flush_log_at_trx_commit",
    "innodb_doublewrite",
    "sync_relay_log",
    "sync_master_info",
    "sync_source_info",
    // InnoDB files outside the data volume (the pod's other directories
    // are emptied on restart: redo or data would be lost).
    "innodb_log_group_home_dir",
    "innodb_data_home_dir",
    "innodb_undo_directory",
    "innodb_data_file_path",
    // Authentication and the operator's way in.
    "skip_grant_tables",
    "grant_tables",
    "skip_networking",
    "networking",
    "init_file",
    // Code loaded into the server, passwords in logs, files read or written
    // by clients.
    "plugin_*",
    "log_raw",
    "local_infile",
    "secure_file_priv",
];

/// Prefixes the servers accept in front of any option name.
pub const OPTION_PREFIXES: &[&str] = &["loose", "skip", "enable", "disable", "maximum", "autoset"];

/// A key in normal form: lowercase, `-` as `_`, option prefixes removed.
pub fn normal_form(key: &str) -> String {
    let mut key = key.to_ascii_lowercase().replace('-', "_");
    'strip: loop {
        for prefix in OPTION_PREFIXES {
            if let Some(rest) = key.strip_prefix(&format!("{prefix}_")) {
                // `skip_grant_tables` is itself a refused name: keep it whole.
                if refused_exactly(&key) {
                    break 'strip;
                }
                key = rest.to_owned();
                continue 'strip;
            }
        }
        break;
    }
    key
}

fn refused_exactly(key: &str) -> bool {
    REFUSED_MYSQL_CONFIG_KEYS
        .iter()
        .any(|refused| match refused.strip_suffix('*') {
            Some(start) => key.starts_with(start),
            None => key == *refused,
        })
}

/// Whether `spec.mysqlConfig` may not set `key`, in whatever spelling.
pub fn is_refused(key: &str) -> bool {
    let lowered = key.to_ascii_lowercase().replace('-', "_");
    refused_exactly(&lowered) || refused_exactly(&normal_form(key))
}

/// The regular expression (RE2) the CEL rule matches a lowercased,
/// underscored key against: any run of option prefixes, then a refused name.
pub fn refused_pattern() -> String {
    let names: Vec<String> = REFUSED_MYSQL_CONFIG_KEYS
        .iter()
        .map(|name| match name.strip_suffix('*') {
            Some(start) => format!("{start}.*"),
            None => (*name).to_owned(),
        })
        .collect();
    format!("^(({})_)*({})$", OPTION_PREFIXES.join("|"), names.join("|"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_spelling_of_a_managed_key_is_refused() {
        for key in [
            "read_only",
            "read-only",
            "READ_ONLY",
            "loose-read-only",
            "super_read-only",
            "loose_super_read_only",
            "skip-read-only",
            "skip-grant-tables",
            "Skip_Grant_Tables",
            "disable-grant-tables",
            "skip-networking",
            "init-file",
            "gtid-domain-id",
            "loose-rpl-semi-sync-master-timeout",
            "relay-log-recovery",
            "sync-binlog",
            "innodb_flush_log_at_trx_commit",
            "binlog-ignore-db",
            "replicate_wild_ignore_table",
            "loose-replicate-do-db",
            "slave_skip_errors",
            "replica-exec-mode",
            "init_slave",
            "init-replica",
            "innodb_log_group_home_dir",
            "innodb-undo-directory",
            "innodb_doublewrite",
            "sync_relay_log",
            "plugin-load-add",
            "plugin_dir",
            "log_raw",
            "local-infile",
            "secure_file_priv",
        ] {
            assert!(is_refused(key), "{key} must be refused");
        }
    }

    #[test]
    fn ordinary_settings_are_allowed() {
        for key in [
            "max_connections",
            "innodb_buffer_pool_size",
            "character-set-server",
            "loose-innodb-io-capacity",
            "skip_external_locking",
            "log_error",
            "binlog_cache_size",
        ] {
            assert!(!is_refused(key), "{key} must be allowed");
        }
    }

    #[test]
    fn the_cel_pattern_agrees_with_the_rust_check() {
        let pattern = refused_pattern();
        assert!(pattern.starts_with("^((loose|skip|enable|disable|maximum|autoset)_)*("));
        assert!(pattern.contains("|gtid_.*|") && pattern.contains("|rpl_semi_sync_.*|"));
    }
}
