//! Archive retention: after each completed backup and hourly, the archived
//! files no kept backup needs are removed from S3 ([`due`] and [`kept`],
//! pure; [`prune`], IO; which files: `ebisu_mysql::archive::prune`).

use std::time::Duration;

use ebisu_api::{BackupPhase, MySQLBackup};
use ebisu_mysql::{Flavor, GtidSet, archive::prune::prunable};
use k8s_openapi::jiff::Timestamp;

use crate::validate::ArchiveTarget;

/// How often retention looks without a new backup (one may have been
/// deleted by hand).
pub const EVERY: Duration = Duration::from_secs(3600);

/// Why the archive could not be pruned.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// S3 refused or failed a call.
    #[error("failed to prune the binary log archive: {0}")]
    S3(#[from] ebisu_aws::archive::Error),
}

/// The GTID sets of the cluster's completed backups that are not being
/// deleted. One whose set cannot be read holds nothing: it covers no gap
/// and keeps the whole archive.
pub fn completed(flavor: Flavor, cluster: &str, backups: &[MySQLBackup]) -> Vec<GtidSet> {
    live(cluster, backups)
        .filter_map(|b| b.status.as_ref())
        .filter(|s| s.phase == Some(BackupPhase::Completed))
        .map(|s| {
            s.gtid_set
                .as_deref()
                .and_then(|set| GtidSet::parse(flavor, set).ok())
                .unwrap_or_else(|| GtidSet::empty(flavor))
        })
        .collect()
}

/// The GTID sets of the cluster's kept backups ([`completed`]), or `None`
/// while retention must not look: a backup is being taken (what it will
/// hold is not known yet).
pub fn kept(flavor: Flavor, cluster: &str, backups: &[MySQLBackup]) -> Option<Vec<GtidSet>> {
    let taking = live(cluster, backups).any(|b| {
        matches!(
            b.status.as_ref().and_then(|s| s.phase),
            None | Some(BackupPhase::Pending | BackupPhase::Snapshotting)
        )
    });
    (!taking).then(|| completed(flavor, cluster, backups))
}

/// The cluster's backups that are not being deleted.
fn live<'a>(cluster: &'a str, backups: &'a [MySQLBackup]) -> impl Iterator<Item = &'a MySQLBackup> {
    backups
        .iter()
        .filter(move |b| b.spec.cluster == cluster && b.metadata.deletion_timestamp.is_none())
}

/// Whether retention looks now: when it never did, a backup completed
/// since it last did, or [`EVERY`] passed.
pub fn due(last: Option<Timestamp>, newest_completed: Option<Timestamp>, now: Timestamp) -> bool {
    let Some(last) = last else {
        return true;
    };
    newest_completed.is_some_and(|completed| completed > last)
        || now.duration_since(last).as_secs() >= i64::try_from(EVERY.as_secs()).unwrap_or(3600)
}

/// Removes the files `prunable` allows: every manifest first, then the
/// bytes, so a reader never finds a manifest without its bytes (bytes left
/// by a failed second call are never read). Answers how many segments
/// went.
pub async fn prune(
    s3: &aws_sdk_s3::Client,
    flavor: Flavor,
    target: &ArchiveTarget,
    kept: &[GtidSet],
    archiving: &[u32],
) -> Result<u64, Error> {
    let archive =
        ebisu_aws::archive::manifests(s3, &target.bucket, target.prefix.trim_end_matches('/'))
            .await?;
    let gone = prunable(flavor, &archive, kept, archiving);
    if gone.is_empty() {
        return Ok(0);
    }
    let manifests: Vec<String> = gone.iter().map(|l| l.key.clone()).collect();
    let bytes: Vec<String> = gone
        .iter()
        .filter_map(|l| ebisu_mysql::archive::data_key(&l.key))
        .collect();
    ebisu_aws::archive::delete(s3, &target.bucket, &manifests).await?;
    ebisu_aws::archive::delete(s3, &target.bucket, &bytes).await?;
    Ok(u64::try_from(gone.len()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ebisu_api::{MySQLBackupSpec, MySQLBackupStatus};

    fn backup(cluster: &str, phase: Option<BackupPhase>, gtid: Option<&str>) -> MySQLBackup {
        let mut backup = MySQLBackup::new(
            "b",
            MySQLBackupSpec {
                cluster: cluster.to_owned(),
            },
        );
        backup.status = Some(MySQLBackupStatus {
            phase,
            gtid_set: gtid.map(str::to_owned),
            ..MySQLBackupStatus::default()
        });
        backup
    }

    #[test]
    fn kept_backups_are_the_completed_ones_of_the_cluster() {
        let backups = [
            backup("orders", Some(BackupPhase::Completed), Some("0-1-10")),
            backup("orders", Some(BackupPhase::Failed), None),
            backup("other", Some(BackupPhase::Pending), None),
            backup("orders", Some(BackupPhase::Completed), Some("garbage")),
        ];
        let kept = kept(Flavor::MariaDb, "orders", &backups).unwrap();
        assert_eq!(kept.len(), 2);
        assert_eq!(kept[0].to_string(), "0-1-10");
        assert!(kept[1].is_empty(), "an unreadable set holds nothing");
    }

    #[test]
    fn retention_waits_for_a_backup_being_taken() {
        for phase in [
            None,
            Some(BackupPhase::Pending),
            Some(BackupPhase::Snapshotting),
        ] {
            let backups = [
                backup("orders", Some(BackupPhase::Completed), Some("0-1-10")),
                backup("orders", phase, None),
            ];
            assert_eq!(kept(Flavor::MariaDb, "orders", &backups), None);
        }
    }

    #[test]
    fn retention_looks_after_a_new_backup_or_an_hour() {
        let t = |s: i64| Timestamp::from_second(1_800_000_000 + s).unwrap();
        assert!(due(None, None, t(0)));
        assert!(!due(Some(t(0)), Some(t(-5)), t(60)));
        assert!(due(Some(t(0)), Some(t(5)), t(60)));
        assert!(!due(Some(t(0)), None, t(3599)));
        assert!(due(Some(t(0)), None, t(3600)));
    }
}
