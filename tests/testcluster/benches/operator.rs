//! The operator as a user times it on the local cluster: `kubectl apply -f
//! examples/basic.yaml` to 3 Ready (empty data), `kubectl scale` to 5 Ready
//! with 1 GiB of data on the primary (each new instance cloned from a
//! replica), and the operator's memory and CPU while the cluster is settled.
//!
//!     bash tests/bench-operator.sh
//!
//! (release binaries as the cluster's images; needs root). Environment:
//! EBISU_BENCH_GIB data size (default 1), EBISU_BENCH_IDLE_SECS idle sample
//! length (default 120: four of the operator's settled reconciles, one
//! every 30 s), EBISU_BIN_DIR the binaries the pods run.

#![allow(clippy::expect_used, clippy::unwrap_used)] // a benchmark fails loudly

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use ebisu_testcluster::{
    Kubectl, TestCluster,
    ebisu::{self, OPERATOR_NAMESPACE},
    kubectl::workspace_path,
};

const STATE_DIR: &str = "/tmp/ebisu-testcluster-bench";
const NS: &str = "bench";
const CLUSTER: &str = "orders";
/// Rows of 1 MiB, inserted this many per statement (one transaction each).
const ROWS_PER_STATEMENT: u64 = 32;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn wait_running(k: &Kubectl, ready: u32) -> Duration {
    let started = Instant::now();
    ebisu::wait_running(k, NS, CLUSTER, ready, Duration::from_secs(900))
        .unwrap_or_else(|e| panic!("{e}\n{}", ebisu::diagnostics(k, NS, CLUSTER)));
    started.elapsed()
}

/// The operator's process: the one whose executable is `ebisu-operator`.
fn operator_pid() -> u32 {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .find(|pid| {
            std::fs::read_link(format!("/proc/{pid}/exe"))
                .is_ok_and(|exe| exe.file_name().is_some_and(|n| n == "ebisu-operator"))
        })
        .expect("no ebisu-operator process")
}

/// (user + system CPU seconds, resident set in KiB) of a process.
fn usage(pid: u32) -> (f64, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the parenthesised command name; utime and stime are 14 and 15.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap();
    // USER_HZ is 100 on Linux.
    (ticks as f64 / 100.0, rss)
}

/// Bytes the init container of `pod` reports it cloned.
fn cloned_bytes(k: &Kubectl, pod: &str) -> (u64, String) {
    let log = k.try_run(&["-n", NS, "logs", pod, "-c", "init"]).unwrap();
    let line = log
        .lines()
        .find(|l| l.contains("seeded from donor"))
        .unwrap_or_else(|| panic!("{pod} was not cloned:\n{log}"));
    let field = |name: &str| {
        line.split_whitespace()
            .find_map(|f| f.strip_prefix(&format!("{name}=")))
            .unwrap_or_default()
            .trim_matches('"')
            .to_owned()
    };
    (field("bytes").parse().unwrap_or(0), field("donor"))
}

fn main() {
    // `cargo bench` passes --bench; nothing to filter.
    let gib = env_u64("EBISU_BENCH_GIB", 1);
    let idle_secs = env_u64("EBISU_BENCH_IDLE_SECS", 120);
    let bin_dir = std::env::var_os("EBISU_BIN_DIR")
        .map_or_else(|| workspace_path("target/debug"), PathBuf::from);
    println!("pods run the binaries in {}", bin_dir.display());

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let started = Instant::now();
    let cluster = runtime
        .block_on(TestCluster::up(
            Path::new(STATE_DIR),
            Path::new(env!("CARGO_BIN_EXE_testcluster")),
        ))
        .unwrap();
    let cluster_up = started.elapsed();
    let layout = cluster.layout().clone();
    let k = Kubectl::new(cluster.kubeconfig());

    let started = Instant::now();
    ebisu::install_operator(&k, &["replicaCount=1"]).unwrap();
    let helm_install = started.elapsed();

    k.try_run(&["create", "namespace", NS]).unwrap();
    let basic = workspace_path("examples/basic.yaml");
    k.try_run(&["-n", NS, "apply", "-f", &basic.display().to_string()])
        .unwrap();
    let apply_to_3 = wait_running(&k, 3);
    println!("apply -> 3 Ready: {:.1} s", apply_to_3.as_secs_f64());

    // Data on the primary, replicated to both replicas before the scale.
    let root = |pod: &str, sql: &str| ebisu::root_sql(&k, &layout, NS, CLUSTER, pod, sql).unwrap();
    root(
        "orders-0",
        "CREATE DATABASE bench; CREATE TABLE bench.blobs (id INT AUTO_INCREMENT PRIMARY KEY, b LONGBLOB)",
    );
    let rows = gib * 1024;
    let started = Instant::now();
    for _ in 0..rows / ROWS_PER_STATEMENT {
        root(
            "orders-0",
            &format!(
                "INSERT INTO bench.blobs (b) SELECT REPEAT(RANDOM_BYTES(1024), 1024) FROM bench.seq_1_to_{ROWS_PER_STATEMENT}"
            ),
        );
    }
    for replica in ["orders-1", "orders-2"] {
        k.wait(
            &format!("{rows} rows on {replica}"),
            Duration::from_secs(900),
            |_| {
                ebisu::root_sql(
                    &k,
                    &layout,
                    NS,
                    CLUSTER,
                    replica,
                    "SELECT COUNT(*) FROM bench.blobs",
                )
                .is_ok_and(|n| n == rows.to_string())
                .then_some(())
            },
        )
        .unwrap();
    }
    let load = started.elapsed();
    println!(
        "{gib} GiB written and replicated to 2 replicas: {:.1} s",
        load.as_secs_f64()
    );

    k.try_run(&["-n", NS, "scale", &format!("myc/{CLUSTER}"), "--replicas=5"])
        .unwrap();
    let scale_to_5 = wait_running(&k, 5);
    println!("scale -> 5 Ready: {:.1} s", scale_to_5.as_secs_f64());
    let clones: Vec<(u64, String)> = ["orders-3", "orders-4"]
        .iter()
        .map(|pod| cloned_bytes(&k, pod))
        .collect();

    // Sample the operator at rest: every pod carries its role and the
    // cluster reports Healthy. From then on it reconciles on changes only,
    // and otherwise looks at every server each 30 s.
    k.wait("the cluster to settle", Duration::from_secs(120), |k| {
        let roles = k.jsonpath(NS, "pods", "{.items[*].metadata.labels.ebisu\\.dev/role}");
        let healthy = k.jsonpath(
            NS,
            &format!("myc/{CLUSTER}"),
            "{.status.conditions[?(@.type==\"Healthy\")].status}",
        );
        let count = |role: &str| roles.split(' ').filter(|r| *r == role).count();
        (count("primary") == 1 && count("replica") == 4 && healthy == "True").then_some(())
    })
    .unwrap();
    let pid = operator_pid();
    let (cpu_before, _) = usage(pid);
    let mut rss_max = 0;
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(idle_secs) {
        rss_max = rss_max.max(usage(pid).1);
        std::thread::sleep(Duration::from_secs(1));
    }
    let (cpu_after, rss_end) = usage(pid);
    let idle_cpu = (cpu_after - cpu_before) / started.elapsed().as_secs_f64() * 100.0;
    let operator_pods = k.jsonpath(OPERATOR_NAMESPACE, "pods", "{.items[*].metadata.name}");

    println!();
    println!("| measure | value |");
    println!("| --- | --- |");
    println!("| testcluster up | {:.1} s |", cluster_up.as_secs_f64());
    println!(
        "| helm install (operator Ready) | {:.1} s |",
        helm_install.as_secs_f64()
    );
    println!(
        "| kubectl apply basic.yaml -> 3 Ready (empty data) | {:.1} s |",
        apply_to_3.as_secs_f64()
    );
    println!(
        "| {gib} GiB written on the primary, replicated to 2 replicas | {:.1} s |",
        load.as_secs_f64()
    );
    println!(
        "| kubectl scale 3 -> 5 Ready with {gib} GiB | {:.1} s |",
        scale_to_5.as_secs_f64()
    );
    for (pod, (bytes, donor)) in ["orders-3", "orders-4"].iter().zip(&clones) {
        println!(
            "| {pod} cloned | {:.0} MB from {} |",
            *bytes as f64 / 1e6,
            donor
                .trim_start_matches("http://")
                .split('.')
                .next()
                .unwrap_or_default()
        );
    }
    println!(
        "| operator ({operator_pods}) idle CPU over {idle_secs} s | {idle_cpu:.2} % of one core |"
    );
    println!(
        "| operator RSS idle (end / max) | {:.1} / {:.1} MiB |",
        rss_end as f64 / 1024.0,
        rss_max as f64 / 1024.0
    );

    runtime.block_on(cluster.down()).unwrap();
}
