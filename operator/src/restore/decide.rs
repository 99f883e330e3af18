//! Whether a restore may go ahead and where its volume goes: pure
//! functions over the backup and the cluster as found.

use std::collections::BTreeSet;

use ebisu_api::{Flavor, MySQLBackup};

/// What the restore found.
#[derive(Debug)]
pub struct Found<'a> {
    /// The backup, if it exists.
    pub backup: Option<&'a MySQLBackup>,
    /// Its name.
    pub name: &'a str,
    /// The cluster's namespace.
    pub namespace: &'a str,
    /// The cluster's flavor.
    pub flavor: Flavor,
    /// The cluster already holds data (claims, an initialised record).
    pub holds_data: bool,
}

/// Why a restore may not go ahead, if it may not; then nothing is created.
pub fn refusal(found: &Found<'_>) -> Option<String> {
    let name = found.name;
    let Some(backup) = found.backup else {
        return Some(format!(
            "MySQLBackup {name} does not exist in namespace {}: name an existing backup (kubectl get mysqlbackups)",
            found.namespace
        ));
    };
    if found.holds_data {
        return Some(
            "the cluster's name is taken: data of a cluster by this name (its volume claims or credentials) exists; restore into a cluster with a new name, or delete that data first".to_owned(),
        );
    }
    let status = backup.status.clone().unwrap_or_default();
    if !backup.is_completed() {
        return Some(format!(
            "MySQLBackup {name} is not completed (phase {}): wait for it, or name a completed backup",
            status
                .phase
                .map_or_else(|| "none".to_owned(), |p| format!("{p:?}"))
        ));
    }
    if let Some(flavor) = status.flavor
        && flavor != found.flavor
    {
        return Some(format!(
            "MySQLBackup {name} holds {flavor:?} data and the cluster is {:?}: set spec.flavor to the backup's",
            found.flavor
        ));
    }
    if status.snapshot_id.is_none() || status.credentials_secret.is_none() {
        return Some(format!(
            "MySQLBackup {name} names no snapshot or credentials: name another backup"
        ));
    }
    None
}

/// The zone for the restored volume: the backup's when nodes run there
/// (the snapshot is regional, but a replica's old zone keeps the
/// cluster's spread), else the first zone with nodes.
pub fn zone(backup_zone: Option<&str>, node_zones: &BTreeSet<String>) -> Option<String> {
    backup_zone
        .filter(|z| node_zones.contains(*z))
        .map(str::to_owned)
        .or_else(|| node_zones.iter().next().cloned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ebisu_api::{BackupPhase, MySQLBackupSpec, MySQLBackupStatus};

    fn backup(phase: BackupPhase, flavor: Flavor) -> MySQLBackup {
        let mut b = MySQLBackup::new(
            "nightly",
            MySQLBackupSpec {
                cluster: "shop".to_owned(),
            },
        );
        b.status = Some(MySQLBackupStatus {
            phase: Some(phase),
            flavor: Some(flavor),
            snapshot_id: Some("snap-1".to_owned()),
            credentials_secret: Some("nightly-backup-credentials".to_owned()),
            ..MySQLBackupStatus::default()
        });
        b
    }

    fn found(backup: Option<&MySQLBackup>, holds_data: bool) -> Found<'_> {
        Found {
            backup,
            name: "nightly",
            namespace: "prod",
            flavor: Flavor::Mariadb,
            holds_data,
        }
    }

    #[test]
    fn a_completed_backup_of_the_flavor_is_restored() {
        let b = backup(BackupPhase::Completed, Flavor::Mariadb);
        assert_eq!(refusal(&found(Some(&b), false)), None);
    }

    #[test]
    fn each_refusal_says_what_to_do() {
        let done = backup(BackupPhase::Completed, Flavor::Mariadb);
        let pending = backup(BackupPhase::Snapshotting, Flavor::Mariadb);
        let mysql = backup(BackupPhase::Completed, Flavor::Mysql);
        for (f, expected) in [
            (found(None, false), "does not exist in namespace prod"),
            (found(Some(&done), true), "the cluster's name is taken"),
            (
                found(Some(&pending), false),
                "is not completed (phase Snapshotting)",
            ),
            (found(Some(&mysql), false), "set spec.flavor"),
        ] {
            let why = refusal(&f).unwrap();
            assert!(why.contains(expected), "{why}");
        }
    }

    #[test]
    fn the_volume_goes_where_nodes_run() {
        let zones: BTreeSet<String> = ["us-east-1b".to_owned(), "us-east-1c".to_owned()].into();
        assert_eq!(
            zone(Some("us-east-1c"), &zones).as_deref(),
            Some("us-east-1c")
        );
        assert_eq!(
            zone(Some("us-east-1a"), &zones).as_deref(),
            Some("us-east-1b")
        );
        assert_eq!(zone(None, &zones).as_deref(), Some("us-east-1b"));
        assert_eq!(zone(Some("us-east-1a"), &BTreeSet::new()), None);
    }
}
