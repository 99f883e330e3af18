//! Every permission the operator uses, and why. The Helm chart's ClusterRole
//! (and, for the leader Lease, its Role) must grant exactly these (a test
//! renders the chart and compares), so a new API call without a new line
//! here fails the tests, and a line nobody needs is noticed.

/// One RBAC rule: API group, resource, verbs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    /// API group (`""` for core).
    pub group: &'static str,
    /// Resource (with subresource, e.g. `mysqlclusters/status`).
    pub resource: &'static str,
    /// Verbs.
    pub verbs: &'static [&'static str],
}

const fn rule(group: &'static str, resource: &'static str, verbs: &'static [&'static str]) -> Rule {
    Rule {
        group,
        resource,
        verbs,
    }
}

/// What the operator does.
pub const RULES: &[Rule] = &[
    // The controller's watch; patch adds and removes the finalizer and
    // removes handled switchover and forced-failover annotations.
    rule(
        "ebisu.dev",
        "mysqlclusters",
        &["get", "list", "watch", "patch"],
    ),
    // Status is written with server-side apply.
    rule("ebisu.dev", "mysqlclusters/status", &["patch"]),
    // Children: read before apply (immutable fields), applied, owned and watched.
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
    // The primary's budget is deleted when a cluster shrinks to one instance.
    rule(
        "policy",
        "poddisruptionbudgets",
        &["get", "list", "watch", "create", "patch", "delete"],
    ),
    // Credentials: created once, completed with merge patches.
    rule("", "secrets", &["get", "list", "watch", "create", "patch"]),
    // Pods: watched for readiness, labelled with their role, deleted to be
    // re-seeded once their agent set the data aside.
    rule("", "pods", &["get", "list", "watch", "patch", "delete"]),
    // Nodes: a cordon or drain taint on the primary's node starts a
    // switchover; a node that stopped reporting is reported.
    rule("", "nodes", &["get", "list", "watch"]),
    // Claims grow in place; volumes tell the zone and the EBS volume id.
    rule("", "persistentvolumeclaims", &["list", "patch"]),
    rule("", "persistentvolumes", &["get"]),
    // The managed StorageClass; deleted by the finalizer.
    rule(
        "storage.k8s.io",
        "storageclasses",
        &["get", "list", "create", "patch", "delete"],
    ),
    // Events (kube's recorder creates, then patches repeated ones).
    rule("events.k8s.io", "events", &["create", "patch"]),
];

/// What the operator does in its own namespace only (a Role, not the
/// ClusterRole): the leader election's Lease, read, created when missing
/// and renewed with server-side apply.
pub const NAMESPACED_RULES: &[Rule] = &[rule(
    "coordination.k8s.io",
    "leases",
    &["get", "create", "patch"],
)];
