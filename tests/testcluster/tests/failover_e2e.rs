//! The failover drill end to end on the local cluster, with real MariaDB
//! servers and a writer that counts an id only when its commit returned OK:
//! `kubectl drain` of the primary's node moves the primary before the pod
//! goes; `testcluster node stop` of the primary's node fails over to a
//! replica, and the old primary rejoins when its node starts again; an
//! operator pod killed halfway through a switchover leaves it to its
//! successor; a replica whose applier is stopped is never chosen; a failover
//! is refused while semi-sync had fallen back (until forced); a one-instance
//! cluster's drain does not hang; a `mysqlConfig` setting that applies
//! online restarts nothing, one that does not rolls through the replicas
//! and one switchover; a `GRANT ALL` account writes only to the primary, a
//! primary label moved by hand is put back, and a scale to one instance and
//! back keeps writing; a backup taken under a writer restores into a new
//! cluster with exactly what was acknowledged before it, and a restore
//! from a deleted snapshot is refused. Each drill checks that no acknowledged
//! write is lost, that two servers are never writable at once, and that one
//! primary remains.
#![allow(clippy::expect_used, clippy::unwrap_used)] // test helpers fail loudly by design

use std::{
    path::Path,
    time::{Duration, Instant},
};

use ebisu_testcluster::{
    Scenario,
    drills::Fault,
    ebisu::{self, OPERATOR_NAMESPACE},
    scenario::{APP_PASSWORD, APP_USER},
};

const STATE_DIR: &str = "/tmp/ebisu-testcluster-failover";
const NS: &str = "shop";
const TABLE: &str = "shop.w";

#[test]
fn the_primary_moves_on_drain_and_node_loss_without_losing_acknowledged_writes() {
    let mut d = Scenario::start(
        STATE_DIR,
        Path::new(env!("CARGO_BIN_EXE_testcluster")),
        NS,
        "orders",
        false,
    );
    d.install_operator(&[
        "features.fenceNodes=true",
        "features.givenVolumes=true",
        "logLevel=info\\,ebisu_operator::clustering=debug\\,ebisu_operator::reconcile=debug",
    ]);

    a_single_instance_drain_does_not_hang(&d);
    stuck_states_explain_themselves(&d);

    d.apply_example("examples/basic.yaml");
    let first = d.wait_settled(3);
    d.root(
        &first,
        &format!(
            "CREATE USER {APP_USER}@'%' IDENTIFIED BY '{APP_PASSWORD}'; \
             GRANT ALL ON shop.* TO {APP_USER}@'%'; CREATE DATABASE shop; \
             CREATE TABLE shop.w (id BIGINT PRIMARY KEY)"
        ),
    );

    d.a_backup_restores_exactly_what_it_held(TABLE);
    d.a_replica_seeded_from_a_snapshot_catches_up(TABLE);
    d.the_binary_logs_are_archived_through_a_switchover(TABLE);
    a_drain_of_the_primarys_node_switches_over_first(&mut d);
    partial_failures_keep_exactly_one_writable_server(&mut d);
    d.grant_all_writes_only_to_the_primary(TABLE);
    d.a_moved_primary_label_is_put_back(TABLE);
    d.scaling_to_one_and_back_keeps_writing(TABLE);
    a_replica_with_a_stopped_applier_is_never_chosen(&mut d);
    an_operator_killed_mid_switchover_leaves_it_to_its_successor(&mut d);
    a_lost_primary_is_failed_over_and_rejoins_when_it_returns(&mut d);
    a_failover_is_refused_while_semi_sync_had_fallen_back(&mut d);
    a_changed_spec_rolls_through_one_switchover(&mut d);
    a_lost_node_is_fenced_and_its_instance_returns_elsewhere(&mut d);

    d.down();
}

fn a_single_instance_drain_does_not_hang(d: &Scenario) {
    d.create_namespace("solo");
    let solo = "apiVersion: ebisu.dev/v1alpha1\nkind: MySQLCluster\nmetadata: {name: solo, namespace: solo}\nspec: {replicas: 1, storage: {size: 1Gi, ebs: {type: gp3}}}\n";
    let path = std::env::temp_dir().join("ebisu-solo.yaml");
    std::fs::write(&path, solo).unwrap();
    d.kubectl(&["apply", "-f", &path.display().to_string()]);
    ebisu::wait_running(&d.k, "solo", "solo", 1, Duration::from_secs(240))
        .unwrap_or_else(|e| panic!("{e}\n{}", ebisu::diagnostics(&d.k, "solo", "solo")));
    let warnings = d.k.jsonpath(
        "solo",
        "events",
        "{range .items[?(@.type==\"Warning\")]}{.reason}: {.message}{\"\\n\"}{end}",
    );
    // The apiserver's own Service IP repair loop may report a Service it
    // saw mid-creation (ClusterIPNotAllocated, "repairing"), and the
    // scheduler may look at a pod before its cache has the claim the
    // StatefulSet controller made just before it (FailedScheduling,
    // "persistentvolumeclaim ... not found", then it schedules): not ebisu's.
    let warnings: Vec<&str> = warnings
        .lines()
        .filter(|w| !w.starts_with("ClusterIPNotAllocated: "))
        .filter(|w| {
            !(w.starts_with("FailedScheduling: ")
                && w.contains("persistentvolumeclaim \"data-solo-0\" not found"))
        })
        .collect();
    assert!(
        warnings.is_empty(),
        "a new cluster's first seconds raise no Warning:\n{}",
        warnings.join("\n")
    );
    assert!(
        d.k.try_run(&["-n", "solo", "get", "pdb", "solo-primary"])
            .is_err(),
        "a single instance has no primary budget to hold a drain"
    );
    let node = d.k.jsonpath("solo", "pod/solo-0", "{.spec.nodeName}");
    let started = Instant::now();
    d.kubectl(&[
        "drain",
        &node,
        "--ignore-daemonsets",
        "--delete-emptydir-data",
        "--timeout=90s",
    ]);
    assert!(started.elapsed() < Duration::from_secs(90));
    d.kubectl(&["uncordon", &node]);
    ebisu::wait_running(&d.k, "solo", "solo", 1, Duration::from_secs(240))
        .unwrap_or_else(|e| panic!("{e}\n{}", ebisu::diagnostics(&d.k, "solo", "solo")));
    d.k.wait("a Warning that writes stop", Duration::from_secs(30), |k| {
        k.jsonpath(
            "solo",
            "events",
            "{range .items[*]}{.reason}: {.message}{\"\\n\"}{end}",
        )
        .contains("SingleInstanceDisruption: solo-0 is the only instance")
        .then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", ebisu::diagnostics(&d.k, "solo", "solo")));
    d.kubectl(&["delete", "namespace", "solo", "--wait=false"]);
}

/// What the operator cannot fix is a condition and one Event saying why:
/// a claim without a StorageClass in a cluster without a default one, and
/// a child whose name is taken by an object that is not the cluster's.
fn stuck_states_explain_themselves(d: &Scenario) {
    d.create_namespace("stuck");
    d.kubectl(&[
        "-n",
        "stuck",
        "create",
        "configmap",
        "taken-config",
        "--from-literal=a=b",
    ]);
    let manifests = "apiVersion: ebisu.dev/v1alpha1\nkind: MySQLCluster\nmetadata: {name: noclass, namespace: stuck}\nspec: {replicas: 1, storage: {size: 1Gi}}\n---\napiVersion: ebisu.dev/v1alpha1\nkind: MySQLCluster\nmetadata: {name: taken, namespace: stuck}\nspec: {replicas: 1, storage: {size: 1Gi, ebs: {type: gp3}}}\n";
    let path = std::env::temp_dir().join("ebisu-stuck.yaml");
    std::fs::write(&path, manifests).unwrap();
    d.kubectl(&["apply", "-f", &path.display().to_string()]);
    let events = |d: &Scenario| {
        d.k.jsonpath(
            "stuck",
            "events",
            "{range .items[*]}{.reason}: {.message}{\"\\n\"}{end}",
        )
    };
    d.wait(
        "the claim without a class explained",
        Duration::from_secs(90),
        |d| {
            events(d).contains(
                "ClaimPending: data-noclass-0 has no volume: spec.storage names no StorageClass",
            )
        },
    );
    assert!(
        d.k.jsonpath(
            "stuck",
            "myc/noclass",
            "{.status.conditions[?(@.type==\"Healthy\")].reason}"
        ) == "ClaimPending"
    );
    d.wait("the taken name explained", Duration::from_secs(60), |d| {
        events(d).contains("ChildNotApplied: failed to apply ConfigMap taken-config: an object of that name exists")
    });
    assert_eq!(
        d.k.jsonpath("stuck", "configmap/taken-config", "{.data.a}"),
        "b",
        "the object that is not ours is left as it was"
    );
    d.kubectl(&["delete", "namespace", "stuck", "--wait=false"]);
}

fn a_drain_of_the_primarys_node_switches_over_first(d: &mut Scenario) {
    let old = d.primary();
    let node = d.node_of(&old);
    let load = d.load(TABLE);
    std::thread::sleep(Duration::from_secs(2));
    d.kubectl(&[
        "drain",
        &node,
        "--ignore-daemonsets",
        "--delete-emptydir-data",
        "--timeout=180s",
    ]);
    let new = d.wait_settled(3);
    std::thread::sleep(Duration::from_secs(2));
    let (writes, _) = d.verify("drain", TABLE, load, None);
    d.kubectl(&["uncordon", &node]);
    assert_ne!(new, old, "the primary moved off the drained node");
    assert_eq!(
        d.get("myc/orders", "{.status.lastSwitchover.from} {.status.lastSwitchover.to} {.status.lastSwitchover.reason}"),
        format!("{old} {new} NodeDrain")
    );
    let blocked: u64 = d
        .get("myc/orders", "{.status.lastSwitchover.writesBlockedMs}")
        .parse()
        .expect("writesBlockedMs");
    assert!(blocked > 0);
    eprintln!(
        "drain: {old} -> {new}, writes blocked {blocked} ms by the operator's count, \
         longest stretch without an acknowledged write {:?}",
        writes.longest_gap(writes.acked[0].1, writes.acked.last().unwrap().1)
    );
    assert_eq!(d.labelled("replica").len(), 2, "{old} is back as a replica");
}

/// The faults that are not a clean node loss, each under the writer and
/// the poller: the operator cut off from the primary (no failover at all),
/// the primary's pod cut off, its server frozen and resumed, its server
/// killed, its agent frozen (no failover). Nothing acknowledged lost,
/// never two writable servers, one now.
fn partial_failures_keep_exactly_one_writable_server(d: &mut Scenario) {
    for fault in [
        Fault::OperatorCutOff,
        Fault::PodIsolated,
        Fault::ServerFrozen,
        Fault::ServerKilled,
        Fault::AgentFrozen,
    ] {
        d.drill(fault, TABLE, Duration::from_secs(8));
    }
}

fn a_replica_with_a_stopped_applier_is_never_chosen(d: &mut Scenario) {
    // Both replicas caught up first (one re-created or re-seeded by the
    // drill before reports its lag from old events for a while, and a
    // switchover request refused for lag is not retried).
    d.wait("both replicas caught up", Duration::from_secs(120), |d| {
        d.get(
            "myc/orders",
            "{range .status.instances[?(@.role==\"Replica\")]}{.lagSeconds}{\" \"}{end}",
        )
        .split_whitespace()
        .filter(|lag| *lag == "0")
        .count()
            == 2
    });
    let primary = d.primary();
    let replicas = d.labelled("replica");
    let (stopped, caught_up) = (&replicas[0], &replicas[1]);
    d.root(stopped, "STOP SLAVE SQL_THREAD");
    d.kubectl(&[
        "-n",
        NS,
        "annotate",
        "myc/orders",
        "ebisu.dev/switchover=any",
    ]);
    d.wait("the requested switchover", Duration::from_secs(60), |d| {
        d.primary() != primary
    });
    assert_eq!(
        &d.primary(),
        caught_up,
        "the replica whose applier runs was chosen"
    );
    assert_eq!(
        d.get(
            "myc/orders",
            "{.metadata.annotations.ebisu\\.dev/switchover}"
        ),
        "",
        "the request was consumed"
    );
    d.root(stopped, "START SLAVE SQL_THREAD");
    d.wait_settled(3);

    // A request naming a replica that cannot take over changes nothing.
    let primary = d.primary();
    d.kubectl(&[
        "-n",
        NS,
        "annotate",
        "myc/orders",
        "ebisu.dev/switchover=orders-7",
    ]);
    d.wait("the refusal", Duration::from_secs(60), |d| {
        d.get(
            "myc/orders",
            "{.status.conditions[?(@.type==\"Switching\")].message}",
        )
        .contains("orders-7 is not an instance")
    });
    assert_eq!(d.primary(), primary);
    assert!(d.diagnostics().contains("SwitchoverRefused"));
}

fn an_operator_killed_mid_switchover_leaves_it_to_its_successor(d: &mut Scenario) {
    // Room for a successor to take the Lease over (15 s) within the
    // switchover's catch-up budget (maxLagForPromotionSeconds + 10 s).
    d.patch(r#"{"spec":{"replication":{"maxLagForPromotionSeconds":30}}}"#);
    let old = d.primary();
    let candidate = d.labelled("replica")[0].clone();
    let load = d.load(TABLE);
    // The candidate applies 6 s late, so the switchover waits in its
    // catch-up step, where the operator is then killed without a goodbye.
    d.root(
        &candidate,
        "STOP SLAVE; CHANGE MASTER TO MASTER_DELAY=6; START SLAVE",
    );
    std::thread::sleep(Duration::from_secs(2));
    d.kubectl(&[
        "-n",
        NS,
        "annotate",
        "myc/orders",
        &format!("ebisu.dev/switchover={candidate}"),
    ]);
    d.wait("the switchover to start", Duration::from_secs(30), |d| {
        d.condition("Switching") == "True"
    });
    let operator = d.k.jsonpath(
        OPERATOR_NAMESPACE,
        "lease/ebisu-operator",
        "{.spec.holderIdentity}",
    );
    d.kubectl(&[
        "-n",
        OPERATOR_NAMESPACE,
        "delete",
        "pod",
        &operator,
        "--force",
        "--grace-period=0",
    ]);
    d.wait("another operator to lead", Duration::from_secs(60), |d| {
        let leader = d.k.jsonpath(
            OPERATOR_NAMESPACE,
            "lease/ebisu-operator",
            "{.spec.holderIdentity}",
        );
        !leader.is_empty() && leader != operator
    });
    d.wait("the switchover to finish", Duration::from_secs(120), |d| {
        d.condition("Switching") == "False"
    });
    let new = d.wait_settled(3);
    std::thread::sleep(Duration::from_secs(1));
    d.verify("operator killed mid-switchover", TABLE, load, None);
    assert_eq!(
        new,
        candidate,
        "the successor finished the switchover: {}",
        d.get(
            "myc/orders",
            "{.status.conditions[?(@.type==\"Switching\")].message}"
        )
    );
    assert_eq!(
        d.get(
            "myc/orders",
            "{.status.lastSwitchover.from} {.status.lastSwitchover.to}"
        ),
        format!("{old} {candidate}")
    );
}

fn a_lost_primary_is_failed_over_and_rejoins_when_it_returns(d: &mut Scenario) {
    let old = d.primary();
    let node = d.node_of(&old);
    let load = d.load(TABLE);
    std::thread::sleep(Duration::from_secs(2));
    let stopped_at = Instant::now();
    d.node("stop", &node);
    d.wait("a new primary", Duration::from_secs(60), |d| {
        let primary = d.primary();
        !primary.is_empty() && primary != old
    });
    let new = d.primary();
    d.wait(
        "writes through the new primary",
        Duration::from_secs(30),
        |d| {
            d.app.resolve("orders-primary").is_some_and(|ip| {
                d.app
                    .sql(&ip, "SELECT @@global.read_only", Duration::from_secs(1))
                    .is_ok_and(|v| v == "0")
            })
        },
    );
    std::thread::sleep(Duration::from_secs(2));
    let (writes, looks) = d.verify("node stop", TABLE, load, None);
    assert_eq!(
        d.get(
            "myc/orders",
            "{.status.lastFailover.from} {.status.lastFailover.to} {.status.lastFailover.reason}"
        ),
        format!("{old} {new} PrimaryLost")
    );
    eprintln!(
        "node stop: {old} -> {new}; writable after {:?}, first acknowledged write after {:?}",
        looks
            .new_primary_after(&old, stopped_at)
            .map(|(at, _)| at.duration_since(stopped_at)),
        writes
            .first_after(stopped_at + Duration::from_millis(100))
            .map(|at| at.duration_since(stopped_at))
    );
    let log = d.kubectl(&[
        "-n",
        OPERATOR_NAMESPACE,
        "logs",
        &d.k.jsonpath(
            OPERATOR_NAMESPACE,
            "lease/ebisu-operator",
            "{.spec.holderIdentity}",
        ),
    ]);
    for line in log.lines().filter(|l| {
        l.contains("stopped answering")
            || l.contains("change of primary")
            || l.contains("primary moved")
    }) {
        eprintln!("operator: {line}");
    }
    d.wait("the stuck pod explained", Duration::from_secs(60), |d| {
        d.diagnostics()
            .contains(&format!("NodeUnreachable: node {node} of {old}"))
    });

    // The node returns: the old primary is fenced at once and rejoins (or,
    // if it kept a write nobody acknowledged, is kept out and reported).
    let load = d.load(TABLE);
    d.node("start", &node);
    d.wait(
        "the old primary back in line",
        Duration::from_secs(120),
        |d| {
            d.labelled("replica").contains(&old)
                || !d
                    .get("myc/orders", "{.status.instances[*].errantGtids}")
                    .is_empty()
        },
    );
    std::thread::sleep(Duration::from_secs(3));
    d.verify("node start", TABLE, load, None);
    assert_eq!(d.primary(), new, "the new primary stays");
}

fn a_failover_is_refused_while_semi_sync_had_fallen_back(d: &mut Scenario) {
    // Let the primary fall back after 1 s without acknowledgements.
    d.patch(r#"{"spec":{"replication":{"timeoutSeconds":1}}}"#);
    d.wait_settled(3);
    let primary = d.primary();
    let replica_nodes: Vec<String> = d.labelled("replica").iter().map(|r| d.node_of(r)).collect();
    for node in &replica_nodes {
        d.node("stop", node);
    }
    // This commit waits 1 s, then is acknowledged without any replica.
    let ip = d.app.resolve("orders-primary").unwrap();
    d.app
        .sql(
            &ip,
            "INSERT INTO shop.w (id) VALUES (999999)",
            Duration::from_secs(10),
        )
        .expect("acknowledged asynchronously");
    // What the refusal rests on is the operator's memory of the fallback
    // (an Event from an earlier stage of the drill would not do).
    let acknowledged = Instant::now();
    d.wait("the fallback remembered", Duration::from_secs(60), |d| {
        d.get("myc/orders", "{.status.clustering.semiSyncActive}") == "false"
    });
    eprintln!(
        "semi-sync fallback: remembered {:?} after the asynchronous acknowledgement",
        acknowledged.elapsed()
    );
    assert!(
        d.get(
            "events",
            "{range .items[*]}{.reason}/{.message}{\"\\n\"}{end}"
        )
        .contains(&format!("SemiSyncFallback/primary {primary} fell back")),
        "the fallback is an Event naming the primary"
    );
    let node = d.node_of(&primary);
    d.node("stop", &node);
    for node in &replica_nodes {
        d.node("start", node);
    }
    d.wait("the failover refused", Duration::from_secs(60), |d| {
        d.condition("FailoverBlocked") == "True"
    });
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(d.primary(), primary, "nobody was promoted");
    let writable: Vec<String> = d
        .app
        .servers()
        .into_iter()
        .filter(|(pod, ip)| {
            *pod != primary
                && d.app
                    .sql(ip, "SELECT @@global.read_only", Duration::from_secs(2))
                    .is_ok_and(|v| v == "0")
        })
        .map(|(pod, _)| pod)
        .collect();
    assert!(writable.is_empty(), "no replica writable: {writable:?}");
    assert!(
        d.get(
            "myc/orders",
            "{.status.conditions[?(@.type==\"FailoverBlocked\")].message}"
        )
        .contains(&format!("ebisu.dev/force-failover={primary}")),
        "the condition says how to force it"
    );

    // Forced: a replica is promoted, and the write only the lost primary had is gone.
    d.kubectl(&[
        "-n",
        NS,
        "annotate",
        "myc/orders",
        &format!("ebisu.dev/force-failover={primary}"),
    ]);
    d.wait("the forced failover", Duration::from_secs(60), |d| {
        let now = d.primary();
        !now.is_empty() && now != primary
    });
    assert_eq!(
        d.get("myc/orders", "{.status.lastFailover.reason}"),
        "Forced"
    );
    let new = d.primary();
    assert_eq!(
        d.root(&new, "SELECT COUNT(*) FROM shop.w WHERE id = 999999"),
        "0"
    );
    let lost_uid = d.get(&format!("pod/{primary}"), "{.metadata.uid}");
    d.node("start", &node);
    // It returns holding that write, which nobody else has: its data is set
    // aside and it is copied afresh, in a new pod.
    d.wait(
        &format!("{primary} re-seeded"),
        Duration::from_secs(300),
        |d| {
            d.get(
                "events",
                "{range .items[?(@.reason==\"Reseeding\")]}{.message}{\"\\n\"}{end}",
            )
            .contains(&format!("{primary} restarts"))
        },
    );
    d.wait(
        &format!("{primary} back in a new pod"),
        Duration::from_secs(300),
        |d| {
            d.get(
                &format!("pod/{primary}"),
                "{.metadata.uid} {.status.containerStatuses[*].ready}",
            )
            .strip_prefix(&format!("{lost_uid} "))
            .is_none()
                && d.labelled("replica").contains(&primary)
        },
    );
}

/// A `mysqlConfig` setting that applies online reaches every server without
/// a restart; one that does not is a new StatefulSet revision: the replicas
/// restart one at a time, the primary hands over to an updated replica and
/// restarts last, and every server ends on the new settings, under the
/// writer and the poller.
fn a_changed_spec_rolls_through_one_switchover(d: &mut Scenario) {
    d.wait_settled(3);
    d.wait("a healthy cluster", Duration::from_secs(300), |d| {
        d.condition("Healthy") == "True" && d.labelled("replica").len() == 2
    });
    let old = d.primary();
    let before = d.get("sts/orders", "{.status.updateRevision}");
    let switchovers_before = d.get("myc/orders", "{.status.lastSwitchover.startedAt}");
    let pods = "{.items[*].metadata.uid}";
    let uids = d.get("pods", pods);
    let load = d.load(TABLE);
    std::thread::sleep(Duration::from_secs(2));

    // A setting both flavors change at runtime is applied online.
    d.patch(r#"{"spec":{"mysqlConfig":{"max_connections":"300"}}}"#);
    d.wait("max_connections online", Duration::from_secs(60), |d| {
        ["orders-0", "orders-1", "orders-2"].iter().all(|pod| {
            d.try_root(pod, "SELECT @@GLOBAL.max_connections")
                .as_deref()
                == Some("300")
        })
    });
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        d.get("sts/orders", "{.status.updateRevision}"),
        before,
        "an online setting makes no new revision"
    );
    assert_eq!(d.get("pods", pods), uids, "and restarts no pod");

    // One that needs a restart rolls, once a budget of the user's that
    // also selects the first replica to restart (which makes the eviction
    // API refuse it) is gone.
    let first = d
        .labelled("replica")
        .into_iter()
        .max_by_key(|p| p.rsplit('-').next().and_then(|n| n.parse::<u32>().ok()))
        .unwrap();
    d.kubectl(&[
        "-n",
        NS,
        "create",
        "pdb",
        "hold-one",
        &format!("--selector=statefulset.kubernetes.io/pod-name={first}"),
        "--max-unavailable=0",
    ]);
    d.patch(r#"{"spec":{"mysqlConfig":{"back_log":"100"}}}"#);
    let mut revision = String::new();
    d.wait("a new revision", Duration::from_secs(60), |d| {
        revision = d.get("sts/orders", "{.status.updateRevision}");
        !revision.is_empty() && revision != before
    });
    let updating = "{.status.conditions[?(@.type==\"Updating\")].message}";
    d.wait("the second budget reported", Duration::from_secs(60), |d| {
        d.get("myc/orders", updating)
            .contains("more than one PodDisruptionBudget")
            && d.get(
                "events",
                "{range .items[*]}{.reason}/{.message}{\"\\n\"}{end}",
            )
            .contains(&format!(
                "OverlappingBudgets/{first} is selected by more than one PodDisruptionBudget"
            ))
    });
    assert_eq!(
        d.get("pods", pods),
        uids,
        "nothing restarted past the budget"
    );
    d.kubectl(&["-n", NS, "delete", "pdb", "hold-one"]);
    let started = Instant::now();
    d.wait("every instance updated", Duration::from_secs(600), |d| {
        d.get(
            "myc/orders",
            "{.status.updateRevision} {.status.updatedReplicas}",
        ) == format!("{revision} 3")
            && d.condition("Updating") == "False"
    });
    let new = d.wait_settled(3);
    let took = started.elapsed();
    std::thread::sleep(Duration::from_secs(2));
    let (writes, _) = d.verify("rolling update", TABLE, load, None);
    assert_ne!(new, old, "the primary handed over");
    assert_ne!(
        d.get("myc/orders", "{.status.lastSwitchover.startedAt}"),
        switchovers_before
    );
    assert_eq!(
        d.get("myc/orders", "{.status.lastSwitchover.reason}"),
        "RollingUpdate"
    );
    for pod in ["orders-0", "orders-1", "orders-2"] {
        assert_eq!(
            d.root(pod, "SELECT @@back_log, @@max_connections"),
            "100\t300",
            "{pod} runs the new settings"
        );
    }
    eprintln!(
        "rolling update: {old} -> {new} in {took:?}, writes blocked {} ms by the operator's \
         count, longest stretch without an acknowledged write {:?}",
        d.get("myc/orders", "{.status.lastSwitchover.writesBlockedMs}"),
        writes.longest_gap(writes.acked[0].1, writes.acked.last().unwrap().1)
    );

    // An image of an older release series is refused before any restart.
    let uids = d.get("pods", pods);
    d.patch(r#"{"spec":{"image":"mariadb:10.6"}}"#);
    d.wait("the downgrade refused", Duration::from_secs(60), |d| {
        d.get(
            "myc/orders",
            "{.status.conditions[?(@.type==\"Updating\")].reason}",
        ) == "DowngradeRefused"
    });
    let message = d.get(
        "myc/orders",
        "{.status.conditions[?(@.type==\"Updating\")].message}",
    );
    assert!(
        message.contains("spec.image mariadb:10.6") && message.contains("10.11"),
        "{message}"
    );
    assert!(
        d.get("events", "{range .items[*]}{.reason}{\"\\n\"}{end}")
            .contains("DowngradeRefused")
    );
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(d.get("pods", pods), uids, "no pod was restarted");
    d.patch(r#"{"spec":{"image":null}}"#);
    d.wait("back up to date", Duration::from_secs(60), |d| {
        d.condition("Updating") == "False"
    });
    assert_eq!(d.get("pods", pods), uids, "nor by undoing it");
}

/// `spec.replication.fenceNodes`: after the failover away from a node that
/// stopped answering, ebisu stops its EC2 instance and taints it
/// out-of-service; Kubernetes then moves the lost instance, volume and all,
/// to the other node of its zone, where it rejoins as a replica. When the
/// node is started again, the taint goes.
fn a_lost_node_is_fenced_and_its_instance_returns_elsewhere(d: &mut Scenario) {
    d.wait_settled(3);
    d.patch(r#"{"spec":{"replication":{"fenceNodes":true}}}"#);
    let old = d.primary();
    let node = d.node_of(&old);
    let uid = d.get(&format!("pod/{old}"), "{.metadata.uid}");
    let zone_of = |d: &Scenario, node: &str| {
        d.k.jsonpath(
            "default",
            &format!("node/{node}"),
            "{.metadata.labels.topology\\.kubernetes\\.io/zone}",
        )
    };
    let zone = zone_of(d, &node);
    let provider =
        d.k.jsonpath("default", &format!("node/{node}"), "{.spec.providerID}");
    let instance = provider.rsplit('/').next().unwrap().to_owned();
    let volume = d.get(&format!("pvc/data-{old}"), "{.spec.volumeName}");
    let load = d.load(TABLE);
    std::thread::sleep(Duration::from_secs(2));
    let stopped_at = Instant::now();
    d.node("stop", &node);
    d.wait("a new primary", Duration::from_secs(60), |d| {
        let primary = d.primary();
        !primary.is_empty() && primary != old
    });
    let taints = format!("node/{node}");
    d.wait(&format!("{node} fenced"), Duration::from_secs(120), |d| {
        d.k.jsonpath("default", &taints, "{.spec.taints[*].key}")
            .contains("node.kubernetes.io/out-of-service")
            && d.get("myc/orders", "{.status.fencedNodes}").contains(&node)
    });
    let fenced_after = stopped_at.elapsed();
    let ec2 = ebisu_testcluster::ec2::client();
    let state = d
        .block_on(ec2.describe_instances().instance_ids(&instance).send())
        .unwrap()
        .reservations()
        .iter()
        .flat_map(|r| r.instances())
        .find_map(|i| i.state().and_then(|s| s.name()).cloned());
    assert_eq!(
        state,
        Some(aws_sdk_ec2::types::InstanceStateName::Stopped),
        "the fenced node's instance {instance} is stopped at EC2"
    );
    d.wait(
        &format!("{old} Ready again as a replica on another node"),
        Duration::from_secs(300),
        |d| {
            let now = d.get(
                &format!("pod/{old}"),
                "{.metadata.uid} {.spec.nodeName} {.status.conditions[?(@.type==\"Ready\")].status}",
            );
            let fields: Vec<&str> = now.split(' ').collect();
            matches!(fields[..], [new_uid, on, "True"] if new_uid != uid && on != node)
                && d.labelled("replica").contains(&old)
        },
    );
    let back_after = stopped_at.elapsed();
    let new_node = d.node_of(&old);
    assert_eq!(
        zone_of(d, &new_node),
        zone,
        "{old} stays in its volume's zone"
    );
    assert_eq!(
        d.get(&format!("pvc/data-{old}"), "{.spec.volumeName}"),
        volume,
        "{old} came back on its own volume"
    );
    std::thread::sleep(Duration::from_secs(2));
    d.verify("fenced node", TABLE, load, None);
    let events = d.diagnostics();
    assert!(
        events.contains(&format!(
            "NodeFenced: node {node} stopped answering with {old}"
        )),
        "a NodeFenced Event names the node and {old}:\n{events}"
    );
    eprintln!(
        "fencing: {node} fenced {fenced_after:?} after it stopped; {old} Ready again as a replica on {new_node} after {back_after:?}"
    );

    // The node is started again: it boots with nothing of the old pod
    // running, and the taint goes.
    d.node("start", &node);
    let started_at = Instant::now();
    d.wait(&format!("{node} unfenced"), Duration::from_secs(180), |d| {
        !d.k.jsonpath("default", &taints, "{.spec.taints[*].key}")
            .contains("node.kubernetes.io/out-of-service")
            && d.get("myc/orders", "{.status.fencedNodes}").is_empty()
    });
    eprintln!(
        "fencing: {node} unfenced {:?} after it started",
        started_at.elapsed()
    );
    assert!(
        d.diagnostics()
            .contains(&format!("NodeUnfenced: node {node} is Ready again"))
    );
    d.wait_settled(3);
}
