//! Deterministic names, labels, annotations and ports of what the operator
//! creates for a cluster. Everything that must agree between the operator,
//! the sidecar and the tests is spelled here once.

use std::collections::BTreeMap;

/// Field manager of every server-side apply the operator makes.
pub const FIELD_MANAGER: &str = "ebisu-operator";

/// MySQL protocol port.
pub const MYSQL_PORT: u16 = 3306;
/// The sidecar agent's HTTP port (health, status, metrics, clone streams).
pub const AGENT_PORT: u16 = 9080;

/// `app.kubernetes.io/name` value of every object ebisu creates for a cluster.
pub const APP_NAME: &str = "mysql";
/// `app.kubernetes.io/managed-by` value.
pub const MANAGED_BY: &str = "ebisu";
/// The label whose value is [`MANAGED_BY`] on everything ebisu creates.
pub const LABEL_MANAGED_BY: &str = "app.kubernetes.io/managed-by";

/// The Lease every operator pod of one installation competes for, in the
/// operator's namespace.
pub const LEADER_LEASE: &str = "ebisu-operator";

/// Finalizer on a MySQLCluster that lets the operator clean up what it made
/// outside the namespace (the managed StorageClass, fenced nodes).
pub const FINALIZER: &str = "ebisu.dev/cleanup";
/// Label on a managed StorageClass, and tag on every EBS volume, naming
/// its cluster's namespace (a StorageClass is cluster-scoped, so it cannot
/// carry an owner reference to the cluster).
pub const LABEL_NAMESPACE: &str = "ebisu.dev/namespace";
/// EC2 tag naming the instance (pod) an EBS volume belongs to.
pub const TAG_INSTANCE: &str = "ebisu.dev/instance";
/// EC2 tag naming the MySQLBackup a snapshot belongs to, or a volume made
/// from one comes from (the IAM policy lets the operator create only
/// volumes tagged so).
pub const TAG_BACKUP: &str = "ebisu.dev/backup";
/// EC2 tag a volume's owner sets to give it to one cluster
/// (`spec.storage.ebs.volumes`): `<namespace>/<name>` of that cluster.
pub const TAG_ADOPT_BY: &str = "ebisu.dev/adopt-by";
/// Annotation on a node ebisu fenced, naming the cluster (`ns/name`), so
/// that only a taint ebisu set is ever removed by ebisu.
pub const FENCED_BY: &str = "ebisu.dev/fenced-by";

/// Label: the name of the MySQLCluster an object belongs to.
pub const LABEL_CLUSTER: &str = "ebisu.dev/cluster";
/// Label on instance pods: `primary` or `replica`, set by the operator only.
pub const LABEL_ROLE: &str = "ebisu.dev/role";
/// Label value of [`LABEL_ROLE`] on the primary.
pub const ROLE_PRIMARY: &str = "primary";
/// Label value of [`LABEL_ROLE`] on replicas.
pub const ROLE_REPLICA: &str = "replica";

/// Label on replicas that serve reads (replicating without error, within
/// the allowed lag): the `<name>-read` Service selects it. Set by the
/// operator only.
pub const LABEL_READS: &str = "ebisu.dev/reads";
/// Value of [`LABEL_READS`] on a replica that serves reads.
pub const READS_SERVED: &str = "serve";

/// Annotation on a MySQLCluster asking for a switchover: `any` (ebisu
/// picks the best replica) or a pod name. ebisu removes it once handled and
/// reports the outcome in Events, the `Switching` condition and
/// `status.lastSwitchover`.
pub const ANNOTATION_SWITCHOVER: &str = "ebisu.dev/switchover";
/// Value of [`ANNOTATION_SWITCHOVER`] that lets ebisu choose the replica.
pub const SWITCHOVER_ANY: &str = "any";
/// Annotation on a MySQLCluster forcing a failover that ebisu refused
/// because it cannot prove every acknowledged write is on a replica. Its
/// value must name the lost primary pod, so that it cannot apply to a later
/// outage by accident. Writes the lost primary acknowledged alone are lost.
/// ebisu removes it once used.
pub const ANNOTATION_FORCE_FAILOVER: &str = "ebisu.dev/force-failover";

/// Name of the volume (and volumeClaimTemplate) holding the data directory.
pub const DATA_VOLUME: &str = "data";
/// The pod's container that runs the database server.
pub const SERVER_CONTAINER: &str = "mysqld";

/// Where the data directory is mounted in every container.
pub const DATA_DIR: &str = "/var/lib/mysql";
/// Where the ConfigMap's my.cnf parts are mounted.
pub const CONFIG_TEMPLATE_DIR: &str = "/etc/ebisu/config";
/// Where the init step writes the server's final my.cnf.
pub const SERVER_CONFIG_DIR: &str = "/etc/ebisu/server";
/// The final my.cnf, passed to the server with `--defaults-file`.
pub const SERVER_CONFIG_FILE: &str = "/etc/ebisu/server/my.cnf";
/// Where the credentials Secret is mounted for the sidecar.
pub const CREDENTIALS_DIR: &str = "/etc/ebisu/credentials";
/// Directory of the server's socket and pid file.
pub const RUN_DIR: &str = "/run/mysqld";

/// Directory inside the data directory where a server's data is set aside
/// (never deleted) before it is re-seeded; servers and backup tools are
/// told to ignore it.
pub const KEPT_DIR: &str = ".ebisu-kept";
/// File in the data directory asking the next init to set the data aside
/// and re-seed (written by the agent on the operator's request).
pub const RESEED_MARKER: &str = "ebisu-reseed-requested";

/// ConfigMap keys: my.cnf parts.
pub const CONFIG_COMMON: &str = "common.cnf";
/// Part added on the instance that bootstraps or currently is the primary.
pub const CONFIG_PRIMARY: &str = "primary.cnf";
/// Part added on replicas.
pub const CONFIG_REPLICA: &str = "replica.cnf";
/// ConfigMap key: a restore's replay order (`agent::ReplayOrder`, JSON),
/// while it is not done.
pub const CONFIG_REPLAY: &str = "replay";

/// Secret keys of the generated credentials.
pub mod secret_keys {
    /// Password of `root@localhost`.
    pub const ROOT_PASSWORD: &str = "root-password";
    /// User the operator connects as.
    pub const OPERATOR_USER: &str = "operator-user";
    /// Password of the operator user.
    pub const OPERATOR_PASSWORD: &str = "operator-password";
    /// User replicas replicate as.
    pub const REPLICATION_USER: &str = "replication-user";
    /// Password of the replication user.
    pub const REPLICATION_PASSWORD: &str = "replication-password";
    /// User the sidecar takes backups as when serving a clone.
    pub const CLONE_USER: &str = "clone-user";
    /// Password of the clone user.
    pub const CLONE_PASSWORD: &str = "clone-password";
    /// Bearer token a peer must present to receive a clone stream.
    pub const CLONE_TOKEN: &str = "clone-token";
    /// User for monitoring (status and metrics).
    pub const MONITOR_USER: &str = "monitor-user";
    /// Password of the monitoring user.
    pub const MONITOR_PASSWORD: &str = "monitor-password";

    /// Password of the application's owner account (`spec.database`): only
    /// for a cluster that declares one, so not in [`ALL`].
    pub const APP_PASSWORD: &str = "app-password";

    /// Every key, in the order they are generated.
    pub const ALL: [&str; 10] = [
        ROOT_PASSWORD,
        OPERATOR_USER,
        OPERATOR_PASSWORD,
        REPLICATION_USER,
        REPLICATION_PASSWORD,
        CLONE_USER,
        CLONE_PASSWORD,
        CLONE_TOKEN,
        MONITOR_USER,
        MONITOR_PASSWORD,
    ];
}

/// Keys of the `<name>-app` Secret (a `kubernetes.io/basic-auth` Secret,
/// named as CloudNativePG names its `-app` Secret's keys).
pub mod app_keys {
    /// The owner account.
    pub const USERNAME: &str = "username";
    /// Its password.
    pub const PASSWORD: &str = "password";
    /// The database.
    pub const DBNAME: &str = "dbname";
    /// The primary Service's host name (reads and writes).
    pub const HOST: &str = "host";
    /// The read Service's host name (replicas; reads only).
    pub const READ_HOST: &str = "read-host";
    /// The MySQL port of both.
    pub const PORT: &str = "port";
    /// `mysql://user:password@host:port/dbname`, the primary.
    pub const URI: &str = "uri";
    /// The same through the read Service.
    pub const READ_URI: &str = "read-uri";
    /// `jdbc:mysql://` (or `jdbc:mariadb://`) `host:port/dbname`, the primary.
    pub const JDBC_URI: &str = "jdbc-uri";
}

/// Label on the MySQLBackups a schedule made (retention deletes only those).
pub const LABEL_SCHEDULED: &str = "ebisu.dev/scheduled";

/// Annotation on the credentials Secret and on every data volume claim,
/// set once the cluster has had a primary: from then on its data exists,
/// so no instance may bootstrap an empty server and the credentials are
/// never generated again. It outlives the MySQLCluster (claims and Secret
/// are kept when it is deleted), so a re-created cluster knows too.
pub const ANNOTATION_INITIALIZED: &str = "ebisu.dev/initialized";

/// Pod template annotation: a digest of the my.cnf parts the servers read at
/// start, so that changed server settings make a new StatefulSet revision
/// (which a rolling update brings to every server).
pub const ANNOTATION_CONFIG_DIGEST: &str = "ebisu.dev/config-digest";

/// How a value of the credentials Secret is read, by the operator and the
/// sidecar alike: UTF-8 with one trailing newline removed (files written
/// by editors and `kubectl create secret --from-file` often end with one);
/// `None` when it is empty or not UTF-8.
pub fn secret_value(raw: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(raw).ok()?;
    let text = text
        .strip_suffix("\r\n")
        .or_else(|| text.strip_suffix('\n'))
        .unwrap_or(text);
    (!text.is_empty()).then(|| text.to_owned())
}

/// Headless Service (per-pod DNS) and StatefulSet name.
pub fn headless_service(cluster: &str) -> String {
    cluster.to_owned()
}

/// StatefulSet name.
pub fn statefulset(cluster: &str) -> String {
    cluster.to_owned()
}

/// Read-write Service selecting the primary.
pub fn primary_service(cluster: &str) -> String {
    format!("{cluster}-primary")
}

/// Read-only Service selecting the replicas.
pub fn read_service(cluster: &str) -> String {
    format!("{cluster}-read")
}

/// The Secret an application connects with (`spec.database`).
pub fn app_secret(cluster: &str) -> String {
    format!("{cluster}-app")
}

/// The copy of a cluster's credentials a MySQLBackup keeps (and owns).
pub fn backup_credentials(backup: &str) -> String {
    format!("{backup}-backup-credentials")
}

/// Generated credentials.
pub fn credentials_secret(cluster: &str) -> String {
    format!("{cluster}-credentials")
}

/// my.cnf parts.
pub fn config_map(cluster: &str) -> String {
    format!("{cluster}-config")
}

/// NetworkPolicy of the instance pods.
pub fn network_policy(cluster: &str) -> String {
    format!("{cluster}-instances")
}

/// PodDisruptionBudget.
pub fn pod_disruption_budget(cluster: &str) -> String {
    cluster.to_owned()
}

/// PodDisruptionBudget that holds the primary's eviction until the primary
/// has moved (clusters of two or more instances).
pub fn primary_pod_disruption_budget(cluster: &str) -> String {
    format!("{cluster}-primary")
}

/// Operator-managed StorageClass (cluster-scoped, so the namespace is part of the name).
pub fn storage_class(namespace: &str, cluster: &str) -> String {
    format!("ebisu-{namespace}-{cluster}")
}

/// The Lease naming the cluster's primary pod: the operator names the
/// holder, and the holder's agent renews it while its server answers and
/// fences its server when it cannot.
pub fn primary_lease(cluster: &str) -> String {
    format!("{cluster}-primary")
}

/// The ServiceAccount the instances' agents run as (it may read and renew
/// the primary Lease, nothing else).
pub fn agent_service_account(cluster: &str) -> String {
    format!("{cluster}-agent")
}

/// Pod of instance `ordinal`.
pub fn pod(cluster: &str, ordinal: u32) -> String {
    format!("{cluster}-{ordinal}")
}

/// The data volume claim the StatefulSet makes for instance `ordinal`.
pub fn data_claim(cluster: &str, ordinal: u32) -> String {
    format!("{DATA_VOLUME}-{}", pod(cluster, ordinal))
}

/// The ordinal of `cluster`'s data claim `claim`, when it is one.
pub fn data_claim_ordinal(cluster: &str, claim: &str) -> Option<u32> {
    let rest = claim.strip_prefix(DATA_VOLUME)?.strip_prefix('-')?;
    let ordinal = ordinal_of(rest)?;
    (rest == pod(cluster, ordinal)).then_some(ordinal)
}

/// Stable DNS name of instance `ordinal` through the headless Service.
pub fn pod_host(cluster: &str, namespace: &str, ordinal: u32) -> String {
    format!(
        "{}.{}.{namespace}.svc.cluster.local",
        pod(cluster, ordinal),
        headless_service(cluster)
    )
}

/// Labels that select every instance pod of a cluster (the StatefulSet selector).
pub fn selector_labels(cluster: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".to_owned(), APP_NAME.to_owned()),
        ("app.kubernetes.io/instance".to_owned(), cluster.to_owned()),
        (LABEL_CLUSTER.to_owned(), cluster.to_owned()),
    ])
}

/// Labels on every object ebisu creates for a cluster.
pub fn common_labels(cluster: &str) -> BTreeMap<String, String> {
    let mut labels = selector_labels(cluster);
    labels.insert(LABEL_MANAGED_BY.to_owned(), MANAGED_BY.to_owned());
    labels.insert(
        "app.kubernetes.io/component".to_owned(),
        "database".to_owned(),
    );
    labels.insert("app.kubernetes.io/part-of".to_owned(), "ebisu".to_owned());
    labels
}

/// Renders labels as a selector string (`k=v,k=v`), for the scale subresource and list calls.
pub fn selector_string(labels: &BTreeMap<String, String>) -> String {
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// The ordinal at the end of a StatefulSet pod name (`orders-2` -> 2).
pub fn ordinal_of(pod_name: &str) -> Option<u32> {
    let (set_name, suffix) = pod_name.rsplit_once('-')?;
    // The StatefulSet name is a DNS label: it cannot be empty or end with '-'.
    if set_name.is_empty() || set_name.ends_with('-') {
        return None;
    }
    if suffix.is_empty() || !suffix.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // A leading zero never appears in StatefulSet pod names.
    if suffix.len() > 1 && suffix.starts_with('0') {
        return None;
    }
    suffix.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_values_lose_one_trailing_newline_and_empty_ones_are_none() {
        assert_eq!(secret_value(b"s3cret\n").as_deref(), Some("s3cret"));
        assert_eq!(secret_value(b"s3cret\r\n").as_deref(), Some("s3cret"));
        assert_eq!(secret_value(b"s3cret").as_deref(), Some("s3cret"));
        assert_eq!(secret_value(b"two\n\n").as_deref(), Some("two\n"));
        assert_eq!(secret_value(b"\n"), None);
        assert_eq!(secret_value(b""), None);
        assert_eq!(secret_value(&[0xff, 0xfe]), None);
    }

    #[test]
    fn ordinal_is_the_numeric_suffix() {
        assert_eq!(ordinal_of("orders-0"), Some(0));
        assert_eq!(ordinal_of("my-orders-12"), Some(12));
    }

    #[test]
    fn names_without_an_ordinal_have_none() {
        for name in [
            "orders",
            "orders-",
            "orders-a1",
            "orders-01",
            "orders--1",
            "-",
        ] {
            assert_eq!(ordinal_of(name), None, "{name}");
        }
        assert_eq!(ordinal_of("orders-99999999999"), None);
    }

    #[test]
    fn pod_host_goes_through_the_headless_service() {
        assert_eq!(
            pod_host("orders", "shop", 1),
            "orders-1.orders.shop.svc.cluster.local"
        );
    }

    #[test]
    fn common_labels_contain_the_selector() {
        let common = common_labels("orders");
        for (k, v) in selector_labels("orders") {
            assert_eq!(common.get(&k), Some(&v));
        }
        assert_eq!(
            selector_string(&selector_labels("orders")),
            "app.kubernetes.io/instance=orders,app.kubernetes.io/name=mysql,ebisu.dev/cluster=orders"
        );
    }

    #[test]
    fn data_claims_are_named_after_their_pod_and_read_back_for_their_cluster_only() {
        assert_eq!(data_claim("orders", 2), "data-orders-2");
        assert_eq!(data_claim_ordinal("orders", "data-orders-2"), Some(2));
        assert_eq!(data_claim_ordinal("orders", "data-orders-eu-2"), None);
        assert_eq!(data_claim_ordinal("orders-eu", "data-orders-2"), None);
        assert_eq!(data_claim_ordinal("orders", "logs-orders-2"), None);
    }
}
