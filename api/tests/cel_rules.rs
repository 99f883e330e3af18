//! The CRD's CEL rules, evaluated locally by kube's CEL implementation against
//! the schema exactly as the generated CRD carries it.

#![allow(clippy::expect_used, clippy::unwrap_used)] // test helpers fail loudly by design

use ebisu_api::MySQLCluster;
use kube::CustomResourceExt;
use kube_cel::Validator;
use serde_json::{Value, json};

fn schema() -> Value {
    let crd = MySQLCluster::crd();
    let version = &crd.spec.versions[0];
    let schema = version
        .schema
        .as_ref()
        .and_then(|s| s.open_api_v3_schema.as_ref())
        .expect("the CRD has a schema");
    serde_json::to_value(schema).expect("schema serialises")
}

/// A cluster as the API server would store it after defaulting.
fn cluster(spec: Value) -> Value {
    let mut full = json!({
        "replicas": 3,
        "flavor": "mariadb",
        "serverIdBase": 100,
        "storage": {"size": "20Gi"},
        "replication": {"waitForReplicas": 1, "maxLagForPromotionSeconds": 10, "maxLagForReadsSeconds": 30, "failover": "Automatic", "failoverAfterSeconds": 3},
        "clone": {"donor": "PreferReplica"},
    });
    merge(&mut full, spec);
    json!({
        "apiVersion": "ebisu.dev/v1alpha1",
        "kind": "MySQLCluster",
        "metadata": {"name": "orders", "namespace": "shop"},
        "spec": full,
    })
}

fn merge(base: &mut Value, patch: Value) {
    match (base, patch) {
        (Value::Object(base), Value::Object(patch)) => {
            for (k, v) in patch {
                if v.is_null() {
                    base.remove(&k);
                } else {
                    merge(base.entry(k).or_insert(Value::Null), v);
                }
            }
        }
        (base, patch) => *base = patch,
    }
}

/// Messages of the rules that fail on create.
fn create_errors(spec: Value) -> Vec<String> {
    messages(Validator::new().validate(&schema(), &cluster(spec), None))
}

/// Messages of the rules that fail when `old` is updated to `new`.
fn update_errors(old: Value, new: Value) -> Vec<String> {
    messages(Validator::new().validate(&schema(), &cluster(new), Some(&cluster(old))))
}

fn messages(result: Result<(), kube_cel::ValidationErrors>) -> Vec<String> {
    match result {
        Ok(()) => vec![],
        Err(errors) => errors.into_vec().into_iter().map(|e| e.message).collect(),
    }
}

#[track_caller]
fn assert_refused(errors: &[String], needle: &str) {
    assert!(
        errors.iter().any(|m| m.contains(needle)),
        "expected an error mentioning {needle:?}, got {errors:?}"
    );
}

#[test]
fn defaulted_basic_cluster_is_accepted() {
    assert_eq!(create_errors(json!({})), Vec::<String>::new());
}

#[test]
fn replicas_outside_one_to_nine_are_refused() {
    for replicas in [0, -1, 10, 100] {
        assert_refused(
            &create_errors(json!({"replicas": replicas, "replication": {"semiSync": false}})),
            "spec.replicas must be between 1 and 9",
        );
    }
    for replicas in [1, 9] {
        assert_eq!(
            create_errors(json!({"replicas": replicas})),
            Vec::<String>::new(),
            "replicas {replicas}"
        );
    }
}

#[test]
fn storage_may_grow_but_never_shrink() {
    let small = json!({"storage": {"size": "20Gi"}});
    assert_eq!(
        update_errors(small.clone(), json!({"storage": {"size": "21Gi"}})),
        Vec::<String>::new()
    );
    assert_eq!(
        update_errors(small.clone(), json!({"storage": {"size": "1Ti"}})),
        Vec::<String>::new()
    );
    assert_refused(
        &update_errors(small.clone(), json!({"storage": {"size": "19Gi"}})),
        "may grow but never shrink",
    );
    // Same size in other units is not a shrink.
    assert_eq!(
        update_errors(small, json!({"storage": {"size": "20480Mi"}})),
        Vec::<String>::new()
    );
}

#[test]
fn storage_size_must_be_a_quantity_of_at_least_one_gibibyte() {
    assert_refused(
        &create_errors(json!({"storage": {"size": "lots"}})),
        "spec.storage.size must be a quantity",
    );
    assert_refused(
        &create_errors(json!({"storage": {"size": "512Mi"}})),
        "at least 1Gi",
    );
}

#[test]
fn flavor_and_server_id_base_are_immutable() {
    assert_refused(
        &update_errors(json!({}), json!({"flavor": "mysql"})),
        "spec.flavor is immutable",
    );
    assert_refused(
        &update_errors(json!({}), json!({"serverIdBase": 200})),
        "spec.serverIdBase is immutable",
    );
    assert_eq!(
        update_errors(json!({}), json!({"replicas": 5})),
        Vec::<String>::new()
    );
}

#[test]
fn server_id_base_leaves_room_for_nine_instances() {
    assert_refused(
        &create_errors(json!({"serverIdBase": 0})),
        "spec.serverIdBase must be between 1 and 4294967286",
    );
    assert_refused(
        &create_errors(json!({"serverIdBase": 4_294_967_287_i64})),
        "serverIdBase + 9",
    );
    assert_eq!(
        create_errors(json!({"serverIdBase": 4_294_967_286_i64})),
        Vec::<String>::new()
    );
}

#[test]
fn storage_class_name_and_ebs_are_mutually_exclusive() {
    let both = json!({"storage": {"size": "20Gi", "storageClassName": "gp3", "ebs": {"type": "gp3", "encrypted": true}}});
    assert_refused(
        &create_errors(both),
        "set either storageClassName or ebs, not both",
    );
}

#[test]
fn storage_class_and_ebs_parameters_are_immutable() {
    let named = json!({"storage": {"size": "20Gi", "storageClassName": "fast"}});
    assert_refused(
        &update_errors(
            named.clone(),
            json!({"storage": {"size": "20Gi", "storageClassName": "slow"}}),
        ),
        "storageClassName is immutable",
    );
    assert_refused(
        &update_errors(
            named,
            json!({"storage": {"size": "20Gi", "storageClassName": null}}),
        ),
        "storageClassName is immutable",
    );
    let ebs = json!({"storage": {"size": "20Gi", "ebs": {"type": "gp3", "iops": 3000, "encrypted": true}}});
    // IOPS and throughput change in place (ModifyVolume); the rest cannot.
    let faster = json!({"storage": {"size": "20Gi", "ebs": {"type": "gp3", "iops": 4000, "throughput": 250, "encrypted": true}}});
    assert_eq!(update_errors(ebs.clone(), faster), Vec::<String>::new());
    assert_refused(
        &update_errors(
            ebs.clone(),
            json!({"storage": {"size": "20Gi", "ebs": {"type": "io2", "iops": 3000, "encrypted": true}}}),
        ),
        "spec.storage.ebs.type, encrypted and kmsKeyId are immutable",
    );
    assert_refused(
        &update_errors(
            ebs.clone(),
            json!({"storage": {"size": "20Gi", "ebs": {"type": "gp3", "iops": 3000, "encrypted": false}}}),
        ),
        "spec.storage.ebs.type, encrypted and kmsKeyId are immutable",
    );
    assert_refused(
        &update_errors(ebs.clone(), json!({"storage": {"size": "20Gi"}})),
        "spec.storage.ebs cannot be added or removed",
    );
    let grown = json!({"storage": {"size": "30Gi", "ebs": {"type": "gp3", "iops": 3000, "encrypted": true}}});
    assert_eq!(update_errors(ebs, grown), Vec::<String>::new());
}

#[test]
fn iops_and_throughput_follow_ebs_limits() {
    let ebs = |e: Value| json!({"storage": {"size": "100Gi", "ebs": e}});
    assert_refused(
        &create_errors(ebs(json!({"type": "gp3", "iops": 2000, "encrypted": true}))),
        "iops must be between 3000 and 80000 for gp3",
    );
    assert_refused(
        &create_errors(ebs(
            json!({"type": "gp3", "iops": 90000, "encrypted": true}),
        )),
        "for gp3",
    );
    assert_refused(
        &create_errors(ebs(json!({"type": "io2", "encrypted": true}))),
        "iops is required for type io2",
    );
    assert_refused(
        &create_errors(ebs(json!({"type": "io2", "iops": 50, "encrypted": true}))),
        "between 100 and 256000 for io2",
    );
    assert_refused(
        &create_errors(ebs(
            json!({"type": "io2", "iops": 5000, "throughput": 500, "encrypted": true}),
        )),
        "throughput applies only to type gp3",
    );
    assert_refused(
        &create_errors(ebs(
            json!({"type": "gp3", "throughput": 100, "encrypted": true}),
        )),
        "throughput must be between 125 and 2000 MiB/s",
    );
    assert_refused(
        &create_errors(ebs(
            json!({"type": "gp3", "encrypted": false, "kmsKeyId": "alias/db"}),
        )),
        "kmsKeyId needs encrypted: true",
    );
    assert_eq!(
        create_errors(ebs(
            json!({"type": "gp3", "iops": 6000, "throughput": 500, "encrypted": true, "kmsKeyId": "alias/db"})
        )),
        Vec::<String>::new()
    );
    assert_eq!(
        create_errors(ebs(
            json!({"type": "io2", "iops": 20000, "encrypted": true})
        )),
        Vec::<String>::new()
    );
}

#[test]
fn semi_sync_needs_enough_replicas() {
    assert_refused(
        &create_errors(json!({"replicas": 1, "replication": {"semiSync": true}})),
        "semiSync: true needs spec.replicas >= 2",
    );
    assert_refused(
        &create_errors(
            json!({"flavor": "mysql", "replicas": 3, "replication": {"waitForReplicas": 3}}),
        ),
        "waitForReplicas must be less than spec.replicas",
    );
    // Auto semi-sync is off with one instance, so the default wait count is fine.
    assert_eq!(create_errors(json!({"replicas": 1})), Vec::<String>::new());
    assert_eq!(
        create_errors(
            json!({"flavor": "mysql", "replicas": 5, "replication": {"waitForReplicas": 2}})
        ),
        Vec::<String>::new()
    );
    assert_eq!(
        create_errors(
            json!({"flavor": "mysql", "replicas": 3, "replication": {"semiSync": false, "waitForReplicas": 3}})
        ),
        Vec::<String>::new()
    );
}

#[test]
fn mariadb_semi_sync_waits_for_exactly_one_replica() {
    assert_refused(
        &create_errors(json!({"replicas": 5, "replication": {"waitForReplicas": 2}})),
        "must be 1 for flavor mariadb",
    );
}

#[test]
fn reserved_server_settings_are_refused() {
    assert_refused(
        &create_errors(json!({"mysqlConfig": {"server_id": "7"}})),
        "spec.mysqlConfig must not set keys that ebisu manages",
    );
    assert_refused(
        &create_errors(json!({"mysqlConfig": {"read-only": "0"}})),
        "spec.mysqlConfig",
    );
    assert_eq!(
        create_errors(json!({"mysqlConfig": {"innodb_buffer_pool_size": "1G"}})),
        Vec::<String>::new()
    );
}

#[test]
fn clone_rate_limit_must_be_a_quantity() {
    assert_refused(
        &create_errors(json!({"clone": {"rateLimit": "fast"}})),
        "spec.clone.rateLimit",
    );
    assert_eq!(
        create_errors(json!({"clone": {"rateLimit": "200Mi"}})),
        Vec::<String>::new()
    );
}

#[test]
fn empty_image_is_refused() {
    assert_refused(
        &create_errors(json!({"image": ""})),
        "spec.image must not be empty",
    );
}

#[test]
fn crd_has_a_scale_subresource_on_replicas() {
    let crd = MySQLCluster::crd();
    let scale = crd.spec.versions[0]
        .subresources
        .as_ref()
        .and_then(|s| s.scale.as_ref())
        .expect("scale subresource");
    assert_eq!(scale.spec_replicas_path, ".spec.replicas");
    assert_eq!(scale.status_replicas_path, ".status.replicas");
    assert_eq!(
        scale.label_selector_path.as_deref(),
        Some(".status.selector")
    );
    assert_eq!(crd.spec.names.short_names, Some(vec!["myc".to_owned()]));
}

/// Messages of the rules that fail on create for a cluster named `name`.
fn create_errors_named(name: &str, spec: Value) -> Vec<String> {
    let mut object = cluster(spec);
    object["metadata"]["name"] = json!(name);
    messages(Validator::new().validate(&schema(), &object, None))
}

#[test]
fn names_that_cannot_name_the_children_are_refused() {
    for name in ["my.db", "My-DB", "1orders", "orders-", "or_ders"] {
        assert_refused(
            &create_errors_named(name, json!({})),
            "metadata.name must be a DNS-1035 label",
        );
    }
    let long = "a".repeat(53);
    assert_refused(
        &create_errors_named(&long, json!({})),
        "metadata.name must be at most 52 characters",
    );
    assert_eq!(
        create_errors_named(&"a".repeat(52), json!({})),
        Vec::<String>::new()
    );
    assert_eq!(
        create_errors_named("orders-eu-1", json!({})),
        Vec::<String>::new()
    );
}

#[test]
fn managed_settings_are_refused_in_every_spelling() {
    for key in [
        "loose-read-only",
        "super_read-only",
        "READ_ONLY",
        "skip-grant-tables",
        "skip_networking",
        "init-file",
        "loose_rpl_semi_sync_master_timeout",
        "sync_binlog",
        "gtid-domain-id",
    ] {
        assert_refused(
            &create_errors(json!({"mysqlConfig": {key: "1"}})),
            "spec.mysqlConfig must not set keys that ebisu manages",
        );
    }
    for key in [
        "max_connections",
        "loose-innodb-io-capacity",
        "skip-external-locking",
    ] {
        assert_eq!(
            create_errors(json!({"mysqlConfig": {key: "1"}})),
            Vec::<String>::new(),
            "{key}"
        );
    }
}

#[test]
fn a_blank_image_is_refused() {
    assert_refused(
        &create_errors(json!({"image": "   "})),
        "spec.image must not be empty or blank",
    );
    assert_eq!(
        create_errors(json!({"image": "mariadb:10.11"})),
        Vec::<String>::new()
    );
}

#[test]
fn iops_are_bounded_by_size_and_throughput_by_iops() {
    let ebs = |size: &str, ebs: Value| json!({"storage": {"size": size, "ebs": ebs}});
    assert_refused(
        &create_errors(ebs(
            "10Gi",
            json!({"type": "gp3", "iops": 16000, "encrypted": true}),
        )),
        "at most 500 per GiB",
    );
    assert_eq!(
        create_errors(ebs(
            "32Gi",
            json!({"type": "gp3", "iops": 16000, "encrypted": true})
        )),
        Vec::<String>::new()
    );
    // gp3's baseline 3000 IOPS come with any size.
    assert_eq!(
        create_errors(ebs(
            "1Gi",
            json!({"type": "gp3", "iops": 3000, "encrypted": true})
        )),
        Vec::<String>::new()
    );
    assert_refused(
        &create_errors(ebs(
            "10Gi",
            json!({"type": "io2", "iops": 20000, "encrypted": true}),
        )),
        "at most 1000 per GiB",
    );
    assert_refused(
        &create_errors(ebs(
            "100Gi",
            json!({"type": "gp3", "throughput": 1000, "encrypted": true}),
        )),
        "0.25 MiB/s per provisioned IOPS",
    );
    assert_eq!(
        create_errors(ebs(
            "100Gi",
            json!({"type": "gp3", "iops": 4000, "throughput": 1000, "encrypted": true})
        )),
        Vec::<String>::new()
    );
}

#[test]
fn pod_labels_and_annotations_in_ebisus_keys_are_refused() {
    assert_refused(
        &create_errors(json!({"podTemplate": {"labels": {"ebisu.dev/role": "primary"}}})),
        "spec.podTemplate.labels must not use ebisu.dev/ keys",
    );
    assert_refused(
        &create_errors(json!({"podTemplate": {"annotations": {"ebisu.dev/x": "y"}}})),
        "spec.podTemplate.annotations must not use ebisu.dev/ keys",
    );
    assert_eq!(
        create_errors(json!({"podTemplate": {"labels": {"team": "payments"}}})),
        Vec::<String>::new()
    );
}

#[test]
fn given_volumes_must_be_distinct_ebs_volume_ids() {
    let ebs = |volumes: Value| json!({"storage": {"size": "20Gi", "ebs": {"type": "gp3", "encrypted": true, "volumes": volumes}}});
    assert_eq!(
        create_errors(ebs(json!(["vol-0123456789abcdef0", "vol-0a1b2c3d"]))),
        Vec::<String>::new()
    );
    assert_refused(
        &create_errors(ebs(json!(["volume-1"]))),
        "spec.storage.ebs.volumes must be EBS volume ids",
    );
    assert_refused(
        &create_errors(ebs(json!(["vol-0a1b2c3d", "vol-0a1b2c3d"]))),
        "names a volume twice",
    );
}

#[test]
fn the_application_database_is_named_safely_and_fixed_at_creation() {
    let db = json!({"database": {"name": "shop_db", "owner": "shop"}});
    assert_eq!(create_errors(db.clone()), Vec::<String>::new());
    assert_refused(
        &create_errors(json!({"database": {"name": "shop-db", "owner": "shop"}})),
        "spec.database.name must be 1 to 64 letters",
    );
    assert_refused(
        &create_errors(json!({"database": {"name": "shop", "owner": "x'; DROP"}})),
        "spec.database.owner must be 1 to 32 letters",
    );
    for owner in ["root", "ebisu_repl", "ebisu_operator"] {
        assert_refused(
            &create_errors(json!({"database": {"name": "shop", "owner": owner}})),
            "spec.database.owner must not be root, ebisu_operator",
        );
    }
    assert_refused(
        &create_errors(
            json!({"database": {"name": "shop", "owner": "shop"}, "bootstrap": {"fromBackup": {"name": "monday"}}}),
        ),
        "spec.database cannot be set with spec.bootstrap",
    );
    assert_refused(
        &update_errors(json!({}), db.clone()),
        "spec.database cannot be added or removed",
    );
    assert_refused(
        &update_errors(db.clone(), json!({"database": null})),
        "spec.database cannot be added or removed",
    );
    assert_refused(
        &update_errors(
            db.clone(),
            json!({"database": {"name": "other", "owner": "shop"}}),
        ),
        "spec.database is immutable",
    );
    assert_eq!(
        update_errors(
            db.clone(),
            json!({"replicas": 5, "database": {"name": "shop_db", "owner": "shop"}})
        ),
        Vec::<String>::new()
    );
}
