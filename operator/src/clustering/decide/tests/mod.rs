//! Decisions, case by case, one file per topic (repair around a healthy
//! primary, switchovers and their resumption, failovers and their refusals,
//! rolling updates, online settings); the fixtures they share are here.

mod failover;
mod online;
mod repair;
mod switchover;
mod update;

use ebisu_api::{
    ClusteringMemory, FailoverMode, InstanceRole, Operation, OperationKind, OperationStep,
    names::{ANNOTATION_FORCE_FAILOVER, ANNOTATION_SWITCHOVER},
};
use ebisu_mysql::{Flavor, GtidSet, ServerVersion};
use k8s_openapi::{apimachinery::pkg::apis::meta::v1::Time, jiff::Timestamp};

use super::*;
use crate::model::{Answer, LeaseView, NodeFacts, Replication, ServerState};

const NOW: i64 = 1_000;
const NEVER: u64 = 4_294_967_295;

fn gtid(s: &str) -> Option<GtidSet> {
    Some(GtidSet::parse(Flavor::MariaDb, s).expect("gtid"))
}

fn mariadb(major: u32, minor: u32, patch: u32) -> ServerVersion {
    ServerVersion {
        mariadb: true,
        ..ServerVersion::new(major, minor, patch)
    }
}

fn host(pod: &str) -> String {
    format!("{pod}.db.shop.svc.cluster.local")
}

fn at(second: i64) -> Time {
    Time(Timestamp::from_second(second).expect("time"))
}

fn node(name: &str) -> Option<NodeFacts> {
    Some(NodeFacts {
        name: name.to_owned(),
        draining: false,
        ready: true,
    })
}

fn primary(pod: &str, seq: &str) -> ServerState {
    ServerState {
        role_label: Some(InstanceRole::Primary),
        pod_ready: true,
        node: node(&format!("node-{pod}")),
        answer: Answer::Answered,
        read_only: false,
        gtid: gtid(seq),
        version: Some(mariadb(10, 11, 9)),
        semi_sync_source: true,
        semi_sync_active: true,
        semi_sync_timeout_ms: Some(NEVER),
        seed_pending: false,
        relay_log_unread: false,
        ..ServerState::unobserved(pod, &host(pod))
    }
}

fn replica(pod: &str, seq: &str, source: &str) -> ServerState {
    ServerState {
        role_label: Some(InstanceRole::Replica),
        reads_label: true,
        read_only: true,
        replication: Some(Replication {
            source_host: host(source),
            io_running: true,
            io_errno: 0,
            io_error: None,
            sql_running: true,
            sql_error: None,
            lag_seconds: Some(0),
            received: gtid(seq),
        }),
        semi_sync_source: false,
        semi_sync_active: false,
        semi_sync_replica: true,
        ..primary(pod, seq)
    }
}

fn unlabelled(mut s: ServerState) -> ServerState {
    s.role_label = None;
    s.reads_label = false;
    s
}

fn silent(mut s: ServerState) -> ServerState {
    s.answer = Answer::Silent;
    s.gtid = None;
    s.replication = None;
    s
}

fn policy() -> Policy {
    Policy {
        semi_sync: Some(crate::validate::SemiSync {
            wait_for_replicas: 1,
            timeout_ms: NEVER,
            may_fall_back: false,
        }),
        mode: FailoverMode::Automatic,
        failover_after_secs: 3,
        max_lag_for_promotion_secs: 10,
        max_lag_for_reads_secs: 30,
        catch_up_timeout_secs: 20,
        apply_timeout_secs: 60,
        switchover_request: None,
        force_failover: None,
        update: ebisu_api::UpdateStrategy::RollingUpdate,
        online_config: std::collections::BTreeMap::new(),
        image: "mariadb:10.11".to_owned(),
        instances: 3,
    }
}

fn no_semi_sync() -> Policy {
    Policy {
        semi_sync: None,
        ..policy()
    }
}

fn healthy_memory() -> ClusteringMemory {
    ClusteringMemory {
        primary: Some("db-0".to_owned()),
        semi_sync_active: Some(true),
        held_data: Some(vec!["db-0".into(), "db-1".into(), "db-2".into()]),
        ..ClusteringMemory::default()
    }
}

/// The primary Lease naming `holder`, last renewed `unrenewed_secs` ago.
fn lease(holder: &str, unrenewed_secs: i64) -> LeaseView {
    LeaseView {
        holder: Some(holder.to_owned()),
        version: "41".to_owned(),
        unrenewed_for: k8s_openapi::jiff::SignedDuration::from_secs(unrenewed_secs),
        duration: k8s_openapi::jiff::SignedDuration::from_secs(2),
    }
}

fn decide_with(servers: &[ServerState], policy: &Policy, memory: &ClusteringMemory) -> Decision {
    // db-0's agent has not renewed for long: it has fenced itself if lost.
    decide_with_lease(servers, policy, memory, Some(&lease("db-0", 60)))
}

fn decide_with_lease(
    servers: &[ServerState],
    policy: &Policy,
    memory: &ClusteringMemory,
    lease: Option<&LeaseView>,
) -> Decision {
    decide(&Input {
        servers,
        policy,
        memory,
        probe_silent_since: None,
        lease,
        new_cluster: false,
        restored: None,
        held: None,
        rollout_turn: None,
        now: Timestamp::from_second(NOW).expect("now"),
    })
}

fn run(servers: &[ServerState]) -> Decision {
    decide_with(servers, &policy(), &healthy_memory())
}

fn position(d: &Decision, wanted: impl Fn(&Action) -> bool) -> Option<usize> {
    d.actions().position(wanted)
}

fn has(d: &Decision, action: &Action) -> bool {
    d.actions().any(|a| a == action)
}

fn fence(pod: &str) -> Action {
    Action::Fence {
        pod: pod.to_owned(),
        hand_over: false,
    }
}

fn writable(d: &Decision) -> Vec<&str> {
    d.actions()
        .filter_map(|a| match a {
            Action::MakeWritable(pod) => Some(pod.as_str()),
            _ => None,
        })
        .collect()
}

fn remembered(d: &Decision) -> Vec<&ClusteringMemory> {
    d.actions()
        .filter_map(|a| match a {
            Action::Remember(m) => Some(m.as_ref()),
            _ => None,
        })
        .collect()
}

fn silent_since(second: i64) -> ClusteringMemory {
    ClusteringMemory {
        primary_silent_since: Some(at(second)),
        ..healthy_memory()
    }
}

/// The order every switchover promises.
fn assert_hands_over(d: &Decision, from: &str, to: &str) {
    let pos = |wanted: &dyn Fn(&Action) -> bool| position(d, wanted).unwrap_or(usize::MAX);
    let fenced = pos(&|a| matches!(a, Action::Fence { pod, hand_over: true } if pod == from));
    let caught_up =
        pos(&|a| matches!(a, Action::CatchUp { pod, source, .. } if pod == to && source == from));
    let promoted = pos(&|a| matches!(a, Action::Promote(pod) if pod == to));
    let old_repointed = pos(
        &|a| matches!(a, Action::Replicate { pod, source_host } if pod == from && *source_host == host(to)),
    );
    let writable = pos(&|a| matches!(a, Action::MakeWritable(pod) if pod == to));
    let old_relabelled = pos(&|a| matches!(a, Action::LabelReplica(pod) if pod == from));
    let labelled = pos(&|a| matches!(a, Action::LabelPrimary(pod) if pod == to));
    let order = [
        fenced,
        caught_up,
        promoted,
        old_repointed,
        writable,
        old_relabelled,
        labelled,
    ];
    assert!(
        order.iter().all(|&p| p != usize::MAX),
        "missing steps: {order:?}\n{d:?}"
    );
    assert!(
        order.windows(2).all(|w| w[0] < w[1]),
        "out of order: {order:?}\n{d:?}"
    );
    // Each of these is its own step: a failure stops everything after it.
    for step in &d.steps {
        let kinds = step
            .iter()
            .filter(|a| {
                matches!(
                    a,
                    Action::Fence { .. }
                        | Action::CatchUp { .. }
                        | Action::Promote(_)
                        | Action::MakeWritable(_)
                        | Action::LabelPrimary(_)
                )
            })
            .count();
        assert!(kinds <= 1, "a step mixes ordered actions: {step:?}");
    }
    assert!(
        !writable_pods(d).contains(&from),
        "the old primary is never made writable"
    );
}

fn writable_pods(d: &Decision) -> Vec<&str> {
    writable(d)
}

fn three() -> Vec<ServerState> {
    let mut behind = replica("db-2", "0-100-8", "db-0");
    if let Some(r) = behind.replication.as_mut() {
        r.lag_seconds = Some(1);
    }
    vec![
        draining(primary("db-0", "0-100-9")),
        replica("db-1", "0-100-9", "db-0"),
        behind,
    ]
}

fn draining(mut s: ServerState) -> ServerState {
    if let Some(node) = s.node.as_mut() {
        node.draining = true;
    }
    s
}

fn settled_three() -> Vec<ServerState> {
    vec![
        primary("db-0", "0-100-9"),
        replica("db-1", "0-100-9", "db-0"),
        replica("db-2", "0-100-9", "db-0"),
    ]
}

fn restarts(d: &Decision) -> Vec<&str> {
    d.actions()
        .filter_map(|a| match a {
            Action::Restart(pod) => Some(pod.as_str()),
            _ => None,
        })
        .collect()
}

fn outdated(mut s: ServerState) -> ServerState {
    s.outdated = true;
    s
}
