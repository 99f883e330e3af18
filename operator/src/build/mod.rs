//! Build: pure functions from a `ValidatedCluster` to the Kubernetes objects
//! the operator applies, one file per kind (and `given_volume` for the PV
//! and claim of a volume given in `spec.storage.ebs.volumes`). Builders
//! never see a client, the clock or the raw resource; everything they need
//! is in `ValidatedCluster`.

pub mod agent_access;
pub mod app_secret;
pub mod config_map;
pub mod given_volume;
pub mod lease;
pub mod network_policy;
pub mod pod_disruption_budget;
pub mod secret;
pub mod services;
pub mod stateful_set;
pub mod storage_class;

use k8s_openapi::{
    api::{
        apps::v1::StatefulSet,
        coordination::v1::Lease,
        core::v1::{ConfigMap, Service, ServiceAccount},
        networking::v1::NetworkPolicy,
        policy::v1::PodDisruptionBudget,
        rbac::v1::{Role, RoleBinding},
        storage::v1::StorageClass,
    },
    apimachinery::pkg::apis::meta::v1::ObjectMeta,
};

use crate::validate::ValidatedCluster;

/// Everything the operator server-side-applies for a cluster (the credentials
/// Secret is built separately because it depends on what already exists).
#[derive(Clone, Debug)]
pub struct Children {
    /// The managed StorageClass, when `spec.storage.ebs` is set.
    pub storage_class: Option<StorageClass>,
    /// my.cnf parts.
    pub config_map: ConfigMap,
    /// Per-pod DNS.
    pub headless_service: Service,
    /// Writes.
    pub primary_service: Service,
    /// Reads.
    pub read_service: Service,
    /// Who may reach the instance pods.
    pub network_policy: NetworkPolicy,
    /// At most one instance down.
    pub pod_disruption_budget: PodDisruptionBudget,
    /// The primary's eviction held until it moved (two or more instances).
    pub primary_pod_disruption_budget: Option<PodDisruptionBudget>,
    /// The Lease naming the primary pod.
    pub primary_lease: Lease,
    /// The agents' ServiceAccount.
    pub agent_service_account: ServiceAccount,
    /// What the agents may do: read and renew the primary Lease.
    pub agent_role: Role,
    /// The Role, granted to the agents' ServiceAccount.
    pub agent_role_binding: RoleBinding,
    /// The instances.
    pub stateful_set: StatefulSet,
}

/// Builds every child of `cluster`; `holds_data`: it has had a primary.
pub fn children(cluster: &ValidatedCluster, holds_data: bool) -> Children {
    Children {
        storage_class: storage_class::build(cluster),
        config_map: config_map::build(cluster, holds_data),
        headless_service: services::headless(cluster),
        primary_service: services::primary(cluster),
        read_service: services::read(cluster),
        network_policy: network_policy::build(cluster),
        pod_disruption_budget: pod_disruption_budget::build(cluster),
        primary_pod_disruption_budget: pod_disruption_budget::primary(cluster),
        primary_lease: lease::build(cluster),
        agent_service_account: agent_access::service_account(cluster),
        agent_role: agent_access::role(cluster),
        agent_role_binding: agent_access::role_binding(cluster),
        stateful_set: stateful_set::build(cluster),
    }
}

/// Metadata of a namespaced child: name, namespace, labels, owner reference.
pub(crate) fn child_meta(cluster: &ValidatedCluster, name: String) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: Some(cluster.namespace.clone()),
        labels: Some(cluster.labels()),
        owner_references: Some(vec![cluster.owner.clone()]),
        ..ObjectMeta::default()
    }
}

#[cfg(test)]
pub(crate) mod fixtures {
    //! Clusters for builder tests, from the YAML fixtures, through real validation.

    use ebisu_api::MySQLCluster;

    use crate::validate::{OperatorSettings, ValidatedCluster, validate};

    /// Parses a fixture, gives it the metadata the API server would, and validates it.
    pub fn validated(yaml: &str) -> ValidatedCluster {
        let mut cluster: MySQLCluster = serde_yaml::from_str(yaml).expect("fixture parses");
        cluster
            .metadata
            .namespace
            .get_or_insert_with(|| "shop".to_owned());
        cluster.metadata.uid = Some("1b2c3d4e-0000-4000-8000-000000000001".to_owned());
        validate(&cluster, &settings()).expect("fixture is valid")
    }

    /// Operator settings the tests use.
    pub fn settings() -> OperatorSettings {
        OperatorSettings {
            sidecar_image: "ghcr.io/ebisu/sidecar:test".to_owned(),
            operator_namespace: "ebisu-system".to_owned(),
            features: crate::rbac::Features {
                given_volumes: true,
                fence_nodes: true,
            },
            ebs_driver: crate::model::EbsDriver::AddOn,
            eks_cluster_name: None,
        }
    }

    /// `tests/fixtures/basic.yaml`: three MariaDB instances on an operator-managed gp3 class.
    pub const BASIC: &str = include_str!("../../tests/fixtures/basic.yaml");
    /// `tests/fixtures/mysql-production.yaml`: MySQL with a named class and overrides.
    pub const MYSQL_PRODUCTION: &str = include_str!("../../tests/fixtures/mysql-production.yaml");
    /// `tests/fixtures/single.yaml`: one MariaDB instance on the default class.
    pub const SINGLE: &str = include_str!("../../tests/fixtures/single.yaml");
}
