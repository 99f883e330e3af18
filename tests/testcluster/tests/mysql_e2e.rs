//! MySQL end to end: real MySQL 9.7 servers (the `mysql:*` image runs in a
//! Debian `sid` root), the operator installed by Helm, `kubectl apply -f
//! examples/mysql.yaml`. The first instance bootstraps, the others are
//! seeded with the CLONE plugin (one from the primary, one from a replica),
//! writes through `<name>-primary` reach every replica, replicas refuse
//! writes (super_read_only), a deleted replica returns on its own volume
//! without a clone, `kubectl scale` finishes after the leading operator pod
//! is deleted halfway (the new instance cloned from a replica) and scaling
//! back keeps the volume, a drain of the primary's node switches over and a node
//! loss fails over, each under a writer that checks no acknowledged write
//! is lost and a poller that checks two servers are never writable, as is a
//! new image tag rolled through the replicas and one switchover (after a
//! `mysqlConfig` setting applied online, without one). A `GRANT ALL`
//! account writes only to the primary, a primary label moved by hand is put
//! back, and a scale to one instance and back keeps writing. A backup
//! taken under a writer restores into a new cluster with exactly what was
//! acknowledged before it; a restore from a deleted snapshot is refused.
#![allow(clippy::expect_used, clippy::unwrap_used)] // test helpers fail loudly by design

use std::{path::Path, time::Duration};

use ebisu_testcluster::{Scenario, drills::Fault, ebisu::OPERATOR_NAMESPACE};

const STATE_DIR: &str = "/tmp/ebisu-testcluster-mysql";
const NS: &str = "stock";
const CLUSTER: &str = "inventory";
const TABLE: &str = "stock.w";

/// Three Ready instances: one primary, two replicas.
fn settled(m: &Scenario) -> String {
    let primary = m.wait_running(3);
    m.wait(
        "one primary and two replicas",
        Duration::from_secs(120),
        |m| m.labelled("replica").len() == 2,
    );
    primary
}

fn running_quietly(m: &Scenario) -> bool {
    m.myc("{.status.readyReplicas} {.status.phase}") == "3 Running"
}

#[test]
fn mysql_bootstraps_clones_replicates_and_moves_its_primary() {
    let mut m = Scenario::start(
        STATE_DIR,
        Path::new(env!("CARGO_BIN_EXE_testcluster")),
        NS,
        CLUSTER,
        true,
    );
    m.install_operator(&["features.givenVolumes=true"]);
    m.apply_example("examples/mysql.yaml");
    let primary = settled(&m);
    assert_eq!(primary, "inventory-0");
    let version = m.root(&primary, "SELECT VERSION()");
    assert!(version.starts_with("9.7"), "MySQL 9.7 runs: {version}");
    for (pod, donor) in [
        ("inventory-1", "inventory-0"),
        ("inventory-2", "inventory-1"),
    ] {
        let log = m.init_log(pod);
        assert!(
            log.contains("cloned with the CLONE plugin")
                && log.contains(&format!("donor=http://{donor}.")),
            "{pod} was cloned from {donor}:\n{log}"
        );
    }
    m.root(
        &primary,
        "CREATE USER app@'%' IDENTIFIED BY 'app-password'; GRANT ALL ON stock.* TO app@'%'; \
         CREATE DATABASE stock; CREATE TABLE stock.w (id BIGINT PRIMARY KEY)",
    );
    let ip = m.app.resolve(&format!("{CLUSTER}-primary")).unwrap();
    m.app
        .sql(
            &ip,
            "INSERT INTO stock.w VALUES (1)",
            Duration::from_secs(10),
        )
        .expect("a write through the primary Service");
    for replica in m.labelled("replica") {
        m.wait(
            &format!("the row on {replica}"),
            Duration::from_secs(60),
            |m| m.root(&replica, "SELECT COUNT(*) FROM stock.w WHERE id = 1") == "1",
        );
        assert_eq!(m.root(&replica, "SELECT @@global.super_read_only"), "1");
        let replica_ip = m.app.resolve(&format!("{replica}.{CLUSTER}")).unwrap();
        assert!(
            m.app
                .sql(
                    &replica_ip,
                    "INSERT INTO stock.w VALUES (2)",
                    Duration::from_secs(10)
                )
                .is_err(),
            "{replica} refuses writes"
        );
    }
    m.next_id = 10;

    // A deleted replica returns on its own volume, without a clone.
    let replica = m.labelled("replica")[0].clone();
    m.kubectl(&["-n", NS, "delete", "pod", &replica]);
    m.wait(&format!("{replica} back"), Duration::from_secs(180), |m| {
        m.labelled("replica").contains(&replica) && running_quietly(m)
    });
    let log = m.init_log(&replica);
    assert!(
        log.contains("data directory holds data") && !log.contains("cloned"),
        "{replica} kept its data:\n{log}"
    );

    // Scale to 4 with the leading operator pod deleted halfway: the other
    // operator pod takes the Lease and finishes; the new instance is cloned
    // from a replica. Scaling back keeps its volume.
    let leader = m.k.jsonpath(
        OPERATOR_NAMESPACE,
        "lease/ebisu-operator",
        "{.spec.holderIdentity}",
    );
    assert!(!leader.is_empty(), "an operator pod holds the Lease");
    m.kubectl(&["-n", NS, "scale", &format!("myc/{CLUSTER}"), "--replicas=4"]);
    m.wait("inventory-3 created", Duration::from_secs(60), |m| {
        !m.get("pod/inventory-3", "{.metadata.name}").is_empty()
    });
    m.kubectl(&["-n", OPERATOR_NAMESPACE, "delete", "pod", &leader]);
    m.wait_running(4);
    let log = m.init_log("inventory-3");
    let primary = m.primary();
    assert!(
        log.contains("cloned with the CLONE plugin")
            && !log.contains(&format!("donor=http://{primary}.")),
        "inventory-3 was cloned from a replica:\n{log}"
    );
    m.wait("the row on inventory-3", Duration::from_secs(60), |m| {
        m.root("inventory-3", "SELECT COUNT(*) FROM stock.w WHERE id = 1") == "1"
    });
    m.wait(
        "inventory-3 labelled replica",
        Duration::from_secs(60),
        |m| m.labelled("replica").contains(&"inventory-3".to_owned()),
    );
    let holder = m.k.jsonpath(
        OPERATOR_NAMESPACE,
        "lease/ebisu-operator",
        "{.spec.holderIdentity}",
    );
    assert!(
        !holder.is_empty() && holder != leader,
        "another operator pod leads: {holder}"
    );
    m.kubectl(&["-n", NS, "scale", &format!("myc/{CLUSTER}"), "--replicas=3"]);
    m.wait("scaled back to 3", Duration::from_secs(120), |m| {
        running_quietly(m) && m.get("pod/inventory-3", "{.metadata.name}").is_empty()
    });
    assert_eq!(
        m.get("pvc/data-inventory-3", "{.status.phase}"),
        "Bound",
        "a scaled-down instance keeps its volume"
    );

    m.a_backup_restores_exactly_what_it_held(TABLE);
    m.a_replica_seeded_from_a_snapshot_catches_up(TABLE);
    m.the_binary_logs_are_archived_through_a_switchover(TABLE);

    // Drain of the primary's node: switchover first.
    let old = m.primary();
    let node = m.get(&format!("pod/{old}"), "{.spec.nodeName}");
    let load = m.load(TABLE);
    std::thread::sleep(Duration::from_secs(2));
    m.kubectl(&[
        "drain",
        &node,
        "--ignore-daemonsets",
        "--delete-emptydir-data",
        "--timeout=180s",
    ]);
    let new = settled(&m);
    std::thread::sleep(Duration::from_secs(2));
    m.verify("mysql drain", TABLE, load, None);
    m.kubectl(&["uncordon", &node]);
    assert_ne!(new, old);
    assert_eq!(
        m.get(&format!("myc/{CLUSTER}"), "{.status.lastSwitchover.reason}"),
        "NodeDrain"
    );

    // Loss of the primary's node: failover, then the old primary returns.
    let old = m.primary();
    let node = m.get(&format!("pod/{old}"), "{.spec.nodeName}");
    let load = m.load(TABLE);
    std::thread::sleep(Duration::from_secs(2));
    m.node("stop", &node);
    m.wait("a new primary", Duration::from_secs(60), |m| {
        let now = m.primary();
        !now.is_empty() && now != old
    });
    std::thread::sleep(Duration::from_secs(3));
    m.node("start", &node);
    m.wait(
        "the old primary back in line",
        Duration::from_secs(240),
        |m| m.labelled("replica").contains(&old),
    );
    settled(&m);
    std::thread::sleep(Duration::from_secs(2));
    m.verify("mysql node loss", TABLE, load, None);
    assert_eq!(
        m.get(&format!("myc/{CLUSTER}"), "{.status.lastFailover.reason}"),
        "PrimaryLost"
    );

    // The faults that are not a clean node loss, and a frozen agent.

    for fault in [
        Fault::OperatorCutOff,
        Fault::PodIsolated,
        Fault::ServerFrozen,
        Fault::ServerKilled,
        Fault::AgentFrozen,
    ] {
        m.drill(fault, TABLE, Duration::from_secs(8));
    }
    m.grant_all_writes_only_to_the_primary(TABLE);
    m.a_moved_primary_label_is_put_back(TABLE);
    m.scaling_to_one_and_back_keeps_writing(TABLE);

    // A new image tag rolls through the replicas and one switchover.
    m.wait("a healthy cluster", Duration::from_secs(300), |m| {
        running_quietly(m) && m.labelled("replica").len() == 2
    });
    let old = m.primary();
    let before = m.get("sts/inventory", "{.status.updateRevision}");
    // A setting both flavors change at runtime is applied online.
    m.k.merge_patch(
        NS,
        &format!("myc/{CLUSTER}"),
        r#"{"spec":{"mysqlConfig":{"max_connections":"300"}}}"#,
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", m.diagnostics()));
    m.wait("max_connections online", Duration::from_secs(60), |m| {
        ["inventory-0", "inventory-1", "inventory-2"]
            .iter()
            .all(|pod| {
                m.try_root(pod, "SELECT @@GLOBAL.max_connections")
                    .is_some_and(|v| v == "300")
            })
    });
    assert_eq!(
        m.get("sts/inventory", "{.status.updateRevision}"),
        before,
        "an online setting makes no new revision"
    );
    let load = m.load(TABLE);
    std::thread::sleep(Duration::from_secs(2));
    m.k.merge_patch(
        NS,
        &format!("myc/{CLUSTER}"),
        r#"{"spec":{"image":"mysql:9.7"}}"#,
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", m.diagnostics()));
    let mut revision = String::new();
    m.wait("a new revision", Duration::from_secs(60), |m| {
        revision = m.get("sts/inventory", "{.status.updateRevision}");
        !revision.is_empty() && revision != before
    });
    m.wait("every instance updated", Duration::from_secs(600), |m| {
        m.get(
            &format!("myc/{CLUSTER}"),
            "{.status.updateRevision} {.status.updatedReplicas}",
        ) == format!("{revision} 3")
            && m.get(
                &format!("myc/{CLUSTER}"),
                "{.status.conditions[?(@.type==\"Updating\")].status}",
            ) == "False"
    });
    let new = settled(&m);
    std::thread::sleep(Duration::from_secs(2));
    m.verify("mysql rolling update", TABLE, load, None);
    assert_ne!(new, old, "the primary handed over");
    assert_eq!(
        m.get(&format!("myc/{CLUSTER}"), "{.status.lastSwitchover.reason}"),
        "RollingUpdate"
    );
    assert_eq!(
        m.get("pods", "{.items[*].spec.containers[0].image}"),
        "mysql:9.7 mysql:9.7 mysql:9.7"
    );

    m.down();
}
