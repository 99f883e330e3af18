//! A restore to a point, before anything is made: the archive the backup's
//! cluster kept is read (its manifests) and the replay planned
//! (`ebisu_mysql::archive::replay`), so a point the archive cannot reach
//! exactly is refused with nothing created. The first instance's init step
//! plans again from the same manifests and replays.

use ebisu_api::{MySQLBackupStatus, ReplayStatus, agent::ReplayOrder, names};
use ebisu_mysql::{
    Flavor, GtidSet,
    archive::replay::{self, Target},
};

/// Plans the replay of `backup`'s archive to `target`; why not, when it
/// cannot be.
pub async fn plan(
    client: &aws_sdk_s3::Client,
    name: &str,
    backup: &MySQLBackupStatus,
    flavor: Flavor,
    target: &Target,
) -> Result<ReplayStatus, String> {
    let Some(archive) = &backup.archive else {
        return Err(format!(
            "MySQLBackup {name} was taken while its cluster kept no binary log archive (spec.backup.archive): there is nothing to replay; remove pointInTime to restore the backup as it is"
        ));
    };
    let held = backup.gtid_set.as_deref().unwrap_or_default();
    let held =
        GtidSet::parse(flavor, held).map_err(|e| format!("MySQLBackup {name}'s GTID set: {e}"))?;
    let prefix = archive.prefix.trim_end_matches('/');
    let manifests = ebisu_aws::archive::manifests(client, &archive.bucket, prefix)
        .await
        .map_err(|e| {
            format!(
                "{e}: the operator reads the archive's manifests with s3:ListBucket and s3:GetObject on {}/{}/manifest/ (deploy/iam/operator-policy.json has it); looked at again every 30 s",
                archive.bucket, archive.prefix
            )
        })?;
    let plan = replay::plan(flavor, &held, &manifests, target)
        .map_err(|refusal| format!("{}: {refusal}", refusal.reason()))?;
    Ok(ReplayStatus {
        target: target.to_string(),
        bucket: archive.bucket.clone(),
        prefix: archive.prefix.clone(),
        segments: u32::try_from(plan.files.iter().map(|f| f.segments.len()).sum::<usize>())
            .unwrap_or(u32::MAX),
        at_least: plan.at_least.to_string(),
        at_most: plan.at_most.to_string(),
        reached: None,
    })
}

/// What the first instance is told to replay, while the restore is not
/// done.
pub fn order(
    cluster: &str,
    backup_gtid_set: &str,
    replay: &ReplayStatus,
    target: &Target,
) -> ReplayOrder {
    let (time_us, gtid_set) = match target {
        Target::Time(us) => (Some(*us), None),
        Target::Gtids(set) => (None, Some(set.to_string())),
    };
    ReplayOrder {
        pod: names::pod(cluster, 0),
        bucket: replay.bucket.clone(),
        prefix: replay.prefix.clone(),
        backup_gtid_set: backup_gtid_set.to_owned(),
        time_us,
        gtid_set,
    }
}
