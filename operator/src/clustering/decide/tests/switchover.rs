//! Planned changes of primary: drains, deleted pods, requests, and their resumption.

use super::*;

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
        vec![
            OperationStep::Fencing,
            OperationStep::Promoting,
            OperationStep::MakingWritable
        ],
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
    // The candidate made writable and then silent: the old primary stays
    // fenced, and the candidate is the primary the failover rules look at.
    servers[1] = silent(servers[1].clone());
    let d = decide_with(
        &servers,
        &policy(),
        &switching(OperationStep::MakingWritable, NOW - 600),
    );
    assert!(writable(&d).is_empty());
    assert!(d.memory.operation.is_none());
    assert_eq!(d.memory.primary.as_deref(), Some("db-1"));
}

#[test]
fn a_switchover_resumed_after_the_labels_moved_completes_without_touching_the_servers() {
    let mut old = replica("db-0", "0-100-9", "db-1");
    old.node = node("node-db-0");
    let mut new = primary("db-1", "0-100-9");
    new.node = node("node-db-1");
    let servers = [old, new, replica("db-2", "0-100-9", "db-1")];
    let d = decide_with_lease(
        &servers,
        &policy(),
        &switching(OperationStep::Promoting, NOW - 1),
        Some(&lease("db-1", 0)),
    );
    assert!(d.completed.is_some());
    assert!(
        d.actions()
            .all(|a| matches!(a, Action::LabelReplica(_) | Action::LabelPrimary(_))),
        "{d:?}"
    );
}

#[test]
fn a_switchover_whose_candidate_is_lost_before_it_was_writable_is_undone() {
    let mut servers = three();
    servers[0].read_only = true;
    servers[1] = silent(servers[1].clone());
    let d = decide_with(
        &servers,
        &policy(),
        &switching(OperationStep::Promoting, NOW - 1),
    );
    assert!(d.memory.operation.is_none());
    assert_eq!(writable(&d), ["db-0"], "the old primary takes writes again");
    assert!(d.memory.last_refusal.is_some_and(|r| r.contains("undone")));
    // Made writable already: it may have taken writes, so it is never undone.
    let d = decide_with(
        &servers,
        &policy(),
        &switching(OperationStep::MakingWritable, NOW - 1),
    );
    assert!(writable(&d).is_empty());
    assert_eq!(d.memory.primary.as_deref(), Some("db-1"));
}

#[test]
fn the_old_primary_made_writable_again_is_named_in_the_lease_first() {
    let mut servers = three();
    servers[0].read_only = true;
    servers[1] = silent(servers[1].clone());
    let d = decide_with_lease(
        &servers,
        &policy(),
        &switching(OperationStep::Promoting, NOW - 1),
        Some(&lease("db-1", 0)),
    );
    let held = position(
        &d,
        |a| matches!(a, Action::HoldLease { pod, .. } if pod == "db-0"),
    );
    let made = position(&d, |a| matches!(a, Action::MakeWritable(p) if p == "db-0"));
    assert!(held.is_some() && held < made, "{:?}", d.steps);
}

#[test]
fn a_primary_scaled_away_hands_over_to_an_instance_that_stays() {
    // spec.replicas 3 -> 1 while db-2 is the primary: its pod is kept
    // until it has moved, and only db-0 may take over.
    let servers = [
        replica("db-0", "0-100-9", "db-2"),
        replica("db-1", "0-100-9", "db-2"),
        primary("db-2", "0-100-9"),
    ];
    let one = Policy {
        instances: 1,
        ..no_semi_sync()
    };
    let memory = ClusteringMemory {
        primary: Some("db-2".to_owned()),
        ..healthy_memory()
    };
    let d = decide_with_lease(&servers, &one, &memory, Some(&lease("db-2", 0)));
    let completed = d
        .completed
        .as_ref()
        .unwrap_or_else(|| panic!("a switchover: {d:?}"));
    assert_eq!(completed.operation.reason, "ScaleDown");
    assert_eq!(completed.to, "db-0", "{d:?}");
    assert_hands_over(&d, "db-2", "db-0");
}

#[test]
fn a_replica_whose_volume_loads_its_snapshot_is_never_handed_the_primary() {
    let mut servers = three();
    servers[1].volume_initializing = Some(0);
    let d = run(&servers);
    assert_hands_over(&d, "db-0", "db-2");

    servers[2].volume_initializing = Some(75);
    let d = run(&servers);
    assert!(d.memory.operation.is_none(), "{d:?}");
    let message = d
        .problems
        .iter()
        .find(|p| matches!(p, Problem::NoSwitchoverCandidate { .. }))
        .expect("reported")
        .message();
    assert!(
        message.contains("db-2's volume is still loading its snapshot (75% done)"),
        "{message}"
    );

    let d = decide_with(
        &servers,
        &requesting(SwitchoverRequest::Pod("db-1".to_owned())),
        &healthy_memory(),
    );
    assert!(writable(&d).is_empty(), "a request for it is refused too");
}
