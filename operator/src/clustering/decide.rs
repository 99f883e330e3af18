//! Decisions over observed servers: who the primary is, and what to repair.
//! Pure and exhaustively tested; `act` carries the actions out.

use ebisu_api::InstanceRole;

use super::state::ServerState;

/// Something to do to one server or pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Label the pod primary (the `-primary` Service follows the label).
    LabelPrimary(String),
    /// Label the pod replica.
    LabelReplica(String),
    /// Remove the role label: the pod must receive no traffic.
    Unlabel(String),
    /// Make the chosen primary writable (first bootstrap, or after a restart).
    MakeWritable(String),
    /// Make a server read-only.
    Fence(String),
    /// (Re)point replication at the primary and start it.
    Replicate {
        /// The replica.
        pod: String,
        /// The primary's host.
        source_host: String,
    },
    /// Enable semi-sync on a server, on the side its role needs.
    EnableSemiSync {
        /// The server.
        pod: String,
        /// Source side (primary) or replica side.
        as_primary: bool,
    },
}

impl Action {
    /// The pod the action changes.
    pub fn pod(&self) -> &str {
        match self {
            Self::LabelPrimary(pod)
            | Self::LabelReplica(pod)
            | Self::Unlabel(pod)
            | Self::MakeWritable(pod)
            | Self::Fence(pod)
            | Self::Replicate { pod, .. }
            | Self::EnableSemiSync { pod, .. } => pod,
        }
    }
}

/// Something the operator will not repair by itself; becomes a condition and an Event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// The labelled primary does not answer; no replica is promoted by this loop.
    PrimaryUnreachable(String),
    /// No server can be shown to be the primary.
    NoPrimary(String),
    /// A server holds transactions the primary lacks; it is fenced and left out.
    ErrantTransactions {
        /// The server.
        pod: String,
        /// The transactions, in the server's notation.
        gtids: String,
    },
    /// A replica's applier stopped on an error.
    ReplicationBroken {
        /// The replica.
        pod: String,
        /// The error.
        error: String,
    },
    /// The primary is configured to replicate from someone.
    PrimaryReplicates(String),
}

impl Problem {
    /// The pod the problem is about, when it is about one.
    pub fn pod(&self) -> Option<&str> {
        match self {
            Self::PrimaryUnreachable(pod)
            | Self::ErrantTransactions { pod, .. }
            | Self::ReplicationBroken { pod, .. }
            | Self::PrimaryReplicates(pod) => Some(pod),
            Self::NoPrimary(_) => None,
        }
    }
}

/// What to do, and what cannot be done.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Decision {
    /// The primary, when one is known and reachable.
    pub primary: Option<String>,
    /// Repairs, in the order to apply them (fencing before anything that
    /// could make a second server writable).
    pub actions: Vec<Action>,
    /// What needs a human or a later loop.
    pub problems: Vec<Problem>,
}

impl Decision {
    /// Nothing to do and nothing wrong.
    pub fn is_settled(&self) -> bool {
        self.actions.is_empty() && self.problems.is_empty()
    }
}

/// Decides over `servers` (every pod of the cluster, reachable or not).
pub fn decide(servers: &[ServerState], semi_sync: bool) -> Decision {
    let mut decision = Decision::default();
    let primary = match choose_primary(servers) {
        Ok(primary) => primary,
        Err(problem) => {
            decision.problems.push(problem);
            // Without a primary, only fencing is safe: a writable server that is
            // not known to be the primary must stop taking writes.
            for server in servers
                .iter()
                .filter(|s| s.reachable && !s.read_only && s.replication.is_some())
            {
                decision.actions.push(Action::Fence(server.pod.clone()));
            }
            return decision;
        }
    };
    decision.primary = Some(primary.pod.clone());

    let mut fences = Vec::new();
    let mut rest = Vec::new();
    for server in servers
        .iter()
        .filter(|s| s.pod != primary.pod && s.reachable)
    {
        let errant = match (&server.gtid, &primary.gtid) {
            (Some(mine), Some(theirs)) => mine
                .errant_relative_to(theirs)
                .ok()
                .filter(|d| !d.is_empty()),
            _ => None,
        };
        if let Some(errant) = errant {
            decision.problems.push(Problem::ErrantTransactions {
                pod: server.pod.clone(),
                gtids: errant.to_string(),
            });
            if !server.read_only {
                fences.push(Action::Fence(server.pod.clone()));
            }
            if server.role_label.is_some() {
                rest.push(Action::Unlabel(server.pod.clone()));
            }
            continue;
        }
        if !server.read_only {
            fences.push(Action::Fence(server.pod.clone()));
        }
        if server.seed_pending && server.replication.is_none() {
            // A fresh copy: only its agent knows the position the copy holds.
            // Pointing it anywhere now would replay transactions it already has.
            continue;
        }
        if semi_sync && !server.semi_sync_replica {
            rest.push(Action::EnableSemiSync {
                pod: server.pod.clone(),
                as_primary: false,
            });
        }
        match &server.replication {
            Some(r) if r.sql_error.is_some() && r.source_host == primary.host => {
                decision.problems.push(Problem::ReplicationBroken {
                    pod: server.pod.clone(),
                    error: r.sql_error.clone().unwrap_or_default(),
                });
            }
            Some(r) if r.source_host == primary.host && r.io_running && r.sql_running => {}
            // Not replicating, stopped, or pointed elsewhere: point it at the primary.
            _ => rest.push(Action::Replicate {
                pod: server.pod.clone(),
                source_host: primary.host.clone(),
            }),
        }
        if server.role_label != Some(InstanceRole::Replica) {
            rest.push(Action::LabelReplica(server.pod.clone()));
        }
    }

    decision.actions.extend(fences);
    if primary.replication.is_some() {
        decision
            .problems
            .push(Problem::PrimaryReplicates(primary.pod.clone()));
    } else {
        if semi_sync && !primary.semi_sync_source {
            decision.actions.push(Action::EnableSemiSync {
                pod: primary.pod.clone(),
                as_primary: true,
            });
        }
        if primary.read_only {
            decision
                .actions
                .push(Action::MakeWritable(primary.pod.clone()));
        }
    }
    if primary.role_label != Some(InstanceRole::Primary) {
        decision
            .actions
            .push(Action::LabelPrimary(primary.pod.clone()));
    }
    decision.actions.extend(rest);
    decision
}

/// The labelled primary if it answers; before anyone is labelled, the one
/// server that replicates from nobody and holds every other server's
/// transactions.
fn choose_primary(servers: &[ServerState]) -> Result<&ServerState, Problem> {
    let labelled: Vec<&ServerState> = servers
        .iter()
        .filter(|s| s.role_label == Some(InstanceRole::Primary))
        .collect();
    match labelled.as_slice() {
        [one] if one.reachable => return Ok(one),
        [one] => return Err(Problem::PrimaryUnreachable(one.pod.clone())),
        [] => {}
        several => {
            return Err(Problem::NoPrimary(format!(
                "{} pods are labelled primary",
                several
                    .iter()
                    .map(|s| s.pod.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
    }
    let unreachable: Vec<&str> = servers
        .iter()
        .filter(|s| !s.reachable)
        .map(|s| s.pod.as_str())
        .collect();
    if !unreachable.is_empty() {
        // An unreachable server might hold transactions a candidate lacks.
        return Err(Problem::NoPrimary(format!(
            "waiting for {} to answer before choosing a primary",
            unreachable.join(", ")
        )));
    }
    let candidates: Vec<&ServerState> =
        servers.iter().filter(|s| s.replication.is_none()).collect();
    let holds_everything = |c: &&ServerState| {
        servers.iter().all(|other| match (&c.gtid, &other.gtid) {
            (Some(mine), Some(theirs)) => mine.contains(theirs).unwrap_or(false),
            _ => false,
        })
    };
    let complete: Vec<&ServerState> = candidates
        .iter()
        .copied()
        .filter(holds_everything)
        .collect();
    match (candidates.len(), complete.as_slice()) {
        (0, _) => Err(Problem::NoPrimary(
            "every server replicates from another; none is a source".to_owned(),
        )),
        (_, [one]) => Ok(one),
        (_, []) => Err(Problem::NoPrimary(
            "no source server holds every other server's transactions".to_owned(),
        )),
        (_, several) => {
            // Equal sets (a fresh cluster): the lowest ordinal bootstrapped it.
            several
                .iter()
                .min_by_key(|s| ebisu_api::names::ordinal_of(&s.pod).unwrap_or(u32::MAX))
                .copied()
                .ok_or_else(|| Problem::NoPrimary("no candidate".to_owned()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clustering::state::Replication;
    use ebisu_mysql::{Flavor, GtidSet};

    fn gtid(s: &str) -> Option<GtidSet> {
        Some(GtidSet::parse(Flavor::MariaDb, s).expect("gtid"))
    }

    fn host(pod: &str) -> String {
        format!("{pod}.db.shop.svc.cluster.local")
    }

    #[test]
    fn actions_and_problems_name_the_pod_their_events_are_about() {
        let pod = || "db-1".to_owned();
        let actions = [
            Action::LabelPrimary(pod()),
            Action::LabelReplica(pod()),
            Action::Unlabel(pod()),
            Action::MakeWritable(pod()),
            Action::Fence(pod()),
            Action::Replicate {
                pod: pod(),
                source_host: host("db-0"),
            },
            Action::EnableSemiSync {
                pod: pod(),
                as_primary: false,
            },
        ];
        assert!(actions.iter().all(|a| a.pod() == "db-1"));
        let problems = [
            Problem::PrimaryUnreachable(pod()),
            Problem::ErrantTransactions {
                pod: pod(),
                gtids: "0-101-3".to_owned(),
            },
            Problem::ReplicationBroken {
                pod: pod(),
                error: "duplicate key".to_owned(),
            },
            Problem::PrimaryReplicates(pod()),
        ];
        assert!(problems.iter().all(|p| p.pod() == Some("db-1")));
        assert_eq!(Problem::NoPrimary("two primaries".to_owned()).pod(), None);
    }

    fn primary(pod: &str, seq: &str) -> ServerState {
        ServerState {
            pod: pod.to_owned(),
            host: host(pod),
            role_label: Some(InstanceRole::Primary),
            reachable: true,
            read_only: false,
            gtid: gtid(seq),
            replication: None,
            semi_sync_source: true,
            semi_sync_replica: true,
            seed_pending: false,
        }
    }

    fn replica(pod: &str, seq: &str, source: &str) -> ServerState {
        ServerState {
            role_label: Some(InstanceRole::Replica),
            read_only: true,
            replication: Some(Replication {
                source_host: host(source),
                io_running: true,
                sql_running: true,
                sql_error: None,
                lag_seconds: Some(0),
            }),
            ..primary(pod, seq)
        }
    }

    fn unlabelled(mut s: ServerState) -> ServerState {
        s.role_label = None;
        s
    }

    #[test]
    fn a_healthy_cluster_needs_nothing() {
        let servers = [
            primary("db-0", "0-100-9"),
            replica("db-1", "0-100-9", "db-0"),
            replica("db-2", "0-100-7", "db-0"),
        ];
        let d = decide(&servers, true);
        assert_eq!(d.primary.as_deref(), Some("db-0"));
        assert!(d.is_settled(), "{d:?}");
    }

    #[test]
    fn first_bootstrap_labels_and_unfences_the_only_source() {
        let mut p = unlabelled(primary("db-0", "0-100-3"));
        p.read_only = true;
        let d = decide(&[p, unlabelled(replica("db-1", "0-100-3", "db-0"))], false);
        assert_eq!(d.primary.as_deref(), Some("db-0"));
        assert_eq!(
            d.actions,
            vec![
                Action::MakeWritable("db-0".to_owned()),
                Action::LabelPrimary("db-0".to_owned()),
                Action::LabelReplica("db-1".to_owned())
            ]
        );
    }

    #[test]
    fn a_fresh_server_alone_becomes_primary() {
        let mut p = unlabelled(primary("db-0", ""));
        p.read_only = true;
        let d = decide(&[p], false);
        assert_eq!(d.primary.as_deref(), Some("db-0"));
        assert!(d.actions.contains(&Action::MakeWritable("db-0".to_owned())));
    }

    #[test]
    fn no_primary_is_chosen_while_a_server_does_not_answer() {
        let mut silent = unlabelled(replica("db-1", "0-100-3", "db-0"));
        silent.reachable = false;
        let d = decide(&[unlabelled(primary("db-0", "0-100-3")), silent], false);
        assert_eq!(d.primary, None);
        assert!(matches!(d.problems.as_slice(), [Problem::NoPrimary(m)] if m.contains("db-1")));
        assert!(
            !d.actions
                .iter()
                .any(|a| matches!(a, Action::MakeWritable(_)))
        );
    }

    #[test]
    fn two_unlabelled_sources_pick_the_one_with_every_transaction() {
        let behind = unlabelled(primary("db-0", "0-100-3"));
        let ahead = unlabelled(primary("db-1", "0-100-5"));
        let d = decide(&[behind, ahead], false);
        assert_eq!(d.primary.as_deref(), Some("db-1"));
        assert!(d.actions.contains(&Action::Fence("db-0".to_owned())));
        assert!(d.actions.contains(&Action::Replicate {
            pod: "db-0".to_owned(),
            source_host: host("db-1")
        }));
    }

    #[test]
    fn diverged_sources_are_never_resolved_by_guessing() {
        let a = unlabelled(primary("db-0", "0-100-5,1-100-1"));
        let b = unlabelled(primary("db-1", "0-100-5,2-101-1"));
        let d = decide(&[a, b], false);
        assert_eq!(d.primary, None);
        assert!(matches!(d.problems.as_slice(), [Problem::NoPrimary(_)]));
        assert!(
            !d.actions
                .iter()
                .any(|a| matches!(a, Action::MakeWritable(_) | Action::Replicate { .. }))
        );
    }

    #[test]
    fn an_unreachable_labelled_primary_is_reported_not_replaced() {
        let mut p = primary("db-0", "0-100-9");
        p.reachable = false;
        let d = decide(&[p, replica("db-1", "0-100-9", "db-0")], true);
        assert_eq!(d.primary, None);
        assert_eq!(
            d.problems,
            vec![Problem::PrimaryUnreachable("db-0".to_owned())]
        );
        assert!(d.actions.is_empty(), "{:?}", d.actions);
    }

    #[test]
    fn a_writable_replica_is_fenced_before_anything_else() {
        let mut r = replica("db-1", "0-100-9", "db-0");
        r.read_only = false;
        let mut p = primary("db-0", "0-100-9");
        p.role_label = None;
        let d = decide(&[p, r], false);
        assert_eq!(d.actions.first(), Some(&Action::Fence("db-1".to_owned())));
    }

    #[test]
    fn replicas_not_replicating_or_pointed_elsewhere_are_repointed() {
        let mut stopped = replica("db-1", "0-100-9", "db-0");
        if let Some(r) = stopped.replication.as_mut() {
            r.io_running = false;
            r.sql_running = false;
        }
        let elsewhere = replica("db-2", "0-100-9", "db-1");
        let mut none = replica("db-3", "0-100-9", "db-0");
        none.replication = None;
        let d = decide(
            &[primary("db-0", "0-100-9"), stopped, elsewhere, none],
            false,
        );
        for pod in ["db-1", "db-2", "db-3"] {
            assert!(
                d.actions.contains(&Action::Replicate {
                    pod: pod.to_owned(),
                    source_host: host("db-0")
                }),
                "{pod}: {d:?}"
            );
        }
    }

    #[test]
    fn a_replica_with_errant_transactions_is_fenced_unlabelled_and_reported_never_rejoined() {
        let mut errant = replica("db-1", "0-100-9,0-101-10", "db-0");
        errant.read_only = false;
        errant.gtid = gtid("0-101-10");
        let d = decide(&[primary("db-0", "0-100-9"), errant], false);
        assert!(
            matches!(&d.problems[..], [Problem::ErrantTransactions { pod, .. }] if pod == "db-1")
        );
        assert!(d.actions.contains(&Action::Fence("db-1".to_owned())));
        assert!(d.actions.contains(&Action::Unlabel("db-1".to_owned())));
        assert!(
            !d.actions
                .iter()
                .any(|a| matches!(a, Action::Replicate { pod, .. } if pod == "db-1"))
        );
    }

    #[test]
    fn a_fresh_copy_is_left_to_its_agent_but_fenced_if_writable() {
        let mut fresh = replica("db-1", "0-100-9", "db-0");
        fresh.replication = None;
        fresh.seed_pending = true;
        fresh.role_label = None;
        let d = decide(&[primary("db-0", "0-100-9"), fresh.clone()], false);
        assert!(d.is_settled(), "{d:?}");
        fresh.read_only = false;
        let d = decide(&[primary("db-0", "0-100-9"), fresh], false);
        assert_eq!(d.actions, vec![Action::Fence("db-1".to_owned())]);
    }

    #[test]
    fn an_applier_error_is_reported_not_restarted() {
        let mut broken = replica("db-1", "0-100-8", "db-0");
        if let Some(r) = broken.replication.as_mut() {
            r.sql_running = false;
            r.sql_error = Some("Duplicate entry '7' for key 'PRIMARY'".to_owned());
        }
        let d = decide(&[primary("db-0", "0-100-9"), broken], false);
        assert!(
            matches!(&d.problems[..], [Problem::ReplicationBroken { pod, .. }] if pod == "db-1")
        );
        assert!(d.actions.is_empty(), "{:?}", d.actions);
    }

    #[test]
    fn semi_sync_is_enabled_on_the_side_each_role_needs() {
        let mut p = primary("db-0", "0-100-9");
        p.semi_sync_source = false;
        let mut r = replica("db-1", "0-100-9", "db-0");
        r.semi_sync_replica = false;
        let d = decide(&[p.clone(), r.clone()], true);
        assert!(d.actions.contains(&Action::EnableSemiSync {
            pod: "db-0".to_owned(),
            as_primary: true
        }));
        assert!(d.actions.contains(&Action::EnableSemiSync {
            pod: "db-1".to_owned(),
            as_primary: false
        }));
        assert!(
            decide(&[p, r], false).actions.is_empty(),
            "semi-sync off in the spec: nothing to enable"
        );
    }

    #[test]
    fn a_labelled_primary_that_replicates_is_reported_and_left_read_only() {
        let mut p = replica("db-0", "0-100-9", "db-1");
        p.role_label = Some(InstanceRole::Primary);
        let d = decide(&[p, replica("db-1", "0-100-9", "db-0")], false);
        assert!(
            d.problems
                .contains(&Problem::PrimaryReplicates("db-0".to_owned()))
        );
        assert!(!d.actions.contains(&Action::MakeWritable("db-0".to_owned())));
    }

    #[test]
    fn two_labelled_primaries_are_a_problem_and_only_fencing_happens() {
        let d = decide(
            &[primary("db-0", "0-100-9"), primary("db-1", "0-100-9")],
            false,
        );
        assert_eq!(d.primary, None);
        assert!(
            matches!(d.problems.as_slice(), [Problem::NoPrimary(m)] if m.contains("db-0") && m.contains("db-1"))
        );
        assert!(
            !d.actions
                .iter()
                .any(|a| matches!(a, Action::MakeWritable(_)))
        );
    }

    #[test]
    fn equal_fresh_sources_pick_the_lowest_ordinal() {
        let d = decide(
            &[
                unlabelled(primary("db-1", "")),
                unlabelled(primary("db-0", "")),
            ],
            false,
        );
        assert_eq!(d.primary.as_deref(), Some("db-0"));
    }
}
