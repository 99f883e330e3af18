//! The operator as a user times it on the local cluster, for MariaDB
//! (`examples/basic.yaml`) and then MySQL 9.7 (`examples/mysql.yaml`):
//! `kubectl apply` to 3 Ready (empty data), `kubectl scale` to 5 Ready with
//! 1 GiB of data on the primary (each new instance cloned from a replica:
//! mariadb-backup streamed by the donor's agent, or the CLONE plugin), and
//! the operator's memory and CPU once both clusters are settled.
//!
//!     bash tests/bench-operator.sh
//!
//! (release binaries in the cluster's images; needs root). Environment:
//! EBISU_BENCH_GIB data size (default 1), EBISU_BENCH_IDLE_SECS idle sample
//! length (default 120: four of the operator's settled reconciles, one
//! every 30 s), EBISU_BENCH_FLAVORS (default `mariadb,mysql`),
//! EBISU_IMAGE_PROFILE the cargo profile of the images the pods run.

#![allow(clippy::expect_used, clippy::unwrap_used)] // a benchmark fails loudly

use std::{
    path::Path,
    time::{Duration, Instant},
};

use ebisu_testcluster::{
    Kubectl, TestCluster,
    ebisu::{self, OPERATOR_NAMESPACE},
    kubectl::workspace_path,
    layout::Layout,
};

const STATE_DIR: &str = "/tmp/ebisu-testcluster-bench";
/// Rows of 1 MiB, inserted this many per statement (one transaction each).
const ROWS_PER_STATEMENT: u64 = 32;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// One flavor's run: its namespace, example and cluster name.
struct Run {
    flavor: &'static str,
    ns: &'static str,
    example: &'static str,
    cluster: &'static str,
}

const RUNS: [Run; 2] = [
    Run {
        flavor: "mariadb",
        ns: "bench",
        example: "examples/basic.yaml",
        cluster: "orders",
    },
    Run {
        flavor: "mysql",
        ns: "bench-mysql",
        example: "examples/mysql.yaml",
        cluster: "inventory",
    },
];

fn wait_running(k: &Kubectl, run: &Run, ready: u32) -> Duration {
    let started = Instant::now();
    ebisu::wait_running(k, run.ns, run.cluster, ready, Duration::from_secs(900))
        .unwrap_or_else(|e| panic!("{e}\n{}", ebisu::diagnostics(k, run.ns, run.cluster)));
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
fn cloned_bytes(k: &Kubectl, ns: &str, pod: &str) -> (u64, String) {
    let log = k.try_run(&["-n", ns, "logs", pod, "-c", "init"]).unwrap();
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
    println!(
        "pods run the images built with profile {}",
        std::env::var("EBISU_IMAGE_PROFILE").unwrap_or_else(|_| "image-dev".to_owned())
    );

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

    let flavors = std::env::var("EBISU_BENCH_FLAVORS").unwrap_or_else(|_| "mariadb,mysql".into());
    let mut rows_out: Vec<(String, String)> = Vec::new();
    for run in RUNS
        .iter()
        .filter(|r| flavors.split(',').any(|f| f.trim() == r.flavor))
    {
        rows_out.extend(measure(&k, &layout, run, gib));
    }

    // Sample the operator at rest: from then on it reconciles on changes
    // only, and otherwise looks at every server each 30 s.
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
    for (measure, value) in &rows_out {
        println!("| {measure} | {value} |");
    }
    println!(
        "| operator ({operator_pods}) idle CPU over {idle_secs} s, every cluster settled | {idle_cpu:.2} % of one core |"
    );
    println!(
        "| operator RSS idle (end / max) | {:.1} / {:.1} MiB |",
        rss_end as f64 / 1024.0,
        rss_max as f64 / 1024.0
    );

    runtime.block_on(cluster.down()).unwrap();
}

/// Apply, load, scale and settle one flavor's cluster; the table's rows.
fn measure(k: &Kubectl, layout: &Layout, run: &Run, gib: u64) -> Vec<(String, String)> {
    let (ns, name) = (run.ns, run.cluster);
    k.try_run(&["create", "namespace", ns]).unwrap();
    let example = workspace_path(run.example);
    k.try_run(&["-n", ns, "apply", "-f", &example.display().to_string()])
        .unwrap();
    let apply_to_3 = wait_running(k, run, 3);
    println!(
        "{}: apply -> 3 Ready: {:.1} s",
        run.flavor,
        apply_to_3.as_secs_f64()
    );

    // Data on the primary, replicated to both replicas before the scale.
    let pod = |ordinal: u32| format!("{name}-{ordinal}");
    let root = |pod: &str, sql: &str| ebisu::root_sql(k, layout, ns, name, pod, sql).unwrap();
    root(
        &pod(0),
        "CREATE DATABASE bench; CREATE TABLE bench.blobs (id INT AUTO_INCREMENT PRIMARY KEY, b LONGBLOB)",
    );
    let rows = gib * 1024;
    let started = Instant::now();
    for _ in 0..rows / ROWS_PER_STATEMENT {
        // A recursive CTE both servers understand; random bytes, so nothing
        // in the path can win by compressing.
        root(
            &pod(0),
            &format!(
                "INSERT INTO bench.blobs (b) WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < {ROWS_PER_STATEMENT}) SELECT REPEAT(RANDOM_BYTES(1024), 1024) FROM s"
            ),
        );
    }
    for replica in [pod(1), pod(2)] {
        k.wait(
            &format!("{rows} rows on {replica}"),
            Duration::from_secs(900),
            |_| {
                ebisu::root_sql(
                    k,
                    layout,
                    ns,
                    name,
                    &replica,
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
        "{}: {gib} GiB written and replicated to 2 replicas: {:.1} s",
        run.flavor,
        load.as_secs_f64()
    );

    k.try_run(&["-n", ns, "scale", &format!("myc/{name}"), "--replicas=5"])
        .unwrap();
    let scale_to_5 = wait_running(k, run, 5);
    println!(
        "{}: scale -> 5 Ready: {:.1} s",
        run.flavor,
        scale_to_5.as_secs_f64()
    );
    let clones: Vec<(String, (u64, String))> = [pod(3), pod(4)]
        .into_iter()
        .map(|p| {
            let cloned = cloned_bytes(k, ns, &p);
            (p, cloned)
        })
        .collect();

    // Settled: every pod carries its role and the cluster reports Healthy.
    k.wait("the cluster to settle", Duration::from_secs(120), |k| {
        let roles = k.jsonpath(ns, "pods", "{.items[*].metadata.labels.ebisu\\.dev/role}");
        let healthy = k.jsonpath(
            ns,
            &format!("myc/{name}"),
            "{.status.conditions[?(@.type==\"Healthy\")].status}",
        );
        let count = |role: &str| roles.split(' ').filter(|r| *r == role).count();
        (count("primary") == 1 && count("replica") == 4 && healthy == "True").then_some(())
    })
    .unwrap();

    let f = run.flavor;
    let mut out = vec![
        (
            format!("{f}: kubectl apply {} -> 3 Ready (empty data)", run.example),
            format!("{:.1} s", apply_to_3.as_secs_f64()),
        ),
        (
            format!("{f}: {gib} GiB written on the primary, replicated to 2 replicas"),
            format!("{:.1} s", load.as_secs_f64()),
        ),
        (
            format!("{f}: kubectl scale 3 -> 5 Ready with {gib} GiB"),
            format!("{:.1} s", scale_to_5.as_secs_f64()),
        ),
    ];
    for (pod, (bytes, donor)) in clones {
        out.push((
            format!("{f}: {pod} cloned"),
            format!(
                "{:.0} MB from {}",
                bytes as f64 / 1e6,
                donor
                    .trim_start_matches("http://")
                    .split('.')
                    .next()
                    .unwrap_or_default()
            ),
        ));
    }
    out
}
