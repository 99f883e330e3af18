//! The cluster's credentials as the pod sees them: one file per key of the
//! credentials Secret, mounted read-only. Values are never logged.

use std::path::{Path, PathBuf};

use ebisu_api::names::secret_keys;
use ebisu_mysql::{Credentials as Account, Password, ServiceUsers};

/// Why the credentials could not be read.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A key's file is missing or unreadable.
    #[error("failed to read credential {key} from {path}: {source}")]
    Read {
        /// Secret key.
        key: &'static str,
        /// File path.
        path: PathBuf,
        /// The IO error.
        #[source]
        source: std::io::Error,
    },
    /// A value is not acceptable (for example an empty password).
    #[error("failed to accept credential {key}: {reason}")]
    Invalid {
        /// Secret key.
        key: &'static str,
        /// What is wrong (never the value).
        reason: String,
    },
}

/// Everything the sidecar needs from the Secret.
#[derive(Debug, Clone)]
pub struct ClusterCredentials {
    /// root@localhost's password.
    pub root_password: Password,
    /// The four service accounts.
    pub users: ServiceUsers,
    /// Token a peer must present to receive a clone.
    pub clone_token: String,
}

/// One key's file, read as the operator reads the Secret; empty counts as
/// missing, and the account checks say so.
fn read_key(dir: &Path, key: &'static str) -> Result<String, Error> {
    let path = dir.join(key);
    std::fs::read(&path)
        .map(|v| ebisu_api::names::secret_value(&v).unwrap_or_default())
        .map_err(|source| Error::Read { key, path, source })
}

/// Reads the credentials from the mounted Secret directory.
pub fn read(dir: &Path) -> Result<ClusterCredentials, Error> {
    let get = |key: &'static str| read_key(dir, key);
    let account = |user_key: &'static str, password_key: &'static str| -> Result<Account, Error> {
        Account::new(&get(user_key)?, &get(password_key)?).map_err(|e| Error::Invalid {
            key: password_key,
            reason: e.to_string(),
        })
    };
    let root_password =
        Password::new(&get(secret_keys::ROOT_PASSWORD)?).map_err(|e| Error::Invalid {
            key: secret_keys::ROOT_PASSWORD,
            reason: e.to_string(),
        })?;
    let users = ServiceUsers::new(
        account(secret_keys::OPERATOR_USER, secret_keys::OPERATOR_PASSWORD)?,
        account(
            secret_keys::REPLICATION_USER,
            secret_keys::REPLICATION_PASSWORD,
        )?,
        account(secret_keys::CLONE_USER, secret_keys::CLONE_PASSWORD)?,
        account(secret_keys::MONITOR_USER, secret_keys::MONITOR_PASSWORD)?,
    )
    .map_err(|e| Error::Invalid {
        key: secret_keys::OPERATOR_USER,
        reason: e.to_string(),
    })?;
    let clone_token = get(secret_keys::CLONE_TOKEN)?;
    if clone_token.len() < 16 {
        return Err(Error::Invalid {
            key: secret_keys::CLONE_TOKEN,
            reason: "must be at least 16 characters".to_owned(),
        });
    }
    Ok(ClusterCredentials {
        root_password,
        users,
        clone_token,
    })
}

/// The application owner (`spec.database`): `owner` with the password in
/// the Secret's `app-password` file.
pub fn read_application(dir: &Path, owner: &str) -> Result<Account, Error> {
    let key = secret_keys::APP_PASSWORD;
    Account::new(owner, &read_key(dir, key)?).map_err(|e| Error::Invalid {
        key,
        reason: e.to_string(),
    })
}

/// Writes a credentials directory as the Secret volume would (for tests and local runs).
pub fn write_dir(dir: &Path, entries: &[(&str, &str)]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    for (key, value) in entries {
        std::fs::write(dir.join(key), value)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries() -> Vec<(&'static str, &'static str)> {
        vec![
            (secret_keys::ROOT_PASSWORD, "rootpw-0123456789"),
            (secret_keys::OPERATOR_USER, "ebisu_operator"),
            (secret_keys::OPERATOR_PASSWORD, "op-0123456789"),
            (secret_keys::REPLICATION_USER, "ebisu_repl"),
            (secret_keys::REPLICATION_PASSWORD, "repl-0123456789"),
            (secret_keys::CLONE_USER, "ebisu_clone"),
            (secret_keys::CLONE_PASSWORD, "clone-0123456789"),
            (secret_keys::CLONE_TOKEN, "token-0123456789abcdef"),
            (secret_keys::MONITOR_USER, "ebisu_monitor"),
            (secret_keys::MONITOR_PASSWORD, "mon-0123456789"),
        ]
    }

    #[test]
    fn reads_every_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        write_dir(dir.path(), &entries()).expect("write");
        let creds = read(dir.path()).expect("read");
        assert_eq!(creds.clone_token, "token-0123456789abcdef");
        assert_eq!(creds.root_password.reveal(), "rootpw-0123456789");
    }

    #[test]
    fn empty_password_is_refused_without_revealing_values() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut e = entries();
        e[4] = (secret_keys::REPLICATION_PASSWORD, "");
        write_dir(dir.path(), &e).expect("write");
        let err = read(dir.path()).expect_err("empty password").to_string();
        assert!(err.contains("replication-password"), "{err}");
        assert!(!err.contains("rootpw"), "{err}");
    }

    #[test]
    fn missing_key_names_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = read(dir.path()).expect_err("missing").to_string();
        assert!(err.contains("root-password"), "{err}");
    }
}
