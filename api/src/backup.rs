//! The `MySQLBackup` custom resource: one EBS snapshot of one instance of a
//! MySQLCluster, with the exact GTID set and binary log position it holds,
//! and the credentials its data was made with.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::cluster::Flavor;

/// A backup of a MySQLCluster, taken once: an EBS snapshot of a caught-up
/// replica's volume (of the primary's when the cluster has one instance),
/// taken while that replica applies nothing, so it holds exactly the GTID
/// set in its status. Deleting the MySQLBackup keeps the snapshot.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[allow(clippy::duplicated_attributes)]
#[kube(
    group = "ebisu.dev",
    version = "v1alpha1",
    kind = "MySQLBackup",
    plural = "mysqlbackups",
    singular = "mysqlbackup",
    shortname = "mybk",
    namespaced,
    status = "MySQLBackupStatus",
    derive = "PartialEq",
    printcolumn(
        name = "Cluster",
        type_ = "string",
        description = "The MySQLCluster backed up",
        json_path = ".spec.cluster"
    ),
    printcolumn(
        name = "Phase",
        type_ = "string",
        description = "Where the backup is",
        json_path = ".status.phase"
    ),
    printcolumn(
        name = "Snapshot",
        type_ = "string",
        description = "The EBS snapshot",
        json_path = ".status.snapshotId"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct MySQLBackupSpec {
    /// The MySQLCluster to back up, in the backup's namespace. Immutable.
    #[x_kube(
        validation = Rule::new("self == oldSelf")
            .message("spec.cluster is immutable: create another MySQLBackup to back up another cluster"),
        validation = Rule::new("self.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')")
            .message("spec.cluster must name a MySQLCluster (a DNS-1035 label)"),
    )]
    #[schemars(length(min = 1, max = 52))]
    pub cluster: String,
}

/// Where a backup is.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackupPhase {
    /// Waiting for a caught-up instance to take it from.
    Pending,
    /// The snapshot was started; EBS is copying the blocks.
    Snapshotting,
    /// The snapshot is complete: it can be restored.
    Completed,
    /// It cannot be taken; the `Failed` condition says why.
    Failed,
}

/// A binary log position.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct BinlogPosition {
    /// The binary log file.
    pub file: String,
    /// The offset in it.
    pub position: u64,
}

/// Where a binary log archive is.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ArchiveLocation {
    /// The S3 bucket.
    pub bucket: String,
    /// The key prefix.
    pub prefix: String,
}

/// What a backup holds and where it is, written only by the operator.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MySQLBackupStatus {
    /// Where the backup is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<BackupPhase>,
    /// The EBS snapshot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_id: Option<String>,
    /// The volume it was taken of.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_id: Option<String>,
    /// The volume's availability zone (the snapshot itself is regional).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
    /// The volume's size in GiB: a restored volume is at least this large.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_gib: Option<i32>,
    /// The instance it was taken from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_pod: Option<String>,
    /// The server flavor of the data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flavor: Option<Flavor>,
    /// The server version that wrote the data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_version: Option<String>,
    /// Exactly the transactions the snapshot holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gtid_set: Option<String>,
    /// The source server's binary log position at the snapshot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binlog: Option<BinlogPosition>,
    /// The Secret (owned by this backup) holding the credentials the data
    /// was made with: a restore uses them, so nobody is locked out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret: Option<String>,
    /// When the snapshot was started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started: Option<Time>,
    /// When the GTID set was read with the applier paused: every
    /// transaction the backup holds committed before it. A restore to a
    /// time chooses a backup consistent at or before that time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consistent_at: Option<Time>,
    /// The binary log archive the cluster kept when the backup was taken
    /// (`spec.backup.archive`): where a restore to a point replays from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archive: Option<ArchiveLocation>,
    /// When EBS finished it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed: Option<Time>,
    /// `Failed` (with the EC2 or server error) while it cannot be taken.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

impl MySQLBackup {
    /// Whether it can be restored.
    pub fn is_completed(&self) -> bool {
        self.status.as_ref().and_then(|s| s.phase) == Some(BackupPhase::Completed)
    }
}
