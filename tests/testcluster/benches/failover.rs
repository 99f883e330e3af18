//! The failover drills, measured: each kind of fault of the primary
//! ([`Fault::ALL`]: a drain of its node, the operator cut off from it, its
//! pod cut off, its server frozen and resumed, its server killed, its node
//! stopped and started) N times per flavor, each under a writer that counts
//! an id only when its commit returned OK and a poller reading
//! `@@read_only` on every server every 0.2 s, each checked like the e2e
//! drills (nothing acknowledged lost, never two writable servers, one now).
//! Prints, per flavor and kind: the longest stretch without an acknowledged
//! write p50/p95/max, the time from the fault to a writable new primary
//! (when the primary moved), acknowledged writes lost and looks with two
//! writable servers.
//!
//!     bash tests/bench-failover.sh
//!
//! (release binaries in the cluster's images; needs root). Environment:
//! EBISU_BENCH_DRILLS drills of each kind (default 5), EBISU_BENCH_OUTAGE_SECS
//! how long each fault is held (default 20), EBISU_BENCH_FLAVORS
//! (`mariadb,mysql` by default), EBISU_BENCH_FAULTS which kinds (their
//! names with dashes, `server-killed,pod-isolated`; every kind by default),
//! EBISU_IMAGE_PROFILE the cargo profile of the images the pods run,
//! EBISU_BENCH_OPERATOR_LOG the operator's log filter (its logs end up in
//! the temp dir).

#![allow(clippy::expect_used, clippy::unwrap_used)] // a benchmark fails loudly

use std::{path::Path, time::Duration};

use ebisu_testcluster::{
    Scenario,
    drills::{DrillReport, Fault},
    ebisu,
};

const STATE_DIR: &str = "/tmp/ebisu-testcluster-bench-failover";

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * (sorted.len() as f64 - 1.0)).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

fn secs(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64())
}

fn triple(mut values: Vec<Duration>) -> String {
    if values.is_empty() {
        return "-".to_owned();
    }
    values.sort();
    format!(
        "{} / {} / {}",
        secs(percentile(&values, 50.0)),
        secs(percentile(&values, 95.0)),
        secs(*values.last().unwrap())
    )
}

fn row(flavor: &str, fault: Fault, reports: &[DrillReport]) {
    let moved: Vec<Duration> = reports.iter().filter_map(|r| r.to_new_primary).collect();
    println!(
        "| {flavor} | {} | {} | {} | {} | {} | {} |",
        fault.name(),
        reports.len(),
        triple(reports.iter().map(|r| r.blocked).collect()),
        if moved.is_empty() {
            "- (stayed)".to_owned()
        } else {
            format!("{} ({} moved)", triple(moved.clone()), moved.len())
        },
        // Every drill verified these; a failure would have panicked.
        0,
        reports
            .iter()
            .map(|r| r.looks.two_writable.len())
            .sum::<usize>(),
    );
}

fn main() {
    let drills = env_u64("EBISU_BENCH_DRILLS", 5);
    let hold = Duration::from_secs(env_u64("EBISU_BENCH_OUTAGE_SECS", 20));
    let flavors = std::env::var("EBISU_BENCH_FLAVORS").unwrap_or_else(|_| "mariadb,mysql".into());
    let faults: Vec<Fault> = match std::env::var("EBISU_BENCH_FAULTS") {
        Ok(names) => Fault::ALL
            .into_iter()
            .filter(|f| {
                names
                    .split(',')
                    .any(|n| n.trim() == f.name().replace(' ', "-"))
            })
            .collect(),
        Err(_) => Fault::ALL.to_vec(),
    };
    let mut s = Scenario::start_bench(STATE_DIR, Path::new(env!("CARGO_BIN_EXE_testcluster")));
    let log_level = std::env::var("EBISU_BENCH_OPERATOR_LOG").unwrap_or_else(|_| "info".to_owned());
    let log_setting = format!("logLevel={}", log_level.replace(',', "\\,"));
    s.install_operator(&[&log_setting]);

    let mut table = Vec::new();
    for flavor in flavors.split(',').map(str::trim).filter(|f| !f.is_empty()) {
        s.bench_cluster(flavor);
        let ns = s.ns.clone();
        for fault in faults.iter().copied() {
            let mut reports = Vec::new();
            for i in 0..drills {
                let report = s.drill(fault, "bench.w", hold);
                println!(
                    "{flavor} {} {i}: blocked {:?}, new primary after {:?}, two writable {}",
                    fault.name(),
                    report.blocked,
                    report.to_new_primary,
                    report.looks.two_writable.len()
                );
                reports.push(report);
            }
            table.push((flavor.to_owned(), fault, reports));
        }
        s.kubectl(&["delete", "namespace", &ns, "--wait=true", "--timeout=300s"]);
    }

    println!();
    println!(
        "| flavor | fault | runs | longest stretch without an acknowledged write p50 / p95 / max (s) | fault -> writable new primary p50 / p95 / max (s) | acknowledged writes lost | looks with two writable |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    for (flavor, fault, reports) in &table {
        row(flavor, *fault, reports);
    }
    let logs = std::env::temp_dir().join("ebisu-bench-failover-operator.log");
    let mut text = String::new();
    for pod in
        s.k.jsonpath(
            ebisu::OPERATOR_NAMESPACE,
            "pods",
            "{.items[*].metadata.name}",
        )
        .split_whitespace()
    {
        text.push_str(&s.operator_log(pod));
    }
    let _ = std::fs::write(&logs, text);
    println!("operator logs: {}", logs.display());
    s.down();
}
