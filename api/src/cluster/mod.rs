//! The `MySQLCluster` custom resource: its spec, with defaults and CEL rules in
//! the schema so that the API server refuses what the operator cannot honour,
//! and its status.

pub mod config_keys;
mod database;
mod pod;
mod replication;
mod status;
mod storage;

use std::collections::BTreeMap;

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use database::{DatabaseSpec, RESERVED_OWNERS};
pub use pod::{PodTemplateOverrides, ServiceTemplate, ServiceTemplates, ServiceType};
pub use replication::{CloneMethod, CloneSpec, DonorPreference, FailoverMode, ReplicationSpec};
pub use status::{
    ArchiveStatus, ClusteringMemory, InstanceRole, InstanceStatus, MySQLClusterStatus, Operation,
    OperationKind, OperationStep, Phase, ReplayStatus, RestoreStatus, RoleChange, SeedMethod,
    SeedStatus, VerifiedRestore, VolumeInitializationStatus, VolumeModificationStatus,
    VolumeStatus,
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

/// The longest cluster name: `<name>-primary` must be a DNS-1035 label
/// (63 characters), and the StatefulSet's revision label
/// (`<name>-<hash of up to 10 characters>`) a label value (63).
pub const MAX_NAME_LEN: usize = 52;

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
        name = "Updated",
        type_ = "integer",
        description = "Instances running the current spec",
        json_path = ".status.updatedReplicas"
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
#[kube(
    validation = Rule::new("self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')")
        .message("metadata.name must be a DNS-1035 label (lowercase letters, digits and '-', starting with a letter and ending with a letter or digit, no dots): the Services and pods ebisu creates are named after it; choose such a name"),
    validation = name_length_rule(),
)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("has(self.bootstrap) == has(oldSelf.bootstrap)")
        .message("spec.bootstrap cannot be added or removed: it says where a new cluster's data came from; create a new cluster to restore a backup"),
    validation = Rule::new("has(self.database) == has(oldSelf.database)")
        .message("spec.database cannot be added or removed: the database and its owner are made when the cluster's first server initialises; create them yourself on an existing cluster"),
    validation = Rule::new("!has(self.database) || !has(self.bootstrap)")
        .message("spec.database cannot be set with spec.bootstrap: a restored cluster has the backup's databases and accounts; remove spec.database"),
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
    #[x_kube(validation = Rule::new("self.matches('\\\\S')")
        .message("spec.image must not be empty or blank: remove it to use the flavor's default image"))]
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

    /// How long the servers keep their binary logs.
    #[serde(default)]
    pub binary_logs: BinaryLogsSpec,

    /// Where a new cluster's data comes from; empty servers when unset.
    /// Immutable: it says how the cluster was made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self == oldSelf")
        .message("spec.bootstrap is immutable: it says where the cluster's data came from; create a new cluster to restore another backup"))]
    pub bootstrap: Option<BootstrapSpec>,

    /// The application's database and owner account, made when the
    /// cluster's first server initialises; the `<name>-app` Secret holds
    /// host, port, user, password, database and URIs for the primary and
    /// read Services. Immutable; not with `bootstrap`, nor with
    /// `storage.ebs.volumes` (both bring their own data).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self == oldSelf")
        .message("spec.database is immutable: it was made when the cluster initialised; rename or add databases with SQL"))]
    pub database: Option<DatabaseSpec>,

    /// Scheduled backups with retention; none when unset (MySQLBackups made
    /// by hand are always taken).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<BackupSchedule>,

    /// Overrides for the instance pods: resources, placement and metadata.
    #[serde(default)]
    pub pod_template: PodTemplateOverrides,

    /// Extra server settings, written to the `[mysqld]` section of my.cnf as
    /// `key = value`, at most 64 of them, keys of at most 64 characters.
    /// Variables both flavors change at runtime (max_connections, timeouts,
    /// buffer and cache sizes, the slow and general logs, sql_mode) with
    /// plain values are also set on the running servers (`SET GLOBAL`);
    /// any other change restarts the servers as `updateStrategy` says.
    /// Refused, in any spelling the servers accept (case, `-`/`_`, `loose-`
    /// and the other option prefixes): settings ebisu manages itself
    /// (server_id, paths, ports, binary log, GTID, relay log, semi-sync,
    /// read_only, durability) and ones that remove authentication or cut
    /// the operator off (skip-grant-tables, skip-networking, init-file),
    /// ones that let an acknowledged write go unreplicated or unapplied
    /// (binlog and replicate filters, skip-errors, exec modes, init_slave),
    /// InnoDB files outside the data volume, plugins, log_raw, local_infile
    /// and secure_file_priv. Keys are letters, digits, `_`, `-` and `.`;
    /// values are one line without control characters, at most 4096
    /// characters.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    // Bounded so the API server's CEL cost estimate for the rule stays in budget.
    #[x_kube(
        validation = reserved_config_keys_rule(),
        validation = Rule::new("self.all(k, k.size() <= 64)")
            .message("spec.mysqlConfig keys must be at most 64 characters"),
        validation = Rule::new("self.all(k, k.matches('^[A-Za-z0-9_.-]+$'))")
            .message("spec.mysqlConfig keys are my.cnf option names: letters, digits, '_', '-' and '.' only; fix the key"),
        validation = Rule::new(r"self.all(k, !self[k].matches('[\\x00-\\x1f\\x7f]'))")
            .message("spec.mysqlConfig values are one line: remove newlines and other control characters"),
    )]
    #[schemars(extend(
        "maxProperties" = 64,
        "additionalProperties" = {"type": "string", "maxLength": 4096}
    ))]
    pub mysql_config: BTreeMap<String, String>,

    /// Settings for the `<name>-primary` and `<name>-read` Services.
    #[serde(default)]
    pub services: ServiceTemplates,

    /// How a changed spec (image, `mysqlConfig`, resources, pod template)
    /// reaches running servers, which only take it when restarted.
    /// `RollingUpdate` (default): the operator restarts replicas one at a
    /// time, each once the cluster is healthy and every replica caught up,
    /// then switches over to an updated replica and restarts the old
    /// primary last. `Manual`: nothing is restarted; the `Updating`
    /// condition says which instances run the old spec (delete a pod to
    /// update it). A primary is only moved automatically under
    /// `replication.failover: Automatic`; otherwise the rollout waits at
    /// the primary for a requested switchover.
    #[serde(default)]
    pub update_strategy: UpdateStrategy,
}

/// How long the servers keep their binary logs (`spec.binaryLogs`). The
/// servers' own expiry is off: ebisu purges a file once it is older than
/// `expireSeconds` and every answering instance and, with
/// `spec.backup.archive`, the archive hold its transactions, so neither a
/// replica that fell behind nor the archive ever misses one. A file the
/// archive lacks is kept however old: an archive that fails for long
/// fills the volume (the `ArchiveBehind` condition says so first).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct BinaryLogsSpec {
    /// Seconds a binary log file is kept after its last write (default
    /// 604800, seven days; 0 purges a file as soon as everything holds it;
    /// at most 31536000, a year).
    #[serde(default = "default_binlog_expire")]
    #[x_kube(validation = Rule::new("self >= 0 && self <= 31536000")
        .message("spec.binaryLogs.expireSeconds must be between 0 and 31536000 (a year)"))]
    pub expire_seconds: u32,
}

impl Default for BinaryLogsSpec {
    fn default() -> Self {
        Self {
            expire_seconds: default_binlog_expire(),
        }
    }
}

fn default_binlog_expire() -> u32 {
    604_800
}

/// How a changed spec reaches running servers.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum UpdateStrategy {
    /// Replicas one at a time, then a switchover, then the old primary.
    #[default]
    RollingUpdate,
    /// Report which instances run the old spec; restart nothing.
    Manual,
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

/// The CEL rule refusing [`config_keys::REFUSED_MYSQL_CONFIG_KEYS`] in
/// `spec.mysqlConfig` in every spelling, built from the same list and
/// normal form the operator checks with.
fn reserved_config_keys_rule() -> kube::core::Rule {
    kube::core::Rule::new(format!(
        "self.all(k, !k.lowerAscii().replace('-', '_').matches('{}'))",
        config_keys::refused_pattern()
    ))
    .message(
        "spec.mysqlConfig must not set keys that ebisu manages, that lose or skip replicated \
         writes, or that remove authentication (server_id, datadir, port, socket, \
         bind_address, report_host, log_bin, binlog_format, gtid_*, log_slave_updates, \
         relay_log*, rpl_semi_sync_*, binlog_do_db, binlog_ignore_db, replicate_*, \
         slave_skip_errors, slave_exec_mode, init_slave, read_only, super_read_only, \
         sync_binlog, innodb_flush_log_at_trx_commit, innodb_doublewrite, sync_relay_log, \
         innodb_*_dir(ectory), skip-grant-tables, skip-networking, init_file, plugin_*, \
         log_raw, local_infile, secure_file_priv, ...), in any spelling (case, '-' or '_', \
         loose-/skip-/enable-/disable- prefixes): remove them",
    )
}

/// The CEL rule bounding the cluster's name, from [`MAX_NAME_LEN`].
fn name_length_rule() -> kube::core::Rule {
    kube::core::Rule::new(format!("self.metadata.name.size() <= {MAX_NAME_LEN}")).message(
        kube::core::Message::Message(format!(
            "metadata.name must be at most {MAX_NAME_LEN} characters, so that <name>-primary and \
             the StatefulSet's revision label stay within Kubernetes' 63: choose a shorter name"
        )),
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

/// Where a new cluster's data comes from.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct BootstrapSpec {
    /// Start from a MySQLBackup: its snapshot becomes the first instance's
    /// volume (created at EC2 in a zone with nodes, the backup's zone when
    /// it has some), the server starts on it as the primary with exactly
    /// the backup's GTID set, and the other instances are copied from it.
    /// The cluster's credentials Secret is made from the backup's (unless
    /// it exists), so the restored users keep their passwords. Needs the
    /// operator's `features.givenVolumes` (the restored volume's PV is made
    /// like a given volume's). A restore that cannot go ahead (no such
    /// backup, not completed, its snapshot gone, another flavor, data
    /// already there) is a `RestoreRefused` condition and one Event, and
    /// nothing is created.
    pub from_backup: FromBackup,
}

/// The backup a cluster starts from.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("has(self.name) != has(self.cluster)")
        .message("spec.bootstrap.fromBackup: set name (a MySQLBackup) or cluster (the newest backup of that cluster before pointInTime), one of the two"),
    validation = Rule::new("!has(self.cluster) || has(self.pointInTime)")
        .message("spec.bootstrap.fromBackup.cluster needs pointInTime: the newest backup before that point is chosen"),
)]
pub struct FromBackup {
    /// A completed MySQLBackup in the cluster's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub name: Option<String>,
    /// Instead of `name`: the newest completed MySQLBackup of this cluster
    /// (its `spec.cluster`, in this namespace) that holds nothing after
    /// `pointInTime`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub cluster: Option<String>,
    /// Replay the binary log archive the backup's cluster kept
    /// (`spec.backup.archive`, recorded in the backup's `status.archive`)
    /// from the backup up to this point before the server opens: the first
    /// instance's init step replays it into a server without networking, so
    /// no client writes before the replay ends. Refused (`RestoreRefused`,
    /// nothing created) when the backup is past the point, the point is
    /// past the archive's end, transactions between the backup and the
    /// point are not archived, or the archive holds two histories. The
    /// pods read the archive with their own AWS credentials, or those of
    /// `spec.backup.archive.credentialsSecret`; the operator reads its
    /// manifests with its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub point_in_time: Option<PointInTime>,
}

/// A point to restore to: a time or a GTID set.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("has(self.time) != has(self.gtidSet)")
        .message("spec.bootstrap.fromBackup.pointInTime: set time or gtidSet, one of the two"),
)]
pub struct PointInTime {
    /// RFC 3339 (`2026-12-04T13:20:00Z`): every transaction committed at or
    /// before it, in the archive's order, up to the first committed later.
    /// MySQL records commit times to the microsecond; MariaDB records the
    /// second a transaction began, so a MariaDB target includes everything
    /// begun in its second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>,
    /// Exactly these transactions, in the flavor's notation (MySQL
    /// `uuid:1-100`, MariaDB `0-100-12345`); it must hold the backup's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 65536))]
    pub gtid_set: Option<String>,
}

/// Scheduled backups of a cluster (`spec.backup`).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct BackupSchedule {
    /// When to take a backup: a cron expression in UTC, five fields
    /// (`minute hour day-of-month month day-of-week`, such as `0 3 * * *`)
    /// or six with seconds first. Each is a MySQLBackup named
    /// `<cluster>-<yyyymmdd-hhmmss>`, labelled `ebisu.dev/scheduled=true`.
    /// A schedule missed while the operator was away is taken once.
    #[schemars(length(min = 9, max = 128))]
    pub schedule: String,
    /// How many completed scheduled backups to keep (1 to 1000): older
    /// ones are deleted with their snapshots, except one a restore in
    /// progress starts from. Backups made by hand are never deleted.
    #[serde(default = "default_keep")]
    #[x_kube(validation = Rule::new("self >= 1 && self <= 1000")
        .message("spec.backup.keep must be between 1 and 1000: how many scheduled backups to keep"))]
    pub keep: u32,
    /// A continuous archive of the binary logs in S3, taken from a
    /// caught-up replica (the primary of a one-instance cluster); none
    /// when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archive: Option<BinlogArchive>,
    /// Restores verified on a schedule: none when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify: Option<RestoreVerify>,
}

/// Restores verified on a schedule (`spec.backup.verify`). Each time the
/// schedule fires, the operator sums a sample of tables on the archiving
/// replica with its applier held (so at one GTID set, which it waits for
/// the archive to hold), then restores the newest completed backup plus the
/// archive up to that set into a scratch cluster `<name>-verify` (one
/// instance, its own volume from the snapshot), and checks that the server
/// starts, that it reached exactly that set, and that each sampled table
/// checks clean (`CHECK TABLE`) and has the replica's checksum. Without an
/// archive the backup alone is restored and checked (no sums to compare).
/// The result is `status.lastVerifiedRestore` and an Event; a failure is
/// the `RestoreVerificationFailed` condition. The scratch cluster, its
/// claim, volume and Secret are then deleted. Needs the operator's
/// `features.givenVolumes`, like any restore.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RestoreVerify {
    /// When to verify: a cron expression in UTC, like `spec.backup.schedule`.
    #[schemars(length(min = 9, max = 128))]
    pub schedule: String,
    /// How many tables to check (1 to 100), spread evenly over them by name.
    #[serde(default = "default_sample_tables")]
    #[x_kube(validation = Rule::new("self >= 1 && self <= 100")
        .message("spec.backup.verify.sampleTables must be between 1 and 100"))]
    pub sample_tables: u32,
    /// How long the scratch cluster may take to restore and be checked
    /// before the verification fails (60 to 86400 seconds).
    #[serde(default = "default_verify_timeout")]
    #[x_kube(validation = Rule::new("self >= 60 && self <= 86400")
        .message("spec.backup.verify.timeoutSeconds must be between 60 and 86400"))]
    pub timeout_seconds: u32,
}

fn default_sample_tables() -> u32 {
    16
}

fn default_verify_timeout() -> u32 {
    3600
}

/// Where the binary log archive goes. Objects are
/// `<prefix>/binlog/<server-id>-<file created>-<file>/<offset>` (the bytes)
/// and the same under `<prefix>/manifest/` with `.json` (the transactions
/// each holds, their commit times and a SHA-256), a manifest written only
/// after its bytes.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct BinlogArchive {
    /// The S3 bucket (it must exist).
    #[schemars(length(min = 3, max = 63))]
    pub bucket: String,
    /// The key prefix; `<namespace>/<cluster>` when empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 512))]
    pub prefix: Option<String>,
    /// A Secret in the cluster's namespace whose keys become the sidecar's
    /// environment (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
    /// `AWS_REGION`, `AWS_ENDPOINT_URL_S3` for an S3-compatible store);
    /// without it the pods' own AWS credentials (EKS Pod Identity or IRSA
    /// on the cluster's service account) are used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret: Option<String>,
    /// How far the archive may fall behind the primary, in seconds, before
    /// the `ArchiveBehind` condition says so (1 to 3600).
    #[serde(default = "default_max_behind")]
    #[x_kube(validation = Rule::new("self >= 1 && self <= 3600")
        .message("spec.backup.archive.maxBehindSeconds must be between 1 and 3600"))]
    pub max_behind_seconds: u32,
}

fn default_max_behind() -> u32 {
    30
}

fn default_keep() -> u32 {
    7
}
