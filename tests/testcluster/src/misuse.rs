//! What ordinary user actions must not break, every flavor: an application
//! account created with `GRANT ALL PRIVILEGES ON *.*` writes only to the
//! primary (never to a replica or a fenced old primary), the primary label
//! moved by hand is put back without acting on it, and a scale to one
//! instance and back keeps writes flowing. Each runs under the writer and
//! the poller and ends with [`Scenario::verify`].

use std::time::{Duration, Instant};

use crate::{Scenario, drill::App};

/// The account the GRANT ALL check creates.
const GRANT_ALL_USER: &str = "app2";
/// Its password.
const GRANT_ALL_PASSWORD: &str = "Grant-All-2026-x7Q";

impl Scenario {
    /// `GRANT ALL PRIVILEGES ON *.*` to an application account (MariaDB's
    /// includes READ_ONLY ADMIN, which writes through `read_only`): it
    /// writes to the primary, and every replica, then the old primary after
    /// a switchover, refuses its writes.
    pub fn grant_all_writes_only_to_the_primary(&mut self, table: &str) {
        let primary = self.wait_settled_with_replicas();
        let reseeds_before = self.count_events("Reseeding");
        self.root(
            &primary,
            &format!(
                "CREATE USER {GRANT_ALL_USER}@'%' IDENTIFIED BY '{GRANT_ALL_PASSWORD}'; \
                 GRANT ALL PRIVILEGES ON *.* TO {GRANT_ALL_USER}@'%'"
            ),
        );
        let app2 = App {
            user: GRANT_ALL_USER.to_owned(),
            password: GRANT_ALL_PASSWORD.to_owned(),
            ..self.app.clone()
        };
        // MariaDB: every server takes READ_ONLY ADMIN from it (MySQL has no
        // such privilege: the count is 0 at once).
        self.wait(
            "READ_ONLY ADMIN taken from app2 on every server",
            Duration::from_secs(60),
            |m| {
                m.app.servers().iter().all(|(pod, _)| {
                    m.try_root(
                        pod,
                        &format!(
                            "SELECT COUNT(*) FROM information_schema.USER_PRIVILEGES \
                             WHERE GRANTEE = \"'{GRANT_ALL_USER}'@'%'\" \
                             AND PRIVILEGE_TYPE = 'READ_ONLY ADMIN'"
                        ),
                    )
                    .is_some_and(|n| n == "0")
                })
            },
        );
        let load = self.load(table);
        std::thread::sleep(Duration::from_secs(1));
        let mut id = 900_000_000 + self.next_id;
        let mut insert = |m: &Scenario, pod: &str| {
            id += 1;
            let ip = m
                .app
                .resolve(&format!("{pod}.{}", m.cluster))
                .unwrap_or_else(|| panic!("{pod} resolves"));
            (
                id,
                app2.sql(
                    &ip,
                    &format!("INSERT INTO {table} VALUES ({id})"),
                    Duration::from_secs(10),
                ),
            )
        };
        let refused =
            |m: &Scenario, pod: &str, (id, result): (u64, Result<String, String>)| match result {
                Err(e) if e.contains("read-only") || e.contains("read_only") => {}
                other => panic!(
                    "{pod} must refuse app2's write of {id} as read-only: {other:?}\n{}",
                    m.diagnostics()
                ),
            };
        let (written, result) = insert(self, &primary);
        result.unwrap_or_else(|e| panic!("app2 writes to the primary: {e}"));
        for replica in self.labelled("replica") {
            let attempt = insert(self, &replica);
            refused(self, &replica, attempt);
        }
        self.kubectl(&[
            "-n",
            &self.ns,
            "annotate",
            &format!("myc/{}", self.cluster),
            "ebisu.dev/switchover=any",
        ]);
        self.wait("the switchover", Duration::from_secs(60), |m| {
            let now = m.primary();
            !now.is_empty() && now != primary
        });
        let new = self.wait_settled_with_replicas();
        let attempt = insert(self, &primary);
        refused(self, &primary, attempt);
        assert_eq!(
            self.root(
                &new,
                &format!("SELECT COUNT(*) FROM {table} WHERE id = {written}")
            ),
            "1",
            "app2's acknowledged write is on the new primary"
        );
        std::thread::sleep(Duration::from_secs(1));
        self.verify("GRANT ALL account", table, load, None);
        assert_eq!(
            self.count_events("Reseeding"),
            reseeds_before,
            "nothing was re-seeded:\n{}",
            self.events()
        );
        self.root(&new, &format!("DROP USER {GRANT_ALL_USER}@'%'"));
    }

    /// `kubectl label` moves `ebisu.dev/role=primary` to a replica and off
    /// the primary: the labels are put back, nothing is fenced or
    /// re-seeded, and the primary stays.
    pub fn a_moved_primary_label_is_put_back(&mut self, table: &str) {
        let primary = self.wait_settled_with_replicas();
        let before = (
            self.count_events("Reseeding"),
            self.count_events("ErrantTransactions"),
        );
        let replica = self
            .labelled("replica")
            .pop()
            .unwrap_or_else(|| panic!("a replica\n{}", self.diagnostics()));
        let load = self.load(table);
        std::thread::sleep(Duration::from_secs(2));
        let ns = self.ns.clone();
        self.kubectl(&[
            "-n",
            &ns,
            "label",
            "pod",
            &replica,
            "ebisu.dev/role=primary",
            "--overwrite",
        ]);
        self.kubectl(&["-n", &ns, "label", "pod", &primary, "ebisu.dev/role-"]);
        self.wait("the labels put back", Duration::from_secs(60), |m| {
            m.labelled("primary") == [primary.clone()] && m.labelled("replica").contains(&replica)
        });
        std::thread::sleep(Duration::from_secs(2));
        self.verify(
            &format!("primary label moved to {replica}"),
            table,
            load,
            None,
        );
        assert_eq!(self.primary(), primary, "the primary stayed");
        assert_eq!(
            (
                self.count_events("Reseeding"),
                self.count_events("ErrantTransactions")
            ),
            before,
            "nothing was re-seeded or found errant:\n{}",
            self.events()
        );
    }

    /// How many of the namespace's Events have `reason`.
    fn count_events(&self, reason: &str) -> usize {
        self.events()
            .lines()
            .filter(|l| l.starts_with(&format!("{reason}:")))
            .count()
    }

    /// `kubectl scale --replicas=1` and back to 3 under the writer: writes
    /// go on at one instance (the primary stops waiting for
    /// acknowledgements nobody can give) and the replicas rejoin.
    pub fn scaling_to_one_and_back_keeps_writing(&mut self, table: &str) {
        self.wait_settled_with_replicas();
        let load = self.load(table);
        std::thread::sleep(Duration::from_secs(2));
        let myc = format!("myc/{}", self.cluster);
        let ns = self.ns.clone();
        self.kubectl(&["-n", &ns, "scale", &myc, "--replicas=1"]);
        self.wait("one instance", Duration::from_secs(180), |m| {
            let prefix = format!("{}-", m.cluster);
            let pods: Vec<String> = m
                .get("pods", "{.items[*].metadata.name}")
                .split_whitespace()
                .filter(|p| p.starts_with(&prefix))
                .map(str::to_owned)
                .collect();
            m.myc("{.status.readyReplicas} {.status.phase}") == "1 Running"
                && pods == [format!("{prefix}0")]
        });
        let alone = Instant::now();
        std::thread::sleep(Duration::from_secs(3));
        self.kubectl(&["-n", &ns, "scale", &myc, "--replicas=3"]);
        self.wait_settled_with_replicas();
        std::thread::sleep(Duration::from_secs(2));
        let (writes, _) = self.verify("scale to one and back", table, load, None);
        assert!(
            writes
                .first_after(alone + Duration::from_secs(1))
                .is_some_and(|at| at < alone + Duration::from_secs(3)),
            "writes were acknowledged while one instance ran"
        );
    }
}
