//! Cron schedules in UTC (`spec.backup.schedule`, `spec.backup.verify.schedule`):
//! parsing them, and when one fires next and whether it is due.

use croner::Cron;
use k8s_openapi::jiff::{Timestamp, tz::TimeZone};

/// Parses a cron expression in UTC, five fields or six with seconds first.
pub fn parse(schedule: &str) -> Result<Cron, String> {
    use croner::parser::{CronParser, Seconds, Year};
    CronParser::builder()
        .seconds(Seconds::Optional)
        .year(Year::Disallowed)
        .build()
        .parse(schedule)
        .map_err(|e| e.to_string())
}

/// When the schedule fires first after `from`.
pub fn next_after(cron: &Cron, from: Timestamp) -> Option<Timestamp> {
    cron.find_next_occurrence(&from.to_zoned(TimeZone::UTC), false)
        .ok()
        .map(|next| next.timestamp())
}

/// Whether the schedule fired since `last` (or since `since`, before the
/// first time): missed firings make one, not one each.
pub fn due(cron: &Cron, last: Option<Timestamp>, since: Timestamp, now: Timestamp) -> bool {
    next_after(cron, last.unwrap_or(since)).is_some_and(|next| next <= now)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn a_schedule_is_due_once_it_fired_since_the_last_time() {
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
        assert_eq!(
            next_after(&nightly, at("2026-12-02T03:00:01Z")),
            Some(at("2026-12-03T03:00:00Z"))
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
    fn years_and_nonsense_are_refused() {
        assert!(parse("0 3 * * * 2027").is_err());
        assert!(parse("nightly").is_err());
    }
}
