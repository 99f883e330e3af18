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
        lease: Some(&lease("db-0", 60)),
        new_cluster: false,
        restored: None,
        held: None,
        rollout_turn: None,
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
fn nobody_is_chosen_while_a_restarted_replicas_relay_log_is_unread() {
    let mut servers = lost();
    // Restarted: both threads stopped, its relay log may hold what db-1 lacks.
    let mut restarted = stopped(servers[2].clone(), "0-100-7", "0-100-7");
    if let Some(r) = restarted.replication.as_mut() {
        r.sql_running = false;
    }
    restarted.relay_log_unread = true;
    servers[1] = stopped(servers[1].clone(), "0-100-9", "0-100-9");
    servers[2] = restarted.clone();
    let memory = failing_over(OperationStep::StoppingReceivers, None);
    let d = decide_with(&servers, &policy(), &memory);
    assert!(
        !d.actions().any(|a| matches!(
            a,
            Action::Promote(_) | Action::StartApplier(_) | Action::Replicate { .. }
        )),
        "{d:?}"
    );
    assert!(matches!(d.again, Again::After(_)), "looks again soon");
    // Its agent applied the relay log: it holds 0-100-11, more than db-1.
    restarted.relay_log_unread = false;
    restarted.gtid = gtid("0-100-11");
    if let Some(r) = restarted.replication.as_mut() {
        r.sql_running = true;
        r.received = gtid("0-100-11");
    }
    servers[2] = restarted;
    let d = decide_with(&servers, &policy(), &memory);
    assert!(
        d.actions()
            .any(|a| matches!(a, Action::Promote(p) if p == "db-2")),
        "the replica that held the most is chosen: {d:?}"
    );
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
    // Naming another pod forces nothing, and is consumed at once (M2).
    let other = Policy {
        force_failover: Some("db-1".to_owned()),
        ..policy()
    };
    let d = decide_with(&lost(), &other, &memory);
    assert!(d.memory.operation.is_none());
    assert!(has(
        &d,
        &Action::ConsumeAnnotation(ANNOTATION_FORCE_FAILOVER)
    ));
    assert!(
        d.memory
            .last_refusal
            .as_deref()
            .is_some_and(|r| r.contains("db-1 is not the primary (db-0 is)")),
        "{:?}",
        d.memory.last_refusal
    );
}

#[test]
fn a_force_naming_a_primary_that_answers_is_consumed_never_armed() {
    // M2: left in place it would skip every safety check at the next
    // silence, months later.
    let forced = Policy {
        force_failover: Some("db-0".to_owned()),
        ..policy()
    };
    let d = decide_with(&settled_three(), &forced, &healthy_memory());
    assert!(has(
        &d,
        &Action::ConsumeAnnotation(ANNOTATION_FORCE_FAILOVER)
    ));
    assert!(d.memory.operation.is_none());
    assert!(
        d.memory
            .last_refusal
            .as_deref()
            .is_some_and(|r| r.contains("db-0 answers")),
        "{:?}",
        d.memory.last_refusal
    );
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
        vec![Problem::PrimaryUnreachable {
            pod: "db-0".to_owned(),
            heard_by: Vec::new()
        }]
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
    let after_failover = ClusteringMemory {
        primary: Some("db-1".to_owned()),
        ..healthy_memory()
    };
    let d = decide_with(&servers, &policy(), &after_failover);
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
    let after_failover = ClusteringMemory {
        primary: Some("db-1".to_owned()),
        ..healthy_memory()
    };
    let d = decide_with(&servers, &policy(), &after_failover);
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

/// `pod` still hears its source (its agent timed a heartbeat `ms` ago).
fn hearing(mut s: ServerState, ms: u64) -> ServerState {
    s.hears_source_ms_ago = Some(ms);
    s
}

#[test]
fn a_primary_the_replicas_still_hear_is_never_failed_over() {
    let servers = [
        silent(primary("db-0", "0-100-9")),
        hearing(replica("db-1", "0-100-9", "db-0"), 300),
        replica("db-2", "0-100-9", "db-0"),
    ];
    // A third of the way in: its receivers keep running.
    let d = decide_with(&servers, &policy(), &silent_since(NOW - 1));
    assert!(
        !d.actions().any(|a| matches!(a, Action::StopReceiver(_))),
        "{d:?}"
    );
    // Long after the debounce: no failover, and why.
    let d = decide_with(&servers, &policy(), &silent_since(NOW - 30));
    assert!(d.memory.operation.is_none());
    assert!(d.steps.iter().flatten().all(|a| !matches!(
        a,
        Action::StopReceiver(_)
            | Action::Promote(_)
            | Action::MakeWritable(_)
            | Action::HoldLease { .. }
    )));
    assert_eq!(
        d.problems,
        vec![Problem::PrimaryUnreachable {
            pod: "db-0".to_owned(),
            heard_by: vec!["db-1".to_owned()]
        }]
    );
    assert!(!d.problems[0].degrades(), "writes go on");
    // What a replica heard long ago says nothing.
    let servers = [
        silent(primary("db-0", "0-100-9")),
        hearing(replica("db-1", "0-100-9", "db-0"), 5_000),
        replica("db-2", "0-100-9", "db-0"),
    ];
    let d = decide_with(&servers, &policy(), &silent_since(NOW - 30));
    assert!(d.memory.operation.is_some());
}

#[test]
fn failover_waits_until_the_old_primarys_agent_must_have_fenced_it() {
    let memory = silent_since(NOW - 30);
    // Renewed a second ago: its agent may still think it is the primary.
    let d = decide_with_lease(&lost(), &policy(), &memory, Some(&lease("db-0", 1)));
    assert!(d.memory.operation.is_none());
    assert!(has(&d, &Action::StopReceiver("db-1".to_owned())));
    assert!(matches!(d.again, Again::After(after) if after.as_millis() <= 500));
    // Two seconds of duration and a second of margin later, it may go.
    let d = decide_with_lease(&lost(), &policy(), &memory, Some(&lease("db-0", 3)));
    assert!(d.memory.operation.is_some());
    // An unreadable Lease proves nothing.
    let d = decide_with_lease(&lost(), &policy(), &memory, None);
    assert!(d.memory.operation.is_none());
    // A Lease naming nobody (a cluster from before the Lease) holds nothing up.
    let nobody = LeaseView {
        holder: None,
        ..lease("db-0", 0)
    };
    let d = decide_with_lease(&lost(), &policy(), &memory, Some(&nobody));
    assert!(d.memory.operation.is_some());
}

#[test]
fn the_new_primary_is_named_in_the_lease_before_it_is_writable_and_only_if_nobody_renewed() {
    let servers = [
        silent(primary("db-0", "0-100-12")),
        stopped(replica("db-1", "", "db-0"), "0-100-11", "0-100-11"),
        stopped(replica("db-2", "", "db-0"), "0-100-11", "0-100-11"),
    ];
    let d = decide_with(
        &servers,
        &policy(),
        &failing_over(OperationStep::StoppingReceivers, None),
    );
    let held = position(&d, |a| {
        matches!(a, Action::HoldLease { pod, after } if pod == "db-1" && after.as_deref() == Some("41"))
    })
    .expect("named in the Lease, conditionally");
    let making = d
        .actions()
        .position(|a| {
            matches!(a, Action::Remember(m) if m.operation.as_ref().is_some_and(|o| o.step == OperationStep::MakingWritable))
        })
        .expect("remembered as being made writable");
    let writable = position(&d, |a| matches!(a, Action::MakeWritable(p) if p == "db-1"))
        .expect("made writable");
    assert!(held < making && making < writable, "{:?}", d.steps);
}

#[test]
fn a_replica_that_went_silent_after_the_failover_started_blocks_the_choice() {
    // db-2 acknowledged 12 and went silent once its receiver was stopped.
    let servers = [
        silent(primary("db-0", "0-100-12")),
        stopped(replica("db-1", "", "db-0"), "0-100-11", "0-100-11"),
        silent(replica("db-2", "0-100-12", "db-0")),
    ];
    let d = decide_with(
        &servers,
        &policy(),
        &failing_over(OperationStep::StoppingReceivers, None),
    );
    assert!(writable(&d).is_empty(), "{:?}", d.steps);
    assert!(
        matches!(
            &d.problems[..],
            [Problem::FailoverBlocked { why: BlockedWhy::TooFewReplicas { silent, .. }, .. }, ..] if silent == &["db-2".to_owned()]
        ),
        "{:?}",
        d.problems
    );
    assert!(d.memory.operation.is_some(), "the receivers stay stopped");
}

#[test]
fn a_failover_whose_candidate_is_lost_before_it_was_writable_chooses_again() {
    let servers = [
        silent(primary("db-0", "0-100-12")),
        silent(replica("db-1", "0-100-12", "db-0")),
        stopped(replica("db-2", "", "db-0"), "0-100-12", "0-100-12"),
    ];
    let d = decide_with(
        &servers,
        &policy(),
        &failing_over(OperationStep::Promoting, Some("db-1")),
    );
    let operation = d.memory.operation.as_ref().expect("still failing over");
    assert_eq!(
        (operation.step, operation.to.as_deref()),
        (OperationStep::StoppingReceivers, None)
    );
    assert!(writable(&d).is_empty());
    // Once made writable it may have taken writes: it is the lost primary now.
    let d = decide_with(
        &servers,
        &policy(),
        &failing_over(OperationStep::MakingWritable, Some("db-1")),
    );
    assert!(d.memory.operation.is_none());
    assert_eq!(d.memory.primary.as_deref(), Some("db-1"));
    assert_eq!(d.memory.primary_silent_since, Some(at(NOW)));
}

#[test]
fn an_old_primary_renewing_its_lease_before_anyone_was_writable_stays_the_primary() {
    let servers = [
        silent(primary("db-0", "0-100-12")),
        stopped(replica("db-1", "", "db-0"), "0-100-12", "0-100-12"),
        stopped(replica("db-2", "", "db-0"), "0-100-12", "0-100-12"),
    ];
    let d = decide_with_lease(
        &servers,
        &policy(),
        &failing_over(OperationStep::Promoting, Some("db-1")),
        Some(&lease("db-0", 0)),
    );
    assert!(d.memory.operation.is_none(), "abandoned");
    assert!(writable(&d).is_empty());
}

#[test]
fn a_silent_primary_that_lost_its_label_is_still_failed_over() {
    let servers = [
        silent(unlabelled(primary("db-0", "0-100-9"))),
        replica("db-1", "0-100-9", "db-0"),
        replica("db-2", "0-100-9", "db-0"),
    ];
    let memory = ClusteringMemory {
        primary: Some("db-0".to_owned()),
        ..silent_since(NOW - 30)
    };
    let d = decide_with(&servers, &policy(), &memory);
    let operation = d.memory.operation.as_ref().expect("failover started");
    assert_eq!(operation.from, "db-0");
}

#[test]
fn a_raised_wait_count_counts_only_once_the_primary_uses_it() {
    let mut mysql = policy();
    if let Some(semi) = mysql.semi_sync.as_mut() {
        semi.wait_for_replicas = 2;
    }
    let servers = [
        silent(primary("db-0", "0-100-9")),
        replica("db-1", "0-100-9", "db-0"),
        silent(replica("db-2", "0-100-9", "db-0")),
        replica("db-3", "0-100-9", "db-0"),
    ];
    // The primary still waited for one: one silent replica blocks.
    let memory = ClusteringMemory {
        semi_sync_wait: Some(1),
        ..silent_since(NOW - 30)
    };
    let d = decide_with(&servers, &mysql, &memory);
    assert!(
        matches!(
            &d.problems[..],
            [
                Problem::FailoverBlocked {
                    why: BlockedWhy::TooFewReplicas {
                        wait_for_replicas: 1,
                        ..
                    },
                    ..
                },
                ..
            ]
        ),
        "{:?}",
        d.problems
    );
    // It waited for two: one silent replica may go.
    let memory = ClusteringMemory {
        semi_sync_wait: Some(2),
        ..silent_since(NOW - 30)
    };
    assert!(
        decide_with(&servers, &mysql, &memory)
            .memory
            .operation
            .is_some()
    );
}

fn holding(pods: &[&str]) -> ClusteringMemory {
    ClusteringMemory {
        held_data: Some(pods.iter().map(|p| (*p).to_owned()).collect()),
        ..silent_since(NOW - 30)
    }
}

#[test]
fn a_replica_still_seeded_in_its_init_container_does_not_block_a_failover() {
    let mut servers = lost();
    servers[2] = silent(servers[2].clone());
    let d = decide_with(&servers, &policy(), &holding(&["db-0", "db-1"]));
    assert!(
        !d.problems
            .iter()
            .any(|p| matches!(p, Problem::FailoverBlocked { .. })),
        "{d:?}"
    );
    assert!(d.memory.operation.is_some(), "{d:?}");
    assert_eq!(
        d.memory.held_data,
        Some(vec!["db-0".to_owned(), "db-1".to_owned()])
    );
}

#[test]
fn a_replica_whose_server_has_run_blocks_even_before_it_ever_answered() {
    let mut servers = lost();
    servers[2] = silent(servers[2].clone());
    servers[2].server_started = true;
    let d = decide_with(&servers, &policy(), &holding(&["db-0", "db-1"]));
    assert!(matches!(
        d.problems.as_slice(),
        [Problem::FailoverBlocked { why: BlockedWhy::TooFewReplicas { silent, .. }, .. }, ..]
            if silent == &["db-2".to_owned()]
    ));
    assert_eq!(
        d.memory.held_data,
        Some(vec![
            "db-0".to_owned(),
            "db-1".to_owned(),
            "db-2".to_owned()
        ]),
        "remembered from now on, also once its pod restarts"
    );
}

#[test]
fn on_a_cluster_from_before_the_memory_every_pod_may_hold_data() {
    let mut servers = lost();
    servers[2] = silent(servers[2].clone());
    let memory = ClusteringMemory {
        held_data: None,
        ..silent_since(NOW - 30)
    };
    let d = decide_with(&servers, &policy(), &memory);
    assert!(matches!(
        d.problems.as_slice(),
        [Problem::FailoverBlocked { .. }, ..]
    ));
    assert_eq!(d.memory.held_data.map(|h| h.len()), Some(3));
}

#[test]
fn a_pod_is_forgotten_only_once_gone_and_scaled_away() {
    // db-1's pod is being re-created (absent for a moment); db-3 was
    // scaled away and is gone; db-2 is scaled away but still terminating.
    let servers = [
        primary("db-0", "0-100-9"),
        replica("db-2", "0-100-9", "db-0"),
    ];
    let policy = Policy {
        instances: 2,
        ..policy()
    };
    let memory = ClusteringMemory {
        held_data: Some(vec![
            "db-0".into(),
            "db-1".into(),
            "db-2".into(),
            "db-3".into(),
        ]),
        ..healthy_memory()
    };
    let d = decide_with(&servers, &policy, &memory);
    assert_eq!(
        d.memory.held_data,
        Some(vec![
            "db-0".to_owned(),
            "db-1".to_owned(),
            "db-2".to_owned()
        ])
    );
}

#[test]
fn a_replica_restarted_with_its_applier_stopped_applies_before_anyone_is_chosen() {
    // M6: it may hold the only copy of an acknowledged write in its relay
    // log; choosing without it would lose it (or, on MySQL, find nobody).
    let mut restarted = stopped(replica("db-2", "", "db-0"), "0-100-9", "0-100-12");
    if let Some(r) = restarted.replication.as_mut() {
        r.sql_running = false;
    }
    let servers = [
        silent(primary("db-0", "0-100-12")),
        stopped(replica("db-1", "", "db-0"), "0-100-10", "0-100-10"),
        restarted,
    ];
    let d = decide_with(
        &servers,
        &policy(),
        &failing_over(OperationStep::StoppingReceivers, None),
    );
    assert_eq!(
        d.steps,
        vec![vec![Action::StartApplier("db-2".to_owned())]],
        "{d:?}"
    );
    assert_eq!(d.again, Again::Now);
    assert!(d.memory.operation.is_some(), "the failover goes on");
}

#[test]
fn a_replica_whose_volume_loads_its_snapshot_is_promoted_only_when_it_alone_is_complete() {
    let mut servers = [
        silent(primary("db-0", "0-100-12")),
        stopped(replica("db-1", "", "db-0"), "0-100-11", "0-100-11"),
        stopped(replica("db-2", "", "db-0"), "0-100-11", "0-100-11"),
    ];
    servers[1].volume_initializing = Some(10);
    let memory = failing_over(OperationStep::StoppingReceivers, None);
    let d = decide_with(&servers, &policy(), &memory);
    assert_eq!(
        writable(&d),
        ["db-2"],
        "the loaded one, though db-1 ranks first"
    );

    // db-1 alone received 0-100-12: promoting db-2 would lose it.
    servers[1] = stopped(servers[1].clone(), "0-100-11", "0-100-12");
    let d = decide_with(&servers, &policy(), &memory);
    assert_eq!(writable(&d), ["db-1"], "{d:?}");
}
