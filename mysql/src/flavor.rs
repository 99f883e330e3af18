//! Which server dialect ebisu is talking to, told apart from what
//! `SELECT VERSION()` returns.
//!
//! Supported: MySQL 8.0.26 and later 8.0 releases, MySQL 8.4 LTS, and
//! MariaDB 10.6 and later (10.11 and 11.x included).
//! - 8.0.26 rather than 8.0.23 is the MySQL floor because it is the first
//!   release where every word ebisu uses exists in its source/replica form,
//!   the semi-sync plugin and variable names included.
//! - The 8.1 to 8.3 innovation releases map to the dialect whose statements
//!   they accept: 8.1 to [`Flavor::MySql80`] (`RESET BINARY LOGS AND GTIDS`
//!   arrived in 8.2), 8.2 and 8.3 to [`Flavor::MySql84`] (`RESET MASTER` is
//!   gone in 8.4).
//! - MySQL 9 is refused until it has been looked at.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The oldest MySQL release accepted.
pub const MIN_MYSQL_VERSION: ServerVersion = ServerVersion::new(8, 0, 26);

/// The oldest MariaDB release accepted.
pub const MIN_MARIADB_VERSION: ServerVersion = ServerVersion::new(10, 6, 0);

/// A server dialect. Serialised as `mysql80`, `mysql84` or `mariadb`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Flavor {
    /// MySQL 8.0.26+ (and 8.1).
    MySql80,
    /// MySQL 8.4 LTS and later (8.2, 8.3, 9.x).
    MySql84,
    /// MariaDB 10.6+.
    MariaDb,
}

impl Flavor {
    /// Parses what `SELECT VERSION()` returns, e.g.
    /// `10.11.6-MariaDB-0+deb12u1-log`, `8.0.36`, `8.4.3`.
    pub fn from_server_version(version: &str) -> Result<Flavor, FlavorError> {
        Self::from_parsed(&ServerVersion::parse(version)?, version)
    }

    fn from_parsed(version: &ServerVersion, original: &str) -> Result<Flavor, FlavorError> {
        let refuse_old = |minimum: &ServerVersion| FlavorError::TooOld {
            version: original.to_owned(),
            product: if version.mariadb { "MariaDB" } else { "MySQL" },
            minimum: minimum.to_string(),
        };
        if version.mariadb {
            if *version < MIN_MARIADB_VERSION {
                return Err(refuse_old(&MIN_MARIADB_VERSION));
            }
            return Ok(Flavor::MariaDb);
        }
        if *version < MIN_MYSQL_VERSION {
            return Err(refuse_old(&MIN_MYSQL_VERSION));
        }
        match (version.major, version.minor) {
            (8, 0 | 1) => Ok(Flavor::MySql80),
            // 9.x speaks 8.4's SQL (9.7 is the next LTS, tested end to end).
            (8 | 9, _) => Ok(Flavor::MySql84),
            _ => Err(FlavorError::TooNew {
                version: original.to_owned(),
            }),
        }
    }

    /// True for MariaDB.
    pub fn is_mariadb(self) -> bool {
        self == Flavor::MariaDb
    }

    /// True for either MySQL dialect.
    pub fn is_mysql(self) -> bool {
        !self.is_mariadb()
    }
}

impl fmt::Display for Flavor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Flavor::MySql80 => "MySQL 8.0",
            Flavor::MySql84 => "MySQL 8.4",
            Flavor::MariaDb => "MariaDB",
        })
    }
}

/// A server's version number and whether it is MariaDB.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServerVersion {
    /// Major version.
    pub major: u32,
    /// Minor version.
    pub minor: u32,
    /// Patch version.
    pub patch: u32,
    /// The version string says MariaDB.
    pub mariadb: bool,
}

impl ServerVersion {
    /// A MySQL version number (set `mariadb` for MariaDB).
    pub const fn new(major: u32, minor: u32, patch: u32) -> Self {
        Self {
            major,
            minor,
            patch,
            mariadb: false,
        }
    }

    /// Parses `MAJOR.MINOR.PATCH[-suffix]`; a suffix containing `MariaDB`
    /// (any case) marks MariaDB. The `5.5.5-` prefix MariaDB puts in its
    /// protocol handshake is skipped.
    pub fn parse(version: &str) -> Result<Self, FlavorError> {
        let unparseable = || FlavorError::Unparseable {
            version: version.to_owned(),
        };
        let trimmed = version.trim();
        let mariadb = trimmed.to_ascii_lowercase().contains("mariadb");
        let number = match trimmed.strip_prefix("5.5.5-") {
            Some(rest) if mariadb => rest,
            _ => trimmed,
        };
        let number = number.split(['-', '+', ' ']).next().unwrap_or_default();
        let mut parts = number.split('.');
        let mut next = || -> Result<u32, FlavorError> {
            let part = parts.next().ok_or_else(unparseable)?;
            let digits: &str = &part[..part.bytes().take_while(u8::is_ascii_digit).count()];
            digits.parse().map_err(|_| unparseable())
        };
        let (major, minor, patch) = (next()?, next()?, next()?);
        Ok(Self {
            major,
            minor,
            patch,
            mariadb,
        })
    }
}

impl fmt::Display for ServerVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// Why a server version was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FlavorError {
    /// Not `MAJOR.MINOR.PATCH`.
    #[error("failed to parse server version {version:?}: expected MAJOR.MINOR.PATCH")]
    Unparseable {
        /// What the server said.
        version: String,
    },
    /// Older than the minimum for its product.
    #[error(
        "failed to accept server version {version:?}: {product} {minimum} or later is required"
    )]
    TooOld {
        /// What the server said.
        version: String,
        /// `MySQL` or `MariaDB`.
        product: &'static str,
        /// The oldest accepted release.
        minimum: String,
    },
    /// A MySQL major version after 9.
    #[error(
        "failed to accept server version {version:?}: MySQL releases after 9 are not supported yet"
    )]
    TooNew {
        /// What the server said.
        version: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debian_mariadb_version_is_mariadb() {
        assert_eq!(
            Flavor::from_server_version("10.11.6-MariaDB-0+deb12u1-log"),
            Ok(Flavor::MariaDb)
        );
    }

    #[test]
    fn mariadb_11_and_handshake_prefix_are_mariadb() {
        assert_eq!(
            Flavor::from_server_version("11.4.2-MariaDB-ubu2404"),
            Ok(Flavor::MariaDb)
        );
        assert_eq!(
            Flavor::from_server_version("5.5.5-10.6.16-MariaDB"),
            Ok(Flavor::MariaDb)
        );
    }

    #[test]
    fn mysql_80_and_84_are_told_apart() {
        assert_eq!(Flavor::from_server_version("8.0.36"), Ok(Flavor::MySql80));
        assert_eq!(
            Flavor::from_server_version("8.0.36-28"),
            Ok(Flavor::MySql80)
        );
        assert_eq!(Flavor::from_server_version("8.4.3"), Ok(Flavor::MySql84));
        assert_eq!(
            Flavor::from_server_version("8.4.0-commercial"),
            Ok(Flavor::MySql84)
        );
    }

    #[test]
    fn innovation_releases_map_to_the_dialect_they_accept() {
        assert_eq!(Flavor::from_server_version("8.1.0"), Ok(Flavor::MySql80));
        assert_eq!(Flavor::from_server_version("8.2.0"), Ok(Flavor::MySql84));
        assert_eq!(Flavor::from_server_version("8.3.0"), Ok(Flavor::MySql84));
    }

    #[test]
    fn old_mysql_is_refused_naming_the_minimum() {
        let error = Flavor::from_server_version("8.0.25").unwrap_err();
        assert_eq!(
            error.to_string(),
            "failed to accept server version \"8.0.25\": MySQL 8.0.26 or later is required"
        );
        assert!(Flavor::from_server_version("5.7.44-log").is_err());
    }

    #[test]
    fn old_mariadb_is_refused_naming_the_minimum() {
        let error = Flavor::from_server_version("10.5.23-MariaDB").unwrap_err();
        assert!(
            error
                .to_string()
                .contains("MariaDB 10.6.0 or later is required")
        );
    }

    #[test]
    fn mysql_9_speaks_8_4_and_10_is_refused() {
        assert_eq!(
            Flavor::from_server_version("9.7.4-2").ok(),
            Some(Flavor::MySql84)
        );
        assert!(matches!(
            Flavor::from_server_version("10.1.0"),
            Err(FlavorError::TooNew { .. })
        ));
    }

    #[test]
    fn garbage_version_is_unparseable() {
        for version in ["", "MariaDB", "8.0", "eight.0.1", "8..1"] {
            assert!(
                matches!(
                    Flavor::from_server_version(version),
                    Err(FlavorError::Unparseable { .. })
                ),
                "{version:?}"
            );
        }
    }

    #[test]
    fn flavor_serialises_as_lowercase_words() {
        assert_eq!(
            serde_json::to_string(&Flavor::MySql80).unwrap(),
            "\"mysql80\""
        );
        assert_eq!(
            serde_json::to_string(&Flavor::MySql84).unwrap(),
            "\"mysql84\""
        );
        assert_eq!(
            serde_json::to_string(&Flavor::MariaDb).unwrap(),
            "\"mariadb\""
        );
        let parsed: Flavor = serde_json::from_str("\"mariadb\"").unwrap();
        assert_eq!(parsed, Flavor::MariaDb);
    }
}
