//! The point-in-time drill, the same on both flavors, on a cluster whose
//! binary logs are archived: a backup under a writer, a failover (the
//! primary's pod cut off), a table dropped at T while a writer goes on,
//! and the backup restored to T - 1 s into a new cluster that holds the
//! table and every row acknowledged before the target, none acknowledged
//! after T, and a prefix of the writes; then targets before the first
//! backup, past the archive's end, across the old primary's last segment
//! removed, and across a removed segment of the new primary's, refused
//! with nothing created.

use std::collections::BTreeSet;
use std::time::{Duration, Instant, SystemTime};

use crate::{
    Scenario,
    drills::Fault,
    ebisu,
    scenario::{APP_PASSWORD, APP_USER},
};

/// One archived segment, as its manifest says.
struct Segment {
    manifest_key: String,
    first_us: i64,
    gtids: Option<String>,
}

impl Scenario {
    /// Runs the drill on `table` (`db.table`, one `id` column) while
    /// `bucket` holds the cluster's archive; leaves the table as it found
    /// it (with more rows) and the restored clusters deleted.
    pub fn a_restore_reaches_a_point_in_time(&mut self, table: &str, bucket: &str) {
        let (db, _) = table.split_once('.').unwrap_or(("", table));
        let victim = format!("{db}.victim");
        let primary = self.wait_settled(3);
        self.root(
            &primary,
            &format!("CREATE TABLE {victim} (id BIGINT PRIMARY KEY); INSERT INTO {victim} VALUES (1), (2), (3)"),
        );
        let backup = format!("{}-pitr", self.cluster);
        let load = self.load(table);
        std::thread::sleep(Duration::from_secs(1));
        self.ask_backup(&backup);
        let path = format!("mysqlbackup/{backup}");
        self.wait("the backup completed", Duration::from_secs(120), |s| {
            s.get(&path, "{.status.phase}") == "Completed"
        });
        assert_eq!(
            self.get(&path, "{.status.archive.bucket}"),
            bucket,
            "the backup records the archive"
        );
        let (during_backup, _) =
            self.verify("written while the backup was taken", table, load, None);
        // A failover in the archived range: the archive follows the new
        // primary, and the restore replays across it.
        let failover = self.drill(Fault::PodIsolated, table, Duration::from_secs(8));
        assert!(
            failover.to_new_primary.is_some(),
            "the primary's pod cut off for 8 s failed over: {} -> {}",
            failover.old,
            failover.new
        );
        self.wait_settled(3);
        let load = self.load(table);
        std::thread::sleep(Duration::from_secs(4));
        // The mistake, while the writer goes on.
        let dropped_wall = SystemTime::now();
        let dropped = Instant::now();
        self.root(&self.primary(), &format!("DROP TABLE {victim}"));
        std::thread::sleep(Duration::from_secs(3));
        let (writes, _) = self.verify("written through a dropped table", table, load, None);
        let wall = |at: Instant| dropped_wall - dropped.saturating_duration_since(at);
        // Whole seconds: MariaDB records no finer.
        let target_secs = dropped_wall
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
            - 1;
        let target = SystemTime::UNIX_EPOCH + Duration::from_secs(target_secs);
        let target_text = k8s_openapi::jiff::Timestamp::from_second(
            i64::try_from(target_secs).unwrap_or_default(),
        )
        .map(|t| t.to_string())
        .unwrap_or_default();
        let flavor = self.flavor();
        let executed = self.executed(&self.primary());
        let parse = |set: &str| {
            ebisu_mysql::GtidSet::parse(flavor, set.trim())
                .unwrap_or_else(|e| panic!("GTID set {set:?}: {e}"))
        };
        let held = parse(&self.get(&path, "{.status.gtidSet}"));
        // The archive may have a gap the backup holds (the expiry drill
        // makes one): what counts is that a restore reaches the drop.
        self.wait(
            "the archive holding the drop",
            Duration::from_secs(60),
            |s| {
                let listed = s
                    .block_on(ebisu_aws::archive::manifests(
                        &crate::ec2::s3(),
                        bucket,
                        &format!("{}/{}", s.ns, s.cluster),
                    ))
                    .unwrap_or_default();
                ebisu_mysql::archive::replay::plan(
                    flavor,
                    &held,
                    &listed,
                    &ebisu_mysql::archive::replay::Target::Gtids(executed.clone()),
                )
                .is_ok()
            },
        );

        let restored = format!("{}-pitr", self.cluster);
        let spec = |name: &str, from: &str| {
            format!(
                "apiVersion: ebisu.dev/v1alpha1\nkind: MySQLCluster\nmetadata: {{name: {name}}}\nspec:\n  replicas: 2\n  flavor: {flavor}\n{image}  storage: {{size: {size}, ebs: {{type: gp3}}}}\n  bootstrap: {{fromBackup: {from}}}\n",
                flavor = self.myc("{.spec.flavor}"),
                image = match self.myc("{.spec.image}") {
                    image if image.is_empty() => String::new(),
                    image => format!("  image: {image}\n"),
                },
                size = self.myc("{.spec.storage.size}"),
            )
        };
        self.apply_yaml(
            "pitr",
            &spec(
                &restored,
                &format!(
                    "{{cluster: {}, pointInTime: {{time: \"{target_text}\"}}}}",
                    self.cluster
                ),
            ),
        );
        let started = Instant::now();
        let restored_primary =
            ebisu::wait_running(&self.k, &self.ns, &restored, 2, Duration::from_secs(400))
                .unwrap_or_else(|e| {
                    let replica = ebisu::root_sql(
                        &self.k,
                        &self.layout,
                        &self.ns,
                        &restored,
                        &format!("{restored}-1"),
                        "SHOW REPLICA STATUS\\G",
                    );
                    panic!(
                        "{e}\n{}\nthe replica's replication: {replica:?}",
                        ebisu::diagnostics(&self.k, &self.ns, &restored)
                    )
                });
        eprintln!(
            "restored to {target_text} and Ready (2 instances) in {:?}",
            started.elapsed()
        );
        let status = |field: &str| {
            self.get(
                &format!("myc/{restored}"),
                &format!("{{.status.restore.{field}}}"),
            )
        };
        assert_eq!(
            status("backup"),
            backup,
            "the newest backup before the target"
        );
        let reached = status("pointInTime.reached");
        assert!(
            !reached.is_empty() && reached != status("gtidSet"),
            "the GTID set reached is in status, past the backup's: {reached}"
        );
        let ip = self.get(&format!("pod/{restored_primary}"), "{.status.podIP}");
        let read = |statement: &str| {
            ebisu::sql(&ip, APP_USER, APP_PASSWORD, statement)
                .unwrap_or_else(|e| panic!("the app user reads the restore: {e}"))
        };
        assert_eq!(
            read(&format!("SELECT COUNT(*) FROM {victim}")).trim(),
            "3",
            "the table dropped after the target is there, with its rows"
        );
        let found: BTreeSet<u64> = read(&format!("SELECT id FROM {table}"))
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect();
        let earlier: Vec<u64> = during_backup
            .acked
            .iter()
            .chain(&failover.writes.acked)
            .map(|(id, _)| *id)
            .filter(|id| !found.contains(id))
            .collect();
        assert!(
            earlier.is_empty(),
            "acknowledged before and through the failover, and not restored: {earlier:?}"
        );
        let (before, _) = writes.restored_exactly(
            &found,
            "the target",
            |at| wall(at) < target,
            |at| at > dropped + Duration::from_secs(1),
        );
        assert!(
            self.get(&format!("myc/{restored}"), "{.status.instances[0].gtid}") == reached,
            "the restored primary holds what the replay reached, {reached}"
        );
        if flavor == ebisu_mysql::Flavor::MariaDb {
            // A copy of the restored primary starts from its current
            // position: one behind its binary log would apply a replayed
            // transaction twice.
            let positions = ebisu::root_sql(
                &self.k,
                &self.layout,
                &self.ns,
                &restored,
                &restored_primary,
                "SELECT CONCAT(@@GLOBAL.gtid_binlog_pos, '|', @@GLOBAL.gtid_current_pos)",
            )
            .unwrap_or_else(|e| panic!("the restored primary's positions: {e}"));
            let (binlog, current) = positions
                .trim()
                .split_once('|')
                .unwrap_or_else(|| panic!("two positions: {positions:?}"));
            assert!(
                parse(current).contains(&parse(binlog)).unwrap_or(false),
                "the restored primary's position {current} covers its binary log {binlog}"
            );
        }
        let replica = format!("{restored}-1");
        self.wait(
            "the restored replica copied and caught up",
            Duration::from_secs(60),
            |s| {
                ebisu::root_sql(
                    &s.k,
                    &s.layout,
                    &s.ns,
                    &restored,
                    &replica,
                    &format!("SELECT COUNT(*) FROM {table}"),
                )
                .is_ok_and(|count| count.trim() == found.len().to_string())
                    && s.get(
                        &format!("myc/{restored}"),
                        "{.status.conditions[?(@.type==\"Healthy\")].status}",
                    ) == "True"
            },
        );
        eprintln!(
            "restored to {target_text}: {} rows ({} acknowledged before it), the dropped table, GTID set {reached}",
            found.len(),
            before.len()
        );

        // Refused, with nothing created: before the first backup, past the
        // archive's end, and across a removed segment.
        let refused = |s: &Self, name: &str, from: &str, says: &str| {
            s.apply_yaml(name, &spec(name, from));
            s.wait(&format!("{name} refused"), Duration::from_secs(60), |s| {
                s.get(
                    &format!("myc/{name}"),
                    "{.status.conditions[?(@.type==\"RestoreRefused\")].message}",
                )
                .contains(says)
            });
            for object in [format!("statefulset/{name}"), format!("pvc/data-{name}-0")] {
                assert!(
                    s.k.try_run(&["-n", &s.ns, "get", &object]).is_err(),
                    "a refused restore creates no {object}"
                );
            }
            s.kubectl(&["-n", &s.ns, "delete", &format!("myc/{name}"), "--wait=true"]);
        };
        refused(
            self,
            &format!("{}-early", self.cluster),
            &format!(
                "{{cluster: {}, pointInTime: {{time: \"2001-01-01T00:00:00Z\"}}}}",
                self.cluster
            ),
            "is before the first backup",
        );
        let hour_later = k8s_openapi::jiff::Timestamp::now()
            .checked_add(k8s_openapi::jiff::SignedDuration::from_hours(1))
            .map(|t| t.to_string())
            .unwrap_or_default();
        refused(
            self,
            &format!("{}-late", self.cluster),
            &format!("{{name: {backup}, pointInTime: {{time: \"{hour_later}\"}}}}"),
            "TargetPastArchive",
        );
        let consistent = self.get(&path, "{.status.consistentAt}");
        let consistent_us = consistent
            .parse::<k8s_openapi::jiff::Timestamp>()
            .map_or(i64::MAX, |t| t.as_microsecond());
        let target_us = i64::try_from(target_secs).unwrap_or_default() * 1_000_000;
        // Segments the backup lacks, not a file's head, begun before the
        // target, holding transactions of `of` and none of `not`.
        let identity = |pod: &str| match flavor {
            ebisu_mysql::Flavor::MariaDb => {
                format!("-{}-", self.root(pod, "SELECT @@GLOBAL.server_id").trim())
            }
            _ => self
                .root(pod, "SELECT @@GLOBAL.server_uuid")
                .trim()
                .to_owned(),
        };
        let (old, new) = (identity(&failover.old), identity(&failover.new));
        let last_of = |s: &Self, of: &str, not: &str| {
            s.segments(bucket)
                .into_iter()
                .filter(|s| s.first_us > consistent_us && s.first_us <= target_us)
                .filter(|s| !s.manifest_key.ends_with("/00000000000000000000.json"))
                .filter(|s| {
                    s.gtids.as_deref().is_some_and(|g| {
                        g.contains(of)
                            && !g.contains(not)
                            && ebisu_mysql::GtidSet::parse(flavor, g)
                                .is_ok_and(|g| !held.contains(&g).unwrap_or(true))
                    })
                })
                .max_by_key(|s| s.first_us)
                .unwrap_or_else(|| {
                    panic!(
                        "a segment of {of} alone between the backup ({consistent}) and the target"
                    )
                })
        };
        // First the old primary's last: nothing archived after it is of
        // its server (on MySQL no hole shows), but what the archiver held
        // in its rounds before the target names it. Then one inside the
        // new primary's range: a hole.
        for (name, of, not) in [("end", &old, &new), ("gap", &new, &old)] {
            let removed = last_of(self, of, not);
            self.remove_segment(bucket, &removed.manifest_key);
            refused(
                self,
                &format!("{}-{name}", self.cluster),
                &format!("{{name: {backup}, pointInTime: {{time: \"{target_text}\"}}}}"),
                "ArchiveGap",
            );
        }
        eprintln!(
            "refused: a target before the first backup, past the archive, across the old primary's last segment removed, across a removed segment"
        );

        self.kubectl(&[
            "-n",
            &self.ns,
            "delete",
            &format!("myc/{restored}"),
            "--wait=true",
        ]);
        self.wait("the restored pods gone", Duration::from_secs(120), |s| {
            s.get("pods", "{.items[*].metadata.name}")
                .split_whitespace()
                .all(|p| !p.starts_with(&restored))
        });
    }

    /// The archive's segments under the cluster's default prefix.
    fn segments(&self, bucket: &str) -> Vec<Segment> {
        let prefix = format!("{}/{}", self.ns, self.cluster);
        let listed = self
            .block_on(ebisu_aws::archive::manifests(
                &crate::ec2::s3(),
                bucket,
                &prefix,
            ))
            .unwrap_or_else(|e| panic!("list the archive: {e}"));
        listed
            .into_iter()
            .filter_map(|l| {
                Some(Segment {
                    first_us: l.manifest.first_us?,
                    gtids: l.manifest.gtids,
                    manifest_key: l.key,
                })
            })
            .collect()
    }

    /// Deletes a segment's bytes and manifest, as a careless lifecycle rule
    /// would.
    fn remove_segment(&self, bucket: &str, manifest_key: &str) {
        let data_key = ebisu_mysql::archive::data_key(manifest_key)
            .unwrap_or_else(|| panic!("{manifest_key} names its bytes"));
        let s3 = crate::ec2::s3();
        for key in [data_key.as_str(), manifest_key] {
            self.block_on(s3.delete_object().bucket(bucket).key(key).send())
                .unwrap_or_else(|e| panic!("delete {key}: {e}"));
        }
    }
}
