//! `spec.replication` and `spec.clone`: how replicas follow the primary, when
//! one may be promoted, and how a new one is seeded.

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Replication settings.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ReplicationSpec {
    /// Semi-synchronous replication: the primary acknowledges a commit only
    /// after `waitForReplicas` replicas have received it, so failover can
    /// prove no acknowledged write is lost. Unset means on whenever
    /// `replicas >= 2`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub semi_sync: Option<bool>,

    /// How many replicas must acknowledge each commit while semi-sync is on
    /// (1 to 8; MariaDB supports only 1).
    #[serde(default = "default_wait_for_replicas")]
    #[x_kube(validation = Rule::new("self >= 1 && self <= 8")
        .message("spec.replication.waitForReplicas must be between 1 and 8"))]
    pub wait_for_replicas: i32,

    /// Seconds the primary waits for acknowledgements before it falls back to
    /// asynchronous replication (1 to 3600). Unset (the default): it never
    /// falls back, so a commit is acknowledged only once a replica has it,
    /// and writes wait while no replica acknowledges. Set it to keep writes
    /// flowing without replicas, at a price: while the primary has fallen
    /// back, acknowledged writes may exist on the primary alone, so ebisu
    /// reports a `SemiSyncFallback` problem and will not fail over
    /// automatically. A primary that its replicas still hear is never failed
    /// over, and one that cannot renew its primary Lease fences itself, so a
    /// primary cut off from the operator cannot fall back beside a new one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 1 && self <= 3600")
        .message("spec.replication.timeoutSeconds must be between 1 and 3600, or unset to never fall back to asynchronous replication"))]
    pub timeout_seconds: Option<i32>,

    /// A planned switchover only picks a replica at most this many seconds
    /// behind (0 to 86400). Writes wait while it catches up, for this long
    /// and 10 s more, but never more than 60 s: past that the switchover is
    /// undone and the old primary takes writes again. Unplanned failover is
    /// never decided by lag: it requires proof the candidate has every
    /// acknowledged transaction.
    #[serde(default = "default_max_lag_for_promotion_seconds")]
    #[x_kube(validation = Rule::new("self >= 0 && self <= 86400")
        .message("spec.replication.maxLagForPromotionSeconds must be between 0 and 86400"))]
    pub max_lag_for_promotion_seconds: i32,

    /// A replica serves reads through the `<name>-read` Service only while
    /// it replicates without error and is at most this many seconds behind
    /// (0 to 86400). Its readiness never depends on lag.
    #[serde(default = "default_max_lag_for_reads_seconds")]
    #[x_kube(validation = Rule::new("self >= 0 && self <= 86400")
        .message("spec.replication.maxLagForReadsSeconds must be between 0 and 86400"))]
    pub max_lag_for_reads_seconds: i32,

    /// Who moves the primary. `Automatic` (the default): ebisu switches over
    /// when the primary's node is drained or cordoned or its pod is deleted,
    /// and fails over when the primary stops answering, if it can prove no
    /// acknowledged write is lost. `Manual`: the primary moves only when you
    /// ask with `kubectl annotate myc NAME ebisu.dev/switchover=any` (or a
    /// pod name); a lost primary is reported and left to you.
    #[serde(default)]
    pub failover: FailoverMode,

    /// Seconds the primary must stay silent (no answer to the operator's SQL
    /// probes, and its agent not reporting the server up) before ebisu
    /// fails over (1 to 300). A silent primary counts as lost only when no
    /// replica still hears it too, and once its agent must have fenced it:
    /// the primary Lease lasts a second less than this (at least 2 s), and
    /// ebisu waits that and a second's margin after the last renewal it saw.
    /// Shorter finds a lost primary sooner; longer rides out network blips
    /// and slow restarts.
    #[serde(default = "default_failover_after_seconds")]
    #[x_kube(validation = Rule::new("self >= 1 && self <= 300")
        .message("spec.replication.failoverAfterSeconds must be between 1 and 300"))]
    pub failover_after_seconds: i32,

    /// Recover instances lost with their node (off by default). A
    /// StatefulSet pod on a node that stopped answering is never replaced by
    /// Kubernetes, and its EBS volume stays attached there. With this on,
    /// once the primary serves elsewhere, a node that is NotReady and on
    /// which none of this cluster's servers answers is fenced: its EC2
    /// instance is stopped (forced), and the node gets the
    /// `node.kubernetes.io/out-of-service` taint, so Kubernetes deletes its
    /// pods and detaches their volumes at once; each lost instance comes
    /// back on a healthy node in its volume's zone, as a replica. The taint
    /// is removed when the node is Ready again. A node that answers is never
    /// fenced, nor one that also runs pods other than this cluster's,
    /// DaemonSets' and ebisu's own (stopping it would take them down: a
    /// `FenceImpossible` condition says so). Needs `ec2:StopInstances`,
    /// permission to patch Nodes and to list pods in every namespace.
    #[serde(default)]
    pub fence_nodes: bool,
}

/// Who moves the primary.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FailoverMode {
    /// Switchover on drain, cordon and pod deletion; failover when the primary is lost.
    #[default]
    Automatic,
    /// Only on request (the `ebisu.dev/switchover` annotation); losses are reported.
    Manual,
}

impl Default for ReplicationSpec {
    fn default() -> Self {
        Self {
            semi_sync: None,
            wait_for_replicas: default_wait_for_replicas(),
            timeout_seconds: None,
            max_lag_for_promotion_seconds: default_max_lag_for_promotion_seconds(),
            max_lag_for_reads_seconds: default_max_lag_for_reads_seconds(),
            failover: FailoverMode::default(),
            failover_after_seconds: default_failover_after_seconds(),
            fence_nodes: false,
        }
    }
}

fn default_wait_for_replicas() -> i32 {
    1
}

fn default_max_lag_for_reads_seconds() -> i32 {
    30
}

fn default_failover_after_seconds() -> i32 {
    3
}

fn default_max_lag_for_promotion_seconds() -> i32 {
    10
}

/// Seeding settings for new replicas.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CloneSpec {
    /// Which peers a new instance copies its data from.
    #[serde(default)]
    pub donor: DonorPreference,

    /// Bytes per second a donor may send, such as `200Mi`; unlimited when
    /// unset. Limits the read load a seed puts on the donor's volume. MySQL
    /// applies it as the new instance's `clone_max_data_bandwidth`, in
    /// whole MiB per second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("isQuantity(self) && quantity(self).compareTo(quantity('1Mi')) >= 0")
        .message("spec.clone.rateLimit must be a quantity of at least 1Mi (bytes per second), such as 200Mi"))]
    pub rate_limit: Option<Quantity>,

    /// How a new or re-created replica gets its data: `Stream` copies it
    /// from a peer over the network; `Snapshot` starts it on a volume made
    /// from the newest completed MySQLBackup of this cluster and lets it
    /// catch up from the primary by GTID (it streams instead when no backup
    /// can serve: none, or the primary no longer has the binary logs after
    /// the backup's GTID set); `Auto` (the default) takes a snapshot when
    /// the data is at least 20 GiB and the newest usable backup is less than
    /// 24 hours old, and streams otherwise. A snapshot needs
    /// `spec.storage.ebs` and the operator installed with
    /// `features.givenVolumes=true` (`Auto` streams without them).
    #[serde(default)]
    pub method: CloneMethod,

    /// MiB per second at which EBS initializes a volume made from a
    /// snapshot (EC2's volume initialization rate, 100 to 300), so its
    /// blocks are read at a known speed instead of lazily; unset leaves
    /// EBS's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 100 && self <= 300")
        .message("spec.clone.snapshotInitializationRate must be between 100 and 300 (MiB/s, EC2's range), or unset"))]
    pub snapshot_initialization_rate: Option<i32>,
}

/// How a new replica gets its data (`spec.clone.method`).
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CloneMethod {
    /// Copied from a peer over the network.
    Stream,
    /// A volume made from the newest usable backup's snapshot, caught up
    /// from the primary.
    Snapshot,
    /// A snapshot for large data and a recent backup, a stream otherwise.
    #[default]
    Auto,
}

/// Which peers a new instance may copy its data from.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DonorPreference {
    /// A caught-up replica first, the primary only when no replica can serve.
    #[default]
    PreferReplica,
    /// Only the primary (its copy is always the most recent).
    PrimaryOnly,
}
