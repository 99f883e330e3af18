//! Keys that Kubernetes and AWS own, spelled once: the labels, taints and
//! annotations the operator reads or sets but does not define. (Keys ebisu
//! defines are in `ebisu_api::names`, which the sidecar shares.)

/// The zone label every node carries.
pub const ZONE_LABEL: &str = "topology.kubernetes.io/zone";
/// The pod label the StatefulSet controller sets to the revision a pod
/// was made from.
pub const REVISION_LABEL: &str = "controller-revision-hash";
/// The annotation that makes a StorageClass the cluster's default.
pub const DEFAULT_CLASS: &str = "storageclass.kubernetes.io/is-default-class";
/// The taint that tells Kubernetes a node is shut down for good.
pub const OUT_OF_SERVICE: &str = "node.kubernetes.io/out-of-service";
/// Taints that say a node is about to be emptied (a drain, the cluster
/// autoscaler, Karpenter); `spec.unschedulable` says it too.
pub const DRAIN_TAINTS: &[&str] = &[
    "node.kubernetes.io/unschedulable",
    "ToBeDeletedByClusterAutoscaler",
    "karpenter.sh/disrupted",
    "karpenter.sh/disruption",
];
