//! `status` of a MySQLCluster: what the operator observed and did, written
//! only by the operator.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Observed state of a MySQLCluster.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MySQLClusterStatus {
    /// Lifecycle phase, a summary of the conditions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Instances that exist.
    #[serde(default)]
    pub replicas: i32,
    /// Instances serving queries.
    #[serde(default)]
    pub ready_replicas: i32,
    /// The StatefulSet's update revision: the pod template of the current spec.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_revision: Option<String>,
    /// Instances whose pod runs the update revision.
    #[serde(default)]
    pub updated_replicas: i32,
    /// Label selector of the instance pods, for the scale subresource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    /// Pod that currently takes writes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_primary: Option<String>,
    /// One entry per instance pod.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub instances: Vec<InstanceStatus>,
    /// `Available`, `Healthy`, `Switching`, `Degraded`, `Updating`,
    /// `CredentialsMissing`, `FailoverBlocked` and `SpecValid`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The last planned primary change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_switchover: Option<RoleChange>,
    /// The last unplanned primary change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failover: Option<RoleChange>,
    /// What the operator remembers between looks at the servers; read
    /// back by the operator after a restart, never set by users.
    #[serde(default, skip_serializing_if = "ClusteringMemory::is_empty")]
    pub clustering: ClusteringMemory,
    /// Nodes ebisu fenced for this cluster (`spec.replication.fenceNodes`):
    /// their EC2 instance was stopped and they carry the out-of-service
    /// taint until they are Ready again.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fenced_nodes: Vec<String>,
    /// The restore the cluster started from (`spec.bootstrap.fromBackup`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore: Option<RestoreStatus>,
    /// How each replica that has no volume yet is being seeded
    /// (`spec.clone.method`), until its claim exists.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub seeds: Vec<SeedStatus>,
    /// The binary log archive (`spec.backup.archive`), as its archiver
    /// last reported it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archive: Option<ArchiveStatus>,
    /// The last restore verified by `spec.backup.verify`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_verified_restore: Option<VerifiedRestore>,
}

/// A restore verified by `spec.backup.verify`: a scratch cluster restored
/// from a backup plus the archive, its tables checked.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct VerifiedRestore {
    /// The MySQLBackup restored.
    pub backup: String,
    /// The GTID set the restore was to reach (a replica's, held while its
    /// tables were summed; the backup's without an archive).
    pub gtid_set: String,
    /// Every check passed: the server started, reached exactly `gtidSet`,
    /// every sampled table checked clean and matched the replica's.
    pub passed: bool,
    /// What failed, or what was checked.
    pub message: String,
    /// How many tables were checked.
    #[serde(default)]
    pub tables: u32,
    /// From the scratch cluster's creation to the end of the checks.
    #[serde(default)]
    pub seconds: u64,
    /// When the checks ended.
    pub finished_at: Time,
    /// The scratch cluster's EBS volume, until it is deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scratch_volume: Option<String>,
}

/// How one new replica gets its data.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SeedStatus {
    /// The instance's pod.
    pub pod: String,
    /// `Stream` or `Snapshot`.
    pub method: SeedMethod,
    /// Why this method.
    pub reason: String,
    /// The MySQLBackup whose snapshot it starts from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<String>,
    /// That backup's snapshot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_id: Option<String>,
    /// The volume made from it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_id: Option<String>,
    /// The GTID set the snapshot holds; the replica catches up from there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gtid_set: Option<String>,
}

/// How a replica is seeded.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SeedMethod {
    /// Copied from a peer.
    #[default]
    Stream,
    /// Started on a volume made from a backup's snapshot.
    Snapshot,
}

/// How far a restore from a backup went.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RestoreStatus {
    /// The MySQLBackup.
    pub backup: String,
    /// Its snapshot.
    pub snapshot_id: String,
    /// The volume made from it: the first instance's.
    pub volume_id: String,
    /// The GTID set the backup holds, which the restored server started with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gtid_set: Option<String>,
    /// Set once the restored server forgot the source it replicated from
    /// when the snapshot was taken: from then on it is this cluster's.
    #[serde(default)]
    pub done: bool,
    /// The point replayed to (`spec.bootstrap.fromBackup.pointInTime`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub point_in_time: Option<ReplayStatus>,
}

/// A replay of the binary log archive to a point.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ReplayStatus {
    /// The target, as asked (a time, or `GTID set ...`).
    pub target: String,
    /// The archive's bucket.
    pub bucket: String,
    /// The archive's key prefix.
    pub prefix: String,
    /// How many archived segments the plan reads.
    pub segments: u32,
    /// The GTIDs the archive says the target holds at least (a time
    /// target's cut falls inside a segment, found only when it is read).
    pub at_least: String,
    /// ...and at most.
    pub at_most: String,
    /// The GTID set the restored server holds after the replay, before it
    /// took any write (checked by the replay against the two bounds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reached: Option<String>,
}

/// What the clustering loop must remember between passes, kept in status
/// so that a restarted operator carries on where the last one stopped.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ClusteringMemory {
    /// The pod that is the primary, as the last decision settled it: a
    /// primary whose pod lost its label (or was re-created without one)
    /// is still known, and failed over if it is lost.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary: Option<String>,
    /// How many acknowledgements the primary's commits waited for at the
    /// last look at which it answered (a raised `waitForReplicas` counts
    /// only once the running primary uses it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub semi_sync_wait: Option<u32>,
    /// When the primary was first seen silent in the current outage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary_silent_since: Option<Time>,
    /// Whether the primary was waiting for semi-sync acknowledgements at
    /// the last look at which it answered: only then can a failover prove
    /// that no acknowledged write is lost.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub semi_sync_active: Option<bool>,
    /// A change of primary in progress.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<Operation>,
    /// Why the last switchover request or attempt did not move the primary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_refusal: Option<String>,
    /// When a switchover was last undone: automatic switchovers wait a
    /// while before trying again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub undone_at: Option<Time>,
    /// Problems already announced with an Event, as `Reason/pod` keys, so
    /// each is announced once while it lasts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reported: Vec<String>,
    /// The `spec.mysqlConfig` settings applied to each server without a
    /// restart (`SET GLOBAL`), by pod: variable -> value.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub online_config: BTreeMap<String, BTreeMap<String, String>>,
    /// The pods whose server has run on their volume (seen answering, or
    /// their server container seen started): only these may hold an
    /// acknowledged write. A silent pod not listed is a first copy still
    /// being seeded, and a failover does not wait for it. Unset on a
    /// cluster from before this field: every pod counts until set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held_data: Option<Vec<String>>,
}

impl ClusteringMemory {
    /// Nothing to remember.
    pub fn is_empty(&self) -> bool {
        self == &Self::default()
    }
}

/// A change of primary in progress, resumable step by step.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Operation {
    /// Planned or unplanned.
    pub kind: OperationKind,
    /// The primary being replaced.
    pub from: String,
    /// The replica being promoted, once chosen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// Why (`NodeDrain`, `PodDeleted`, `Requested`, `PrimaryLost`, ...).
    pub reason: String,
    /// How far it got.
    pub step: OperationStep,
    /// When it started.
    pub started_at: Time,
    /// Since when writes have been refused (the fence, or the primary's silence).
    pub writes_blocked_since: Time,
}

/// Planned (switchover) or unplanned (failover).
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq)]
pub enum OperationKind {
    /// The old primary answers and hands over.
    Switchover,
    /// The old primary is lost.
    Failover,
}

/// The step a change of primary has reached. Steps only move forward; once
/// `Promoting` is recorded, the old primary is never made writable again.
#[derive(
    Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord,
)]
pub enum OperationStep {
    /// Switchover: the old primary is being made read-only and its sessions ended.
    Fencing,
    /// Failover: every reachable replica's receiver is being stopped, so the
    /// old primary can get no acknowledgement for anything more.
    StoppingReceivers,
    /// The candidate has everything and is being made the primary.
    Promoting,
    /// The candidate holds the primary Lease and is being made writable:
    /// from here on it may have taken writes, so the change is never undone.
    MakingWritable,
}

/// Lifecycle phase of a cluster.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Instances are being created and seeded.
    Initializing,
    /// Every instance is serving and there is one primary.
    Running,
    /// Serving, but with fewer healthy instances than asked for.
    Degraded,
    /// The primary is being changed.
    Switching,
    /// The spec cannot be honoured; see the `SpecValid` condition.
    Failed,
}

/// What the operator knows about one instance.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct InstanceStatus {
    /// Pod name.
    pub pod: String,
    /// Role the server has.
    pub role: InstanceRole,
    /// Executed GTID set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gtid: Option<String>,
    /// Replication lag in seconds (replicas only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag_seconds: Option<i64>,
    /// The server's version (MAJOR.MINOR.PATCH), as it reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Availability zone of the instance's volume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
    /// EBS volume id backing the instance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_id: Option<String>,
    /// The EBS volume as EC2 describes it (absent when the volume is not an
    /// EBS CSI volume or EC2 could not be asked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume: Option<VolumeStatus>,
    /// The pod is Ready (serving queries; says nothing about lag).
    pub ready: bool,
    /// The StatefulSet revision the pod was made from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    /// The pod runs the current spec (its revision is the update revision).
    #[serde(default)]
    pub updated: bool,
    /// Transactions this server holds that the primary lacks; it is kept
    /// out of service until it is re-seeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errant_gtids: Option<String>,
}

/// The binary log archive.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ArchiveStatus {
    /// The pod whose agent archives now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archiver: Option<String>,
    /// Every transaction the archive holds (GTIDs in the flavor's notation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gtid_set: Option<String>,
    /// The recovery point: when the newest archived transaction committed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archived_through: Option<Time>,
    /// How far behind the primary the archive is, in seconds: 0 when it
    /// holds every transaction the primary has, else the time since the
    /// newest one it holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub behind_seconds: Option<u64>,
    /// Why archiving fails, while it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Transactions the archive lacks that no server's binary log holds
    /// any more, while no completed backup holds them: a restore to a
    /// point after them from an older backup is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gap: Option<String>,
    /// When retention last looked for archived files no kept backup needs
    /// (after each completed backup, and hourly).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pruned_at: Option<Time>,
    /// How many segments that look removed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pruned_segments: Option<u64>,
    /// Why that look failed, until one succeeds (the condition
    /// `ArchiveRetentionFailed` says so too).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prune_error: Option<String>,
}

/// An instance's EBS volume, from EC2's DescribeVolumes.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct VolumeStatus {
    /// Volume id.
    pub id: String,
    /// Availability zone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
    /// Volume type (`gp3`, `io2`, ...).
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub volume_type: Option<String>,
    /// Size in GiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_gib: Option<i32>,
    /// Provisioned IOPS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iops: Option<i32>,
    /// Throughput in MiB/s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub throughput: Option<i32>,
    /// Volume state (`creating`, `available`, `in-use`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// The EC2 instance it is attached to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attached_to: Option<String>,
    /// The attachment's state (`attaching`, `attached`, `detaching`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attachment_state: Option<String>,
    /// The latest modification EC2 reports for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modification: Option<VolumeModificationStatus>,
    /// A change of IOPS or throughput the spec asks for that waits, and why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_change: Option<String>,
    /// How far EBS got loading the blocks of a volume made from a snapshot
    /// (DescribeVolumeStatus); absent for a volume made empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initialization: Option<VolumeInitializationStatus>,
}

/// The initialization of a volume made from a snapshot: until it completes,
/// a read of a block not yet loaded waits for it to come from the snapshot,
/// so the instance serves no reads and is chosen in no switchover.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct VolumeInitializationStatus {
    /// `default`, or `provisioned-rate` (the volume was made with
    /// `spec.clone.snapshotInitializationRate`).
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub initialization_type: Option<String>,
    /// Percent of the snapshot's blocks loaded; 100 when complete.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<i64>,
    /// Seconds EC2 expects it still takes (provisioned rate only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub estimated_seconds_left: Option<i64>,
}

impl VolumeInitializationStatus {
    /// Still loading: EC2 reports less than 100 percent (an unknown
    /// progress counts as loading, never as done).
    pub fn in_progress(&self) -> bool {
        self.progress.is_none_or(|p| p < 100)
    }
}

/// A volume modification (ModifyVolume) and how far it got.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct VolumeModificationStatus {
    /// `modifying`, `optimizing`, `completed` or `failed`.
    pub state: String,
    /// Percent done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<i64>,
    /// IOPS it changes to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_iops: Option<i32>,
    /// Throughput it changes to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_throughput: Option<i32>,
    /// Size it changes to, in GiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_size_gib: Option<i32>,
    /// When it started; EC2 allows the next one 6 hours later.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Time>,
}

/// The role of an instance.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq)]
pub enum InstanceRole {
    /// Writable, the source of replication.
    Primary,
    /// Read-only, replicating from the primary.
    Replica,
    /// Not known yet (starting, seeding or unreachable).
    Unknown,
}

/// A change of primary.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RoleChange {
    /// The previous primary pod.
    pub from: String,
    /// The new primary pod.
    pub to: String,
    /// Why it happened (for example `NodeDrain` or `PrimaryLost`).
    pub reason: String,
    /// When it started.
    pub started_at: Time,
    /// How long writes were refused, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub writes_blocked_ms: Option<i64>,
}
