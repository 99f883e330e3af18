use super::*;
use crate::archive::{file_key, segment_keys};
use crate::gtid::MariaDbGtid;

const UUID: &str = "3e11fa47-71ca-11e1-9e33-c80aa9429562";
const SECOND: i64 = 1_000_000;

/// A MariaDB segment of server `server` holding `first..=last` of domain 0,
/// committed one second apart from `at` seconds.
fn mariadb(server: u32, created: u32, start: u64, first: u64, last: u64, at: i64) -> Listed {
    segment(
        server,
        created,
        start,
        (last >= first).then(|| {
            (
                format!("0-{server}-{last}"),
                Some(format!("0-{server}-{first}")),
            )
        }),
        last + 1 - first.min(last + 1),
        at,
    )
}

/// A MySQL segment holding `UUID:first-last`.
fn mysql(created: u32, start: u64, first: u64, last: u64, at: i64) -> Listed {
    segment(
        1,
        created,
        start,
        (last >= first).then(|| (format!("{UUID}:{first}-{last}"), None)),
        last + 1 - first.min(last + 1),
        at,
    )
}

fn segment(
    server: u32,
    created: u32,
    start: u64,
    gtids: Option<(String, Option<String>)>,
    transactions: u64,
    at: i64,
) -> Listed {
    let file = file_key(server, created, "bin.000001");
    let (_, key) = segment_keys("p", &file, start);
    let (gtids, firsts) = gtids.map_or((None, None), |(g, f)| (Some(g), f));
    let last = i64::try_from(transactions).unwrap_or(0).max(1) - 1;
    Listed {
        key,
        manifest: Manifest {
            held: None,
            held_at_us: None,
            server_id: server,
            file: "bin.000001".to_owned(),
            created,
            start,
            end: start + 100,
            preceding: None,
            gtids,
            firsts,
            transactions,
            first_us: (transactions > 0).then_some(at * SECOND),
            last_us: (transactions > 0).then_some((at + last) * SECOND),
            sha256: format!("sha-{server}-{start}"),
        },
    }
}

fn maria(text: &str) -> GtidSet {
    GtidSet::parse(Flavor::MariaDb, text).unwrap()
}

fn my(text: &str) -> GtidSet {
    GtidSet::parse(Flavor::MySql84, text).unwrap()
}

/// An archive of one server's file: a head with transactions 1-10 (at
/// 100..109 s), then 11-20 (at 110..119 s) and 21-30 (at 120..129 s).
fn mariadb_archive() -> Vec<Listed> {
    vec![
        mariadb(100, 7, 0, 1, 10, 100),
        mariadb(100, 7, 1000, 11, 20, 110),
        mariadb(100, 7, 2000, 21, 30, 120),
    ]
}

fn starts(plan: &Plan) -> Vec<(String, Vec<u64>)> {
    plan.files
        .iter()
        .map(|f| {
            (
                f.file_key.clone(),
                f.segments.iter().map(|s| s.start).collect(),
            )
        })
        .collect()
}

#[test]
fn a_gtid_target_replays_the_segments_after_the_backup_with_their_file_head() {
    let plan = plan(
        Flavor::MariaDb,
        &maria("0-100-12"),
        &mariadb_archive(),
        &Target::Gtids(maria("0-100-25")),
    )
    .unwrap();
    assert_eq!(
        starts(&plan),
        vec![("100-7-bin.000001".to_owned(), vec![0, 1000, 2000])],
        "the head segment comes first, though the backup holds its transactions"
    );
    assert_eq!(plan.at_least, plan.at_most);
    assert_eq!(plan.at_least.to_string(), "domain 0:1-25");
    assert_eq!(
        plan.files[0].segments[1].data_key,
        "p/binlog/100-7-bin.000001/00000000000000001000"
    );
    assert_eq!(plan.files[0].segments[1].sha256, "sha-100-1000");
    assert!(plan.reached(&maria("0-100-25")).is_ok());
    let short = plan.reached(&maria("0-100-24")).unwrap_err();
    assert!(short.contains("domain 0:25"), "{short}");
    let long = plan.reached(&maria("0-100-26")).unwrap_err();
    assert!(long.contains("past the target: domain 0:26"), "{long}");
}

#[test]
fn a_target_the_backup_is_past_is_refused() {
    let refused = plan(
        Flavor::MariaDb,
        &maria("0-100-12"),
        &mariadb_archive(),
        &Target::Gtids(maria("0-100-5")),
    )
    .unwrap_err();
    assert_eq!(refused.reason(), "TargetBeforeBackup");
    assert!(refused.to_string().contains("domain 0:6-12"), "{refused}");
}

#[test]
fn a_target_past_the_archive_is_refused_for_either_kind() {
    let archive = mariadb_archive();
    let by_gtid = plan(
        Flavor::MariaDb,
        &maria("0-100-12"),
        &archive,
        &Target::Gtids(maria("0-100-31")),
    )
    .unwrap_err();
    assert_eq!(by_gtid.reason(), "TargetPastArchive");
    assert!(by_gtid.to_string().contains("domain 0:31"), "{by_gtid}");
    let by_time = plan(
        Flavor::MariaDb,
        &maria("0-100-12"),
        &archive,
        &Target::Time(129 * SECOND + 1),
    )
    .unwrap_err();
    assert_eq!(by_time.reason(), "TargetPastArchive");
    assert!(
        by_time.to_string().contains("1970-01-01T00:02:09Z"),
        "the archive's last commit: {by_time}"
    );
    assert!(
        plan(
            Flavor::MariaDb,
            &maria("0-100-12"),
            &archive,
            &Target::Time(129 * SECOND)
        )
        .is_ok(),
        "the last transaction's own time is in the archive"
    );
    let empty = plan(Flavor::MariaDb, &maria("0-100-12"), &[], &Target::Time(0)).unwrap_err();
    assert_eq!(
        empty,
        Refusal::PastEnd {
            last: None,
            missing: None
        }
    );
}

#[test]
fn a_removed_segment_is_a_gap_for_a_target_past_it_only() {
    let mut archive = mariadb_archive();
    archive.remove(1);
    for target in [Target::Gtids(maria("0-100-25")), Target::Time(121 * SECOND)] {
        let refused = plan(Flavor::MariaDb, &maria("0-100-5"), &archive, &target).unwrap_err();
        assert_eq!(refused.reason(), "ArchiveGap", "{target}");
        assert!(refused.to_string().contains("domain 0:11-20"), "{refused}");
    }
    // The missing segment's transactions could be at or before the time:
    // nobody can tell, so the target is refused...
    let refused = plan(
        Flavor::MariaDb,
        &maria("0-100-5"),
        &archive,
        &Target::Time(112 * SECOND),
    )
    .unwrap_err();
    assert_eq!(refused.reason(), "ArchiveGap");
    // ...but a point before it is reached.
    let before = plan(
        Flavor::MariaDb,
        &maria("0-100-5"),
        &archive,
        &Target::Gtids(maria("0-100-9")),
    )
    .unwrap();
    assert_eq!(before.at_least.to_string(), "domain 0:1-9");
    // A backup past the gap needs none of it.
    let after = plan(
        Flavor::MariaDb,
        &maria("0-100-20"),
        &archive,
        &Target::Time(125 * SECOND),
    )
    .unwrap();
    assert_eq!(
        starts(&after),
        vec![("100-7-bin.000001".to_owned(), vec![0, 2000])]
    );
}

#[test]
fn a_time_target_cuts_inside_the_segment_it_falls_in() {
    let plan = plan(
        Flavor::MariaDb,
        &maria("0-100-12"),
        &mariadb_archive(),
        &Target::Time(115 * SECOND),
    )
    .unwrap();
    assert_eq!(
        starts(&plan),
        vec![("100-7-bin.000001".to_owned(), vec![0, 1000])],
        "the segment begun after the target is not read"
    );
    assert_eq!(plan.at_least.to_string(), "domain 0:1-12");
    assert_eq!(plan.at_most.to_string(), "domain 0:1-20");
    assert!(plan.reached(&maria("0-100-16")).is_ok());
    assert!(plan.reached(&maria("0-100-21")).is_err());
}

#[test]
fn the_archive_follows_the_primary_across_files_and_servers() {
    // orders-1 archived 1-10, then orders-2 (after a failover) 11-20 in a
    // file of its own, begun before: it held 1-10 too.
    let archive = vec![
        mariadb(101, 7, 0, 1, 10, 100),
        mariadb(102, 5, 0, 1, 0, 0),
        mariadb(102, 5, 3000, 11, 20, 110),
    ];
    let plan = plan(
        Flavor::MariaDb,
        &maria("0-100-3"),
        &archive,
        &Target::Gtids(maria("0-102-20")),
    )
    .unwrap();
    assert_eq!(
        starts(&plan),
        vec![
            ("101-7-bin.000001".to_owned(), vec![0]),
            ("102-5-bin.000001".to_owned(), vec![0, 3000]),
        ]
    );
}

#[test]
fn a_file_without_its_head_cannot_be_replayed() {
    let mut archive = mariadb_archive();
    archive.remove(0);
    let refused = plan(
        Flavor::MariaDb,
        &maria("0-100-10"),
        &archive,
        &Target::Gtids(maria("0-100-15")),
    )
    .unwrap_err();
    assert_eq!(refused.reason(), "ArchiveUnreadable");
    assert!(
        refused
            .to_string()
            .contains("the head of file 100-7-bin.000001"),
        "{refused}"
    );
}

#[test]
fn two_histories_under_one_prefix_are_refused() {
    let mut archive = mariadb_archive();
    // A restored cluster (server 100 again, a file begun later) wrote
    // 21-25 of its own history under the same prefix.
    archive.push(mariadb(100, 9, 0, 21, 25, 200));
    let refused = plan(
        Flavor::MariaDb,
        &maria("0-100-12"),
        &archive,
        &Target::Time(115 * SECOND),
    )
    .unwrap_err();
    assert_eq!(refused.reason(), "ArchiveForked");
    assert!(refused.to_string().contains("domain 0:21-25"), "{refused}");
}

#[test]
fn mysql_sets_are_planned_exactly() {
    let archive = vec![
        mysql(7, 0, 1, 10, 100),
        mysql(7, 1000, 11, 20, 110),
        mysql(7, 2000, 21, 30, 120),
    ];
    let plan_to = |target: &str| {
        plan(
            Flavor::MySql84,
            &my(&format!("{UUID}:1-12")),
            &archive,
            &Target::Gtids(my(target)),
        )
    };
    let plan = plan_to(&format!("{UUID}:1-22")).unwrap();
    assert_eq!(plan.at_least.to_string(), format!("{UUID}:1-22"));
    assert_eq!(
        starts(&plan),
        vec![("1-7-bin.000001".to_owned(), vec![0, 1000, 2000])]
    );
    let refused = plan_to(&format!("{UUID}:1-40")).unwrap_err();
    assert_eq!(refused.reason(), "TargetPastArchive");
    assert!(
        refused.to_string().contains(&format!("{UUID}:31-40")),
        "{refused}"
    );
    let other = "4e11fa47-71ca-11e1-9e33-c80aa9429562";
    let refused = plan_to(&format!("{UUID}:1-12,{other}:1")).unwrap_err();
    assert_eq!(refused.reason(), "TargetPastArchive");
}

#[test]
fn a_mariadb_segment_of_several_domains_names_its_first_transactions() {
    let mut listed = mariadb(100, 7, 0, 1, 10, 100);
    listed.manifest.gtids = Some("0-100-10,1-100-4".to_owned());
    listed.manifest.firsts = None;
    listed.manifest.transactions = 14;
    let refused = plan(
        Flavor::MariaDb,
        &maria(""),
        &[listed.clone()],
        &Target::Time(100 * SECOND),
    )
    .unwrap_err();
    assert_eq!(refused.reason(), "ArchiveUnreadable");
    listed.manifest.firsts = Some("0-100-1,1-100-1".to_owned());
    let plan = plan(
        Flavor::MariaDb,
        &maria(""),
        &[listed],
        &Target::Time(105 * SECOND),
    )
    .unwrap();
    assert_eq!(plan.at_most.to_string(), "domain 0:1-10, domain 1:1-4");
}

#[test]
fn each_transaction_is_applied_skipped_or_ends_the_replay() {
    let transaction = |seq_no: u64, at: i64| Transaction {
        gtid: binlog::Gtid::MariaDb(MariaDbGtid {
            domain_id: 0,
            server_id: 100,
            seq_no,
        }),
        committed_us: at * SECOND,
        offset: 4,
    };
    let held = maria("0-100-10");
    let by_time = Target::Time(120 * SECOND);
    assert_eq!(wanted(&by_time, &held, &transaction(11, 120)), Want::Apply);
    assert_eq!(wanted(&by_time, &held, &transaction(9, 100)), Want::Skip);
    assert_eq!(wanted(&by_time, &held, &transaction(12, 121)), Want::Stop);
    let by_gtid = Target::Gtids(maria("0-100-12"));
    assert_eq!(wanted(&by_gtid, &held, &transaction(12, 500)), Want::Apply);
    assert_eq!(wanted(&by_gtid, &held, &transaction(13, 1)), Want::Skip);
}

#[test]
fn a_segment_missing_at_the_end_of_a_primary_s_range_is_a_gap_for_a_time_target() {
    // UUID was the primary through 1-20 (two segments), then another
    // server took over: its first segment (120..124 s) was uploaded by a
    // round that read, at 125 s, everything its server held.
    let other = "4e11fa47-71ca-11e1-9e33-c80aa9429562";
    let mut after_failover = segment(2, 9, 0, Some((format!("{other}:1-5"), None)), 5, 120);
    after_failover.manifest.held = Some(format!("{UUID}:1-20,{other}:1-5"));
    after_failover.manifest.held_at_us = Some(125 * SECOND);
    let archive = vec![
        mysql(7, 0, 1, 10, 100),
        mysql(7, 1000, 11, 20, 110),
        after_failover,
        segment(2, 9, 1000, Some((format!("{other}:6-10"), None)), 5, 126),
    ];
    let backup = my(&format!("{UUID}:1-5"));
    let to = |archive: &[Listed], secs: i64| {
        plan(
            Flavor::MySql84,
            &backup,
            archive,
            &Target::Time(secs * SECOND),
        )
    };
    let reached = to(&archive, 127).unwrap();
    assert_eq!(
        reached.at_least.to_string(),
        format!("{UUID}:1-20, {other}:1-5")
    );

    // Without the old primary's last segment no hole shows (nothing
    // archived after it is of its server), but what the new archiver
    // held by the target names it.
    let mut removed = archive.clone();
    removed.remove(1);
    let refused = to(&removed, 127).unwrap_err();
    assert_eq!(refused.reason(), "ArchiveGap");
    assert!(
        refused.to_string().contains(&format!("{UUID}:11-20")),
        "{refused}"
    );
    // A target before the round that saw it is not refused for it.
    let before = to(&removed, 109).unwrap();
    assert_eq!(before.at_least.to_string(), format!("{UUID}:1-10"));
}
