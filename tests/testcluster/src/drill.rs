//! Failover drills as a user measures them: a [`Writer`] that commits
//! autocommit INSERTs through the primary Service (resolved the way pods
//! resolve it, through the cluster hosts file) and counts an id only when
//! its commit returned OK, and a [`Poller`] that reads `@@read_only` on
//! every server of the cluster every 0.2 s. Both run on their own thread
//! until stopped, and report what they saw.

use std::{
    io::Read,
    path::PathBuf,
    process::{Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

/// How an application reaches the cluster.
#[derive(Debug, Clone)]
pub struct App {
    /// The cluster hosts file of the namespace.
    pub hosts: PathBuf,
    /// The cluster's name (pods are `<cluster>-<n>`).
    pub cluster: String,
    /// Application user.
    pub user: String,
    /// Its password.
    pub password: String,
    /// Connect with TLS (MySQL: its accounts use caching_sha2_password,
    /// whose first login needs an encrypted connection).
    pub tls: bool,
}

impl App {
    /// The address `name` resolves to now, if any.
    pub fn resolve(&self, name: &str) -> Option<String> {
        let hosts = std::fs::read_to_string(&self.hosts).ok()?;
        hosts
            .lines()
            .find(|line| line.split_whitespace().skip(1).any(|n| n == name))
            .and_then(|line| line.split_whitespace().next().map(str::to_owned))
    }

    /// Every instance's address, by pod name.
    pub fn servers(&self) -> Vec<(String, String)> {
        (0..9)
            .filter_map(|n| {
                let pod = format!("{}-{n}", self.cluster);
                let ip = self.resolve(&format!("{pod}.{}", self.cluster))?;
                Some((pod, ip))
            })
            .collect()
    }

    /// Runs `statement` at `host`, waiting at most `limit`; the client is
    /// killed after that (a commit waiting for acknowledgements hangs).
    pub fn sql(&self, host: &str, statement: &str, limit: Duration) -> Result<String, String> {
        let mut child = Command::new("mariadb")
            .env("MYSQL_PWD", &self.password)
            .arg(if self.tls { "--ssl" } else { "--skip-ssl" })
            .args(["--connect-timeout=1", "-N", "-B", "-h", host])
            .arg(format!("-u{}", self.user))
            .args(["-e", statement])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| e.to_string())?;
        let deadline = Instant::now() + limit;
        loop {
            match child.try_wait() {
                Ok(Some(status)) => {
                    let mut out = String::new();
                    let mut err = String::new();
                    if let Some(mut o) = child.stdout.take() {
                        let _ = o.read_to_string(&mut out);
                    }
                    if let Some(mut e) = child.stderr.take() {
                        let _ = e.read_to_string(&mut err);
                    }
                    return if status.success() {
                        Ok(out.trim().to_owned())
                    } else {
                        Err(err.trim().to_owned())
                    };
                }
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(2));
                }
                Ok(None) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(format!("no answer within {limit:?}"));
                }
                Err(e) => return Err(e.to_string()),
            }
        }
    }
}

/// What a writer saw.
#[derive(Debug, Clone, Default)]
pub struct Writes {
    /// Ids whose commit returned OK, with when.
    pub acked: Vec<(u64, Instant)>,
    /// Attempts made.
    pub attempts: u64,
}

impl Writes {
    /// Checks a restore that found the ids `found`: it holds every write
    /// acknowledged when `before` says, none acknowledged when `after`
    /// says, and is a prefix of the writes; the ids of each.
    pub fn restored_exactly(
        &self,
        found: &std::collections::BTreeSet<u64>,
        point: &str,
        before: impl Fn(Instant) -> bool,
        after: impl Fn(Instant) -> bool,
    ) -> (Vec<u64>, Vec<u64>) {
        let ids = |when: &dyn Fn(Instant) -> bool| -> Vec<u64> {
            self.acked
                .iter()
                .filter(|(_, at)| when(*at))
                .map(|(id, _)| *id)
                .collect()
        };
        let (before, after) = (ids(&before), ids(&after));
        assert!(
            !before.is_empty() && !after.is_empty(),
            "writes before and after {point}"
        );
        let lost: Vec<&u64> = before.iter().filter(|id| !found.contains(id)).collect();
        assert!(
            lost.is_empty(),
            "acknowledged before {point} and not restored: {lost:?}"
        );
        let late: Vec<&u64> = after.iter().filter(|id| found.contains(id)).collect();
        assert!(
            late.is_empty(),
            "acknowledged after {point} yet restored: {late:?}"
        );
        let last = found.iter().max().copied().unwrap_or_default();
        let gaps: Vec<u64> = self
            .acked
            .iter()
            .map(|(id, _)| *id)
            .filter(|id| *id <= last && !found.contains(id))
            .collect();
        assert!(
            gaps.is_empty(),
            "the restore is a prefix of the acknowledged writes: {gaps:?} missing"
        );
        (before, after)
    }

    /// The longest stretch without an acknowledged write between `from`
    /// and `to` (both ends count as acknowledgements).
    pub fn longest_gap(&self, from: Instant, to: Instant) -> Duration {
        let mut last = from;
        let mut longest = Duration::ZERO;
        for (_, at) in self.acked.iter().filter(|(_, at)| *at >= from && *at <= to) {
            longest = longest.max(at.duration_since(last));
            last = *at;
        }
        longest.max(to.duration_since(last))
    }

    /// The first acknowledged write after `instant`.
    pub fn first_after(&self, instant: Instant) -> Option<Instant> {
        self.acked
            .iter()
            .map(|(_, at)| *at)
            .find(|at| *at > instant)
    }
}

/// Inserts ids 1, 2, 3, ... into `table` (one column `id`) through the
/// primary Service until stopped.
#[derive(Debug)]
pub struct Writer {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<Writes>,
}

impl Writer {
    /// Starts writing; ids start after `first`.
    pub fn start(app: &App, service: &str, table: &str, first: u64) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let (app, service, table, flag) = (
            app.clone(),
            service.to_owned(),
            table.to_owned(),
            stop.clone(),
        );
        let handle = std::thread::spawn(move || {
            let mut writes = Writes::default();
            let mut id = first;
            while !flag.load(Ordering::Relaxed) {
                id += 1;
                writes.attempts += 1;
                let Some(ip) = app.resolve(&service) else {
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                };
                let insert = format!("INSERT INTO {table} (id) VALUES ({id})");
                match app.sql(&ip, &insert, Duration::from_secs(2)) {
                    Ok(_) => writes.acked.push((id, Instant::now())),
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
            writes
        });
        Self { stop, handle }
    }

    /// Stops and reports.
    pub fn stop(self) -> Writes {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().unwrap_or_default()
    }
}

/// What a poller saw.
#[derive(Debug, Clone, Default)]
pub struct Looks {
    /// Poll rounds.
    pub rounds: u64,
    /// Rounds in which two or more servers were writable, with who.
    pub two_writable: Vec<Vec<String>>,
    /// When each round was taken and who was writable then.
    pub writable: Vec<(Instant, Vec<String>)>,
}

impl Looks {
    /// The first time `pod` was seen writable after `instant`.
    pub fn writable_after(&self, pod: &str, instant: Instant) -> Option<Instant> {
        self.writable
            .iter()
            .find(|(at, who)| *at > instant && who.iter().any(|p| p == pod))
            .map(|(at, _)| *at)
    }

    /// The first time any server other than `old` was seen writable after `instant`.
    pub fn new_primary_after(&self, old: &str, instant: Instant) -> Option<(Instant, String)> {
        self.writable
            .iter()
            .filter(|(at, _)| *at > instant)
            .find_map(|(at, who)| who.iter().find(|p| *p != old).map(|p| (*at, p.clone())))
    }
}

/// Reads `@@read_only` on every server every 0.2 s until stopped.
#[derive(Debug)]
pub struct Poller {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<Looks>,
}

impl Poller {
    /// Starts polling.
    pub fn start(app: &App) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let (app, flag) = (app.clone(), stop.clone());
        let handle = std::thread::spawn(move || {
            let mut looks = Looks::default();
            while !flag.load(Ordering::Relaxed) {
                let started = Instant::now();
                let asks: Vec<_> = app
                    .servers()
                    .into_iter()
                    .map(|(pod, ip)| {
                        let app = app.clone();
                        std::thread::spawn(move || {
                            let answer = app.sql(
                                &ip,
                                "SELECT @@global.read_only",
                                Duration::from_millis(800),
                            );
                            (pod, answer)
                        })
                    })
                    .collect();
                let writable: Vec<String> = asks
                    .into_iter()
                    .filter_map(|h| h.join().ok())
                    .filter(|(_, answer)| answer.as_deref() == Ok("0"))
                    .map(|(pod, _)| pod)
                    .collect();
                looks.rounds += 1;
                if writable.len() > 1 {
                    looks.two_writable.push(writable.clone());
                }
                looks.writable.push((started, writable));
                std::thread::sleep(Duration::from_millis(200).saturating_sub(started.elapsed()));
            }
            looks
        });
        Self { stop, handle }
    }

    /// Stops and reports.
    pub fn stop(self) -> Looks {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().unwrap_or_default()
    }
}

/// What every drill promises, checked on what the writer and the poller
/// saw, the ids `found` on the primary, and who is `writable` now:
///
/// - the writer got through (more than ten acknowledged writes);
/// - no acknowledged write is lost: every id is in `found`;
/// - never two writable servers at any look, except `thawed` (a server
///   frozen, alone or with its node, and resumed as it was) beside one
///   other for at most two looks, the moment its agent's fence takes to
///   show;
/// - exactly one writable server now, the primary.
pub fn verify(
    writes: &Writes,
    looks: &Looks,
    found: &str,
    primary: &str,
    writable: &[String],
    thawed: Option<&str>,
) -> Result<(), String> {
    if writes.acked.len() <= 10 {
        return Err(format!(
            "the writer did not get through ({} of {} acknowledged)",
            writes.acked.len(),
            writes.attempts
        ));
    }
    let lost = missing(writes, found);
    if !lost.is_empty() {
        return Err(format!("acknowledged writes lost: {lost:?}"));
    }
    let (tolerated, unexplained): (Vec<_>, Vec<_>) = looks
        .two_writable
        .iter()
        .partition(|who| who.len() == 2 && thawed.is_some_and(|t| who.iter().any(|p| p == t)));
    if !unexplained.is_empty() || tolerated.len() > 2 {
        return Err(format!(
            "two writable servers in {} of {} looks: {:?}",
            looks.two_writable.len(),
            looks.rounds,
            looks.two_writable
        ));
    }
    if writable != [primary] {
        return Err(format!(
            "exactly one writable server, the primary {primary}, is expected now; writable: {writable:?}"
        ));
    }
    Ok(())
}

/// Ids in `acked` missing from the `found` list (what a check query returned).
pub fn missing(acked: &Writes, found: &str) -> Vec<u64> {
    let present: std::collections::BTreeSet<u64> = found
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    acked
        .acked
        .iter()
        .map(|(id, _)| *id)
        .filter(|id| !present.contains(id))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_longest_gap_counts_both_ends() {
        let start = Instant::now();
        let at = |ms| start + Duration::from_millis(ms);
        let writes = Writes {
            acked: vec![(1, at(100)), (2, at(150)), (3, at(900))],
            attempts: 3,
        };
        assert_eq!(
            writes.longest_gap(at(0), at(1000)),
            Duration::from_millis(750)
        );
        assert_eq!(
            writes.longest_gap(at(0), at(2000)),
            Duration::from_millis(1100)
        );
        assert_eq!(writes.first_after(at(150)), Some(at(900)));
    }

    #[test]
    fn missing_lists_acknowledged_ids_not_found() {
        let writes = Writes {
            acked: vec![
                (1, Instant::now()),
                (2, Instant::now()),
                (5, Instant::now()),
            ],
            attempts: 5,
        };
        assert_eq!(missing(&writes, "1\n5\n7\n"), vec![2]);
    }

    fn acked(ids: std::ops::RangeInclusive<u64>) -> Writes {
        Writes {
            acked: ids.map(|id| (id, Instant::now())).collect(),
            attempts: 20,
        }
    }

    fn looks(two: Vec<Vec<&str>>) -> Looks {
        Looks {
            rounds: 50,
            two_writable: two
                .into_iter()
                .map(|w| w.into_iter().map(str::to_owned).collect())
                .collect(),
            writable: Vec::new(),
        }
    }

    #[test]
    fn a_drill_holds_only_with_every_write_one_writable_server_and_no_split() {
        let found: String = (1..=12).map(|i| format!("{i}\n")).collect();
        let primary = vec!["db-1".to_owned()];
        assert_eq!(
            verify(
                &acked(1..=12),
                &looks(vec![]),
                &found,
                "db-1",
                &primary,
                None
            ),
            Ok(())
        );
        let lost = verify(
            &acked(1..=13),
            &looks(vec![]),
            &found,
            "db-1",
            &primary,
            None,
        );
        assert!(lost.is_err_and(|e| e.contains("lost: [13]")));
        let starved = verify(
            &acked(1..=3),
            &looks(vec![]),
            &found,
            "db-1",
            &primary,
            None,
        );
        assert!(starved.is_err_and(|e| e.contains("did not get through")));
        let split = looks(vec![vec!["db-0", "db-1"]]);
        assert!(verify(&acked(1..=12), &split, &found, "db-1", &primary, None).is_err());
        assert_eq!(
            verify(
                &acked(1..=12),
                &split,
                &found,
                "db-1",
                &primary,
                Some("db-0")
            ),
            Ok(()),
            "a thawed old primary, briefly"
        );
        let long = looks(vec![vec!["db-0", "db-1"]; 3]);
        assert!(
            verify(
                &acked(1..=12),
                &long,
                &found,
                "db-1",
                &primary,
                Some("db-0")
            )
            .is_err()
        );
        let two_now = vec!["db-0".to_owned(), "db-1".to_owned()];
        assert!(
            verify(
                &acked(1..=12),
                &looks(vec![]),
                &found,
                "db-1",
                &two_now,
                None
            )
            .is_err_and(|e| e.contains("exactly one writable"))
        );
        assert!(verify(&acked(1..=12), &looks(vec![]), &found, "db-1", &[], None).is_err());
    }
}
