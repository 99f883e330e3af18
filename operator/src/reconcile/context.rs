//! What every reconcile shares: the API and EC2 clients, the Event
//! recorder, the HTTP client for the agents, the fast primary probe, the
//! latest volume looks, and the index of which nodes concern which
//! cluster. `runtime` builds it once; nothing below `reconcile` sees it.

use std::{
    collections::{BTreeSet, HashMap},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use ebisu_api::MySQLCluster;
use k8s_openapi::{api::coordination::v1::Lease, jiff::SignedDuration};
use kube::{
    Client,
    runtime::{
        events::{Recorder, Reporter},
        reflector::ObjectRef,
    },
};

use crate::{
    clustering::{observe, prober::Prober},
    model::LeaseView,
    validate::OperatorSettings,
    volumes::VolumeLooks,
};

/// What every reconcile shares.
#[derive(Clone)]
pub struct Context {
    /// API client.
    pub client: Client,
    /// Operator-wide settings.
    pub settings: OperatorSettings,
    /// Event recorder.
    pub recorder: Recorder,
    /// HTTP client for the instance agents, shared so its connections are reused.
    pub agents: reqwest::Client,
    /// The fast primary probe.
    pub prober: Arc<Prober>,
    /// EC2, for the volumes and fencing.
    pub ec2: aws_sdk_ec2::Client,
    /// S3, for the binary log archive a restore replays.
    pub s3: aws_sdk_s3::Client,
    /// The latest look at each cluster's volumes.
    pub volume_looks: Arc<VolumeLooks>,
    /// Which nodes concern which cluster.
    pub node_index: Arc<NodeIndex>,
    /// When each cluster's primary Lease last changed, by this process's clock.
    pub lease_clock: Arc<LeaseClock>,
    /// Whether this process can still prove it leads.
    pub leader: Arc<LeaderClock>,
    /// The restore verifications' tasks in flight.
    pub verify_jobs: Arc<crate::verify::Jobs>,
    /// Whose rolling update it is: one cluster at a time.
    pub rollout_turns: Arc<super::rollout_turn::RolloutTurns>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// The clusters the prober wants reconciled.
pub type ProbeTriggers = futures::channel::mpsc::UnboundedReceiver<ObjectRef<MySQLCluster>>;

impl Context {
    /// A context whose Events are reported as coming from `instance`, and
    /// the stream of reconciles its prober asks for.
    pub fn new(
        client: Client,
        ec2: aws_sdk_ec2::Client,
        s3: aws_sdk_s3::Client,
        settings: OperatorSettings,
        instance: Option<String>,
    ) -> (Self, ProbeTriggers) {
        let reporter = Reporter {
            controller: ebisu_api::names::FIELD_MANAGER.to_owned(),
            instance,
        };
        let recorder = Recorder::new(client.clone(), reporter);
        // A silent agent must cost a failover check little: connecting inside a
        // cluster takes milliseconds, so half a second means it is gone.
        let agents = reqwest::Client::builder()
            .connect_timeout(observe::CONNECT_TIMEOUT)
            .build()
            .unwrap_or_default();
        let (prober, triggers) = Prober::new(agents.clone());
        (
            Self {
                client,
                settings,
                recorder,
                agents,
                prober,
                ec2,
                s3,
                volume_looks: Arc::default(),
                node_index: Arc::default(),
                lease_clock: Arc::default(),
                leader: Arc::default(),
                verify_jobs: Arc::default(),
                rollout_turns: Arc::default(),
            },
            triggers,
        )
    }

    /// Forgets a cluster that is gone or whose spec cannot be honoured: no
    /// probe of its primary, no node that wakes it, no rolling-update turn.
    pub fn forget(&self, cluster: &ObjectRef<MySQLCluster>) {
        self.prober.forget(cluster);
        self.node_index.forget(cluster);
        self.lease_clock.forget(cluster);
        let namespace = cluster.namespace.as_deref().unwrap_or_default();
        self.rollout_turns
            .release(&format!("{namespace}/{}", cluster.name));
    }
}

/// When this process first saw each cluster's primary Lease at its current
/// version: how long its holder has not renewed it, by this clock alone.
#[derive(Debug, Default)]
pub struct LeaseClock {
    seen: Mutex<HashMap<ObjectRef<MySQLCluster>, (String, Instant)>>,
}

impl LeaseClock {
    /// Records a look at the Lease (the watch of every cluster's Lease sees
    /// each renewal as it happens); returns it as decisions take it.
    pub fn view(
        &self,
        cluster: &ObjectRef<MySQLCluster>,
        lease: &Lease,
        now: Instant,
    ) -> LeaseView {
        let version = lease.metadata.resource_version.clone().unwrap_or_default();
        let since = self.seen.lock().map_or(now, |mut seen| {
            let entry = seen
                .entry(cluster.clone())
                .or_insert_with(|| (version.clone(), now));
            if entry.0 != version {
                *entry = (version.clone(), now);
            }
            entry.1
        });
        let spec = lease.spec.clone().unwrap_or_default();
        LeaseView {
            holder: spec.holder_identity.filter(|h| !h.is_empty()),
            version,
            unrenewed_for: SignedDuration::try_from(now.saturating_duration_since(since))
                .unwrap_or(SignedDuration::MAX),
            duration: SignedDuration::from_secs(i64::from(
                spec.lease_duration_seconds.unwrap_or(0).max(0),
            )),
        }
    }

    /// Forgets a cluster.
    pub fn forget(&self, cluster: &ObjectRef<MySQLCluster>) {
        if let Ok(mut seen) = self.seen.lock() {
            seen.remove(cluster);
        }
    }
}

/// Whether this operator process can still prove it leads: the last time
/// it saw its leader Lease renewed for it, plus the Lease's duration less
/// a margin. A process that was paused (SIGSTOP, a frozen machine) finds
/// it out of date when it resumes and acts on no server until it has seen
/// a renewal again; another operator may be acting meanwhile.
#[derive(Debug)]
pub struct LeaderClock {
    confirmed: Mutex<Option<Instant>>,
    valid_for: Duration,
}

impl Default for LeaderClock {
    /// Valid for ever: for a process that runs without leader election.
    fn default() -> Self {
        Self {
            confirmed: Mutex::new(None),
            valid_for: Duration::MAX,
        }
    }
}

impl LeaderClock {
    /// A clock for a Lease renewed at least every `valid_for`.
    pub fn new(valid_for: Duration, now: Instant) -> Self {
        Self {
            confirmed: Mutex::new(Some(now)),
            valid_for,
        }
    }

    /// The Lease was seen renewed for this process at `now`.
    pub fn confirm(&self, now: Instant) {
        if let Ok(mut confirmed) = self.confirmed.lock() {
            *confirmed = Some(now);
        }
    }

    /// Whether this process may act at `now`.
    pub fn valid(&self, now: Instant) -> bool {
        if self.valid_for == Duration::MAX {
            return true;
        }
        self.confirmed
            .lock()
            .ok()
            .and_then(|c| *c)
            .is_some_and(|at| now.saturating_duration_since(at) < self.valid_for)
    }
}

/// The nodes each cluster's pods run on (and the nodes it fenced), so that
/// a change to a node (a cordon, its return) wakes the clusters it
/// concerns. Written by each reconcile.
#[derive(Debug, Default)]
pub struct NodeIndex {
    nodes: Mutex<HashMap<ObjectRef<MySQLCluster>, BTreeSet<String>>>,
}

impl NodeIndex {
    /// `cluster` is concerned by `nodes` from now on.
    pub fn set(&self, cluster: ObjectRef<MySQLCluster>, nodes: BTreeSet<String>) {
        if let Ok(mut index) = self.nodes.lock() {
            index.insert(cluster, nodes);
        }
    }

    /// Forgets `cluster`.
    pub fn forget(&self, cluster: &ObjectRef<MySQLCluster>) {
        if let Ok(mut index) = self.nodes.lock() {
            index.remove(cluster);
        }
    }

    /// The clusters a change to `node` concerns.
    pub fn clusters_on(&self, node: &str) -> Vec<ObjectRef<MySQLCluster>> {
        self.nodes.lock().map_or_else(
            |_| Vec::new(),
            |index| {
                index
                    .iter()
                    .filter(|(_, nodes)| nodes.contains(node))
                    .map(|(cluster, _)| cluster.clone())
                    .collect()
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(version: &str, holder: &str) -> Lease {
        Lease {
            metadata: kube::api::ObjectMeta {
                resource_version: Some(version.to_owned()),
                ..Default::default()
            },
            spec: Some(k8s_openapi::api::coordination::v1::LeaseSpec {
                holder_identity: Some(holder.to_owned()),
                lease_duration_seconds: Some(2),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn a_lease_is_unrenewed_since_its_version_was_first_seen_by_this_clock() {
        let clock = LeaseClock::default();
        let key = ObjectRef::new("orders").within("shop");
        let t = Instant::now();
        let first = clock.view(&key, &lease("5", "db-0"), t);
        assert_eq!(first.unrenewed_for, SignedDuration::ZERO);
        assert_eq!(first.holder.as_deref(), Some("db-0"));
        assert_eq!(first.duration, SignedDuration::from_secs(2));
        let later = clock.view(&key, &lease("5", "db-0"), t + Duration::from_secs(3));
        assert_eq!(later.unrenewed_for, SignedDuration::from_secs(3));
        let renewed = clock.view(&key, &lease("6", "db-0"), t + Duration::from_secs(4));
        assert_eq!(renewed.unrenewed_for, SignedDuration::ZERO);
        clock.forget(&key);
        let again = clock.view(&key, &lease("6", "db-0"), t + Duration::from_secs(9));
        assert_eq!(
            again.unrenewed_for,
            SignedDuration::ZERO,
            "a restart counts from now"
        );
    }

    #[test]
    fn a_leader_that_saw_no_renewal_for_too_long_may_not_act() {
        let t = Instant::now();
        let clock = LeaderClock::new(Duration::from_secs(13), t);
        assert!(clock.valid(t + Duration::from_secs(12)));
        assert!(!clock.valid(t + Duration::from_secs(20)), "after a pause");
        clock.confirm(t + Duration::from_secs(21));
        assert!(clock.valid(t + Duration::from_secs(22)));
        assert!(LeaderClock::default().valid(t + Duration::from_secs(1_000_000)));
    }

    #[test]
    fn a_node_wakes_the_clusters_on_it_until_they_are_forgotten() {
        let index = NodeIndex::default();
        let orders = ObjectRef::new("orders").within("shop");
        let stock = ObjectRef::new("stock").within("shop");
        index.set(orders.clone(), ["node-a1".to_owned()].into());
        index.set(
            stock.clone(),
            ["node-a1".to_owned(), "node-b1".to_owned()].into(),
        );
        assert_eq!(index.clusters_on("node-b1"), vec![stock.clone()]);
        assert_eq!(index.clusters_on("node-a1").len(), 2);
        index.set(orders.clone(), ["node-c1".to_owned()].into());
        assert_eq!(index.clusters_on("node-a1"), vec![stock.clone()]);
        index.forget(&stock);
        assert!(index.clusters_on("node-b1").is_empty());
    }
}
