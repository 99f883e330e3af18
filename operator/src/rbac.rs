//! Every permission the operator uses, and why. The Helm chart's roles must
//! grant exactly these (a test renders the chart in both modes and
//! compares), so a new API call without a new line here fails the tests,
//! and a line nobody needs is noticed.
//!
//! - [`CLUSTER_RULES`]: cluster-scoped objects, always in the ClusterRole.
//! - [`GIVEN_VOLUME_RULES`] and [`NODE_FENCING_RULES`]: cluster-scoped
//!   writes only the features `spec.storage.ebs.volumes` and
//!   `spec.replication.fenceNodes` need, granted only when the chart turns
//!   those features on (`features.givenVolumes`, `features.fenceNodes`):
//!   creating PersistentVolumes can mount any host path, and patching Nodes
//!   can taint any node, so a default install can do neither.
//! - [`WORKLOAD_RULES`]: what lives in a MySQLCluster's namespace. In the
//!   ClusterRole by default; with the chart's `watchNamespaces`, in a Role
//!   per watched namespace instead, so the operator can read no Secret
//!   elsewhere.
//! - [`LEASE_RULES`]: the leader Lease, in a Role in the operator's own
//!   namespace, on that one Lease by name where Kubernetes allows it.

/// One RBAC rule: API group, resource, verbs, and the object names it is
/// limited to (empty: every object).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    /// API group (`""` for core).
    pub group: &'static str,
    /// Resource (with subresource, e.g. `mysqlclusters/status`).
    pub resource: &'static str,
    /// Verbs.
    pub verbs: &'static [&'static str],
    /// Object names (`resourceNames`), when limited.
    pub names: &'static [&'static str],
}

const fn rule(group: &'static str, resource: &'static str, verbs: &'static [&'static str]) -> Rule {
    Rule {
        group,
        resource,
        verbs,
        names: &[],
    }
}

/// Cluster-scoped objects the operator reads or manages.
pub const CLUSTER_RULES: &[Rule] = &[
    // Nodes: a cordon or drain taint on the primary's node starts a
    // switchover; a node that stopped reporting is reported.
    rule("", "nodes", &["get", "list", "watch"]),
    // Volumes tell the zone and the EBS volume id.
    rule("", "persistentvolumes", &["get"]),
    // The managed StorageClass; deleted by the finalizer. Listed to explain
    // a claim that waits (no default class, a missing class).
    rule(
        "storage.k8s.io",
        "storageclasses",
        &["get", "list", "create", "patch", "delete"],
    ),
    // At startup: which EBS CSI driver the cluster has (names only).
    rule("storage.k8s.io", "csidrivers", &["list"]),
];

/// Given volumes (`spec.storage.ebs.volumes`, static provisioning): a
/// PersistentVolume is created for each, and patched to forget a deleted
/// claim so the volume binds to its instance again.
/// A verified restore's scratch PV is deleted with its volume.
pub const GIVEN_VOLUME_RULES: &[Rule] = &[rule(
    "",
    "persistentvolumes",
    &["create", "patch", "delete"],
)];

/// `fenceNodes`: the out-of-service taint of a fenced node is set and
/// removed.
pub const NODE_FENCING_RULES: &[Rule] = &[rule("", "nodes", &["patch"])];

/// What the operator does in a MySQLCluster's namespace.
pub const WORKLOAD_RULES: &[Rule] = &[
    // The controller's watch; patch adds and removes the finalizer and
    // removes handled switchover and forced-failover annotations. A
    // verified restore's scratch cluster is created and deleted.
    rule(
        "ebisu.dev",
        "mysqlclusters",
        &["get", "list", "watch", "create", "patch", "delete"],
    ),
    // Status is written with server-side apply.
    rule("ebisu.dev", "mysqlclusters/status", &["patch"]),
    // Backups: listed each reconcile of their cluster, read by a restore,
    // their status written; made by a schedule, deleted by its retention.
    rule(
        "ebisu.dev",
        "mysqlbackups",
        &["get", "list", "watch", "create", "delete"],
    ),
    rule("ebisu.dev", "mysqlbackups/status", &["patch"]),
    // Children: read before apply (ownership, immutable fields), applied,
    // owned and watched.
    rule(
        "apps",
        "statefulsets",
        &["get", "list", "watch", "create", "patch"],
    ),
    rule("", "services", &["get", "list", "watch", "create", "patch"]),
    rule(
        "",
        "configmaps",
        &["get", "list", "watch", "create", "patch"],
    ),
    // Who may reach the instance pods (applied like other children).
    rule(
        "networking.k8s.io",
        "networkpolicies",
        &["get", "create", "patch"],
    ),
    // The primary's budget is deleted when a cluster shrinks to one instance.
    rule(
        "policy",
        "poddisruptionbudgets",
        &["get", "list", "watch", "create", "patch", "delete"],
    ),
    // Credentials: read by name, created once, completed with merge
    // patches, released from an owner reference, marked initialised. Never
    // listed or watched (a Secret restored by hand is seen at the next
    // periodic reconcile), so the operator's token cannot enumerate Secrets.
    // A verified restore's scratch cluster's Secret (labelled as the
    // operator's) is deleted with it.
    rule("", "secrets", &["get", "create", "patch", "delete"]),
    // Pods: watched for readiness, labelled with their role, deleted to be
    // re-seeded once their agent set the data aside; listed on a node
    // before it is fenced (in every namespace when every one is watched;
    // otherwise the list is refused and so is the fence).
    rule("", "pods", &["get", "list", "watch", "patch", "delete"]),
    // Rolling updates restart pods through the eviction API, so that
    // their PodDisruptionBudgets apply.
    rule("", "pods/eviction", &["create"]),
    // Claims grow in place and are marked initialised; created bound to a
    // given volume (static provisioning). A verified restore's scratch
    // claim is deleted.
    rule(
        "",
        "persistentvolumeclaims",
        &["list", "patch", "create", "delete"],
    ),
    // Events (kube's recorder creates, then patches repeated ones).
    rule("events.k8s.io", "events", &["create", "patch"]),
    // The primary Lease: applied, read every pass, its holder named with
    // a (conditional) patch. The agents read and renew it, which the
    // operator may grant only because it holds these verbs itself.
    rule(
        "coordination.k8s.io",
        "leases",
        &["get", "list", "watch", "create", "patch"],
    ),
    // The agents' ServiceAccount and the Role and RoleBinding that let
    // them read and renew the primary Lease, applied like other children.
    rule("", "serviceaccounts", &["get", "create", "patch"]),
    rule(
        "rbac.authorization.k8s.io",
        "roles",
        &["get", "create", "patch"],
    ),
    rule(
        "rbac.authorization.k8s.io",
        "rolebindings",
        &["get", "create", "patch"],
    ),
];

/// The cluster-scoped rules an install with `features` needs.
pub fn cluster_rules(features: Features) -> Vec<Rule> {
    let mut rules = CLUSTER_RULES.to_vec();
    if features.given_volumes {
        rules.extend_from_slice(GIVEN_VOLUME_RULES);
    }
    if features.fence_nodes {
        rules.extend_from_slice(NODE_FENCING_RULES);
    }
    rules
}

/// The ClusterRole's rules when every namespace is watched.
pub fn all_namespaces(features: Features) -> Vec<Rule> {
    let mut rules = cluster_rules(features);
    rules.extend_from_slice(WORKLOAD_RULES);
    rules
}

/// The optional features an install turns on, each needing more rights
/// (the chart's `features`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Features {
    /// `spec.storage.ebs.volumes` may name existing EBS volumes.
    pub given_volumes: bool,
    /// `spec.replication.fenceNodes` may stop a lost node's instance and
    /// taint the node.
    pub fence_nodes: bool,
}

/// The leader election's Lease in the operator's namespace: created when
/// missing (creation cannot be limited to a name), read and renewed by name.
pub const LEASE_RULES: &[Rule] = &[
    rule("coordination.k8s.io", "leases", &["create"]),
    Rule {
        group: "coordination.k8s.io",
        resource: "leases",
        verbs: &["get", "patch"],
        names: &[ebisu_api::names::LEADER_LEASE],
    },
];
