//! Exact sets of transactions as runs of numbers per stream (a MySQL
//! source UUID, a MariaDB domain), where a missing number is a missing
//! transaction: how the replay plan finds gaps and transactions archived
//! twice, which a MariaDB position (the last GTID per domain) cannot show.

use std::collections::BTreeMap;
use std::fmt;

use crate::{GtidSet, MariaDbGtidPos, MySqlGtidSet};

/// Runs of transaction numbers, inclusive, per stream; sorted, disjoint
/// and with gaps between neighbours.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Runs {
    by_stream: BTreeMap<String, Vec<(u64, u64)>>,
}

/// A MariaDB domain's stream name.
pub fn domain_stream(domain_id: u32) -> String {
    format!("domain {domain_id}")
}

impl Runs {
    /// No transaction.
    pub fn new() -> Self {
        Self::default()
    }

    /// A MySQL set, exactly.
    pub fn of_mysql(set: &MySqlGtidSet) -> Self {
        let mut runs = Self::new();
        for (stream, first, last) in set.runs() {
            runs.add(&stream, first, last);
        }
        runs
    }

    /// A MariaDB position: every sequence number of each domain up to its
    /// GTID's (a position says no more).
    pub fn of_mariadb(position: &MariaDbGtidPos) -> Self {
        let mut runs = Self::new();
        for gtid in position.iter() {
            runs.add(&domain_stream(gtid.domain_id), 1, gtid.seq_no);
        }
        runs
    }

    /// Either flavor's GTIDs.
    pub fn of_gtids(set: &GtidSet) -> Self {
        match set {
            GtidSet::MySql(set) => Self::of_mysql(set),
            GtidSet::MariaDb(position) => Self::of_mariadb(position),
        }
    }

    /// Adds `first..=last` of `stream` (nothing when `last < first` or
    /// `first` is 0, which no transaction has).
    pub fn add(&mut self, stream: &str, first: u64, last: u64) {
        if first == 0 || last < first {
            return;
        }
        let runs = self.by_stream.entry(stream.to_owned()).or_default();
        runs.push((first, last));
        normalise(runs);
    }

    /// True when it holds no transaction.
    pub fn is_empty(&self) -> bool {
        self.by_stream.is_empty()
    }

    /// Every transaction in either.
    pub fn union(&self, other: &Self) -> Self {
        let mut union = self.clone();
        for (stream, runs) in &other.by_stream {
            for &(first, last) in runs {
                union.add(stream, first, last);
            }
        }
        union
    }

    /// The transactions of `self` that `other` lacks.
    pub fn minus(&self, other: &Self) -> Self {
        let mut left = Self::new();
        for (stream, runs) in &self.by_stream {
            let removed = other.by_stream.get(stream).map_or(&[][..], Vec::as_slice);
            for &(first, last) in runs {
                let mut from = first;
                for &(r_first, r_last) in removed {
                    if r_last < from || r_first > last {
                        continue;
                    }
                    if r_first > from {
                        left.add(stream, from, r_first - 1);
                    }
                    from = from.max(r_last.saturating_add(1));
                }
                if from <= last && from >= first {
                    left.add(stream, from, last);
                }
            }
        }
        left
    }

    /// The transactions in both.
    pub fn overlap(&self, other: &Self) -> Self {
        self.minus(&self.minus(other))
    }

    /// True when every transaction of `other` is in `self`.
    pub fn contains(&self, other: &Self) -> bool {
        other.minus(self).is_empty()
    }

    /// The numbers missing in each stream from 1 up to its last run: the
    /// transactions before its last one that it lacks.
    pub fn holes(&self) -> Self {
        let mut holes = Self::new();
        for (stream, runs) in &self.by_stream {
            let mut next = 1;
            for &(first, last) in runs {
                if first > next {
                    holes.add(stream, next, first - 1);
                }
                next = last.saturating_add(1);
            }
        }
        holes
    }

    /// The streams and their runs.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &[(u64, u64)])> {
        self.by_stream
            .iter()
            .map(|(stream, runs)| (stream.as_str(), runs.as_slice()))
    }

    /// The last number of `stream`, if it has any.
    pub fn last(&self, stream: &str) -> Option<u64> {
        self.by_stream.get(stream)?.last().map(|&(_, last)| last)
    }
}

fn normalise(runs: &mut Vec<(u64, u64)>) {
    runs.sort_unstable();
    let mut merged: Vec<(u64, u64)> = Vec::with_capacity(runs.len());
    for &(first, last) in runs.iter() {
        match merged.last_mut() {
            Some(previous) if first <= previous.1.saturating_add(1) => {
                previous.1 = previous.1.max(last);
            }
            _ => merged.push((first, last)),
        }
    }
    *runs = merged;
}

impl fmt::Display for Runs {
    /// `stream:1-5:7, stream:3`, as MySQL writes GTID sets.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (stream, runs)) in self.by_stream.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            f.write_str(stream)?;
            for &(first, last) in runs {
                if first == last {
                    write!(f, ":{first}")?;
                } else {
                    write!(f, ":{first}-{last}")?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runs(list: &[(&str, u64, u64)]) -> Runs {
        let mut r = Runs::new();
        for &(s, a, b) in list {
            r.add(s, a, b);
        }
        r
    }

    #[test]
    fn runs_merge_subtract_and_show_their_holes() {
        let a = runs(&[("x", 1, 5), ("x", 6, 9), ("x", 12, 20), ("y", 3, 3)]);
        assert_eq!(a.to_string(), "x:1-9:12-20, y:3");
        assert_eq!(a.holes().to_string(), "x:10-11, y:1-2");
        let b = runs(&[("x", 4, 13), ("z", 1, 1)]);
        assert_eq!(a.minus(&b).to_string(), "x:1-3:14-20, y:3");
        assert_eq!(a.overlap(&b).to_string(), "x:4-9:12-13");
        assert!(a.contains(&runs(&[("x", 2, 8)])));
        assert!(!a.contains(&runs(&[("x", 8, 12)])));
        assert!(a.minus(&a).is_empty());
        assert_eq!(a.last("x"), Some(20));
        assert_eq!(runs(&[("x", 0, 0), ("x", 5, 4)]), Runs::new());
    }

    #[test]
    fn a_mariadb_position_holds_everything_up_to_it() {
        let position = MariaDbGtidPos::parse("0-100-7,1-101-3").unwrap();
        assert_eq!(
            Runs::of_mariadb(&position).to_string(),
            "domain 0:1-7, domain 1:1-3"
        );
    }

    #[test]
    fn a_mysql_set_is_kept_exactly() {
        let uuid = "3e11fa47-71ca-11e1-9e33-c80aa9429562";
        let set = MySqlGtidSet::parse(&format!("{uuid}:1-5:9")).unwrap();
        let runs = Runs::of_mysql(&set);
        assert_eq!(runs.to_string(), format!("{uuid}:1-5:9"));
        assert_eq!(runs.holes().to_string(), format!("{uuid}:6-8"));
    }
}
