//! The archive retention drill, the same on both flavors: once one kept
//! backup holds everything in the archiver's closed files, they go from
//! S3 (manifests and bytes), and from that backup the archive still
//! reaches everything the primary holds.

use std::time::Duration;

use ebisu_mysql::GtidSet;
use ebisu_mysql::archive::replay::{Target, plan};

use crate::Scenario;

impl Scenario {
    /// The drill; the archive (`spec.backup.archive`, in `bucket`) is on
    /// and current. Deletes every MySQLBackup of the namespace first (the
    /// earlier drills' hold less than the archive, so they would keep it
    /// all) and leaves one, `<cluster>-retained`.
    pub fn archived_files_go_with_the_backups_that_needed_them(
        &mut self,
        table: &str,
        bucket: &str,
    ) {
        let primary = self.wait_settled(3);
        let archiver = self.myc("{.status.archive.archiver}");
        let flavor = self.flavor();
        self.kubectl(&[
            "-n",
            &self.ns,
            "delete",
            "mysqlbackups",
            "--all",
            "--wait=true",
        ]);
        let load = self.load(table);
        for _ in 0..2 {
            std::thread::sleep(Duration::from_secs(1));
            self.root(&archiver, "FLUSH BINARY LOGS");
        }
        std::thread::sleep(Duration::from_secs(1));
        let mut closed = self.binary_logs(&archiver);
        let current = closed.pop().unwrap_or_default();
        self.verify("archive retention's writes", table, load, None);
        // Current (behind 0), whatever gap the archive has (the earlier
        // drill's, uncovered now its backup is gone), in a status computed
        // after the last write.
        let executed = self.executed(&primary);
        self.wait(
            "the archive holding every transaction of the primary",
            Duration::from_secs(60),
            |s| {
                GtidSet::parse(flavor, &s.instance(&primary, "gtid"))
                    .is_ok_and(|seen| seen.contains(&executed).unwrap_or(false))
                    && s.myc("{.status.archive.behindSeconds}") == "0"
            },
        );
        let server_id = |s: &Self| -> u32 {
            s.root(&archiver, "SELECT @@GLOBAL.server_id")
                .trim()
                .parse()
                .unwrap_or_else(|e| panic!("{archiver}'s server_id: {e}"))
        };
        let server = server_id(self);
        let archived = |s: &Self| -> Vec<(u32, String)> {
            s.block_on(ebisu_aws::archive::manifests(
                &crate::ec2::s3(),
                bucket,
                &format!("{}/{}", s.ns, s.cluster),
            ))
            .unwrap_or_else(|e| panic!("list the archive: {e}"))
            .into_iter()
            .map(|l| (l.manifest.server_id, l.manifest.file))
            .collect()
        };
        let before = archived(self);
        assert!(
            closed.iter().any(|f| before.contains(&(server, f.clone()))),
            "the archiver's closed files {closed:?} are archived: {before:?}"
        );

        let backup = format!("{}-retained", self.cluster);
        self.ask_backup(&backup);
        let path = format!("mysqlbackup/{backup}");
        self.wait("the backup completed", Duration::from_secs(120), |s| {
            s.get(&path, "{.status.phase}") == "Completed"
        });
        self.wait(
            "retention removing the archiver's closed files",
            Duration::from_secs(60),
            |s| {
                let now = archived(s);
                !closed.iter().any(|f| now.contains(&(server, f.clone())))
            },
        );
        let after = archived(self);
        assert!(
            after.contains(&(server, current.clone())),
            "the file {current} the archiver writes stays: {after:?}"
        );
        let listed = self
            .block_on(ebisu_aws::archive::manifests(
                &crate::ec2::s3(),
                bucket,
                &format!("{}/{}", self.ns, self.cluster),
            ))
            .unwrap_or_else(|e| panic!("list the archive: {e}"));
        let data = crate::ec2::s3();
        for l in &listed {
            let key = ebisu_mysql::archive::data_key(&l.key).unwrap_or_default();
            assert!(
                self.block_on(data.head_object().bucket(bucket).key(&key).send())
                    .is_ok(),
                "every manifest left has its bytes: {key}"
            );
        }
        let parse = |set: String| {
            GtidSet::parse(flavor, &set).unwrap_or_else(|e| panic!("GTID set {set:?}: {e}"))
        };
        let held = parse(self.get(&path, "{.status.gtidSet}"));
        if let Err(refused) = plan(flavor, &held, &listed, &Target::Gtids(executed.clone())) {
            panic!(
                "from the kept backup the pruned archive reaches the primary's {executed}: {refused}\n{}",
                self.diagnostics()
            );
        }
        eprintln!(
            "archive retention: {} segments before, {} after the backup {backup} ({} pruned, status says {})",
            before.len(),
            after.len(),
            before.len() - after.len().min(before.len()),
            self.myc("{.status.archive.prunedSegments}")
        );
    }
}
