//! The binary log expiry drill, the same on both flavors, on a cluster
//! whose binary logs are archived: with `spec.binaryLogs.expireSeconds: 0`
//! the primary purges a file as soon as every instance and the archive
//! hold it, keeps every file it wrote while the archiver is cut off from
//! S3 under a writer, and purges them once the archive caught up.

use std::time::Duration;

use crate::{Scenario, faults, layout::EC2_PORT};

impl Scenario {
    /// The drill; the archive (`spec.backup.archive`) is on and holds
    /// everything the primary has when it starts.
    pub fn binary_logs_go_only_once_archived(&mut self, table: &str) {
        let primary = self.wait_settled(3);
        let pods = self.myc("{.status.instances[*].pod}");
        for pod in pods.split_whitespace() {
            assert_eq!(
                self.root(pod, "SELECT @@GLOBAL.binlog_expire_logs_seconds")
                    .trim(),
                "0",
                "{pod}'s own expiry is off: ebisu purges"
            );
        }
        let files = |s: &Self| -> Vec<String> {
            s.root(&primary, "SHOW BINARY LOGS")
                .lines()
                .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
                .collect()
        };
        self.patch(r#"{"spec":{"binaryLogs":{"expireSeconds":0}}}"#);
        self.root(&primary, "FLUSH BINARY LOGS");
        self.wait(
            "the primary purging what every instance and the archive hold",
            Duration::from_secs(60),
            |s| files(s).len() == 1,
        );

        let archiver = self.myc("{.status.archive.archiver}");
        let network = faults::pod_network(
            &self.get(&format!("pod/{archiver}"), "{.metadata.uid}"),
            &self.get(&format!("pod/{archiver}"), "{.status.podIP}"),
        );
        self.block_on(faults::block_port(&network, EC2_PORT, false))
            .unwrap_or_else(|e| panic!("cut {archiver} off from S3: {e}"));
        let load = self.load(table);
        for _ in 0..3 {
            std::thread::sleep(Duration::from_secs(1));
            self.root(&primary, "FLUSH BINARY LOGS");
        }
        let written = files(self);
        // Past the bound, a reconcile has looked at the stale archive
        // (and told every agent what it holds) at least once.
        self.wait(
            "the archive behind while cut off",
            Duration::from_secs(60),
            |s| s.condition("ArchiveBehind") == "True",
        );
        std::thread::sleep(Duration::from_secs(10));
        let kept = files(self);
        assert!(
            written.iter().all(|f| kept.contains(f)),
            "the primary keeps every file the archive lacks: wrote {written:?}, keeps {kept:?}\n{}",
            self.diagnostics()
        );

        self.block_on(faults::block_port(&network, EC2_PORT, true))
            .unwrap_or_else(|e| panic!("let {archiver} reach S3 again: {e}"));
        self.verify("binary logs kept while the archive lags", table, load, None);
        self.wait(
            "the primary purging the files once archived",
            Duration::from_secs(120),
            |s| {
                let older = &written[..written.len().saturating_sub(1)];
                !files(s).iter().any(|f| older.contains(f))
            },
        );
        eprintln!(
            "binary logs: {} kept while {archiver} was cut off from S3, purged once archived ({:?} left)",
            written.len(),
            files(self)
        );
        self.patch(r#"{"spec":{"binaryLogs":null}}"#);
    }
}
