//! The binary log archive (`spec.backup.archive`): which instance's agent
//! archives ([`archiver`], pure), the assignment renewed at it every
//! reconcile, which answers how far the archive got ([`assign`], IO), and
//! what status and problems say about it ([`report`], pure).

use ebisu_api::{
    ArchiveStatus,
    agent::{ArchiveAssignment, ArchiveProgress, PATH_ARCHIVE},
};
use ebisu_mysql::{Flavor, GtidSet};
use k8s_openapi::{apimachinery::pkg::apis::meta::v1::Time, jiff::Timestamp};

use crate::model::{Problem, ServerState};
use crate::validate::ArchiveTarget;

/// How long one assignment lasts: three settled reconciles, so a renewal
/// missed or two does not stop the archive, and an operator gone for
/// longer stops it.
pub const ASSIGNMENT_SECONDS: u64 = 90;

/// Why the archiver could not be asked.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The agent did not answer or refused.
    #[error("failed to assign the archive to {pod}'s agent: {why}")]
    Agent {
        /// The pod.
        pod: String,
        /// What went wrong.
        why: String,
    },
}

/// The instance whose agent archives: the current archiver while it still
/// replicates from the primary, else the replicating replica with the
/// highest ordinal (a switchover picks it last), else the primary of a
/// cluster with no replica; otherwise why there is none. The replica
/// `held` for a restore verification has its applier stopped on purpose
/// and still counts as replicating: it waits for the archive to hold what
/// it applied, which moving the archive away would never bring.
pub fn archiver<'a>(
    servers: &'a [ServerState],
    primary: Option<&str>,
    current: Option<&str>,
    held: Option<&str>,
) -> Result<&'a ServerState, String> {
    let primary = primary
        .and_then(|p| servers.iter().find(|s| s.pod == p))
        .filter(|p| p.answered() && !p.read_only)
        .ok_or_else(|| "has no writable primary to follow".to_owned())?;
    let replicating = |s: &&ServerState| {
        s.pod != primary.pod
            && s.answered()
            && !s.terminating
            && s.replication.as_ref().is_some_and(|r| {
                r.source_host == primary.host
                    && (r.sql_running || held == Some(s.pod.as_str()))
                    && r.sql_error.is_none()
            })
    };
    if let Some(kept) = current
        .and_then(|c| servers.iter().find(|s| s.pod == c))
        .filter(replicating)
    {
        return Ok(kept);
    }
    if let Some(best) = servers
        .iter()
        .filter(replicating)
        .max_by_key(|s| ebisu_api::names::ordinal_of(&s.pod).unwrap_or(0))
    {
        return Ok(best);
    }
    if servers.iter().all(|s| s.pod == primary.pod) {
        return Ok(primary);
    }
    Err("has no replica that replicates from the primary to archive from".to_owned())
}

/// Assigns the archive to `ip`'s agent for `seconds` (0 ends an
/// assignment); answers the archive's progress.
pub async fn assign(
    agents: &reqwest::Client,
    pod: &str,
    ip: &str,
    token: &str,
    target: &ArchiveTarget,
    seconds: u64,
) -> Result<ArchiveProgress, Error> {
    let assignment = ArchiveAssignment {
        bucket: target.bucket.clone(),
        prefix: target.prefix.clone(),
        seconds,
    };
    crate::agent_client::post(
        agents,
        ip,
        PATH_ARCHIVE,
        token,
        &assignment,
        // Inside a reconcile: an agent that does not answer soon is not
        // waited for (the assignment lapses by itself).
        std::time::Duration::from_secs(2),
    )
    .await
    .map_err(|why| Error::Agent {
        pod: pod.to_owned(),
        why,
    })
}

/// What [`report`] says.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// `status.archive`.
    pub status: ArchiveStatus,
    /// `ArchiveBehind`, when the archive is further behind the primary than
    /// allowed, fails, or has a gap no kept backup covers.
    pub problem: Option<Problem>,
    /// What binary log purges count as archived: the archive's set, and a
    /// gap a kept backup holds (waiting cannot fill it, and no restore
    /// needs it); `None` while unknown.
    pub purge_holder: Option<GtidSet>,
}

/// What status, problems and purges make of the archiver's progress;
/// `backups` are the GTID sets of the cluster's completed backups.
pub fn report(
    target: &ArchiveTarget,
    archiver: Result<&str, &str>,
    progress: Option<&ArchiveProgress>,
    primary_gtid: Option<&GtidSet>,
    backups: &[GtidSet],
    flavor: Flavor,
    now: Timestamp,
) -> Report {
    let through = progress
        .and_then(|p| p.archived_through_us)
        .and_then(|us| Timestamp::from_microsecond(us).ok());
    let archived = progress
        .and_then(|p| p.archived.as_deref())
        .and_then(|a| GtidSet::parse(flavor, a).ok());
    let gap_before = progress
        .and_then(|p| p.gap_before.as_deref())
        .and_then(|g| GtidSet::parse(flavor, g).ok());
    // How current the archive is, whatever gap it has (reported apart).
    let complete = match (&archived, primary_gtid) {
        (Some(archived), Some(primary)) => gap_before
            .as_ref()
            .map_or(Ok(archived.clone()), |before| archived.union(before))
            .and_then(|held| held.contains(primary))
            .unwrap_or(false),
        _ => false,
    };
    let behind = if complete {
        Some(0)
    } else {
        through.map(|t| u64::try_from(now.duration_since(t).as_secs()).unwrap_or(0))
    };
    let error = progress.and_then(|p| p.error.clone());
    let covered = gap_before
        .as_ref()
        .is_some_and(|before| backups.iter().any(|b| b.contains(before).unwrap_or(false)));
    let gap = progress.and_then(|p| p.gap.clone()).filter(|_| !covered);
    let purge_holder = match (&archived, &gap_before) {
        (Some(archived), Some(before)) if covered => archived.union(before).ok(),
        (Some(_), Some(_)) => None,
        (archived, _) => archived.clone(),
    };
    let status = ArchiveStatus {
        archiver: archiver.ok().map(str::to_owned),
        gtid_set: archived.as_ref().map(ToString::to_string),
        archived_through: through.map(Time),
        behind_seconds: behind,
        error: error.clone(),
        gap: gap.clone(),
        pruned_at: None,
        pruned_segments: None,
        prune_error: None,
    };
    let problem = match (archiver, error, behind) {
        (Err(why), _, _) => Some(why.to_owned()),
        (Ok(pod), _, _) if gap.is_some() => Some(format!(
            "lacks transactions {} that no binary log on {pod} holds any more (a server purged them before they were archived): a restore to a point after them from an older backup is refused (ArchiveGap); a backup taken now starts a new recoverable range and clears this",
            gap.as_deref().unwrap_or_default()
        )),
        (Ok(pod), Some(error), _) => Some(format!("fails on {pod}: {error}")),
        (Ok(_), None, Some(secs)) if secs > target.max_behind_seconds => Some(format!(
            "is {secs} s behind the primary (spec.backup.archive.maxBehindSeconds is {})",
            target.max_behind_seconds
        )),
        _ => None,
    };
    Report {
        status,
        problem: problem.map(Problem::ArchiveBehind),
        purge_holder,
    }
}

#[cfg(test)]
mod tests {
    use ebisu_api::InstanceRole;

    use super::*;
    use crate::model::{Answer, Replication};

    fn host(pod: &str) -> String {
        format!("{pod}.db.shop.svc.cluster.local")
    }

    fn primary(pod: &str) -> ServerState {
        ServerState {
            role_label: Some(InstanceRole::Primary),
            answer: Answer::Answered,
            read_only: false,
            ..ServerState::unobserved(pod, &host(pod))
        }
    }

    fn replica(pod: &str) -> ServerState {
        ServerState {
            read_only: true,
            replication: Some(Replication {
                source_host: host("db-0"),
                io_running: true,
                io_errno: 0,
                io_error: None,
                sql_running: true,
                sql_error: None,
                lag_seconds: Some(3),
                received: None,
            }),
            ..primary(pod)
        }
    }

    #[test]
    fn the_archiver_is_a_replicating_replica_kept_while_it_can() {
        let mut servers = vec![primary("db-0"), replica("db-1"), replica("db-2")];
        let pick = |servers: &[ServerState], current| {
            archiver(servers, Some("db-0"), current, None).map(|s| s.pod.clone())
        };
        assert_eq!(pick(&servers, None), Ok("db-2".to_owned()));
        assert_eq!(pick(&servers, Some("db-1")), Ok("db-1".to_owned()), "kept");
        if let Some(r) = servers[1].replication.as_mut() {
            r.sql_running = false;
        }
        assert_eq!(
            pick(&servers, Some("db-1")),
            Ok("db-2".to_owned()),
            "a stopped applier moves the archive"
        );
        assert_eq!(
            archiver(&servers, Some("db-0"), Some("db-1"), Some("db-1")).map(|s| s.pod.clone()),
            Ok("db-1".to_owned()),
            "unless a restore verification holds it"
        );
        servers[1].terminating = true;
        assert_eq!(pick(&servers, Some("db-1")), Ok("db-2".to_owned()));
        if let Some(r) = servers[2].replication.as_mut() {
            r.sql_error = Some("1062".to_owned());
        }
        assert!(pick(&servers, None).is_err(), "nobody replicates cleanly");
        assert!(
            pick(&servers, Some("db-0")).is_err(),
            "the primary of a cluster with replicas never archives"
        );
        assert_eq!(pick(&servers[..1], None), Ok("db-0".to_owned()), "alone");
        servers[0].read_only = true;
        assert!(pick(&servers, None).is_err(), "no writable primary");
    }

    fn target() -> ArchiveTarget {
        ArchiveTarget {
            bucket: "b".to_owned(),
            prefix: "shop/orders".to_owned(),
            max_behind_seconds: 30,
            credentials_secret: None,
        }
    }

    #[test]
    fn behind_is_zero_when_the_archive_holds_what_the_primary_has_else_the_time_since() {
        let now = Timestamp::from_second(1_000).expect("now");
        let gtid = |s| GtidSet::parse(Flavor::MariaDb, s).expect("gtid");
        let progress = ArchiveProgress {
            archived: Some("0-100-50".to_owned()),
            archived_through_us: Some(990_000_000),
            segments: 3,
            ..ArchiveProgress::default()
        };
        let Report {
            status, problem, ..
        } = report(
            &target(),
            Ok("db-2"),
            Some(&progress),
            Some(&gtid("0-100-50")),
            &[],
            Flavor::MariaDb,
            now,
        );
        assert_eq!(status.behind_seconds, Some(0));
        assert_eq!(status.archiver.as_deref(), Some("db-2"));
        assert_eq!(problem, None);

        let Report {
            status, problem, ..
        } = report(
            &target(),
            Ok("db-2"),
            Some(&progress),
            Some(&gtid("0-100-51")),
            &[],
            Flavor::MariaDb,
            now,
        );
        assert_eq!(status.behind_seconds, Some(10));
        assert_eq!(problem, None, "within 30 s");
        let Report { problem, .. } = report(
            &target(),
            Ok("db-2"),
            Some(&progress),
            Some(&gtid("0-100-51")),
            &[],
            Flavor::MariaDb,
            Timestamp::from_second(1_100).expect("later"),
        );
        assert!(
            problem.is_some_and(|p| p.message().contains("is 110 s behind")),
            "past the bound"
        );

        let failing = ArchiveProgress {
            error: Some("failed to upload: AccessDenied".to_owned()),
            ..progress
        };
        let Report {
            status, problem, ..
        } = report(
            &target(),
            Ok("db-2"),
            Some(&failing),
            None,
            &[],
            Flavor::MariaDb,
            now,
        );
        assert_eq!(status.error.as_deref(), failing.error.as_deref());
        assert!(problem.is_some_and(|p| p.message().contains("fails on db-2: failed to upload")));
        let Report {
            status, problem, ..
        } = report(
            &target(),
            Err("has no writable primary to follow"),
            None,
            None,
            &[],
            Flavor::MariaDb,
            now,
        );
        assert_eq!(status.archiver, None);
        assert!(problem.is_some());
    }

    #[test]
    fn an_archive_with_a_mysql_gap_is_current_when_it_holds_everything_after() {
        let uuid = "3e11fa47-71ca-11e1-9e33-c80aa9429562";
        let set = |s: &str| GtidSet::parse(Flavor::MySql84, &format!("{uuid}:{s}")).expect("set");
        let progress = ArchiveProgress {
            archived: Some(format!("{uuid}:1-477:614-619")),
            archived_through_us: Some(900_000_000),
            gap: Some(format!("{uuid}:478-613")),
            gap_before: Some(format!("{uuid}:1-613")),
            ..ArchiveProgress::default()
        };
        let report = report(
            &target(),
            Ok("db-2"),
            Some(&progress),
            Some(&set("1-619")),
            &[set("1-615")],
            Flavor::MySql84,
            Timestamp::from_second(1_000).expect("now"),
        );
        assert_eq!(report.status.behind_seconds, Some(0));
        assert_eq!(
            report.problem, None,
            "the gap is covered and the archive current"
        );
        assert_eq!(report.purge_holder, Some(set("1-619")));
    }

    #[test]
    fn a_gap_no_backup_holds_is_a_problem_and_stops_purges() {
        let now = Timestamp::from_second(1_000).expect("now");
        let gtid = |s| GtidSet::parse(Flavor::MariaDb, s).expect("gtid");
        let progress = ArchiveProgress {
            archived: Some("0-100-50".to_owned()),
            archived_through_us: Some(999_000_000),
            gap: Some("0-41..45".to_owned()),
            gap_before: Some("0-100-45".to_owned()),
            ..ArchiveProgress::default()
        };
        let primary = gtid("0-100-50");
        let report_with = |backups: &[GtidSet]| {
            report(
                &target(),
                Ok("db-2"),
                Some(&progress),
                Some(&primary),
                backups,
                Flavor::MariaDb,
                now,
            )
        };
        let open = report_with(&[gtid("0-100-40")]);
        assert_eq!(open.status.gap.as_deref(), Some("0-41..45"));
        assert_eq!(open.status.behind_seconds, Some(0), "current, gap apart");
        assert!(
            open.problem
                .is_some_and(|p| p.message().contains("no binary log on db-2")),
            "an open gap is a problem"
        );
        assert_eq!(
            open.purge_holder, None,
            "nothing is purged past an open gap"
        );

        let covered = report_with(&[gtid("0-100-40"), gtid("0-100-46")]);
        assert_eq!(covered.status.gap, None);
        assert_eq!(covered.problem, None);
        assert_eq!(covered.purge_holder, Some(gtid("0-100-50")));
    }
}
