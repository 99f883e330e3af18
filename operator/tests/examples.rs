//! Every manifest in `examples/` is one a user can apply as it is: it matches
//! the generated CRD's schema (no unknown or misspelt fields), passes its CEL
//! rules, and passes the operator's own validation.

#![allow(clippy::expect_used, clippy::unwrap_used)] // test helpers fail loudly by design

use std::path::PathBuf;

use ebisu_api::MySQLCluster;
use ebisu_operator::validate::{OperatorSettings, validate};
use serde_json::Value;

fn examples() -> Vec<(String, Value)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let mut found: Vec<_> = std::fs::read_dir(&dir)
        .expect("examples/ exists")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    found.sort();
    found
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).expect("readable");
            let value: Value = serde_yaml::from_str(&text).expect("valid YAML");
            (
                path.file_name().unwrap().to_string_lossy().into_owned(),
                value,
            )
        })
        // The quick start's client Pod sits beside the clusters.
        .filter(|(_, value)| value["kind"] == "MySQLCluster")
        .collect()
}

/// The CRD's openAPIV3Schema, read from the committed YAML (what users install).
fn committed_schema() -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(ebisu_operator::crd::CRD_PATH);
    let crd: Value =
        serde_yaml::from_str(&std::fs::read_to_string(path).expect("CRD")).expect("CRD YAML");
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone()
}

/// The API server silently prunes unknown fields; a user would lose a
/// misspelt setting without a word. Make the schema strict so the test sees it.
fn forbid_unknown_fields(schema: &mut Value) {
    if let Value::Object(map) = schema {
        let preserves = map.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true));
        if map.contains_key("properties") && !map.contains_key("additionalProperties") && !preserves
        {
            map.insert("additionalProperties".to_owned(), Value::Bool(false));
        }
        for value in map.values_mut() {
            forbid_unknown_fields(value);
        }
    } else if let Value::Array(items) = schema {
        items.iter_mut().for_each(forbid_unknown_fields);
    }
}

/// The schema with unknown fields forbidden below the root (the API server
/// itself accepts apiVersion, kind and metadata there).
fn strict_validator() -> jsonschema::Validator {
    let mut schema = committed_schema();
    forbid_unknown_fields(&mut schema["properties"]["spec"]);
    jsonschema::validator_for(&schema).expect("schema compiles")
}

#[test]
fn there_are_the_documented_examples() {
    let names: Vec<String> = examples().into_iter().map(|(n, _)| n).collect();
    for expected in [
        "basic.yaml",
        "mariadb.yaml",
        "mysql.yaml",
        "production.yaml",
        "quickstart.yaml",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "examples/{expected} is missing"
        );
    }
}

#[test]
fn examples_match_the_crd_schema() {
    let validator = strict_validator();
    for (name, example) in examples() {
        let errors: Vec<String> = validator
            .iter_errors(&example)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        assert!(errors.is_empty(), "{name}: {errors:#?}");
    }
}

#[test]
fn strict_schema_catches_a_misspelt_field() {
    let validator = strict_validator();
    let (_, mut example) = examples()
        .into_iter()
        .find(|(n, _)| n == "basic.yaml")
        .expect("basic");
    example["spec"]["replica"] = Value::from(3);
    assert!(!validator.is_valid(&example));
}

#[test]
fn examples_pass_the_cel_rules() {
    let schema = committed_schema();
    for (name, example) in examples() {
        let result = kube_cel::Validator::new().validate(&schema, &example, None);
        assert!(result.is_ok(), "{name}: {result:?}");
    }
}

#[test]
fn examples_pass_the_operator_validation() {
    let settings = OperatorSettings {
        sidecar_image: "sidecar:test".to_owned(),
        operator_namespace: "ebisu-system".to_owned(),
        // The examples run on a default install.
        features: ebisu_operator::rbac::Features::default(),
        ebs_driver: ebisu_operator::model::EbsDriver::AddOn,
        eks_cluster_name: None,
    };
    for (name, example) in examples() {
        let mut cluster: MySQLCluster = serde_json::from_value(example).expect("deserialises");
        cluster.metadata.namespace = Some("default".to_owned());
        cluster.metadata.uid = Some("u-1".to_owned());
        if let Err(e) = validate(&cluster, &settings) {
            panic!("{name}: {e}");
        }
    }
}
