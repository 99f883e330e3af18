//! Backups and restores, measured: on MariaDB, with the data grown to
//! each size in turn (1 and 4 GiB by default), a MySQLBackup is taken under
//! a writer that counts an id only when its commit returned OK (checked
//! like the e2e drills: nothing acknowledged lost, never two writable
//! servers, one now), restored into a new one-instance cluster, and that
//! cluster scaled to two (its replica seeded by a stream clone from the
//! restored primary); and a new replica of the source cluster seeded from
//! the backup's snapshot (`spec.clone.method: Snapshot`). Prints, per
//! flavor and size: the longest stretch without an acknowledged write
//! while the backup was taken, the backup's duration (asked -> snapshot
//! started -> completed), restore to Ready, the restored cluster's new
//! replica seeded by a stream to Ready, and the source's new replica
//! seeded from the snapshot to Ready. Then, at each size, the binary log
//! archive: a backup, 1 GiB of binary log written in bulk
//! (EBISU_BENCH_BINLOG_MIB) and a steady writer (EBISU_BENCH_ARCHIVE_SECONDS,
//! 60 by default): the archive's lag per segment of the steady writer p50 /
//! p99, and a restore to a point near the writer's end replayed from it
//! (the bulk log and the writer's transactions: how many applied, their
//! rate, restore to Ready).
//!
//!     bash tests/bench-backup.sh
//!
//! (release binaries in the cluster's images; needs root and, at 4 GiB,
//! about 25 GiB of free disk: the local volumes are host directories).
//! Environment: EBISU_BENCH_FLAVORS (`mariadb` by default; `mysql` stops
//! while loading, see `main`),
//! EBISU_BENCH_SIZES_GIB (`1,4` by default), EBISU_IMAGE_PROFILE the cargo
//! profile of the images the pods run (`release` from tests/bench-build.sh).

#![allow(clippy::expect_used, clippy::unwrap_used)] // a benchmark fails loudly

use std::{
    path::Path,
    time::{Duration, Instant},
};

use ebisu_testcluster::{Scenario, ebisu};

const STATE_DIR: &str = "/tmp/ebisu-testcluster-bench-backup";
/// Bytes of one row of the bulk table.
const ROW: u64 = 1024;

fn secs(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64())
}

/// The bulk table's size on the primary, in bytes.
fn data_bytes(s: &Scenario, primary: &str) -> u64 {
    s.root(
        primary,
        "SELECT COALESCE(SUM(data_length + index_length), 0) FROM information_schema.tables WHERE table_schema = 'bench'",
    )
    .parse()
    .unwrap_or(0)
}

/// Grows the bulk table to `gib` GiB, 64 MiB a call in statements of
/// 8 MiB (small enough for the servers' in-memory temporary tables: MySQL
/// copies the rows it selects from the table it inserts into), waits for
/// the replicas, and purges every server's binary logs (the local disk
/// holds every copy).
fn grow(s: &Scenario, primary: &str, gib: u64) {
    let target = gib << 30;
    let batch = (8 << 20) / ROW;
    let statement = format!("INSERT INTO bench.bulk (v) SELECT v FROM bench.bulk LIMIT {batch}");
    let call = vec![statement; 8].join("; ");
    while data_bytes(s, primary) < target {
        s.root(primary, &call);
    }
    replicas_caught_up(s, primary);
    for pod in s.app.servers().into_iter().map(|(pod, _)| pod) {
        let _ = s.try_root(&pod, "FLUSH BINARY LOGS; PURGE BINARY LOGS BEFORE NOW()");
    }
}

/// One measurement at the current size.
fn measure(s: &mut Scenario, flavor: &str, gib: u64) -> String {
    let backup = format!("{}-{gib}g", s.cluster);
    let load = s.load("bench.w");
    std::thread::sleep(Duration::from_secs(2));
    let asked = Instant::now();
    s.ask_backup(&backup);
    let object = format!("mysqlbackup/{backup}");
    s.wait("the snapshot started", Duration::from_secs(600), |s| {
        matches!(
            s.get(&object, "{.status.phase}").as_str(),
            "Snapshotting" | "Completed"
        )
    });
    let started = asked.elapsed();
    s.wait("the backup completed", Duration::from_secs(600), |s| {
        s.get(&object, "{.status.phase}") == "Completed"
    });
    let completed = asked.elapsed();
    std::thread::sleep(Duration::from_secs(1));
    let (writes, looks) = s.verify(
        &format!("{flavor} backup at {gib} GiB"),
        "bench.w",
        load,
        None,
    );
    let blocked = writes.longest_gap(asked, asked + completed);
    let from_snapshot = seeded_from_snapshot(s, &backup);

    let restored = format!("{}-r{gib}", s.cluster);
    let image = match s.myc("{.spec.image}") {
        image if image.is_empty() => String::new(),
        image => format!("  image: {image}\n"),
    };
    let manifest = format!(
        "apiVersion: ebisu.dev/v1alpha1\nkind: MySQLCluster\nmetadata: {{name: {restored}}}\nspec:\n  replicas: 1\n  flavor: {flavor}\n{image}  storage: {{size: 10Gi, ebs: {{type: gp3}}}}\n  bootstrap: {{fromBackup: {{name: {backup}}}}}\n"
    );
    let restore_asked = Instant::now();
    s.apply_yaml("bench-restore", &manifest);
    ebisu::wait_running(&s.k, &s.ns, &restored, 1, Duration::from_secs(1200))
        .unwrap_or_else(|e| panic!("{e}\n{}", ebisu::diagnostics(&s.k, &s.ns, &restored)));
    let restore = restore_asked.elapsed();
    let scale_asked = Instant::now();
    s.kubectl(&[
        "-n",
        &s.ns.clone(),
        "scale",
        &format!("myc/{restored}"),
        "--replicas=2",
    ]);
    ebisu::wait_running(&s.k, &s.ns, &restored, 2, Duration::from_secs(1800))
        .unwrap_or_else(|e| panic!("{e}\n{}", ebisu::diagnostics(&s.k, &s.ns, &restored)));
    let seeded = scale_asked.elapsed();
    // Only the source's copies stay on the local disk.
    let volume = s.get(&format!("myc/{restored}"), "{.status.restore.volumeId}");
    let snapshot = s.get(&object, "{.status.snapshotId}");
    s.kubectl(&[
        "-n",
        &s.ns.clone(),
        "delete",
        &format!("myc/{restored}"),
        "--wait=true",
    ]);
    for claim in [0, 1] {
        let _ = s.k.try_run(&[
            "-n",
            &s.ns,
            "delete",
            &format!("pvc/data-{restored}-{claim}"),
            "--wait=true",
        ]);
    }
    let _ = s.k.try_run(&["delete", &format!("pv/ebisu-{volume}")]);
    let _ = std::fs::remove_dir_all(s.layout.volumes().join(&volume));
    let _ = s.block_on(
        ebisu_testcluster::ec2::client()
            .delete_snapshot()
            .snapshot_id(&snapshot)
            .send(),
    );
    format!(
        "| {flavor} | {gib} | {} ms | {} / {} | {} | {} | {} | {} |",
        blocked.as_millis(),
        secs(started),
        secs(completed),
        secs(restore),
        secs(seeded),
        secs(from_snapshot),
        looks.two_writable.len()
    )
}

/// A new replica of the source cluster seeded from `backup`'s snapshot
/// (`spec.clone.method: Snapshot`): asked -> Ready. Then it is removed
/// with its claim and volume (the local disk holds every copy).
fn seeded_from_snapshot(s: &mut Scenario, backup: &str) -> Duration {
    let replicas: u32 = s.myc("{.spec.replicas}").parse().expect("replicas");
    let pod = format!("{}-{replicas}", s.cluster);
    let asked = Instant::now();
    s.patch(&format!(
        r#"{{"spec":{{"replicas":{},"clone":{{"method":"Snapshot"}}}}}}"#,
        replicas + 1
    ));
    s.wait_running(replicas + 1);
    let took = asked.elapsed();
    assert!(
        s.events()
            .contains(&format!("SeedFromSnapshot: {pod} starts on")),
        "{pod} was seeded from {backup}'s snapshot"
    );
    let volume = s.get(
        &format!(
            "pv/{}",
            s.get(&format!("pvc/data-{pod}"), "{.spec.volumeName}")
        ),
        "{.spec.csi.volumeHandle}",
    );
    s.patch(&format!(
        r#"{{"spec":{{"replicas":{replicas},"clone":{{"method":null}}}}}}"#
    ));
    s.wait(
        "the seeded replica removed",
        Duration::from_secs(300),
        |s| {
            !s.get("pods", "{.items[*].metadata.name}")
                .split_whitespace()
                .any(|p| p == pod)
        },
    );
    let ns = s.ns.clone();
    let _ = s.k.try_run(&[
        "-n",
        &ns,
        "delete",
        &format!("pvc/data-{pod}"),
        "--wait=true",
    ]);
    let _ = s.k.try_run(&["delete", &format!("pv/ebisu-{volume}")]);
    let _ = std::fs::remove_dir_all(s.layout.volumes().join(&volume));
    took
}

/// The binary log archive under a steady writer, and a restore to a point
/// replayed from it: the archive's lag per segment of the writer's
/// transactions (its manifest's upload time minus the commit time of the
/// oldest transaction in it, so every transaction waited at most that
/// long), p50 / p99; then the backup taken before the bulk binary log
/// (`binlog_mib`) and the writer restored to a point near the writer's
/// end into a one-instance cluster: how many transactions the replay
/// applied and how fast (the init step's own count and clock), and
/// restore asked -> Ready.
fn archive_and_replay(
    s: &mut Scenario,
    flavor: &str,
    gib: u64,
    seconds: u64,
    binlog_mib: u64,
) -> String {
    let bucket = format!("{}-bench-archive-{gib}g", s.ns);
    let s3 = ebisu_testcluster::ec2::s3();
    s.block_on(s3.create_bucket().bucket(&bucket).send())
        .expect("create the bucket");
    s.patch(&format!(
        r#"{{"spec":{{"backup":{{"schedule":"0 0 1 1 *","archive":{{"bucket":"{bucket}"}}}}}}}}"#
    ));
    s.wait("an archiver", Duration::from_secs(120), |s| {
        !s.myc("{.status.archive.gtidSet}").is_empty()
    });
    let backup = format!("{}-pitr-{gib}g", s.cluster);
    s.ask_backup(&backup);
    let object = format!("mysqlbackup/{backup}");
    s.wait("the backup completed", Duration::from_secs(600), |s| {
        s.get(&object, "{.status.phase}") == "Completed"
    });
    let primary = s.primary();
    let bulk = Instant::now();
    let bulk_bytes = write_binary_logs(s, &primary, binlog_mib << 20);
    println!(
        "{flavor} at {gib} GiB: wrote {} MiB of binary log in {:?}",
        bulk_bytes >> 20,
        bulk.elapsed()
    );
    let writing_since = k8s_openapi::jiff::Timestamp::now().as_microsecond();
    let load = s.load("bench.w");
    std::thread::sleep(Duration::from_secs(seconds));
    // Two seconds before the writer stops: the archive holds later commits.
    let target = k8s_openapi::jiff::Timestamp::now()
        .checked_sub(k8s_openapi::jiff::SignedDuration::from_secs(2))
        .map(|t| t.to_string())
        .unwrap_or_default();
    let (writes, _) = s.verify(
        &format!("{flavor} archived under a writer"),
        "bench.w",
        load,
        None,
    );
    s.wait(
        "the archive holding every write",
        Duration::from_secs(120),
        |s| {
            let primary = s.primary();
            s.myc("{.status.archive.gtidSet}") == s.instance(&primary, "gtid")
        },
    );
    // Each segment's lag, from the listing's upload times.
    let prefix = format!("{}/{}", s.ns, s.cluster);
    let manifests = s
        .block_on(ebisu_aws::archive::manifests(&s3, &bucket, &prefix))
        .expect("read the manifests");
    let mut uploaded = std::collections::BTreeMap::new();
    let mut pages = s3
        .list_objects_v2()
        .bucket(&bucket)
        .prefix(format!("{prefix}/manifest/"))
        .into_paginator()
        .send();
    while let Some(page) = s.block_on(pages.next()) {
        for object in page.expect("list the manifests").contents() {
            if let (Some(key), Some(at)) = (object.key(), object.last_modified()) {
                uploaded.insert(key.to_owned(), at.to_millis().unwrap_or_default());
            }
        }
    }
    let mut lags: Vec<i64> = manifests
        .iter()
        .filter_map(|l| {
            // The writer's transactions, not what the archive caught up on
            // when it began.
            let first = l.manifest.first_us.filter(|f| *f >= writing_since)?;
            Some(uploaded.get(&l.key)? * 1000 - first)
        })
        .collect();
    lags.sort_unstable();
    let at = |q: f64| {
        let i = ((lags.len() as f64 - 1.0) * q).round() as usize;
        lags.get(i)
            .map_or_else(|| "-".to_owned(), |us| format!("{:.2}", *us as f64 / 1e6))
    };
    let (p50, p99) = (at(0.5), at(0.99));

    let restored = format!("{}-pitr{gib}", s.cluster);
    let image = match s.myc("{.spec.image}") {
        image if image.is_empty() => String::new(),
        image => format!("  image: {image}\n"),
    };
    s.apply_yaml(
        "bench-pitr",
        &format!(
            "apiVersion: ebisu.dev/v1alpha1\nkind: MySQLCluster\nmetadata: {{name: {restored}}}\nspec:\n  replicas: 1\n  flavor: {flavor}\n{image}  storage: {{size: 10Gi, ebs: {{type: gp3}}}}\n  bootstrap: {{fromBackup: {{name: {backup}, pointInTime: {{time: \"{target}\"}}}}}}\n"
        ),
    );
    let asked = Instant::now();
    ebisu::wait_running(&s.k, &s.ns, &restored, 1, Duration::from_secs(1800))
        .unwrap_or_else(|e| panic!("{e}\n{}", ebisu::diagnostics(&s.k, &s.ns, &restored)));
    let restore = asked.elapsed();
    let log = s.init_log(&format!("{restored}-0"));
    let field = |name: &str| {
        log.lines()
            .filter(|l| l.contains("replayed the archive to the target"))
            .find_map(|l| {
                let (_, rest) = l.split_once(&format!("{name}="))?;
                rest.split_whitespace().next().map(str::to_owned)
            })
            .unwrap_or_default()
    };
    let (applied, took) = (field("transactions"), field("seconds"));
    let rate = match (applied.parse::<f64>(), took.parse::<f64>()) {
        (Ok(n), Ok(t)) if t > 0.0 => format!("{:.0}", n / t),
        _ => "-".to_owned(),
    };
    let volume = s.get(&format!("myc/{restored}"), "{.status.restore.volumeId}");
    s.kubectl(&[
        "-n",
        &s.ns.clone(),
        "delete",
        &format!("myc/{restored}"),
        "--wait=true",
    ]);
    let _ = s.k.try_run(&[
        "-n",
        &s.ns,
        "delete",
        &format!("pvc/data-{restored}-0"),
        "--wait=true",
    ]);
    let _ = s.k.try_run(&["delete", &format!("pv/ebisu-{volume}")]);
    let _ = std::fs::remove_dir_all(s.layout.volumes().join(&volume));
    s.patch(r#"{"spec":{"backup":null}}"#);
    format!(
        "| {flavor} | {gib} | {} | {} | {p50} / {p99} | {} | {applied} in {took} s ({rate}/s) | {} |",
        writes.acked.len(),
        lags.len(),
        bulk_bytes >> 20,
        secs(restore)
    )
}

/// Writes at least `bytes` of binary log on `primary` by rewriting the
/// bulk table's rows in statements of 8 MiB of rows (each row logged
/// before and after, so the data does not grow), each pass with a new
/// value so that every row changes; waits for the replicas. Returns the
/// binary log bytes written.
fn write_binary_logs(s: &Scenario, primary: &str, bytes: u64) -> u64 {
    let logged = |s: &Scenario| -> u64 {
        s.root(primary, "SHOW BINARY LOGS")
            .lines()
            .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
            .sum()
    };
    let start = logged(s);
    let last: u64 = s
        .root(primary, "SELECT COALESCE(MAX(id), 0) FROM bench.bulk")
        .parse()
        .expect("the bulk table's last id");
    let batch = (8 << 20) / ROW;
    let (mut from, mut pass) = (0, 0u8);
    loop {
        let written = logged(s).saturating_sub(start);
        if written >= bytes {
            break;
        }
        s.root(
            primary,
            &format!(
                "UPDATE bench.bulk SET v = REPEAT('{}', {}) WHERE id > {from} AND id <= {}",
                char::from(b'a' + pass % 26),
                ROW - 24,
                from + batch
            ),
        );
        from += batch;
        if from >= last {
            (from, pass) = (0, pass + 1);
        }
    }
    replicas_caught_up(s, primary);
    logged(s).saturating_sub(start)
}

/// Waits until every replica has applied what `primary` has written.
fn replicas_caught_up(s: &Scenario, primary: &str) {
    let (on_primary, on_replica) = match s.flavor() {
        ebisu_mysql::Flavor::MariaDb => (
            "SELECT @@GLOBAL.gtid_binlog_pos",
            "SELECT @@GLOBAL.gtid_slave_pos",
        ),
        _ => (
            "SELECT @@GLOBAL.gtid_executed",
            "SELECT @@GLOBAL.gtid_executed",
        ),
    };
    let gtid = s.root(primary, on_primary);
    for replica in s.labelled("replica") {
        s.wait(
            &format!("{replica} caught up"),
            Duration::from_secs(900),
            |s| s.try_root(&replica, on_replica).as_deref() == Some(gtid.as_str()),
        );
    }
}

fn main() {
    // MySQL's bulk load stops with "Error writing file '/tmp/MLfd=..'
    // (errno 28)" on the local cluster (its /tmp has room): not yet by
    // default.
    let flavors = std::env::var("EBISU_BENCH_FLAVORS").unwrap_or_else(|_| "mariadb".into());
    let sizes: Vec<u64> = std::env::var("EBISU_BENCH_SIZES_GIB")
        .unwrap_or_else(|_| "1,4".into())
        .split(',')
        .filter_map(|v| v.trim().parse().ok())
        .collect();
    let mut s = Scenario::start_bench(STATE_DIR, Path::new(env!("CARGO_BIN_EXE_testcluster")));
    s.install_operator(&["features.givenVolumes=true"]);
    let archive_seconds: u64 = std::env::var("EBISU_BENCH_ARCHIVE_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60);
    let binlog_mib: u64 = std::env::var("EBISU_BENCH_BINLOG_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    let mut table = Vec::new();
    let mut archive = Vec::new();
    for flavor in flavors.split(',').map(str::trim).filter(|f| !f.is_empty()) {
        let primary = s.bench_cluster(flavor);
        let ns = s.ns.clone();
        s.root(
            &primary,
            &format!(
                "CREATE TABLE bench.bulk (id BIGINT AUTO_INCREMENT PRIMARY KEY, v VARCHAR({len})); \
                 INSERT INTO bench.bulk (v) VALUES (REPEAT('x', {len}))",
                len = ROW - 24
            ),
        );
        for gib in &sizes {
            let loading = Instant::now();
            grow(&s, &primary, *gib);
            println!("{flavor}: grew to {gib} GiB in {:?}", loading.elapsed());
            let row = measure(&mut s, flavor, *gib);
            println!("{row}");
            table.push(row);
            let row = archive_and_replay(&mut s, flavor, *gib, archive_seconds, binlog_mib);
            println!("{row}");
            archive.push(row);
        }
        s.kubectl(&["delete", "namespace", &ns, "--wait=true", "--timeout=600s"]);
    }
    println!();
    println!(
        "| flavor | GiB | longest stretch without an acknowledged write during the backup | backup: snapshot started / completed (s) | restore to Ready, 1 instance (s) | second instance seeded by stream clone (s) | new replica of the source seeded from the snapshot (s) | looks with two writable |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- |");
    for row in &table {
        println!("{row}");
    }
    println!();
    println!(
        "| flavor | GiB | writes acknowledged under the archive | segments | archive lag per segment p50 / p99 (s) | bulk binary log replayed (MiB) | replay to a point: transactions applied (rate) | restore to a point to Ready, 1 instance (s) |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- |");
    for row in &archive {
        println!("{row}");
    }
    s.down();
}
