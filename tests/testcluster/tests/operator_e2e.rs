//! ebisu end to end on the local cluster, as a user drives it: the chart
//! installs the operator as a pod (its RBAC, in-cluster credentials),
//! `kubectl apply -f examples/basic.yaml` gives one primary and two
//! replicas replicating from it, a row written through `<name>-primary` is
//! read back from every replica, `kubectl scale` to 5 seeds the new
//! instances from a replica, and scaling back to 3 keeps the volumes.
#![allow(clippy::expect_used, clippy::unwrap_used)] // test helpers fail loudly by design

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use ebisu_testcluster::TestCluster;

const STATE_DIR: &str = "/tmp/ebisu-testcluster-operator";
const NS: &str = "shop";

fn workspace(path: &str) -> String {
    format!("{}/../../{path}", env!("CARGO_MANIFEST_DIR"))
}

fn control_plane_bin() -> PathBuf {
    std::env::var_os("EBISU_CONTROLPLANE_BIN").map_or_else(
        || {
            let out = Command::new("bash")
                .arg(workspace("tests/build-controlplane.sh"))
                .output()
                .unwrap();
            PathBuf::from(String::from_utf8_lossy(&out.stdout).trim().to_owned())
        },
        PathBuf::from,
    )
}

struct Kube {
    kubeconfig: PathBuf,
}

impl Kube {
    fn run(&self, program: &Path, args: &[&str]) -> Result<String, String> {
        let out = Command::new(program)
            .args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .output()
            .unwrap();
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
        }
    }

    fn kubectl(&self, args: &[&str]) -> String {
        self.run(Path::new("kubectl"), args)
            .unwrap_or_else(|e| panic!("kubectl {args:?}: {e}"))
    }

    fn get(&self, object: &str, path: &str) -> String {
        self.run(
            Path::new("kubectl"),
            &["-n", NS, "get", object, "-o", &format!("jsonpath={path}")],
        )
        .unwrap_or_default()
    }

    fn wait(&self, what: &str, timeout: Duration, mut done: impl FnMut(&Self) -> bool) {
        let started = Instant::now();
        while !done(self) {
            assert!(
                started.elapsed() < timeout,
                "timed out after {timeout:?} waiting for {what}\n{}",
                self.diagnostics()
            );
            std::thread::sleep(Duration::from_secs(1));
        }
    }

    fn diagnostics(&self) -> String {
        let pods = self
            .run(
                Path::new("kubectl"),
                &[
                    "-n",
                    NS,
                    "get",
                    "pods",
                    "-o",
                    "wide",
                    "-L",
                    "ebisu.dev/role",
                ],
            )
            .unwrap_or_default();
        let status = self.get("myc/orders", "{.status}");
        let operator = self
            .run(
                Path::new("kubectl"),
                &[
                    "-n",
                    "ebisu-system",
                    "logs",
                    "deploy/ebisu-operator",
                    "--tail=30",
                ],
            )
            .unwrap_or_default();
        format!("pods:\n{pods}\nstatus: {status}\noperator:\n{operator}")
    }
}

fn sql(args: &[&str], statement: &str) -> Result<String, String> {
    let out = Command::new("mariadb")
        .args(["--skip-ssl", "--connect-timeout=3", "-N", "-B"])
        .args(args)
        .args(["-e", statement])
        .output()
        .unwrap();
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
    }
}

#[test]
fn basic_cluster_replicates_scales_from_a_replica_and_keeps_volumes() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let cluster = runtime
        .block_on(TestCluster::up(
            Path::new(STATE_DIR),
            Path::new(env!("CARGO_BIN_EXE_testcluster")),
        ))
        .unwrap();
    let k = Kube {
        kubeconfig: cluster.kubeconfig(),
    };
    let helm = control_plane_bin().join("helm");
    k.run(
        &helm,
        &[
            "install",
            "ebisu",
            &workspace("charts/ebisu"),
            "--namespace",
            "ebisu-system",
            "--create-namespace",
            "--wait",
            "--timeout",
            "120s",
        ],
    )
    .expect("helm install");
    k.kubectl(&["create", "namespace", NS]);
    k.kubectl(&["-n", NS, "apply", "-f", &workspace("examples/basic.yaml")]);

    k.wait(
        "3 instances ready with a primary",
        Duration::from_secs(240),
        |k| {
            k.get(
                "myc/orders",
                "{.status.readyReplicas} {.status.phase} {.status.currentPrimary}",
            ) == "3 Running orders-0"
        },
    );
    let roles = k.get(
        "pods",
        "{range .items[*]}{.metadata.name}={.metadata.labels.ebisu\\.dev/role} {end}",
    );
    assert_eq!(roles, "orders-0=primary orders-1=replica orders-2=replica");
    let zones = k.get("myc/orders", "{.status.instances[*].zone}");
    assert_eq!(
        zones
            .split(' ')
            .collect::<std::collections::BTreeSet<_>>()
            .len(),
        3,
        "spread over three zones: {zones}"
    );

    // An application user, created on the primary as root over its local socket.
    let root_password = k.kubectl(&[
        "-n",
        NS,
        "get",
        "secret/orders-credentials",
        "-o",
        r#"go-template={{index .data "root-password" | base64decode}}"#,
    ]);
    let uid = k.get("pod/orders-0", "{.metadata.uid}");
    let socket = Path::new(STATE_DIR)
        .join("pods")
        .join(format!("{NS}_orders-0_{uid}"))
        .join("volumes/run/mysqld.sock");
    // The real path is longer than a UNIX socket address may be.
    let short = Path::new("/tmp/ebisu-e2e-primary.sock");
    let _ = std::fs::remove_file(short);
    std::os::unix::fs::symlink(&socket, short).unwrap();
    let root_arg = format!("-p{root_password}");
    let root = ["-S", short.to_str().unwrap(), "-uroot", root_arg.as_str()];
    sql(&root, "CREATE USER app@'%' IDENTIFIED BY 'app-password'; GRANT ALL ON shop.* TO app@'%'; CREATE DATABASE shop; CREATE TABLE shop.orders (id INT PRIMARY KEY, item TEXT)")
        .expect("setup on the primary");
    let _ = std::fs::remove_file(short);

    // Write through the primary Service, as an application would.
    let hosts = std::fs::read_to_string(cluster.layout().hosts_file(NS)).unwrap();
    let primary_ip = hosts
        .lines()
        .find(|l| {
            l.split_whitespace()
                .skip(1)
                .any(|n| n == "orders-primary" || n.starts_with("orders-primary."))
        })
        .and_then(|l| l.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| panic!("orders-primary is not in the cluster hosts file:\n{hosts}"));
    assert_eq!(
        primary_ip,
        k.get("pod/orders-0", "{.status.podIP}"),
        "orders-primary resolves to the primary"
    );
    let app = |ip: &str, statement: &str| sql(&["-h", ip, "-uapp", "-papp-password"], statement);
    app(&primary_ip, "INSERT INTO shop.orders VALUES (1, 'tea')")
        .expect("write through orders-primary");
    for replica in ["orders-1", "orders-2"] {
        let ip = k.get(&format!("pod/{replica}"), "{.status.podIP}");
        k.wait(
            &format!("the row on {replica}"),
            Duration::from_secs(60),
            |_| app(&ip, "SELECT item FROM shop.orders WHERE id = 1").as_deref() == Ok("tea"),
        );
        assert!(
            app(&ip, "INSERT INTO shop.orders VALUES (2, 'x')").is_err(),
            "{replica} refuses writes"
        );
    }

    // Scale up: new instances are seeded from a replica, not the primary.
    k.kubectl(&["-n", NS, "scale", "myc/orders", "--replicas=5"]);
    k.wait("5 instances ready", Duration::from_secs(240), |k| {
        k.get("myc/orders", "{.status.readyReplicas} {.status.phase}") == "5 Running"
    });
    for new in ["orders-3", "orders-4"] {
        let log = k.kubectl(&["-n", NS, "logs", new, "-c", "init"]);
        let donor = log
            .lines()
            .find(|l| l.contains("seeded from donor"))
            .unwrap_or_else(|| panic!("{new} init log:\n{log}"));
        assert!(
            !donor.contains("orders-0."),
            "{new} was seeded from the primary: {donor}"
        );
        let ip = k.get(&format!("pod/{new}"), "{.status.podIP}");
        k.wait(
            &format!("the row on {new}"),
            Duration::from_secs(60),
            |_| app(&ip, "SELECT item FROM shop.orders WHERE id = 1").as_deref() == Ok("tea"),
        );
    }

    // Scale down: status follows, the volumes stay.
    k.kubectl(&["-n", NS, "scale", "myc/orders", "--replicas=3"]);
    k.wait("status to say 3", Duration::from_secs(120), |k| {
        k.get(
            "myc/orders",
            "{.status.replicas} {.status.readyReplicas} {.status.phase}",
        ) == "3 3 Running"
    });
    let claims = k.get("pvc", "{.items[*].metadata.name}");
    assert_eq!(
        claims.split(' ').count(),
        5,
        "scaled-down instances keep their volumes: {claims}"
    );

    runtime.block_on(cluster.down()).unwrap();
}
