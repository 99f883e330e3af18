//! GTIDs of both flavors and how servers compare by them: MySQL GTID sets
//! ([`MySqlGtidSet`]) and MariaDB GTID positions ([`MariaDbGtidPos`]), behind
//! one flavor-tagged [`GtidSet`] so the operator can compare servers without
//! caring which flavor it runs. Mixing flavors is an error, never a panic.

mod mariadb_pos;
mod mysql_set;

use std::fmt;

use serde::{Deserialize, Serialize};

pub use mariadb_pos::{MariaDbGtid, MariaDbGtidError, MariaDbGtidPos, MariaDbGtidRanges, SeqRange};
pub use mysql_set::{MAX_TAG_LEN, MAX_TRANSACTION_NUMBER, MySqlGtidError, MySqlGtidSet};

use crate::flavor::Flavor;

/// Why GTIDs could not be parsed or compared.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GtidError {
    /// A malformed MySQL GTID set.
    #[error(transparent)]
    MySql(#[from] MySqlGtidError),
    /// A malformed MariaDB GTID position.
    #[error(transparent)]
    MariaDb(#[from] MariaDbGtidError),
    /// A MySQL set compared with a MariaDB position.
    #[error("failed to compare GTIDs: {left} GTIDs cannot be combined with {right} GTIDs")]
    FlavorMismatch {
        /// Flavor family of the left operand.
        left: &'static str,
        /// Flavor family of the right operand.
        right: &'static str,
    },
}

/// The GTIDs a server holds, in its flavor's notation. Serialised as
/// `{"mysql": "<set>"}` or `{"mariadb": "<position>"}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GtidSet {
    /// A MySQL (8.0 or 8.4) GTID set.
    MySql(MySqlGtidSet),
    /// A MariaDB GTID position.
    MariaDb(MariaDbGtidPos),
}

/// What one server has that another lacks.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum GtidDifference {
    /// Exact MySQL transactions.
    MySql(MySqlGtidSet),
    /// Per-domain MariaDB sequence ranges.
    MariaDb(MariaDbGtidRanges),
}

impl GtidSet {
    /// Parses a server's GTID text in `flavor`'s notation (empty text is the
    /// empty set).
    pub fn parse(flavor: Flavor, text: &str) -> Result<Self, GtidError> {
        Ok(match flavor {
            Flavor::MariaDb => GtidSet::MariaDb(MariaDbGtidPos::parse(text)?),
            Flavor::MySql80 | Flavor::MySql84 => GtidSet::MySql(MySqlGtidSet::parse(text)?),
        })
    }

    /// The empty set in `flavor`'s notation.
    pub fn empty(flavor: Flavor) -> Self {
        match flavor {
            Flavor::MariaDb => GtidSet::MariaDb(MariaDbGtidPos::new()),
            Flavor::MySql80 | Flavor::MySql84 => GtidSet::MySql(MySqlGtidSet::new()),
        }
    }

    /// True when this is `flavor`'s notation.
    pub fn matches_flavor(&self, flavor: Flavor) -> bool {
        matches!(self, GtidSet::MariaDb(_)) == flavor.is_mariadb()
    }

    /// True when the server holds no transaction.
    pub fn is_empty(&self) -> bool {
        match self {
            GtidSet::MySql(set) => set.is_empty(),
            GtidSet::MariaDb(position) => position.is_empty(),
        }
    }

    /// Everything in either (MariaDB: the later position per domain).
    pub fn union(&self, other: &Self) -> Result<Self, GtidError> {
        match (self, other) {
            (GtidSet::MySql(a), GtidSet::MySql(b)) => Ok(GtidSet::MySql(a.union(b))),
            (GtidSet::MariaDb(a), GtidSet::MariaDb(b)) => Ok(GtidSet::MariaDb(a.union(b))),
            _ => Err(self.mismatch(other)),
        }
    }

    /// True when `self` holds everything `other` holds.
    pub fn contains(&self, other: &Self) -> Result<bool, GtidError> {
        match (self, other) {
            (GtidSet::MySql(a), GtidSet::MySql(b)) => Ok(a.contains(b)),
            (GtidSet::MariaDb(a), GtidSet::MariaDb(b)) => Ok(a.contains(b)),
            _ => Err(self.mismatch(other)),
        }
    }

    /// What `self` has that `other` lacks; empty exactly when
    /// `other.contains(self)`.
    pub fn missing_from(&self, other: &Self) -> Result<GtidDifference, GtidError> {
        match (self, other) {
            (GtidSet::MySql(a), GtidSet::MySql(b)) => Ok(GtidDifference::MySql(a.missing_from(b))),
            (GtidSet::MariaDb(a), GtidSet::MariaDb(b)) => {
                Ok(GtidDifference::MariaDb(a.missing_from(b)))
            }
            _ => Err(self.mismatch(other)),
        }
    }

    /// This server's errant transactions: those its primary lacks. A
    /// server with any must not rejoin or be promoted silently.
    pub fn errant_relative_to(&self, primary: &Self) -> Result<GtidDifference, GtidError> {
        self.missing_from(primary)
    }

    fn family(&self) -> &'static str {
        match self {
            GtidSet::MySql(_) => "MySQL",
            GtidSet::MariaDb(_) => "MariaDB",
        }
    }

    fn mismatch(&self, other: &Self) -> GtidError {
        GtidError::FlavorMismatch {
            left: self.family(),
            right: other.family(),
        }
    }
}

impl fmt::Display for GtidSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GtidSet::MySql(set) => set.fmt(f),
            GtidSet::MariaDb(position) => position.fmt(f),
        }
    }
}

impl GtidDifference {
    /// True when nothing is missing.
    pub fn is_empty(&self) -> bool {
        match self {
            GtidDifference::MySql(set) => set.is_empty(),
            GtidDifference::MariaDb(ranges) => ranges.is_empty(),
        }
    }

    /// How many transactions differ (MariaDB: an upper bound, see
    /// [`MariaDbGtidRanges::transaction_count`]).
    pub fn transaction_count(&self) -> u128 {
        match self {
            GtidDifference::MySql(set) => set.transaction_count(),
            GtidDifference::MariaDb(ranges) => ranges.transaction_count(),
        }
    }
}

impl fmt::Display for GtidDifference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GtidDifference::MySql(set) => set.fmt(f),
            GtidDifference::MariaDb(ranges) => ranges.fmt(f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const UUID: &str = "3e11fa47-71ca-11e1-9e33-c80aa9429562";

    #[test]
    fn parse_follows_the_flavor() {
        assert!(matches!(
            GtidSet::parse(Flavor::MariaDb, "0-1-5").unwrap(),
            GtidSet::MariaDb(_)
        ));
        assert!(matches!(
            GtidSet::parse(Flavor::MySql84, &format!("{UUID}:1")).unwrap(),
            GtidSet::MySql(_)
        ));
        assert!(GtidSet::parse(Flavor::MySql80, "0-1-5").is_err());
        assert!(GtidSet::parse(Flavor::MariaDb, &format!("{UUID}:1")).is_err());
    }

    #[test]
    fn mixing_flavors_is_an_error_not_a_panic() {
        let mysql = GtidSet::parse(Flavor::MySql80, &format!("{UUID}:1-3")).unwrap();
        let mariadb = GtidSet::parse(Flavor::MariaDb, "0-1-3").unwrap();
        let expected = GtidError::FlavorMismatch {
            left: "MySQL",
            right: "MariaDB",
        };
        assert_eq!(mysql.contains(&mariadb), Err(expected.clone()));
        assert_eq!(mysql.union(&mariadb), Err(expected.clone()));
        assert_eq!(mysql.missing_from(&mariadb), Err(expected));
        assert_eq!(
            mariadb.contains(&mysql).unwrap_err().to_string(),
            "failed to compare GTIDs: MariaDB GTIDs cannot be combined with MySQL GTIDs"
        );
    }

    #[test]
    fn replica_with_a_domain_the_primary_lacks_is_errant() {
        let primary = GtidSet::parse(Flavor::MariaDb, "0-1-150").unwrap();
        let diverged = GtidSet::parse(Flavor::MariaDb, "0-1-150,7-3-1").unwrap();
        let errant = diverged.errant_relative_to(&primary).unwrap();
        assert_eq!(errant.to_string(), "7:1-1");
        assert_eq!(errant.transaction_count(), 1);
    }

    #[test]
    fn mariadb_replica_behind_the_primary_in_every_domain_has_nothing_errant() {
        // Positions only order sequence numbers: 0-3-141 counts as covered by
        // 0-1-150 even if the primary's 141 came from another server. Such
        // same-domain divergence surfaces when the replica connects
        // (gtid_strict_mode refuses it with error 1236).
        let primary = GtidSet::parse(Flavor::MariaDb, "0-1-150").unwrap();
        let replica = GtidSet::parse(Flavor::MariaDb, "0-1-140,0-3-141").unwrap();
        assert!(replica.errant_relative_to(&primary).unwrap().is_empty());
    }

    #[test]
    fn mysql_errant_transactions_are_exact() {
        let primary = GtidSet::parse(Flavor::MySql84, &format!("{UUID}:1-100")).unwrap();
        let replica = GtidSet::parse(
            Flavor::MySql84,
            &format!("{UUID}:1-90,d1b8e0e6-5a8f-11ee-8c99-0242ac120002:1"),
        )
        .unwrap();
        let errant = replica.errant_relative_to(&primary).unwrap();
        assert_eq!(errant.to_string(), "d1b8e0e6-5a8f-11ee-8c99-0242ac120002:1");
        assert!(primary.contains(&GtidSet::empty(Flavor::MySql84)).unwrap());
    }

    #[test]
    fn empty_sets_match_their_flavor() {
        assert!(GtidSet::empty(Flavor::MariaDb).is_empty());
        assert!(GtidSet::empty(Flavor::MariaDb).matches_flavor(Flavor::MariaDb));
        assert!(GtidSet::empty(Flavor::MySql80).matches_flavor(Flavor::MySql84));
        assert!(!GtidSet::empty(Flavor::MySql80).matches_flavor(Flavor::MariaDb));
    }

    #[test]
    fn serde_tags_the_flavor() {
        let gtid = GtidSet::parse(Flavor::MariaDb, "0-1-5").unwrap();
        let json = serde_json::to_string(&gtid).unwrap();
        assert_eq!(json, r#"{"mariadb":"0-1-5"}"#);
        let back: GtidSet = serde_json::from_str(&json).unwrap();
        assert_eq!(back, gtid);
    }

    fn arb_gtid_set() -> impl Strategy<Value = GtidSet> {
        prop_oneof![
            mysql_set::tests::arb_mysql_set().prop_map(GtidSet::MySql),
            mariadb_pos::tests::arb_mariadb_pos().prop_map(GtidSet::MariaDb),
        ]
    }

    proptest! {
        #[test]
        fn display_then_parse_is_identity(a in arb_gtid_set()) {
            let flavor = if matches!(a, GtidSet::MariaDb(_)) { Flavor::MariaDb } else { Flavor::MySql80 };
            prop_assert_eq!(GtidSet::parse(flavor, &a.to_string()).unwrap(), a);
        }

        #[test]
        fn contains_agrees_with_missing_or_reports_mismatch(a in arb_gtid_set(), b in arb_gtid_set()) {
            match (a.contains(&b), b.missing_from(&a)) {
                (Ok(contains), Ok(missing)) => prop_assert_eq!(contains, missing.is_empty()),
                (Err(e1), Err(_)) => {
                    let is_mismatch = matches!(e1, GtidError::FlavorMismatch { .. });
                    prop_assert!(is_mismatch);
                }
                _ => prop_assert!(false, "contains and missing_from disagree on flavor"),
            }
        }

        #[test]
        fn union_contains_both_when_flavors_match(a in arb_gtid_set(), b in arb_gtid_set()) {
            if let Ok(u) = a.union(&b) {
                prop_assert!(u.contains(&a).unwrap());
                prop_assert!(u.contains(&b).unwrap());
            }
        }
    }
}
