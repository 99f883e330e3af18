//! What a restore verification does next, and whether a restore passed:
//! pure functions over the scratch cluster (read from its object) and the
//! tables as checked.

use ebisu_api::{
    MySQLCluster,
    agent::{TableCheck, TableSum},
};
use ebisu_mysql::{Flavor, GtidSet};
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use serde::{Deserialize, Serialize};

/// The scratch cluster as the verification sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scratch {
    /// It is being deleted.
    pub deleting: bool,
    /// When it was made.
    pub started: Timestamp,
    /// How far its restore got.
    pub state: ScratchState,
}

/// How far a scratch cluster's restore got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScratchState {
    /// Its restore was refused (or its spec), for this reason.
    Refused(String),
    /// Still restoring.
    Restoring,
    /// Its server answered after the restore.
    Restored,
    /// Its tables were checked: the verification's outcome.
    Checked(Outcome),
}

/// How a verification ended, kept on the scratch cluster until it is
/// recorded in the cluster's status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Outcome {
    /// Every check passed.
    pub passed: bool,
    /// What was checked, or what failed.
    pub message: String,
    /// How many tables were checked.
    pub tables: u32,
    /// When the checks ended.
    pub finished_at: Timestamp,
}

/// What the verification looks at.
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    /// The scratch cluster, if there is one.
    pub scratch: Option<&'a Scratch>,
    /// A scratch volume of a finished verification is still to be deleted.
    pub volume_left: bool,
    /// When the verification status records ended (its `finishedAt`): a
    /// scratch cluster's outcome is recorded once this is its end.
    pub recorded: Option<Timestamp>,
    /// The schedule fired since the last verification.
    pub due: bool,
    /// Now.
    pub now: Timestamp,
    /// How long a restore may take.
    pub timeout_seconds: u64,
}

/// The verification's next step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Nothing to do.
    Idle,
    /// The scratch cluster restores, or goes away: look again soon.
    Wait,
    /// Take the reference sums and make the scratch cluster.
    Start,
    /// The scratch cluster is restored: check its tables.
    Check,
    /// The checks ended: record the outcome in the cluster's status (the
    /// scratch cluster stays until status holds it).
    Finish(Outcome),
    /// The outcome is recorded: delete the scratch cluster.
    Remove,
    /// The verification failed before its checks, for this reason: write
    /// that outcome on the scratch cluster, to be recorded like any other.
    Fail(String),
    /// Delete the scratch volume of the finished verification.
    RemoveVolume,
}

/// The next step: a scratch cluster is followed to its end (a timeout is a
/// failure), its outcome written on it, then recorded in status, and only
/// then is it deleted and its volume removed, before a new one starts: an
/// outcome is never lost to a status write that failed.
pub fn next(input: Input<'_>) -> Step {
    match input.scratch {
        Some(scratch) if scratch.deleting => Step::Wait,
        Some(scratch) => {
            let taken = input.now.duration_since(scratch.started).as_secs();
            let late = taken > i64::try_from(input.timeout_seconds).unwrap_or(i64::MAX);
            match &scratch.state {
                ScratchState::Refused(why) => Step::Fail(format!("the restore was refused: {why}")),
                // Status keeps whole seconds.
                ScratchState::Checked(outcome)
                    if input.recorded.map(Timestamp::as_second)
                        == Some(outcome.finished_at.as_second()) =>
                {
                    Step::Remove
                }
                ScratchState::Checked(outcome) => Step::Finish(outcome.clone()),
                ScratchState::Restoring | ScratchState::Restored if late => Step::Fail(format!(
                    "the restore and its checks did not finish within {} s \
                     (spec.backup.verify.timeoutSeconds)",
                    input.timeout_seconds
                )),
                ScratchState::Restored => Step::Check,
                ScratchState::Restoring => Step::Wait,
            }
        }
        None if input.volume_left => Step::RemoveVolume,
        None if input.due => Step::Start,
        None => Step::Idle,
    }
}

/// The scratch cluster's annotation holding what its restore must match
/// (the held replica's [`TableCheck`], JSON).
pub const ANNOTATION_EXPECTED: &str = "ebisu.dev/verify-expected";
/// The scratch cluster's annotation holding the checks' [`Outcome`] (JSON).
pub const ANNOTATION_OUTCOME: &str = "ebisu.dev/verify-outcome";
/// The conditions of a scratch cluster that end its verification, as
/// `status` names them: its restore refused, its spec invalid.
pub const RESTORE_REFUSED: &str = "RestoreRefused";
pub const SPEC_VALID: &str = "SpecValid";

/// The scratch cluster as the decision sees it.
pub fn observe(scratch: &MySQLCluster, now: Timestamp) -> Scratch {
    let status = scratch.status.as_ref();
    let condition = |type_: &str, value: &str| {
        status
            .and_then(|s| s.conditions.iter().find(|c| c.type_ == type_))
            .filter(|c| c.status == value)
            .map(|c| c.message.clone())
    };
    let outcome = scratch
        .annotations()
        .get(ANNOTATION_OUTCOME)
        .and_then(|o| serde_json::from_str::<Outcome>(o).ok());
    let state = if let Some(outcome) = outcome {
        ScratchState::Checked(outcome)
    } else if let Some(why) = condition(RESTORE_REFUSED, "True") {
        ScratchState::Refused(why)
    } else if let Some(why) = condition(SPEC_VALID, "False") {
        ScratchState::Refused(why)
    } else if status
        .and_then(|s| s.restore.as_ref())
        .is_some_and(|r| r.done)
    {
        ScratchState::Restored
    } else {
        ScratchState::Restoring
    };
    Scratch {
        deleting: scratch.metadata.deletion_timestamp.is_some(),
        started: scratch
            .metadata
            .creation_timestamp
            .as_ref()
            .map_or(now, |t| t.0),
        state,
    }
}

/// What the scratch cluster's restore must match, as its annotation says.
pub fn expected(scratch: &MySQLCluster) -> Option<TableCheck> {
    scratch
        .annotations()
        .get(ANNOTATION_EXPECTED)
        .and_then(|e| serde_json::from_str(e).ok())
}

/// What the restored server must match: the set the replica was held at
/// and its sums (none without an archive: the backup's set alone).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expected<'a> {
    /// The GTID set the restore was to reach.
    pub gtid_set: &'a str,
    /// The replica's sums at that set.
    pub tables: &'a [TableSum],
}

/// Whether the restored server passed: it reached exactly the expected
/// set, every table it checked is clean, and every table summed on the
/// replica has the same sum restored. `Ok` says what was checked, `Err`
/// what failed.
pub fn verdict(
    flavor: Flavor,
    expected: &Expected<'_>,
    found: &TableCheck,
) -> Result<String, String> {
    let parse = |set: &str| {
        GtidSet::parse(flavor, set).map_err(|e| format!("failed to read the GTID set {set:?}: {e}"))
    };
    let want = parse(expected.gtid_set)?;
    let got = parse(&found.gtid_set)?;
    let same = want.contains(&got).unwrap_or(false) && got.contains(&want).unwrap_or(false);
    if !same {
        return Err(format!(
            "the restored server holds {} instead of {}",
            found.gtid_set, expected.gtid_set
        ));
    }
    let unclean: Vec<String> = found
        .tables
        .iter()
        .filter_map(|t| match t.check.as_deref() {
            Some("OK") => None,
            Some(why) => Some(format!("{}: {why}", t.table)),
            None => Some(format!("{}: not checked", t.table)),
        })
        .collect();
    if !unclean.is_empty() {
        return Err(format!("CHECK TABLE failed for {}", unclean.join(", ")));
    }
    let mut differing = Vec::new();
    for reference in expected.tables {
        let restored = found
            .tables
            .iter()
            .find(|t| t.table == reference.table)
            .and_then(|t| t.checksum);
        if restored != reference.checksum {
            differing.push(format!(
                "{} (replica {}, restored {})",
                reference.table,
                sum_text(reference.checksum),
                sum_text(restored)
            ));
        }
    }
    if !differing.is_empty() {
        return Err(format!(
            "tables differ from the replica's at the same GTID set: {}",
            differing.join(", ")
        ));
    }
    Ok(format!(
        "reached {}; {} tables checked clean, {} matched the replica's checksums",
        found.gtid_set,
        found.tables.len(),
        expected.tables.len()
    ))
}

fn sum_text(sum: Option<u64>) -> String {
    sum.map_or_else(|| "missing".to_owned(), |s| s.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ebisu_api::agent::TableName;

    const UUID: &str = "3e11fa47-71ca-11e1-9e33-c80aa9429562";

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn scratch(state: ScratchState) -> Scratch {
        Scratch {
            deleting: false,
            started: at("2026-12-05T00:00:00Z"),
            state,
        }
    }

    fn input<'a>(
        scratch: Option<&'a Scratch>,
        volume_left: bool,
        due: bool,
        now: &str,
    ) -> Input<'a> {
        Input {
            scratch,
            volume_left,
            recorded: None,
            due,
            now: at(now),
            timeout_seconds: 600,
        }
    }

    #[test]
    fn nothing_starts_until_the_schedule_fires_and_the_last_volume_is_gone() {
        let now = "2026-12-05T01:00:00Z";
        assert_eq!(next(input(None, false, false, now)), Step::Idle);
        assert_eq!(next(input(None, false, true, now)), Step::Start);
        assert_eq!(next(input(None, true, true, now)), Step::RemoveVolume);
        assert_eq!(next(input(None, true, false, now)), Step::RemoveVolume);
    }

    #[test]
    fn a_scratch_cluster_is_followed_to_its_end() {
        let soon = "2026-12-05T00:05:00Z";
        let late = "2026-12-05T00:10:01Z";
        let restoring = scratch(ScratchState::Restoring);
        assert_eq!(next(input(Some(&restoring), false, true, soon)), Step::Wait);
        assert!(matches!(
            next(input(Some(&restoring), false, false, late)),
            Step::Fail(why) if why.contains("600 s")
        ));
        let restored = scratch(ScratchState::Restored);
        assert_eq!(next(input(Some(&restored), true, true, soon)), Step::Check);
        assert!(
            matches!(
                next(input(Some(&restored), false, false, late)),
                Step::Fail(_)
            ),
            "checks that never end fail too"
        );
        let refused = scratch(ScratchState::Refused("ArchiveGap: 0-1-5".to_owned()));
        assert!(matches!(
            next(input(Some(&refused), false, false, soon)),
            Step::Fail(why) if why.contains("ArchiveGap")
        ));
        let outcome = Outcome {
            passed: true,
            message: "reached".to_owned(),
            tables: 1,
            finished_at: at(late),
        };
        let checked = scratch(ScratchState::Checked(outcome.clone()));
        assert_eq!(
            next(input(Some(&checked), false, true, late)),
            Step::Finish(outcome.clone()),
            "recorded first"
        );
        let earlier = Input {
            recorded: Some(at(soon)),
            ..input(Some(&checked), false, true, late)
        };
        assert_eq!(
            next(earlier),
            Step::Finish(outcome.clone()),
            "an earlier verification's record is not this one's"
        );
        let recorded = Input {
            recorded: Some(outcome.finished_at),
            ..input(Some(&checked), false, true, late)
        };
        assert_eq!(next(recorded), Step::Remove, "deleted once status holds it");
        let precise = Outcome {
            finished_at: at("2026-12-05T00:10:01.734Z"),
            ..outcome.clone()
        };
        let checked = scratch(ScratchState::Checked(precise));
        let in_status = Input {
            recorded: Some(at("2026-12-05T00:10:01Z")),
            ..input(Some(&checked), false, true, late)
        };
        assert_eq!(
            next(in_status),
            Step::Remove,
            "status keeps whole seconds: still the same outcome"
        );
        let going = Scratch {
            deleting: true,
            ..restored
        };
        assert_eq!(next(input(Some(&going), true, true, late)), Step::Wait);
    }

    fn sum(name: &str, checksum: Option<u64>, check: Option<&str>) -> TableSum {
        TableSum {
            table: TableName {
                schema: "app".to_owned(),
                name: name.to_owned(),
            },
            checksum,
            check: check.map(str::to_owned),
        }
    }

    fn found(set: &str, tables: Vec<TableSum>) -> TableCheck {
        TableCheck {
            gtid_set: set.to_owned(),
            tables,
        }
    }

    #[test]
    fn a_restore_passes_only_at_exactly_the_set_with_clean_matching_tables() {
        let set = format!("{UUID}:1-100");
        let replica = [sum("orders", Some(7), None), sum("items", Some(9), None)];
        let expected = Expected {
            gtid_set: &set,
            tables: &replica,
        };
        let clean = |orders: Option<u64>| {
            vec![
                sum("items", Some(9), Some("OK")),
                sum("orders", orders, Some("OK")),
            ]
        };
        let passed = verdict(Flavor::MySql84, &expected, &found(&set, clean(Some(7))));
        assert!(passed.is_ok_and(|m| m.contains("2 tables checked clean, 2 matched")));

        let short = verdict(
            Flavor::MySql84,
            &expected,
            &found(&format!("{UUID}:1-99"), clean(Some(7))),
        );
        assert!(short.is_err_and(|m| m.contains(":1-99 instead of")));
        let beyond = verdict(
            Flavor::MySql84,
            &expected,
            &found(&format!("{UUID}:1-101"), clean(Some(7))),
        );
        assert!(beyond.is_err());

        let differs = verdict(Flavor::MySql84, &expected, &found(&set, clean(Some(8))));
        assert!(differs.is_err_and(|m| m.contains("app.orders (replica 7, restored 8)")));
        let missing = verdict(Flavor::MySql84, &expected, &found(&set, clean(None)));
        assert!(missing.is_err_and(|m| m.contains("restored missing")));

        let corrupt = vec![
            sum("items", Some(9), Some("error: Corrupt")),
            sum("orders", Some(7), Some("OK")),
        ];
        let unclean = verdict(Flavor::MySql84, &expected, &found(&set, corrupt));
        assert!(unclean.is_err_and(|m| m.contains("app.items: error: Corrupt")));
    }

    #[test]
    fn without_an_archive_the_backup_s_set_and_clean_tables_pass() {
        let set = "0-100-42,1-100-7";
        let expected = Expected {
            gtid_set: set,
            tables: &[],
        };
        let restored = found("1-100-7,0-100-42", vec![sum("orders", Some(1), Some("OK"))]);
        assert!(
            verdict(Flavor::MariaDb, &expected, &restored)
                .is_ok_and(|m| m.contains("1 tables checked clean, 0 matched"))
        );
        let behind = found("0-100-41,1-100-7", vec![]);
        assert!(verdict(Flavor::MariaDb, &expected, &behind).is_err());
    }
}
