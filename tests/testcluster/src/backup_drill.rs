//! The backup and restore drill, the same on both flavors: a MySQLBackup
//! taken under a writer, more writes and a dropped table, the backup
//! restored into a new cluster that holds exactly what was acknowledged
//! before it (and nothing acknowledged after), with the same users and
//! passwords and a second instance seeded from the restored one; then a
//! restore from a deleted snapshot refused with nothing created; then a
//! backup schedule whose retention deletes the oldest backup and its
//! snapshot; then replicas seeded from a snapshot, and by a stream once
//! the primary purged the binary logs a snapshot needs.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use crate::{
    Scenario, ebisu,
    scenario::{APP_PASSWORD, APP_USER},
};

impl Scenario {
    /// Asks for a MySQLBackup `name` of the cluster.
    pub fn ask_backup(&self, name: &str) {
        self.apply_yaml(
            name,
            &format!(
                "apiVersion: ebisu.dev/v1alpha1\nkind: MySQLBackup\nmetadata: {{name: {name}}}\nspec: {{cluster: {}}}\n",
                self.cluster
            ),
        );
    }

    /// Runs the drill on `table` (`db.table`, one `id` column); leaves the
    /// table empty and the restored clusters deleted.
    pub fn a_backup_restores_exactly_what_it_held(&mut self, table: &str) {
        let backup = format!("{}-first", self.cluster);
        let primary = self.wait_settled(3);
        let load = self.load(table);
        std::thread::sleep(Duration::from_secs(2));
        let asked = Instant::now();
        self.ask_backup(&backup);
        let path = format!("mysqlbackup/{backup}");
        self.wait(
            "the backup's snapshot started",
            Duration::from_secs(120),
            |s| {
                matches!(
                    s.get(&path, "{.status.phase}").as_str(),
                    "Snapshotting" | "Completed"
                )
            },
        );
        let taken = Instant::now();
        self.wait("the backup completed", Duration::from_secs(120), |s| {
            s.get(&path, "{.status.phase}") == "Completed"
        });
        std::thread::sleep(Duration::from_secs(1));
        let (writes, _) = self.verify("a backup under a writer", table, load, None);
        let source = self.get(&path, "{.status.sourcePod}");
        assert_ne!(source, primary, "a replica is backed up, not the primary");
        let gtid = self.get(&path, "{.status.gtidSet}");
        assert!(!gtid.is_empty(), "the backup names its GTID set");
        assert!(
            !self.get(&path, "{.status.snapshotId}").is_empty()
                && !self.get(&path, "{.status.binlog.file}").is_empty(),
            "the backup names its snapshot and binary log position"
        );
        let snapshot = self.get(&path, "{.status.snapshotId}");
        let tags = self.block_on(
            crate::ec2::client()
                .describe_snapshots()
                .snapshot_ids(&snapshot)
                .send(),
        );
        let tags: Vec<(String, String)> = tags
            .unwrap_or_else(|e| panic!("describe {snapshot}: {e}"))
            .snapshots()
            .iter()
            .flat_map(|s| s.tags())
            .map(|t| {
                (
                    t.key().unwrap_or_default().to_owned(),
                    t.value().unwrap_or_default().to_owned(),
                )
            })
            .collect();
        assert!(
            tags.contains(&("ebisu.dev/backup".to_owned(), backup.clone()))
                && tags.contains(&("ebisu.dev/instance".to_owned(), source.clone())),
            "the snapshot is tagged: {tags:?}"
        );
        // The mistake after the backup.
        let (db, _) = table.split_once('.').unwrap_or(("", table));
        self.root(&primary, &format!("DROP TABLE {table}"));

        // Restored into a new cluster of two instances.
        let restored = format!("{}-restored", self.cluster);
        let spec = |name: &str| {
            format!(
                "apiVersion: ebisu.dev/v1alpha1\nkind: MySQLCluster\nmetadata: {{name: {name}}}\nspec:\n  replicas: 2\n  flavor: {flavor}\n{image}  storage: {{size: {size}, ebs: {{type: gp3}}}}\n  bootstrap: {{fromBackup: {{name: {backup}}}}}\n",
                flavor = self.myc("{.spec.flavor}"),
                image = match self.myc("{.spec.image}") {
                    image if image.is_empty() => String::new(),
                    image => format!("  image: {image}\n"),
                },
                size = self.myc("{.spec.storage.size}"),
            )
        };
        self.apply_yaml("restored", &spec(&restored));
        let started = Instant::now();
        let restored_primary =
            ebisu::wait_running(&self.k, &self.ns, &restored, 2, Duration::from_secs(400))
                .unwrap_or_else(|e| {
                    panic!("{e}\n{}", ebisu::diagnostics(&self.k, &self.ns, &restored))
                });
        eprintln!("restored to Ready (2 instances) in {:?}", started.elapsed());
        assert_eq!(restored_primary, format!("{restored}-0"));
        let ip = self.get(&format!("pod/{restored_primary}"), "{.status.podIP}");
        // The application's password from before works on the restore.
        let found = ebisu::sql(
            &ip,
            APP_USER,
            APP_PASSWORD,
            &format!("SELECT id FROM {table}"),
        )
        .unwrap_or_else(|e| panic!("the app user reads the restored table: {e}"));
        let found: BTreeSet<u64> = found
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect();
        let (_, after) =
            writes.restored_exactly(&found, "the backup", |at| at < asked, |at| at > taken);
        let restored_root = |pod: &str, statement: &str| {
            ebisu::root_sql(&self.k, &self.layout, &self.ns, &restored, pod, statement)
                .unwrap_or_else(|e| panic!("root on {pod} with the restored Secret: {e}"))
        };
        let replica = format!("{restored}-1");
        self.wait(
            "the restored replica caught up",
            Duration::from_secs(60),
            |_| {
                restored_root(&replica, &format!("SELECT COUNT(*) FROM {table}"))
                    == found.len().to_string()
            },
        );
        eprintln!(
            "restored {} rows of {db} (GTID set {gtid}); none of the {} acknowledged after the backup",
            found.len(),
            after.len()
        );

        // A restore from a snapshot that is gone creates nothing.
        self.block_on(
            crate::ec2::client()
                .delete_snapshot()
                .snapshot_id(&snapshot)
                .send(),
        )
        .unwrap_or_else(|e| panic!("delete {snapshot}: {e}"));
        let gone = format!("{}-gone", self.cluster);
        self.apply_yaml("gone", &spec(&gone));
        self.wait("the restore refused", Duration::from_secs(60), |s| {
            s.events().contains(&format!(
                "RestoreRefused: snapshot {snapshot} of MySQLBackup {backup} no longer exists"
            ))
        });
        let condition = self.get(
            &format!("myc/{gone}"),
            "{.status.conditions[?(@.type==\"RestoreRefused\")].status}",
        );
        assert_eq!(condition, "True");
        for object in [
            format!("statefulset/{gone}"),
            format!("pvc/data-{gone}-0"),
            format!("secret/{gone}-credentials"),
        ] {
            assert!(
                self.k.try_run(&["-n", &self.ns, "get", &object]).is_err(),
                "a refused restore creates no {object}"
            );
        }

        for cluster in [&gone, &restored] {
            self.kubectl(&[
                "-n",
                &self.ns,
                "delete",
                &format!("myc/{cluster}"),
                "--wait=true",
            ]);
        }
        self.wait("the restored pods gone", Duration::from_secs(120), |s| {
            s.get("pods", "{.items[*].metadata.name}")
                .split_whitespace()
                .all(|p| !p.starts_with(&restored))
        });
        self.root(
            &self.primary(),
            &format!("CREATE TABLE {table} (id BIGINT PRIMARY KEY)"),
        );
        self.scheduled_backups_keep_only_the_newest();
    }

    /// `spec.clone.method: Snapshot` under a writer: a fourth instance
    /// starts on a volume made from the newest backup's snapshot and catches
    /// up from the primary; once the primary has purged the binary logs
    /// after every backup, a fifth streams instead, saying why. Needs a
    /// completed backup of the cluster (the drill above leaves two); leaves
    /// three instances and the method at its default.
    pub fn a_replica_seeded_from_a_snapshot_catches_up(&mut self, table: &str) {
        let primary = self.wait_settled(3);
        let seeded = format!("{}-3", self.cluster);
        let streamed = format!("{}-4", self.cluster);
        // Volumes kept from an earlier scale-down would be used as they are.
        for pod in [&seeded, &streamed] {
            self.kubectl(&[
                "-n",
                &self.ns,
                "delete",
                &format!("pvc/data-{pod}"),
                "--ignore-not-found",
                "--wait=true",
            ]);
        }
        self.patch(r#"{"spec":{"clone":{"method":"Snapshot"}}}"#);
        let load = self.load(table);
        std::thread::sleep(Duration::from_secs(1));
        let started = Instant::now();
        self.patch(r#"{"spec":{"replicas":4}}"#);
        self.wait(
            "the new replica's volume made from a snapshot",
            Duration::from_secs(60),
            |s| {
                s.events()
                    .contains(&format!("SeedFromSnapshot: {seeded} starts on"))
            },
        );
        // EBS (and the local cluster, at 1 MiB/s by default) loads the
        // volume's blocks after it is attached: until then the replica may
        // be Ready and replicate, but serves no reads. Whether the volume is
        // still loading once the server is Ready depends on how long the
        // server took to start, so every look checks the rule and the drill
        // says whether it saw the window, instead of waiting for it.
        let mut looks = Looks::default();
        self.wait("the seeded replica Ready", Duration::from_secs(240), |s| {
            looks.look(s, &seeded).ready
        });
        eprintln!(
            "a replica seeded from a snapshot: Ready after {:?}, its volume at {}%",
            started.elapsed(),
            self.instance(&seeded, "volume.initialization.progress")
        );
        self.wait_settled(4);
        self.verify("a replica seeded from a snapshot", table, load, None);
        let volume = self.get(
            &format!(
                "pv/{}",
                self.get(&format!("pvc/data-{seeded}"), "{.spec.volumeName}")
            ),
            "{.spec.csi.volumeHandle}",
        );
        let from = self
            .block_on(
                crate::ec2::client()
                    .describe_volumes()
                    .volume_ids(&volume)
                    .send(),
            )
            .unwrap_or_else(|e| panic!("describe {volume}: {e}"))
            .volumes()
            .first()
            .and_then(|v| v.snapshot_id())
            .unwrap_or_default()
            .to_owned();
        let snapshots = self.get(
            "mysqlbackups",
            "{range .items[*]}{.status.snapshotId}{\"\\n\"}{end}",
        );
        assert!(
            !from.is_empty() && snapshots.lines().any(|l| l == from),
            "{seeded}'s volume {volume} was made from a backup's snapshot ({from:?} among {snapshots:?})"
        );
        let count = format!("SELECT COUNT(*) FROM {table}");
        let on_primary = self.root(&primary, &count);
        self.wait(
            "the seeded replica caught up",
            Duration::from_secs(60),
            |s| s.root(&seeded, &count) == on_primary,
        );
        eprintln!("{seeded} started on {volume} (from {from}) and caught up: {on_primary} rows");

        // The primary purges the binary logs after every backup's GTID set.
        self.root(&primary, "FLUSH BINARY LOGS");
        std::thread::sleep(Duration::from_secs(1));
        let current = self.binary_logs(&primary).pop().unwrap_or_default();
        self.root(&primary, &format!("PURGE BINARY LOGS TO '{current}'"));
        let load = self.load(table);
        self.patch(r#"{"spec":{"replicas":5}}"#);
        self.wait("the fifth replica streams", Duration::from_secs(60), |s| {
            s.events().contains(&format!(
                "SeedByStream: {streamed} is copied from a peer: the primary no longer has the binary logs"
            ))
        });
        self.wait_settled(5);
        self.verify(
            "a replica streamed after the binary logs were purged",
            table,
            load,
            None,
        );
        assert!(
            self.block_on(
                crate::ec2::client()
                    .describe_volumes()
                    .volume_ids(self.get(
                        &format!(
                            "pv/{}",
                            self.get(&format!("pvc/data-{streamed}"), "{.spec.volumeName}")
                        ),
                        "{.spec.csi.volumeHandle}",
                    ))
                    .send()
            )
            .is_ok_and(|o| o
                .volumes()
                .iter()
                .all(|v| v.snapshot_id().unwrap_or_default().is_empty())),
            "{streamed}'s volume was made empty, not from a snapshot"
        );
        self.wait(
            "the seeded replica's volume loaded and serving reads",
            Duration::from_secs(300),
            |s| {
                let look = looks.look(s, &seeded);
                look.serves && s.instance(&seeded, "volume.initialization.progress") == "100"
            },
        );
        assert!(
            looks.served_loading.is_empty(),
            "{seeded} served reads while its volume loaded (at {:?}%)",
            looks.served_loading
        );
        eprintln!(
            "a replica seeded from a snapshot: its volume loaded and serving reads after {:?}; \
             seen Ready with its volume loading and serving no reads at {} looks",
            started.elapsed(),
            looks.ready_loading
        );
        self.patch(r#"{"spec":{"replicas":3,"clone":{"method":null}}}"#);
        self.wait("back to three instances", Duration::from_secs(180), |s| {
            s.get("pods", "{.items[*].metadata.name}")
                .split_whitespace()
                .filter(|p| *p == seeded || *p == streamed)
                .count()
                == 0
        });
        self.wait_settled(3);
    }

    /// The binary log archive (`spec.backup.archive`) under a writer: a
    /// replica's agent archives into S3 (the local moto, reached with the
    /// credentials every pod of the local cluster gets), status says how
    /// far it got, and after a switchover the archive again holds every
    /// transaction the primary has: nothing was lost on the way. (That no
    /// transaction is archived twice is checked segment by segment in the
    /// sidecar's data-plane tests.)
    /// Then binary logs purged only once archived
    /// ([`Scenario::binary_logs_go_only_once_archived`]), archive retention
    /// ([`Scenario::archived_files_go_with_the_backups_that_needed_them`])
    /// and restores to a
    /// point in time from the archive
    /// ([`Scenario::a_restore_reaches_a_point_in_time`]).
    pub fn the_binary_logs_are_archived_through_a_switchover(&mut self, table: &str) {
        let primary = self.wait_settled(3);
        let bucket = format!("{}-{}-archive", self.ns, self.cluster);
        let made = self.block_on(
            reqwest::Client::new()
                .put(format!("{}/{bucket}", crate::ec2::endpoint()))
                .send(),
        );
        assert!(
            made.as_ref().is_ok_and(|r| r.status().is_success()),
            "create bucket {bucket}: {made:?}"
        );
        self.patch(&format!(
            r#"{{"spec":{{"backup":{{"schedule":"0 0 1 1 *","archive":{{"bucket":"{bucket}","maxBehindSeconds":10}}}}}}}}"#
        ));
        let load = self.load(table);
        std::thread::sleep(Duration::from_secs(5));
        self.verify("archived under a writer", table, load, None);
        let whole = |s: &Self, why: &str| {
            s.wait(why, Duration::from_secs(120), |s| {
                let primary = s.primary();
                let held = s.myc("{.status.archive.gtidSet}");
                !held.is_empty() && held == s.instance(&primary, "gtid")
            });
        };
        whole(self, "the archive holding every transaction of the primary");
        let archiver = self.myc("{.status.archive.archiver}");
        assert!(
            !archiver.is_empty() && archiver != primary,
            "a replica archives, not the primary {primary}: {archiver:?}"
        );
        eprintln!(
            "archived by {archiver} through {}: {}",
            self.myc("{.status.archive.archivedThrough}"),
            self.myc("{.status.archive.gtidSet}")
        );

        let load = self.load(table);
        std::thread::sleep(Duration::from_secs(2));
        self.annotate("ebisu.dev/switchover=any");
        self.wait("the switchover", Duration::from_secs(60), |s| {
            let now = s.primary();
            !now.is_empty() && now != primary
        });
        std::thread::sleep(Duration::from_secs(3));
        self.verify("archived through a switchover", table, load, None);
        whole(
            self,
            "the archive holding every transaction of the new primary",
        );
        assert_eq!(
            self.get(
                &format!("myc/{}", self.cluster),
                "{.status.conditions[?(@.type==\"ArchiveBehind\")].status}"
            ),
            "False",
            "{}",
            self.diagnostics()
        );
        eprintln!(
            "after the switchover to {}, archived by {}: {}",
            self.primary(),
            self.myc("{.status.archive.archiver}"),
            self.myc("{.status.archive.gtidSet}")
        );
        self.binary_logs_go_only_once_archived(table);
        self.archived_files_go_with_the_backups_that_needed_them(table, &bucket);
        self.a_restore_reaches_a_point_in_time(table, &bucket);
        self.restores_are_verified_on_a_schedule(table);
        self.patch(r#"{"spec":{"backup":null}}"#);
    }

    /// A schedule every 15 s with `keep: 2`: backups are made on it, and the
    /// oldest completed one goes with its snapshot while two stay.
    fn scheduled_backups_keep_only_the_newest(&self) {
        self.patch(r#"{"spec":{"backup":{"schedule":"*/15 * * * * *","keep":2}}}"#);
        let selector = format!(
            "ebisu.dev/cluster={},ebisu.dev/scheduled=true",
            self.cluster
        );
        let scheduled = |s: &Self| -> Vec<(String, String, String)> {
            s.k.try_run(&[
                "-n",
                &s.ns,
                "get",
                "mysqlbackups",
                "-l",
                &selector,
                "-o",
                "jsonpath={range .items[*]}{.metadata.name} {.status.phase} {.status.snapshotId}{\"\\n\"}{end}",
            ])
            .unwrap_or_default()
            .lines()
            .filter_map(|l| {
                let mut f = l.split_whitespace();
                Some((f.next()?.to_owned(), f.next().unwrap_or_default().to_owned(), f.next().unwrap_or_default().to_owned()))
            })
            .collect()
        };
        let mut seen: Vec<(String, String)> = Vec::new();
        self.wait(
            "a scheduled backup expired",
            Duration::from_secs(150),
            |s| {
                for (name, _, snapshot) in scheduled(s) {
                    if !snapshot.is_empty() && !seen.iter().any(|(n, _)| *n == name) {
                        seen.push((name, snapshot));
                    }
                }
                s.events().contains("BackupExpired: deleted MySQLBackup")
            },
        );
        self.patch(r#"{"spec":{"backup":null}}"#);
        let left = scheduled(self);
        let completed = left
            .iter()
            .filter(|(_, phase, _)| phase == "Completed")
            .count();
        assert!(
            completed <= 2,
            "at most keep=2 completed scheduled backups remain: {left:?}"
        );
        let gone: Vec<&(String, String)> = seen
            .iter()
            .filter(|(name, _)| !left.iter().any(|(n, _, _)| n == name))
            .collect();
        assert!(
            !gone.is_empty(),
            "an expired backup is deleted: {seen:?} -> {left:?}"
        );
        let ec2 = crate::ec2::client();
        for (name, snapshot) in gone {
            let found = self.block_on(ec2.describe_snapshots().snapshot_ids(snapshot).send());
            assert!(
                found.map_or(true, |o| o.snapshots().is_empty()),
                "the snapshot {snapshot} of expired {name} is deleted"
            );
        }
        for (name, _, snapshot) in left.iter().filter(|(_, phase, _)| phase == "Completed") {
            let found = self.block_on(ec2.describe_snapshots().snapshot_ids(snapshot).send());
            assert!(
                found.is_ok_and(|o| o.snapshots().len() == 1),
                "the snapshot {snapshot} of kept {name} stays"
            );
        }
        eprintln!(
            "scheduled backups: {} made, {} kept",
            seen.len(),
            left.len()
        );
    }
}

/// What the snapshot drill saw of a seeded replica, look by look.
#[derive(Default)]
struct Looks {
    /// Looks at which it was Ready while its volume still loaded.
    ready_loading: u32,
    /// The volume's progress at each look that found it serving reads
    /// before the volume had loaded (the rule broken).
    served_loading: Vec<u32>,
}

/// One look at a seeded replica.
struct Look {
    ready: bool,
    serves: bool,
}

impl Looks {
    fn look(&mut self, s: &Scenario, pod: &str) -> Look {
        // Read the progress on both sides of the pod, so that a look that
        // straddles the load's end does not count as loading.
        let before = s.instance(pod, "volume.initialization.progress");
        let ready = s.get(
            &format!("pod/{pod}"),
            "{.status.conditions[?(@.type==\"Ready\")].status}",
        ) == "True";
        let serves = s.get(
            &format!("pod/{pod}"),
            "{.metadata.labels.ebisu\\.dev/reads}",
        ) == "serve"; // ebisu_api::names::READS_SERVED
        let after = s.instance(pod, "volume.initialization.progress");
        let loading = |p: &str| p.parse::<u32>().ok().filter(|p| *p < 100);
        if let (Some(p), Some(_)) = (loading(&before), loading(&after)) {
            if serves {
                self.served_loading.push(p);
            } else if ready {
                self.ready_loading += 1;
            }
        }
        Look { ready, serves }
    }
}
