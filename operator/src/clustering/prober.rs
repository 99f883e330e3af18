//! The fast primary probe. A settled cluster is reconciled only every half
//! minute, far too seldom to notice a lost primary; so between reconciles
//! the operator asks every cluster's primary agent twice a second whether
//! its server answers (`/readyz`: the agent runs `SELECT 1` over the local
//! socket). It asks the agent rather than the server so that the probes
//! never count as aborted connections on the server, which blocks a host
//! after `max_connect_errors` of them. When a primary stops answering, its
//! cluster is reconciled at once and told since when the probe found it
//! silent; the reconcile's own look decides. The agent's answer also says
//! whether a semi-sync primary still waits for acknowledgements: when that
//! changes the cluster is reconciled at once too, because a failover is
//! refused after a fallback only if the operator saw the fallback before
//! the primary was lost. It also says whether the server takes writes: a
//! primary fenced by its own agent (it could not renew its Lease for a
//! while) is reconciled, and made writable again, at once, and again each
//! second while it stays read-only. The servers
//! that did not answer the last reconcile (an old primary cut off, a
//! frozen replica) are probed as often: when one answers again its
//! cluster is reconciled at once, so a returning old primary is fenced
//! (and a returning replica repaired) within a second.
//!
//! It never acts on a server: it only triggers reconciles.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use ebisu_api::{
    MySQLCluster,
    agent::{
        HEADER_SEMI_SYNC, HEADER_SERVER, PATH_READYZ, SEMI_SYNC_FALLEN_BACK, SERVER_READ_ONLY,
        SERVER_WRITABLE,
    },
    names::AGENT_PORT,
};
use futures::channel::mpsc;
use k8s_openapi::jiff::Timestamp;
use kube::runtime::reflector::ObjectRef;

/// How often each primary is probed.
pub const PERIOD: Duration = Duration::from_millis(500);
/// How long the answer may take.
pub const TIMEOUT: Duration = Duration::from_millis(500);

/// One cluster's primary as probed.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Probed {
    /// The primary's pod IP, when there is a primary to probe.
    ip: Option<String>,
    silent_since: Option<Timestamp>,
    /// The last answer said semi-sync had fallen back to asynchronous.
    fallen_back: bool,
    /// The last answer said the server takes writes.
    writable: Option<bool>,
    /// When a read-only answer last triggered a reconcile.
    read_only_trigger: Option<Timestamp>,
    /// The pod IPs of the other servers that did not answer the last
    /// reconcile; one is dropped once it answers (and has triggered one).
    suspects: Vec<String>,
}

/// What one probe found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Probe {
    /// No answer in time, or the agent said the server does not answer.
    Silent,
    /// The server answers; `fallen_back`: its semi-sync source side stopped
    /// waiting for acknowledgements; `writable`: whether it takes writes
    /// (when the agent said).
    Answered {
        fallen_back: bool,
        writable: Option<bool>,
    },
}

/// The primaries being probed and the channel that triggers reconciles.
#[derive(Debug)]
pub struct Prober {
    targets: Mutex<HashMap<ObjectRef<MySQLCluster>, Probed>>,
    trigger: mpsc::UnboundedSender<ObjectRef<MySQLCluster>>,
    agents: reqwest::Client,
}

impl Prober {
    /// A prober and the stream of clusters it wants reconciled.
    pub fn new(
        agents: reqwest::Client,
    ) -> (Arc<Self>, mpsc::UnboundedReceiver<ObjectRef<MySQLCluster>>) {
        let (trigger, triggered) = mpsc::unbounded();
        (
            Arc::new(Self {
                targets: Mutex::new(HashMap::new()),
                trigger,
                agents,
            }),
            triggered,
        )
    }

    /// From now on probes `cluster`'s primary at `primary_ip` (none: no
    /// primary to probe) and the silent servers at `suspects`.
    pub fn watch(
        &self,
        cluster: ObjectRef<MySQLCluster>,
        primary_ip: Option<String>,
        suspects: Vec<String>,
    ) {
        let Ok(mut targets) = self.targets.lock() else {
            return;
        };
        let target = targets.entry(cluster).or_insert_with(|| Probed {
            ip: None,
            silent_since: None,
            fallen_back: false,
            writable: None,
            read_only_trigger: None,
            suspects: Vec::new(),
        });
        target.suspects = suspects;
        if target.ip != primary_ip {
            target.silent_since = None;
            target.fallen_back = false;
            target.writable = None;
            target.read_only_trigger = None;
        }
        target.ip = primary_ip;
    }

    /// Asks for a reconcile of `cluster` (news from outside the clustering
    /// pass, such as a finished look at its volumes).
    pub fn trigger(&self, cluster: ObjectRef<MySQLCluster>) {
        let _ = self.trigger.unbounded_send(cluster);
    }

    /// Forgets `cluster` (deleted, or its spec cannot be honoured).
    pub fn forget(&self, cluster: &ObjectRef<MySQLCluster>) {
        if let Ok(mut targets) = self.targets.lock() {
            targets.remove(cluster);
        }
    }

    /// Since when the probe has found `cluster`'s primary silent, if it has.
    pub fn silent_since(&self, cluster: &ObjectRef<MySQLCluster>) -> Option<Timestamp> {
        self.targets
            .lock()
            .ok()?
            .get(cluster)
            .and_then(|t| t.silent_since)
    }

    /// Probes every target, forever.
    pub async fn run(self: Arc<Self>) {
        let mut tick = tokio::time::interval(PERIOD);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let (targets, suspects): (Vec<_>, Vec<_>) = match self.targets.lock() {
                Ok(targets) => (
                    targets
                        .iter()
                        .filter_map(|(c, t)| Some((c.clone(), t.ip.clone()?)))
                        .collect(),
                    targets
                        .iter()
                        .flat_map(|(c, t)| t.suspects.iter().map(|ip| (c.clone(), ip.clone())))
                        .collect(),
                ),
                Err(_) => return,
            };
            let agents = &self.agents;
            let probes = targets.into_iter().map(|(cluster, ip)| async move {
                let started = Timestamp::now();
                let probe = probe(agents, &ip).await;
                (cluster, ip, probe, started)
            });
            let suspects = suspects.into_iter().map(|(cluster, ip)| async move {
                let probe = probe(agents, &ip).await;
                (cluster, ip, probe)
            });
            let (probes, suspects) = futures::future::join(
                futures::future::join_all(probes),
                futures::future::join_all(suspects),
            )
            .await;
            for (cluster, ip, probe, started) in probes {
                self.record(cluster, &ip, probe, started);
            }
            for (cluster, ip, probe) in suspects {
                self.record_suspect(cluster, &ip, probe);
            }
        }
    }

    /// A silent server that answers again: its cluster is reconciled once.
    fn record_suspect(&self, cluster: ObjectRef<MySQLCluster>, ip: &str, probe: Probe) {
        if probe == Probe::Silent {
            return;
        }
        let Ok(mut targets) = self.targets.lock() else {
            return;
        };
        let Some(target) = targets.get_mut(&cluster) else {
            return;
        };
        let before = target.suspects.len();
        target.suspects.retain(|s| s != ip);
        if target.suspects.len() < before {
            tracing::info!(cluster = %cluster, server = ip, "a silent server answers again");
            let _ = self.trigger.unbounded_send(cluster);
        }
    }

    fn record(&self, cluster: ObjectRef<MySQLCluster>, ip: &str, probe: Probe, started: Timestamp) {
        let Ok(mut targets) = self.targets.lock() else {
            return;
        };
        let Some(target) = targets
            .get_mut(&cluster)
            .filter(|t| t.ip.as_deref() == Some(ip))
        else {
            return;
        };
        match probe {
            Probe::Answered {
                fallen_back,
                writable,
            } => {
                target.silent_since = None;
                let mut changed = false;
                if fallen_back != target.fallen_back {
                    target.fallen_back = fallen_back;
                    if fallen_back {
                        tracing::info!(cluster = %cluster, primary = ip, "primary stopped waiting for replica acknowledgements");
                    }
                    changed = true;
                }
                // A primary fenced behind the operator's back (by its own
                // agent, say) is made writable again at once, not at the
                // next period; the first answer only sets the record.
                let mut became_read_only = false;
                if writable.is_some() && writable != target.writable {
                    became_read_only = target.writable.is_some() && writable == Some(false);
                    changed |= target.writable.is_some();
                    target.writable = writable;
                }
                // Still read-only a second after that triggered a reconcile:
                // its agent may have fenced it again right after the
                // operator made it writable (the answer in between was
                // missed), so it is looked at again, once a second.
                if writable == Some(false) {
                    let again = target.read_only_trigger.is_some_and(|at| {
                        started.duration_since(at)
                            >= k8s_openapi::jiff::SignedDuration::from_secs(1)
                    });
                    if became_read_only || again {
                        changed = true;
                        target.read_only_trigger = Some(started);
                    }
                } else {
                    target.read_only_trigger = None;
                }
                if changed {
                    let _ = self.trigger.unbounded_send(cluster);
                }
            }
            Probe::Silent if target.silent_since.is_none() => {
                target.silent_since = Some(started);
                tracing::info!(cluster = %cluster, primary = ip, "primary stopped answering the probe");
                let _ = self.trigger.unbounded_send(cluster);
            }
            Probe::Silent => {}
        }
    }
}

/// Asks the agent at `ip` whether its server answers, in time, and
/// whether it still waits for semi-sync acknowledgements.
async fn probe(agents: &reqwest::Client, ip: &str) -> Probe {
    match agents
        .get(format!("http://{ip}:{AGENT_PORT}{PATH_READYZ}"))
        .timeout(TIMEOUT)
        .send()
        .await
    {
        Ok(response) if response.status().is_success() => Probe::Answered {
            fallen_back: response
                .headers()
                .get(HEADER_SEMI_SYNC)
                .is_some_and(|v| v.as_bytes() == SEMI_SYNC_FALLEN_BACK.as_bytes()),
            writable: response.headers().get(HEADER_SERVER).and_then(|v| {
                match v.to_str().ok()? {
                    SERVER_WRITABLE => Some(true),
                    SERVER_READ_ONLY => Some(false),
                    _ => None,
                }
            }),
        },
        _ => Probe::Silent,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ANSWERED: Probe = Probe::Answered {
        fallen_back: false,
        writable: None,
    };

    fn cluster() -> ObjectRef<MySQLCluster> {
        ObjectRef::new("orders").within("shop")
    }

    #[test]
    fn silence_is_recorded_once_and_triggers_one_reconcile() {
        let (prober, mut triggered) = Prober::new(reqwest::Client::new());
        prober.watch(cluster(), Some("10.0.0.1".to_owned()), Vec::new());
        let at = Timestamp::UNIX_EPOCH;
        prober.record(cluster(), "10.0.0.1", Probe::Silent, at);
        prober.record(cluster(), "10.0.0.1", Probe::Silent, Timestamp::now());
        assert_eq!(prober.silent_since(&cluster()), Some(at));
        assert_eq!(triggered.try_recv().ok(), Some(cluster()));
        assert!(triggered.try_recv().is_err(), "one trigger per outage");
        prober.record(cluster(), "10.0.0.1", ANSWERED, Timestamp::now());
        assert_eq!(prober.silent_since(&cluster()), None);
    }

    #[test]
    fn a_silent_server_that_answers_again_triggers_one_reconcile() {
        let (prober, mut triggered) = Prober::new(reqwest::Client::new());
        prober.watch(
            cluster(),
            Some("10.0.0.1".to_owned()),
            vec!["10.0.0.5".to_owned()],
        );
        prober.record_suspect(cluster(), "10.0.0.5", Probe::Silent);
        assert!(triggered.try_recv().is_err(), "still silent");
        prober.record_suspect(cluster(), "10.0.0.5", ANSWERED);
        assert_eq!(triggered.try_recv().ok(), Some(cluster()));
        prober.record_suspect(cluster(), "10.0.0.5", ANSWERED);
        assert!(
            triggered.try_recv().is_err(),
            "one trigger until the next reconcile"
        );
    }

    #[test]
    fn a_new_primary_starts_with_a_clean_record() {
        let (prober, _triggered) = Prober::new(reqwest::Client::new());
        prober.watch(cluster(), Some("10.0.0.1".to_owned()), Vec::new());
        prober.record(cluster(), "10.0.0.1", Probe::Silent, Timestamp::now());
        prober.watch(cluster(), Some("10.0.0.2".to_owned()), Vec::new());
        assert_eq!(prober.silent_since(&cluster()), None);
        // A late answer about the old address changes nothing.
        prober.record(cluster(), "10.0.0.1", Probe::Silent, Timestamp::now());
        assert_eq!(prober.silent_since(&cluster()), None);
        prober.forget(&cluster());
        prober.record(cluster(), "10.0.0.2", Probe::Silent, Timestamp::now());
        assert_eq!(prober.silent_since(&cluster()), None, "forgotten");
    }

    #[test]
    fn a_fallback_and_its_end_each_trigger_one_reconcile() {
        let (prober, mut triggered) = Prober::new(reqwest::Client::new());
        prober.watch(cluster(), Some("10.0.0.1".to_owned()), Vec::new());
        let fallen = Probe::Answered {
            fallen_back: true,
            writable: None,
        };
        prober.record(cluster(), "10.0.0.1", ANSWERED, Timestamp::now());
        assert!(triggered.try_recv().is_err(), "nothing changed");
        prober.record(cluster(), "10.0.0.1", fallen, Timestamp::now());
        prober.record(cluster(), "10.0.0.1", fallen, Timestamp::now());
        assert_eq!(triggered.try_recv().ok(), Some(cluster()));
        assert!(triggered.try_recv().is_err(), "one trigger per fallback");
        prober.record(cluster(), "10.0.0.1", ANSWERED, Timestamp::now());
        assert_eq!(triggered.try_recv().ok(), Some(cluster()));
        // A new primary starts as waiting: its first fallback triggers too.
        prober.record(cluster(), "10.0.0.1", fallen, Timestamp::now());
        let _ = triggered.try_recv();
        prober.watch(cluster(), Some("10.0.0.2".to_owned()), Vec::new());
        prober.record(cluster(), "10.0.0.2", fallen, Timestamp::now());
        assert_eq!(triggered.try_recv().ok(), Some(cluster()));
    }

    #[test]
    fn a_primary_that_becomes_read_only_triggers_one_reconcile() {
        let (prober, mut triggered) = Prober::new(reqwest::Client::new());
        prober.watch(cluster(), Some("10.0.0.1".to_owned()), Vec::new());
        let answered = |writable| Probe::Answered {
            fallen_back: false,
            writable: Some(writable),
        };
        prober.record(cluster(), "10.0.0.1", answered(true), Timestamp::now());
        assert!(
            triggered.try_recv().is_err(),
            "the first answer is the baseline"
        );
        let at = Timestamp::now();
        prober.record(cluster(), "10.0.0.1", answered(false), at);
        prober.record(cluster(), "10.0.0.1", answered(false), at);
        assert_eq!(triggered.try_recv().ok(), Some(cluster()));
        assert!(triggered.try_recv().is_err(), "one trigger per change");
        // Still read-only a second later (fenced again after the operator
        // made it writable, between two probes): looked at again.
        let later = at + k8s_openapi::jiff::SignedDuration::from_secs(1);
        prober.record(cluster(), "10.0.0.1", answered(false), later);
        assert_eq!(triggered.try_recv().ok(), Some(cluster()));
        prober.record(cluster(), "10.0.0.1", answered(false), later);
        assert!(triggered.try_recv().is_err(), "at most once a second");
    }
}
