//! Repair around an answering primary: fencing, repointing, labels, semi-sync, errant servers.

use super::*;

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
    // Nothing remembers a primary (the labels are gone too).
    let d = run_unremembered(&[
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
    for servers in [&starting[..], &[]] {
        let d = decide_new(servers, None);
        assert!(d.problems.is_empty(), "{:?}", d.problems);
    }
    // Once it had a primary (and nothing remembers which), the same
    // picture is a problem.
    let forgotten = ClusteringMemory {
        primary: None,
        ..healthy_memory()
    };
    assert!(
        !decide_with(&starting, &policy(), &forgotten)
            .problems
            .is_empty()
    );
}

#[test]
fn two_unlabelled_sources_pick_the_one_with_every_transaction() {
    let behind = unlabelled(primary("db-0", "0-100-3"));
    let ahead = unlabelled(primary("db-1", "0-100-5"));
    // Memory names db-0, but db-1, a source too, holds more: the servers'
    // state decides.
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
fn a_replica_held_by_a_restore_verification_is_left_alone() {
    let mut held = replica("db-2", "0-100-7", "db-0");
    if let Some(r) = held.replication.as_mut() {
        r.sql_running = false;
    }
    let servers = [
        primary("db-0", "0-100-9"),
        replica("db-1", "0-100-9", "db-0"),
        held,
    ];
    let restart = Action::Replicate {
        pod: "db-2".to_owned(),
        source_host: host("db-0"),
    };
    let with = |held: Option<&str>| {
        decide(&Input {
            servers: &servers,
            policy: &policy(),
            memory: &healthy_memory(),
            probe_silent_since: None,
            lease: None,
            new_cluster: false,
            restored: None,
            held,
            rollout_turn: None,
            now: Timestamp::from_second(NOW).expect("now"),
        })
    };
    let d = with(Some("db-2"));
    assert!(!has(&d, &restart), "held: its agent restarts it: {d:?}");
    assert!(
        !d.actions()
            .any(|a| matches!(a, Action::LabelReads { pod, .. } if pod == "db-2")),
        "its reads label stays: {d:?}"
    );
    assert!(has(&with(None), &restart), "not held: restarted");
    assert!(
        has(&with(Some("db-1")), &restart),
        "another replica held: this one is restarted"
    );
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
fn a_restarted_replica_whose_relay_log_is_unread_is_not_started_until_its_agent_applied_it() {
    let mut restarted = replica("db-1", "0-100-7", "db-0");
    if let Some(r) = restarted.replication.as_mut() {
        r.io_running = false;
        r.sql_running = false;
    }
    restarted.relay_log_unread = true;
    let d = run(&[primary("db-0", "0-100-9"), restarted.clone()]);
    assert!(
        !d.actions()
            .any(|a| matches!(a, Action::Replicate { pod, .. } | Action::StartApplier(pod) if pod == "db-1")),
        "starting replication would discard its relay log: {d:?}"
    );
    assert!(matches!(d.again, Again::After(_)), "looks again soon");
    assert!(
        !d.problems
            .iter()
            .any(|p| matches!(p, Problem::RelayLogUnapplied { .. })),
        "a second's wait is no problem: {:?}",
        d.problems
    );
    restarted.relay_log_error = Some("mariadb exit status: 1, errors 1062".to_owned());
    let d = run(&[primary("db-0", "0-100-9"), restarted.clone()]);
    assert!(
        d.problems.iter().any(|p| matches!(p, Problem::RelayLogUnapplied { pod, error } if pod == "db-1" && error.contains("1062"))),
        "{:?}",
        d.problems
    );
    assert!(
        !d.actions()
            .any(|a| matches!(a, Action::Replicate { pod, .. } if pod == "db-1"))
    );
    restarted.relay_log_error = None;
    restarted.relay_log_unread = false;
    let d = run(&[primary("db-0", "0-100-9"), restarted]);
    assert!(has(
        &d,
        &Action::Replicate {
            pod: "db-1".to_owned(),
            source_host: host("db-0")
        }
    ));
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
    assert!(
        d.problems
            .iter()
            .any(|p| matches!(p, Problem::Diverged { pod } if pod == "db-1")),
        "{:?}",
        d.problems
    );
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
    assert!(d.steps.is_empty(), "{d:?}");
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
    assert_eq!(
        d.actions().collect::<Vec<_>>(),
        [&Action::DisableSemiSync("db-0".to_owned())],
        "semi-sync off in the spec: nothing to enable, the primary stops waiting"
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
    // db-1 holds a transaction the remembered primary lacks: neither is
    // shown to be the primary.
    let d = run(&[primary("db-0", "0-100-9"), primary("db-1", "0-100-10")]);
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

#[test]
fn a_changed_wait_count_reaches_the_running_primary_and_is_remembered() {
    let mut p = primary("db-0", "0-100-9");
    p.semi_sync_wait = Some(2);
    let d = run(&[p, replica("db-1", "0-100-9", "db-0")]);
    assert!(has(
        &d,
        &Action::EnableSemiSync {
            pod: "db-0".to_owned(),
            as_primary: true
        }
    ));
    assert_eq!(
        d.memory.semi_sync_wait,
        Some(2),
        "what it used at this look"
    );
}

#[test]
fn a_restarted_primary_waits_for_a_replica_whose_agent_does_not_answer() {
    let mut p = primary("db-0", "0-100-9");
    p.read_only = true;
    p.semi_sync_source = false;
    // Its agent is silent, so it does not say whether a seed is pending;
    // its server replicates, so it holds data.
    let mut r = replica("db-1", "0-100-9", "db-0");
    r.seed_pending = true;
    let d = run(&[p, r]);
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
fn a_primary_is_named_in_the_lease_before_it_is_made_writable() {
    let mut p = primary("db-0", "0-100-9");
    p.read_only = true;
    let servers = [p, replica("db-1", "0-100-9", "db-0")];
    let d = decide_with_lease(
        &servers,
        &policy(),
        &healthy_memory(),
        Some(&lease("db-1", 0)),
    );
    let held = position(
        &d,
        |a| matches!(a, Action::HoldLease { pod, after: None } if pod == "db-0"),
    );
    let write = position(
        &d,
        |a| matches!(a, Action::MakeWritable(pod) if pod == "db-0"),
    );
    assert!(held.is_some() && held < write, "{d:?}");
    // Already named: nothing to hold.
    let d = decide_with_lease(
        &servers,
        &policy(),
        &healthy_memory(),
        Some(&lease("db-0", 0)),
    );
    assert!(!d.actions().any(|a| matches!(a, Action::HoldLease { .. })));
    // Writable but not named (a cluster from before the Lease): named.
    let running = [
        primary("db-0", "0-100-9"),
        replica("db-1", "0-100-9", "db-0"),
    ];
    let nobody = LeaseView {
        holder: None,
        ..lease("db-0", 0)
    };
    let d = decide_with_lease(&running, &policy(), &healthy_memory(), Some(&nobody));
    assert!(has(
        &d,
        &Action::HoldLease {
            pod: "db-0".to_owned(),
            after: None
        }
    ));
}

#[test]
fn scaled_to_one_the_primary_stops_waiting_for_acknowledgements() {
    // M1: with no replica left, a primary still waiting for one would hang
    // every commit.
    let alone = Policy {
        instances: 1,
        ..no_semi_sync()
    };
    let d = decide_with(&[primary("db-0", "0-100-9")], &alone, &healthy_memory());
    assert_eq!(d.primary.as_deref(), Some("db-0"));
    assert_eq!(
        d.steps.first(),
        Some(&vec![Action::DisableSemiSync("db-0".to_owned())]),
        "{d:?}"
    );
    assert!(writable(&d).is_empty(), "it is writable already: {d:?}");

    // Once off, nothing more to do.
    let mut off = primary("db-0", "0-100-9");
    off.semi_sync_source = false;
    off.semi_sync_active = false;
    let d = decide_with(&[off.clone()], &alone, &healthy_memory());
    assert!(
        !d.actions().any(|a| matches!(a, Action::DisableSemiSync(_))),
        "{d:?}"
    );

    // Back at two, semi-sync comes back once the replica replicates.
    let d = decide_with(
        &[off, replica("db-1", "0-100-9", "db-0")],
        &Policy {
            instances: 2,
            ..policy()
        },
        &healthy_memory(),
    );
    assert!(
        has(
            &d,
            &Action::EnableSemiSync {
                pod: "db-0".to_owned(),
                as_primary: true
            }
        ),
        "{d:?}"
    );
}

#[test]
fn semi_sync_is_never_disabled_while_the_spec_asks_for_it() {
    let d = run(&settled_three());
    assert!(
        !d.actions().any(|a| matches!(a, Action::DisableSemiSync(_))),
        "{d:?}"
    );
}

#[test]
fn a_primary_left_without_enough_receiving_replicas_says_its_writes_wait() {
    // M16: two instances, the replica restarting.
    let two = Policy {
        instances: 2,
        ..policy()
    };
    let d = decide_with(
        &[
            primary("db-0", "0-100-9"),
            silent(replica("db-1", "0-100-9", "db-0")),
        ],
        &two,
        &healthy_memory(),
    );
    assert!(
        d.problems.iter().any(|p| matches!(
            p,
            Problem::WritesWaitForReplicas { pod, wait_for_replicas: 1, receiving }
                if pod == "db-0" && receiving.is_empty()
        )),
        "{:?}",
        d.problems
    );
    // One replica restarting among two: the other acknowledges.
    let d = run(&[
        primary("db-0", "0-100-9"),
        replica("db-1", "0-100-9", "db-0"),
        silent(replica("db-2", "0-100-9", "db-0")),
    ]);
    assert!(
        !d.problems
            .iter()
            .any(|p| matches!(p, Problem::WritesWaitForReplicas { .. })),
        "{:?}",
        d.problems
    );
}

#[test]
fn a_label_moved_to_a_replica_is_corrected_never_acted_on() {
    // H6: someone labelled db-2 (which replicates from db-0 and lags) the
    // primary and removed db-0's label.
    let mut real = primary("db-0", "0-100-9");
    real.role_label = None;
    let mut claimant = replica("db-2", "0-100-7", "db-0");
    claimant.role_label = Some(InstanceRole::Primary);
    let d = run(&[real, replica("db-1", "0-100-9", "db-0"), claimant]);
    assert_eq!(d.primary.as_deref(), Some("db-0"), "{d:?}");
    assert!(has(&d, &Action::LabelPrimary("db-0".to_owned())), "{d:?}");
    assert!(has(&d, &Action::LabelReplica("db-2".to_owned())), "{d:?}");
    assert!(
        !d.actions().any(|a| matches!(
            a,
            Action::Fence { .. } | Action::Reseed { .. } | Action::Replicate { .. }
        )),
        "nothing but labels changes: {d:?}"
    );
    assert!(d.problems.is_empty(), "{:?}", d.problems);
}

#[test]
fn a_label_moved_while_nothing_is_remembered_follows_the_servers() {
    // A cluster from before the memory: the labelled pod replicates, so
    // the servers' state picks the primary.
    let mut claimant = replica("db-2", "0-100-7", "db-0");
    claimant.role_label = Some(InstanceRole::Primary);
    let d = decide_with(
        &[
            unlabelled(primary("db-0", "0-100-9")),
            replica("db-1", "0-100-9", "db-0"),
            claimant,
        ],
        &policy(),
        &ClusteringMemory::default(),
    );
    assert_eq!(d.primary.as_deref(), Some("db-0"), "{d:?}");
    assert!(
        !d.actions()
            .any(|a| matches!(a, Action::Reseed { .. } | Action::Fence { .. })),
        "{d:?}"
    );
}

#[test]
fn a_second_writable_claimant_holding_nothing_more_is_fenced_and_rejoins() {
    let d = run(&[primary("db-0", "0-100-9"), primary("db-1", "0-100-9")]);
    assert_eq!(d.primary.as_deref(), Some("db-0"), "{d:?}");
    assert!(has(&d, &fence("db-1")), "{d:?}");
    assert!(has(&d, &Action::LabelReplica("db-1".to_owned())), "{d:?}");
    assert!(
        !d.actions().any(|a| matches!(a, Action::Reseed { .. })),
        "{d:?}"
    );
}

#[test]
fn the_only_writable_claimant_is_the_primary_whatever_memory_says() {
    // The old primary kept its label, fenced and holding an unacknowledged
    // transaction; the new one (writable) lost its label.
    let mut old = primary("db-0", "0-100-10");
    old.read_only = true;
    let mut new = unlabelled(primary("db-1", "0-100-9"));
    new.role_label = None;
    let memory = ClusteringMemory {
        primary: Some("db-1".to_owned()),
        ..healthy_memory()
    };
    let d = decide_with(&[old, new], &policy(), &memory);
    assert_eq!(d.primary.as_deref(), Some("db-1"), "{d:?}");
}

#[test]
fn a_silent_remembered_primary_outranks_an_answering_stale_label() {
    // db-1 was made writable in a failover and then lost; db-0, the old
    // primary, still carries its label and answers read-only: db-1 is the
    // primary the failover rules look after, and db-0 is not made writable
    // (db-1 may have acknowledged writes it lacks).
    let mut old = primary("db-0", "0-100-9");
    old.read_only = true;
    let memory = ClusteringMemory {
        primary: Some("db-1".to_owned()),
        ..healthy_memory()
    };
    let d = decide_with(
        &[old, silent(unlabelled(primary("db-1", "0-100-9")))],
        &policy(),
        &memory,
    );
    assert!(writable(&d).is_empty(), "{d:?}");
    assert_eq!(d.memory.primary_silent_since, Some(at(NOW)), "{d:?}");
}

#[test]
fn an_event_too_large_is_reported_never_re_seeded_or_repointed() {
    // M5: 1236 for max_allowed_packet is no divergence; a copy would stop
    // at the same event.
    let mut stuck = replica("db-1", "0-100-9", "db-0");
    if let Some(r) = stuck.replication.as_mut() {
        r.io_running = false;
        r.io_errno = 1236;
        r.io_error = Some(
            "Got fatal error 1236 from master when reading data from binary log: 'log event \
             entry exceeded max_allowed_packet; Increase max_allowed_packet on master'"
                .to_owned(),
        );
    }
    let d = run(&[
        primary("db-0", "0-100-12"),
        stuck,
        replica("db-2", "0-100-12", "db-0"),
    ]);
    assert!(
        matches!(&d.problems[..], [Problem::ReplicationBroken { pod, error }]
            if pod == "db-1" && error.contains("max_allowed_packet")),
        "{:?}",
        d.problems
    );
    assert!(
        !d.actions()
            .any(|a| matches!(a, Action::Reseed { .. } | Action::Replicate { .. })),
        "{d:?}"
    );
}

#[test]
fn diverged_replicas_are_re_seeded_one_at_a_time() {
    let diverged = |pod: &str| {
        let mut s = replica(pod, "0-100-9", "db-0");
        if let Some(r) = s.replication.as_mut() {
            r.io_running = false;
            r.io_errno = 13114;
        }
        s
    };
    let d = run(&[
        primary("db-0", "0-100-12"),
        diverged("db-1"),
        diverged("db-2"),
    ]);
    let reseeds: Vec<_> = d
        .actions()
        .filter_map(|a| match a {
            Action::Reseed { pod, .. } => Some(pod.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(reseeds, ["db-1"], "{d:?}");
    // While db-1 is copied, db-2 waits.
    let mut copying = unlabelled(replica("db-1", "", "db-0"));
    copying.answer = Answer::Silent;
    let d = run(&[primary("db-0", "0-100-12"), copying, diverged("db-2")]);
    assert!(
        !d.actions().any(|a| matches!(a, Action::Reseed { .. })),
        "{d:?}"
    );
}

/// A decision with no primary remembered.
fn run_unremembered(servers: &[ServerState]) -> Decision {
    decide_with(
        servers,
        &policy(),
        &ClusteringMemory {
            primary: None,
            ..healthy_memory()
        },
    )
}

#[test]
fn a_remembered_primary_that_answers_needs_nobody_else_to_answer() {
    // Its label lost, one replica silent: memory and the servers agree.
    let d = run(&[
        unlabelled(primary("db-0", "0-100-3")),
        silent(unlabelled(replica("db-1", "0-100-3", "db-0"))),
    ]);
    assert_eq!(d.primary.as_deref(), Some("db-0"), "{d:?}");
    assert!(has(&d, &Action::LabelPrimary("db-0".to_owned())), "{d:?}");
}

#[test]
fn a_restored_server_forgets_its_old_source_before_it_is_chosen() {
    // db-0 started on a snapshot of another cluster's replica: it still
    // names that cluster's primary as its source.
    let restored = unlabelled(replica("db-0", "0-100-7", "old-0"));
    let input = decide_new;
    let servers = [restored.clone()];
    let d = input(&servers, Some("db-0"));
    assert_eq!(
        d.actions().collect::<Vec<_>>(),
        [&Action::Promote("db-0".to_owned())]
    );
    assert_eq!(
        d.primary, None,
        "chosen only once it replicates from nobody"
    );
    // Without the restore it is a replica of nobody here: no primary.
    assert!(
        input(&servers, None)
            .actions()
            .all(|a| !matches!(a, Action::Promote(_)))
    );
    // Silent, it is left alone; once it forgot its source it is the primary.
    let quiet = [silent(restored)];
    assert!(
        input(&quiet, Some("db-0"))
            .actions()
            .all(|a| !matches!(a, Action::Promote(_)))
    );
    let forgot = [unlabelled(primary("db-0", "0-100-7"))];
    let d = input(&forgot, Some("db-0"));
    assert_eq!(d.primary.as_deref(), Some("db-0"));
}

/// A decision for a cluster that never had a primary.
fn decide_new(servers: &[ServerState], restored: Option<&str>) -> Decision {
    decide(&Input {
        servers,
        policy: &policy(),
        memory: &ClusteringMemory::default(),
        probe_silent_since: None,
        lease: None,
        new_cluster: true,
        restored,
        held: None,
        rollout_turn: None,
        now: Timestamp::from_second(NOW).expect("now"),
    })
}

#[test]
fn a_replica_whose_volume_loads_its_snapshot_serves_reads_only_once_loaded() {
    let mut servers = [
        primary("db-0", "0-100-9"),
        replica("db-1", "0-100-9", "db-0"),
        replica("db-2", "0-100-9", "db-0"),
    ];
    servers[2].volume_initializing = Some(40);
    let d = run(&servers);
    assert!(has(
        &d,
        &Action::LabelReads {
            pod: "db-2".to_owned(),
            serve: false
        }
    ));
    assert!(
        !d.actions()
            .any(|a| matches!(a, Action::LabelReads { pod, .. } if pod == "db-1"))
    );
    assert!(
        !d.actions()
            .any(|a| matches!(a, Action::Replicate { .. } | Action::Fence { .. })),
        "it replicates as any replica: only its reads wait"
    );
    servers[2].reads_label = false;
    servers[2].volume_initializing = None;
    let d = run(&servers);
    assert!(has(
        &d,
        &Action::LabelReads {
            pod: "db-2".to_owned(),
            serve: true
        }
    ));
}
