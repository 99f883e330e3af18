//! Which scheduled backups retention removes and what a scheduled backup
//! is named: pure functions over the clock and the backups (when the
//! schedule is due is `crate::cron`'s).

use std::collections::BTreeSet;

use k8s_openapi::jiff::Timestamp;

/// A scheduled backup as retention sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kept {
    /// The MySQLBackup.
    pub name: String,
    /// When it was made.
    pub created: Timestamp,
    /// It is complete (restorable).
    pub completed: bool,
}

/// The scheduled backups to delete: the completed ones beyond the newest
/// `keep` completed ones, never one in `in_use` (a restore in progress
/// starts from it). Backups not completed yet are left alone.
pub fn expired(backups: &[Kept], keep: u32, in_use: &BTreeSet<String>) -> Vec<String> {
    let mut completed: Vec<&Kept> = backups.iter().filter(|b| b.completed).collect();
    completed.sort_by(|a, b| b.created.cmp(&a.created).then_with(|| b.name.cmp(&a.name)));
    completed
        .into_iter()
        .skip(usize::try_from(keep).unwrap_or(usize::MAX))
        .filter(|b| !in_use.contains(&b.name))
        .map(|b| b.name.clone())
        .collect()
}

/// The name of the backup a schedule makes at `now`.
pub fn backup_name(cluster: &str, now: Timestamp) -> String {
    format!("{cluster}-{}", now.strftime("%Y%m%d-%H%M%S"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn retention_keeps_the_newest_completed_and_those_in_use() {
        let b = |name: &str, day: u32, completed: bool| Kept {
            name: name.to_owned(),
            created: at(&format!("2026-12-0{day}T03:00:00Z")),
            completed,
        };
        let backups = [
            b("d1", 1, true),
            b("d2", 2, true),
            b("d3", 3, false),
            b("d4", 4, true),
            b("d5", 5, true),
        ];
        assert_eq!(expired(&backups, 2, &BTreeSet::new()), ["d2", "d1"]);
        let in_use: BTreeSet<String> = ["d1".to_owned()].into();
        assert_eq!(expired(&backups, 2, &in_use), ["d2"]);
        assert!(expired(&backups, 4, &BTreeSet::new()).is_empty());
        assert_eq!(expired(&backups, 1, &BTreeSet::new()), ["d4", "d2", "d1"]);
    }

    #[test]
    fn names_say_when() {
        assert_eq!(
            backup_name("shop", at("2026-12-04T03:00:07Z")),
            "shop-20261204-030007"
        );
    }
}
