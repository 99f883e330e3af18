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
    /// asynchronous replication (1 to 3600). While it has fallen back, ebisu
    /// will not fail over automatically.
    #[serde(default = "default_timeout_seconds")]
    #[x_kube(validation = Rule::new("self >= 1 && self <= 3600")
        .message("spec.replication.timeoutSeconds must be between 1 and 3600"))]
    pub timeout_seconds: i32,

    /// A planned switchover only picks a replica at most this many seconds
    /// behind (0 to 86400). Unplanned failover is never decided by lag: it
    /// requires proof the candidate has every acknowledged transaction.
    #[serde(default = "default_max_lag_for_promotion_seconds")]
    #[x_kube(validation = Rule::new("self >= 0 && self <= 86400")
        .message("spec.replication.maxLagForPromotionSeconds must be between 0 and 86400"))]
    pub max_lag_for_promotion_seconds: i32,
}

impl Default for ReplicationSpec {
    fn default() -> Self {
        Self {
            semi_sync: None,
            wait_for_replicas: default_wait_for_replicas(),
            timeout_seconds: default_timeout_seconds(),
            max_lag_for_promotion_seconds: default_max_lag_for_promotion_seconds(),
        }
    }
}

fn default_wait_for_replicas() -> i32 {
    1
}

fn default_timeout_seconds() -> i32 {
    10
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
    /// unset. Limits the read load a seed puts on the donor's volume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("isQuantity(self) && quantity(self).compareTo(quantity('1Mi')) >= 0")
        .message("spec.clone.rateLimit must be a quantity of at least 1Mi (bytes per second), such as 200Mi"))]
    pub rate_limit: Option<Quantity>,
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
