//! ebisu end to end on the local cluster, as a user drives it: the chart
//! installs the operator as a pod (its RBAC, in-cluster credentials),
//! `kubectl apply -f examples/basic.yaml` gives one primary and two
//! replicas replicating from it, a row written through `<name>-primary` is
//! read back from every replica, a replica stopped and made writable by hand
//! is repaired (with Events), a deleted replica comes back on its own
//! volume in its zone and catches up without a clone, `kubectl scale` to 5
//! seeds the new instances from a replica even when the operator pod is
//! deleted halfway, and scaling back to 3 keeps the volumes. With two
//! operator pods only the Lease holder acts, and another pod takes over
//! when the leader goes. A replica with errant transactions is reported and left
//! out, its data kept.
#![allow(clippy::expect_used, clippy::unwrap_used)] // test helpers fail loudly by design

use std::{collections::BTreeSet, path::Path, time::Duration};

use ebisu_testcluster::{
    Scenario,
    ebisu::{self, OPERATOR_NAMESPACE},
    registry,
    scenario::{APP_PASSWORD, APP_USER},
};

const STATE_DIR: &str = "/tmp/ebisu-testcluster-operator";
const NS: &str = "shop";

/// The pod's IP.
fn ip(e: &Scenario, pod: &str) -> String {
    e.get(&format!("pod/{pod}"), "{.status.podIP}")
}

/// SQL as the application user at `host`.
fn app(host: &str, statement: &str) -> Result<String, ebisu::EbisuError> {
    ebisu::sql(host, APP_USER, APP_PASSWORD, statement)
}

/// Waits until order `id` reads back as `item` on `pod`.
fn wait_row(e: &Scenario, pod: &str, id: u32, item: &str) {
    let ip = ip(e, pod);
    e.wait(
        &format!("order {id} on {pod}"),
        Duration::from_secs(60),
        |_| {
            app(
                &ip,
                &format!("SELECT item FROM shop.orders WHERE id = {id}"),
            )
            .is_ok_and(|got| got == item)
        },
    );
}

/// The value of `key` in Secret `name`, decoded.
fn secret_value(e: &Scenario, name: &str, key: &str) -> String {
    e.k.try_run(&[
        "-n",
        NS,
        "get",
        &format!("secret/{name}"),
        "-o",
        &format!(r#"go-template={{{{index .data "{key}" | base64decode}}}}"#),
    ])
    .unwrap()
}

/// Deletes MySQLCluster `name` and waits for its pods to go.
fn delete_clusters_named(e: &Scenario, name: &str) {
    e.kubectl(&[
        "-n",
        NS,
        "delete",
        "myc",
        name,
        "--wait=true",
        "--timeout=180s",
    ]);
    e.wait(
        &format!("{name}'s pods to go"),
        Duration::from_secs(180),
        |e| {
            e.get(
                "pods",
                &format!(
                    r#"{{.items[?(@.metadata.labels.ebisu\.dev/cluster=="{name}")].metadata.name}}"#
                ),
            )
            .is_empty()
        },
    );
}

/// Deletes `which` MySQLClusters (a name, or `--all`) and waits for their pods to go.
fn delete_clusters(e: &Scenario, which: &str) {
    e.kubectl(&[
        "-n",
        NS,
        "delete",
        "myc",
        which,
        "--wait=true",
        "--timeout=180s",
    ]);
    e.wait("the pods to go", Duration::from_secs(180), |e| {
        e.get("pods", "{.items[*].metadata.name}").is_empty()
    });
}

/// The zone of the node `pod` runs on.
fn node_zone(e: &Scenario, pod: &str) -> String {
    e.zone_of(&e.node_of(pod))
}

#[test]
fn operator_installed_by_helm_runs_scales_and_recovers_a_cluster() {
    let e = Scenario::start(
        STATE_DIR,
        Path::new(env!("CARGO_BIN_EXE_testcluster")),
        NS,
        "orders",
        false,
    );
    // The namespace exists before the chart puts its Role there.
    e.create_namespace(NS);
    e.install_operator(&[
        "replicaCount=1",
        "watchNamespaces={shop}",
        "features.givenVolumes=true",
    ]);
    e.apply_example("examples/basic.yaml");

    three_instances_replicate_from_one_primary(&e);
    the_pods_run_the_images_built_here(&e);
    volumes_are_described_tagged_and_modified_at_ec2(&e);
    a_replica_that_drifted_is_repaired(&e);
    a_deleted_replica_returns_on_its_volume_without_a_clone(&e);
    scale_up_finishes_after_the_operator_pod_is_deleted(&e);

    // Scale down: status follows, the volumes stay.
    e.kubectl(&["-n", NS, "scale", "myc/orders", "--replicas=3"]);
    e.wait("status to say 3", Duration::from_secs(120), |e| {
        e.get(
            "myc/orders",
            "{.status.replicas} {.status.readyReplicas} {.status.phase}",
        ) == "3 3 Running"
    });
    let claims = e.get("pvc", "{.items[*].metadata.name}");
    assert_eq!(
        claims.split(' ').count(),
        5,
        "scaled-down instances keep their volumes: {claims}"
    );

    a_standby_operator_takes_over_from_the_leader(&e);
    a_replica_with_errant_transactions_is_reported_and_left_out(&e);
    deleted_credentials_are_never_regenerated_for_data_that_exists(&e);
    a_recreated_cluster_comes_back_with_its_data_and_passwords(&e);
    given_volumes_are_checked_and_bound(&e);
    the_quick_start_connects_with_the_app_secret(&e);
    an_upgrade_brings_a_new_crd_field_and_keeps_its_values(&e);
    uninstall_leaves_exactly_what_the_readme_lists(&e);

    e.down();
}

/// crane against the local registry; its stdout.
fn crane(args: &[&str]) -> String {
    let out = std::process::Command::new(registry::crane())
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "crane {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `shell` with the crane binary as `$1` and `reference` as `$2`; its stdout.
fn with_crane(shell: &str, reference: &str) -> String {
    let out = std::process::Command::new("bash")
        .args(["-o", "pipefail", "-c", shell, "sh"])
        .arg(registry::crane())
        .arg(reference)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{shell}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The operator pod and the instances' sidecar install step run the images
/// `tests/build-images.sh` pushed to the cluster's registry, pulled by the
/// chart's default references (ghcr.io, mirrored locally); each image is a
/// two-platform index of non-root images holding the static binary, the CA
/// certificates and the passwd files, and nothing else.
fn the_pods_run_the_images_built_here(e: &Scenario) {
    let version = env!("CARGO_PKG_VERSION");
    let operator_image = e.k.jsonpath(
        OPERATOR_NAMESPACE,
        "pods",
        "{.items[*].status.containerStatuses[*].imageID}",
    );
    let sidecar_image = e.get(
        "pod/orders-0",
        r#"{.status.initContainerStatuses[?(@.name=="install-sidecar")].imageID}"#,
    );
    for (name, running) in [
        ("ebisu-operator", operator_image),
        ("ebisu-sidecar", sidecar_image),
    ] {
        let pushed = format!(
            "{}/{}/{name}:{version}",
            registry::address(),
            registry::EBISU_PREFIX
        );
        let digest = crane(&["digest", &pushed]).trim().to_owned();
        assert_eq!(
            running,
            format!("ghcr.io/{}/{name}@{digest}", registry::EBISU_PREFIX),
            "{name}: the pod runs the image pushed as {pushed}"
        );

        let index: serde_json::Value =
            serde_json::from_str(&crane(&["manifest", &pushed])).unwrap();
        let platforms: BTreeSet<String> = index["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                format!(
                    "{}/{}",
                    m["platform"]["os"].as_str().unwrap(),
                    m["platform"]["architecture"].as_str().unwrap()
                )
            })
            .collect();
        assert_eq!(
            platforms,
            BTreeSet::from(["linux/amd64".to_owned(), "linux/arm64".to_owned()]),
            "{name}"
        );
        for (platform, machine) in [("linux/amd64", "x86-64"), ("linux/arm64", "ARM aarch64")] {
            let config: serde_json::Value =
                serde_json::from_str(&crane(&["config", "--platform", platform, &pushed])).unwrap();
            assert_eq!(config["config"]["User"], "65532:65532", "{name} {platform}");
            assert_eq!(
                config["config"]["Entrypoint"],
                serde_json::json!([format!("/{name}")]),
                "{name} {platform}"
            );
            let export = format!(r#""$1" export --platform {platform} "$2" -"#);
            let files: BTreeSet<String> = with_crane(&format!("{export} | tar -t"), &pushed)
                .lines()
                .map(|l| l.trim_end_matches('/').to_owned())
                .collect();
            let expected: BTreeSet<String> = [
                name,
                "etc",
                "etc/group",
                "etc/passwd",
                "etc/ssl",
                "etc/ssl/certs",
                "etc/ssl/certs/ca-certificates.crt",
            ]
            .map(str::to_owned)
            .into();
            assert_eq!(files, expected, "{name} {platform}: the image's files");
            let binary = with_crane(&format!("{export} | tar -xO {name} | file -b -"), &pushed);
            assert!(
                binary.contains(machine) && binary.contains("static"),
                "{name} {platform}: {binary}"
            );
            let manifest: serde_json::Value =
                serde_json::from_str(&crane(&["manifest", "--platform", platform, &pushed]))
                    .unwrap();
            println!(
                "image {name} {platform}: {} bytes compressed",
                manifest["layers"][0]["size"]
            );
        }
    }
}

fn three_instances_replicate_from_one_primary(e: &Scenario) {
    assert_eq!(e.wait_running(3), "orders-0");
    let roles = e.get(
        "pods",
        "{range .items[*]}{.metadata.name}={.metadata.labels.ebisu\\.dev/role} {end}",
    );
    assert_eq!(roles, "orders-0=primary orders-1=replica orders-2=replica");
    let zones = e.get("myc/orders", "{.status.instances[*].zone}");
    assert_eq!(
        zones.split(' ').collect::<BTreeSet<_>>().len(),
        3,
        "spread over three zones: {zones}"
    );
    // The agents answer only the cluster's pods and the operator (the local
    // cluster does not enforce NetworkPolicies: the object is what is checked).
    assert_eq!(
        e.get(
            "networkpolicy/orders-instances",
            "{.spec.ingress[*].ports[*].port} {.spec.ingress[1].from[1].namespaceSelector.matchLabels}",
        ),
        r#"3306 9080 {"kubernetes.io/metadata.name":"ebisu-system"}"#
    );
    let columns = e.kubectl(&["-n", NS, "get", "myc", "orders"]);
    assert!(
        columns.contains("orders-0") && columns.contains("Running"),
        "kubectl get myc shows the primary and phase:\n{columns}"
    );

    // An application user, created on the primary as root.
    e.root(
        "orders-0",
        &format!(
            "CREATE USER {APP_USER}@'%' IDENTIFIED BY '{APP_PASSWORD}'; \
             GRANT ALL ON shop.* TO {APP_USER}@'%'; CREATE DATABASE shop; \
             CREATE TABLE shop.orders (id INT PRIMARY KEY, item TEXT)"
        ),
    );

    // Write through the primary Service, as an application would.
    let primary = ebisu::resolve(&e.layout, NS, "orders-primary").unwrap();
    assert_eq!(primary, ip(e, "orders-0"), "orders-primary is the primary");
    app(&primary, "INSERT INTO shop.orders VALUES (1, 'tea')")
        .expect("write through orders-primary");
    for replica in ["orders-1", "orders-2"] {
        wait_row(e, replica, 1, "tea");
        assert!(
            app(&ip(e, replica), "INSERT INTO shop.orders VALUES (2, 'x')").is_err(),
            "{replica} refuses writes"
        );
    }
}

/// The volumes as EC2 (the local EC2 API) has them, and as status shows them.
fn ec2_volume(e: &Scenario, id: &str) -> aws_sdk_ec2::types::Volume {
    let ec2 = ebisu_testcluster::ec2::client();
    e.block_on(ec2.describe_volumes().volume_ids(id).send())
        .unwrap()
        .volumes()
        .first()
        .cloned()
        .unwrap()
}

fn volumes_are_described_tagged_and_modified_at_ec2(e: &Scenario) {
    let pods = ["orders-0", "orders-1", "orders-2"];
    e.wait(
        "every instance's volume described from EC2 in status",
        Duration::from_secs(60),
        |e| {
            pods.iter()
                .all(|p| e.instance(p, "volume.state") == "in-use")
        },
    );
    for pod in pods {
        let id = e.instance(pod, "volumeId");
        assert_eq!(e.instance(pod, "volume.id"), id);
        let node = e.get(&format!("pod/{pod}"), "{.spec.nodeName}");
        let provider =
            e.k.jsonpath("default", &format!("node/{node}"), "{.spec.providerID}");
        let instance = provider.rsplit('/').next().unwrap().to_owned();
        assert!(instance.starts_with("i-"), "{provider}");
        assert_eq!(e.instance(pod, "volume.attachedTo"), instance);
        assert_eq!(e.instance(pod, "volume.zone"), node_zone(e, pod));
        assert_eq!(e.instance(pod, "volume.type"), "gp3");
        assert_eq!(e.instance(pod, "volume.sizeGib"), "10");
        assert_eq!(e.instance(pod, "volume.iops"), "3000");

        let volume = ec2_volume(e, &id);
        assert_eq!(volume.availability_zone(), Some(node_zone(e, pod).as_str()));
        assert_eq!(
            volume.attachments().first().and_then(|a| a.instance_id()),
            Some(instance.as_str()),
            "{pod}'s volume is attached to its node's instance"
        );
        let tags: BTreeSet<(String, String)> = volume
            .tags()
            .iter()
            .map(|t| (t.key().unwrap().to_owned(), t.value().unwrap().to_owned()))
            .collect();
        for tag in [
            ("ebisu.dev/cluster", "orders"),
            ("ebisu.dev/namespace", NS),
            ("ebisu.dev/instance", pod),
        ] {
            assert!(
                tags.contains(&(tag.0.to_owned(), tag.1.to_owned())),
                "{pod}'s volume {id} lacks tag {tag:?}: {tags:?}"
            );
        }
    }

    // A changed IOPS reaches the existing volumes through ModifyVolume,
    // and new volumes through a replaced StorageClass.
    e.kubectl(&[
        "-n",
        NS,
        "patch",
        "myc/orders",
        "--type=merge",
        "-p",
        r#"{"spec":{"storage":{"ebs":{"iops":4000}}}}"#,
    ]);
    e.wait("every volume at 4000 IOPS", Duration::from_secs(60), |e| {
        pods.iter().all(|p| {
            e.instance(p, "volume.iops") == "4000"
                && e.instance(p, "volume.modification.targetIops") == "4000"
        })
    });
    for pod in pods {
        let id = e.instance(pod, "volumeId");
        assert_eq!(ec2_volume(e, &id).iops(), Some(4000), "{pod}");
        assert!(
            e.events().contains(&format!(
                "VolumeModified: modifying {pod}'s volume {id}: iops 3000 -> 4000"
            )),
            "a VolumeModified Event names {pod}:\n{}",
            e.events()
        );
    }
    let class = format!(
        "storageclass/{}",
        ebisu_api::names::storage_class(NS, "orders")
    );
    assert_eq!(
        e.k.jsonpath("default", &class, "{.parameters.type} {.parameters.iops}"),
        "gp3 4000",
        "the managed StorageClass was replaced"
    );

    // EC2 allows one modification per volume in 6 hours: a second change waits,
    // saying so, and nothing is asked of EC2.
    e.kubectl(&[
        "-n",
        NS,
        "patch",
        "myc/orders",
        "--type=merge",
        "-p",
        r#"{"spec":{"storage":{"ebs":{"throughput":250}}}}"#,
    ]);
    e.wait(
        "the throughput change deferred",
        Duration::from_secs(60),
        |e| {
            pods.iter().all(|p| {
                e.instance(p, "volume.pendingChange")
                    .contains("every 6 hours")
            })
        },
    );
    assert!(
        e.events()
            .contains("VolumeChangeDeferred: orders-0's volume: throughput")
    );
    for pod in pods {
        let id = e.instance(pod, "volumeId");
        assert_ne!(ec2_volume(e, &id).throughput(), Some(250), "{pod}");
    }
    // Taking the change back clears it.
    e.kubectl(&[
        "-n",
        NS,
        "patch",
        "myc/orders",
        "--type=merge",
        "-p",
        r#"{"spec":{"storage":{"ebs":{"throughput":null}}}}"#,
    ]);
    e.wait("no change pending", Duration::from_secs(60), |e| {
        pods.iter()
            .all(|p| e.instance(p, "volume.pendingChange").is_empty())
    });
    e.wait_running(3);
}

fn a_deleted_replica_returns_on_its_volume_without_a_clone(e: &Scenario) {
    let pod = "orders-1";
    let uid = e.get(&format!("pod/{pod}"), "{.metadata.uid}");
    let volume = e.get("pvc/data-orders-1", "{.spec.volumeName}");
    let volume_id = e.instance(pod, "volumeId");
    let zone = e.instance(pod, "zone");
    assert!(volume_id.starts_with("vol-"), "volume id: {volume_id:?}");
    assert_eq!(node_zone(e, pod), zone);

    e.kubectl(&["-n", NS, "delete", "pod", pod]);
    // Written while the replica is away; it must arrive by replication.
    let primary = ebisu::resolve(&e.layout, NS, "orders-primary").unwrap();
    app(&primary, "INSERT INTO shop.orders VALUES (2, 'coffee')")
        .expect("write while a replica is away");

    e.wait(
        &format!("{pod} recreated and ready"),
        Duration::from_secs(180),
        |e| {
            let now = e.get(
                &format!("pod/{pod}"),
                "{.metadata.uid} {.status.conditions[?(@.type==\"Ready\")].status}",
            );
            now.split_once(' ')
                .is_some_and(|(new_uid, ready)| new_uid != uid && ready == "True")
        },
    );
    e.wait_running(3);
    assert_eq!(e.get("pvc/data-orders-1", "{.spec.volumeName}"), volume);
    assert_eq!(e.instance(pod, "volumeId"), volume_id);
    assert_eq!(node_zone(e, pod), zone, "{pod} runs in its volume's zone");
    let log = e.init_log(pod);
    assert!(
        log.contains("data directory holds data") && !log.contains("seeded from donor"),
        "{pod} started on its own data, without a clone:\n{log}"
    );
    wait_row(e, pod, 2, "coffee");
    assert_eq!(
        e.get(&format!("pod/{pod}"), "{.metadata.labels.ebisu\\.dev/role}"),
        "replica"
    );
}

fn scale_up_finishes_after_the_operator_pod_is_deleted(e: &Scenario) {
    let (_, first) = e
        .operator_pods()
        .split_once('|')
        .map(|(a, b)| (a.to_owned(), b.to_owned()))
        .unwrap();
    assert!(!first.is_empty() && !first.contains(' '), "{first:?}");
    assert_eq!(e.leader(), first, "the only operator pod leads");

    e.kubectl(&["-n", NS, "scale", "myc/orders", "--replicas=5"]);
    e.wait("orders-3 created", Duration::from_secs(60), |e| {
        !e.get("pod/orders-3", "{.metadata.name}").is_empty()
    });
    e.kubectl(&["-n", OPERATOR_NAMESPACE, "delete", "pod", &first]);

    assert_eq!(e.wait_running(5), "orders-0");
    let now = e.operator_pods();
    let (terminating, running) = now.split_once('|').unwrap();
    assert!(
        terminating.is_empty() && !running.is_empty() && running != first,
        "a new operator pod replaced {first}: {now:?}"
    );
    assert_eq!(e.leader(), running, "the new operator pod leads");
    for new in ["orders-3", "orders-4"] {
        let log = e.init_log(new);
        let donor = log
            .lines()
            .find(|l| l.contains("seeded from donor"))
            .unwrap_or_else(|| panic!("{new} init log:\n{log}"));
        assert!(
            !donor.contains("orders-0."),
            "{new} was seeded from the primary: {donor}"
        );
        wait_row(e, new, 2, "coffee");
        // Labelled by the operator: only the new operator pod saw orders-4.
        e.wait(
            &format!("{new} labelled replica"),
            Duration::from_secs(60),
            |e| e.get(&format!("pod/{new}"), "{.metadata.labels.ebisu\\.dev/role}") == "replica",
        );
    }
}

fn a_standby_operator_takes_over_from_the_leader(e: &Scenario) {
    let leader = e.leader();
    e.kubectl(&[
        "-n",
        OPERATOR_NAMESPACE,
        "scale",
        "deployment/ebisu-operator",
        "--replicas=2",
    ]);
    let ready =
        "{range .items[*]}{.metadata.name}={.status.conditions[?(@.type==\"Ready\")].status} {end}";
    let mut standby = String::new();
    e.wait(
        "a ready standby operator pod",
        Duration::from_secs(60),
        |e| {
            let pods = e.k.jsonpath(OPERATOR_NAMESPACE, "pods", ready);
            standby = pods
                .split(' ')
                .filter_map(|p| p.strip_suffix("=True"))
                .find(|p| *p != leader)
                .unwrap_or_default()
                .to_owned();
            !standby.is_empty()
        },
    );
    // A standby waits: it never starts the controller while the leader lives.
    let log = e.operator_log(&standby);
    assert!(
        log.contains("standing for election")
            && !log.contains("starting the MySQLCluster controller"),
        "{standby} must stand by:\n{log}"
    );
    assert_eq!(e.leader(), leader);

    // The leader hands the Lease over as it stops: another operator pod (the
    // standby, or the replacement the Deployment starts, whichever asks
    // first) leads within the Lease's 15 s.
    e.kubectl(&["-n", OPERATOR_NAMESPACE, "delete", "pod", &leader]);
    let mut successor = String::new();
    e.wait(
        "another operator pod to hold the Lease",
        Duration::from_secs(30),
        |e| {
            successor = e.leader();
            !successor.is_empty() && successor != leader
        },
    );
    let log = e.operator_log(&successor);
    assert!(
        log.contains("starting the MySQLCluster controller"),
        "{successor} holds the Lease, so it runs the controller:\n{log}"
    );

    // And it reconciles: scaling to 4 brings orders-3 back on its kept volume.
    e.kubectl(&["-n", NS, "scale", "myc/orders", "--replicas=4"]);
    assert_eq!(e.wait_running(4), "orders-0");
    let log = e.init_log("orders-3");
    assert!(
        log.contains("data directory holds data") && !log.contains("seeded from donor"),
        "orders-3 must return on its kept volume without a clone:\n{log}"
    );
    wait_row(e, "orders-3", 2, "coffee");
}

/// Drift Kubernetes cannot see: a replica stopped and made writable by hand.
/// Its agent fences it at once (its pod does not hold the primary Lease),
/// and the operator's periodic look points it at the primary again and
/// says so in an Event.
fn a_replica_that_drifted_is_repaired(e: &Scenario) {
    e.root("orders-2", "STOP SLAVE; SET GLOBAL read_only = OFF");
    e.wait(
        "orders-2 read-only and replicating again",
        Duration::from_secs(90),
        // The fence kills every client connection, this look's included.
        |e| {
            e.try_root(
                "orders-2",
                "SELECT CONCAT(IF(@@read_only, 'read-only', 'writable'), ' ', VARIABLE_VALUE) \
                 FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME = 'SLAVE_RUNNING'",
            )
            .is_some_and(|state| state == "read-only ON")
        },
    );
    e.wait("an Event for the repair", Duration::from_secs(30), |e| {
        e.events()
            .contains("ReplicationRepaired: pointed orders-2 at")
    });
    app(
        &ip(e, "orders-0"),
        "INSERT INTO shop.orders VALUES (3, 'mate')",
    )
    .unwrap();
    wait_row(e, "orders-2", 3, "mate");
}

/// A transaction written on a replica (root bypasses read_only) exists
/// nowhere else: the replica can never be a faithful copy again. The
/// operator reports it, fences it, takes it out of every Service and
/// re-seeds it from the primary's side: its data is set aside on its
/// volume, never deleted, and it rejoins as a replica without the row.
fn a_replica_with_errant_transactions_is_reported_and_left_out(e: &Scenario) {
    let volume = e.instance("orders-3", "volumeId");
    e.root("orders-3", "INSERT INTO shop.orders VALUES (99, 'errant')");
    e.wait(
        "Events naming the errant replica and its re-seed",
        Duration::from_secs(90),
        |e| {
            let events = e.events();
            events.contains("ErrantTransactions: orders-3 holds transactions the primary lacks")
                && events.contains("Reseeding: orders-3 restarts with its data set aside")
        },
    );
    e.wait("orders-3 a replica again", Duration::from_secs(180), |e| {
        e.get("pod/orders-3", "{.metadata.labels.ebisu\\.dev/role}") == "replica"
    });
    assert!(
        e.init_log("orders-3").contains("seeded from donor"),
        "orders-3 was copied afresh"
    );
    assert_eq!(
        e.root("orders-3", "SELECT COUNT(*) FROM shop.orders WHERE id = 99"),
        "0",
        "the errant row is gone from the running server"
    );
    wait_row(e, "orders-3", 2, "coffee");
    assert_eq!(
        e.root("orders-0", "SELECT COUNT(*) FROM shop.orders WHERE id = 99"),
        "0"
    );
    // ... and kept on the volume, where the user can look at it.
    let kept = e
        .layout
        .volumes()
        .join(&volume)
        .join(ebisu_api::names::KEPT_DIR);
    let copies: Vec<_> = std::fs::read_dir(&kept)
        .unwrap_or_else(|e| panic!("{}: {e}", kept.display()))
        .flatten()
        .map(|entry| entry.path())
        .collect();
    assert!(
        copies.len() == 1 && copies[0].join("shop").join("orders.ibd").exists(),
        "the old data set aside: {copies:?}"
    );
}

/// The credentials Secret of a cluster that holds data is deleted: nothing
/// is generated (the servers' accounts use the old passwords), the cluster
/// says so, and no server is touched; putting it back heals it.
fn deleted_credentials_are_never_regenerated_for_data_that_exists(e: &Scenario) {
    let saved: serde_json::Value = serde_json::from_str(&e.kubectl(&[
        "-n",
        NS,
        "get",
        "secret",
        "orders-credentials",
        "-o",
        "json",
    ]))
    .unwrap();
    assert!(
        saved["metadata"]["ownerReferences"].is_null(),
        "the Secret outlives the cluster"
    );
    assert!(
        saved["metadata"]["annotations"]["ebisu.dev/initialized"].is_string(),
        "the Secret records that the cluster holds data"
    );
    e.kubectl(&["-n", NS, "delete", "secret", "orders-credentials"]);
    e.wait(
        "a CredentialsMissing condition",
        Duration::from_secs(60),
        |e| {
            e.get(
                "myc/orders",
                "{.status.conditions[?(@.type==\"CredentialsMissing\")].status}",
            ) == "True"
        },
    );
    std::thread::sleep(Duration::from_secs(5));
    assert!(
        e.k.try_run(&["-n", NS, "get", "secret", "orders-credentials"])
            .is_err(),
        "no Secret was generated"
    );
    assert!(
        e.events()
            .contains("CredentialsMissing: the credentials Secret lacks root-password"),
        "a Warning Event says what to do:\n{}",
        e.events()
    );
    // The servers were left alone: writes still go through.
    let primary = ebisu::resolve(&e.layout, NS, "orders-primary").unwrap();
    app(&primary, "INSERT INTO shop.orders VALUES (4, 'miso')").expect("the servers still serve");

    // Put it back as it was.
    let restored = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": "orders-credentials",
            "namespace": NS,
            "labels": saved["metadata"]["labels"],
            "annotations": saved["metadata"]["annotations"],
        },
        "type": "Opaque",
        "data": saved["data"],
    });
    let path = std::env::temp_dir().join("ebisu-restored-credentials.json");
    std::fs::write(&path, restored.to_string()).unwrap();
    e.kubectl(&["create", "-f", &path.display().to_string()]);
    e.wait("the condition to clear", Duration::from_secs(60), |e| {
        e.get(
            "myc/orders",
            "{.status.conditions[?(@.type==\"CredentialsMissing\")].status}",
        ) == "False"
    });
    e.wait_running(4);
}

/// Deleting the MySQLCluster keeps its volumes and its Secret; applying it
/// again brings back the same data under the same passwords.
fn a_recreated_cluster_comes_back_with_its_data_and_passwords(e: &Scenario) {
    let password = |e: &Scenario| secret_value(e, "orders-credentials", "root-password");
    let before = password(e);
    delete_clusters(e, "orders");
    assert_eq!(password(e), before, "the Secret stayed");
    e.apply_example("examples/basic.yaml");
    e.kubectl(&["-n", NS, "scale", "myc/orders", "--replicas=4"]);
    e.wait_running(4);
    assert_eq!(password(e), before, "the same passwords");
    for pod in ["orders-0", "orders-1", "orders-2", "orders-3"] {
        let log = e.init_log(pod);
        assert!(
            log.contains("data directory holds data") && !log.contains("bootstrapping"),
            "{pod} came back on its kept volume:\n{log}"
        );
    }
    let primary = ebisu::resolve(&e.layout, NS, "orders-primary").unwrap();
    assert_eq!(
        app(&primary, "SELECT item FROM shop.orders WHERE id = 4").unwrap(),
        "miso",
        "the data and the application's account are back"
    );
    assert_eq!(
        e.root("orders-0", "SELECT 1"),
        "1",
        "root's password still works"
    );
}

/// `spec.storage.ebs.volumes`: a volume made beforehand at EC2 and tagged
/// by its owner for the cluster becomes the instance's volume, in its zone,
/// with the credentials the user brings (none are generated for given
/// volumes); a wrong id, or a volume not tagged for the cluster, is a
/// condition naming it, and the instance is not created (so it never gets a
/// new, empty volume).
fn given_volumes_are_checked_and_bound(e: &Scenario) {
    let ec2 = ebisu_testcluster::ec2::client();
    let create = |adopter: Option<&str>| {
        let mut request = ec2
            .create_volume()
            .availability_zone("us-east-1b")
            .size(10)
            .volume_type(aws_sdk_ec2::types::VolumeType::Gp3);
        if let Some(adopter) = adopter {
            request = request.tag_specifications(
                aws_sdk_ec2::types::TagSpecification::builder()
                    .resource_type(aws_sdk_ec2::types::ResourceType::Volume)
                    .tags(
                        aws_sdk_ec2::types::Tag::builder()
                            .key("ebisu.dev/adopt-by")
                            .value(adopter)
                            .build(),
                    )
                    .build(),
            );
        }
        e.block_on(request.send())
            .unwrap()
            .volume_id()
            .unwrap()
            .to_owned()
    };
    let id = create(Some(&format!("{NS}/ledger")));
    let foreign = create(None);
    // Given volumes get no generated credentials (they may hold data made
    // with others): the user brings them.
    let mut secret = vec![
        "-n".to_owned(),
        NS.to_owned(),
        "create".to_owned(),
        "secret".to_owned(),
        "generic".to_owned(),
        "ledger-credentials".to_owned(),
    ];
    for (key, value) in [
        ("root-password", "Ledger-root-0123456789abcdef"),
        ("operator-user", "ebisu_operator"),
        ("operator-password", "Ledger-operator-0123456789ab"),
        ("replication-user", "ebisu_repl"),
        ("replication-password", "Ledger-repl-0123456789abcdef"),
        ("clone-user", "ebisu_clone"),
        ("clone-password", "Ledger-clone-0123456789abcde"),
        ("clone-token", "Ledger-token-0123456789abcdef"),
        ("monitor-user", "ebisu_monitor"),
        ("monitor-password", "Ledger-monitor-0123456789abc"),
    ] {
        secret.push(format!("--from-literal={key}={value}"));
    }
    e.kubectl(&secret.iter().map(String::as_str).collect::<Vec<_>>());
    let manifest = format!(
        "apiVersion: ebisu.dev/v1alpha1
kind: MySQLCluster
metadata:
  name: ledger
spec:
  replicas: 1
  storage:
    size: 10Gi
    ebs:
      type: gp3
      volumes: [{id}]
---
apiVersion: ebisu.dev/v1alpha1
kind: MySQLCluster
metadata:
  name: audit
spec:
  replicas: 1
  storage:
    size: 10Gi
    ebs:
      type: gp3
      volumes: [vol-0000000000000dead]
---
apiVersion: ebisu.dev/v1alpha1
kind: MySQLCluster
metadata:
  name: thief
spec:
  replicas: 1
  storage:
    size: 10Gi
    ebs:
      type: gp3
      volumes: [{foreign}]
"
    );
    let path = std::env::temp_dir().join("ebisu-static-volumes.yaml");
    std::fs::write(&path, manifest).unwrap();
    e.kubectl(&["-n", NS, "apply", "-f", &path.display().to_string()]);
    ebisu::wait_running(&e.k, NS, "ledger", 1, Duration::from_secs(240))
        .unwrap_or_else(|err| panic!("{err}\n{}", ebisu::diagnostics(&e.k, NS, "ledger")));
    let pv = e.get("pvc/data-ledger-0", "{.spec.volumeName}");
    assert_eq!(pv, format!("ebisu-{id}"));
    assert_eq!(
        e.k.jsonpath("default", &format!("pv/{pv}"), "{.spec.csi.volumeHandle}"),
        id
    );
    assert_eq!(
        node_zone(e, "ledger-0"),
        "us-east-1b",
        "ledger-0 runs in its volume's zone"
    );
    e.wait("ledger's volume in status", Duration::from_secs(60), |e| {
        e.get(
            "myc/ledger",
            "{.status.instances[0].volume.id} {.status.instances[0].volume.attachedTo}",
        )
        .starts_with(&format!("{id} i-"))
    });

    // Deleting the cluster and then its claim by hand keeps the volume
    // (Retain); the same cluster applied again gets it back, data and all.
    let sql = |statement: &str| {
        ebisu::root_sql(&e.k, &e.layout, NS, "ledger", "ledger-0", statement)
            .unwrap_or_else(|err| panic!("{err}\n{}", ebisu::diagnostics(&e.k, NS, "ledger")))
    };
    sql("CREATE DATABASE keep; CREATE TABLE keep.t (v TEXT); INSERT INTO keep.t VALUES ('kept')");
    e.kubectl(&["-n", NS, "delete", "myc/ledger", "--wait=true"]);
    e.wait("ledger-0 gone", Duration::from_secs(120), |e| {
        e.k.try_run(&["-n", NS, "get", "pod/ledger-0"]).is_err()
    });
    e.kubectl(&["-n", NS, "delete", "pvc/data-ledger-0", "--wait=true"]);
    e.wait("the given volume released", Duration::from_secs(60), |e| {
        e.k.jsonpath("default", &format!("pv/{pv}"), "{.status.phase}") == "Released"
    });
    e.kubectl(&["-n", NS, "apply", "-f", &path.display().to_string()]);
    ebisu::wait_running(&e.k, NS, "ledger", 1, Duration::from_secs(240))
        .unwrap_or_else(|err| panic!("{err}\n{}", ebisu::diagnostics(&e.k, NS, "ledger")));
    assert_eq!(e.get("pvc/data-ledger-0", "{.spec.volumeName}"), pv);
    assert!(
        sql("SELECT v FROM keep.t").contains("kept"),
        "the row written before the cluster was deleted is back"
    );

    e.wait("the wrong volume reported", Duration::from_secs(60), |e| {
        e.events().contains(
            "StaticVolumeRefused: audit-0 cannot use vol-0000000000000dead: volume vol-0000000000000dead does not exist",
        )
    });
    assert!(
        e.get("myc/audit", "{.status.conditions[*].message}")
            .contains("vol-0000000000000dead"),
        "a condition names the volume"
    );
    assert!(
        e.k.try_run(&["-n", NS, "get", "pvc/data-audit-0"]).is_err(),
        "no claim (and no new volume) for audit-0"
    );
    assert!(
        e.get("pods", "{.items[*].metadata.name}")
            .split(' ')
            .all(|p| p != "audit-0")
    );
    e.wait("the untagged volume refused", Duration::from_secs(60), |e| {
        e.events().contains(&format!(
            "thief-0 cannot use {foreign}: volume {foreign} is not tagged ebisu.dev/adopt-by={NS}/thief"
        ))
    });
    assert!(
        e.k.try_run(&["-n", NS, "get", "pvc/data-thief-0"]).is_err(),
        "no claim for thief-0: the volume is never mounted"
    );
}

/// The README's quick start as a user runs it: apply the example, wait for
/// `Ready`, and a client pod connects with nothing but the `inventory-app`
/// Secret's values, writes a row and reads it back. The owner may use its
/// database and nothing else; the read Service serves the row too.
fn the_quick_start_connects_with_the_app_secret(e: &Scenario) {
    // Room on two cores: the earlier clusters are done with.
    delete_clusters(e, "--all");
    e.apply_example("examples/quickstart.yaml");
    e.kubectl(&[
        "-n",
        NS,
        "wait",
        "--for=condition=Ready",
        "mysqlcluster/inventory",
        "--timeout=600s",
    ]);
    let secret = |key: &str| secret_value(e, "inventory-app", key);
    assert_eq!(secret("username"), "inventory_app");
    assert_eq!(secret("dbname"), "inventory");
    assert_eq!(secret("host"), format!("inventory-primary.{NS}.svc"));
    let password = secret("password");
    assert_eq!(password.len(), 32, "a generated password");
    assert_eq!(
        secret("uri"),
        format!("mysql://inventory%5Fapp:{password}@inventory-primary.{NS}.svc:3306/inventory")
    );

    e.apply_example("examples/quickstart-client.yaml");
    let phase =
        e.k.wait("the client pod to finish", Duration::from_secs(120), |k| {
            let phase = k.jsonpath(NS, "pod/inventory-client", "{.status.phase}");
            matches!(phase.as_str(), "Succeeded" | "Failed").then_some(phase)
        })
        .unwrap_or_else(|err| panic!("{err}\n{}", e.diagnostics()));
    let logs = e.kubectl(&["-n", NS, "logs", "pod/inventory-client"]);
    assert_eq!(
        phase, "Succeeded",
        "the client connected and wrote:\n{logs}"
    );
    assert!(
        logs.contains("read back: tea"),
        "the row read back:\n{logs}"
    );
    e.kubectl(&["-n", NS, "delete", "pod", "inventory-client"]);

    let primary = ebisu::resolve(&e.layout, NS, "inventory-primary").unwrap();
    let owner =
        |host: &str, statement: &str| ebisu::sql(host, "inventory_app", &password, statement);
    assert!(
        owner(&primary, "SELECT COUNT(*) FROM mysql.user").is_err(),
        "the owner cannot read the system tables"
    );
    assert!(
        owner(&primary, "CREATE DATABASE elsewhere").is_err(),
        "the owner cannot create other databases"
    );
    e.wait(
        "the row on the read Service",
        Duration::from_secs(60),
        |e| {
            ebisu::resolve(&e.layout, NS, "inventory-read").is_ok_and(|read| {
                owner(&read, "SELECT name FROM inventory.items WHERE id = 1")
                    .is_ok_and(|v| v == "tea")
            })
        },
    );
}

/// A copy of the chart whose MySQLCluster CRD has a new spec field,
/// `upgradeProbe` (the CRD written back as JSON, which is YAML).
fn chart_with_a_new_crd_field(e: &Scenario) -> std::path::PathBuf {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../charts/ebisu");
    let copy = std::env::temp_dir().join("ebisu-chart-upgraded");
    let _ = std::fs::remove_dir_all(&copy);
    let status = std::process::Command::new("cp")
        .args([
            "-r",
            &source.display().to_string(),
            &copy.display().to_string(),
        ])
        .status()
        .unwrap();
    assert!(status.success(), "copy the chart");
    let crd_path = copy.join("files/crds/mysqlclusters.ebisu.dev.yaml");
    let json = e.kubectl(&[
        "create",
        "--dry-run=client",
        "-o",
        "json",
        "-f",
        &crd_path.display().to_string(),
    ]);
    let mut crd: serde_json::Value = serde_json::from_str(&json).unwrap();
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["upgradeProbe"] =
        serde_json::json!({"type": "string", "description": "added by the upgrade test"});
    std::fs::write(&crd_path, serde_json::to_string_pretty(&crd).unwrap()).unwrap();
    copy
}

/// The sidecar image of every instance pod of `cluster`, by pod.
fn sidecar_images(e: &Scenario, cluster: &str) -> Vec<String> {
    e.get(
        "pods",
        &format!(
            r#"{{range .items[?(@.metadata.labels.ebisu\.dev/cluster=="{cluster}")]}}{{.spec.initContainers[?(@.name=="install-sidecar")].image}}{{" "}}{{end}}"#
        ),
    )
    .split_whitespace()
    .map(str::to_owned)
    .collect()
}

/// The upgrade a new release is: `helm upgrade` to a chart whose CRD has a
/// new field (the CRDs are templates, which Helm upgrades; `crds/` it never
/// would), so a value written to it stays, and with a new sidecar image,
/// which changes every cluster's pod template. The two clusters roll one
/// at a time: never are both half-updated at one look, and the one that
/// waits says why.
fn an_upgrade_brings_a_new_crd_field_and_keeps_its_values(e: &Scenario) {
    // A second cluster to roll beside the quick start's.
    e.apply_yaml(
        "carts",
        "apiVersion: ebisu.dev/v1alpha1\nkind: MySQLCluster\nmetadata:\n  name: carts\nspec:\n  replicas: 2\n  storage:\n    size: 10Gi\n    ebs:\n      type: gp3\n",
    );
    e.kubectl(&[
        "-n",
        NS,
        "wait",
        "--for=condition=Healthy",
        "myc/carts",
        "myc/inventory",
        "--timeout=300s",
    ]);
    // The next release's sidecar: the same image under a new tag.
    let version = env!("CARGO_PKG_VERSION");
    let next = format!("{version}-next");
    let pushed = format!(
        "{}/{}/ebisu-sidecar:{version}",
        registry::address(),
        registry::EBISU_PREFIX
    );
    crane(&["tag", &pushed, &next]);
    let chart = chart_with_a_new_crd_field(e);
    ebisu::helm(
        &e.k,
        &[
            "upgrade",
            "ebisu",
            &chart.display().to_string(),
            "--namespace",
            OPERATOR_NAMESPACE,
            "--reuse-values",
            "--set",
            &format!("image.sidecar.tag={next}"),
            "--wait",
            "--timeout",
            "120s",
        ],
    )
    .unwrap();

    let new_image = format!("ghcr.io/{}/ebisu-sidecar:{next}", registry::EBISU_PREFIX);
    let mut waited_for_turn = false;
    let mut order = Vec::new();
    e.wait(
        "both clusters to roll onto the new sidecar",
        Duration::from_secs(600),
        |e| {
            let mut half = Vec::new();
            for cluster in ["inventory", "carts"] {
                let images = sidecar_images(e, cluster);
                let updated = images.iter().filter(|i| **i == new_image).count();
                if updated > 0 && !order.contains(&cluster) {
                    order.push(cluster);
                }
                if updated > 0 && updated < images.len() {
                    half.push(cluster);
                }
                let updating = e.get(
                    &format!("myc/{cluster}"),
                    r#"{.status.conditions[?(@.type=="Updating")].message}"#,
                );
                waited_for_turn |= updating.contains("is rolling out first");
            }
            assert!(
                half.len() < 2,
                "both clusters are half-updated at once: {half:?}"
            );
            ["inventory", "carts"].iter().all(|c| {
                let images = sidecar_images(e, c);
                !images.is_empty() && images.iter().all(|i| *i == new_image)
            })
        },
    );
    assert_eq!(order.len(), 2, "both rolled: {order:?}");
    assert!(
        waited_for_turn,
        "the second cluster ({}) said it waited for the first ({})",
        order[1], order[0]
    );
    delete_clusters_named(e, "carts");
    assert_eq!(
        e.k.jsonpath(
            "default",
            "crd/mysqlclusters.ebisu.dev",
            "{.spec.versions[0].schema.openAPIV3Schema.properties.spec.properties.upgradeProbe.type}",
        ),
        "string",
        "the upgrade brought the new field"
    );
    e.kubectl(&[
        "-n",
        NS,
        "patch",
        "myc/inventory",
        "--type=merge",
        "-p",
        r#"{"spec":{"upgradeProbe":"kept"}}"#,
    ]);
    assert_eq!(
        e.get("myc/inventory", "{.spec.upgradeProbe}"),
        "kept",
        "not pruned"
    );
    e.kubectl(&[
        "-n",
        NS,
        "wait",
        "--for=condition=Ready",
        "myc/inventory",
        "--timeout=120s",
    ]);
}

/// The README's uninstall, step by step: delete the clusters while the
/// operator runs (its finalizer unfences nodes and deletes the cluster's
/// StorageClass), `helm uninstall`, and exactly what the README says stays,
/// stays: the CRDs, each cluster's claims (their volumes are Retain) and
/// credentials Secret, and the operator's leader Lease; then the listed
/// commands remove them.
fn uninstall_leaves_exactly_what_the_readme_lists(e: &Scenario) {
    delete_clusters(e, "--all");
    ebisu::helm(
        &e.k,
        &[
            "uninstall",
            "ebisu",
            "--namespace",
            OPERATOR_NAMESPACE,
            "--wait",
        ],
    )
    .unwrap();
    assert_eq!(
        e.k.jsonpath("default", "crds", "{.items[*].metadata.name}"),
        "mysqlbackups.ebisu.dev mysqlclusters.ebisu.dev",
        "the CRDs stay"
    );
    let left = |selector: &str| {
        e.kubectl(&[
            "-n",
            NS,
            "get",
            "pvc,secret,configmap,service,statefulset,poddisruptionbudget,lease,serviceaccount",
            "-l",
            selector,
            "-o",
            "name",
        ])
    };
    assert_eq!(
        left("ebisu.dev/cluster=inventory"),
        "persistentvolumeclaim/data-inventory-0\npersistentvolumeclaim/data-inventory-1\npersistentvolumeclaim/data-inventory-2\nsecret/inventory-credentials",
        "the claims and the credentials stay, nothing else of the cluster's"
    );
    assert_eq!(
        e.k.jsonpath(OPERATOR_NAMESPACE, "leases", "{.items[*].metadata.name}"),
        "ebisu-operator",
        "the leader Lease stays"
    );
    assert!(
        e.k.jsonpath("default", "storageclasses", "{.items[*].metadata.name}")
            .split(' ')
            .all(|c| !c.starts_with("ebisu-")),
        "the clusters' StorageClasses went with them"
    );
    // The README's removal commands.
    e.kubectl(&["-n", NS, "delete", "pvc,secret", "-l", "ebisu.dev/cluster"]);
    e.kubectl(&[
        "-n",
        OPERATOR_NAMESPACE,
        "delete",
        "lease",
        "ebisu-operator",
    ]);
    e.kubectl(&[
        "delete",
        "crd",
        "mysqlclusters.ebisu.dev",
        "mysqlbackups.ebisu.dev",
    ]);
    assert_eq!(left("ebisu.dev/cluster"), "", "nothing of ebisu's is left");
}
