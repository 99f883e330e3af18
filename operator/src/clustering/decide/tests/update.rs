//! Rolling updates: replicas first, one switchover, the version rules.

use super::*;

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
fn another_clusters_turn_holds_every_restart_and_the_switchover() {
    let turn = |servers: &[ServerState]| {
        decide(&Input {
            servers,
            policy: &policy(),
            memory: &healthy_memory(),
            probe_silent_since: None,
            lease: Some(&lease("db-0", 60)),
            new_cluster: false,
            restored: None,
            held: None,
            rollout_turn: Some("shop/orders"),
            now: Timestamp::from_second(NOW).expect("now"),
        })
    };
    let replicas: Vec<_> = settled_three().into_iter().map(outdated).collect();
    let mut primary_last = settled_three();
    primary_last[0].outdated = true;
    for servers in [replicas, primary_last] {
        let d = turn(&servers);
        assert!(d.actions().next().is_none(), "nothing restarted: {d:?}");
        assert!(d.memory.operation.is_none(), "no switchover: {d:?}");
        assert!(
            matches!(&d.rollout, Rollout::Waiting(why) if why.contains("shop/orders is rolling out first")),
            "{:?}",
            d.rollout
        );
    }
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
    let d = decide_with_lease(
        &after,
        &policy(),
        &healthy_memory(),
        Some(&lease("db-1", 0)),
    );
    assert_eq!(restarts(&d), ["db-0"]);
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

    let mut only = outdated(primary("db-0", "0-100-9"));
    only.semi_sync_source = false;
    let one = Policy {
        instances: 1,
        ..no_semi_sync()
    };
    let d = decide_with(&[only], &one, &healthy_memory());
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
