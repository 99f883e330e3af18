//! The `MySQLCluster` custom resource: its spec, with defaults and CEL rules in
//! the schema so that the API server refuses what the operator cannot honour,
//! and its status.

mod pod;
mod replication;
mod status;
mod storage;

use std::collections::BTreeMap;

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use pod::{PodTemplateOverrides, ServiceTemplate, ServiceTemplates, ServiceType};
pub use replication::{CloneSpec, DonorPreference, FailoverMode, ReplicationSpec};
pub use status::{
    ClusteringMemory, InstanceRole, InstanceStatus, MySQLClusterStatus, Operation, OperationKind,
    OperationStep, Phase, RoleChange,
};
pub use storage::{
    EbsSpec, EbsVolumeType, GP3_IOPS, GP3_MAX_IOPS_PER_GIB, GP3_THROUGHPUT_MIBPS, IO2_IOPS,
    IO2_MAX_IOPS_PER_GIB, StorageSpec,
};

/// The most instances a cluster may have. Server ids are `serverIdBase + ordinal`,
/// so this also bounds the server-id range a cluster uses.
pub const MAX_REPLICAS: i32 = 9;

/// The highest server id MySQL and MariaDB accept (`server_id` is an unsigned 32-bit value;
/// 0 disables replication).
pub const MAX_SERVER_ID: i64 = 4_294_967_295;

/// my.cnf keys the operator and sidecar manage themselves; a user setting one in
/// `spec.mysqlConfig` would break replication or fencing, so the schema refuses them.
pub const RESERVED_MYSQL_CONFIG_KEYS: &[&str] = &[
    "server_id",
    "server-id",
    "datadir",
    "port",
    "socket",
    "bind_address",
    "bind-address",
    "log_bin",
    "log-bin",
    "read_only",
    "read-only",
    "super_read_only",
    "super-read-only",
    "gtid_mode",
    "gtid-mode",
    "enforce_gtid_consistency",
    "enforce-gtid-consistency",
    "gtid_strict_mode",
    "gtid-strict-mode",
    "log_slave_updates",
    "log-slave-updates",
    "log_replica_updates",
    "log-replica-updates",
    "report_host",
    "report-host",
    "relay_log",
    "relay-log",
];

/// A replicated MySQL or MariaDB cluster: one writable primary and up to eight
/// read-only replicas, each on its own EBS volume.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
// Each printcolumn repeats `type_`; the lint mistakes that for a duplicate attribute.
#[allow(clippy::duplicated_attributes)]
#[kube(
    group = "ebisu.dev",
    version = "v1alpha1",
    kind = "MySQLCluster",
    plural = "mysqlclusters",
    singular = "mysqlcluster",
    shortname = "myc",
    namespaced,
    status = "MySQLClusterStatus",
    derive = "PartialEq",
    scale(
        spec_replicas_path = ".spec.replicas",
        status_replicas_path = ".status.replicas",
        label_selector_path = ".status.selector"
    ),
    printcolumn(
        name = "Primary",
        type_ = "string",
        description = "Pod that currently takes writes",
        json_path = ".status.currentPrimary"
    ),
    printcolumn(
        name = "Ready",
        type_ = "integer",
        description = "Instances serving queries",
        json_path = ".status.readyReplicas"
    ),
    printcolumn(
        name = "Replicas",
        type_ = "integer",
        description = "Desired instances",
        json_path = ".spec.replicas"
    ),
    printcolumn(
        name = "Phase",
        type_ = "string",
        description = "Lifecycle phase",
        json_path = ".status.phase"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("!has(self.replication) || !has(self.replication.semiSync) || !self.replication.semiSync || self.replicas >= 2")
        .message("spec.replication.semiSync: true needs spec.replicas >= 2 (a semi-sync primary waits for a replica's acknowledgement): add replicas or leave semiSync unset"),
    validation = Rule::new("!has(self.replication) || !has(self.replication.waitForReplicas) || !(has(self.replication.semiSync) ? self.replication.semiSync : self.replicas >= 2) || self.replication.waitForReplicas < self.replicas")
        .message("spec.replication.waitForReplicas must be less than spec.replicas while semi-sync is on: lower waitForReplicas or add replicas"),
    validation = Rule::new("!has(self.replication) || !has(self.replication.waitForReplicas) || !has(self.flavor) || self.flavor != 'mariadb' || self.replication.waitForReplicas == 1")
        .message("spec.replication.waitForReplicas must be 1 for flavor mariadb (MariaDB semi-sync waits for exactly one replica)"),
)]
pub struct MySQLClusterSpec {
    /// Number of MySQL instances (1 to 9): one primary, the rest read-only
    /// replicas. `kubectl scale mysqlcluster/NAME --replicas=N` changes it.
    /// Scaling down keeps the removed instances' volumes.
    #[serde(default = "default_replicas")]
    #[x_kube(validation = Rule::new("self >= 1 && self <= 9")
        .message("spec.replicas must be between 1 and 9: set it to the number of instances you want (one primary plus up to eight replicas)"))]
    pub replicas: i32,

    /// Database server family: `mariadb` (10.6 or later) or `mysql` (8.0.23 or
    /// later, 8.4 LTS recommended). Immutable: data directories are not
    /// convertible between flavors.
    #[serde(default)]
    #[x_kube(validation = Rule::new("self == oldSelf")
        .message("spec.flavor is immutable: create a new MySQLCluster to change flavor (data directories are not convertible)"))]
    pub flavor: Flavor,

    /// Server image. Defaults to `mariadb:10.11` for `mariadb` and `mysql:8.4`
    /// for `mysql`. It must provide the server and its physical backup tool
    /// (`mariadb-backup`, or `xtrabackup` for MySQL).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self != ''")
        .message("spec.image must not be empty: remove it to use the flavor's default image"))]
    pub image: Option<String>,

    /// First server id: instance N gets `serverIdBase + N`. Choose distinct
    /// bases for clusters that replicate into each other. Immutable, between 1
    /// and 4294967286 so that the ninth instance still has a valid id.
    #[serde(default = "default_server_id_base")]
    #[x_kube(
        validation = Rule::new("self >= 1 && self <= 4294967286")
            .message("spec.serverIdBase must be between 1 and 4294967286 so that serverIdBase + 9 stays within MySQL's server_id range (1..4294967295)"),
        validation = Rule::new("self == oldSelf")
            .message("spec.serverIdBase is immutable: server ids are recorded in every binary log; create a new cluster to change it")
    )]
    pub server_id_base: i64,

    /// Where each instance keeps its data: one volume per instance.
    pub storage: StorageSpec,

    /// How replicas follow the primary and when a replica may be promoted.
    #[serde(default)]
    pub replication: ReplicationSpec,

    /// How a new replica is seeded from a peer.
    #[serde(default)]
    pub clone: CloneSpec,

    /// Overrides for the instance pods: resources, placement and metadata.
    #[serde(default)]
    pub pod_template: PodTemplateOverrides,

    /// Extra server settings, written to the `[mysqld]` section of my.cnf as
    /// `key = value`, at most 128 of them. Settings ebisu manages itself
    /// (server_id, log_bin, read_only, GTID settings, ports, paths) are refused.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    // Bounded so the API server's CEL cost estimate for the rule stays in budget.
    #[x_kube(validation = reserved_config_keys_rule())]
    #[schemars(extend("maxProperties" = 128))]
    pub mysql_config: BTreeMap<String, String>,

    /// Settings for the `<name>-primary` and `<name>-read` Services.
    #[serde(default)]
    pub services: ServiceTemplates,
}

/// The server family a cluster runs.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Flavor {
    /// MariaDB 10.6 or later: `mariadbd`, `mariadb-backup`, domain-server-seq GTIDs.
    #[default]
    Mariadb,
    /// MySQL 8.0.23 or later: `mysqld`, `xtrabackup`, UUID GTID sets.
    Mysql,
}

impl Flavor {
    /// The image used when `spec.image` is not set.
    pub fn default_image(self) -> &'static str {
        match self {
            Flavor::Mariadb => "mariadb:10.11",
            Flavor::Mysql => "mysql:8.4",
        }
    }

    /// The server executable started in the mysqld container.
    pub fn server_command(self) -> &'static str {
        match self {
            Flavor::Mariadb => "mariadbd",
            Flavor::Mysql => "mysqld",
        }
    }

    /// The lowercase name used in the resource and in labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Flavor::Mariadb => "mariadb",
            Flavor::Mysql => "mysql",
        }
    }
}

impl std::fmt::Display for Flavor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The CEL rule refusing [`RESERVED_MYSQL_CONFIG_KEYS`] in `spec.mysqlConfig`, built from
/// the constant so the schema and the operator's own checks cannot drift apart.
fn reserved_config_keys_rule() -> kube::core::Rule {
    let keys: Vec<String> = RESERVED_MYSQL_CONFIG_KEYS
        .iter()
        .map(|k| format!("'{k}'"))
        .collect();
    kube::core::Rule::new(format!("self.all(k, !(k in [{}]))", keys.join(", "))).message(
        "spec.mysqlConfig must not set keys that ebisu manages (server_id, datadir, port, \
         socket, bind_address, log_bin, read_only, super_read_only, GTID settings, \
         log_slave_updates, report_host, relay_log): remove them",
    )
}

fn default_replicas() -> i32 {
    3
}

fn default_server_id_base() -> i64 {
    100
}

impl MySQLClusterSpec {
    /// The image the instances run: `spec.image`, else the flavor's default.
    pub fn effective_image(&self) -> &str {
        self.image.as_deref().unwrap_or(self.flavor.default_image())
    }

    /// Whether semi-synchronous replication is on: `spec.replication.semiSync`
    /// when set, otherwise on whenever there is a replica to acknowledge.
    pub fn semi_sync_enabled(&self) -> bool {
        self.replication.semi_sync.unwrap_or(self.replicas >= 2)
    }
}
