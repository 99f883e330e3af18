//! Account names and passwords of the service users, checked once when they
//! are built so that every statement built from them is well formed.

use std::fmt;

use super::SqlError;
use super::quote::{quote_literal, validate_user_name};

/// A service account name: 1 to 32 of `[A-Za-z0-9_]`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UserName(String);

impl UserName {
    /// Validates `name`.
    pub fn new(name: &str) -> Result<Self, SqlError> {
        validate_user_name(name)?;
        Ok(Self(name.to_owned()))
    }

    /// The bare name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The account this name is created as, `'name'@'%'`.
    pub fn account(&self) -> String {
        format!("{}@'%'", quote_literal(&self.0))
    }
}

impl fmt::Display for UserName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A password that is never empty. `Debug` hides it, and there is no
/// `Display`, so it does not end up in logs by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl Password {
    /// Accepts any non-empty password.
    pub fn new(password: &str) -> Result<Self, SqlError> {
        if password.is_empty() {
            return Err(SqlError::EmptyPassword);
        }
        Ok(Self(password.to_owned()))
    }

    /// The password itself, for handing to a client library.
    pub fn reveal(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

/// A user name with its password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The account name (created as `'name'@'%'`).
    pub user: UserName,
    /// Its password.
    pub password: Password,
}

impl Credentials {
    /// Validates both parts; an empty password is refused and names the user.
    pub fn new(user: &str, password: &str) -> Result<Self, SqlError> {
        let user = UserName::new(user)?;
        let password = Password::new(password).map_err(|_| SqlError::EmptyPasswordFor {
            user: user.as_str().to_owned(),
        })?;
        Ok(Self { user, password })
    }
}

/// What a service user is for; decides its privileges.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ServiceRole {
    /// The operator's own account: replication admin, read-only fencing,
    /// killing client connections, observing status.
    Operator,
    /// The account replicas connect to their source with.
    Replication,
    /// The account a donor's backup tool (or the CLONE plugin) runs as.
    Clone,
    /// Read-only observation for health checks and metrics.
    Monitor,
}

impl ServiceRole {
    /// Every role, in the order users are created.
    pub const ALL: [ServiceRole; 4] = [
        ServiceRole::Operator,
        ServiceRole::Replication,
        ServiceRole::Clone,
        ServiceRole::Monitor,
    ];
}

/// The four service users of a cluster, with distinct names none of which is
/// `root` (a shared name would merge the privileges of two roles).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceUsers {
    operator: Credentials,
    replication: Credentials,
    clone: Credentials,
    monitor: Credentials,
}

impl ServiceUsers {
    /// Checks that the four names are distinct and not `root`.
    pub fn new(
        operator: Credentials,
        replication: Credentials,
        clone: Credentials,
        monitor: Credentials,
    ) -> Result<Self, SqlError> {
        let users = Self {
            operator,
            replication,
            clone,
            monitor,
        };
        let names = users.names();
        for (i, name) in names.iter().enumerate() {
            if name.as_str().eq_ignore_ascii_case("root") {
                return Err(SqlError::ReservedUserName {
                    name: name.as_str().to_owned(),
                });
            }
            // Account names compare case-sensitively on Linux servers, but
            // two names differing only in case are a mistake worth stopping.
            if names[..i]
                .iter()
                .any(|earlier| earlier.as_str().eq_ignore_ascii_case(name.as_str()))
            {
                return Err(SqlError::DuplicateUserName {
                    name: name.as_str().to_owned(),
                });
            }
        }
        Ok(users)
    }

    /// The credentials of one role.
    pub fn get(&self, role: ServiceRole) -> &Credentials {
        match role {
            ServiceRole::Operator => &self.operator,
            ServiceRole::Replication => &self.replication,
            ServiceRole::Clone => &self.clone,
            ServiceRole::Monitor => &self.monitor,
        }
    }

    /// The four names, in [`ServiceRole::ALL`] order.
    pub fn names(&self) -> [&UserName; 4] {
        ServiceRole::ALL.map(|role| &self.get(role).user)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn creds(user: &str, password: &str) -> Credentials {
        Credentials::new(user, password).expect("valid test credentials")
    }

    pub(crate) fn service_users() -> ServiceUsers {
        ServiceUsers::new(
            creds("ebisu_operator", "op-secret"),
            creds("ebisu_repl", "repl-secret"),
            creds("ebisu_clone", "clone-secret"),
            creds("ebisu_monitor", "monitor-secret"),
        )
        .expect("valid test users")
    }

    #[test]
    fn empty_password_is_refused() {
        assert_eq!(Password::new(""), Err(SqlError::EmptyPassword));
        assert_eq!(
            Credentials::new("ebisu_repl", ""),
            Err(SqlError::EmptyPasswordFor {
                user: "ebisu_repl".into()
            })
        );
    }

    #[test]
    fn password_debug_output_hides_the_secret() {
        let c = creds("ebisu_repl", "hunter2");
        assert!(!format!("{c:?}").contains("hunter2"));
    }

    #[test]
    fn account_is_quoted_name_at_any_host() {
        assert_eq!(
            UserName::new("ebisu_repl").unwrap().account(),
            "'ebisu_repl'@'%'"
        );
    }

    #[test]
    fn duplicate_service_user_names_are_refused() {
        let result = ServiceUsers::new(
            creds("ebisu", "a"),
            creds("ebisu_repl", "b"),
            creds("EBISU", "c"),
            creds("ebisu_monitor", "d"),
        );
        assert_eq!(
            result,
            Err(SqlError::DuplicateUserName {
                name: "EBISU".into()
            })
        );
    }

    #[test]
    fn root_cannot_be_a_service_user() {
        let result = ServiceUsers::new(
            creds("root", "a"),
            creds("ebisu_repl", "b"),
            creds("ebisu_clone", "c"),
            creds("ebisu_monitor", "d"),
        );
        assert!(matches!(result, Err(SqlError::ReservedUserName { .. })));
    }

    #[test]
    fn service_users_are_looked_up_by_role() {
        let users = service_users();
        assert_eq!(users.get(ServiceRole::Clone).user.as_str(), "ebisu_clone");
        assert_eq!(users.names()[0].as_str(), "ebisu_operator");
    }
}
