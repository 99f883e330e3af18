//! When a scheduled backup is due and which scheduled backups retention
//! removes: pure functions over the schedule, the clock and the backups.

use std::collections::BTreeSet;

use croner::Cron;
use k8s_openapi::jiff::{Timestamp, tz::TimeZone};

/// Whether a backup is due now: the schedule fired since the last
/// scheduled backup (or since `since`, when the cluster was made, before
/// the first). Missed firings make one backup, not one each.
pub fn due(cron: &Cron, last: Option<Timestamp>, since: Timestamp, now: Timestamp) -> bool {
    let from = last.unwrap_or(since).to_zoned(TimeZone::UTC);
    cron.find_next_occurrence(&from, false)
        .is_ok_and(|next| next.timestamp() <= now)
}

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
    use crate::validate::parse_schedule as parse;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn a_schedule_is_due_once_it_fired_since_the_last_backup() {
        let nightly = parse("0 3 * * *").unwrap();
        let created = at("2026-12-01T12:00:00Z");
        assert!(!due(&nightly, None, created, at("2026-12-02T02:59:59Z")));
        assert!(due(&nightly, None, created, at("2026-12-02T03:00:00Z")));
        let last = Some(at("2026-12-02T03:00:01Z"));
        assert!(!due(&nightly, last, created, at("2026-12-02T23:00:00Z")));
        assert!(
            due(&nightly, last, created, at("2026-12-05T08:00:00Z")),
            "missed days make one"
        );
    }

    #[test]
    fn seconds_are_optional() {
        let every_20s = parse("*/20 * * * * *").unwrap();
        let last = at("2026-12-02T03:00:00Z");
        assert!(!due(
            &every_20s,
            Some(last),
            last,
            at("2026-12-02T03:00:19Z")
        ));
        assert!(due(
            &every_20s,
            Some(last),
            last,
            at("2026-12-02T03:00:20Z")
        ));
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
