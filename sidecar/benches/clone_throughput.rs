//! Clone throughput: a real MariaDB data directory of at least 1 GiB streamed
//! through the agent (mariadb-backup -> framed HTTP -> mbstream -x into a new
//! directory) against raw pipes of the same data directory in the same run:
//! `tar -cf - | cat > /dev/null` (read only) and `tar -cf - | tar -xf -`
//! (read and write, like a clone). Then the same data on MySQL 9.7: a new
//! instance's `ebisu-sidecar init` cloning it with the CLONE plugin (a
//! temporary server, the clone over TLS, the move into place) against
//! `tar | tar -x` of that data directory. Prints MB/s and the ratios.
//!
//!     cargo bench -p ebisu-sidecar --bench clone_throughput
//!
//! EBISU_BENCH_GIB sets the data size (default 1); EBISU_BENCH_FLAVORS
//! which servers run (default `mariadb,mysql`).

#![allow(clippy::expect_used, clippy::unwrap_used)] // a benchmark fails loudly

#[path = "../tests/support/mod.rs"]
mod support;

use std::{
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use ebisu_api::Flavor;
use ebisu_sidecar::init::{Settings, clone_client};
use mysql_async::prelude::Queryable;
use support::{CLONE_TOKEN, Cluster, Instance, Server, log_of, promote};

fn dir_bytes(dir: &Path) -> u64 {
    let out = Command::new("du").arg("-sb").arg(dir).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

fn shell(script: &str) -> Duration {
    let start = Instant::now();
    let status = Command::new("bash").arg("-c").arg(script).status().unwrap();
    assert!(status.success(), "{script}");
    start.elapsed()
}

fn mb_s(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / 1e6 / d.as_secs_f64()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// The agent's stream read and decoded but not written anywhere: the same
/// work as `tar | cat`.
async fn stream_and_discard(agent_url: &str) -> Duration {
    let start = Instant::now();
    let mut response = reqwest::Client::new()
        .get(format!("{agent_url}/clone"))
        .bearer_auth(CLONE_TOKEN)
        .send()
        .await
        .unwrap();
    let mut decoder = ebisu_sidecar::clone_stream::Decoder::default();
    while let Some(chunk) = response.chunk().await.unwrap() {
        decoder.feed(&chunk);
        while decoder.next_item().unwrap().is_some() {}
    }
    decoder.finish().unwrap();
    start.elapsed()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let gib: u64 = std::env::var("EBISU_BENCH_GIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let flavors = std::env::var("EBISU_BENCH_FLAVORS").unwrap_or_else(|_| "mariadb,mysql".into());
    for flavor in flavors.split(',') {
        match flavor.trim() {
            "mariadb" => mariadb(gib).await,
            "mysql" => mysql(gib).await,
            other => panic!("EBISU_BENCH_FLAVORS: unknown flavor {other:?} (mariadb, mysql)"),
        }
    }
}

/// A primary of `server` holding at least `gib` GiB of random bytes.
async fn loaded_primary(cluster: &Cluster, gib: u64) -> (Instance, u64) {
    let mut primary = cluster.instance(0);
    let out = primary.init(cluster, &[], 60);
    assert!(out.status.success(), "{}", log_of(&out));
    primary.start_mysqld(cluster);
    primary.start_agent(cluster, None);
    promote(&primary, cluster).await;

    eprintln!("{:?}: loading {gib} GiB ...", cluster.server);
    let load = Instant::now();
    let mut conn = primary.root(cluster).await;
    // Bulk data stays out of the binary log so the data directory is the data.
    conn.query_drop("SET sql_log_bin = 0").await.unwrap();
    if cluster.server == Server::MySql {
        conn.query_drop("SET SESSION cte_max_recursion_depth = 2048")
            .await
            .unwrap();
    }
    conn.query_drop("SET SESSION group_concat_max_len = 2097152")
        .await
        .unwrap();
    conn.query_drop("CREATE DATABASE bench").await.unwrap();
    conn.query_drop("USE bench").await.unwrap();
    conn.query_drop(
        "CREATE TABLE bench.blobs (id INT AUTO_INCREMENT PRIMARY KEY, b LONGBLOB) ENGINE=InnoDB",
    )
    .await
    .unwrap();
    // 1024 rows: 32 x 32 from a recursive CTE both servers understand,
    // within their default recursion bounds (1000 on both: MariaDB's
    // max_recursive_iterations, MySQL's cte_max_recursion_depth).
    let rows =
        "WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < 32) SELECT";
    let from = "FROM s AS a CROSS JOIN s AS b";
    // Random bytes, so nothing in the path can win by compressing.
    conn.query_drop(format!(
        "INSERT INTO bench.blobs (b) {rows} RANDOM_BYTES(1024) {from}"
    ))
    .await
    .unwrap();
    conn.query_drop(format!(
        "UPDATE bench.blobs SET b = ({rows} GROUP_CONCAT(RANDOM_BYTES(1024) SEPARATOR '') {from})"
    ))
    .await
    .unwrap();
    // 1024 rows of 1 MiB make the first GiB; each further round adds one.
    for _ in 1..gib {
        conn.query_drop("INSERT INTO bench.blobs (b) SELECT b FROM bench.blobs LIMIT 1024")
            .await
            .unwrap();
    }
    conn.query_drop("FLUSH TABLES").await.unwrap();
    drop(conn);
    let bytes = dir_bytes(&primary.data_dir());
    eprintln!(
        "data directory: {:.2} GiB, loaded in {:.0?}",
        bytes as f64 / f64::from(1 << 30),
        load.elapsed()
    );
    assert!(
        bytes >= gib << 30,
        "data set is {bytes} bytes, below {gib} GiB"
    );
    (primary, bytes)
}

async fn mariadb(gib: u64) {
    let cluster = Cluster::new("bench");
    let (primary, bytes) = loaded_primary(&cluster, gib).await;
    let data = primary.data_dir();

    let scratch = cluster.root.path().join("bench-out");
    let (mut raw_read, mut raw_copy, mut agent) = (Vec::new(), Vec::new(), Vec::new());
    let mut agent_discard = Vec::new();
    let mut tool_alone = Vec::new();
    let defaults = cluster.root.path().join("bench-backup.cnf");
    std::fs::write(
        &defaults,
        ebisu_sidecar::backup_tool::defaults_file(
            &std::fs::read_to_string(primary.dir.join("server/my.cnf")).unwrap(),
            "ebisu_clone",
            &cluster.credential(ebisu_api::names::secret_keys::CLONE_PASSWORD),
            &primary.dir.join("run/mysqld.sock"),
        ),
    )
    .unwrap();
    // Warm the page cache once so every variant reads the same way.
    shell(&format!(
        "tar -C {} -cf - . | cat > /dev/null",
        data.display()
    ));
    for round in 1..=3 {
        let d = shell(&format!(
            "tar -C {} -cf - . | cat > /dev/null",
            data.display()
        ));
        raw_read.push(mb_s(bytes, d));

        let d = stream_and_discard(&primary.agent_url()).await;
        agent_discard.push(mb_s(bytes, d));

        let target = cluster.root.path().join("bench-tool-target");
        let d = shell(&format!(
            "mariadb-backup --defaults-file={} --backup --stream=xbstream --target-dir={} 2>/dev/null | cat > /dev/null; rm -rf {}",
            defaults.display(),
            target.display(),
            target.display()
        ));
        tool_alone.push(mb_s(bytes, d));

        raw_copy.push(mb_s(bytes, tar_copy(&data, &scratch)));

        let settings = Settings {
            family: Flavor::Mariadb,
            data_dir: scratch.clone(),
            server_config: primary.dir.join("server/my.cnf"),
            run_dir: primary.dir.join("run"),
            peers: vec![],
            donor_preference: ebisu_api::DonorPreference::PreferReplica,
            bootstrap_allowed: false,
            donor_timeout: Duration::from_secs(60),
            clone_rate_limit: None,
            application: None,
        };
        let start = Instant::now();
        let streamed = clone_client::receive(&settings, &primary.agent_url(), CLONE_TOKEN)
            .await
            .unwrap();
        shell(&format!("sync -f {}", scratch.display()));
        let d = start.elapsed();
        agent.push(mb_s(bytes, d));
        std::fs::remove_dir_all(&scratch).unwrap();
        eprintln!(
            "round {round}: raw read {:.0} MB/s, mariadb-backup|cat {:.0} MB/s, agent read {:.0} MB/s, raw copy {:.0} MB/s, agent {:.0} MB/s ({} bytes streamed)",
            raw_read.last().unwrap(),
            tool_alone.last().unwrap(),
            agent_discard.last().unwrap(),
            raw_copy.last().unwrap(),
            agent.last().unwrap(),
            streamed
        );
    }
    let (read, copy, through) = (median(raw_read), median(raw_copy), median(agent));
    let through_read = median(agent_discard);
    let tool = median(tool_alone);
    println!(
        "clone_throughput: data {:.2} GiB",
        bytes as f64 / f64::from(1 << 30)
    );
    println!("clone_throughput: raw pipe  tar|cat      {read:.0} MB/s");
    println!("clone_throughput: tool      mariadb-backup|cat   {tool:.0} MB/s");
    println!("clone_throughput: agent     backup->http->decode, discarded  {through_read:.0} MB/s");
    println!("clone_throughput: raw copy  tar|tar -x   {copy:.0} MB/s");
    println!("clone_throughput: agent     backup->http->mbstream -x  {through:.0} MB/s");
    println!(
        "clone_throughput: ratio read-only agent/tar|cat {:.2}, agent/mariadb-backup|cat {:.2}; copy agent/tar|tar {:.2}",
        through_read / read,
        through_read / tool,
        through / copy
    );
}

/// How long `tar | tar -x` of `data` into a new `scratch` takes, synced.
fn tar_copy(data: &std::path::Path, scratch: &std::path::Path) -> Duration {
    std::fs::create_dir_all(scratch).unwrap();
    let d = shell(&format!(
        "tar -C {} -cf - . | tar -C {} -xf -; sync -f {}",
        data.display(),
        scratch.display(),
        scratch.display()
    ));
    std::fs::remove_dir_all(scratch).unwrap();
    d
}

/// The CLONE plugin through `ebisu-sidecar init` (what a new MySQL
/// instance runs) against `tar | tar -x` of the donor's data directory.
async fn mysql(gib: u64) {
    let cluster = Cluster::of(Server::MySql, "bench");
    let (primary, bytes) = loaded_primary(&cluster, gib).await;
    let data = primary.data_dir();
    let scratch = cluster.root.path().join("bench-out");
    let (mut raw_copy, mut clone) = (Vec::new(), Vec::new());
    shell(&format!(
        "tar -C {} -cf - . | cat > /dev/null",
        data.display()
    ));
    for round in 1..=3 {
        raw_copy.push(mb_s(bytes, tar_copy(&data, &scratch)));

        let recipient = cluster.instance(round);
        let start = Instant::now();
        let out = recipient.init(&cluster, &[primary.agent_url()], 300);
        shell(&format!("sync -f {}", recipient.data_dir().display()));
        let d = start.elapsed();
        assert!(out.status.success(), "{}", log_of(&out));
        clone.push(mb_s(bytes, d));
        eprintln!(
            "round {round}: raw copy {:.0} MB/s, CLONE via init {:.0} MB/s ({:.1} s)",
            raw_copy.last().unwrap(),
            clone.last().unwrap(),
            d.as_secs_f64()
        );
        std::fs::remove_dir_all(recipient.data_dir()).unwrap();
    }
    let (copy, through) = (median(raw_copy), median(clone));
    println!(
        "clone_throughput: MySQL 9.7 data {:.2} GiB",
        bytes as f64 / f64::from(1 << 30)
    );
    println!("clone_throughput: raw copy  tar|tar -x   {copy:.0} MB/s");
    println!(
        "clone_throughput: CLONE     init (temporary server, clone over TLS, move)  {through:.0} MB/s"
    );
    println!(
        "clone_throughput: ratio CLONE/tar|tar {:.2}",
        through / copy
    );
}
