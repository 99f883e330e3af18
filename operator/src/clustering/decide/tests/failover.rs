//! Unplanned changes of primary: the debounce, the proof that nothing acknowledged is lost, the choice.

use super::*;

fn lost() -> Vec<ServerState> {
    vec![
        silent(primary("db-0", "0-100-9")),
        replica("db-1", "0-100-9", "db-0"),
        replica("db-2", "0-100-9", "db-0"),
    ]
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
