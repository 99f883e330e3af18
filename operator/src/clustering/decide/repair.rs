//! Keeping a cluster with a known, answering primary in shape: every other
//! server read-only and replicating from it, semi-sync on the side each
//! role needs, role and reads labels right, and servers that hold
//! transactions the primary lacks fenced and left out, never re-joined.

use ebisu_api::InstanceRole;

use super::{Action, Again, Decision, Input, LOOK_AGAIN_MS, Problem, ordinal};
use crate::model::{Replication, ServerState, SourceRefusal};

/// Before anyone is labelled (a new cluster): the one server that
/// replicates from nobody and holds every other server's transactions.
pub(super) fn choose_unlabelled(servers: &[ServerState]) -> Result<&ServerState, Problem> {
    if servers.is_empty() {
        return Err(Problem::NoPrimary("no instance exists yet".to_owned()));
    }
    let silent: Vec<&str> = servers
        .iter()
        .filter(|s| !s.answered())
        .map(|s| s.pod.as_str())
        .collect();
    if !silent.is_empty() {
        // A silent server might hold transactions a candidate lacks.
        return Err(Problem::NoPrimary(format!(
            "waiting for {} to answer before choosing a primary",
            silent.join(", ")
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
        // Equal sets (a fresh cluster): the lowest ordinal bootstrapped it.
        (_, several) => several
            .iter()
            .min_by_key(|s| ordinal(&s.pod))
            .copied()
            .ok_or_else(|| Problem::NoPrimary("no candidate".to_owned())),
    }
}

/// Why a server may not rejoin the primary, if it may not.
pub(super) fn unfit_to_rejoin(server: &ServerState, primary: &ServerState) -> Option<Problem> {
    let errant = match (&server.gtid, &primary.gtid) {
        (Some(mine), Some(theirs)) => mine
            .errant_relative_to(theirs)
            .ok()
            .filter(|d| !d.is_empty()),
        _ => None,
    };
    if let Some(errant) = errant {
        return Some(Problem::ErrantTransactions {
            pod: server.pod.clone(),
            gtids: errant.to_string(),
        });
    }
    server
        .replication
        .as_ref()
        .filter(|r| r.source_host == primary.host && r.diverged())
        .map(|_| Problem::Diverged {
            pod: server.pod.clone(),
        })
}

/// Whether a replica may serve reads: it replicates from the primary
/// without error and is at most `max_lag` seconds behind.
pub(super) fn serves_reads(replication: &Replication, primary: &ServerState, max_lag: u64) -> bool {
    replication.source_host == primary.host
        && replication.io_running
        && replication.sql_running
        && replication.sql_error.is_none()
        && replication.lag_seconds.is_some_and(|lag| lag <= max_lag)
}

/// Repairs around an answering primary.
pub(super) fn repair(input: &Input<'_>, primary: &ServerState, decision: &mut Decision) {
    let policy = input.policy;
    decision.primary = Some(primary.pod.clone());

    let mut fences = Vec::new();
    let mut semi_sync = Vec::new();
    let mut replication = Vec::new();
    let mut labels = Vec::new();
    let mut reseeds = Vec::new();
    for server in input.others(&primary.pod).filter(|s| s.answered()) {
        if let Some(problem) = unfit_to_rejoin(server, primary) {
            if !server.seed_pending {
                // Its data is set aside, never deleted; the copy comes from
                // the primary's side of history.
                reseeds.push(Action::Reseed {
                    pod: server.pod.clone(),
                    reason: problem.message(),
                });
            }
            decision.problems.push(problem);
            if !server.read_only {
                fences.push(Action::fence(&server.pod, false));
            }
            if server.role_label.is_some() {
                labels.push(Action::Unlabel(server.pod.clone()));
            }
            if server.reads_label {
                labels.push(reads(&server.pod, false));
            }
            continue;
        }
        if !server.read_only {
            // A writable non-primary may have clients mid-transaction: end them.
            fences.push(Action::fence(&server.pod, false));
        }
        if server.seed_pending && server.replication.is_none() {
            // A fresh copy: only its agent knows the position the copy holds.
            // Pointing it anywhere now would replay transactions it already has.
            continue;
        }
        if server.relay_log_at_risk() {
            if let Some(error) = &server.relay_log_error {
                decision.problems.push(Problem::RelayLogUnapplied {
                    pod: server.pod.clone(),
                    error: error.clone(),
                });
            }
            // Restarted: its agent applies what the relay log held first
            // (starting replication would discard it, M6), within a second.
            decision.sooner(Again::After(
                k8s_openapi::jiff::SignedDuration::from_millis(LOOK_AGAIN_MS),
            ));
            continue;
        }
        let serve = match &server.replication {
            Some(r)
                if r.source_host == primary.host
                    && r.source_refusal()
                        .is_some_and(|f| f != SourceRefusal::Diverged) =>
            {
                // A fresh copy would stop at the same place: the user's to fix.
                decision.problems.push(Problem::ReplicationBroken {
                    pod: server.pod.clone(),
                    error: r
                        .source_refusal()
                        .map(SourceRefusal::describe)
                        .unwrap_or_default()
                        .to_owned(),
                });
                false
            }
            Some(r) if r.sql_error.is_some() && r.source_host == primary.host => {
                decision.problems.push(Problem::ReplicationBroken {
                    pod: server.pod.clone(),
                    error: r.sql_error.clone().unwrap_or_default(),
                });
                false
            }
            Some(r) if r.source_host == primary.host && r.io_running && r.sql_running => {
                if policy.semi_sync.is_some() && !server.semi_sync_replica {
                    semi_sync.push(Action::EnableSemiSync {
                        pod: server.pod.clone(),
                        as_primary: false,
                    });
                }
                serves_reads(r, primary, policy.max_lag_for_reads_secs)
            }
            // Held by a restore verification: its agent starts the applier
            // again once the sums are taken.
            Some(r)
                if input.held == Some(server.pod.as_str())
                    && r.source_host == primary.host
                    && r.io_running
                    && !r.sql_running =>
            {
                server.reads_label
            }
            // Not replicating, stopped, or pointed elsewhere: point it at the
            // primary (with the semi-sync replica side it needs).
            _ => {
                replication.push(Action::Replicate {
                    pod: server.pod.clone(),
                    source_host: primary.host.clone(),
                });
                false
            }
        };
        // A read of a block EBS has not loaded yet waits on the snapshot.
        let serve = serve && server.volume_initializing.is_none();
        if server.role_label != Some(InstanceRole::Replica) {
            labels.push(Action::LabelReplica(server.pod.clone()));
        }
        if server.reads_label != serve {
            labels.push(reads(&server.pod, serve));
        }
    }

    // Fencing first: nothing that could make a second server writable runs
    // unless every other writable server was fenced.
    decision.step(fences);
    if primary.replication.is_some() {
        decision
            .problems
            .push(Problem::PrimaryReplicates(primary.pod.clone()));
    } else {
        if policy.semi_sync.is_none() && primary.semi_sync_source {
            // Scaled to one, or semi-sync turned off: with nobody left to
            // acknowledge, every commit would wait for ever.
            decision.step(vec![Action::DisableSemiSync(primary.pod.clone())]);
        }
        if let Some(semi) = policy.semi_sync {
            // Enabled once enough replicas hold data; set again when its
            // settings (the timeout, the wait count) differ from the spec's.
            let stale = primary.semi_sync_source
                && (primary
                    .semi_sync_timeout_ms
                    .is_some_and(|t| t != semi.timeout_ms)
                    || primary
                        .semi_sync_wait
                        .is_some_and(|w| w != semi.wait_for_replicas));
            if (!primary.semi_sync_source
                && replicas_with_data(input, primary) >= semi.wait_for_replicas)
                || stale
            {
                decision.step(vec![Action::EnableSemiSync {
                    pod: primary.pod.clone(),
                    as_primary: true,
                }]);
            }
            if primary.semi_sync_source && !primary.semi_sync_active {
                decision
                    .problems
                    .push(Problem::SemiSyncFallback(primary.pod.clone()));
            }
            let receiving = receiving_from(input, primary);
            if primary.semi_sync_source
                && primary.semi_sync_active
                && u32::try_from(receiving.len()).unwrap_or(u32::MAX) < semi.wait_for_replicas
            {
                // M16: a replica restarting in a cluster with no spare one.
                decision.problems.push(Problem::WritesWaitForReplicas {
                    pod: primary.pod.clone(),
                    wait_for_replicas: semi.wait_for_replicas,
                    receiving,
                });
            }
        }
        if primary.read_only {
            decision.make_writable(input, &primary.pod, None);
        } else if input
            .lease
            .is_some_and(|l| l.holder.as_deref() != Some(primary.pod.as_str()))
        {
            // Writable, and not named in the Lease (a cluster from before
            // the Lease, or a Lease someone edited): its agent would fence
            // it, so name it.
            decision.step(vec![Action::HoldLease {
                pod: primary.pod.clone(),
                after: None,
            }]);
        }
    }
    let mut primary_labels = Vec::new();
    if primary.role_label != Some(InstanceRole::Primary) {
        primary_labels.push(Action::LabelPrimary(primary.pod.clone()));
    }
    if primary.reads_label {
        primary_labels.push(reads(&primary.pod, false));
    }
    decision.step(primary_labels);
    decision.step(semi_sync);
    decision.step(replication);
    decision.step(labels);
    // Last, and only once fenced and out of every Service.
    decision.step(one_reseed_at_a_time(input, primary, reseeds));
}

/// At most one re-seed, none while another instance is away (silent, or
/// still seeding), and none while the primary itself replicates (it may
/// hold less than the servers found unfit): a cause that makes every
/// replica look unfit must never take them all down at once.
fn one_reseed_at_a_time(
    input: &Input<'_>,
    primary: &ServerState,
    reseeds: Vec<Action>,
) -> Vec<Action> {
    let Some(first) = reseeds.into_iter().next() else {
        return Vec::new();
    };
    if primary.replication.is_some() {
        return Vec::new();
    }
    let away = input
        .others(&primary.pod)
        .any(|s| Some(s.pod.as_str()) != first.pod() && (!s.answered() || s.seed_pending));
    if away { Vec::new() } else { vec![first] }
}

/// Replicas that hold data and are configured to replicate: once there
/// are enough to acknowledge, the primary waits for them. Fresh copies
/// still seeding have no replication configured yet and do not count, so
/// seeding never blocks writes; a replica whose agent does not answer
/// still counts (it replicates, as its server says).
fn replicas_with_data(input: &Input<'_>, primary: &ServerState) -> u32 {
    let count = input
        .others(&primary.pod)
        .filter(|s| s.answered() && s.replication.is_some())
        .count();
    u32::try_from(count).unwrap_or(u32::MAX)
}

/// Replicas whose receiver runs against the primary now: those that can
/// acknowledge its commits.
fn receiving_from(input: &Input<'_>, primary: &ServerState) -> Vec<String> {
    input
        .others(&primary.pod)
        .filter(|s| {
            s.answered()
                && s.replication
                    .as_ref()
                    .is_some_and(|r| r.source_host == primary.host && r.io_running)
        })
        .map(|s| s.pod.clone())
        .collect()
}

fn reads(pod: &str, serve: bool) -> Action {
    Action::LabelReads {
        pod: pod.to_owned(),
        serve,
    }
}
