//! How a new replica gets its data (`spec.clone.method`): which instances
//! wait for a decision, which backup's snapshot one starts from or why it
//! streams, and the zone its volume is made in. Pure: tested without EC2,
//! servers or an API server.

use std::collections::{BTreeMap, BTreeSet};

use ebisu_api::{CloneMethod, SeedMethod, SeedStatus, names};
use k8s_openapi::jiff::{SignedDuration, Timestamp};

/// `Auto` takes a snapshot only for at least this much data: below it a
/// stream copy from a peer (hundreds of MiB/s) finishes before EBS has
/// made and attached a volume from a snapshot.
pub const AUTO_MIN_BYTES: u64 = 20 << 30;

/// `Auto` takes a snapshot only from a backup younger than this: an older
/// one leaves the replica more binary logs to replay than a stream takes.
pub const AUTO_MAX_AGE: SignedDuration = SignedDuration::from_hours(24);

/// A completed backup of the cluster a replica could start from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// The MySQLBackup.
    pub name: String,
    /// Its snapshot.
    pub snapshot_id: String,
    /// The GTID set the snapshot holds.
    pub gtid_set: String,
    /// When it completed.
    pub completed: Timestamp,
    /// The primary has every transaction of the set and still has the
    /// binary logs of everything after it: a replica on the snapshot can
    /// catch up by GTID.
    pub primary_serves: bool,
}

/// What a replica starts from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Choice {
    /// A volume made from this backup's snapshot.
    Snapshot(Candidate),
    /// A copy streamed from a peer, for this reason.
    Stream(String),
}

/// The instances (ordinals) that have no claim yet and are not given a
/// volume by the spec: the ones a seed method applies to. Ordinal 0 is the
/// first server (bootstrapped or restored), never seeded from a snapshot.
pub fn pending(cluster: &str, replicas: i32, given: usize, claims: &BTreeSet<String>) -> Vec<u32> {
    (1..u32::try_from(replicas.max(0)).unwrap_or(0))
        .filter(|o| usize::try_from(*o).is_ok_and(|o| o >= given))
        .filter(|o| !claims.contains(&names::data_claim(cluster, *o)))
        .collect()
}

/// Which backup a new replica starts from, or why it streams.
/// `candidates` in any order; `data_bytes` is the primary's data, when it
/// could be read.
pub fn choose(
    method: CloneMethod,
    candidates: &[Candidate],
    data_bytes: Option<u64>,
    now: Timestamp,
) -> Choice {
    if method == CloneMethod::Stream {
        return Choice::Stream("spec.clone.method is Stream".to_owned());
    }
    let mut newest_first: Vec<&Candidate> = candidates.iter().collect();
    newest_first.sort_by_key(|c| std::cmp::Reverse(c.completed));
    let Some(newest) = newest_first.first() else {
        return Choice::Stream("no completed MySQLBackup of this cluster to start from".to_owned());
    };
    let Some(usable) = newest_first.iter().find(|c| c.primary_serves) else {
        return Choice::Stream(format!(
            "the primary no longer has the binary logs after the GTID set of any backup (the newest, {}, holds {}): a replica on its snapshot could not catch up",
            newest.name, newest.gtid_set
        ));
    };
    if method == CloneMethod::Auto {
        let Some(bytes) = data_bytes else {
            return Choice::Stream("Auto: the primary's data size could not be read".to_owned());
        };
        if bytes < AUTO_MIN_BYTES {
            return Choice::Stream(format!(
                "Auto: {} MiB of data streams sooner than a volume is made from a snapshot (a snapshot from {} GiB)",
                bytes >> 20,
                AUTO_MIN_BYTES >> 30
            ));
        }
        let age = now.duration_since(usable.completed);
        if age > AUTO_MAX_AGE {
            return Choice::Stream(format!(
                "Auto: the newest usable backup, {}, is {} h old (a snapshot up to {} h old)",
                usable.name,
                age.as_hours(),
                AUTO_MAX_AGE.as_hours()
            ));
        }
    }
    Choice::Snapshot((*usable).clone())
}

/// Whether a MariaDB primary can serve a replica that starts at
/// `snapshot` (its `gtid_slave_pos`): in every replication domain the
/// primary's binary logs start (`binlog_start`, the GTID position at the
/// start of its oldest binary log) at or before the snapshot's position,
/// and the primary reached it (`current`, its `gtid_binlog_pos`). Positions
/// are `domain-server-seq` lists; one that cannot be read serves nothing.
pub fn mariadb_serves(binlog_start: &str, current: &str, snapshot: &str) -> bool {
    let (Some(start), Some(current), Some(snapshot)) = (
        mariadb_position(binlog_start),
        mariadb_position(current),
        mariadb_position(snapshot),
    ) else {
        return false;
    };
    let seq = |pos: &BTreeMap<u32, u64>, domain| pos.get(domain).copied().unwrap_or(0);
    start
        .iter()
        .all(|(domain, first)| seq(&snapshot, domain) >= *first)
        && snapshot
            .iter()
            .all(|(domain, at)| seq(&current, domain) >= *at)
}

/// A MariaDB GTID position by domain: sequence number of the last event.
fn mariadb_position(position: &str) -> Option<BTreeMap<u32, u64>> {
    position
        .split(',')
        .map(str::trim)
        .filter(|g| !g.is_empty())
        .map(|gtid| {
            let mut parts = gtid.split('-');
            let domain = parts.next()?.parse().ok()?;
            let _server: u64 = parts.next()?.parse().ok()?;
            let seq = parts.next()?.parse().ok()?;
            parts.next().is_none().then_some((domain, seq))
        })
        .collect()
}

/// The zone for a new replica's volume: among zones with nodes, the one
/// with the fewest instances (`used`, one entry per instance), ties to the
/// first by name.
pub fn zone(nodes: &BTreeSet<String>, used: &[&str]) -> Option<String> {
    nodes
        .iter()
        .min_by_key(|z| used.iter().filter(|u| *u == z).count())
        .cloned()
}

/// The status entry of a decision for `pod`.
pub fn entry(pod: &str, choice: &Choice, volume: Option<&str>) -> SeedStatus {
    match choice {
        Choice::Stream(why) => SeedStatus {
            pod: pod.to_owned(),
            method: SeedMethod::Stream,
            reason: why.clone(),
            ..SeedStatus::default()
        },
        Choice::Snapshot(c) => SeedStatus {
            pod: pod.to_owned(),
            method: SeedMethod::Snapshot,
            reason: format!(
                "starts on a volume made from MySQLBackup {} and catches up from the primary",
                c.name
            ),
            backup: Some(c.name.clone()),
            snapshot_id: Some(c.snapshot_id.clone()),
            volume_id: volume.map(str::to_owned),
            gtid_set: Some(c.gtid_set.clone()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Timestamp {
        s.parse().expect("timestamp")
    }

    fn candidate(name: &str, completed: &str, serves: bool) -> Candidate {
        Candidate {
            name: name.to_owned(),
            snapshot_id: format!("snap-{name}"),
            gtid_set: "0-100-5".to_owned(),
            completed: at(completed),
            primary_serves: serves,
        }
    }

    const NOW: &str = "2026-12-04T12:00:00Z";
    const BIG: Option<u64> = Some(AUTO_MIN_BYTES);

    #[test]
    fn only_missing_claims_beyond_the_first_and_the_given_volumes_are_pending() {
        let claims: BTreeSet<String> = ["data-db-0", "data-db-2"].map(str::to_owned).into();
        assert_eq!(pending("db", 5, 0, &claims), vec![1, 3, 4]);
        assert_eq!(pending("db", 5, 4, &claims), vec![4], "0..4 are given");
        assert!(pending("db", 1, 0, &BTreeSet::new()).is_empty(), "never 0");
        assert!(pending("db", 0, 0, &BTreeSet::new()).is_empty());
    }

    #[test]
    fn stream_never_looks_at_backups() {
        let c = [candidate("a", "2026-12-04T11:00:00Z", true)];
        assert!(matches!(
            choose(CloneMethod::Stream, &c, BIG, at(NOW)),
            Choice::Stream(why) if why.contains("Stream")
        ));
    }

    #[test]
    fn without_a_backup_or_the_binary_logs_after_it_a_replica_streams() {
        for method in [CloneMethod::Snapshot, CloneMethod::Auto] {
            assert!(matches!(
                choose(method, &[], BIG, at(NOW)),
                Choice::Stream(why) if why.contains("no completed MySQLBackup")
            ));
            let purged = [
                candidate("old", "2026-12-04T10:00:00Z", false),
                candidate("new", "2026-12-04T11:00:00Z", false),
            ];
            assert!(matches!(
                choose(method, &purged, BIG, at(NOW)),
                Choice::Stream(why) if why.contains("binary logs") && why.contains("new")
            ));
        }
    }

    #[test]
    fn the_newest_backup_the_primary_can_serve_is_chosen() {
        let c = [
            candidate("older", "2026-12-04T09:00:00Z", true),
            candidate("newest", "2026-12-04T11:00:00Z", false),
            candidate("middle", "2026-12-04T10:00:00Z", true),
        ];
        for method in [CloneMethod::Snapshot, CloneMethod::Auto] {
            assert!(matches!(
                choose(method, &c, BIG, at(NOW)),
                Choice::Snapshot(c) if c.name == "middle"
            ));
        }
    }

    #[test]
    fn auto_streams_small_data_unknown_size_and_old_backups_where_snapshot_does_not() {
        let fresh = [candidate("fresh", "2026-12-04T11:00:00Z", true)];
        let small = Some(AUTO_MIN_BYTES - 1);
        assert!(matches!(
            choose(CloneMethod::Auto, &fresh, small, at(NOW)),
            Choice::Stream(why) if why.contains("Auto") && why.contains("MiB")
        ));
        assert!(matches!(
            choose(CloneMethod::Auto, &fresh, None, at(NOW)),
            Choice::Stream(why) if why.contains("size")
        ));
        let stale = [candidate("stale", "2026-12-03T11:59:00Z", true)];
        assert!(matches!(
            choose(CloneMethod::Auto, &stale, BIG, at(NOW)),
            Choice::Stream(why) if why.contains("24 h old") && why.contains("stale")
        ));
        for (c, bytes) in [(&fresh, small), (&fresh, None), (&stale, BIG)] {
            assert!(matches!(
                choose(CloneMethod::Snapshot, c, bytes, at(NOW)),
                Choice::Snapshot(_)
            ));
        }
        assert!(matches!(
            choose(CloneMethod::Auto, &fresh, BIG, at(NOW)),
            Choice::Snapshot(c) if c.name == "fresh"
        ));
    }

    #[test]
    fn mariadb_serves_only_from_inside_its_binary_logs_and_history() {
        // Logs start after 0-1-100: a snapshot at 0-1-100 or later catches up.
        assert!(mariadb_serves("0-1-100", "0-1-500", "0-1-100"));
        assert!(mariadb_serves("0-1-100", "0-1-500", "0-1-300"));
        assert!(!mariadb_serves("0-1-100", "0-1-500", "0-1-99"), "purged");
        assert!(
            !mariadb_serves("0-1-100", "0-1-500", "0-1-501"),
            "ahead of the primary"
        );
        // A domain the snapshot never saw must start at its beginning.
        assert!(!mariadb_serves("0-1-100,1-2-7", "0-1-500,1-2-9", "0-1-200"));
        assert!(mariadb_serves("0-1-100", "0-1-500,1-2-9", "0-1-200"));
        // Logs from the start (empty start position) serve everything held.
        assert!(mariadb_serves("", "0-1-500", "0-1-200"));
        assert!(!mariadb_serves("garbage", "0-1-500", "0-1-200"));
        assert!(!mariadb_serves("0-1-100", "0-1-500", "0-1"));
    }

    #[test]
    fn the_volume_goes_to_the_zone_with_nodes_and_fewest_instances() {
        let nodes: BTreeSet<String> = ["a", "b", "c"].map(str::to_owned).into();
        assert_eq!(zone(&nodes, &["a", "b"]).as_deref(), Some("c"));
        assert_eq!(zone(&nodes, &["a", "b", "c", "a"]).as_deref(), Some("b"));
        assert_eq!(zone(&nodes, &["x"]).as_deref(), Some("a"));
        assert_eq!(zone(&BTreeSet::new(), &[]), None);
    }

    #[test]
    fn entries_say_the_method_and_what_a_snapshot_seed_starts_from() {
        let stream = entry("db-3", &Choice::Stream("why".to_owned()), None);
        assert_eq!(
            (stream.method, stream.reason.as_str(), stream.backup),
            (SeedMethod::Stream, "why", None)
        );
        let c = candidate("b", NOW, true);
        let snap = entry("db-3", &Choice::Snapshot(c), Some("vol-1"));
        assert_eq!(snap.method, SeedMethod::Snapshot);
        assert_eq!(snap.snapshot_id.as_deref(), Some("snap-b"));
        assert_eq!(snap.volume_id.as_deref(), Some("vol-1"));
        assert_eq!(snap.gtid_set.as_deref(), Some("0-100-5"));
    }
}
