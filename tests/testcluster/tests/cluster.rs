//! End-to-end checks of the local cluster with the real control plane and
//! the machine's kubectl, as a user drives it. One cluster for this binary;
//! each scenario in its own namespace. Needs root (network namespaces).
#![allow(clippy::expect_used, clippy::unwrap_used)] // test helpers fail loudly by design

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use ebisu_testcluster::{Kubectl, TestCluster};

const STATE_DIR: &str = "/tmp/ebisu-testcluster-e2e";
const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/mariadb-statefulset.yaml"
);

/// What these checks need beyond the shared client: failures panic.
trait Checks {
    fn run(&self, args: &[&str]) -> String;
    fn wait_until<T>(
        &self,
        what: &str,
        timeout: Duration,
        check: impl FnMut(&Kubectl) -> Option<T>,
    ) -> T;
    fn wait_ready(&self, ns: &str, pod: &str, timeout: Duration) -> (String, String);
}

impl Checks for Kubectl {
    fn run(&self, args: &[&str]) -> String {
        self.try_run(args).unwrap()
    }

    fn wait_until<T>(
        &self,
        what: &str,
        timeout: Duration,
        check: impl FnMut(&Kubectl) -> Option<T>,
    ) -> T {
        self.wait(what, timeout, check).unwrap()
    }

    fn wait_ready(&self, ns: &str, pod: &str, timeout: Duration) -> (String, String) {
        self.wait_until(&format!("{ns}/{pod} Ready"), timeout, |k| {
            let ready = k.jsonpath(
                ns,
                &format!("pod/{pod}"),
                "{.status.conditions[?(@.type==\"Ready\")].status}",
            );
            let deleting = k.jsonpath(ns, &format!("pod/{pod}"), "{.metadata.deletionTimestamp}");
            (ready == "True" && deleting.is_empty()).then(|| {
                (
                    k.jsonpath(ns, &format!("pod/{pod}"), "{.spec.nodeName}"),
                    k.jsonpath(ns, &format!("pod/{pod}"), "{.status.podIP}"),
                )
            })
        })
    }
}

fn sql(ip: &str, statement: &str) -> Result<String, String> {
    let out = Command::new("mariadb")
        .args([
            "--skip-ssl",
            "--connect-timeout=3",
            "-N",
            "-B",
            "-h",
            ip,
            "-utest",
            "-ptest",
            "-e",
            statement,
        ])
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
    }
}

fn zone_of(k: &Kubectl, node: &str) -> String {
    k.jsonpath(
        "default",
        &format!("node/{node}"),
        "{.metadata.labels.topology\\.kubernetes\\.io/zone}",
    )
}

#[test]
fn local_cluster_runs_statefulsets_on_zonal_volumes_like_a_real_one() {
    assert!(
        std::fs::read_to_string("/proc/self/status")
            .unwrap()
            .lines()
            .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0")),
        "the test cluster needs root (network namespaces, bind mounts)"
    );
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let exe = Path::new(env!("CARGO_BIN_EXE_testcluster"));
    let started = Instant::now();
    let cluster = runtime
        .block_on(TestCluster::up(Path::new(STATE_DIR), exe))
        .unwrap();
    eprintln!("cluster up in {:?}", started.elapsed());
    let k = Kubectl::new(cluster.kubeconfig());

    nodes_span_three_zones(&k);
    unknown_image_fails_like_an_image_pull(&k);
    a_volume_is_attached_to_one_node_at_a_time(&k);
    containers_restart_on_liveness_failure_and_stop_gracefully(&k);
    tutorial_statefulset(&k, &cluster, &runtime);

    runtime.block_on(cluster.down()).unwrap();
    assert!(
        !Path::new(STATE_DIR).exists(),
        "down removes the state directory"
    );
}

fn nodes_span_three_zones(k: &Kubectl) {
    let zones = k.run(&[
        "get",
        "nodes",
        "-o",
        "jsonpath={.items[*].metadata.labels.topology\\.ebs\\.csi\\.aws\\.com/zone}",
    ]);
    let mut zones: Vec<&str> = zones.split_whitespace().collect();
    assert!(zones.len() >= 5, "at least 5 nodes: {zones:?}");
    zones.sort_unstable();
    zones.dedup();
    assert_eq!(zones.len(), 3, "three zones: {zones:?}");
    let ready = k.run(&[
        "get",
        "nodes",
        "-o",
        "jsonpath={.items[*].status.conditions[?(@.type==\"Ready\")].status}",
    ]);
    assert!(
        ready.split_whitespace().all(|s| s == "True"),
        "all nodes Ready: {ready}"
    );
}

fn unknown_image_fails_like_an_image_pull(k: &Kubectl) {
    let ns = "images";
    k.run(&["create", "namespace", ns]);
    k.run(&[
        "-n",
        ns,
        "run",
        "postgres",
        "--image=postgres:17",
        "--restart=Never",
    ]);
    let reason = k.wait_until("ErrImagePull", Duration::from_secs(30), |k| {
        let reason = k.jsonpath(
            ns,
            "pod/postgres",
            "{.status.containerStatuses[0].state.waiting.reason}",
        );
        (reason == "ErrImagePull").then_some(reason)
    });
    assert_eq!(reason, "ErrImagePull");
    let message = k.jsonpath(
        ns,
        "pod/postgres",
        "{.status.containerStatuses[0].state.waiting.message}",
    );
    assert!(
        message.contains("failed to pull image \"postgres:17\""),
        "{message}"
    );
    k.run(&["delete", "namespace", ns, "--wait=false"]);
}

fn a_volume_is_attached_to_one_node_at_a_time(k: &Kubectl) {
    let ns = "attach";
    k.run(&["create", "namespace", ns]);
    let manifest = r#"
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: shared}
spec:
  accessModes: [ReadWriteOnce]
  storageClassName: gp3-attach
  resources: {requests: {storage: 1Gi}}
---
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata: {name: gp3-attach}
provisioner: ebs.csi.aws.com
volumeBindingMode: WaitForFirstConsumer
---
apiVersion: v1
kind: Pod
metadata: {name: first}
spec:
  terminationGracePeriodSeconds: 1
  nodeSelector: {kubernetes.io/hostname: node-a1}
  containers:
    - {name: main, image: "mariadb:10.11", command: [sleep, infinity], volumeMounts: [{name: v, mountPath: /data}]}
  volumes: [{name: v, persistentVolumeClaim: {claimName: shared}}]
"#;
    apply(k, ns, manifest);
    k.wait_ready(ns, "first", Duration::from_secs(60));
    let second = manifest
        .split("---")
        .nth(2)
        .unwrap()
        .replace("name: first", "name: second")
        .replace("node-a1", "node-a2");
    apply(k, ns, &second);
    k.wait_until(
        "a Multi-Attach event for the second pod",
        Duration::from_secs(30),
        |k| {
            let events = k.run(&[
                "-n",
                ns,
                "get",
                "events",
                "--field-selector",
                "involvedObject.name=second",
                "-o",
                "jsonpath={.items[*].message}",
            ]);
            events.contains("Multi-Attach error").then_some(())
        },
    );
    let ready = k.jsonpath(
        ns,
        "pod/second",
        "{.status.conditions[?(@.type==\"Ready\")].status}",
    );
    assert_ne!(
        ready, "True",
        "the second pod must not run while the volume is attached elsewhere"
    );
    k.run(&["-n", ns, "delete", "pod", "first"]);
    k.wait_ready(ns, "second", Duration::from_secs(60));
    k.run(&["delete", "namespace", ns, "--wait=false"]);
}

fn containers_restart_on_liveness_failure_and_stop_gracefully(k: &Kubectl) {
    let ns = "lifecycle";
    k.run(&["create", "namespace", ns]);
    let hook_dir = std::env::temp_dir().join(format!("ebisu-e2e-hooks-{}", std::process::id()));
    std::fs::create_dir_all(&hook_dir).unwrap();
    let manifest = format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: flaky}}
spec:
  containers:
    - name: main
      image: "mariadb:10.11"
      command: [sh, -c, "sleep 1; touch /work/dead; exec sleep infinity"]
      livenessProbe: {{exec: {{command: [sh, -c, "test ! -f /work/dead"]}}, periodSeconds: 1, failureThreshold: 1}}
      volumeMounts: [{{name: work, mountPath: /work}}]
  volumes: [{{name: work, emptyDir: {{}}}}]
---
apiVersion: v1
kind: Pod
metadata: {{name: graceful}}
spec:
  terminationGracePeriodSeconds: 20
  containers:
    - name: main
      image: "mariadb:10.11"
      command: [sh, -c, "trap 'echo term >> /hook/log; exit 0' TERM; while true; do sleep 0.2; done"]
      lifecycle: {{preStop: {{exec: {{command: [sh, -c, "echo prestop >> /hook/log"]}}}}}}
      volumeMounts: [{{name: hook, mountPath: /hook}}]
  volumes: [{{name: hook, hostPath: {{path: {dir}}}}}]
"#,
        dir = hook_dir.display()
    );
    apply(k, ns, &manifest);
    k.wait_until(
        "flaky restarted by its liveness probe",
        Duration::from_secs(60),
        |k| {
            let restarts: u32 = k
                .jsonpath(
                    ns,
                    "pod/flaky",
                    "{.status.containerStatuses[0].restartCount}",
                )
                .parse()
                .unwrap_or(0);
            (restarts >= 1).then_some(())
        },
    );
    let last = k.jsonpath(
        ns,
        "pod/flaky",
        "{.status.containerStatuses[0].lastState.terminated.message}",
    );
    assert!(last.contains("Liveness probe failed"), "{last}");
    k.wait_until("an Unhealthy event", Duration::from_secs(20), |k| {
        let reasons = k.run(&[
            "-n",
            ns,
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=flaky",
            "-o",
            "jsonpath={.items[*].reason}",
        ]);
        reasons.contains("Unhealthy").then_some(())
    });

    k.wait_ready(ns, "graceful", Duration::from_secs(60));
    let started = Instant::now();
    k.run(&["-n", ns, "delete", "pod", "graceful", "--timeout=60s"]);
    let log = std::fs::read_to_string(hook_dir.join("log")).unwrap_or_default();
    assert_eq!(log, "prestop\nterm\n", "preStop runs, then SIGTERM");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "a container that exits on SIGTERM does not wait out its grace period"
    );
    let _ = std::fs::remove_dir_all(&hook_dir);
    k.run(&["delete", "namespace", ns, "--wait=false"]);
}

fn apply(k: &Kubectl, ns: &str, manifest: &str) {
    let path = std::env::temp_dir().join(format!("ebisu-e2e-{ns}-{}.yaml", std::process::id()));
    std::fs::write(&path, manifest).unwrap();
    k.run(&["-n", ns, "apply", "-f", path.to_str().unwrap()]);
    let _ = std::fs::remove_file(path);
}

fn tutorial_statefulset(k: &Kubectl, cluster: &TestCluster, runtime: &tokio::runtime::Runtime) {
    let ns = "tutorial";
    k.run(&["create", "namespace", ns]);
    k.run(&["-n", ns, "apply", "-f", FIXTURE]);

    // (a) 3/3 Ready, every claim bound to a zone-pinned volume in its pod's zone.
    for pod in ["mariadb-0", "mariadb-1", "mariadb-2"] {
        k.wait_ready(ns, pod, Duration::from_secs(120));
    }
    assert_eq!(
        k.jsonpath(ns, "statefulset/mariadb", "{.status.readyReplicas}"),
        "3"
    );
    for i in 0..3 {
        let claim = format!("data-mariadb-{i}");
        assert_eq!(
            k.jsonpath(ns, &format!("pvc/{claim}"), "{.status.phase}"),
            "Bound"
        );
        let pv = k.jsonpath(ns, &format!("pvc/{claim}"), "{.spec.volumeName}");
        let handle = k.jsonpath(ns, &format!("pv/{pv}"), "{.spec.csi.volumeHandle}");
        assert!(
            handle.starts_with("vol-") && handle.len() == 21,
            "EBS-style id: {handle}"
        );
        let zone = k.jsonpath(
            ns,
            &format!("pv/{pv}"),
            "{.spec.nodeAffinity.required.nodeSelectorTerms[0].matchExpressions[0].values[0]}",
        );
        let node = k.jsonpath(ns, &format!("pod/mariadb-{i}"), "{.spec.nodeName}");
        assert_eq!(
            zone,
            zone_of(k, &node),
            "volume of mariadb-{i} is in its node's zone"
        );
    }
    // No kubelet API here (kubectl exec), so look at the processes themselves.
    let owners = Command::new("ps")
        .args(["-o", "user=", "-C", "mariadbd"])
        .output()
        .unwrap();
    let owners = String::from_utf8_lossy(&owners.stdout);
    assert!(
        owners.lines().count() >= 3 && owners.lines().all(|u| u.trim() == "999"),
        "mariadbd runs as uid 999: {owners}"
    );

    pods_reach_peers_by_name_and_the_apiserver_in_cluster(k, ns);

    // `kubectl logs` reaches the node's kubelet API through the apiserver; the
    // init container saw the pod's name as its hostname.
    let log = k.run(&["-n", ns, "logs", "mariadb-1", "-c", "init-datadir"]);
    assert!(log.contains("initialised mariadb-1"), "{log}");

    // Growing a claim grows its volume (the class allows expansion).
    k.run(&[
        "-n",
        ns,
        "patch",
        "pvc",
        "data-mariadb-2",
        "-p",
        r#"{"spec":{"resources":{"requests":{"storage":"2Gi"}}}}"#,
    ]);
    k.wait_until("data-mariadb-2 at 2Gi", Duration::from_secs(30), |k| {
        (k.jsonpath(ns, "pvc/data-mariadb-2", "{.status.capacity.storage}") == "2Gi").then_some(())
    });

    // (b) Data on a pod's volume survives `kubectl delete pod`.
    let (_, ip) = k.wait_ready(ns, "mariadb-0", Duration::from_secs(10));
    sql(
        &ip,
        "CREATE DATABASE e2e; CREATE TABLE e2e.t (v INT); INSERT INTO e2e.t VALUES (42)",
    )
    .unwrap();
    let old_uid = k.jsonpath(ns, "pod/mariadb-0", "{.metadata.uid}");
    k.run(&["-n", ns, "delete", "pod", "mariadb-0", "--timeout=60s"]);
    let (node, ip) = k.wait_until("a new mariadb-0 Ready", Duration::from_secs(90), |k| {
        let uid = k.jsonpath(ns, "pod/mariadb-0", "{.metadata.uid}");
        (!uid.is_empty() && uid != old_uid)
            .then(|| k.wait_ready(ns, "mariadb-0", Duration::from_secs(90)))
    });
    assert_eq!(sql(&ip, "SELECT v FROM e2e.t").unwrap(), "42");
    snapshots_hold_what_the_volume_held(k, cluster, runtime, ns, &ip);

    // (c) A drain moves the pod to the other node of its zone; with no node of
    // that zone schedulable it stays Pending; uncordon lets it run again.
    let zone = zone_of(k, &node);
    let sibling = k
        .run(&[
            "get",
            "nodes",
            "-l",
            &format!("topology.kubernetes.io/zone={zone}"),
            "-o",
            "jsonpath={.items[*].metadata.name}",
        ])
        .split_whitespace()
        .find(|n| *n != node)
        .unwrap()
        .to_owned();
    let drain = [
        "drain",
        "--ignore-daemonsets",
        "--delete-emptydir-data",
        "--timeout=90s",
    ];
    k.run(&[&drain[..], &[node.as_str()][..]].concat());
    let (moved_to, ip) = k.wait_ready(ns, "mariadb-0", Duration::from_secs(90));
    assert_eq!(
        moved_to, sibling,
        "mariadb-0 moved to the other node of zone {zone}"
    );
    assert_eq!(
        sql(&ip, "SELECT v FROM e2e.t").unwrap(),
        "42",
        "the volume moved with the pod"
    );
    k.run(&[&drain[..], &[sibling.as_str()][..]].concat());
    k.wait_until(
        "mariadb-0 Pending with no schedulable node in its zone",
        Duration::from_secs(30),
        |k| {
            let phase = k.jsonpath(ns, "pod/mariadb-0", "{.status.phase}");
            let scheduled = k.jsonpath(
                ns,
                "pod/mariadb-0",
                "{.status.conditions[?(@.type==\"PodScheduled\")].status}",
            );
            (phase == "Pending" && scheduled == "False").then_some(())
        },
    );
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        k.jsonpath(ns, "pod/mariadb-0", "{.spec.nodeName}"),
        "",
        "never scheduled to another zone"
    );
    k.run(&["uncordon", &node]);
    k.run(&["uncordon", &sibling]);
    let (_, ip) = k.wait_ready(ns, "mariadb-0", Duration::from_secs(90));
    assert_eq!(sql(&ip, "SELECT v FROM e2e.t").unwrap(), "42");

    // (d) A stopped node goes NotReady and its pods become unreachable; a
    // started one recovers.
    let (node, ip) = k.wait_ready(ns, "mariadb-1", Duration::from_secs(10));
    runtime.block_on(cluster.node_stop(&node)).unwrap();
    assert!(
        sql(&ip, "SELECT 1").is_err(),
        "a pod of a stopped node is unreachable"
    );
    k.wait_until(&format!("{node} NotReady"), Duration::from_secs(60), |k| {
        let ready = k.jsonpath(
            ns,
            &format!("node/{node}"),
            "{.status.conditions[?(@.type==\"Ready\")].status}",
        );
        (ready == "Unknown" || ready == "False").then_some(())
    });
    k.wait_until("mariadb-1 marked not Ready", Duration::from_secs(60), |k| {
        let ready = k.jsonpath(
            ns,
            "pod/mariadb-1",
            "{.status.conditions[?(@.type==\"Ready\")].status}",
        );
        (ready != "True").then_some(())
    });
    runtime.block_on(cluster.node_start(&node)).unwrap();
    k.wait_until(
        &format!("{node} Ready again"),
        Duration::from_secs(60),
        |k| {
            let ready = k.jsonpath(
                ns,
                &format!("node/{node}"),
                "{.status.conditions[?(@.type==\"Ready\")].status}",
            );
            (ready == "True").then_some(())
        },
    );
    let (_, ip) = k.wait_ready(ns, "mariadb-1", Duration::from_secs(60));
    assert_eq!(sql(&ip, "SELECT 1").unwrap(), "1");
}

/// A pod resolves `<pod>.<service>` and the Service name through the cluster
/// hosts file, reaches a peer's server over the bridge, and talks to the
/// apiserver with its projected service-account token, as the operator will.
fn pods_reach_peers_by_name_and_the_apiserver_in_cluster(k: &Kubectl, ns: &str) {
    k.run(&[
        "-n",
        ns,
        "create",
        "rolebinding",
        "probe-view",
        "--clusterrole=view",
        "--serviceaccount",
        &format!("{ns}:default"),
    ]);
    let script = r#"set -e
getent hosts mariadb-1.mariadb
getent hosts mariadb.tutorial.svc.cluster.local
mariadb --skip-ssl -h mariadb-1.mariadb -utest -ptest -N -e 'SELECT 1'
sa=/var/run/secrets/kubernetes.io/serviceaccount
curl -sf --cacert $sa/ca.crt -H "Authorization: Bearer $(cat $sa/token)"   "https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT/api/v1/namespaces/$(cat $sa/namespace)/pods" > /dev/null
echo in-cluster-ok"#;
    let manifest = format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: probe}}\nspec:\n  restartPolicy: Never\n  containers:\n    - name: main\n      image: mariadb:10.11\n      command: [sh, -c, {}]\n",
        yaml_quoted(script)
    );
    apply(k, ns, &manifest);
    let phase = k.wait_until("the probe pod to finish", Duration::from_secs(60), |k| {
        let phase = k.jsonpath(ns, "pod/probe", "{.status.phase}");
        matches!(phase.as_str(), "Succeeded" | "Failed").then_some(phase)
    });
    assert_eq!(
        phase, "Succeeded",
        "names, peers and the apiserver reachable from a pod"
    );
    k.run(&["-n", ns, "delete", "pod", "probe"]);
}

/// A double-quoted YAML string (Rust escapes quotes, backslashes and newlines as YAML does).
fn yaml_quoted(s: &str) -> String {
    format!("{s:?}")
}

/// (b') An EC2 snapshot of a running server's volume holds its content as
/// it was when CreateSnapshot returned; a volume made from it in another
/// zone starts with that content; a deleted snapshot's content goes.
fn snapshots_hold_what_the_volume_held(
    k: &Kubectl,
    cluster: &TestCluster,
    runtime: &tokio::runtime::Runtime,
    ns: &str,
    ip: &str,
) {
    let ec2 = ebisu_testcluster::ec2::client();
    let pv = k.jsonpath(ns, "pvc/data-mariadb-0", "{.spec.volumeName}");
    let volume = k.jsonpath(ns, &format!("pv/{pv}"), "{.spec.csi.volumeHandle}");
    let source = cluster.layout().volumes().join(&volume);
    let snapshot = runtime
        .block_on(ec2.create_snapshot().volume_id(&volume).send())
        .unwrap()
        .snapshot_id()
        .unwrap()
        .to_owned();
    // The server was stopped for the copy only and carries on.
    sql(ip, "INSERT INTO e2e.t VALUES (43)").unwrap();
    std::fs::write(source.join("after-the-snapshot"), "later").unwrap();
    let zone = k.jsonpath(
        ns,
        &format!("pv/{pv}"),
        "{.spec.nodeAffinity.required.nodeSelectorTerms[0].matchExpressions[0].values[0]}",
    );
    let elsewhere = ebisu_testcluster::layout::ZONES
        .iter()
        .find(|z| **z != zone)
        .unwrap();
    let restored = runtime
        .block_on(
            ec2.create_volume()
                .availability_zone(*elsewhere)
                .snapshot_id(&snapshot)
                .size(1)
                .send(),
        )
        .unwrap()
        .volume_id()
        .unwrap()
        .to_owned();
    let copy = cluster.layout().volumes().join(&restored);
    assert!(
        copy.join("data/e2e/t.ibd").is_file() && copy.join("data/ibdata1").is_file(),
        "the restored volume {restored} holds the server's files"
    );
    assert!(
        !copy.join("after-the-snapshot").exists(),
        "nothing written after the snapshot is in it"
    );
    assert_eq!(sql(ip, "SELECT COUNT(*) FROM e2e.t").unwrap(), "2");
    sql(ip, "DELETE FROM e2e.t WHERE v = 43").unwrap();
    runtime
        .block_on(ec2.delete_snapshot().snapshot_id(&snapshot).send())
        .unwrap();
    assert!(!cluster.layout().snapshots().join(&snapshot).exists());
    std::fs::remove_file(source.join("after-the-snapshot")).unwrap();
    runtime
        .block_on(ec2.delete_volume().volume_id(&restored).send())
        .unwrap();
}
