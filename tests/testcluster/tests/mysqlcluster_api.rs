//! The MySQLCluster CRD on a real v1.34 API server: it is accepted (its CEL
//! rules fit the server's cost budget), the examples are accepted with their
//! defaults filled in, and the bad specs users are warned about are refused
//! with a message naming the field — through `kubectl apply`, `patch` and the
//! scale subresource, as a user would meet them.
#![allow(clippy::expect_used, clippy::unwrap_used)] // test helpers fail loudly by design

use std::path::Path;

use ebisu_testcluster::{Kubectl, TestCluster, kubectl::workspace_path};

const STATE_DIR: &str = "/tmp/ebisu-testcluster-api";

fn workspace(path: &str) -> String {
    workspace_path(path).display().to_string()
}

/// kubectl with the error as its message, for asserting on refusals.
struct Api(Kubectl);

impl Api {
    fn run(&self, args: &[&str]) -> Result<String, String> {
        self.0.try_run(args).map_err(|e| e.to_string())
    }

    fn patch(&self, object: &str, patch: &str) -> Result<String, String> {
        self.0
            .merge_patch("api", object, patch)
            .map_err(|e| e.to_string())
    }
}

#[track_caller]
fn assert_refused(result: Result<String, String>, field: &str, fix: &str) {
    let message = result.expect_err("the API server accepted a spec it must refuse");
    assert!(
        message.contains(field) && message.contains(fix),
        "expected {field:?} and {fix:?} in: {message}"
    );
}

#[test]
fn api_server_accepts_the_crd_and_refuses_bad_specs() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let cluster = runtime
        .block_on(TestCluster::up(
            Path::new(STATE_DIR),
            Path::new(env!("CARGO_BIN_EXE_testcluster")),
        ))
        .unwrap();
    let k = Api(Kubectl::new(cluster.kubeconfig()));

    k.run(&[
        "apply",
        "--server-side",
        "-f",
        &workspace("crds/mysqlclusters.ebisu.dev.yaml"),
    ])
    .expect("the CRD is accepted");
    k.run(&[
        "wait",
        "--for=condition=Established",
        "crd/mysqlclusters.ebisu.dev",
        "--timeout=60s",
    ])
    .unwrap();
    k.run(&[
        "apply",
        "--server-side",
        "-f",
        &workspace("crds/mysqlbackups.ebisu.dev.yaml"),
    ])
    .expect("the backup CRD is accepted");
    k.run(&[
        "wait",
        "--for=condition=Established",
        "crd/mysqlbackups.ebisu.dev",
        "--timeout=60s",
    ])
    .unwrap();
    k.run(&["create", "namespace", "api"]).unwrap();
    for example in ["basic", "mariadb", "mysql", "production"] {
        k.run(&[
            "-n",
            "api",
            "apply",
            "-f",
            &workspace(&format!("examples/{example}.yaml")),
        ])
        .unwrap_or_else(|e| panic!("examples/{example}.yaml refused: {e}"));
    }
    // Schema defaults are filled in by the server.
    let defaults = k
        .run(&[
            "-n",
            "api",
            "get",
            "myc",
            "orders",
            "-o",
            "jsonpath={.spec.flavor} {.spec.serverIdBase} {.spec.replication.waitForReplicas}",
        ])
        .unwrap();
    assert_eq!(defaults, "mariadb 100 1");

    assert_refused(
        k.patch("myc/orders", r#"{"spec":{"replicas":0}}"#),
        "spec.replicas",
        "between 1 and 9",
    );
    assert_refused(
        k.patch("myc/orders", r#"{"spec":{"replicas":10}}"#),
        "spec.replicas",
        "between 1 and 9",
    );
    assert_refused(
        k.run(&["-n", "api", "scale", "myc/orders", "--replicas=12"]),
        "spec.replicas",
        "between 1 and 9",
    );
    k.run(&["-n", "api", "scale", "myc/orders", "--replicas=5"])
        .expect("the scale subresource works");
    assert_eq!(
        k.run(&[
            "-n",
            "api",
            "get",
            "myc",
            "orders",
            "-o",
            "jsonpath={.spec.replicas}"
        ])
        .unwrap(),
        "5"
    );
    assert_refused(
        k.patch("myc/orders", r#"{"spec":{"storage":{"size":"5Gi"}}}"#),
        "spec.storage.size",
        "never shrink",
    );
    k.patch("myc/orders", r#"{"spec":{"storage":{"size":"20Gi"}}}"#)
        .expect("storage may grow");
    assert_refused(
        k.patch("myc/orders", r#"{"spec":{"flavor":"mysql"}}"#),
        "spec.flavor",
        "immutable",
    );
    assert_refused(
        k.patch("myc/orders", r#"{"spec":{"serverIdBase":200}}"#),
        "spec.serverIdBase",
        "immutable",
    );
    assert_refused(
        k.patch(
            "myc/orders",
            r#"{"spec":{"storage":{"storageClassName":"gp3"}}}"#,
        ),
        "storageClassName",
        "not both",
    );
    assert_refused(
        k.patch(
            "myc/orders",
            r#"{"spec":{"mysqlConfig":{"server_id":"1"}}}"#,
        ),
        "spec.mysqlConfig",
        "remove them",
    );
    assert_refused(
        k.patch(
            "myc/payments",
            r#"{"spec":{"storage":{"ebs":{"type":"io2","iops":4000}}}}"#,
        ),
        "spec.storage.ebs.type",
        "immutable",
    );
    assert_refused(
        k.patch(
            "myc/orders",
            r#"{"spec":{"bootstrap":{"fromBackup":{"name":"monday"}}}}"#,
        ),
        "spec.bootstrap",
        "create a new cluster",
    );

    // A backup names its cluster once.
    let backup = std::env::temp_dir().join("ebisu-api-backup.yaml");
    std::fs::write(
        &backup,
        "apiVersion: ebisu.dev/v1alpha1\nkind: MySQLBackup\nmetadata: {name: monday, namespace: api}\nspec: {cluster: orders}\n",
    )
    .unwrap();
    k.run(&["apply", "-f", &backup.display().to_string()])
        .expect("a MySQLBackup is accepted");
    assert_refused(
        k.run(&[
            "-n",
            "api",
            "patch",
            "mysqlbackup/monday",
            "--type=merge",
            "-p",
            r#"{"spec":{"cluster":"payments"}}"#,
        ]),
        "spec.cluster",
        "immutable",
    );

    // What the API server can know is refused there, before any reconcile.
    let create = |name: &str, spec: &str| {
        let path = std::env::temp_dir().join(format!("ebisu-api-{}.yaml", name.len()));
        std::fs::write(
            &path,
            format!("apiVersion: ebisu.dev/v1alpha1\nkind: MySQLCluster\nmetadata: {{name: '{name}', namespace: api}}\nspec: {spec}\n"),
        )
        .unwrap();
        k.run(&["apply", "-f", &path.display().to_string()])
    };
    assert_refused(
        create("my.db", "{storage: {size: 10Gi}}"),
        "metadata.name",
        "DNS-1035 label",
    );
    assert_refused(
        create(&"a".repeat(60), "{storage: {size: 10Gi}}"),
        "metadata.name",
        "at most 52 characters",
    );
    for key in ["loose-read-only", "super_read-only", "skip-grant-tables"] {
        assert_refused(
            create(
                "cfg",
                &format!("{{storage: {{size: 10Gi}}, mysqlConfig: {{{key}: 'ON'}}}}"),
            ),
            "spec.mysqlConfig",
            "any spelling",
        );
    }
    for key in [
        "binlog-ignore-db",
        "replicate_do_db",
        "init_slave",
        "plugin_load_add",
    ] {
        assert_refused(
            create(
                "cfg",
                &format!("{{storage: {{size: 10Gi}}, mysqlConfig: {{{key}: 'x'}}}}"),
            ),
            "spec.mysqlConfig",
            "lose or skip replicated writes",
        );
    }
    assert_refused(
        create(
            "cfg",
            "{storage: {size: 10Gi}, mysqlConfig: {'max connections': '10'}}",
        ),
        "spec.mysqlConfig",
        "fix the key",
    );
    assert_refused(
        create(
            "cfg",
            r#"{storage: {size: 10Gi}, mysqlConfig: {sql_mode: "STRICT_ALL_TABLES\ninit_file = /tmp/x"}}"#,
        ),
        "spec.mysqlConfig",
        "one line",
    );
    assert_refused(
        create("blank", "{image: '   ', storage: {size: 10Gi}}"),
        "spec.image",
        "blank",
    );
    assert_refused(
        create(
            "iops",
            "{storage: {size: 10Gi, ebs: {type: gp3, iops: 16000}}}",
        ),
        "spec.storage.ebs.iops",
        "500 per GiB",
    );
    assert_refused(
        create(
            "labels",
            "{storage: {size: 10Gi}, podTemplate: {labels: {ebisu.dev/role: primary}}}",
        ),
        "spec.podTemplate.labels",
        "ebisu.dev/",
    );
    create(&"a".repeat(52), "{storage: {size: 10Gi}}").expect("52 characters are enough");

    runtime.block_on(cluster.down()).unwrap();
}
