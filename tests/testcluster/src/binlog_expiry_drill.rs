//! The binary log expiry drill, the same on both flavors, on a cluster
//! whose binary logs are archived: with `spec.binaryLogs.expireSeconds: 0`
//! the primary purges a file as soon as every instance and the archive
//! hold it, keeps every file it wrote while the archiver is cut off from
//! S3 under a writer; the archiver's server then purging what it had not
//! archived is a gap, reported at once, that keeps every file until a
//! backup holds it; then the files go.

use std::time::Duration;

use crate::{Scenario, faults, layout::EC2_PORT};

/// Longer than the agent's S3 operation timeout, retries included.
const UPLOAD_GIVES_UP: Duration =
    ebisu_aws::archive::OPERATION_TIMEOUT.saturating_add(Duration::from_secs(5));

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
        let files = |s: &Self| s.binary_logs(&primary);
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
        // Each reconcile tells the agents what may go before it writes
        // status: the second status write from now comes from a reconcile
        // that began after the files were listed, with the stale archive.
        let behind = |s: &Self| -> u64 {
            s.myc("{.status.archive.behindSeconds}")
                .parse()
                .unwrap_or_default()
        };
        for _ in 0..2 {
            let seen = behind(self);
            self.wait(
                "a later reconcile with the archive behind",
                Duration::from_secs(90),
                |s| behind(s) > seen,
            );
        }
        let kept = files(self);
        assert!(
            written.iter().all(|f| kept.contains(f)),
            "the primary keeps every file the archive lacks: wrote {written:?}, keeps {kept:?}\n{}",
            self.diagnostics()
        );
        // The archiver's server loses what it has not archived (a server
        // purging early): the archive has a gap it reports at once, and
        // nothing is purged past it until a backup holds it.
        self.root(&archiver, "FLUSH BINARY LOGS");
        let newest = self.binary_logs(&archiver).pop().unwrap_or_default();
        self.root(&archiver, &format!("PURGE BINARY LOGS TO '{newest}'"));
        // An upload the agent began before the purge holds the purged
        // bytes and may still succeed once S3 answers (then there is no
        // gap): S3 stays out of reach until every such upload has given
        // up.
        std::thread::sleep(UPLOAD_GIVES_UP);
        self.block_on(faults::block_port(&network, EC2_PORT, true))
            .unwrap_or_else(|e| panic!("let {archiver} reach S3 again: {e}"));
        self.verify("binary logs kept while the archive lags", table, load, None);
        self.wait("the archive's gap reported", Duration::from_secs(60), |s| {
            s.condition_message("ArchiveBehind")
                .contains(&format!("no binary log on {archiver} holds any more"))
        });
        let gap = self.myc("{.status.archive.gap}");
        assert!(!gap.is_empty(), "status.archive.gap says what is missing");
        // The reconcile that reported the gap told the agents what may
        // go before it wrote that status.
        let still = files(self);
        assert!(
            written.iter().all(|f| still.contains(f)),
            "nothing is purged past a gap no backup holds: wrote {written:?}, keeps {still:?}"
        );
        let backup = format!("{}-gap", self.cluster);
        self.ask_backup(&backup);
        self.wait(
            "a backup holding the gap clearing it",
            Duration::from_secs(120),
            |s| {
                s.get(&format!("mysqlbackup/{backup}"), "{.status.phase}") == "Completed"
                    && s.condition("ArchiveBehind") == "False"
            },
        );
        assert_eq!(self.myc("{.status.archive.gap}"), "", "the gap is covered");
        eprintln!("archive gap {gap} reported, then covered by {backup}");
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
