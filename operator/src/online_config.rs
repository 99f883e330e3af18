//! Which `spec.mysqlConfig` settings reach running servers with `SET
//! GLOBAL` instead of a restart: variables that MariaDB 10.6+ and MySQL
//! 8.0+ both change at runtime, given values that read the same in my.cnf
//! and in SQL. Everything else is a new pod template, rolled out by restart.

use std::collections::BTreeMap;

/// Variables both flavors change at runtime, in normal form. Conservative:
/// a variable missing here is applied by a rolling restart instead.
pub const ONLINE_KEYS: &[&str] = &[
    "binlog_cache_size",
    "connect_timeout",
    "general_log",
    "innodb_lock_wait_timeout",
    "innodb_max_dirty_pages_pct",
    "innodb_print_all_deadlocks",
    "interactive_timeout",
    "join_buffer_size",
    "key_buffer_size",
    "lock_wait_timeout",
    "log_queries_not_using_indexes",
    "long_query_time",
    "max_allowed_packet",
    "max_connect_errors",
    "max_connections",
    "max_heap_table_size",
    "max_user_connections",
    "min_examined_row_limit",
    "net_read_timeout",
    "net_write_timeout",
    "read_buffer_size",
    "read_rnd_buffer_size",
    "slow_query_log",
    "sort_buffer_size",
    "sql_mode",
    "table_definition_cache",
    "table_open_cache",
    "thread_cache_size",
    "tmp_table_size",
    "wait_timeout",
];

/// The SQL value `SET GLOBAL` takes for a my.cnf value, when there is one
/// that means the same: integers, decimals, sizes with a K/M/G suffix (in
/// bytes), ON/OFF, and words or comma lists (quoted).
pub fn sql_value(value: &str) -> Option<String> {
    let v = value.trim();
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if digits(v) {
        return Some(v.to_owned());
    }
    if let Some((whole, fraction)) = v.split_once('.')
        && digits(whole)
        && digits(fraction)
    {
        return Some(v.to_owned());
    }
    if let Some(unit) = v.chars().last()
        && let Some(number) = v.strip_suffix(unit)
        && digits(number)
    {
        let shift = match unit.to_ascii_uppercase() {
            'K' => 10,
            'M' => 20,
            'G' => 30,
            _ => return None,
        };
        return number
            .parse::<u64>()
            .ok()?
            .checked_mul(1 << shift)
            .map(|bytes| bytes.to_string());
    }
    if v.eq_ignore_ascii_case("on") || v.eq_ignore_ascii_case("off") {
        return Some(v.to_ascii_uppercase());
    }
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b',';
    (!v.is_empty() && v.bytes().all(word)).then(|| format!("'{v}'"))
}

/// The variable `key` names when it is set online, if it is.
fn online_key(key: &str) -> Option<&'static str> {
    let normal = key.to_ascii_lowercase().replace('-', "_");
    ONLINE_KEYS.iter().copied().find(|k| *k == normal)
}

/// Whether `key = value` reaches running servers without a restart.
pub fn applies_online(key: &str, value: &str) -> bool {
    online_key(key).is_some() && sql_value(value).is_some()
}

/// The settings of `config` that apply online: variable -> SQL value.
pub fn online(config: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    config
        .iter()
        .filter_map(|(key, value)| Some((online_key(key)?.to_owned(), sql_value(value)?)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_become_what_set_global_takes() {
        assert_eq!(sql_value("300").as_deref(), Some("300"));
        assert_eq!(sql_value(" 0.5 ").as_deref(), Some("0.5"));
        assert_eq!(sql_value("64M").as_deref(), Some("67108864"));
        assert_eq!(sql_value("1g").as_deref(), Some("1073741824"));
        assert_eq!(sql_value("on").as_deref(), Some("ON"));
        assert_eq!(
            sql_value("STRICT_TRANS_TABLES,NO_ZERO_DATE").as_deref(),
            Some("'STRICT_TRANS_TABLES,NO_ZERO_DATE'")
        );
        for unsafe_or_unknown in ["", "1T", "1.", "a b", "x'; DROP", "99999999999999999999G"] {
            assert_eq!(sql_value(unsafe_or_unknown), None, "{unsafe_or_unknown:?}");
        }
    }

    #[test]
    fn only_listed_variables_with_plain_values_apply_online() {
        let config = BTreeMap::from([
            ("Max-Connections".to_owned(), "300".to_owned()),
            ("back_log".to_owned(), "100".to_owned()),
            ("loose-wait_timeout".to_owned(), "60".to_owned()),
            ("long_query_time".to_owned(), "a b".to_owned()),
        ]);
        assert_eq!(
            online(&config),
            BTreeMap::from([("max_connections".to_owned(), "300".to_owned())])
        );
        assert!(applies_online("max_connections", "300"));
        assert!(!applies_online("back_log", "100"), "static on both flavors");
    }
}
