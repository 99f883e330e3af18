//! `status` of a MySQLCluster: what the operator observed and did, written
//! only by the operator.

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
    /// Label selector of the instance pods, for the scale subresource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    /// Pod that currently takes writes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_primary: Option<String>,
    /// One entry per instance pod.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub instances: Vec<InstanceStatus>,
    /// `Available`, `Healthy`, `Switching`, `Degraded` and `SpecValid`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The last planned primary change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_switchover: Option<RoleChange>,
    /// The last unplanned primary change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failover: Option<RoleChange>,
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
    /// Availability zone of the instance's volume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
    /// EBS volume id backing the instance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_id: Option<String>,
    /// The pod is Ready (serving queries; says nothing about lag).
    pub ready: bool,
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
