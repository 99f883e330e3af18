//! Which instance a backup is taken from and how its snapshot is tagged:
//! pure functions over the servers as observed.

use std::collections::BTreeMap;

use crate::model::ServerState;

/// How the source is kept still while its snapshot is started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pause {
    /// A replica's applier stops (its receiver keeps acknowledging the
    /// primary): writes on the primary are never blocked.
    Applier,
    /// The only instance holds a global read lock for the call.
    Writes,
}

/// The instance to take a backup from: a caught-up replica (the highest
/// ordinal, which a switchover picks last), or the primary of a cluster
/// with no other instance; otherwise why there is none yet.
pub fn source<'a>(
    servers: &'a [ServerState],
    primary: Option<&str>,
) -> Result<(&'a ServerState, Pause), String> {
    let primary = primary
        .and_then(|p| servers.iter().find(|s| s.pod == p))
        .filter(|p| p.answered() && !p.read_only)
        .ok_or_else(|| "the cluster has no writable primary".to_owned())?;
    let others: Vec<&ServerState> = servers.iter().filter(|s| s.pod != primary.pod).collect();
    if others.is_empty() {
        return Ok((primary, Pause::Writes));
    }
    let mut why = Vec::new();
    let mut caught_up: Vec<&ServerState> = Vec::new();
    for server in others {
        match unfit(server, primary) {
            Some(reason) => why.push(format!("{} {reason}", server.pod)),
            None => caught_up.push(server),
        }
    }
    caught_up
        .into_iter()
        .max_by_key(|s| ordinal(&s.pod))
        .map(|s| (s, Pause::Applier))
        .ok_or_else(|| {
            format!(
                "no replica is caught up with the primary: {}",
                why.join("; ")
            )
        })
}

fn unfit(server: &ServerState, primary: &ServerState) -> Option<&'static str> {
    if !server.answered() {
        return Some("does not answer");
    }
    if server.terminating || server.seed_pending {
        return Some("is restarting or being seeded");
    }
    if !server.read_only {
        return Some("is writable");
    }
    let Some(replication) = &server.replication else {
        return Some("does not replicate");
    };
    if replication.source_host != primary.host {
        return Some("replicates from another server");
    }
    if !replication.io_running || !replication.sql_running {
        return Some("has replication stopped");
    }
    if replication.lag_seconds != Some(0) {
        return Some("lags behind");
    }
    None
}

fn ordinal(pod: &str) -> u32 {
    pod.rsplit('-')
        .next()
        .and_then(|o| o.parse().ok())
        .unwrap_or(0)
}

/// EC2 allows tag values of at most this many characters.
pub const MAX_TAG_VALUE: usize = 256;

/// What a backup's snapshot is tagged with.
#[derive(Debug)]
pub struct SnapshotTags<'a> {
    /// The MySQLCluster.
    pub cluster: &'a str,
    /// Its namespace.
    pub namespace: &'a str,
    /// The instance it was taken from.
    pub pod: &'a str,
    /// `mariadb` or `mysql`.
    pub flavor: &'a str,
    /// The server version.
    pub version: &'a str,
    /// The MySQLBackup.
    pub backup: &'a str,
}

/// The tag used to find a cluster's snapshots (`<namespace>/<name>`).
pub const CLUSTER_TAG: &str = "ebisu.dev/cluster";

impl SnapshotTags<'_> {
    /// The tags, each value cut to what EC2 accepts.
    pub fn tags(&self) -> BTreeMap<String, String> {
        let cut = |v: &str| v.chars().take(MAX_TAG_VALUE).collect::<String>();
        [
            ("Name", format!("{}/{}", self.namespace, self.backup)),
            (CLUSTER_TAG, format!("{}/{}", self.namespace, self.cluster)),
            ("ebisu.dev/namespace", self.namespace.to_owned()),
            ("ebisu.dev/instance", self.pod.to_owned()),
            ("ebisu.dev/flavor", self.flavor.to_owned()),
            ("ebisu.dev/server-version", self.version.to_owned()),
            (ebisu_api::names::TAG_BACKUP, self.backup.to_owned()),
            ("ebisu.dev/managed-by", "ebisu".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), cut(&v)))
        .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Answer, Replication};

    fn server(pod: &str, f: impl FnOnce(&mut ServerState)) -> ServerState {
        let mut s = ServerState::unobserved(pod, &format!("{pod}.db"));
        s.answer = Answer::Answered;
        s.seed_pending = false;
        s.relay_log_unread = false;
        s.read_only = true;
        s.replication = Some(Replication {
            source_host: "db-0.db".to_owned(),
            io_running: true,
            sql_running: true,
            io_errno: 0,
            io_error: None,
            sql_error: None,
            lag_seconds: Some(0),
            received: None,
        });
        f(&mut s);
        s
    }

    fn primary() -> ServerState {
        server("db-0", |s| {
            s.read_only = false;
            s.replication = None;
        })
    }

    #[test]
    fn the_highest_caught_up_replica_is_the_source() {
        let servers = [primary(), server("db-1", |_| {}), server("db-2", |_| {})];
        let (s, pause) = source(&servers, Some("db-0")).unwrap();
        assert_eq!((s.pod.as_str(), pause), ("db-2", Pause::Applier));
    }

    #[test]
    fn a_replica_that_is_not_caught_up_is_passed_over() {
        type Unfit = fn(&mut ServerState);
        let cases: [(&str, Unfit); 6] = [
            ("lags", |s| {
                s.replication.as_mut().unwrap().lag_seconds = Some(3)
            }),
            ("stopped", |s| {
                s.replication.as_mut().unwrap().sql_running = false
            }),
            ("silent", |s| s.answer = Answer::Silent),
            ("seeding", |s| s.seed_pending = true),
            ("writable", |s| s.read_only = false),
            ("elsewhere", |s| {
                s.replication.as_mut().unwrap().source_host = "x".to_owned()
            }),
        ];
        for (what, unfit) in cases {
            let servers = [primary(), server("db-1", |_| {}), server("db-2", unfit)];
            let (s, _) = source(&servers, Some("db-0")).unwrap();
            assert_eq!(s.pod, "db-1", "db-2 {what}");
            let servers = [primary(), server("db-2", unfit)];
            let why = source(&servers, Some("db-0")).unwrap_err();
            assert!(why.starts_with("no replica is caught up"), "{what}: {why}");
        }
    }

    #[test]
    fn a_lone_primary_is_backed_up_under_a_read_lock() {
        let servers = [primary()];
        let (s, pause) = source(&servers, Some("db-0")).unwrap();
        assert_eq!((s.pod.as_str(), pause), ("db-0", Pause::Writes));
    }

    #[test]
    fn no_backup_without_a_writable_primary() {
        let servers = [server("db-1", |_| {})];
        assert!(source(&servers, None).is_err());
        let servers = [server("db-0", |s| s.answer = Answer::Silent)];
        assert!(source(&servers, Some("db-0")).is_err());
    }

    #[test]
    fn tag_values_fit_ec2() {
        let long = "x".repeat(300);
        let tags = SnapshotTags {
            cluster: "shop",
            namespace: "prod",
            pod: "shop-2",
            flavor: "mariadb",
            version: &long,
            backup: "nightly",
        }
        .tags();
        assert_eq!(tags["ebisu.dev/cluster"], "prod/shop");
        assert_eq!(tags["ebisu.dev/server-version"].len(), MAX_TAG_VALUE);
    }
}
