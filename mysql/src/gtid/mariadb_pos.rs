//! MariaDB GTID positions, `domain-server-seq` lists such as `0-1-100,1-2-5`.
//!
//! A MariaDB position is not a set of transactions: it is, per replication
//! domain, the last transaction applied. Sequence numbers grow within a
//! domain and the server id does not order anything. So:
//! - a list with several entries for one domain (as `gtid_binlog_state`
//!   prints) keeps the entry with the highest sequence number;
//! - A contains B when, for every domain of B, A's sequence number is at
//!   least B's (a domain A lacks counts as sequence 0);
//! - what A has that B lacks is, per domain, the sequence numbers in
//!   `(B.seq, A.seq]`;
//! - the union keeps the higher position per domain.
//!
//! Positions cannot tell whether two servers agree on the transactions
//! below their sequence numbers: a replica that wrote `0-3-141` while the
//! primary wrote `0-1-141` looks covered by `0-1-150`. That divergence shows
//! when the replica connects: with `gtid_strict_mode` the source refuses it
//! (error 1236, seen on MariaDB 10.11). Comparing positions finds the other
//! kind: domains or sequence numbers the primary never reached.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Why a MariaDB GTID position did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MariaDbGtidError {
    /// Not three `-`-separated numbers.
    #[error(
        "failed to parse MariaDB GTID {entry:?}: expected domain-server-sequence, e.g. 0-1-100"
    )]
    Malformed {
        /// The refused entry.
        entry: String,
    },
}

/// One MariaDB GTID: replication domain, originating server, sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MariaDbGtid {
    /// Replication domain (`gtid_domain_id`).
    pub domain_id: u32,
    /// Server that wrote the transaction (`server_id`).
    pub server_id: u32,
    /// Position within the domain.
    pub seq_no: u64,
}

impl MariaDbGtid {
    fn is_later_than(&self, other: &Self) -> bool {
        // Equal sequence numbers from two servers only happen after a split
        // brain; preferring the higher server id keeps union commutative.
        (self.seq_no, self.server_id) > (other.seq_no, other.server_id)
    }
}

impl fmt::Display for MariaDbGtid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}-{}", self.domain_id, self.server_id, self.seq_no)
    }
}

impl FromStr for MariaDbGtid {
    type Err = MariaDbGtidError;

    fn from_str(entry: &str) -> Result<Self, Self::Err> {
        let malformed = || MariaDbGtidError::Malformed {
            entry: entry.to_owned(),
        };
        let mut parts = entry.trim().split('-');
        let mut next = || {
            parts
                .next()
                .map(str::trim)
                .filter(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
                .ok_or_else(malformed)
        };
        let domain_id = next()?.parse().map_err(|_| malformed())?;
        let server_id = next()?.parse().map_err(|_| malformed())?;
        let seq_no = next()?.parse().map_err(|_| malformed())?;
        if parts.next().is_some() {
            return Err(malformed());
        }
        Ok(Self {
            domain_id,
            server_id,
            seq_no,
        })
    }
}

/// A MariaDB GTID position: at most one GTID per domain. Serialised as its
/// canonical text (domains ascending, joined by `,`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct MariaDbGtidPos {
    by_domain: BTreeMap<u32, MariaDbGtid>,
}

impl MariaDbGtidPos {
    /// The empty position.
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses a comma-separated list; empty or blank text is the empty
    /// position. Several entries for one domain keep the highest sequence.
    pub fn parse(text: &str) -> Result<Self, MariaDbGtidError> {
        let gtids = text
            .split(',')
            .map(str::trim)
            .filter(|entry| !entry.is_empty())
            .map(str::parse)
            .collect::<Result<Vec<MariaDbGtid>, _>>()?;
        Ok(Self::from_gtids(gtids))
    }

    /// Builds a position from GTIDs, keeping the latest per domain.
    pub fn from_gtids(gtids: impl IntoIterator<Item = MariaDbGtid>) -> Self {
        let mut position = Self::new();
        for gtid in gtids {
            position.advance(gtid);
        }
        position
    }

    fn advance(&mut self, gtid: MariaDbGtid) {
        self.by_domain
            .entry(gtid.domain_id)
            .and_modify(|held| {
                if gtid.is_later_than(held) {
                    *held = gtid;
                }
            })
            .or_insert(gtid);
    }

    /// True when no domain has a position.
    pub fn is_empty(&self) -> bool {
        self.by_domain.is_empty()
    }

    /// The GTID held for `domain_id`.
    pub fn get(&self, domain_id: u32) -> Option<&MariaDbGtid> {
        self.by_domain.get(&domain_id)
    }

    /// The GTIDs, one per domain, domains ascending.
    pub fn iter(&self) -> impl Iterator<Item = &MariaDbGtid> {
        self.by_domain.values()
    }

    fn seq_of(&self, domain_id: u32) -> u64 {
        self.get(domain_id).map_or(0, |gtid| gtid.seq_no)
    }

    /// Per domain, the later of the two positions.
    pub fn union(&self, other: &Self) -> Self {
        let mut union = self.clone();
        for gtid in other.iter() {
            union.advance(*gtid);
        }
        union
    }

    /// True when `self` has reached `other` in every domain of `other`.
    pub fn contains(&self, other: &Self) -> bool {
        other
            .iter()
            .all(|gtid| self.seq_of(gtid.domain_id) >= gtid.seq_no)
    }

    /// Per domain, the sequence numbers `self` has and `other` lacks.
    /// `a.missing_from(b)` is empty exactly when `b.contains(a)`.
    pub fn missing_from(&self, other: &Self) -> MariaDbGtidRanges {
        let by_domain = self
            .iter()
            .filter_map(|gtid| {
                let lacks_after = other.seq_of(gtid.domain_id);
                (gtid.seq_no > lacks_after).then_some((
                    gtid.domain_id,
                    SeqRange {
                        first: lacks_after + 1,
                        last: gtid.seq_no,
                    },
                ))
            })
            .collect();
        MariaDbGtidRanges { by_domain }
    }
}

impl fmt::Display for MariaDbGtidPos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, gtid) in self.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{gtid}")?;
        }
        Ok(())
    }
}

impl FromStr for MariaDbGtidPos {
    type Err = MariaDbGtidError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::parse(text)
    }
}

impl TryFrom<String> for MariaDbGtidPos {
    type Error = MariaDbGtidError;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        Self::parse(&text)
    }
}

impl From<MariaDbGtidPos> for String {
    fn from(position: MariaDbGtidPos) -> String {
        position.to_string()
    }
}

/// An inclusive range of sequence numbers within one domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SeqRange {
    /// First sequence number in the range.
    pub first: u64,
    /// Last sequence number in the range.
    pub last: u64,
}

/// Per-domain ranges of sequence numbers: what one position has beyond
/// another. Written `domain:first-last`, e.g. `0:101-150,1:6-6`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct MariaDbGtidRanges {
    by_domain: BTreeMap<u32, SeqRange>,
}

impl MariaDbGtidRanges {
    /// True when no domain has anything missing.
    pub fn is_empty(&self) -> bool {
        self.by_domain.is_empty()
    }

    /// The range for `domain_id`.
    pub fn get(&self, domain_id: u32) -> Option<&SeqRange> {
        self.by_domain.get(&domain_id)
    }

    /// (domain, range) pairs, domains ascending.
    pub fn iter(&self) -> impl Iterator<Item = (u32, &SeqRange)> {
        self.by_domain
            .iter()
            .map(|(domain, range)| (*domain, range))
    }

    /// Sequence numbers covered. An upper bound on transactions: MariaDB
    /// may skip sequence numbers (e.g. after `SET gtid_seq_no`).
    pub fn transaction_count(&self) -> u128 {
        self.by_domain
            .values()
            .map(|r| u128::from(r.last - r.first) + 1)
            .sum()
    }
}

impl fmt::Display for MariaDbGtidRanges {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (domain, range)) in self.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{domain}:{}-{}", range.first, range.last)?;
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    fn pos(text: &str) -> MariaDbGtidPos {
        MariaDbGtidPos::parse(text).unwrap()
    }

    #[test]
    fn empty_text_is_the_empty_position() {
        assert!(pos("").is_empty());
        assert!(pos("  ").is_empty());
        assert_eq!(pos("").to_string(), "");
    }

    #[test]
    fn mariadb_list_keeps_highest_seq_per_domain() {
        // gtid_binlog_state lists every server that wrote to a domain.
        let state = pos("0-1-100,0-2-150,0-3-120,1-2-5");
        assert_eq!(state.to_string(), "0-2-150,1-2-5");
        assert_eq!(state.get(0).map(|g| g.server_id), Some(2));
    }

    #[test]
    fn whitespace_around_entries_is_allowed() {
        assert_eq!(pos(" 1-2-5 ,\n0-1-100 ").to_string(), "0-1-100,1-2-5");
    }

    #[test]
    fn malformed_entries_are_refused() {
        for bad in [
            "0-1",
            "0-1-2-3",
            "a-1-2",
            "0--2",
            "0-1-",
            "-1-2",
            "0-1-2x",
            "4294967296-1-1",
        ] {
            assert_eq!(
                MariaDbGtidPos::parse(bad),
                Err(MariaDbGtidError::Malformed { entry: bad.into() }),
                "{bad}"
            );
        }
    }

    #[test]
    fn server_id_does_not_order_positions() {
        // Same domain, later seq from a lower server id is still later.
        assert!(pos("0-1-101").contains(&pos("0-9-100")));
        assert!(!pos("0-9-100").contains(&pos("0-1-101")));
    }

    #[test]
    fn contains_needs_every_domain_reached() {
        let replica = pos("0-1-100,1-2-5");
        assert!(replica.contains(&pos("0-1-90")));
        assert!(replica.contains(&pos("0-1-100,1-2-5")));
        assert!(!replica.contains(&pos("0-1-100,1-2-6")));
        assert!(!replica.contains(&pos("2-1-1")));
        assert!(replica.contains(&MariaDbGtidPos::new()));
    }

    #[test]
    fn missing_lists_per_domain_sequence_ranges() {
        let primary = pos("0-1-150,1-2-6,2-3-4");
        let replica = pos("0-1-100,1-2-6");
        let missing = primary.missing_from(&replica);
        assert_eq!(missing.to_string(), "0:101-150,2:1-4");
        assert_eq!(missing.transaction_count(), 54);
        assert!(replica.missing_from(&primary).is_empty());
    }

    #[test]
    fn union_takes_the_later_position_per_domain() {
        assert_eq!(
            pos("0-1-100,1-2-5")
                .union(&pos("0-2-120,2-3-1"))
                .to_string(),
            "0-2-120,1-2-5,2-3-1"
        );
    }

    #[test]
    fn serde_uses_canonical_text() {
        let json = serde_json::to_string(&pos("1-2-5,0-1-3")).unwrap();
        assert_eq!(json, "\"0-1-3,1-2-5\"");
        let back: MariaDbGtidPos = serde_json::from_str(&json).unwrap();
        assert_eq!(back, pos("0-1-3,1-2-5"));
    }

    pub(crate) fn arb_mariadb_pos() -> impl Strategy<Value = MariaDbGtidPos> {
        let gtid =
            (0u32..4, 1u32..4, 0u64..30).prop_map(|(domain_id, server_id, seq_no)| MariaDbGtid {
                domain_id,
                server_id,
                seq_no,
            });
        prop::collection::vec(gtid, 0..6).prop_map(MariaDbGtidPos::from_gtids)
    }

    proptest! {
        #[test]
        fn display_then_parse_is_identity(a in arb_mariadb_pos()) {
            prop_assert_eq!(MariaDbGtidPos::parse(&a.to_string()).unwrap(), a);
        }

        #[test]
        fn union_is_commutative_associative_idempotent(
            a in arb_mariadb_pos(), b in arb_mariadb_pos(), c in arb_mariadb_pos()
        ) {
            prop_assert_eq!(a.union(&b), b.union(&a));
            prop_assert_eq!(a.union(&b).union(&c), a.union(&b.union(&c)));
            prop_assert_eq!(a.union(&a), a.clone());
        }

        #[test]
        fn union_contains_both_inputs(a in arb_mariadb_pos(), b in arb_mariadb_pos()) {
            let u = a.union(&b);
            prop_assert!(u.contains(&a));
            prop_assert!(u.contains(&b));
        }

        #[test]
        fn contains_is_reflexive_and_matches_empty_missing(
            a in arb_mariadb_pos(), b in arb_mariadb_pos()
        ) {
            prop_assert!(a.contains(&a));
            prop_assert_eq!(a.contains(&b), b.missing_from(&a).is_empty());
        }

        #[test]
        fn missing_ranges_end_at_self_and_start_after_other(
            a in arb_mariadb_pos(), b in arb_mariadb_pos()
        ) {
            for (domain, range) in a.missing_from(&b).iter() {
                prop_assert_eq!(Some(range.last), a.get(domain).map(|g| g.seq_no));
                prop_assert_eq!(range.first, b.get(domain).map_or(0, |g| g.seq_no) + 1);
                prop_assert!(range.first <= range.last);
            }
        }

        #[test]
        fn parse_order_does_not_matter(mut gtids in prop::collection::vec(
            (0u32..3, 1u32..3, 0u64..20), 0..6)
        ) {
            let text = |g: &[(u32, u32, u64)]| g.iter().map(|(d, s, n)| format!("{d}-{s}-{n}")).collect::<Vec<_>>().join(",");
            let forward = MariaDbGtidPos::parse(&text(&gtids)).unwrap();
            gtids.reverse();
            prop_assert_eq!(MariaDbGtidPos::parse(&text(&gtids)).unwrap(), forward);
        }
    }
}
