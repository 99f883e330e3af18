//! The failover drill, measured: N drains of the primary's node and N
//! crashes of it (`testcluster node stop`), each under a writer that counts
//! an id only when its commit returned OK and a poller reading
//! `@@read_only` on every server every 0.2 s; then the same drills with
//! `spec.replication.failover: Manual` (no switchover, no failover) as the
//! baseline. Prints, per drill kind: writes blocked p50/p95/max (the
//! longest stretch without an acknowledged write), time from the node's
//! stop to a writable new primary, acknowledged writes lost, and looks
//! with two writable servers.
//!
//!     bash tests/bench-failover.sh
//!
//! (release binaries as the cluster's images; needs root). Environment:
//! EBISU_BENCH_DRILLS drills of each kind (default 10), EBISU_BENCH_OUTAGE_SECS
//! how long a baseline crash waits before the node returns (default 30),
//! EBISU_BIN_DIR the binaries the pods run, EBISU_BENCH_OPERATOR_LOG the
//! operator's log filter (its logs end up in the temp dir).

#![allow(clippy::expect_used, clippy::unwrap_used)] // a benchmark fails loudly

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use ebisu_testcluster::{Scenario, drill, ebisu, kubectl::workspace_path};

const STATE_DIR: &str = "/tmp/ebisu-testcluster-bench-failover";
const NS: &str = "bench";
const CLUSTER: &str = "orders";

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

const TABLE: &str = "bench.w";

struct Bench {
    s: Scenario,
}

/// One drill's numbers.
#[derive(Debug, Clone, Copy, Default)]
struct Sample {
    blocked: Duration,
    to_writable: Option<Duration>,
    lost: usize,
    two_writable: usize,
}

impl Bench {
    fn settle(&self) {
        self.s.wait_running(3);
        self.s
            .wait("one primary, two replicas", Duration::from_secs(300), |s| {
                s.labelled("primary").len() == 1
                    && s.labelled("replica").len() == 2
                    && s.writable_now().len() == 1
            });
    }

    fn lost(&self, writes: &drill::Writes) -> usize {
        let found = self
            .s
            .root(&self.s.primary(), &format!("SELECT id FROM {TABLE}"));
        drill::missing(writes, &found).len()
    }

    /// Stops the load and measures it from `started`.
    fn sample(
        &mut self,
        load: (drill::Writer, drill::Poller),
        started: Instant,
        old: &str,
    ) -> Sample {
        let (writer, poller) = load;
        let writes = writer.stop();
        let looks = poller.stop();
        let ended = Instant::now();
        self.s.next_id += writes.attempts + 1;
        Sample {
            blocked: writes.longest_gap(started, ended),
            to_writable: looks
                .new_primary_after(old, started)
                .map(|(at, _)| at.duration_since(started)),
            lost: self.lost(&writes),
            two_writable: looks.two_writable.len(),
        }
    }

    /// `kubectl drain` of the primary's node under load.
    fn drain(&mut self) -> Sample {
        self.settle();
        let old = self.s.primary();
        let node = self.s.node_of(&old);
        let load = self.s.load(TABLE);
        std::thread::sleep(Duration::from_secs(2));
        let started = Instant::now();
        self.s.kubectl(&[
            "drain",
            &node,
            "--ignore-daemonsets",
            "--delete-emptydir-data",
            "--timeout=300s",
        ]);
        self.settle();
        std::thread::sleep(Duration::from_secs(2));
        let sample = self.sample(load, started, &old);
        self.s.kubectl(&["uncordon", &node]);
        Sample {
            to_writable: None,
            ..sample
        }
    }

    /// `testcluster node stop` of the primary's node under load; the node
    /// returns once a new primary takes writes (or after `outage`).
    fn crash(&mut self, outage: Duration) -> Sample {
        self.settle();
        let old = self.s.primary();
        let node = self.s.node_of(&old);
        let load = self.s.load(TABLE);
        std::thread::sleep(Duration::from_secs(2));
        let stopped = Instant::now();
        self.s.node("stop", &node);
        let deadline = stopped + outage;
        while Instant::now() < deadline {
            let moved = self.s.primary();
            if !moved.is_empty() && moved != old {
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        std::thread::sleep(Duration::from_secs(3));
        self.s.node("start", &node);
        self.settle();
        std::thread::sleep(Duration::from_secs(2));
        self.sample(load, stopped, &old)
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * (sorted.len() as f64 - 1.0)).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

fn row(mode: &str, kind: &str, samples: &[Sample]) {
    let mut blocked: Vec<Duration> = samples.iter().map(|s| s.blocked).collect();
    blocked.sort();
    let mut writable: Vec<Duration> = samples.iter().filter_map(|s| s.to_writable).collect();
    writable.sort();
    let never = samples.iter().filter(|s| s.to_writable.is_none()).count();
    let secs = |d: Duration| format!("{:.2}", d.as_secs_f64());
    let to_writable = if kind == "drain" {
        "-".to_owned()
    } else if writable.is_empty() {
        "never (until the node returned)".to_owned()
    } else {
        format!(
            "{} / {} / {}{}",
            secs(percentile(&writable, 50.0)),
            secs(percentile(&writable, 95.0)),
            secs(*writable.last().unwrap()),
            if never > 0 {
                format!(" ({never} never)")
            } else {
                String::new()
            }
        )
    };
    println!(
        "| {mode} | {kind} | {} | {} / {} / {} | {to_writable} | {} | {} |",
        samples.len(),
        secs(percentile(&blocked, 50.0)),
        secs(percentile(&blocked, 95.0)),
        secs(*blocked.last().unwrap_or(&Duration::ZERO)),
        samples.iter().map(|s| s.lost).sum::<usize>(),
        samples.iter().map(|s| s.two_writable).sum::<usize>(),
    );
}

fn main() {
    let drills = env_u64("EBISU_BENCH_DRILLS", 10);
    let outage = Duration::from_secs(env_u64("EBISU_BENCH_OUTAGE_SECS", 30));
    let bin_dir = std::env::var_os("EBISU_BIN_DIR")
        .map_or_else(|| workspace_path("target/debug"), PathBuf::from);
    println!("pods run the binaries in {}", bin_dir.display());

    let s = Scenario::start(
        STATE_DIR,
        Path::new(env!("CARGO_BIN_EXE_testcluster")),
        NS,
        CLUSTER,
        false,
    );
    let log_level = std::env::var("EBISU_BENCH_OPERATOR_LOG").unwrap_or_else(|_| "info".to_owned());
    let log_setting = format!("logLevel={}", log_level.replace(',', "\\,"));
    s.install_operator(&[&log_setting]);
    s.apply_example("examples/basic.yaml");
    let primary = s.wait_running(3);
    s.root(
        &primary,
        "CREATE USER app@'%' IDENTIFIED BY 'app-password'; GRANT ALL ON bench.* TO app@'%'; \
         CREATE DATABASE bench; CREATE TABLE bench.w (id BIGINT PRIMARY KEY)",
    );
    let mut bench = Bench { s };

    let mut table = Vec::new();
    for mode in ["Automatic", "Manual"] {
        bench.s.patch(&format!(
            r#"{{"spec":{{"replication":{{"failover":"{mode}"}}}}}}"#
        ));
        if mode == "Manual" {
            // Pods pick the mode's template (no preStop hold) when they start again.
            for pod in ["orders-0", "orders-1", "orders-2"] {
                bench.settle();
                bench
                    .s
                    .kubectl(&["-n", NS, "delete", "pod", pod, "--grace-period=5"]);
            }
        }
        let mut drains = Vec::new();
        let mut crashes = Vec::new();
        for i in 0..drills {
            let sample = bench.drain();
            println!("{mode} drain {i}: {sample:?}");
            drains.push(sample);
            let sample = bench.crash(outage);
            println!("{mode} crash {i}: {sample:?}");
            crashes.push(sample);
        }
        table.push((mode, "drain", drains));
        table.push((mode, "node crash", crashes));
    }

    println!();
    println!(
        "| mode | drill | runs | writes blocked p50 / p95 / max (s) | node stop -> writable new primary p50 / p95 / max (s) | acknowledged writes lost | looks with two writable |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    for (mode, kind, samples) in &table {
        row(
            if *mode == "Manual" {
                "Manual (baseline)"
            } else {
                mode
            },
            kind,
            samples,
        );
    }
    let logs = std::env::temp_dir().join("ebisu-bench-failover-operator.log");
    let mut text = String::new();
    for pod in bench
        .s
        .k
        .jsonpath(
            ebisu::OPERATOR_NAMESPACE,
            "pods",
            "{.items[*].metadata.name}",
        )
        .split_whitespace()
    {
        text.push_str(
            &bench
                .s
                .k
                .try_run(&["-n", ebisu::OPERATOR_NAMESPACE, "logs", pod])
                .unwrap_or_default(),
        );
    }
    let _ = std::fs::write(&logs, text);
    println!("operator logs: {}", logs.display());
    bench.s.down();
}
