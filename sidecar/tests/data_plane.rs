//! The sidecar against real servers, MariaDB 10.11 and MySQL 9.7: bootstrap,
//! seeding by clone (mariadb-backup streamed by the donor's agent, or
//! MySQL's CLONE plugin), donor choice, replication setup and its
//! idempotence, and a donor lost mid-copy.

#![allow(clippy::expect_used, clippy::unwrap_used)] // test helpers fail loudly by design

mod support;

use std::time::Duration;

use ebisu_api::InstanceRole;
use mysql_async::prelude::Queryable;
use support::{
    Cluster, Server, eventually, log_of, marker_donor, marker_exists, promote, write_rows,
};

const MINUTE: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_bootstrap_clone_replicate_and_restart() {
    bootstrap_clone_replicate_and_restart(Server::MariaDb).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_bootstrap_clone_replicate_and_restart() {
    bootstrap_clone_replicate_and_restart(Server::MySql).await;
}

/// No anonymous users, no remote root and no account that can log in
/// without a password (the flavor's system accounts are locked).
fn weak_accounts_query(server: Server) -> &'static str {
    match server {
        Server::MariaDb => {
            "SELECT User, Host FROM mysql.global_priv WHERE User = '' \
             OR (User = 'root' AND Host <> 'localhost') \
             OR (IFNULL(JSON_VALUE(Priv, '$.account_locked'), 0) = 0 \
                 AND IFNULL(JSON_VALUE(Priv, '$.authentication_string'), '') = '')"
        }
        Server::MySql => {
            "SELECT User, Host FROM mysql.user WHERE User = '' \
             OR (User = 'root' AND Host <> 'localhost') \
             OR (account_locked = 'N' AND IFNULL(authentication_string, '') = '')"
        }
    }
}

async fn bootstrap_clone_replicate_and_restart(server: Server) {
    let cluster = Cluster::of(server, "orders");

    // The first instance bootstraps: no peer holds data.
    let mut primary = cluster.instance(0);
    let out = primary.init(&cluster, &[], 30);
    assert!(out.status.success(), "bootstrap failed:\n{}", log_of(&out));
    assert!(log_of(&out).contains("bootstrapping"), "{}", log_of(&out));
    primary.start_mysqld(&cluster);
    primary.start_agent(&cluster, None);
    let status = primary.status().await;
    assert!(
        status.read_only,
        "a bootstrapped server starts read-only until the operator promotes it"
    );
    promote(&primary, &cluster).await;
    assert_eq!(primary.status().await.role, InstanceRole::Primary);
    write_rows(&primary, &cluster, 50, 100).await;

    // No weak account survives bootstrap.
    let mut root = primary.root(&cluster).await;
    let weak: Vec<(String, String)> =
        mysql_async::prelude::Queryable::query(&mut root, weak_accounts_query(server))
            .await
            .unwrap();
    assert_eq!(weak, Vec::<(String, String)>::new());
    drop(root);

    // The second instance clones from the primary and replicates from it.
    let mut first_replica = cluster.instance(1);
    let out = first_replica.init(&cluster, &[primary.agent_url()], 60);
    assert!(out.status.success(), "clone failed:\n{}", log_of(&out));
    assert_eq!(marker_donor(&first_replica.data_dir()), primary.agent_url());
    first_replica.start_mysqld(&cluster);
    first_replica.start_agent(&cluster, None);
    eventually(MINUTE, "the first replica to replicate", || async {
        let s = first_replica.status().await;
        s.role == InstanceRole::Replica
            && s.replication
                .as_ref()
                .is_some_and(|r| r.io_connected && r.sql_running)
    })
    .await;
    assert!(
        !marker_exists(&first_replica.data_dir()),
        "the seed marker is consumed once replication runs"
    );
    let replication = first_replica.status().await.replication.unwrap();
    assert_eq!(
        (replication.source_host.as_str(), replication.source_port),
        ("127.0.0.1", primary.port)
    );
    write_rows(&primary, &cluster, 25, 100).await;
    eventually(MINUTE, "rows written after the clone to arrive", || async {
        first_replica.count(&cluster).await == 75
    })
    .await;
    assert!(
        first_replica.status().await.read_only,
        "a replica stays read-only"
    );

    // The third instance prefers the caught-up replica over the primary.
    let served_by_primary = primary.metric("ebisu_clone_bytes_served_total").await;
    let mut second_replica = cluster.instance(2);
    let out = second_replica.init(
        &cluster,
        &[primary.agent_url(), first_replica.agent_url()],
        60,
    );
    assert!(
        out.status.success(),
        "second clone failed:\n{}",
        log_of(&out)
    );
    assert_eq!(
        marker_donor(&second_replica.data_dir()),
        first_replica.agent_url(),
        "the caught-up replica was the donor"
    );
    if server == Server::MariaDb {
        // MariaDB's copies stream through the donor's agent, which counts them.
        assert!(
            first_replica.metric("ebisu_clone_bytes_served_total").await > 0.0,
            "the replica served the copy"
        );
        assert_eq!(
            primary.metric("ebisu_clone_bytes_served_total").await,
            served_by_primary,
            "the primary served nothing"
        );
    } else {
        assert!(
            log_of(&out).contains("cloned with the CLONE plugin"),
            "{}",
            log_of(&out)
        );
    }
    second_replica.start_mysqld(&cluster);
    second_replica.start_agent(&cluster, None);
    write_rows(&primary, &cluster, 5, 10).await;
    eventually(MINUTE, "the second replica to catch up", || async {
        second_replica.count(&cluster).await == 80
    })
    .await;
    let replication = second_replica.status().await.replication.unwrap();
    assert_eq!(
        replication.source_port, primary.port,
        "it replicates from the primary, not from its donor"
    );

    // Restarting an agent never sets replication up twice or re-applies
    // anything. On MariaDB it runs the upgrade step when the system tables
    // were made by another release (as after a new image), locally only.
    let info = first_replica.data_dir().join("mysql_upgrade_info");
    if server == Server::MariaDb {
        std::fs::write(&info, "10.6.21-MariaDB").unwrap();
    }
    first_replica.kill_agent();
    first_replica.start_agent(&cluster, None);
    if server == Server::MariaDb {
        eventually(MINUTE, "the upgrade step", || async {
            first_replica.agent_log().contains("system tables upgraded")
        })
        .await;
        let recorded = std::fs::read_to_string(&info).unwrap();
        assert!(
            !recorded.starts_with("10.6."),
            "the tool recorded the running release: {recorded}"
        );
    }
    write_rows(&primary, &cluster, 5, 10).await;
    eventually(MINUTE, "the restarted replica to keep up", || async {
        first_replica.count(&cluster).await == 85
    })
    .await;
    let after = first_replica.status().await;
    let replication = after.replication.unwrap();
    assert!(
        replication.io_connected && replication.sql_running && replication.last_error.is_none(),
        "{replication:?}"
    );
    assert_eq!(after.gtid_executed, primary.status().await.gtid_executed);
    assert_eq!(
        first_replica
            .agent_log()
            .matches("replication started from the cloned position")
            .count(),
        1,
        "replication was set up exactly once:\n{}",
        first_replica.agent_log()
    );

    // A wrong token gets nothing.
    let response = reqwest::Client::new()
        .get(format!("{}/clone", primary.agent_url()))
        .bearer_auth("not-the-token")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    assert!(
        !primary.agent_log().contains("not-the-token"),
        "the presented token is never logged"
    );

    // Readiness says whether a semi-sync primary still waits: none of
    // these replicas acknowledges, so the first commit times out and the
    // primary falls back, which the operator's probe must learn at once.
    assert_eq!(
        primary.readyz_semi_sync().await,
        None,
        "not a semi-sync source"
    );
    primary.semi_sync_source(&cluster, Some(300)).await;
    write_rows(&primary, &cluster, 1, 10).await;
    assert_eq!(
        primary.readyz_semi_sync().await.as_deref(),
        Some(ebisu_api::agent::SEMI_SYNC_FALLEN_BACK)
    );
    primary.semi_sync_source(&cluster, None).await;
    assert_eq!(primary.readyz_semi_sync().await, None);
}

/// A promoted primary holding 40 rows of 256 KiB and a replica cloned from
/// it and replicating, whose agent serves copies at `donate_limit`.
async fn primary_and_replica(
    cluster: &Cluster,
    donate_limit: Option<u64>,
) -> (support::Instance, support::Instance) {
    let mut primary = cluster.instance(0);
    assert!(primary.init(cluster, &[], 60).status.success());
    primary.start_mysqld(cluster);
    primary.start_agent(cluster, None);
    promote(&primary, cluster).await;
    write_rows(&primary, cluster, 40, 256 * 1024).await;

    let mut replica = cluster.instance(1);
    let out = replica.init(cluster, &[primary.agent_url()], 60);
    assert!(out.status.success(), "{}", log_of(&out));
    replica.start_mysqld(cluster);
    replica.start_agent(cluster, donate_limit);
    eventually(MINUTE, "the replica to replicate", || async {
        replica
            .status()
            .await
            .replication
            .is_some_and(|r| r.io_connected && r.sql_running)
    })
    .await;
    (primary, replica)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_donor_killed_mid_stream_is_rejected_and_another_donor_used() {
    let cluster = Cluster::new("ledger");
    // The replica donates slowly, so the stream can be cut halfway.
    let (primary, mut replica) = primary_and_replica(&cluster, Some(4 << 20)).await;

    let newcomer = cluster.instance(2);
    let peers = [replica.agent_url(), primary.agent_url()];
    let cluster_ref = &cluster;
    let init = std::thread::scope(|scope| {
        let handle = scope.spawn(|| newcomer.init(cluster_ref, &peers, 120));
        std::thread::sleep(Duration::from_secs(3));
        replica.kill_agent();
        handle.join().unwrap()
    });
    let log = log_of(&init);
    assert!(init.status.success(), "{log}");
    assert!(
        log.contains("copy rejected"),
        "the cut stream was rejected:\n{log}"
    );
    let cut = log
        .split("stream cut after ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap_or_else(|| panic!("the rejection names a cut stream:\n{log}"));
    assert!(cut > 0, "the donor was killed mid-stream, not before it");
    let marker: serde_json::Value = serde_json::from_slice(
        &std::fs::read(newcomer.data_dir().join("ebisu-seed.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        marker["donor"],
        primary.agent_url(),
        "the copy that was kept came from the second donor"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_donor_lost_mid_clone_is_abandoned_for_the_next() {
    let cluster = Cluster::of(Server::MySql, "ledger");
    let (primary, mut replica) = primary_and_replica(&cluster, None).await;

    // The newcomer reads slowly (spec.clone.rateLimit), so its donor can be
    // lost halfway: the replica's server is killed as a lost machine would be.
    let newcomer = cluster.instance(2);
    let peers = [replica.agent_url(), primary.agent_url()];
    let cluster_ref = &cluster;
    let init = std::thread::scope(|scope| {
        let handle = scope.spawn(|| newcomer.init_limited(cluster_ref, &peers, 180, Some(4 << 20)));
        std::thread::sleep(Duration::from_secs(4));
        replica.kill_mysqld();
        handle.join().unwrap()
    });
    let log = log_of(&init);
    assert!(init.status.success(), "{log}");
    assert!(
        log.contains("copy rejected"),
        "the clone from the lost donor failed and was abandoned:\n{log}"
    );
    assert!(
        log.contains("clone in progress"),
        "progress was reported while the slow clone ran:\n{log}"
    );
    assert_eq!(
        marker_donor(&newcomer.data_dir()),
        primary.agent_url(),
        "the copy that was kept came from the second donor"
    );
    assert!(
        !newcomer.data_dir().join("ebisu-clone").exists()
            && !newcomer.data_dir().join("ebisu-clone-server").exists(),
        "no scratch directory is left behind"
    );

    // The copy is whole: it replicates and holds every row.
    let mut newcomer = newcomer;
    newcomer.start_mysqld(&cluster);
    newcomer.start_agent(&cluster, None);
    write_rows(&primary, &cluster, 1, 10).await;
    eventually(MINUTE, "the newcomer to catch up", || async {
        newcomer.count(&cluster).await == 41
    })
    .await;
}

/// M6: a MariaDB replica received transactions it had not applied when its
/// server was killed, and its primary is gone. MariaDB would discard that
/// relay log at the next start of replication; the agent applies it first,
/// under the transactions' own GTIDs, and says so in `/status`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_a_restarted_replica_keeps_what_its_relay_log_held() {
    let cluster = Cluster::new("relay");
    let (mut primary, mut replica) = primary_and_replica(&cluster, None).await;
    let mut conn = replica.root(&cluster).await;
    conn.query_drop("STOP SLAVE SQL_THREAD").await.unwrap();
    drop(conn);
    write_rows(&primary, &cluster, 5, 64).await;
    let mut source = primary.root(&cluster).await;
    let written: String = source
        .query_first("SELECT @@GLOBAL.gtid_binlog_pos")
        .await
        .unwrap()
        .unwrap();
    drop(source);
    eventually(
        MINUTE,
        "the replica to receive every transaction",
        || async {
            let mut conn = replica.root(&cluster).await;
            let row: Option<mysql_async::Row> =
                conn.query_first("SHOW SLAVE STATUS").await.unwrap();
            row.and_then(|r| r.get::<String, _>("Gtid_IO_Pos"))
                .is_some_and(|received| received == written)
        },
    )
    .await;
    assert_eq!(replica.count(&cluster).await, 40, "received, not applied");

    // With its source alive and holding all of it, the relay log is left
    // for replication to fetch again (faster than a client applies it).
    replica.kill_mysqld();
    replica.start_mysqld(&cluster);
    eventually(MINUTE, "the agent to look at the relay log", || async {
        !replica.status().await.relay_log_unread
    })
    .await;
    assert_eq!(replica.count(&cluster).await, 40);
    assert!(
        replica
            .agent_log()
            .contains("the source holds everything the relay log does"),
        "{}",
        replica.agent_log()
    );

    // The primary is lost and the replica's server killed and started again.
    primary.kill_agent();
    primary.kill_mysqld();
    replica.kill_mysqld();
    replica.start_mysqld(&cluster);
    eventually(MINUTE, "the agent to apply the relay log", || async {
        !replica.status().await.relay_log_unread
    })
    .await;
    assert_eq!(
        replica.count(&cluster).await,
        45,
        "nothing received was lost"
    );
    let mut conn = replica.root(&cluster).await;
    let (binlog, slave): (String, String) = conn
        .query_first("SELECT @@GLOBAL.gtid_binlog_pos, @@GLOBAL.gtid_slave_pos")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(binlog, written, "applied under the source's own GTIDs");
    assert_eq!(slave, written, "replication resumes after them");
    let status = replica.status().await;
    assert!(
        status
            .replication
            .is_some_and(|r| !r.io_running && !r.sql_running),
        "the agent starts no replication itself"
    );
    assert!(
        replica
            .agent_log()
            .contains("applied what the relay log held"),
        "{}",
        replica.agent_log()
    );

    // A relay log with no transaction in it (as after a repoint) is no
    // reason to hold replication back.
    let mut conn = replica.root(&cluster).await;
    conn.query_drop("CHANGE MASTER TO MASTER_USE_GTID = slave_pos")
        .await
        .unwrap();
    drop(conn);
    replica.kill_mysqld();
    replica.start_mysqld(&cluster);
    eventually(
        MINUTE,
        "the agent to take an empty relay log as read",
        || async { !replica.status().await.relay_log_unread },
    )
    .await;
    assert_eq!(replica.count(&cluster).await, 45);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_binary_logs_read_as_the_server_wrote_them() {
    binary_logs_read_as_the_server_wrote_them(Server::MariaDb).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_binary_logs_read_as_the_server_wrote_them() {
    binary_logs_read_as_the_server_wrote_them(Server::MySql).await;
}

/// `ebisu_mysql::binlog` over the files a real server wrote: what came
/// before the first file and every transaction in the files make up what
/// the server says it executed, each commit time lies within the test's
/// clock, a file's head names what the server held when it began, and a
/// stretch read from a transaction's offset reads the same.
async fn binary_logs_read_as_the_server_wrote_them(server: Server) {
    use ebisu_mysql::{Flavor, GtidSet, binlog};

    let (flavor, executed_query) = match server {
        Server::MariaDb => (Flavor::MariaDb, "SELECT @@GLOBAL.gtid_binlog_pos"),
        Server::MySql => (Flavor::MySql84, "SELECT @@GLOBAL.gtid_executed"),
    };
    let cluster = Cluster::of(server, "binlogs");
    let mut primary = cluster.instance(0);
    let out = primary.init(&cluster, &[], 30);
    assert!(out.status.success(), "bootstrap failed:\n{}", log_of(&out));
    primary.start_mysqld(&cluster);
    primary.start_agent(&cluster, None);
    promote(&primary, &cluster).await;
    let now_us = || {
        i64::try_from(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_micros(),
        )
        .unwrap()
    };
    // MariaDB's times are whole seconds.
    let before = now_us() - 1_000_000;
    write_rows(&primary, &cluster, 20, 100).await;
    let mut conn = primary.root(&cluster).await;
    let at_flush: String = conn.query_first(executed_query).await.unwrap().unwrap();
    conn.query_drop("FLUSH BINARY LOGS").await.unwrap();
    write_rows(&primary, &cluster, 5, 100).await;
    let executed: String = conn.query_first(executed_query).await.unwrap().unwrap();
    let after = now_us() + 1_000_000;
    let basename: String = conn
        .query_first("SELECT @@GLOBAL.log_bin_basename")
        .await
        .unwrap()
        .unwrap();
    let files: Vec<String> = conn
        .query_map("SHOW BINARY LOGS", |row: mysql_async::Row| {
            row.get::<String, _>(0).unwrap()
        })
        .await
        .unwrap();
    drop(conn);
    let dir = std::path::Path::new(&basename).parent().unwrap().to_owned();
    let read = |file: &String| std::fs::read(dir.join(file)).unwrap();

    let mut found = Vec::new();
    for file in &files {
        found.extend(binlog::transactions(&read(file), 0).unwrap());
    }
    let mariadb = server == Server::MariaDb;
    let first = binlog::preceding(&read(&files[0]))
        .unwrap()
        .unwrap_or_else(|| GtidSet::empty(flavor));
    let union = first.union(&binlog::gtid_set(&found, mariadb)).unwrap();
    assert_eq!(
        union,
        GtidSet::parse(flavor, &executed).unwrap(),
        "{files:?} read as {union}, the server says {executed}"
    );
    let added = found.iter().filter(|t| t.committed_us >= before).count();
    assert!(added >= 25, "the 25 inserts and their table: {found:?}");
    assert!(
        found
            .iter()
            .filter(|t| t.committed_us >= before)
            .all(|t| t.committed_us <= after),
        "{found:?} between {before} and {after}"
    );

    let last = read(files.last().unwrap());
    assert_eq!(
        binlog::preceding(&last).unwrap(),
        Some(GtidSet::parse(flavor, &at_flush).unwrap()),
        "the newest file begins where the server stood at the flush"
    );
    let in_last = binlog::transactions(&last, 0).unwrap();
    assert!(in_last.len() >= 5, "the last 5 inserts: {in_last:?}");
    let from = usize::try_from(in_last[2].offset).unwrap();
    assert_eq!(
        binlog::transactions(&last[from..], in_last[2].offset).unwrap(),
        in_last[2..]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_the_archive_holds_every_transaction_once_across_archivers() {
    the_archive_holds_every_transaction_once_across_archivers(Server::MariaDb).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_the_archive_holds_every_transaction_once_across_archivers() {
    the_archive_holds_every_transaction_once_across_archivers(Server::MySql).await;
}

/// Asks `instance`'s agent to archive for `seconds` into the test bucket.
async fn assign_archive(
    instance: &support::Instance,
    seconds: u64,
) -> ebisu_api::agent::ArchiveProgress {
    let answer = reqwest::Client::new()
        .post(format!(
            "{}{}",
            instance.agent_url(),
            ebisu_api::agent::PATH_ARCHIVE
        ))
        .bearer_auth(support::CLONE_TOKEN)
        .header("content-type", "application/json")
        .body(
            serde_json::to_vec(&ebisu_api::agent::ArchiveAssignment {
                bucket: "archive".to_owned(),
                prefix: "shop/orders".to_owned(),
                seconds,
            })
            .unwrap(),
        )
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap()
        .bytes()
        .await
        .unwrap();
    serde_json::from_slice(&answer).unwrap()
}

/// Everything in the archive: each segment's bytes checked against its
/// manifest's SHA-256 and read as events; the transactions of all segments
/// (with their count) and what came before the oldest file archived.
async fn archived_transactions(
    s3: &aws_sdk_s3::Client,
    flavor: ebisu_mysql::Flavor,
) -> (Vec<ebisu_mysql::binlog::Transaction>, ebisu_mysql::GtidSet) {
    use sha2::Digest;
    let listed = s3
        .list_objects_v2()
        .bucket("archive")
        .prefix("shop/orders/manifest/")
        .send()
        .await
        .unwrap();
    let mut found = Vec::new();
    let mut oldest: Option<(u32, ebisu_mysql::GtidSet)> = None;
    for object in listed.contents() {
        let key = object.key().unwrap();
        let get = |key: String| async move {
            s3.get_object()
                .bucket("archive")
                .key(key)
                .send()
                .await
                .unwrap()
                .body
                .collect()
                .await
                .unwrap()
                .into_bytes()
        };
        let manifest: serde_json::Value =
            serde_json::from_slice(&get(key.to_owned()).await).unwrap();
        let data_key = key
            .replace("/manifest/", "/binlog/")
            .trim_end_matches(".json")
            .to_owned();
        let bytes = get(data_key.clone()).await;
        let sha: String = sha2::Sha256::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(manifest["sha256"], sha, "{data_key}");
        let start = manifest["start"].as_u64().unwrap();
        let transactions = ebisu_mysql::binlog::transactions(&bytes, start).unwrap();
        assert_eq!(
            manifest["transactions"].as_u64().unwrap(),
            transactions.len() as u64
        );
        if start == 0 {
            let created = u32::try_from(manifest["created"].as_u64().unwrap()).unwrap();
            let before = manifest["preceding"]
                .as_str()
                .map(|p| ebisu_mysql::GtidSet::parse(flavor, p).unwrap())
                .unwrap_or_else(|| ebisu_mysql::GtidSet::empty(flavor));
            if oldest.as_ref().is_none_or(|(at, _)| created < *at) {
                oldest = Some((created, before));
            }
        }
        found.extend(transactions);
    }
    let before = oldest
        .map(|(_, set)| set)
        .unwrap_or_else(|| ebisu_mysql::GtidSet::empty(flavor));
    (found, before)
}

/// The archive's agent: assigned to a replica it uploads that server's
/// binary logs to S3 (moto) as segments, each with its manifest; moved to
/// the primary (as after a failover), the primary's agent uploads only what
/// the archive lacks. Each time, the archive holds every transaction the
/// primary executed since the oldest archived file began, each exactly once.
async fn the_archive_holds_every_transaction_once_across_archivers(server: Server) {
    let (flavor, executed_query) = match server {
        Server::MariaDb => (
            ebisu_mysql::Flavor::MariaDb,
            "SELECT @@GLOBAL.gtid_binlog_pos",
        ),
        Server::MySql => (
            ebisu_mysql::Flavor::MySql84,
            "SELECT @@GLOBAL.gtid_executed",
        ),
    };
    let moto = support::Moto::start();
    let s3 = moto.client();
    s3.create_bucket().bucket("archive").send().await.unwrap();
    let mut cluster = Cluster::of(server, "archived");
    cluster.agent_env = moto.env();
    let (primary, replica) = primary_and_replica(&cluster, None).await;
    let mariadb = server == Server::MariaDb;

    let holds_everything_once = |stage: &'static str| {
        let s3 = &s3;
        let primary = &primary;
        let cluster = &cluster;
        async move {
            let mut conn = primary.root(cluster).await;
            let executed: String = conn.query_first(executed_query).await.unwrap().unwrap();
            drop(conn);
            let executed = ebisu_mysql::GtidSet::parse(flavor, &executed).unwrap();
            let mut last = String::new();
            for _ in 0..120 {
                let (found, before) = archived_transactions(s3, flavor).await;
                let archived = before
                    .union(&ebisu_mysql::binlog::gtid_set(&found, mariadb))
                    .unwrap();
                let mut gtids: Vec<_> = found.iter().map(|t| t.gtid).collect();
                gtids.sort_unstable();
                let total = gtids.len();
                gtids.dedup();
                assert_eq!(gtids.len(), total, "{stage}: a transaction archived twice");
                if archived == executed {
                    return total;
                }
                last = format!("{archived} of {executed}");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            panic!("{stage}: the archive holds {last}");
        }
    };

    // From the replica.
    assign_archive(&replica, 4).await;
    write_rows(&primary, &cluster, 10, 100).await;
    eventually(MINUTE, "the replica's agent to upload", || async {
        let progress = assign_archive(&replica, 4).await;
        assert_eq!(progress.error, None, "{}", replica.agent_log());
        progress.segments > 0
    })
    .await;
    let from_replica = holds_everything_once("archived from the replica").await;
    assert!(from_replica >= 10, "{from_replica}");
    let progress = assign_archive(&replica, 4).await;
    assert!(
        progress.segments > 0 && progress.error.is_none(),
        "{progress:?}"
    );

    // The replica's assignment lapses; the primary's agent takes over,
    // with a new file begun on each server.
    tokio::time::sleep(Duration::from_secs(5)).await;
    for instance in [&primary, &replica] {
        let mut conn = instance.root(&cluster).await;
        conn.query_drop("FLUSH BINARY LOGS").await.unwrap();
    }
    write_rows(&primary, &cluster, 5, 100).await;
    assign_archive(&primary, 60).await;
    write_rows(&primary, &cluster, 5, 100).await;
    let total = holds_everything_once("archived by the primary after the replica").await;
    assert!(total >= from_replica + 10, "{total}");
    let progress = assign_archive(&primary, 60).await;
    assert!(progress.error.is_none(), "{progress:?}");
    assert!(
        progress.archived_through_us.is_some_and(|us| us > 0),
        "{progress:?}"
    );
}
