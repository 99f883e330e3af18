//! MariaDB's READ_ONLY ADMIN: the one privilege that writes through
//! `read_only` (since 10.11 SUPER no longer includes it), and part of every
//! `GRANT ALL PRIVILEGES ON *.*`. An application account holding it could
//! write to a replica or a fenced old primary, so every server takes it
//! from every account but ebisu's own, on its own (never binary-logged:
//! each server does the same, so no server holds a transaction the others
//! lack). MySQL needs none of this: `super_read_only` stops every account.

use super::quote::quote_literal;

/// Every account and role holding READ_ONLY ADMIN, as `GRANTEE` strings
/// (`'user'@'host'`, or `'role'` for a role). Root sees every account.
pub const READ_ONLY_ADMIN_HOLDERS_QUERY: &str = "SELECT GRANTEE FROM information_schema.USER_PRIVILEGES \
     WHERE PRIVILEGE_TYPE = 'READ_ONLY ADMIN'";

/// An account (or, with an empty host, a role) that holds READ_ONLY ADMIN.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Grantee {
    /// The user or role name.
    pub user: String,
    /// The host part; empty for a role.
    pub host: String,
}

impl Grantee {
    /// Reads a `GRANTEE` value (`'user'@'host'` or `'role'`); `None` for
    /// anything else, which is then left alone rather than guessed at.
    pub fn parse(grantee: &str) -> Option<Self> {
        let unquote = |s: &str| {
            s.strip_prefix('\'')
                .and_then(|s| s.strip_suffix('\''))
                .filter(|s| !s.contains('\''))
                .map(str::to_owned)
        };
        match grantee.rsplit_once("'@'") {
            Some((user, host)) => Some(Self {
                user: unquote(&format!("{user}'"))?,
                host: unquote(&format!("'{host}"))?,
            }),
            None => Some(Self {
                user: unquote(grantee)?,
                host: String::new(),
            }),
        }
    }

    /// `'user'@'host'`, or `'role'`.
    pub fn account(&self) -> String {
        if self.host.is_empty() {
            quote_literal(&self.user)
        } else {
            format!(
                "{}@{}",
                quote_literal(&self.user),
                quote_literal(&self.host)
            )
        }
    }

    /// `REVOKE READ_ONLY ADMIN` from it (run with `sql_log_bin = 0`).
    pub fn revoke_read_only_admin(&self) -> String {
        format!("REVOKE READ_ONLY ADMIN ON *.* FROM {}", self.account())
    }
}

/// The holders that must lose READ_ONLY ADMIN: all but ebisu's operator
/// account (it fences with it) and accounts that log in only from inside
/// the pod (`localhost`: root, which the agent fences with, and the
/// packaging's `mysql`/`mariadb.sys`).
pub fn read_only_admins_to_revoke(holders: &[Grantee], operator_user: &str) -> Vec<Grantee> {
    let mut revoke: Vec<Grantee> = holders
        .iter()
        .filter(|g| g.user != operator_user && g.host != "localhost")
        .cloned()
        .collect();
    revoke.sort();
    revoke.dedup();
    revoke
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grantee(user: &str, host: &str) -> Grantee {
        Grantee {
            user: user.to_owned(),
            host: host.to_owned(),
        }
    }

    #[test]
    fn grantees_are_read_as_the_server_writes_them() {
        assert_eq!(Grantee::parse("'app2'@'%'"), Some(grantee("app2", "%")));
        assert_eq!(
            Grantee::parse("'root'@'localhost'"),
            Some(grantee("root", "localhost"))
        );
        assert_eq!(Grantee::parse("'admins'"), Some(grantee("admins", "")));
        assert_eq!(
            Grantee::parse("'a@b'@'10.0.%'"),
            Some(grantee("a@b", "10.0.%"))
        );
        for odd in ["app2@%", "'x'y'@'%'", "", "'unterminated"] {
            assert_eq!(Grantee::parse(odd), None, "{odd}");
        }
    }

    #[test]
    fn every_account_but_ebisus_own_loses_read_only_admin() {
        let holders = [
            grantee("root", "localhost"),
            grantee("mysql", "localhost"),
            grantee("ebisu_operator", "%"),
            grantee("app2", "%"),
            grantee("admins", ""),
            grantee("app2", "%"),
            grantee("root", "10.0.0.%"),
        ];
        assert_eq!(
            read_only_admins_to_revoke(&holders, "ebisu_operator"),
            vec![
                grantee("admins", ""),
                grantee("app2", "%"),
                grantee("root", "10.0.0.%")
            ]
        );
    }

    #[test]
    fn revocations_quote_names() {
        assert_eq!(
            grantee("app2", "%").revoke_read_only_admin(),
            "REVOKE READ_ONLY ADMIN ON *.* FROM 'app2'@'%'"
        );
        assert_eq!(
            grantee("admins", "").revoke_read_only_admin(),
            "REVOKE READ_ONLY ADMIN ON *.* FROM 'admins'"
        );
    }
}
