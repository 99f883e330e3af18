//! MySQL GTID sets, `uuid:1-5:7,uuid2:1-3`: parsing what mysqld prints,
//! canonical text, and set algebra.
//!
//! Canonical form: server UUIDs lowercase and sorted, intervals sorted and
//! merged when they overlap or touch (`1-3:4-5` is `1-5`), single
//! transactions written `7`, entries joined by `,` without the newlines
//! mysqld adds. Parsing accepts whitespace and newlines around entries.
//!
//! MySQL 8.3+ tagged GTIDs (`uuid:tag:1-5`, several tags per UUID as in
//! `uuid:1-5:tag:1-3`) are supported: a tag applies to the intervals after
//! it, untagged intervals come first, and tags are lowercased. Tagged
//! transactions are distinct from untagged ones with the same UUID.
//!
//! Checked against the MySQL manual's format and against the sets MySQL
//! 9.7 reports in the end-to-end test (untagged ones; tags from the manual).

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The largest transaction number MySQL assigns (2^63 - 1).
pub const MAX_TRANSACTION_NUMBER: u64 = i64::MAX as u64;

/// Longest GTID tag MySQL accepts.
pub const MAX_TAG_LEN: usize = 32;

/// Why a MySQL GTID set did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MySqlGtidError {
    /// The part before the first `:` is not a UUID.
    #[error("failed to parse MySQL GTID entry {entry:?}: {uuid:?} is not a server UUID")]
    InvalidUuid {
        /// The whole entry.
        entry: String,
        /// The refused UUID text.
        uuid: String,
    },
    /// A UUID (or tag) with no transaction numbers after it.
    #[error("failed to parse MySQL GTID entry {entry:?}: no transaction interval after {after:?}")]
    MissingInterval {
        /// The whole entry.
        entry: String,
        /// The UUID or tag left without intervals.
        after: String,
    },
    /// Not `N` or `N-M` with 1 <= N <= M <= 2^63-1.
    #[error(
        "failed to parse MySQL GTID entry {entry:?}: interval {interval:?} is not N or N-M with 1 <= N <= M <= 2^63-1"
    )]
    InvalidInterval {
        /// The whole entry.
        entry: String,
        /// The refused interval.
        interval: String,
    },
    /// A tag that is not `[a-z_][a-z0-9_]{0,31}` (any case).
    #[error(
        "failed to parse MySQL GTID entry {entry:?}: tag {tag:?} must be 1 to 32 letters, digits or _, not starting with a digit"
    )]
    InvalidTag {
        /// The whole entry.
        entry: String,
        /// The refused tag.
        tag: String,
    },
}

/// A server UUID and tag ("" when untagged): the source of a run of
/// transaction numbers.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct Source {
    uuid: u128,
    tag: String,
}

/// An inclusive run of transaction numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct Interval {
    start: u64,
    end: u64,
}

impl Interval {
    fn len(self) -> u128 {
        u128::from(self.end - self.start) + 1
    }
}

/// A set of MySQL GTIDs in canonical form (see the module docs). Serialised
/// as its canonical text.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct MySqlGtidSet {
    // Invariant: no empty interval lists; each list sorted, disjoint and
    // with gaps between neighbours.
    by_source: BTreeMap<Source, Vec<Interval>>,
}

impl MySqlGtidSet {
    /// The empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses `gtid_executed`-style text; empty or blank text is the empty
    /// set.
    pub fn parse(text: &str) -> Result<Self, MySqlGtidError> {
        let mut set = Self::new();
        for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            set.parse_entry(entry)?;
        }
        for intervals in set.by_source.values_mut() {
            normalise(intervals);
        }
        Ok(set)
    }

    fn parse_entry(&mut self, entry: &str) -> Result<(), MySqlGtidError> {
        let mut parts = entry.split(':').map(str::trim);
        let uuid_text = parts.next().unwrap_or_default();
        let uuid = parse_uuid(uuid_text).ok_or_else(|| MySqlGtidError::InvalidUuid {
            entry: entry.to_owned(),
            uuid: uuid_text.to_owned(),
        })?;
        let mut tag = String::new();
        let mut label = uuid_text;
        // The UUID may be followed directly by a tag, but every tag needs
        // at least one interval, and so does the entry.
        let mut tag_awaits_interval = false;
        let mut has_interval = false;
        for part in parts {
            if part.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') {
                if tag_awaits_interval {
                    return Err(MySqlGtidError::MissingInterval {
                        entry: entry.to_owned(),
                        after: label.to_owned(),
                    });
                }
                tag = parse_tag(part).ok_or_else(|| MySqlGtidError::InvalidTag {
                    entry: entry.to_owned(),
                    tag: part.to_owned(),
                })?;
                label = part;
                tag_awaits_interval = true;
                continue;
            }
            let interval = parse_interval(part).ok_or_else(|| MySqlGtidError::InvalidInterval {
                entry: entry.to_owned(),
                interval: part.to_owned(),
            })?;
            self.by_source
                .entry(Source {
                    uuid,
                    tag: tag.clone(),
                })
                .or_default()
                .push(interval);
            tag_awaits_interval = false;
            has_interval = true;
        }
        if tag_awaits_interval || !has_interval {
            return Err(MySqlGtidError::MissingInterval {
                entry: entry.to_owned(),
                after: label.to_owned(),
            });
        }
        Ok(())
    }

    /// The set of untagged runs `(source UUID as its 16 bytes, first,
    /// last)`, inclusive, as binary logs carry them; runs no GTID can be
    /// in (transaction number 0, last before first) are left out.
    pub fn from_runs(runs: impl IntoIterator<Item = ([u8; 16], u64, u64)>) -> Self {
        let mut set = Self::new();
        for (sid, start, end) in runs {
            if start == 0 || end < start || end >= 1 << 63 {
                continue;
            }
            set.by_source
                .entry(Source {
                    uuid: u128::from_be_bytes(sid),
                    tag: String::new(),
                })
                .or_default()
                .push(Interval { start, end });
        }
        for intervals in set.by_source.values_mut() {
            normalise(intervals);
        }
        set
    }

    /// True when the set holds no transaction.
    pub fn is_empty(&self) -> bool {
        self.by_source.is_empty()
    }

    /// The runs `(source, first, last)`, inclusive, where a source is its
    /// UUID, with `:tag` when tagged.
    pub fn runs(&self) -> impl Iterator<Item = (String, u64, u64)> + '_ {
        self.by_source.iter().flat_map(|(source, intervals)| {
            let mut name = MySqlGtidSet {
                by_source: BTreeMap::from([(source.clone(), vec![Interval { start: 1, end: 1 }])]),
            }
            .to_string();
            // The set's text without its one interval: the source's name.
            name.truncate(name.len() - ":1".len());
            intervals
                .iter()
                .map(move |i| (name.clone(), i.start, i.end))
        })
    }

    /// How many transactions the set holds.
    pub fn transaction_count(&self) -> u128 {
        self.by_source.values().flatten().map(|i| i.len()).sum()
    }

    /// Every transaction in `self` or `other`.
    pub fn union(&self, other: &Self) -> Self {
        let mut by_source = self.by_source.clone();
        for (source, intervals) in &other.by_source {
            let merged = by_source.entry(source.clone()).or_default();
            merged.extend_from_slice(intervals);
            normalise(merged);
        }
        Self { by_source }
    }

    /// True when every transaction of `other` is in `self`.
    pub fn contains(&self, other: &Self) -> bool {
        other.by_source.iter().all(|(source, wanted)| {
            let Some(held) = self.by_source.get(source) else {
                return false;
            };
            wanted.iter().all(|w| {
                // The only held interval that can cover `w` is the last one
                // starting at or before it (held intervals are disjoint).
                let after = held.partition_point(|h| h.start <= w.start);
                after > 0 && held[after - 1].end >= w.end
            })
        })
    }

    /// The transactions of `self` that `other` lacks (`self` minus `other`).
    /// `a.missing_from(b)` is empty exactly when `b.contains(a)`.
    pub fn missing_from(&self, other: &Self) -> Self {
        let mut by_source = BTreeMap::new();
        for (source, held) in &self.by_source {
            let remaining = match other.by_source.get(source) {
                Some(removed) => subtract(held, removed),
                None => held.clone(),
            };
            if !remaining.is_empty() {
                by_source.insert(source.clone(), remaining);
            }
        }
        Self { by_source }
    }
}

/// Sorts and merges overlapping or touching intervals.
fn normalise(intervals: &mut Vec<Interval>) {
    intervals.sort_unstable();
    let mut merged: Vec<Interval> = Vec::with_capacity(intervals.len());
    for interval in intervals.drain(..) {
        match merged.last_mut() {
            // end < 2^63, so end + 1 cannot overflow.
            Some(last) if interval.start <= last.end + 1 => last.end = last.end.max(interval.end),
            _ => merged.push(interval),
        }
    }
    *intervals = merged;
}

/// `held` minus `removed`, both canonical.
fn subtract(held: &[Interval], removed: &[Interval]) -> Vec<Interval> {
    let mut remaining = Vec::new();
    for h in held {
        let mut start = h.start;
        for r in removed {
            if r.end < start {
                continue;
            }
            if r.start > h.end {
                break;
            }
            if r.start > start {
                remaining.push(Interval {
                    start,
                    end: r.start - 1,
                });
            }
            if r.end >= h.end {
                start = h.end + 1;
                break;
            }
            start = r.end + 1;
        }
        if start <= h.end {
            remaining.push(Interval { start, end: h.end });
        }
    }
    remaining
}

fn parse_uuid(text: &str) -> Option<u128> {
    let bytes = text.as_bytes();
    if bytes.len() != 36 {
        return None;
    }
    let mut value: u128 = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if matches!(i, 8 | 13 | 18 | 23) {
            if b != b'-' {
                return None;
            }
            continue;
        }
        let digit = char::from(b).to_digit(16)?;
        value = (value << 4) | u128::from(digit);
    }
    Some(value)
}

fn parse_tag(text: &str) -> Option<String> {
    let well_formed = !text.is_empty()
        && text.len() <= MAX_TAG_LEN
        && text.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    well_formed.then(|| text.to_ascii_lowercase())
}

fn parse_interval(text: &str) -> Option<Interval> {
    let number = |s: &str| -> Option<u64> {
        let s = s.trim();
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        s.parse()
            .ok()
            .filter(|n| (1..=MAX_TRANSACTION_NUMBER).contains(n))
    };
    let (start, end) = match text.split_once('-') {
        Some((start, end)) => (number(start)?, number(end)?),
        None => {
            let n = number(text)?;
            (n, n)
        }
    };
    (start <= end).then_some(Interval { start, end })
}

fn write_uuid(f: &mut fmt::Formatter<'_>, uuid: u128) -> fmt::Result {
    let hex = format!("{uuid:032x}");
    write!(
        f,
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

impl fmt::Display for MySqlGtidSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut previous_uuid = None;
        for (source, intervals) in &self.by_source {
            if previous_uuid != Some(source.uuid) {
                if previous_uuid.is_some() {
                    f.write_str(",")?;
                }
                write_uuid(f, source.uuid)?;
                previous_uuid = Some(source.uuid);
            }
            if !source.tag.is_empty() {
                write!(f, ":{}", source.tag)?;
            }
            for interval in intervals {
                if interval.start == interval.end {
                    write!(f, ":{}", interval.start)?;
                } else {
                    write!(f, ":{}-{}", interval.start, interval.end)?;
                }
            }
        }
        Ok(())
    }
}

impl FromStr for MySqlGtidSet {
    type Err = MySqlGtidError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::parse(text)
    }
}

impl TryFrom<String> for MySqlGtidSet {
    type Error = MySqlGtidError;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        Self::parse(&text)
    }
}

impl From<MySqlGtidSet> for String {
    fn from(set: MySqlGtidSet) -> String {
        set.to_string()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    const A: &str = "3e11fa47-71ca-11e1-9e33-c80aa9429562";
    const B: &str = "d1b8e0e6-5a8f-11ee-8c99-0242ac120002";

    fn set(text: &str) -> MySqlGtidSet {
        MySqlGtidSet::parse(text).unwrap()
    }

    #[test]
    fn empty_text_is_the_empty_set() {
        assert!(set("").is_empty());
        assert!(set(" \n").is_empty());
        assert_eq!(set("").to_string(), "");
    }

    #[test]
    fn multi_line_gtid_executed_parses_to_canonical_form() {
        let text = "3E11FA47-71CA-11E1-9E33-C80AA9429562:1-5:7,\nd1b8e0e6-5a8f-11ee-8c99-0242ac120002:1-3\n";
        let parsed = set(text);
        assert_eq!(parsed.to_string(), format!("{A}:1-5:7,{B}:1-3"));
        assert_eq!(parsed.transaction_count(), 9);
    }

    #[test]
    fn uuids_are_lowercased_and_sorted() {
        let parsed = set(&format!("{},{}:1", B.to_uppercase() + ":2", A));
        assert_eq!(parsed.to_string(), format!("{A}:1,{B}:2"));
    }

    #[test]
    fn touching_and_overlapping_intervals_merge() {
        assert_eq!(
            set(&format!("{A}:4-6:1-3:10:9:5-7")).to_string(),
            format!("{A}:1-7:9-10")
        );
        assert_eq!(
            set(&format!("{A}:1-3,{A}:2-8")).to_string(),
            format!("{A}:1-8")
        );
    }

    #[test]
    fn tagged_gtids_are_kept_apart_from_untagged_ones() {
        let parsed = set(&format!("{A}:Batch:1-3,{A}:1-5"));
        assert_eq!(parsed.to_string(), format!("{A}:1-5:batch:1-3"));
        assert!(!parsed.contains(&set(&format!("{A}:batch:4"))));
        assert!(parsed.contains(&set(&format!("{A}:batch:2"))));
        assert_eq!(parsed.transaction_count(), 8);
    }

    #[test]
    fn tag_may_follow_the_uuid_directly() {
        let parsed = set(&format!("{A}:aa:35-38"));
        assert_eq!(parsed.to_string(), format!("{A}:aa:35-38"));
        assert!(!parsed.contains(&set(&format!("{A}:35"))));
    }

    #[test]
    fn several_tags_under_one_uuid_round_trip() {
        let text = format!("{A}:1-5:aa:1-3:bb:7");
        assert_eq!(set(&text).to_string(), text);
    }

    #[test]
    fn malformed_entries_are_refused_with_the_reason() {
        assert!(matches!(
            MySqlGtidSet::parse("not-a-uuid:1-5"),
            Err(MySqlGtidError::InvalidUuid { .. })
        ));
        assert!(matches!(
            MySqlGtidSet::parse(A),
            Err(MySqlGtidError::MissingInterval { .. })
        ));
        assert!(matches!(
            MySqlGtidSet::parse(&format!("{A}:tag")),
            Err(MySqlGtidError::MissingInterval { .. })
        ));
        assert!(matches!(
            MySqlGtidSet::parse(&format!("{A}:tag:other:1")),
            Err(MySqlGtidError::MissingInterval { .. })
        ));
        for interval in [
            "0",
            "5-3",
            "1-",
            "-4",
            "1-x",
            "9223372036854775808",
            "+1",
            "2 3",
        ] {
            assert!(
                matches!(
                    MySqlGtidSet::parse(&format!("{A}:{interval}")),
                    Err(MySqlGtidError::InvalidInterval { .. })
                ),
                "{interval}"
            );
        }
        assert!(matches!(
            MySqlGtidSet::parse(&format!("{A}:{}:1", "t".repeat(33))),
            Err(MySqlGtidError::InvalidTag { .. })
        ));
    }

    #[test]
    fn error_names_the_entry() {
        let error = MySqlGtidSet::parse(&format!("{A}:1-5,{B}:0")).unwrap_err();
        assert_eq!(
            error.to_string(),
            format!(
                "failed to parse MySQL GTID entry \"{B}:0\": interval \"0\" is not N or N-M with 1 <= N <= M <= 2^63-1"
            )
        );
    }

    #[test]
    fn largest_transaction_number_is_accepted() {
        let parsed = set(&format!("{A}:1-9223372036854775807"));
        assert_eq!(
            parsed.transaction_count(),
            u128::from(MAX_TRANSACTION_NUMBER)
        );
    }

    #[test]
    fn missing_from_lists_errant_transactions() {
        let replica = set(&format!("{A}:1-100,{B}:1-2"));
        let primary = set(&format!("{A}:1-120"));
        let errant = replica.missing_from(&primary);
        assert_eq!(errant.to_string(), format!("{B}:1-2"));
        assert!(primary.missing_from(&replica).to_string() == format!("{A}:101-120"));
    }

    #[test]
    fn subtract_splits_intervals_around_holes() {
        let difference = set(&format!("{A}:1-10")).missing_from(&set(&format!("{A}:3-4:7")));
        assert_eq!(difference.to_string(), format!("{A}:1-2:5-6:8-10"));
    }

    #[test]
    fn contains_needs_every_interval_covered() {
        let held = set(&format!("{A}:1-5:7-9"));
        assert!(held.contains(&set(&format!("{A}:2-4:8"))));
        assert!(!held.contains(&set(&format!("{A}:5-7"))));
        assert!(!held.contains(&set(&format!("{B}:1"))));
        assert!(held.contains(&MySqlGtidSet::new()));
    }

    #[test]
    fn serde_uses_canonical_text() {
        let parsed = set(&format!("{A}:1-3"));
        let json = serde_json::to_string(&parsed).unwrap();
        assert_eq!(json, format!("\"{A}:1-3\""));
        let back: MySqlGtidSet = serde_json::from_str(&json).unwrap();
        assert_eq!(back, parsed);
        assert!(serde_json::from_str::<MySqlGtidSet>("\"nope:1\"").is_err());
    }

    const UUIDS: [&str; 3] = [A, B, "00000000-0000-0000-0000-000000000001"];
    const TAGS: [&str; 3] = ["", "aa", "b_2"];

    pub(crate) fn arb_mysql_set() -> impl Strategy<Value = MySqlGtidSet> {
        let interval = (1u64..60, 0u64..8).prop_map(|(start, len)| Interval {
            start,
            end: start + len,
        });
        let entry = (0..UUIDS.len(), 0..TAGS.len(), interval);
        prop::collection::vec(entry, 0..8).prop_map(|entries| {
            let mut by_source: BTreeMap<Source, Vec<Interval>> = BTreeMap::new();
            for (u, t, interval) in entries {
                let source = Source {
                    uuid: parse_uuid(UUIDS[u]).unwrap(),
                    tag: TAGS[t].to_owned(),
                };
                by_source.entry(source).or_default().push(interval);
            }
            for intervals in by_source.values_mut() {
                normalise(intervals);
            }
            MySqlGtidSet { by_source }
        })
    }

    /// Every (source, number) pair, for checking the algebra against
    /// plain set semantics.
    fn members(set: &MySqlGtidSet) -> std::collections::BTreeSet<(Source, u64)> {
        set.by_source
            .iter()
            .flat_map(|(s, ivs)| {
                ivs.iter()
                    .flat_map(move |i| (i.start..=i.end).map(move |n| (s.clone(), n)))
            })
            .collect()
    }

    proptest! {
        #[test]
        fn display_then_parse_is_identity(a in arb_mysql_set()) {
            prop_assert_eq!(MySqlGtidSet::parse(&a.to_string()).unwrap(), a);
        }

        #[test]
        fn union_is_commutative_associative_idempotent(
            a in arb_mysql_set(), b in arb_mysql_set(), c in arb_mysql_set()
        ) {
            prop_assert_eq!(a.union(&b), b.union(&a));
            prop_assert_eq!(a.union(&b).union(&c), a.union(&b.union(&c)));
            prop_assert_eq!(a.union(&a), a.clone());
        }

        #[test]
        fn union_contains_both_inputs(a in arb_mysql_set(), b in arb_mysql_set()) {
            let u = a.union(&b);
            prop_assert!(u.contains(&a));
            prop_assert!(u.contains(&b));
        }

        #[test]
        fn contains_is_reflexive_and_matches_empty_difference(
            a in arb_mysql_set(), b in arb_mysql_set()
        ) {
            prop_assert!(a.contains(&a));
            prop_assert_eq!(a.contains(&b), b.missing_from(&a).is_empty());
        }

        #[test]
        fn difference_is_inside_self_and_disjoint_from_other(
            a in arb_mysql_set(), b in arb_mysql_set()
        ) {
            let d = a.missing_from(&b);
            prop_assert!(a.contains(&d));
            prop_assert!(d.missing_from(&b) == d);
            prop_assert_eq!(d.union(&b), a.union(&b));
        }

        #[test]
        fn algebra_matches_plain_set_semantics(a in arb_mysql_set(), b in arb_mysql_set()) {
            let (ma, mb) = (members(&a), members(&b));
            prop_assert_eq!(members(&a.union(&b)), ma.union(&mb).cloned().collect());
            prop_assert_eq!(members(&a.missing_from(&b)), ma.difference(&mb).cloned().collect());
            prop_assert_eq!(a.contains(&b), mb.is_subset(&ma));
            prop_assert_eq!(a.transaction_count(), ma.len() as u128);
        }
    }
}
