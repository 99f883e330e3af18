//! Which instance a data directory belongs to. A directory that arrives
//! from another instance (a volume made from a snapshot of a peer or of a
//! backed-up cluster) is given a server identity of its own before its
//! server starts: MySQL keeps its `server_uuid` in `auto.cnf`, and two
//! servers with one uuid throw each other off their source.

use std::path::Path;

use ebisu_api::Flavor;

/// The file naming the instance (`report_host`) the data belongs to.
pub const OWNER_FILE: &str = "ebisu-owner";

/// Where MySQL keeps the server's uuid; it makes a new one when missing.
const MYSQL_UUID_FILE: &str = "auto.cnf";

/// Makes `dir` this instance's (`me`): a directory another instance owned
/// loses its server identity. The previous owner, when it was another.
pub fn take(dir: &Path, me: &str, family: Flavor) -> std::io::Result<Option<String>> {
    let path = dir.join(OWNER_FILE);
    let owner = match std::fs::read_to_string(&path) {
        Ok(owner) => Some(owner.trim().to_owned()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e),
    };
    if owner.as_deref() == Some(me) {
        return Ok(None);
    }
    let copied = owner.filter(|o| !o.is_empty());
    if copied.is_some() && family == Flavor::Mysql {
        match std::fs::remove_file(dir.join(MYSQL_UUID_FILE)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    std::fs::write(&path, format!("{me}\n"))?;
    Ok(copied)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::expect_used)]
    use super::*;

    #[test]
    fn a_copy_from_another_instance_loses_its_mysql_uuid_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let uuid = dir.path().join(MYSQL_UUID_FILE);
        std::fs::write(&uuid, "[auto]\nserver-uuid=x\n").expect("write");
        // Never owned: this instance's own data from before the file existed.
        assert_eq!(take(dir.path(), "db-1", Flavor::Mysql).expect("take"), None);
        assert!(uuid.exists(), "own data keeps its uuid");
        assert_eq!(take(dir.path(), "db-1", Flavor::Mysql).expect("take"), None);
        assert!(uuid.exists());
        // Copied to db-3 (a volume made from db-1's snapshot).
        assert_eq!(
            take(dir.path(), "db-3", Flavor::Mysql).expect("take"),
            Some("db-1".to_owned())
        );
        assert!(!uuid.exists(), "the copy gets a uuid of its own");
        std::fs::write(&uuid, "[auto]\nserver-uuid=y\n").expect("write");
        assert_eq!(take(dir.path(), "db-3", Flavor::Mysql).expect("take"), None);
        assert!(uuid.exists(), "and keeps it from then on");
    }

    #[test]
    fn mariadb_copies_keep_their_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join(OWNER_FILE), "db-1\n").expect("write");
        std::fs::write(dir.path().join(MYSQL_UUID_FILE), "x").expect("write");
        assert_eq!(
            take(dir.path(), "db-3", Flavor::Mariadb).expect("take"),
            Some("db-1".to_owned())
        );
        assert!(dir.path().join(MYSQL_UUID_FILE).exists());
    }
}
