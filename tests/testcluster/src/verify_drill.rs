//! The verified-restore drill, the same on both flavors, run after the
//! point-in-time drill removed archived segments: under a writer, the
//! first verification restores the newest backup toward a replica's set
//! across the removed segments and fails (`RestoreVerificationFailed`, an
//! Event); a new backup is taken and the next one passes: the scratch
//! cluster reached exactly the held replica's GTID set and its sampled
//! tables checked clean with the replica's checksums. Then the scratch
//! cluster, its claim, Secret and EBS volume are gone.

use std::time::Duration;

use crate::Scenario;

impl Scenario {
    /// Runs the drill on `table` (the cluster's archive on).
    pub fn restores_are_verified_on_a_schedule(&mut self, table: &str) {
        self.wait_settled(3);
        let scratch = format!("{}-verify", self.cluster);
        let load = self.load(table);
        std::thread::sleep(Duration::from_secs(2));
        self.patch(
            r#"{"spec":{"backup":{"verify":{"schedule":"*/10 * * * * *","sampleTables":8,"timeoutSeconds":300}}}}"#,
        );
        let verified =
            |s: &Self, field: &str| s.myc(&format!("{{.status.lastVerifiedRestore.{field}}}"));
        let condition = |s: &Self| {
            s.myc("{.status.conditions[?(@.type==\"RestoreVerificationFailed\")].status}")
        };
        self.wait(
            "a verification failed across the removed segments",
            Duration::from_secs(240),
            |s| verified(s, "passed") == "false",
        );
        let message = verified(self, "message");
        assert!(
            message.contains("ArchiveGap"),
            "the failed verification says why: {message}"
        );
        self.wait("the failure as a condition", Duration::from_secs(60), |s| {
            condition(s) == "True"
        });
        assert!(
            self.events().contains("RestoreVerificationFailed"),
            "a Warning Event for the failed verification"
        );
        eprintln!("verification failed as it should: {message}");

        // A backup that holds everything the archive lacks.
        let backup = format!("{}-verified", self.cluster);
        self.ask_backup(&backup);
        self.wait("the new backup completed", Duration::from_secs(120), |s| {
            s.get(&format!("mysqlbackup/{backup}"), "{.status.phase}") == "Completed"
        });
        let mut volumes = Vec::new();
        self.wait(
            "a verification of the new backup passed",
            Duration::from_secs(300),
            |s| {
                let volume = verified(s, "scratchVolume");
                if !volume.is_empty() && !volumes.contains(&volume) {
                    volumes.push(volume);
                }
                verified(s, "backup") == backup && verified(s, "passed") == "true"
            },
        );
        let message = verified(self, "message");
        let tables: u32 = verified(self, "tables").parse().unwrap_or_default();
        assert!(
            tables >= 1
                && message.contains(&format!("{tables} tables checked clean, {tables} matched")),
            "every sampled table checked clean and matched the held replica: {message}"
        );
        assert!(
            !verified(self, "gtidSet").is_empty(),
            "the GTID set reached is recorded"
        );
        self.wait("the condition cleared", Duration::from_secs(60), |s| {
            condition(s) == "False"
        });
        assert!(
            self.events().contains("RestoreVerified"),
            "an Event for the verified restore"
        );
        eprintln!(
            "verified {backup} in {} s: {message}",
            verified(self, "seconds")
        );

        // No more verifications: the last scratch cluster goes with its
        // volume.
        self.patch(r#"{"spec":{"backup":{"verify":{"schedule":"0 0 1 1 *"}}}}"#);
        self.wait(
            "the scratch cluster and its volume removed",
            Duration::from_secs(180),
            |s| {
                let volume = verified(s, "scratchVolume");
                let gone = volume.is_empty();
                if !gone && !volumes.contains(&volume) {
                    volumes.push(volume);
                }
                gone && s
                    .k
                    .try_run(&["-n", &s.ns, "get", &format!("myc/{scratch}")])
                    .is_err()
            },
        );
        for object in [
            format!("pvc/data-{scratch}-0"),
            format!("secret/{scratch}-credentials"),
        ] {
            assert!(
                self.k.try_run(&["-n", &self.ns, "get", &object]).is_err(),
                "the scratch cluster's {object} is deleted"
            );
        }
        assert!(!volumes.is_empty(), "the scratch volumes were recorded");
        let ec2 = crate::ec2::client();
        for volume in &volumes {
            let found = self.block_on(ec2.describe_volumes().volume_ids(volume).send());
            assert!(
                found.map_or(true, |o| o.volumes().is_empty()),
                "the scratch volume {volume} is deleted at EC2"
            );
        }
        self.verify("written through the verifications", table, load, None);
        self.patch(r#"{"spec":{"backup":{"verify":null}}}"#);
    }
}
