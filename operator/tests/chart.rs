//! The Helm chart: `helm lint` passes, `helm template` renders the operator
//! Deployment with probes and the configured images, and its ClusterRole and
//! Role grant exactly what the operator uses (`ebisu_operator::rbac`).
//! helm is the pinned one from tests/build-controlplane.sh.

#![allow(clippy::expect_used, clippy::unwrap_used)] // test helpers fail loudly by design

use std::{collections::BTreeSet, path::PathBuf, process::Command};

use ebisu_operator::rbac::Features;
use serde::Deserialize;
use serde_yaml::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn helm() -> PathBuf {
    let dir = std::env::var("EBISU_CONTROLPLANE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            let out = Command::new("bash")
                .arg(root().join("tests/build-controlplane.sh"))
                .output()
                .expect("build script runs");
            assert!(
                out.status.success(),
                "tests/build-controlplane.sh failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            PathBuf::from(String::from_utf8_lossy(&out.stdout).trim().to_owned())
        });
    let helm = dir.join("helm");
    assert!(
        helm.exists(),
        "{} is missing: run tests/build-controlplane.sh",
        helm.display()
    );
    helm
}

fn template(extra: &[&str]) -> Vec<Value> {
    let out = Command::new(helm())
        .args(["template", "ebisu", "--namespace", "ebisu-system"])
        .arg(root().join("charts/ebisu"))
        .args(extra)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "helm template failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    serde_yaml::Deserializer::from_str(&text)
        .map(|doc| Value::deserialize(doc).unwrap())
        .filter(|v| !v.is_null())
        .collect()
}

fn kind<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} rendered"))
}

#[test]
fn chart_lints() {
    let out = Command::new(helm())
        .arg("lint")
        .arg(root().join("charts/ebisu"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "helm lint failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// (group, resource, verb, object name or "" for every object).
type Grant = (String, String, String, String);

/// Every grant a Role or ClusterRole makes.
fn granted(role: &Value) -> BTreeSet<Grant> {
    let mut granted = BTreeSet::new();
    for rule in role["rules"].as_sequence().unwrap() {
        let names: Vec<String> = rule["resourceNames"]
            .as_sequence()
            .map(|n| n.iter().map(|v| v.as_str().unwrap().to_owned()).collect())
            .unwrap_or_else(|| vec![String::new()]);
        for group in rule["apiGroups"].as_sequence().unwrap() {
            for resource in rule["resources"].as_sequence().unwrap() {
                for verb in rule["verbs"].as_sequence().unwrap() {
                    for name in &names {
                        granted.insert((
                            group.as_str().unwrap().to_owned(),
                            resource.as_str().unwrap().to_owned(),
                            verb.as_str().unwrap().to_owned(),
                            name.clone(),
                        ));
                    }
                }
            }
        }
    }
    granted
}

fn used(rules: &[ebisu_operator::rbac::Rule]) -> BTreeSet<Grant> {
    rules
        .iter()
        .flat_map(|r| {
            let names: Vec<&str> = if r.names.is_empty() {
                vec![""]
            } else {
                r.names.to_vec()
            };
            r.verbs.iter().flat_map(move |v| {
                names.clone().into_iter().map(move |n| {
                    (
                        r.group.to_owned(),
                        r.resource.to_owned(),
                        (*v).to_owned(),
                        n.to_owned(),
                    )
                })
            })
        })
        .collect()
}

#[track_caller]
fn assert_exactly(kind: &str, granted: &BTreeSet<Grant>, used: &BTreeSet<Grant>) {
    let extra: Vec<_> = granted.difference(used).collect();
    let missing: Vec<_> = used.difference(granted).collect();
    assert!(
        extra.is_empty() && missing.is_empty(),
        "the {kind} grants more {extra:?} / less {missing:?} than the operator uses"
    );
    assert!(
        !granted.iter().any(|(_, _, v, _)| v == "*"),
        "no wildcard verbs"
    );
}

fn all(docs: &[Value], kind: &str) -> Vec<Value> {
    docs.iter().filter(|d| d["kind"] == kind).cloned().collect()
}

#[test]
fn cluster_role_grants_exactly_what_the_operator_uses() {
    let docs = template(&[]);
    let default_role = granted(kind(&docs, "ClusterRole"));
    assert_exactly(
        "ClusterRole",
        &default_role,
        &used(&ebisu_operator::rbac::all_namespaces(Features::default())),
    );
    assert!(
        !default_role
            .iter()
            .any(|(_, r, v, _)| (r == "persistentvolumes" && v == "create")
                || (r == "nodes" && v == "patch")),
        "a default install can neither create volumes nor patch nodes"
    );
    for (set, features) in [
        (
            "features.givenVolumes=true",
            Features {
                given_volumes: true,
                fence_nodes: false,
            },
        ),
        (
            "features.fenceNodes=true",
            Features {
                given_volumes: false,
                fence_nodes: true,
            },
        ),
    ] {
        let docs = template(&["--set", set]);
        assert_exactly(
            "ClusterRole",
            &granted(kind(&docs, "ClusterRole")),
            &used(&ebisu_operator::rbac::all_namespaces(features)),
        );
        let env = &kind(&docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["env"];
        let flag = if features.given_volumes {
            "EBISU_GIVEN_VOLUMES"
        } else {
            "EBISU_FENCE_NODES"
        };
        assert!(
            env.as_sequence()
                .unwrap()
                .iter()
                .any(|e| e["name"] == flag && e["value"] == "true"),
            "{set} tells the operator: {env:?}"
        );
    }
    let binding = kind(&docs, "ClusterRoleBinding");
    assert_eq!(
        binding["subjects"][0]["name"],
        kind(&docs, "ServiceAccount")["metadata"]["name"]
    );
}

#[test]
fn with_watch_namespaces_secrets_are_readable_only_in_those_namespaces() {
    let docs = template(&["--set", "watchNamespaces={shop,billing}"]);
    let cluster_role = granted(kind(&docs, "ClusterRole"));
    assert_exactly(
        "ClusterRole",
        &cluster_role,
        &used(&ebisu_operator::rbac::cluster_rules(Features::default())),
    );
    assert!(!cluster_role.iter().any(|(_, r, _, _)| r == "secrets"));
    let workload: Vec<Value> = all(&docs, "Role")
        .into_iter()
        .filter(|r| {
            r["metadata"]["name"]
                .as_str()
                .unwrap()
                .ends_with("-workload")
        })
        .collect();
    let namespaces: Vec<&str> = workload
        .iter()
        .map(|r| r["metadata"]["namespace"].as_str().unwrap())
        .collect();
    assert_eq!(namespaces, ["shop", "billing"]);
    for role in &workload {
        assert_exactly(
            "Role",
            &granted(role),
            &used(ebisu_operator::rbac::WORKLOAD_RULES),
        );
    }
    assert_eq!(
        all(&docs, "RoleBinding").len(),
        3,
        "two workload bindings and the Lease's"
    );
    let env = kind(&docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_sequence()
        .unwrap()
        .clone();
    assert!(
        env.iter()
            .any(|e| e["name"] == "EBISU_WATCH_NAMESPACES" && e["value"] == "shop,billing")
    );
}

#[test]
fn role_grants_the_leader_lease_in_the_release_namespace_only() {
    let docs = template(&[]);
    let role = all(&docs, "Role")
        .into_iter()
        .find(|r| {
            !r["metadata"]["name"]
                .as_str()
                .unwrap()
                .ends_with("-workload")
        })
        .unwrap();
    assert_eq!(role["metadata"]["namespace"], "ebisu-system");
    assert_exactly(
        "Role",
        &granted(&role),
        &used(ebisu_operator::rbac::LEASE_RULES),
    );
    assert!(
        granted(&role)
            .iter()
            .all(|(_, _, verb, name)| verb == "create" || name == "ebisu-operator"),
        "reading and renewing are limited to the one Lease"
    );
    let binding = kind(&docs, "RoleBinding");
    assert_eq!(binding["roleRef"]["kind"], "Role");
    assert_eq!(binding["metadata"]["namespace"], "ebisu-system");
    assert_eq!(
        binding["subjects"][0]["name"],
        kind(&docs, "ServiceAccount")["metadata"]["name"]
    );
}

#[test]
fn deployment_runs_the_configured_images_with_probes() {
    let docs = template(&["--set", "image.sidecar.tag=test", "--set", "logLevel=debug"]);
    let deployment = kind(&docs, "Deployment");
    let pod = &deployment["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    assert_eq!(container["image"], "ghcr.io/ebisu-dev/ebisu-operator:0.1.0");
    let env = container["env"].as_sequence().unwrap();
    let value = |name: &str| {
        env.iter()
            .find(|e| e["name"] == name)
            .map(|e| e["value"].clone())
    };
    assert_eq!(
        value("EBISU_SIDECAR_IMAGE"),
        Some(Value::from("ghcr.io/ebisu-dev/ebisu-sidecar:test"))
    );
    assert_eq!(value("RUST_LOG"), Some(Value::from("debug")));
    let namespace = env.iter().find(|e| e["name"] == "POD_NAMESPACE").unwrap();
    assert_eq!(
        namespace["valueFrom"]["fieldRef"]["fieldPath"], "metadata.namespace",
        "the leader Lease lives in the operator's namespace"
    );
    assert_eq!(deployment["spec"]["replicas"], 2, "a standby by default");
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(
        container["securityContext"]["allowPrivilegeEscalation"],
        false
    );
    assert!(container["resources"]["limits"]["memory"].is_string());
}

#[test]
fn crds_render_with_a_switch_and_outlive_the_release() {
    let docs = template(&[]);
    let crds = all(&docs, "CustomResourceDefinition");
    let mut names: Vec<&str> = crds
        .iter()
        .map(|c| c["metadata"]["name"].as_str().unwrap())
        .collect();
    names.sort_unstable();
    assert_eq!(names, ["mysqlbackups.ebisu.dev", "mysqlclusters.ebisu.dev"]);
    for crd in &crds {
        assert_eq!(
            crd["metadata"]["annotations"]["helm.sh/resource-policy"], "keep",
            "uninstall keeps {:?} and every object of it",
            crd["metadata"]["name"]
        );
    }
    assert!(
        all(
            &template(&["--set", "crds.enabled=false"]),
            "CustomResourceDefinition"
        )
        .is_empty(),
        "crds.enabled=false leaves them to the user"
    );
}

#[test]
fn a_standby_gets_a_disruption_budget_a_single_operator_none() {
    let docs = template(&[]);
    let budget = kind(&docs, "PodDisruptionBudget");
    assert_eq!(budget["spec"]["maxUnavailable"], 1);
    assert_eq!(
        budget["spec"]["selector"]["matchLabels"],
        kind(&docs, "Deployment")["spec"]["selector"]["matchLabels"]
    );
    assert!(
        all(
            &template(&["--set", "replicaCount=1"]),
            "PodDisruptionBudget"
        )
        .is_empty()
    );
    assert!(
        all(
            &template(&["--set", "podDisruptionBudget.enabled=false"]),
            "PodDisruptionBudget"
        )
        .is_empty()
    );
}

#[test]
fn names_are_overridable_and_images_pinnable_by_digest() {
    let digest = format!("sha256:{}", "a".repeat(64));
    let docs = template(&[
        "--set",
        "fullnameOverride=db-operator",
        "--set",
        "nameOverride=db",
        "--set",
        &format!("image.operator.digest={digest}"),
    ]);
    let deployment = kind(&docs, "Deployment");
    assert_eq!(deployment["metadata"]["name"], "db-operator");
    assert_eq!(
        deployment["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"],
        "db"
    );
    assert_eq!(
        kind(&docs, "ServiceAccount")["metadata"]["name"],
        "db-operator"
    );
    assert_eq!(
        deployment["spec"]["template"]["spec"]["containers"][0]["image"],
        format!("ghcr.io/ebisu-dev/ebisu-operator@{digest}").as_str()
    );
}

#[test]
fn values_outside_the_schema_are_refused_naming_the_value() {
    for (setting, named) in [
        ("replicaCount=0", "replicaCount"),
        ("features.givenVolume=true", "givenVolume"),
        ("image.operator.digest=latest", "digest"),
        (
            "storage.ebsProvisioner=ebs.csi.example.com",
            "ebsProvisioner",
        ),
    ] {
        let out = Command::new(helm())
            .args(["template", "ebisu", "--set", setting])
            .arg(root().join("charts/ebisu"))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{setting} was accepted");
        assert!(stderr.contains(named), "{setting}: {stderr}");
    }
}

#[test]
fn the_ebs_driver_and_the_eks_cluster_reach_the_operator_only_when_set() {
    let env = |docs: &[Value]| -> Vec<(String, String)> {
        kind(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["env"]
            .as_sequence()
            .unwrap()
            .iter()
            .filter_map(|e| {
                Some((
                    e["name"].as_str()?.to_owned(),
                    e["value"].as_str()?.to_owned(),
                ))
            })
            .collect()
    };
    let default = env(&template(&[]));
    assert!(
        default
            .iter()
            .all(|(k, _)| k != "EBISU_EBS_PROVISIONER" && k != "EBISU_EKS_CLUSTER_NAME"),
        "detected by default: {default:?}"
    );
    let set = env(&template(&[
        "--set",
        "storage.ebsProvisioner=ebs.csi.eks.amazonaws.com",
        "--set",
        "aws.eksClusterName=prod",
    ]));
    assert!(set.contains(&(
        "EBISU_EBS_PROVISIONER".to_owned(),
        "ebs.csi.eks.amazonaws.com".to_owned()
    )));
    assert!(set.contains(&("EBISU_EKS_CLUSTER_NAME".to_owned(), "prod".to_owned())));
}

#[test]
fn chart_ships_the_generated_crds() {
    for (name, yaml) in ebisu_operator::crd::crd_files().unwrap() {
        let chart_crd =
            std::fs::read_to_string(root().join("charts/ebisu/files/crds").join(name)).unwrap();
        assert_eq!(chart_crd, yaml);
    }
}
