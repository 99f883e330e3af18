//! Whether a restore may go ahead and where its volume goes: pure
//! functions over the backup and the cluster as found.

use std::collections::BTreeSet;

use ebisu_api::{Flavor, MySQLBackup};
use ebisu_mysql::GtidSet;
use ebisu_mysql::archive::replay::{self, Target};
use ebisu_mysql::archive::runs::Runs;
use kube::ResourceExt;

use crate::validate;

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

/// When every transaction a backup holds had committed: the moment its
/// GTID set was read, else (a backup taken before ebisu recorded it) when
/// its snapshot completed, later still.
pub fn consistent_at(backup: &MySQLBackup) -> Option<i64> {
    let status = backup.status.as_ref()?;
    status
        .consistent_at
        .as_ref()
        .or(status.completed.as_ref())
        .map(|t| t.0.as_microsecond())
}

/// Why `backup` cannot start a restore to `target`, if it cannot: it
/// holds transactions committed after the target time. (Against a GTID
/// target, the replay plan checks it.)
pub fn too_late(backup: &MySQLBackup, target: &Target) -> Option<String> {
    let Target::Time(at) = target else {
        return None;
    };
    match consistent_at(backup) {
        Some(consistent) if consistent <= *at => None,
        Some(consistent) => Some(format!(
            "MySQLBackup {} holds transactions up to {}, after the target {target}: name an earlier backup, or set fromBackup.cluster to have the newest one before the target chosen",
            backup.name_any(),
            replay::time(consistent)
        )),
        None => Some(format!(
            "MySQLBackup {} has no completion time: name another backup",
            backup.name_any()
        )),
    }
}

/// The newest completed backup of `cluster` (of `flavor`) that holds
/// nothing after `target`: consistent at or before a target time, or
/// holding only transactions of a target GTID set.
pub fn newest_before<'a>(
    backups: &'a [MySQLBackup],
    cluster: &str,
    flavor: Flavor,
    target: &Target,
) -> Result<&'a MySQLBackup, String> {
    let of_cluster: Vec<&MySQLBackup> = backups
        .iter()
        .filter(|b| b.spec.cluster == cluster && b.is_completed())
        .filter(|b| b.status.as_ref().and_then(|s| s.flavor) == Some(flavor))
        .collect();
    let fits = |b: &MySQLBackup| match target {
        Target::Time(_) => too_late(b, target).is_none(),
        Target::Gtids(set) => b
            .status
            .as_ref()
            .and_then(|s| s.gtid_set.as_deref())
            .and_then(|g| GtidSet::parse(validate::ebisu_mysql_flavor(flavor), g).ok())
            .is_some_and(|held| Runs::of_gtids(set).contains(&Runs::of_gtids(&held))),
    };
    of_cluster
        .iter()
        .copied()
        .filter(|b| fits(b))
        .max_by_key(|b| (consistent_at(b), b.name_any()))
        .ok_or_else(|| {
            let oldest = of_cluster
                .iter()
                .filter_map(|b| consistent_at(b).map(|at| (at, b.name_any())))
                .min();
            match oldest {
                Some((at, name)) => format!(
                    "the target {target} is before the first backup of cluster {cluster} (the oldest, {name}, holds transactions up to {}): choose a later point",
                    replay::time(at)
                ),
                None => format!(
                    "cluster {cluster} has no completed {flavor:?} backup in this namespace: take one (a MySQLBackup, or spec.backup on that cluster)"
                ),
            }
        })
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

    fn taken(name: &str, cluster: &str, gtids: &str, consistent_s: i64) -> MySQLBackup {
        let mut b = backup(BackupPhase::Completed, Flavor::Mariadb);
        b.metadata.name = Some(name.to_owned());
        b.spec.cluster = cluster.to_owned();
        if let Some(status) = b.status.as_mut() {
            status.gtid_set = Some(gtids.to_owned());
            status.consistent_at = k8s_openapi::jiff::Timestamp::from_second(consistent_s)
                .ok()
                .map(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time);
        }
        b
    }

    #[test]
    fn the_newest_backup_before_the_target_is_chosen() {
        let backups = vec![
            taken("monday", "shop", "0-100-10", 1_000),
            taken("tuesday", "shop", "0-100-20", 2_000),
            taken("wednesday", "shop", "0-100-30", 3_000),
            taken("other", "stock", "0-100-25", 2_500),
        ];
        let name = |target: &Target| {
            newest_before(&backups, "shop", Flavor::Mariadb, target).map(|b| b.name_any())
        };
        assert_eq!(name(&Target::Time(2_500_000_000)).as_deref(), Ok("tuesday"));
        assert_eq!(
            name(&Target::Time(2_000_000_000)).as_deref(),
            Ok("tuesday"),
            "consistent at the target itself"
        );
        let gtid =
            |text: &str| Target::Gtids(GtidSet::parse(ebisu_mysql::Flavor::MariaDb, text).unwrap());
        assert_eq!(name(&gtid("0-100-29")).as_deref(), Ok("tuesday"));
        let early = name(&Target::Time(999_000_000)).unwrap_err();
        assert!(
            early.contains("before the first backup of cluster shop (the oldest, monday"),
            "{early}"
        );
        let none =
            newest_before(&backups, "orders", Flavor::Mariadb, &Target::Time(0)).unwrap_err();
        assert!(none.contains("has no completed"), "{none}");
        let mysql = newest_before(&backups, "shop", Flavor::Mysql, &Target::Time(i64::MAX));
        assert!(
            mysql.is_err(),
            "another flavor's backups are not candidates"
        );
    }

    #[test]
    fn a_named_backup_past_the_target_time_is_refused() {
        let b = taken("tuesday", "shop", "0-100-20", 2_000);
        assert_eq!(too_late(&b, &Target::Time(2_000_000_000)), None);
        let why = too_late(&b, &Target::Time(1_999_999_999)).unwrap();
        assert!(why.contains("after the target"), "{why}");
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
