//! The fault drills every flavor runs, as one function: settle, start the
//! writer and the poller, make the fault, hold it, undo it, settle again,
//! and check what every drill promises ([`Scenario::verify`]: nothing
//! acknowledged lost, never two writable servers, exactly one now). The
//! e2e tests run each kind once; the failover benchmark runs them many
//! times and reports the numbers.

use std::time::{Duration, Instant};

use crate::{
    Scenario,
    drill::{Looks, Writes},
    ebisu::OPERATOR_NAMESPACE,
    faults::{self, Process},
};

/// A fault of the primary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// `kubectl drain` of its node.
    Drain,
    /// Its node stopped (every process frozen, the link down), then started.
    NodeStopped,
    /// The operator's pods cannot reach it; clients and replicas can.
    OperatorCutOff,
    /// Its pod's link down, its node Ready.
    PodIsolated,
    /// Its server process frozen (SIGSTOP), then resumed.
    ServerFrozen,
    /// Its server process killed (SIGKILL).
    ServerKilled,
    /// Its agent frozen (SIGSTOP: it cannot renew the primary Lease), then
    /// resumed; the server and the replicas carry on.
    AgentFrozen,
}

impl Fault {
    /// Every kind, in the order the drills run them.
    pub const ALL: [Fault; 7] = [
        Fault::Drain,
        Fault::OperatorCutOff,
        Fault::PodIsolated,
        Fault::ServerFrozen,
        Fault::ServerKilled,
        Fault::AgentFrozen,
        Fault::NodeStopped,
    ];

    /// How the drill names it.
    pub fn name(self) -> &'static str {
        match self {
            Fault::Drain => "drain",
            Fault::NodeStopped => "node stopped",
            Fault::OperatorCutOff => "operator cut off",
            Fault::PodIsolated => "pod isolated",
            Fault::ServerFrozen => "server frozen",
            Fault::ServerKilled => "server killed",
            Fault::AgentFrozen => "agent frozen",
        }
    }
}

/// What one drill measured.
#[derive(Debug, Clone)]
pub struct DrillReport {
    /// The fault.
    pub fault: Fault,
    /// The primary before.
    pub old: String,
    /// The primary after.
    pub new: String,
    /// The longest stretch without an acknowledged write, from the fault on.
    pub blocked: Duration,
    /// From the fault to the first look at a writable primary other than
    /// `old` (a failover), when there was one.
    pub to_new_primary: Option<Duration>,
    /// What the writer saw.
    pub writes: Writes,
    /// What the poller saw.
    pub looks: Looks,
}

impl Scenario {
    /// One drill of `fault` against the primary, held for `hold`, with the
    /// writer inserting into `table`; panics (with diagnostics) when a
    /// promise does not hold.
    pub fn drill(&mut self, fault: Fault, table: &str, hold: Duration) -> DrillReport {
        let old = self.wait_settled_with_replicas();
        let failovers_before = self.myc("{.status.lastFailover.startedAt}");
        let node = self.node_of(&old);
        let network = faults::pod_network(
            &self.get(&format!("pod/{old}"), "{.metadata.uid}"),
            &self.get(&format!("pod/{old}"), "{.status.podIP}"),
        );
        let operators: Vec<String> = self
            .k
            .jsonpath(OPERATOR_NAMESPACE, "pods", "{.items[*].status.podIP}")
            .split_whitespace()
            .map(str::to_owned)
            .collect();
        let load = self.load(table);
        std::thread::sleep(Duration::from_secs(2));
        let started = Instant::now();
        let mut unreachable_seen = false;
        match fault {
            Fault::Drain => {
                self.kubectl(&[
                    "drain",
                    &node,
                    "--ignore-daemonsets",
                    "--delete-emptydir-data",
                    "--timeout=180s",
                ]);
            }
            Fault::NodeStopped => self.node("stop", &node),
            Fault::OperatorCutOff => self
                .block_on(faults::cut_off(&network, &operators, false))
                .unwrap_or_else(|e| panic!("cut the operator off: {e}")),
            Fault::PodIsolated => self.block_on(faults::link(&network, false)),
            Fault::ServerFrozen => {
                self.block_on(faults::signal(&network, Process::Server, "STOP"))
                    .unwrap_or_else(|e| panic!("freeze the server: {e}"));
            }
            Fault::ServerKilled => {
                self.block_on(faults::signal(&network, Process::Server, "KILL"))
                    .unwrap_or_else(|e| panic!("kill the server: {e}"));
            }
            Fault::AgentFrozen => {
                self.block_on(faults::signal(&network, Process::Agent, "STOP"))
                    .unwrap_or_else(|e| panic!("freeze the agent: {e}"));
            }
        }
        let deadline = started + hold;
        while Instant::now() < deadline {
            if fault == Fault::OperatorCutOff && self.condition("PrimaryUnreachable") == "True" {
                unreachable_seen = true;
            }
            std::thread::sleep(Duration::from_millis(300));
        }
        match fault {
            Fault::Drain => {}
            Fault::NodeStopped => self.node("start", &node),
            Fault::OperatorCutOff => self
                .block_on(faults::cut_off(&network, &operators, true))
                .unwrap_or_else(|e| panic!("heal the cut: {e}")),
            Fault::PodIsolated => self.block_on(faults::link(&network, true)),
            Fault::ServerFrozen => {
                self.block_on(faults::signal(&network, Process::Server, "CONT"))
                    .unwrap_or_else(|e| panic!("resume the server: {e}"));
            }
            Fault::ServerKilled => {}
            Fault::AgentFrozen => {
                self.block_on(faults::signal(&network, Process::Agent, "CONT"))
                    .unwrap_or_else(|e| panic!("resume the agent: {e}"));
            }
        }
        let new = self.wait_settled_with_replicas();
        if fault == Fault::Drain {
            self.kubectl(&["uncordon", &node]);
        }
        std::thread::sleep(Duration::from_secs(2));
        let ended = Instant::now();
        let what = format!("{} of {old}", fault.name());
        // A server frozen and resumed as it was runs the fence its agent
        // sent while it was frozen as it resumes, beside looks queued
        // meanwhile. On MariaDB (no `offline_mode` to turn clients away
        // first), read-only then blocks new writes at once but reads ON
        // only once the commits in progress are ended: a look in that
        // moment finds it writable (tolerated for two looks, as for a
        // frozen node; no write it takes is acknowledged).
        let thawed = (fault == Fault::ServerFrozen
            && self.flavor() == ebisu_mysql::Flavor::MariaDb)
            .then_some(old.as_str());
        let (writes, looks) = self.verify(&what, table, load, thawed);
        if matches!(fault, Fault::OperatorCutOff | Fault::AgentFrozen) {
            assert_eq!(
                new, old,
                "{what}: no failover while replicas hear the primary"
            );
            assert_eq!(
                self.myc("{.status.lastFailover.startedAt}"),
                failovers_before,
                "{what}: no failover at all"
            );
        }
        if fault == Fault::OperatorCutOff {
            assert!(
                unreachable_seen,
                "{what}: the PrimaryUnreachable condition said so\n{}",
                self.diagnostics()
            );
        }
        let report = DrillReport {
            fault,
            blocked: writes.longest_gap(started, ended),
            to_new_primary: looks
                .new_primary_after(&old, started)
                .map(|(at, _)| at.duration_since(started)),
            old,
            new,
            writes,
            looks,
        };
        eprintln!(
            "{what}: primary {} -> {}, longest stretch without an acknowledged write {:?}, \
             a writable new primary after {:?}",
            report.old, report.new, report.blocked, report.to_new_primary
        );
        report
    }

    /// Three Ready instances, one labelled primary and two replicas, and
    /// exactly one writable server; returns the primary.
    pub fn wait_settled_with_replicas(&self) -> String {
        let primary = self.wait_settled(3);
        self.wait(
            "two replicas and one writable server",
            Duration::from_secs(300),
            |s| s.labelled("replica").len() == 2 && s.writable_now().len() == 1,
        );
        primary
    }
}
