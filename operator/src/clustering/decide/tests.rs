//! Decisions, case by case: repair around a healthy primary, switchovers
//! and their resumption, failovers and their refusals, rolling updates.

use ebisu_api::{
    ClusteringMemory, FailoverMode, InstanceRole, Operation, OperationKind, OperationStep,
    names::{ANNOTATION_FORCE_FAILOVER, ANNOTATION_SWITCHOVER},
};
use ebisu_mysql::{Flavor, GtidSet, ServerVersion};
use k8s_openapi::{apimachinery::pkg::apis::meta::v1::Time, jiff::Timestamp};

use super::*;
use crate::clustering::state::{Answer, NodeFacts, Replication, ServerState};

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
        pod: pod.to_owned(),
        host: host(pod),
        role_label: Some(InstanceRole::Primary),
        reads_label: false,
        pod_ready: true,
        terminating: false,
        node: node(&format!("node-{pod}")),
        answer: Answer::Answered,
        read_only: false,
        gtid: gtid(seq),
        version: Some(mariadb(10, 11, 9)),
        upgrade_error: None,
        replication: None,
        semi_sync_source: true,
        semi_sync_active: true,
        semi_sync_replica: false,
        semi_sync_timeout_ms: Some(NEVER),
        outdated: false,
        seed_pending: false,
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
        semi_sync: Some(SemiSyncPolicy {
            wait_for_replicas: 1,
            timeout_ms: NEVER,
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
        semi_sync_active: Some(true),
        ..ClusteringMemory::default()
    }
}

fn decide_with(servers: &[ServerState], policy: &Policy, memory: &ClusteringMemory) -> Decision {
    decide(&Input {
        servers,
        policy,
        memory,
        probe_silent_since: None,
        new_cluster: false,
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

// --- repair ---------------------------------------------------------------

#[test]
fn a_healthy_cluster_needs_nothing() {
    let servers = [
        primary("db-0", "0-100-9"),
        replica("db-1", "0-100-9", "db-0"),
        replica("db-2", "0-100-7", "db-0"),
    ];
    let d = run(&servers);
    assert_eq!(d.primary.as_deref(), Some("db-0"));
    assert!(d.is_settled(), "{d:?}");
    assert_eq!(d.memory.semi_sync_active, Some(true));
    assert_eq!(
        d.memory,
        healthy_memory(),
        "a settled look changes no memory (status would churn)"
    );
}

#[test]
fn first_bootstrap_labels_and_unfences_the_only_source() {
    let mut p = unlabelled(primary("db-0", "0-100-3"));
    p.read_only = true;
    p.semi_sync_source = false;
    let d = decide_with(
        &[p, unlabelled(replica("db-1", "0-100-3", "db-0"))],
        &no_semi_sync(),
        &ClusteringMemory::default(),
    );
    assert_eq!(d.primary.as_deref(), Some("db-0"));
    assert_eq!(
        d.steps,
        vec![
            vec![Action::MakeWritable("db-0".to_owned())],
            vec![Action::LabelPrimary("db-0".to_owned())],
            vec![
                Action::LabelReplica("db-1".to_owned()),
                Action::LabelReads {
                    pod: "db-1".to_owned(),
                    serve: true
                }
            ],
        ]
    );
}

#[test]
fn a_fresh_server_alone_becomes_primary() {
    let mut p = unlabelled(primary("db-0", ""));
    p.read_only = true;
    let d = run(&[p]);
    assert_eq!(d.primary.as_deref(), Some("db-0"));
    assert_eq!(writable(&d), ["db-0"]);
}

#[test]
fn no_primary_is_chosen_while_a_server_does_not_answer() {
    let d = run(&[
        unlabelled(primary("db-0", "0-100-3")),
        silent(unlabelled(replica("db-1", "0-100-3", "db-0"))),
    ]);
    assert_eq!(d.primary, None);
    assert!(matches!(d.problems.as_slice(), [Problem::NoPrimary(m)] if m.contains("db-1")));
    assert!(writable(&d).is_empty());
}

#[test]
fn a_new_clusters_first_seconds_are_no_problem() {
    let starting = [silent(unlabelled(primary("db-0", "")))];
    let memory = ClusteringMemory::default();
    for servers in [&starting[..], &[]] {
        let d = decide(&Input {
            servers,
            policy: &policy(),
            memory: &memory,
            probe_silent_since: None,
            new_cluster: true,
            now: Timestamp::from_second(NOW).expect("now"),
        });
        assert!(d.problems.is_empty(), "{:?}", d.problems);
    }
    // Once it had a primary, the same picture is a problem.
    assert!(!run(&starting).problems.is_empty());
}

#[test]
fn two_unlabelled_sources_pick_the_one_with_every_transaction() {
    let behind = unlabelled(primary("db-0", "0-100-3"));
    let ahead = unlabelled(primary("db-1", "0-100-5"));
    let d = run(&[behind, ahead]);
    assert_eq!(d.primary.as_deref(), Some("db-1"));
    assert_eq!(d.steps[0], vec![fence("db-0")]);
    assert!(has(
        &d,
        &Action::Replicate {
            pod: "db-0".to_owned(),
            source_host: host("db-1")
        }
    ));
}

#[test]
fn diverged_sources_are_never_resolved_by_guessing() {
    let a = unlabelled(primary("db-0", "0-100-5,1-100-1"));
    let b = unlabelled(primary("db-1", "0-100-5,2-101-1"));
    let d = run(&[a, b]);
    assert_eq!(d.primary, None);
    assert!(matches!(d.problems.as_slice(), [Problem::NoPrimary(_)]));
    assert!(
        !d.actions()
            .any(|a| matches!(a, Action::MakeWritable(_) | Action::Replicate { .. }))
    );
}

#[test]
fn a_writable_replica_is_fenced_in_the_first_step_with_its_sessions_ended() {
    let mut r = replica("db-1", "0-100-9", "db-0");
    r.read_only = false;
    let mut p = primary("db-0", "0-100-9");
    p.read_only = true;
    let d = run(&[p, r]);
    assert_eq!(d.steps[0], vec![fence("db-1")]);
    assert!(position(&d, |a| matches!(a, Action::MakeWritable(_))) > Some(0));
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
    let d = run(&[primary("db-0", "0-100-9"), stopped, elsewhere, none]);
    for pod in ["db-1", "db-2", "db-3"] {
        assert!(
            has(
                &d,
                &Action::Replicate {
                    pod: pod.to_owned(),
                    source_host: host("db-0")
                }
            ),
            "{pod}: {d:?}"
        );
        assert!(
            has(
                &d,
                &Action::LabelReads {
                    pod: pod.to_owned(),
                    serve: false
                }
            ),
            "{pod} leaves the read Service until it replicates"
        );
    }
}

#[test]
fn a_replica_with_errant_transactions_is_fenced_unlabelled_and_reported_never_rejoined() {
    let mut errant = replica("db-1", "0-100-9,0-101-10", "db-0");
    errant.read_only = false;
    errant.gtid = gtid("0-101-10");
    let d = run(&[primary("db-0", "0-100-9"), errant]);
    assert!(matches!(&d.problems[..], [Problem::ErrantTransactions { pod, .. }] if pod == "db-1"));
    assert!(has(&d, &fence("db-1")));
    assert!(has(&d, &Action::Unlabel("db-1".to_owned())));
    assert!(has(
        &d,
        &Action::LabelReads {
            pod: "db-1".to_owned(),
            serve: false
        }
    ));
    assert!(
        !d.actions()
            .any(|a| matches!(a, Action::Replicate { pod, .. } if pod == "db-1"))
    );
    let last = d.steps.last().expect("steps");
    assert!(
        matches!(last.as_slice(), [Action::Reseed { pod, reason }] if pod == "db-1" && reason.contains("holds transactions the primary lacks")),
        "re-seeded last, once fenced and out of service: {last:?}"
    );
}

#[test]
fn a_fresh_copy_of_an_errant_server_is_not_re_seeded_again() {
    let mut copying = replica("db-1", "0-100-9,0-101-10", "db-0");
    copying.gtid = gtid("0-101-10");
    copying.seed_pending = true;
    let d = run(&[primary("db-0", "0-100-9"), copying]);
    assert!(!d.actions().any(|a| matches!(a, Action::Reseed { .. })));
}

#[test]
fn a_replica_the_primary_refuses_to_stream_to_is_treated_as_diverged() {
    let mut diverged = replica("db-1", "0-100-9", "db-0");
    if let Some(r) = diverged.replication.as_mut() {
        r.io_running = false;
        r.io_errno = 1236;
    }
    let d = run(&[primary("db-0", "0-100-12"), diverged]);
    assert!(matches!(&d.problems[..], [Problem::Diverged { pod }] if pod == "db-1"));
    assert!(has(&d, &Action::Unlabel("db-1".to_owned())));
    assert!(!d.actions().any(|a| matches!(a, Action::Replicate { .. })));
    assert!(
        d.actions()
            .any(|a| matches!(a, Action::Reseed { pod, .. } if pod == "db-1"))
    );
}

#[test]
fn a_fresh_copy_is_left_to_its_agent_but_fenced_if_writable() {
    let mut fresh = unlabelled(replica("db-1", "0-100-9", "db-0"));
    fresh.replication = None;
    fresh.seed_pending = true;
    let d = run(&[primary("db-0", "0-100-9"), fresh.clone()]);
    assert!(d.is_settled(), "{d:?}");
    fresh.read_only = false;
    let d = run(&[primary("db-0", "0-100-9"), fresh]);
    assert_eq!(d.steps, vec![vec![fence("db-1")]]);
}

#[test]
fn an_applier_error_is_reported_not_restarted_and_serves_no_reads() {
    let mut broken = replica("db-1", "0-100-8", "db-0");
    if let Some(r) = broken.replication.as_mut() {
        r.sql_running = false;
        r.sql_error = Some("Duplicate entry '7' for key 'PRIMARY'".to_owned());
    }
    let d = run(&[primary("db-0", "0-100-9"), broken]);
    assert!(matches!(&d.problems[..], [Problem::ReplicationBroken { pod, .. }] if pod == "db-1"));
    assert_eq!(
        d.actions().collect::<Vec<_>>(),
        vec![&Action::LabelReads {
            pod: "db-1".to_owned(),
            serve: false
        }]
    );
}

#[test]
fn a_replica_too_far_behind_leaves_the_read_service_and_returns_when_caught_up() {
    let mut lagging = replica("db-1", "0-100-8", "db-0");
    if let Some(r) = lagging.replication.as_mut() {
        r.lag_seconds = Some(31);
    }
    let d = run(&[primary("db-0", "0-100-9"), lagging.clone()]);
    assert!(has(
        &d,
        &Action::LabelReads {
            pod: "db-1".to_owned(),
            serve: false
        }
    ));
    assert!(d.problems.is_empty(), "lag alone is no problem");
    lagging.reads_label = false;
    if let Some(r) = lagging.replication.as_mut() {
        r.lag_seconds = Some(2);
    }
    let d = run(&[primary("db-0", "0-100-9"), lagging]);
    assert!(has(
        &d,
        &Action::LabelReads {
            pod: "db-1".to_owned(),
            serve: true
        }
    ));
}

#[test]
fn semi_sync_replica_side_is_enabled_on_replicas() {
    let mut r = replica("db-1", "0-100-9", "db-0");
    r.semi_sync_replica = false;
    let d = run(&[primary("db-0", "0-100-9"), r.clone()]);
    assert!(has(
        &d,
        &Action::EnableSemiSync {
            pod: "db-1".to_owned(),
            as_primary: false
        }
    ));
    let d = decide_with(
        &[primary("db-0", "0-100-9"), r],
        &no_semi_sync(),
        &healthy_memory(),
    );
    assert!(
        d.is_settled(),
        "semi-sync off in the spec: nothing to enable"
    );
}

#[test]
fn the_primary_waits_for_acknowledgements_only_once_a_replica_holds_data() {
    let mut p = primary("db-0", "0-100-9");
    p.semi_sync_source = false;
    p.semi_sync_active = false;
    let mut seeding = unlabelled(replica("db-1", "", "db-0"));
    seeding.replication = None;
    seeding.seed_pending = true;
    let d = run(&[p.clone(), seeding]);
    assert!(
        !d.actions().any(|a| matches!(
            a,
            Action::EnableSemiSync {
                as_primary: true,
                ..
            }
        )),
        "a seed in progress never blocks writes"
    );
    let d = run(&[p, replica("db-1", "0-100-9", "db-0")]);
    assert!(has(
        &d,
        &Action::EnableSemiSync {
            pod: "db-0".to_owned(),
            as_primary: true
        }
    ));
}

#[test]
fn semi_sync_enabled_before_a_restarted_primary_is_made_writable() {
    let mut p = primary("db-0", "0-100-9");
    p.read_only = true;
    p.semi_sync_source = false;
    let d = run(&[p, replica("db-1", "0-100-9", "db-0")]);
    let semi = position(
        &d,
        |a| matches!(a, Action::EnableSemiSync { pod, as_primary: true } if pod == "db-0"),
    );
    let write = position(
        &d,
        |a| matches!(a, Action::MakeWritable(pod) if pod == "db-0"),
    );
    assert!(semi.is_some() && semi < write, "{d:?}");
}

#[test]
fn a_changed_timeout_reaches_the_running_primary() {
    let mut p = primary("db-0", "0-100-9");
    p.semi_sync_timeout_ms = Some(10_000);
    let d = run(&[p, replica("db-1", "0-100-9", "db-0")]);
    assert!(has(
        &d,
        &Action::EnableSemiSync {
            pod: "db-0".to_owned(),
            as_primary: true
        }
    ));
}

#[test]
fn a_primary_that_fell_back_to_asynchronous_is_reported() {
    let mut p = primary("db-0", "0-100-9");
    p.semi_sync_active = false;
    let d = run(&[p, replica("db-1", "0-100-9", "db-0")]);
    assert_eq!(
        d.problems,
        vec![Problem::SemiSyncFallback("db-0".to_owned())]
    );
    assert_eq!(d.memory.semi_sync_active, Some(false));
}

#[test]
fn a_labelled_primary_that_replicates_is_reported_and_left_read_only() {
    let mut p = replica("db-0", "0-100-9", "db-1");
    p.role_label = Some(InstanceRole::Primary);
    p.reads_label = false;
    let d = run(&[p, replica("db-1", "0-100-9", "db-0")]);
    assert!(
        d.problems
            .contains(&Problem::PrimaryReplicates("db-0".to_owned()))
    );
    assert!(writable(&d).is_empty());
}

#[test]
fn two_labelled_primaries_are_a_problem_and_only_fencing_happens() {
    let d = run(&[primary("db-0", "0-100-9"), primary("db-1", "0-100-9")]);
    assert_eq!(d.primary, None);
    assert!(
        matches!(d.problems.as_slice(), [Problem::NoPrimary(m)] if m.contains("db-0") && m.contains("db-1"))
    );
    assert!(d.actions().all(|a| matches!(a, Action::Fence { .. })));
}

#[test]
fn equal_fresh_sources_pick_the_lowest_ordinal() {
    let d = run(&[
        unlabelled(primary("db-1", "")),
        unlabelled(primary("db-0", "")),
    ]);
    assert_eq!(d.primary.as_deref(), Some("db-0"));
}

#[test]
fn a_primary_that_refuses_the_operator_is_never_failed_over() {
    let mut p = primary("db-0", "0-100-9");
    p.answer = Answer::Refused;
    let d = run(&[p, replica("db-1", "0-100-9", "db-0")]);
    assert_eq!(d.problems, vec![Problem::PrimaryRefuses("db-0".to_owned())]);
    assert!(d.memory.operation.is_none());
    assert!(d.is_settled() || d.actions().all(|a| matches!(a, Action::Fence { .. })));
}

#[test]
fn a_pod_on_a_node_that_stopped_reporting_is_reported_with_the_way_out() {
    let mut r = replica("db-1", "0-100-9", "db-0");
    r.node = Some(NodeFacts {
        name: "node-b1".to_owned(),
        draining: false,
        ready: false,
    });
    let d = run(&[primary("db-0", "0-100-9"), silent(r)]);
    let problem = d
        .problems
        .iter()
        .find(|p| matches!(p, Problem::NodeUnreachable { .. }))
        .expect("reported");
    assert!(
        problem
            .message()
            .contains("node.kubernetes.io/out-of-service")
    );
    assert_eq!(problem.pod(), Some("db-1"));
}

// --- switchover -----------------------------------------------------------

fn draining(mut s: ServerState) -> ServerState {
    if let Some(node) = s.node.as_mut() {
        node.draining = true;
    }
    s
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

#[test]
fn a_drain_of_the_primarys_node_hands_over_to_the_least_behind_replica() {
    let d = run(&three());
    assert_hands_over(&d, "db-0", "db-1");
    let steps = remembered(&d);
    assert_eq!(
        steps
            .iter()
            .filter_map(|m| m.operation.as_ref().map(|o| o.step))
            .collect::<Vec<_>>(),
        vec![OperationStep::Fencing, OperationStep::Promoting],
        "each step is recorded before it is taken"
    );
    let operation = steps[0].operation.as_ref().expect("operation");
    assert_eq!(
        (
            operation.kind,
            operation.reason.as_str(),
            operation.to.as_deref()
        ),
        (OperationKind::Switchover, "NodeDrain", Some("db-1"))
    );
    assert!(has(
        &d,
        &Action::Replicate {
            pod: "db-2".to_owned(),
            source_host: host("db-1")
        }
    ));
    let done = d.completed.as_ref().expect("complete once every step ran");
    assert_eq!(done.to, "db-1");
    assert_eq!(d.memory.operation, None);
}

#[test]
fn a_deleted_primary_pod_hands_over_too() {
    let mut servers = three();
    servers[0] = primary("db-0", "0-100-9");
    servers[0].terminating = true;
    let d = run(&servers);
    assert_hands_over(&d, "db-0", "db-1");
    assert_eq!(
        remembered(&d)[0]
            .operation
            .as_ref()
            .map(|o| o.reason.as_str()),
        Some("PodDeleted")
    );
}

#[test]
fn a_replica_with_its_sql_thread_stopped_is_never_chosen_when_a_caught_up_one_exists() {
    let mut servers = three();
    if let Some(r) = servers[1].replication.as_mut() {
        r.sql_running = false;
    }
    let d = run(&servers);
    assert_hands_over(&d, "db-0", "db-2");
}

#[test]
fn replicas_too_far_behind_or_on_draining_nodes_are_never_chosen() {
    let mut servers = three();
    servers[1] = draining(servers[1].clone());
    if let Some(r) = servers[2].replication.as_mut() {
        r.lag_seconds = Some(60);
    }
    let d = run(&servers);
    assert!(d.memory.operation.is_none());
    let problem = d
        .problems
        .iter()
        .find(|p| matches!(p, Problem::NoSwitchoverCandidate { .. }))
        .expect("reported");
    let message = problem.message();
    assert!(
        message.contains("db-1's node") && message.contains("60 s behind"),
        "{message}"
    );
    assert!(
        !d.actions()
            .any(|a| matches!(a, Action::Fence { pod, .. } if pod == "db-0"))
    );
}

fn requesting(request: SwitchoverRequest) -> Policy {
    Policy {
        switchover_request: Some(request),
        ..policy()
    }
}

#[test]
fn a_requested_switchover_is_consumed_and_hands_over() {
    let mut servers = three();
    servers[0] = primary("db-0", "0-100-9");
    let d = decide_with(
        &servers,
        &requesting(SwitchoverRequest::Pod("db-2".to_owned())),
        &healthy_memory(),
    );
    assert_eq!(
        d.steps[0],
        vec![Action::ConsumeAnnotation(ANNOTATION_SWITCHOVER)]
    );
    assert_hands_over(&d, "db-0", "db-2");
}

#[test]
fn a_request_naming_a_missing_lagging_broken_or_errant_pod_changes_nothing() {
    let mut servers = three();
    servers[0] = primary("db-0", "0-100-9");
    let mut broken = replica("db-3", "0-100-9", "db-0");
    if let Some(r) = broken.replication.as_mut() {
        r.sql_error = Some("boom".to_owned());
        r.sql_running = false;
    }
    let mut errant = replica("db-4", "0-100-9,1-104-1", "db-0");
    errant.gtid = gtid("0-100-9,1-104-1");
    servers.extend([broken, errant]);
    if let Some(r) = servers[2].replication.as_mut() {
        r.lag_seconds = Some(600);
    }
    for (pod, why) in [
        ("db-9", "not an instance"),
        ("db-2", "600 s behind"),
        ("db-3", "broken"),
        ("db-4", "transactions the primary lacks"),
        ("db-0", "already the primary"),
    ] {
        let d = decide_with(
            &servers,
            &requesting(SwitchoverRequest::Pod(pod.to_owned())),
            &healthy_memory(),
        );
        assert!(
            has(&d, &Action::ConsumeAnnotation(ANNOTATION_SWITCHOVER)),
            "{pod}"
        );
        assert!(
            !d.actions()
                .any(|a| matches!(a, Action::Fence { pod, .. } if pod == "db-0")),
            "{pod}: the primary keeps taking writes"
        );
        assert!(writable(&d).is_empty(), "{pod}: {d:?}");
        assert!(d.memory.operation.is_none());
        let refusal = d.memory.last_refusal.clone().unwrap_or_default();
        assert!(refusal.contains(why), "{pod}: {refusal}");
        assert_eq!(d.primary.as_deref(), Some("db-0"));
    }
}

#[test]
fn manual_mode_ignores_a_drain_but_honours_a_request() {
    let manual = Policy {
        mode: FailoverMode::Manual,
        ..policy()
    };
    let d = decide_with(&three(), &manual, &healthy_memory());
    assert!(d.memory.operation.is_none());
    assert!(d.is_settled(), "{d:?}");
    let asked = Policy {
        switchover_request: Some(SwitchoverRequest::Any),
        ..manual
    };
    let d = decide_with(&three(), &asked, &healthy_memory());
    assert_hands_over(&d, "db-0", "db-1");
}

#[test]
fn a_single_instance_drain_warns_that_writes_stop_and_never_waits() {
    let d = decide_with(
        &[draining(primary("db-0", "0-100-9"))],
        &no_semi_sync(),
        &ClusteringMemory::default(),
    );
    assert!(matches!(
        d.problems.as_slice(),
        [Problem::SingleInstanceDisruption { pod, .. }] if pod == "db-0"
    ));
    assert!(!d.problems[0].degrades());
    assert!(d.memory.operation.is_none());
    assert!(d.is_settled() || d.actions().all(|a| !matches!(a, Action::Fence { .. })));
}

#[test]
fn a_single_instance_that_went_silent_is_never_failed_over_nor_blocked() {
    let mut solo = silent(primary("db-0", "0-100-9"));
    solo.terminating = true;
    let d = decide_with(&[solo.clone()], &no_semi_sync(), &silent_since(NOW - 60));
    assert!(matches!(
        d.problems.as_slice(),
        [Problem::SingleInstanceDisruption { pod, .. }] if pod == "db-0"
    ));
    solo.terminating = false;
    let d = decide_with(&[solo], &no_semi_sync(), &silent_since(NOW - 60));
    assert!(d.problems.is_empty(), "{:?}", d.problems);
    assert!(d.memory.operation.is_none());
}

fn switching(step: OperationStep, started: i64) -> ClusteringMemory {
    ClusteringMemory {
        operation: Some(Operation {
            kind: OperationKind::Switchover,
            from: "db-0".to_owned(),
            to: Some("db-1".to_owned()),
            reason: "NodeDrain".to_owned(),
            step,
            started_at: at(started),
            writes_blocked_since: at(started),
        }),
        ..healthy_memory()
    }
}

#[test]
fn a_switchover_resumed_in_time_fences_again_and_waits_only_what_is_left() {
    let mut servers = three();
    servers[0].read_only = true;
    let d = decide_with(
        &servers,
        &policy(),
        &switching(OperationStep::Fencing, NOW - 5),
    );
    assert_hands_over(&d, "db-0", "db-1");
    assert!(has(
        &d,
        &Action::CatchUp {
            pod: "db-1".to_owned(),
            source: "db-0".to_owned(),
            timeout_secs: 15
        }
    ));
}

#[test]
fn a_switchover_whose_candidate_did_not_catch_up_in_time_is_undone() {
    let mut servers = three();
    servers[0].read_only = true;
    let d = decide_with(
        &servers,
        &policy(),
        &switching(OperationStep::Fencing, NOW - 21),
    );
    assert_eq!(writable(&d), ["db-0"], "the old primary takes writes again");
    assert!(!d.actions().any(|a| matches!(a, Action::Promote(_))));
    assert!(d.memory.operation.is_none());
    assert!(
        d.memory
            .last_refusal
            .as_deref()
            .is_some_and(|r| r.contains("undone"))
    );
    assert_eq!(d.memory.undone_at, Some(at(NOW)));
    assert_eq!(d.again, Again::Now);
    // Automatic triggers wait before trying again.
    let d = decide_with(&three(), &policy(), &d.memory);
    assert!(d.memory.operation.is_none(), "{d:?}");
}

#[test]
fn once_promoting_is_recorded_the_old_primary_is_never_made_writable_again() {
    let mut servers = three();
    servers[0].read_only = true;
    // Long past any timeout, the candidate already half promoted.
    servers[1].replication = None;
    let d = decide_with(
        &servers,
        &policy(),
        &switching(OperationStep::Promoting, NOW - 600),
    );
    assert_eq!(writable(&d), ["db-1"]);
    assert!(has(&d, &Action::LabelPrimary("db-1".to_owned())));
    assert!(d.completed.is_some());
    // The candidate not answering stalls it; the old primary stays fenced.
    servers[1] = silent(servers[1].clone());
    let d = decide_with(
        &servers,
        &policy(),
        &switching(OperationStep::Promoting, NOW - 600),
    );
    assert!(writable(&d).is_empty());
    assert!(
        matches!(d.problems.as_slice(), [Problem::OperationStalled { pod, .. }] if pod == "db-1")
    );
}

#[test]
fn a_switchover_resumed_after_the_labels_moved_completes_without_touching_the_servers() {
    let mut old = replica("db-0", "0-100-9", "db-1");
    old.node = node("node-db-0");
    let mut new = primary("db-1", "0-100-9");
    new.node = node("node-db-1");
    let servers = [old, new, replica("db-2", "0-100-9", "db-1")];
    let d = decide_with(
        &servers,
        &policy(),
        &switching(OperationStep::Promoting, NOW - 1),
    );
    assert!(d.completed.is_some());
    assert!(
        d.actions()
            .all(|a| matches!(a, Action::LabelReplica(_) | Action::LabelPrimary(_))),
        "{d:?}"
    );
}

// --- failover -------------------------------------------------------------

fn lost() -> Vec<ServerState> {
    vec![
        silent(primary("db-0", "0-100-9")),
        replica("db-1", "0-100-9", "db-0"),
        replica("db-2", "0-100-9", "db-0"),
    ]
}

fn silent_since(second: i64) -> ClusteringMemory {
    ClusteringMemory {
        primary_silent_since: Some(at(second)),
        ..healthy_memory()
    }
}

#[test]
fn a_primary_silent_for_less_than_the_debounce_is_only_looked_at_again_soon() {
    let d = decide_with(&lost(), &policy(), &healthy_memory());
    assert_eq!(d.memory.primary_silent_since, Some(at(NOW)));
    assert!(
        d.problems.is_empty(),
        "the first seconds are not a problem yet"
    );
    assert!(d.memory.operation.is_none());
    assert!(matches!(d.again, Again::After(after) if after.as_millis() <= 500));
    let d = decide_with(&lost(), &policy(), &silent_since(NOW - 2));
    assert!(d.memory.operation.is_none());
}

#[test]
fn receivers_are_stopped_a_third_of_the_way_into_the_wait_and_restarted_if_the_primary_returns() {
    let d = decide_with(&lost(), &policy(), &silent_since(NOW));
    assert!(!d.actions().any(|a| matches!(a, Action::StopReceiver(_))));
    let d = decide_with(&lost(), &policy(), &silent_since(NOW - 1));
    assert!(has(&d, &Action::StopReceiver("db-1".to_owned())));
    assert!(has(&d, &Action::StopReceiver("db-2".to_owned())));
    assert!(d.memory.operation.is_none(), "no failover yet");
    // The primary answers again: its replicas are restarted.
    let mut servers = lost();
    servers[0] = primary("db-0", "0-100-9");
    servers[1] = stopped(servers[1].clone(), "0-100-9", "0-100-9");
    let d = decide_with(&servers, &policy(), &silent_since(NOW - 1));
    assert_eq!(d.memory.primary_silent_since, None);
    assert!(has(
        &d,
        &Action::Replicate {
            pod: "db-1".to_owned(),
            source_host: host("db-0")
        }
    ));
}

#[test]
fn the_fast_probe_starts_the_debounce_earlier() {
    let memory = healthy_memory();
    let d = decide(&Input {
        servers: &lost(),
        policy: &policy(),
        memory: &memory,
        probe_silent_since: Some(Timestamp::from_second(NOW - 3).expect("t")),
        new_cluster: false,
        now: Timestamp::from_second(NOW).expect("now"),
    });
    assert_eq!(d.memory.primary_silent_since, Some(at(NOW - 3)));
    assert!(d.memory.operation.is_some(), "silent long enough: {d:?}");
}

#[test]
fn after_the_debounce_every_receiver_is_stopped_first() {
    let d = decide_with(&lost(), &policy(), &silent_since(NOW - 3));
    let operation = d.memory.operation.as_ref().expect("failover started");
    assert_eq!(
        (operation.kind, operation.step, operation.to.as_deref()),
        (
            OperationKind::Failover,
            OperationStep::StoppingReceivers,
            None
        )
    );
    assert_eq!(operation.writes_blocked_since, at(NOW - 3));
    assert_eq!(remembered(&d).len(), 1);
    assert!(has(&d, &Action::StopReceiver("db-1".to_owned())));
    assert!(has(&d, &Action::StopReceiver("db-2".to_owned())));
    assert!(
        !d.actions()
            .any(|a| matches!(a, Action::Promote(_) | Action::MakeWritable(_)))
    );
    assert_eq!(d.again, Again::Now);
}

fn failing_over(step: OperationStep, to: Option<&str>) -> ClusteringMemory {
    ClusteringMemory {
        operation: Some(Operation {
            kind: OperationKind::Failover,
            from: "db-0".to_owned(),
            to: to.map(str::to_owned),
            reason: "PrimaryLost".to_owned(),
            step,
            started_at: at(NOW - 1),
            writes_blocked_since: at(NOW - 4),
        }),
        ..silent_since(NOW - 4)
    }
}

fn stopped(mut s: ServerState, executed: &str, received: &str) -> ServerState {
    s.gtid = gtid(executed);
    if let Some(r) = s.replication.as_mut() {
        r.io_running = false;
        r.received = gtid(received);
    }
    s
}

#[test]
fn the_replica_that_received_the_most_is_promoted_after_applying_its_relay_log() {
    let servers = [
        silent(primary("db-0", "0-100-12")),
        // Applied more, received less.
        stopped(replica("db-1", "", "db-0"), "0-100-10", "0-100-10"),
        // Received everything the other has, and more.
        stopped(replica("db-2", "", "db-0"), "0-100-8", "0-100-11"),
    ];
    let d = decide_with(
        &servers,
        &policy(),
        &failing_over(OperationStep::StoppingReceivers, None),
    );
    let wait = d
        .actions()
        .find_map(|a| match a {
            Action::WaitApplied { pod, gtid, .. } => Some((pod.as_str(), gtid.to_string())),
            _ => None,
        })
        .expect("waits for the relay log");
    assert_eq!(wait, ("db-2", "0-100-11".to_owned()));
    let pos = |wanted: &dyn Fn(&Action) -> bool| position(&d, wanted).unwrap_or(usize::MAX);
    let applied = pos(&|a| matches!(a, Action::WaitApplied { .. }));
    let promoted = pos(&|a| matches!(a, Action::Promote(p) if p == "db-2"));
    let repointed = pos(
        &|a| matches!(a, Action::Replicate { pod, source_host } if pod == "db-1" && *source_host == host("db-2")),
    );
    let writable_at = pos(&|a| matches!(a, Action::MakeWritable(p) if p == "db-2"));
    let unlabelled_at = pos(&|a| matches!(a, Action::Unlabel(p) if p == "db-0"));
    let labelled = pos(&|a| matches!(a, Action::LabelPrimary(p) if p == "db-2"));
    let order = [
        applied,
        promoted,
        repointed,
        writable_at,
        unlabelled_at,
        labelled,
    ];
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{order:?} {d:?}");
    assert_eq!(writable(&d), ["db-2"]);
    assert_eq!(
        remembered(&d)[0]
            .operation
            .as_ref()
            .map(|o| (o.step, o.to.clone())),
        Some((OperationStep::Promoting, Some("db-2".to_owned())))
    );
    assert!(d.completed.is_some());
    assert!(
        !d.actions()
            .any(|a| matches!(a, Action::Replicate { pod, .. } if pod == "db-0")),
        "the lost primary rejoins only when it returns"
    );
}

#[test]
fn receivers_still_running_are_stopped_again_before_anyone_is_chosen() {
    let mut servers = lost();
    servers[2] = stopped(servers[2].clone(), "0-100-9", "0-100-9");
    let d = decide_with(
        &servers,
        &policy(),
        &failing_over(OperationStep::StoppingReceivers, None),
    );
    assert_eq!(d.steps, vec![vec![Action::StopReceiver("db-1".to_owned())]]);
}

#[test]
fn failover_is_refused_when_semi_sync_had_fallen_back() {
    let memory = ClusteringMemory {
        semi_sync_active: Some(false),
        ..silent_since(NOW - 30)
    };
    let d = decide_with(&lost(), &policy(), &memory);
    assert!(matches!(
        d.problems.as_slice(),
        [Problem::FailoverBlocked { pod, why: BlockedWhy::SemiSyncInactive }] if pod == "db-0"
    ));
    assert!(d.memory.operation.is_none());
    assert!(
        !d.actions()
            .any(|a| matches!(a, Action::StopReceiver(_) | Action::Promote(_)))
    );
}

#[test]
fn failover_is_refused_without_semi_sync() {
    let d = decide_with(&lost(), &no_semi_sync(), &silent_since(NOW - 30));
    assert!(matches!(
        d.problems.as_slice(),
        [Problem::FailoverBlocked {
            why: BlockedWhy::SemiSyncOff,
            ..
        }]
    ));
}

#[test]
fn failover_is_refused_while_a_silent_replica_may_hold_the_only_copy() {
    let mut servers = lost();
    servers[2] = silent(servers[2].clone());
    let d = decide_with(&servers, &policy(), &silent_since(NOW - 30));
    assert!(matches!(
        d.problems.as_slice(),
        [Problem::FailoverBlocked { why: BlockedWhy::TooFewReplicas { silent, .. }, .. }, ..]
            if silent == &["db-2".to_owned()]
    ));
    assert!(d.memory.operation.is_none());
}

#[test]
fn a_forced_failover_goes_ahead_and_consumes_the_annotation() {
    let memory = ClusteringMemory {
        semi_sync_active: Some(false),
        ..silent_since(NOW - 30)
    };
    let forced = Policy {
        force_failover: Some("db-0".to_owned()),
        ..policy()
    };
    let d = decide_with(&lost(), &forced, &memory);
    assert_eq!(
        d.steps[0],
        vec![Action::ConsumeAnnotation(ANNOTATION_FORCE_FAILOVER)]
    );
    assert_eq!(
        d.memory.operation.as_ref().map(|o| o.reason.as_str()),
        Some("Forced")
    );
    // Naming another pod forces nothing.
    let other = Policy {
        force_failover: Some("db-1".to_owned()),
        ..policy()
    };
    let d = decide_with(&lost(), &other, &memory);
    assert!(d.memory.operation.is_none());
}

#[test]
fn manual_mode_reports_a_lost_primary_and_promotes_nobody() {
    let manual = Policy {
        mode: FailoverMode::Manual,
        ..policy()
    };
    let d = decide_with(&lost(), &manual, &silent_since(NOW - 300));
    assert_eq!(
        d.problems,
        vec![Problem::PrimaryUnreachable("db-0".to_owned())]
    );
    assert!(d.memory.operation.is_none());
}

#[test]
fn a_replica_that_cannot_apply_is_never_promoted_and_blocks_if_it_alone_has_everything() {
    let mut broken = stopped(replica("db-2", "", "db-0"), "0-100-8", "0-100-11");
    if let Some(r) = broken.replication.as_mut() {
        r.sql_running = false;
        r.sql_error = Some("boom".to_owned());
    }
    let servers = [
        silent(primary("db-0", "0-100-12")),
        stopped(replica("db-1", "", "db-0"), "0-100-10", "0-100-10"),
        broken,
    ];
    let d = decide_with(
        &servers,
        &policy(),
        &failing_over(OperationStep::StoppingReceivers, None),
    );
    assert!(
        !d.actions()
            .any(|a| matches!(a, Action::Promote(_) | Action::MakeWritable(_)))
    );
    assert!(d.problems.iter().any(|p| matches!(
        p,
        Problem::FailoverBlocked {
            why: BlockedWhy::NoCompleteCandidate,
            ..
        }
    )));
    assert!(
        d.memory.operation.is_none(),
        "the failover is given up, not left half done"
    );
}

#[test]
fn a_primary_back_before_anyone_was_promoted_stays_the_primary() {
    let servers = [
        primary("db-0", "0-100-9"),
        stopped(replica("db-1", "", "db-0"), "0-100-9", "0-100-9"),
        stopped(replica("db-2", "", "db-0"), "0-100-9", "0-100-9"),
    ];
    let d = decide_with(
        &servers,
        &policy(),
        &failing_over(OperationStep::StoppingReceivers, None),
    );
    assert!(d.memory.operation.is_none());
    assert_eq!(d.again, Again::Now);
    assert!(writable(&d).is_empty());
    // The next look repairs the stopped receivers.
    let d = decide_with(&servers, &policy(), &d.memory);
    assert!(has(
        &d,
        &Action::Replicate {
            pod: "db-1".to_owned(),
            source_host: host("db-0")
        }
    ));
}

#[test]
fn an_old_primary_that_returns_with_errant_writes_is_fenced_and_left_out() {
    let mut old = unlabelled(primary("db-0", "0-100-12"));
    old.read_only = false;
    let servers = [
        old,
        primary("db-1", "0-100-11,0-101-13"),
        replica("db-2", "0-100-11,0-101-13", "db-1"),
    ];
    // MariaDB positions compare by sequence: make the divergence visible as
    // a domain the new primary lacks.
    let mut servers = servers.to_vec();
    servers[0].gtid = gtid("0-100-12,1-100-1");
    let d = run(&servers);
    assert_eq!(d.steps[0], vec![fence("db-0")]);
    assert!(matches!(&d.problems[..], [Problem::ErrantTransactions { pod, .. }] if pod == "db-0"));
    assert!(
        !d.actions()
            .any(|a| matches!(a, Action::Replicate { pod, .. } if pod == "db-0"))
    );
}

#[test]
fn an_old_primary_that_returns_with_nothing_extra_rejoins_as_a_replica() {
    let mut old = unlabelled(primary("db-0", "0-100-11"));
    old.read_only = false;
    let servers = [
        old,
        primary("db-1", "0-100-14"),
        replica("db-2", "0-100-14", "db-1"),
    ];
    let d = run(&servers);
    assert_eq!(d.steps[0], vec![fence("db-0")]);
    assert!(has(
        &d,
        &Action::Replicate {
            pod: "db-0".to_owned(),
            source_host: host("db-1")
        }
    ));
    assert!(has(&d, &Action::LabelReplica("db-0".to_owned())));
}

// --- rolling updates --------------------------------------------------------

fn outdated(mut s: ServerState) -> ServerState {
    s.outdated = true;
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

#[test]
fn an_up_to_date_cluster_restarts_nothing() {
    let d = run(&settled_three());
    assert!(d.is_settled(), "{d:?}");
    assert_eq!(d.rollout, Rollout::UpToDate);
}

#[test]
fn replicas_restart_one_at_a_time_highest_ordinal_first() {
    let servers: Vec<_> = settled_three().into_iter().map(outdated).collect();
    let d = run(&servers);
    assert_eq!(restarts(&d), ["db-2"]);
    assert_eq!(d.actions().count(), 1, "nothing else: {d:?}");
    assert_eq!(d.rollout, Rollout::Restarting("db-2".to_owned()));

    // db-2 came back updated; db-1 is next, the primary still last.
    let mut servers = servers;
    servers[2].outdated = false;
    assert_eq!(restarts(&run(&servers)), ["db-1"]);
}

fn with_image(image: &str) -> Policy {
    Policy {
        image: image.to_owned(),
        ..policy()
    }
}

fn refused(d: &Decision) -> Option<&str> {
    match &d.rollout {
        Rollout::Refused(why) => Some(why),
        _ => None,
    }
}

#[test]
fn an_image_of_an_older_series_restarts_nothing_and_says_why() {
    let servers: Vec<_> = settled_three().into_iter().map(outdated).collect();
    for image in [
        "mariadb:10.6",
        "mariadb:10.6.21",
        "registry:5000/mariadb:9.9",
    ] {
        let d = decide_with(&servers, &with_image(image), &healthy_memory());
        assert!(restarts(&d).is_empty(), "{image}: {d:?}");
        let why = refused(&d).unwrap_or_else(|| panic!("{image}: {:?}", d.rollout));
        assert!(
            why.contains(image) && why.contains("10.11") && why.contains("spec.image"),
            "names the field, both versions and the fix: {why}"
        );
        assert_eq!(
            d.problems.iter().map(Problem::reason).collect::<Vec<_>>(),
            ["DowngradeRefused"]
        );
        assert!(!d.problems[0].degrades(), "the servers still serve");
    }
    // Only the primary on an old spec: it does not hand over either.
    let mut servers = settled_three();
    servers[0].outdated = true;
    let d = decide_with(&servers, &with_image("mariadb:10.6"), &healthy_memory());
    assert!(
        d.memory.operation.is_none() && d.completed.is_none(),
        "{d:?}"
    );
    assert!(refused(&d).is_some());
}

#[test]
fn a_failed_upgrade_step_is_reported_and_holds_the_roll() {
    let mut servers: Vec<_> = settled_three().into_iter().map(outdated).collect();
    servers[2].outdated = false;
    servers[2].upgrade_error = Some("failed to upgrade the system tables".to_owned());
    let d = run(&servers);
    assert!(restarts(&d).is_empty(), "{d:?}");
    assert!(matches!(&d.rollout, Rollout::Waiting(why) if why.contains("db-2")));
    let problem = d
        .problems
        .iter()
        .find(|p| p.reason() == "UpgradeFailed")
        .expect("reported");
    assert_eq!(problem.pod(), Some("db-2"));
    assert!(problem.message().contains("kubectl logs db-2 -c agent"));
    assert!(!problem.degrades());
}

#[test]
fn upgrades_patch_downgrades_and_unversioned_tags_roll() {
    let servers: Vec<_> = settled_three().into_iter().map(outdated).collect();
    for image in [
        "mariadb:11.4",
        "mariadb:10.11.2",
        "mariadb:latest",
        "mariadb",
    ] {
        let d = decide_with(&servers, &with_image(image), &healthy_memory());
        assert_eq!(restarts(&d), ["db-2"], "{image}: {d:?}");
    }
}

#[test]
fn a_replica_back_on_an_older_series_than_the_primary_stops_the_roll() {
    // An unversioned tag turned out older: db-2 came back on 10.6.
    let mut servers: Vec<_> = settled_three().into_iter().map(outdated).collect();
    servers[2].outdated = false;
    servers[2].version = Some(mariadb(10, 6, 21));
    let d = decide_with(&servers, &with_image("mariadb:latest"), &healthy_memory());
    assert!(restarts(&d).is_empty(), "{d:?}");
    let why = refused(&d).unwrap_or_default();
    assert!(
        why.contains("db-2") && why.contains("10.6.21") && why.contains("db-0"),
        "{why}"
    );
    // Nor does the primary hand over to it.
    let mut servers = settled_three();
    servers[0].outdated = true;
    servers[1].version = Some(mariadb(10, 6, 21));
    servers[2].version = Some(mariadb(10, 6, 21));
    let d = decide_with(&servers, &with_image("mariadb:latest"), &healthy_memory());
    assert!(
        d.memory.operation.is_none() && d.completed.is_none(),
        "{d:?}"
    );
    // A newer replica is what an upgrade looks like: it goes on.
    let mut servers: Vec<_> = settled_three().into_iter().map(outdated).collect();
    servers[2].outdated = false;
    servers[2].version = Some(mariadb(11, 4, 5));
    let d = decide_with(&servers, &with_image("mariadb:11.4"), &healthy_memory());
    assert_eq!(restarts(&d), ["db-1"]);
}

#[test]
fn a_restart_waits_for_every_server_to_serve_and_catch_up() {
    let base: Vec<_> = settled_three().into_iter().map(outdated).collect();
    type Change = fn(&mut ServerState);
    let cases: [(&str, Change); 5] = [
        ("is restarting", |s| s.terminating = true),
        ("to serve", |s| s.pod_ready = false),
        ("to catch up", |s| {
            if let Some(r) = s.replication.as_mut() {
                r.lag_seconds = Some(11);
            }
        }),
        ("to catch up", |s| {
            if let Some(r) = s.replication.as_mut() {
                r.lag_seconds = None;
            }
        }),
        ("drained", |s| {
            if let Some(node) = s.node.as_mut() {
                node.draining = true;
            }
        }),
    ];
    for (why, change) in cases {
        let mut servers = base.clone();
        change(&mut servers[1]);
        let d = run(&servers);
        assert!(restarts(&d).is_empty(), "{why}: {d:?}");
        match &d.rollout {
            Rollout::Waiting(message) => {
                assert!(
                    message.contains("db-1") && message.contains(why),
                    "{message}"
                );
            }
            other => panic!("{why}: {other:?}"),
        }
    }
}

#[test]
fn a_cluster_with_a_problem_is_not_rolled() {
    let mut servers: Vec<_> = settled_three().into_iter().map(outdated).collect();
    // The primary stopped waiting for acknowledgements.
    servers[0].semi_sync_active = false;
    let d = run(&servers);
    assert!(restarts(&d).is_empty(), "{d:?}");
    assert!(matches!(&d.rollout, Rollout::Waiting(why) if why.contains("needs attention")));
}

#[test]
fn manual_strategy_reports_and_restarts_nothing() {
    let servers: Vec<_> = settled_three().into_iter().map(outdated).collect();
    let manual = Policy {
        update: ebisu_api::UpdateStrategy::Manual,
        ..policy()
    };
    let d = decide_with(&servers, &manual, &healthy_memory());
    assert!(d.is_settled(), "{d:?}");
    assert_eq!(d.rollout, Rollout::Manual);
}

#[test]
fn the_primary_goes_last_after_a_switchover_to_an_updated_replica() {
    let mut servers = settled_three();
    servers[0].outdated = true;
    let d = run(&servers);
    assert!(
        restarts(&d).is_empty(),
        "the primary is never restarted: {d:?}"
    );
    assert_hands_over(&d, "db-0", "db-1");
    assert_eq!(
        d.completed.as_ref().map(|c| c.operation.reason.as_str()),
        Some("RollingUpdate")
    );
    assert_eq!(d.rollout, Rollout::SwitchingOver);

    // Once it is a caught-up replica, the old primary is restarted.
    let after = vec![
        outdated(replica("db-0", "0-100-9", "db-1")),
        primary("db-1", "0-100-9"),
        replica("db-2", "0-100-9", "db-1"),
    ];
    assert_eq!(restarts(&run(&after)), ["db-0"]);
}

#[test]
fn the_primary_waits_for_a_switchover_under_manual_failover_or_alone() {
    let mut servers = settled_three();
    servers[0].outdated = true;
    let manual = Policy {
        mode: FailoverMode::Manual,
        ..policy()
    };
    let d = decide_with(&servers, &manual, &healthy_memory());
    assert!(d.is_settled(), "{d:?}");
    assert!(
        matches!(&d.rollout, Rollout::Waiting(why) if why.contains("ebisu.dev/switchover=any")),
        "{:?}",
        d.rollout
    );

    let alone = [outdated(primary("db-0", "0-100-9"))];
    let d = run(&alone);
    assert!(d.actions().next().is_none(), "{d:?}");
    assert!(matches!(&d.rollout, Rollout::Waiting(why) if why.contains("only instance")));
}

/// Over every mix of outdated, unready and terminating servers: at most
/// one restart, never of the primary, and only while all serve.
#[test]
fn restarts_are_single_never_the_primary_and_only_when_all_serve() {
    for mask in 0u32..(1 << 9) {
        let mut servers = settled_three();
        for (i, s) in servers.iter_mut().enumerate() {
            s.outdated = mask & (1 << i) != 0;
            s.pod_ready = mask & (1 << (i + 3)) == 0;
            s.terminating = mask & (1 << (i + 6)) != 0;
        }
        let d = run(&servers);
        let restarted = restarts(&d);
        assert!(restarted.len() <= 1, "{mask:b}: {restarted:?}");
        assert!(
            !restarted.contains(&"db-0"),
            "{mask:b}: the primary restarted"
        );
        if !restarted.is_empty() {
            assert!(
                servers.iter().all(|s| s.pod_ready && !s.terminating),
                "{mask:b}: restarted while a server was down"
            );
            assert!(servers.iter().any(|s| s.outdated && s.pod == restarted[0]));
        }
    }
}

// --- settings applied online --------------------------------------------------

fn online_policy(settings: &[(&str, &str)]) -> Policy {
    Policy {
        online_config: settings
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        ..policy()
    }
}

fn set_globals(d: &Decision) -> Vec<(&str, &[(String, String)])> {
    d.actions()
        .filter_map(|a| match a {
            Action::SetGlobals { pod, settings } => Some((pod.as_str(), settings.as_slice())),
            _ => None,
        })
        .collect()
}

fn pair(k: &str, v: &str) -> (String, String) {
    (k.to_owned(), v.to_owned())
}

#[test]
fn online_settings_reach_every_answering_server_once() {
    let mut servers = settled_three();
    servers[2] = silent(servers[2].clone());
    let wanted = online_policy(&[("max_connections", "300")]);
    let d = decide_with(&servers, &wanted, &healthy_memory());
    let set = set_globals(&d);
    assert_eq!(
        set,
        [
            ("db-0", &[pair("max_connections", "300")][..]),
            ("db-1", &[pair("max_connections", "300")][..]),
        ],
        "the silent server gets it when it answers"
    );
    assert!(
        matches!(
            d.steps.last().map(Vec::as_slice),
            Some([Action::Remember(_)])
        ),
        "remembered after it was set"
    );
    assert!(
        restarts(&d).is_empty(),
        "and nothing restarts the same pass"
    );

    // Remembered: the next pass sets it only on the server that was silent.
    servers[2] = replica("db-2", "0-100-9", "db-0");
    let d = decide_with(&servers, &wanted, &d.memory);
    assert_eq!(
        set_globals(&d),
        [("db-2", &[pair("max_connections", "300")][..])]
    );
    let d = decide_with(&servers, &wanted, &d.memory);
    assert!(d.is_settled(), "nothing left to set: {d:?}");
}

#[test]
fn a_changed_or_removed_online_setting_is_set_or_returned_to_its_default() {
    let servers = [primary("db-0", "0-100-9")];
    let first = online_policy(&[("max_connections", "300"), ("wait_timeout", "60")]);
    let memory = decide_with(&servers, &first, &healthy_memory()).memory;
    let second = online_policy(&[("max_connections", "500")]);
    let d = decide_with(&servers, &second, &memory);
    assert_eq!(
        set_globals(&d),
        [(
            "db-0",
            &[
                pair("max_connections", "500"),
                pair("wait_timeout", "DEFAULT")
            ][..]
        )]
    );
}

#[test]
fn servers_that_are_gone_are_forgotten() {
    let wanted = online_policy(&[("max_connections", "300")]);
    let memory = decide_with(&settled_three(), &wanted, &healthy_memory()).memory;
    assert_eq!(memory.online_config.len(), 3);
    let two = &settled_three()[..2];
    let d = decide_with(two, &wanted, &memory);
    assert!(set_globals(&d).is_empty());
    assert_eq!(
        d.memory.online_config.keys().collect::<Vec<_>>(),
        ["db-0", "db-1"]
    );
}
