//! One end-to-end scenario on the local cluster, as a user drives it: the
//! cluster brought up, ebisu installed by Helm, one MySQLCluster in one
//! namespace, and the helpers every e2e test and benchmark uses (kubectl,
//! status reads, waits that fail with diagnostics, root SQL over the
//! server's socket, node stop and start, and the writer/poller load checked
//! by [`crate::drill::verify`]). Each helper panics with the cluster's
//! diagnostics when it cannot do its part: scenarios fail loudly.
#![allow(clippy::expect_used)] // a scenario fails loudly by design

use std::{
    path::Path,
    time::{Duration, Instant},
};

use crate::{
    Kubectl, Layout, TestCluster,
    drill::{self, App, Looks, Poller, Writer, Writes},
    ebisu::{self, OPERATOR_NAMESPACE},
    kubectl::workspace_path,
};

/// A scenario: the local cluster, one namespace and one MySQLCluster in it.
#[derive(Debug)]
pub struct Scenario {
    /// kubectl against the local cluster.
    pub k: Kubectl,
    /// Where the local cluster keeps its state.
    pub layout: Layout,
    /// The namespace of the MySQLCluster.
    pub ns: String,
    /// The MySQLCluster's name.
    pub cluster: String,
    /// How the application reaches it.
    pub app: App,
    /// The next id the writer starts after.
    pub next_id: u64,
    testcluster: TestCluster,
    runtime: tokio::runtime::Runtime,
}

/// The application account the scenarios create.
pub const APP_USER: &str = "app";
/// Its password.
pub const APP_PASSWORD: &str = "app-password";

impl Scenario {
    /// Brings the local cluster up in `state_dir` for MySQLCluster
    /// `cluster` in namespace `ns` (`tls`: the application connects with
    /// TLS, as MySQL's caching_sha2_password needs at first login).
    pub fn start(
        state_dir: &str,
        testcluster_bin: &Path,
        ns: &str,
        cluster: &str,
        tls: bool,
    ) -> Self {
        let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
        let testcluster = runtime
            .block_on(TestCluster::up(Path::new(state_dir), testcluster_bin))
            .unwrap_or_else(|e| panic!("the local cluster comes up: {e}"));
        let layout = testcluster.layout().clone();
        Self {
            k: Kubectl::new(testcluster.kubeconfig()),
            app: App {
                hosts: layout.hosts_file(ns),
                cluster: cluster.to_owned(),
                user: APP_USER.to_owned(),
                password: APP_PASSWORD.to_owned(),
                tls,
            },
            layout,
            ns: ns.to_owned(),
            cluster: cluster.to_owned(),
            next_id: 0,
            testcluster,
            runtime,
        }
    }

    /// Installs ebisu with the chart's defaults plus `settings`.
    pub fn install_operator(&self, settings: &[&str]) {
        ebisu::install_operator(&self.k, settings).unwrap_or_else(|e| panic!("helm install: {e}"));
    }

    /// Creates namespace `ns` enforcing Pod Security `restricted`, as a
    /// careful user's would: a pod ebisu makes that stops complying is
    /// refused, and the test fails.
    pub fn create_namespace(&self, ns: &str) {
        ebisu::create_restricted_namespace(&self.k, ns)
            .unwrap_or_else(|e| panic!("{e}\n{}", self.diagnostics()));
    }

    /// Applies `example` (a path in the workspace) into the namespace,
    /// creating it (restricted) if need be.
    pub fn apply_example(&self, example: &str) {
        if self.k.try_run(&["get", "namespace", &self.ns]).is_err() {
            self.create_namespace(&self.ns);
        }
        let path = workspace_path(example);
        self.kubectl(&["-n", &self.ns, "apply", "-f", &path.display().to_string()]);
    }

    /// Applies `manifest` (YAML) as a file, as a user would.
    pub fn apply_yaml(&self, name: &str, manifest: &str) {
        let path = std::env::temp_dir().join(format!("ebisu-{name}.yaml"));
        std::fs::write(&path, manifest).unwrap_or_else(|e| panic!("write {name}: {e}"));
        self.kubectl(&["-n", &self.ns, "apply", "-f", &path.display().to_string()]);
    }

    /// A benchmark's local cluster (namespace `bench`), saying which
    /// images the pods run (`EBISU_IMAGE_PROFILE`, else `image-dev`).
    pub fn start_bench(state_dir: &str, exe: &Path) -> Self {
        println!(
            "pods run the images built with profile {}",
            std::env::var("EBISU_IMAGE_PROFILE").unwrap_or_else(|_| "image-dev".to_owned())
        );
        Self::start(state_dir, exe, "bench", "orders", false)
    }

    /// Points the scenario at the benchmark cluster of `flavor` (`mysql`:
    /// `inventory` in `bench-mysql` from examples/mysql.yaml; otherwise
    /// `orders` in `bench` from examples/basic.yaml), applies it, and makes
    /// the application user and the writer's table `bench.w` on its
    /// primary; returns the primary.
    pub fn bench_cluster(&mut self, flavor: &str) -> String {
        let (ns, cluster, example, tls) = match flavor {
            "mysql" => ("bench-mysql", "inventory", "examples/mysql.yaml", true),
            _ => ("bench", "orders", "examples/basic.yaml", false),
        };
        self.ns = ns.to_owned();
        self.cluster = cluster.to_owned();
        self.app = App {
            hosts: self.layout.hosts_file(ns),
            cluster: cluster.to_owned(),
            user: APP_USER.to_owned(),
            password: APP_PASSWORD.to_owned(),
            tls,
        };
        self.apply_example(example);
        let primary = self.wait_settled(3);
        self.root(
            &primary,
            &format!(
                "CREATE USER {APP_USER}@'%' IDENTIFIED BY '{APP_PASSWORD}'; GRANT ALL ON bench.* TO {APP_USER}@'%'; \
                 CREATE DATABASE bench; CREATE TABLE bench.w (id BIGINT PRIMARY KEY)"
            ),
        );
        primary
    }

    /// `kubectl` with `args`; panics with diagnostics on failure.
    pub fn kubectl(&self, args: &[&str]) -> String {
        self.k
            .try_run(args)
            .unwrap_or_else(|e| panic!("{e}\n{}", self.diagnostics()))
    }

    /// A JSONPath read of `object` in the scenario's namespace.
    pub fn get(&self, object: &str, path: &str) -> String {
        self.k.jsonpath(&self.ns, object, path)
    }

    /// A JSONPath read of the MySQLCluster.
    pub fn myc(&self, path: &str) -> String {
        self.get(&format!("myc/{}", self.cluster), path)
    }

    /// Merge-patches the MySQLCluster.
    pub fn patch(&self, patch: &str) {
        self.k
            .merge_patch(&self.ns, &format!("myc/{}", self.cluster), patch)
            .unwrap_or_else(|e| panic!("{e}\n{}", self.diagnostics()));
    }

    /// Annotates the MySQLCluster (`key=value`).
    pub fn annotate(&self, annotation: &str) {
        self.kubectl(&[
            "-n",
            &self.ns,
            "annotate",
            &format!("myc/{}", self.cluster),
            annotation,
            "--overwrite",
        ]);
    }

    /// Waits until `done`, or panics with diagnostics after `timeout`.
    pub fn wait(&self, what: &str, timeout: Duration, mut done: impl FnMut(&Self) -> bool) {
        self.k
            .wait(what, timeout, |_| done(self).then_some(()))
            .unwrap_or_else(|e| panic!("{e}\n{}", self.diagnostics()));
    }

    /// Every Event in the namespace as `reason: message` lines.
    pub fn events(&self) -> String {
        self.get(
            "events",
            "{range .items[*]}{.reason}: {.message}{\"\\n\"}{end}",
        )
    }

    /// Pods, status, the operator's last log lines and the Events.
    pub fn diagnostics(&self) -> String {
        format!(
            "{}\nevents:\n{}",
            ebisu::diagnostics(&self.k, &self.ns, &self.cluster),
            self.events()
        )
    }

    /// `status.currentPrimary`.
    pub fn primary(&self) -> String {
        self.myc("{.status.currentPrimary}")
    }

    /// The pods labelled with `role`.
    pub fn labelled(&self, role: &str) -> Vec<String> {
        self.get(
            "pods",
            &format!(
                "{{range .items[?(@.metadata.labels.ebisu\\.dev/role==\"{role}\")]}}{{.metadata.name}} {{end}}"
            ),
        )
        .split_whitespace()
        .map(str::to_owned)
        .collect()
    }

    /// The node `pod` runs on.
    pub fn node_of(&self, pod: &str) -> String {
        self.get(&format!("pod/{pod}"), "{.spec.nodeName}")
    }

    /// The zone label of `node`.
    pub fn zone_of(&self, node: &str) -> String {
        self.k.jsonpath(
            "default",
            &format!("node/{node}"),
            "{.metadata.labels.topology\\.kubernetes\\.io/zone}",
        )
    }

    /// A condition's status (`True`/`False`).
    pub fn condition(&self, type_: &str) -> String {
        self.myc(&format!(
            "{{.status.conditions[?(@.type==\"{type_}\")].status}}"
        ))
    }

    /// A condition's message.
    pub fn condition_message(&self, type_: &str) -> String {
        self.myc(&format!(
            "{{.status.conditions[?(@.type==\"{type_}\")].message}}"
        ))
    }

    /// A field of `status.instances[]` for `pod`.
    pub fn instance(&self, pod: &str, field: &str) -> String {
        self.myc(&format!(
            "{{.status.instances[?(@.pod==\"{pod}\")].{field}}}"
        ))
    }

    /// Runs `statement` as root over the pod's server socket; panics on failure.
    pub fn root(&self, pod: &str, statement: &str) -> String {
        ebisu::root_sql(
            &self.k,
            &self.layout,
            &self.ns,
            &self.cluster,
            pod,
            statement,
        )
        .unwrap_or_else(|e| panic!("{e}\n{}", self.diagnostics()))
    }

    /// The binary log files of the pod's server, oldest first.
    pub fn binary_logs(&self, pod: &str) -> Vec<String> {
        self.root(pod, "SHOW BINARY LOGS")
            .lines()
            .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
            .collect()
    }

    /// The cluster's flavor (`spec.flavor`).
    pub fn flavor(&self) -> ebisu_mysql::Flavor {
        match self.myc("{.spec.flavor}").as_str() {
            "mysql" => ebisu_mysql::Flavor::MySql84,
            _ => ebisu_mysql::Flavor::MariaDb,
        }
    }

    /// Every transaction the pod's server has written to its binary logs,
    /// read from the server now.
    pub fn executed(&self, pod: &str) -> ebisu_mysql::GtidSet {
        let flavor = self.flavor();
        let set = self.root(
            pod,
            match flavor {
                ebisu_mysql::Flavor::MariaDb => "SELECT @@GLOBAL.gtid_binlog_pos",
                // The client prints a newline inside a value as `\n`, which
                // the parser would not take.
                _ => "SELECT REPLACE(@@GLOBAL.gtid_executed, '\\n', '')",
            },
        );
        ebisu_mysql::GtidSet::parse(flavor, set.trim())
            .unwrap_or_else(|e| panic!("{pod}'s GTID set {set:?}: {e}"))
    }

    /// As [`Scenario::root`], `None` while the server cannot be reached.
    pub fn try_root(&self, pod: &str, statement: &str) -> Option<String> {
        ebisu::root_sql(
            &self.k,
            &self.layout,
            &self.ns,
            &self.cluster,
            pod,
            statement,
        )
        .ok()
    }

    /// The init container's log of `pod`.
    pub fn init_log(&self, pod: &str) -> String {
        self.kubectl(&["-n", &self.ns, "logs", pod, "-c", "init"])
    }

    /// The operator pod holding the leader Lease.
    pub fn leader(&self) -> String {
        self.k.jsonpath(
            OPERATOR_NAMESPACE,
            "lease/ebisu-operator",
            "{.spec.holderIdentity}",
        )
    }

    /// The operator pods' names (one being deleted first, then all).
    pub fn operator_pods(&self) -> String {
        self.k.jsonpath(
            OPERATOR_NAMESPACE,
            "pods",
            "{.items[?(@.metadata.deletionTimestamp)].metadata.name}|{.items[*].metadata.name}",
        )
    }

    /// The log of operator pod `pod`.
    pub fn operator_log(&self, pod: &str) -> String {
        self.kubectl(&["-n", OPERATOR_NAMESPACE, "logs", pod])
    }

    /// Waits for `ready` Ready instances, phase Running and a primary;
    /// returns the primary.
    pub fn wait_running(&self, ready: u32) -> String {
        ebisu::wait_running(
            &self.k,
            &self.ns,
            &self.cluster,
            ready,
            Duration::from_secs(300),
        )
        .unwrap_or_else(|e| panic!("{e}\n{}", self.diagnostics()))
    }

    /// As [`Scenario::wait_running`], and the primary is the one pod
    /// labelled primary.
    pub fn wait_settled(&self, ready: u32) -> String {
        let primary = self.wait_running(ready);
        self.wait("one primary label", Duration::from_secs(60), |s| {
            s.labelled("primary") == [primary.clone()]
        });
        primary
    }

    /// Stops (`"stop"`) or starts (`"start"`) a node of the local cluster.
    pub fn node(&self, action: &str, name: &str) {
        let result = self.runtime.block_on(async {
            match action {
                "stop" => self.testcluster.node_stop(name).await,
                _ => self.testcluster.node_start(name).await,
            }
        });
        result.unwrap_or_else(|e| panic!("node {action} {name}: {e}"));
    }

    /// Runs a future on the scenario's runtime.
    pub fn block_on<F: std::future::Future>(&self, future: F) -> F::Output {
        self.runtime.block_on(future)
    }

    /// Starts the writer (through the primary Service, into `table`) and the poller.
    pub fn load(&self, table: &str) -> (Writer, Poller) {
        let writer = Writer::start(
            &self.app,
            &format!("{}-primary", self.cluster),
            table,
            self.next_id,
        );
        (writer, Poller::start(&self.app))
    }

    /// Who is writable now, asked of every server.
    pub fn writable_now(&self) -> Vec<String> {
        self.app
            .servers()
            .into_iter()
            .filter(|(_, ip)| {
                self.app
                    .sql(ip, "SELECT @@global.read_only", Duration::from_secs(2))
                    .is_ok_and(|v| v == "0")
            })
            .map(|(pod, _)| pod)
            .collect()
    }

    /// Stops the load and checks what every drill promises ([`drill::verify`]):
    /// every acknowledged id in `table` on the primary, never two servers
    /// writable (but for `thawed`, a server frozen, alone or with its node,
    /// and resumed as it was, for at most two looks until its agent's fence
    /// shows), exactly one writable now. Panics with diagnostics when one
    /// does not hold.
    pub fn verify(
        &mut self,
        what: &str,
        table: &str,
        (writer, poller): (Writer, Poller),
        thawed: Option<&str>,
    ) -> (Writes, Looks) {
        let writes = writer.stop();
        let looks = poller.stop();
        self.next_id += writes.attempts + 1;
        let primary = self.primary();
        let found = self.root(&primary, &format!("SELECT id FROM {table}"));
        let writable = self.writable_now();
        if let Err(why) = drill::verify(&writes, &looks, &found, &primary, &writable, thawed) {
            panic!("{what}: {why}\n{}", self.diagnostics());
        }
        eprintln!(
            "{what}: {} of {} writes acknowledged, none lost; longest stretch without an \
             acknowledged write {:?}",
            writes.acked.len(),
            writes.attempts,
            writes.longest_gap(
                writes.acked.first().map_or_else(Instant::now, |a| a.1),
                writes.acked.last().map_or_else(Instant::now, |a| a.1)
            )
        );
        (writes, looks)
    }

    /// Takes the local cluster down.
    pub fn down(self) {
        let Self {
            testcluster,
            runtime,
            ..
        } = self;
        runtime
            .block_on(testcluster.down())
            .unwrap_or_else(|e| panic!("the local cluster goes down: {e}"));
    }
}
