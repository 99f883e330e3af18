//! Decisions over what was observed: who the primary is, what to repair,
//! when to switch over or fail over and to whom. One pure function,
//! [`decide`], from one [`Input`] (the servers with their pods and nodes,
//! the policy from the spec, the memory kept in status, the time) to one
//! [`Decision`] (ordered steps of actions, problems, the memory to keep).
//!
//! It must not do IO or read a clock: `execute` carries the steps out in
//! order and the reconcile's clustering pass (`reconcile::pass`) feeds the
//! outcome back as the next observation. Every
//! rule that protects data lives here, where it is tested exhaustively:
//! fence before anything can make a second server writable; promote only a
//! replica that provably holds every acknowledged write; never make an old
//! primary writable again once its replacement may have taken writes.

mod failover;
mod online;
mod repair;
mod switchover;
#[cfg(test)]
mod tests;
mod update;
mod version;

use ebisu_api::{
    ClusteringMemory, FailoverMode, InstanceRole, UpdateStrategy, names::ANNOTATION_FORCE_FAILOVER,
};
use ebisu_mysql::GtidSet;
use k8s_openapi::jiff::{SignedDuration, Timestamp};

use crate::model::{Answer, LeaseView, ServerState};
pub use crate::model::{BlockedWhy, Problem};
use crate::validate::SemiSync;

/// How soon a decision that waits on something quick (a silent primary's
/// debounce, an agent reading a relay log) looks again.
const LOOK_AGAIN_MS: i64 = 500;

/// A replica still hears its source when its receiver got something from
/// it within this long (the source sends a heartbeat every half second).
pub const HEARD_WITHIN_MS: u64 = 1000;

/// Something to do to one server, pod or the cluster object.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Write this memory to status before going on, so that a restarted
    /// operator resumes from here.
    Remember(Box<ClusteringMemory>),
    /// Remove an annotation from the MySQLCluster (a request that was handled).
    ConsumeAnnotation(&'static str),
    /// Label the pod primary (the `-primary` Service and PDB follow the label).
    LabelPrimary(String),
    /// Label the pod replica.
    LabelReplica(String),
    /// Remove the role label: the pod must receive no traffic.
    Unlabel(String),
    /// Add or remove the pod's reads label (the `-read` Service follows it).
    LabelReads {
        /// The pod.
        pod: String,
        /// Whether it serves reads.
        serve: bool,
    },
    /// Name the pod in the primary Lease (its agent renews it from then on,
    /// and any other pod's agent fences its server); with `after`, only if
    /// the Lease is still at that version (nobody renewed it since).
    HoldLease {
        /// The pod.
        pod: String,
        /// The version the Lease must still be at.
        after: Option<String>,
    },
    /// Make a server writable (its semi-sync source side is set first, in
    /// an earlier step, when the cluster uses semi-sync, and it holds the
    /// primary Lease).
    MakeWritable(String),
    /// Make a server read-only and end its client sessions, so that no
    /// transaction can commit on it afterwards.
    Fence {
        /// The server.
        pod: String,
        /// The primary handing over in a switchover: running commits may
        /// finish (their replicas acknowledge them) before sessions end.
        /// Otherwise (a server that must not take writes) sessions end
        /// first and commits still waiting for an acknowledgement that
        /// will not come are released, so the fence cannot hang on them.
        hand_over: bool,
    },
    /// (Re)point replication at the primary and start it, with the
    /// semi-sync replica side set as the cluster needs.
    Replicate {
        /// The replica.
        pod: String,
        /// The source's host.
        source_host: String,
    },
    /// Enable semi-sync on a server, on the side its role needs (a running
    /// replica's receiver reconnects so that it takes effect).
    EnableSemiSync {
        /// The server.
        pod: String,
        /// Source side (primary) or replica side.
        as_primary: bool,
    },
    /// Stop waiting for acknowledgements on the primary of a cluster whose
    /// spec has no semi-sync (scaled to one instance, or `semiSync: false`):
    /// its commits would otherwise wait for a replica that is gone.
    DisableSemiSync(String),
    /// Start a replica's applier alone (it was stopped by a restart): what
    /// its relay log holds is applied, so a failover can count it.
    StartApplier(String),
    /// Stop a replica's receiver, keeping what it received, so that the
    /// lost primary can get no more acknowledgements.
    StopReceiver(String),
    /// Wait until `pod` has applied every transaction `source` holds now
    /// (read after `source` was fenced).
    CatchUp {
        /// The candidate.
        pod: String,
        /// The fenced old primary.
        source: String,
        /// How long to wait.
        timeout_secs: u64,
    },
    /// Wait until `pod` has applied `gtid` (what it received).
    WaitApplied {
        /// The candidate.
        pod: String,
        /// Everything it executed or received.
        gtid: GtidSet,
        /// How long to wait.
        timeout_secs: u64,
    },
    /// Stop and forget the server's replication: it becomes a source.
    Promote(String),
    /// Set global variables on a running server: changed `mysqlConfig`
    /// settings that apply online, `DEFAULT` for removed ones.
    SetGlobals {
        /// The server.
        pod: String,
        /// Variable and SQL value, in order.
        settings: Vec<(String, String)>,
    },
    /// Evict the pod (its PodDisruptionBudget applies) so that the
    /// StatefulSet starts it again from the current spec.
    Restart(String),
    /// Set the server's data aside on its volume (never deleted) and copy
    /// it afresh from a healthy peer: its agent records the request and the
    /// pod is deleted, so its next start does it.
    Reseed {
        /// The server.
        pod: String,
        /// Why its data may not rejoin.
        reason: String,
    },
}

impl Action {
    /// The pod the action changes, when it changes one.
    pub fn pod(&self) -> Option<&str> {
        match self {
            Self::LabelPrimary(pod)
            | Self::LabelReplica(pod)
            | Self::Unlabel(pod)
            | Self::LabelReads { pod, .. }
            | Self::HoldLease { pod, .. }
            | Self::MakeWritable(pod)
            | Self::Fence { pod, .. }
            | Self::Replicate { pod, .. }
            | Self::EnableSemiSync { pod, .. }
            | Self::DisableSemiSync(pod)
            | Self::StartApplier(pod)
            | Self::StopReceiver(pod)
            | Self::CatchUp { pod, .. }
            | Self::WaitApplied { pod, .. }
            | Self::Promote(pod)
            | Self::Restart(pod)
            | Self::SetGlobals { pod, .. }
            | Self::Reseed { pod, .. } => Some(pod),
            Self::Remember(_) | Self::ConsumeAnnotation(_) => None,
        }
    }

    fn fence(pod: &str, hand_over: bool) -> Self {
        Self::Fence {
            pod: pod.to_owned(),
            hand_over,
        }
    }
}

/// Actions in ordered steps: every action of a step is attempted, and a
/// step with a failed action ends the pass before the next step.
pub type Steps = Vec<Vec<Action>>;

/// How soon to look again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Again {
    /// At once, within the same reconcile: the steps changed what the next
    /// decision depends on (a switchover or failover moves on).
    Now,
    /// After this long at the latest (a debounce or a wait that runs out).
    After(SignedDuration),
    /// At the usual pace.
    Later,
}

/// A change of primary that is complete once every step has run.
#[derive(Debug, Clone, PartialEq)]
pub struct Completed {
    /// The change, as `status.lastSwitchover`/`lastFailover` records it
    /// (without `writesBlockedMs`, which the pass measures).
    pub operation: ebisu_api::Operation,
    /// The new primary.
    pub to: String,
}

/// What to do, and what cannot be done.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// The primary once the steps have run, when one is known.
    pub primary: Option<String>,
    /// What to do, in order.
    pub steps: Steps,
    /// What needs a human, or time.
    pub problems: Vec<Problem>,
    /// What to remember once the steps have run.
    pub memory: ClusteringMemory,
    /// When to look again.
    pub again: Again,
    /// The change of primary these steps complete.
    pub completed: Option<Completed>,
    /// Where a rolling update of pods that run an old spec stands.
    pub rollout: Rollout,
}

/// Where a rolling update stands (when some pods run an old spec).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rollout {
    /// No pod runs an old spec.
    UpToDate,
    /// `spec.updateStrategy: Manual`: reported, nothing restarted.
    Manual,
    /// This pod is restarted now.
    Restarting(String),
    /// The primary hands over to an updated replica now.
    SwitchingOver,
    /// Not now, and why (it goes on by itself once that passes).
    Waiting(String),
    /// Not at all until the spec changes, and why (a downgrade).
    Refused(String),
}

impl Decision {
    fn new(memory: &ClusteringMemory) -> Self {
        Self {
            primary: None,
            steps: Vec::new(),
            problems: Vec::new(),
            memory: memory.clone(),
            again: Again::Later,
            completed: None,
            rollout: Rollout::Waiting("no primary answers".to_owned()),
        }
    }

    /// Nothing to do and nothing wrong.
    pub fn is_settled(&self) -> bool {
        self.steps.iter().all(Vec::is_empty) && self.problems.is_empty()
    }

    /// Every action, in order (for tests and Events).
    pub fn actions(&self) -> impl Iterator<Item = &Action> {
        self.steps.iter().flatten()
    }

    fn step(&mut self, actions: Vec<Action>) {
        if !actions.is_empty() {
            self.steps.push(actions);
        }
    }

    /// The steps that make `pod` writable: it holds the primary Lease
    /// first (`after`: only if the Lease is still at that version), so that
    /// the agent of any other pod fences its server.
    fn make_writable(&mut self, input: &Input<'_>, pod: &str, after: Option<String>) {
        if input.lease.is_none_or(|l| l.holder.as_deref() != Some(pod)) {
            self.step(vec![Action::HoldLease {
                pod: pod.to_owned(),
                after,
            }]);
        }
        self.step(vec![Action::MakeWritable(pod.to_owned())]);
    }

    fn remember(&mut self) {
        self.steps
            .push(vec![Action::Remember(Box::new(self.memory.clone()))]);
    }

    fn sooner(&mut self, again: Again) {
        self.again = match (self.again, again) {
            (Again::Now, _) | (_, Again::Now) => Again::Now,
            (Again::After(a), Again::After(b)) => Again::After(a.min(b)),
            (Again::After(a), Again::Later) | (Again::Later, Again::After(a)) => Again::After(a),
            (Again::Later, Again::Later) => Again::Later,
        };
    }
}

/// A switchover the user asked for with the `ebisu.dev/switchover` annotation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SwitchoverRequest {
    /// Any suitable replica.
    Any,
    /// This pod.
    Pod(String),
}

/// What the spec (and the user's annotations) ask for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Semi-sync, when on.
    pub semi_sync: Option<SemiSync>,
    /// Automatic or manual primary changes.
    pub mode: FailoverMode,
    /// Seconds of silence before a failover.
    pub failover_after_secs: u64,
    /// How far behind a switchover candidate may be.
    pub max_lag_for_promotion_secs: u64,
    /// How far behind a replica may be and still serve reads.
    pub max_lag_for_reads_secs: u64,
    /// How long a switchover waits for its candidate to catch up.
    pub catch_up_timeout_secs: u64,
    /// How long a failover waits for its candidate to apply what it received.
    pub apply_timeout_secs: u64,
    /// A switchover the user asked for.
    pub switchover_request: Option<SwitchoverRequest>,
    /// The lost primary the user forces a failover away from.
    pub force_failover: Option<String>,
    /// How a changed spec reaches running servers.
    pub update: UpdateStrategy,
    /// The `mysqlConfig` settings that apply online: variable -> SQL value.
    pub online_config: std::collections::BTreeMap<String, String>,
    /// The server image the spec asks for.
    pub image: String,
    /// How many instances the spec asks for.
    pub instances: u32,
}

impl Policy {
    fn automatic(&self) -> bool {
        self.mode == FailoverMode::Automatic
    }
}

/// Everything a decision depends on.
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    /// Every pod of the cluster with its server, reachable or not.
    pub servers: &'a [ServerState],
    /// What the spec asks for.
    pub policy: &'a Policy,
    /// What earlier passes remembered.
    pub memory: &'a ClusteringMemory,
    /// When the operator's fast probe first found the primary silent, if it did.
    pub probe_silent_since: Option<Timestamp>,
    /// The primary Lease, when it could be read.
    pub lease: Option<&'a LeaseView>,
    /// The cluster never had a primary: servers still starting are its
    /// normal first seconds, not a problem.
    pub new_cluster: bool,
    /// The instance restored from a backup, until it forgot the source it
    /// replicated from when the snapshot was taken (outside this cluster).
    pub restored: Option<&'a str>,
    /// The replica whose applier a restore verification holds while it
    /// sums tables (its receiver runs): a stopped applier there is left
    /// stopped, not restarted.
    pub held: Option<&'a str>,
    /// The cluster whose rolling update goes first, when it is another
    /// one: clusters roll one at a time, and this one's waits.
    pub rollout_turn: Option<&'a str>,
    /// Now.
    pub now: Timestamp,
}

impl<'a> Input<'a> {
    fn server(&self, pod: &str) -> Option<&'a ServerState> {
        self.servers.iter().find(|s| s.pod == pod)
    }

    fn others(&self, pod: &'a str) -> impl Iterator<Item = &'a ServerState> + 'a {
        self.servers.iter().filter(move |s| s.pod != pod)
    }

    fn now_time(&self) -> k8s_openapi::apimachinery::pkg::apis::meta::v1::Time {
        k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(self.now)
    }
}

/// Decides what to do about a cluster.
pub fn decide(input: &Input<'_>) -> Decision {
    let mut decision = Decision::new(input.memory);
    decision.memory.held_data = Some(held_data(input));
    if let Some(pod) = input.restored
        && let Some(server) = input.server(pod)
        && server.answered()
        && server.replication.is_some()
    {
        // Its replication points at the cluster the backup was taken of:
        // forgotten before anything else, so it never fetches (or is
        // counted as waiting for) transactions from outside the backup.
        decision.step(vec![Action::Promote(pod.to_owned())]);
        decision.sooner(Again::Now);
        return decision;
    }
    if let Some(operation) = &input.memory.operation {
        refuse_force(input, &mut decision, "a change of primary is in progress");
        decision.rollout = Rollout::Waiting("a change of primary is in progress".to_owned());
        match operation.kind {
            ebisu_api::OperationKind::Switchover => {
                switchover::resume(input, operation, &mut decision);
            }
            ebisu_api::OperationKind::Failover => {
                failover::resume(input, operation, &mut decision);
            }
        }
        report_nodes(input, &mut decision);
        if decision.primary.is_some() {
            decision.memory.primary.clone_from(&decision.primary);
        }
        return decision;
    }
    let claim = claimed_primary(input);
    if let Some(why) = force_not_armed(input, &claim) {
        refuse_force(input, &mut decision, &why);
    }
    match claim {
        Claim::One(primary) => match primary.answer {
            Answer::Answered => primary_answers(input, primary, &mut decision),
            Answer::Refused => {
                decision.memory.primary_silent_since = None;
                decision
                    .problems
                    .push(Problem::PrimaryRefuses(primary.pod.clone()));
                decision.step(fence_writable_others(input, &primary.pod));
            }
            Answer::Silent => failover::consider(input, primary, &mut decision),
        },
        Claim::Unclaimed { replicating } => {
            for pod in replicating {
                decision
                    .problems
                    .push(Problem::PrimaryReplicates(pod.to_owned()));
            }
            match repair::choose_unlabelled(input.servers) {
                Ok(primary) => primary_answers(input, primary, &mut decision),
                Err(problem) => {
                    if !input.new_cluster {
                        decision.problems.push(problem);
                    }
                    decision.step(fence_writable_others(input, ""));
                }
            }
        }
        Claim::Several(several) => {
            decision.problems.push(Problem::NoPrimary(format!(
                "{} each claim to be the primary (labelled, or remembered by ebisu), \
                 replicate from nobody, and none holds every other's transactions",
                several.join(", ")
            )));
            decision.step(fence_writable_others(input, ""));
        }
    }
    report_nodes(input, &mut decision);
    report_upgrades(input, &mut decision);
    if decision.primary.is_some() {
        decision.memory.primary.clone_from(&decision.primary);
    }
    decision
}

/// The pods that may hold an acknowledged write: those remembered, those
/// whose server answers or has started, and every pod on a cluster from
/// before this memory. A pod is forgotten once it is gone and its ordinal
/// is scaled away (a pod re-created under its name keeps its volume).
fn held_data(input: &Input<'_>) -> Vec<String> {
    let mut held: std::collections::BTreeSet<String> = match &input.memory.held_data {
        Some(known) => known.iter().cloned().collect(),
        None => input.servers.iter().map(|s| s.pod.clone()).collect(),
    };
    held.extend(
        input
            .servers
            .iter()
            .filter(|s| s.answered() || s.server_started)
            .map(|s| s.pod.clone()),
    );
    held.retain(|pod| ordinal(pod) < input.policy.instances || input.server(pod).is_some());
    held.into_iter().collect()
}

/// `server` may hold an acknowledged write (see [`held_data`]).
fn may_hold_data(input: &Input<'_>, server: &ServerState) -> bool {
    server.answered()
        || server.server_started
        || input
            .memory
            .held_data
            .as_ref()
            .is_none_or(|held| held.contains(&server.pod))
}

/// Why the `ebisu.dev/force-failover` annotation forces nothing now, if it
/// does not: it names a primary that is silent, or it is consumed and
/// refused at once, never left armed for a later silence.
fn force_not_armed(input: &Input<'_>, claim: &Claim<'_>) -> Option<String> {
    let forced = input.policy.force_failover.as_deref()?;
    match claim {
        Claim::One(primary) if primary.pod == forced => match primary.answer {
            Answer::Silent => None,
            Answer::Answered | Answer::Refused => Some(format!("{forced} answers")),
        },
        Claim::One(primary) => Some(format!("{forced} is not the primary ({} is)", primary.pod)),
        Claim::Unclaimed { .. } | Claim::Several(_) => {
            Some("no primary is known to fail over from".to_owned())
        }
    }
}

/// Consumes the force annotation and says why it forced nothing.
fn refuse_force(input: &Input<'_>, decision: &mut Decision, why: &str) {
    if let Some(forced) = &input.policy.force_failover {
        decision.memory.last_refusal = Some(format!(
            "{FORCED_FAILOVER_REFUSAL} {forced} refused: {why}; the annotation was removed"
        ));
        decision.step(vec![Action::ConsumeAnnotation(ANNOTATION_FORCE_FAILOVER)]);
        decision.remember();
    }
}

/// How a refused forced failover's message starts.
pub const FORCED_FAILOVER_REFUSAL: &str = "forced failover away from";

/// Who claims to be the primary, by the servers' own state first.
enum Claim<'a> {
    /// One server: the primary.
    One(&'a ServerState),
    /// Nobody (or only servers that answer and replicate, which no primary
    /// does): the servers' state alone must show one.
    Unclaimed {
        /// Claimants that replicate.
        replicating: Vec<&'a str>,
    },
    /// Several that replicate from nobody, none holding every other's
    /// transactions: only fencing is safe.
    Several(Vec<&'a str>),
}

/// The primary: the pod ebisu remembers as primary or the pod labelled
/// primary, whichever the servers' state bears out. A label is only a
/// claim (anyone with `pods/patch` can move it): a claimant that answers
/// and replicates is no primary, and between claimants that replicate from
/// nobody, the only writable one wins, else ebisu's memory when no other
/// writable claimant holds transactions it lacks. Labels then follow.
fn claimed_primary<'a>(input: &Input<'a>) -> Claim<'a> {
    let remembered = input
        .memory
        .primary
        .as_deref()
        .and_then(|pod| input.server(pod));
    let mut claimants: Vec<&ServerState> = input
        .servers
        .iter()
        .filter(|s| s.role_label == Some(InstanceRole::Primary))
        .collect();
    if let Some(remembered) = remembered
        && !claimants.iter().any(|c| c.pod == remembered.pod)
    {
        claimants.push(remembered);
    }
    let (replicating, plausible): (Vec<&ServerState>, Vec<&ServerState>) = claimants
        .into_iter()
        .partition(|s| s.answered() && s.replication.is_some());
    let claim = by_the_servers(remembered, &replicating, &plausible);
    // Memory alone (no label agrees) is not enough against another
    // writable source holding transactions it lacks: then the servers'
    // state decides. (A read-only one is an old primary left out.)
    if let Claim::One(primary) = claim
        && primary.role_label != Some(InstanceRole::Primary)
        && input.others(&primary.pod).any(|other| {
            other.answered()
                && !other.read_only
                && other.replication.is_none()
                && !holds(primary, other)
        })
    {
        return Claim::Unclaimed {
            replicating: Vec::new(),
        };
    }
    claim
}

/// The claim the claimants' own state bears out (see [`claimed_primary`]).
fn by_the_servers<'a>(
    remembered: Option<&'a ServerState>,
    replicating: &[&'a ServerState],
    plausible: &[&'a ServerState],
) -> Claim<'a> {
    match plausible {
        [] => Claim::Unclaimed {
            replicating: replicating.iter().map(|s| s.pod.as_str()).collect(),
        },
        [one] => Claim::One(one),
        several => {
            let writable: Vec<&'a ServerState> = several
                .iter()
                .copied()
                .filter(|s| s.answered() && !s.read_only)
                .collect();
            if let &[one] = writable.as_slice()
                && (remembered.is_some_and(|r| r.pod == one.pod)
                    || several.iter().all(|s| s.answered()))
            {
                // The servers say it: the one that takes writes (unless a
                // silent claimant may have taken writes since).
                return Claim::One(one);
            }
            match remembered {
                Some(remembered)
                    if several.iter().any(|s| s.pod == remembered.pod)
                        && several.iter().all(|other| {
                            // Another claimant competes only while it may
                            // take writes ebisu's primary lacks.
                            other.pod == remembered.pod
                                || !other.answered()
                                || other.read_only
                                || holds(remembered, other)
                        }) =>
                {
                    Claim::One(remembered)
                }
                _ => Claim::Several(several.iter().map(|s| s.pod.as_str()).collect()),
            }
        }
    }
}

fn primary_answers(input: &Input<'_>, primary: &ServerState, decision: &mut Decision) {
    let memory = &mut decision.memory;
    memory.primary_silent_since = None;
    memory.semi_sync_active = Some(
        input.policy.semi_sync.is_some() && primary.semi_sync_source && primary.semi_sync_active,
    );
    memory.semi_sync_wait = primary
        .semi_sync_source
        .then_some(primary.semi_sync_wait)
        .flatten();
    if switchover::consider(input, primary, decision) {
        let reason = decision
            .memory
            .operation
            .as_ref()
            .or(decision.completed.as_ref().map(|c| &c.operation))
            .map(|o| o.reason.as_str());
        if reason == Some(update::REASON) {
            decision.rollout = Rollout::SwitchingOver;
        } else {
            decision.rollout = Rollout::Waiting("a change of primary is in progress".to_owned());
        }
        return;
    }
    repair::repair(input, primary, decision);
    online::apply(input, decision);
    update::roll(input, primary, decision);
}

/// Without a primary that answers, only fencing is safe: a writable server
/// that is not the primary must stop taking writes.
fn fence_writable_others(input: &Input<'_>, primary: &str) -> Vec<Action> {
    input
        .servers
        .iter()
        .filter(|s| s.pod != primary && s.answered() && !s.read_only)
        .map(|s| Action::fence(&s.pod, false))
        .collect()
}

/// A pod on a node that stopped reporting is never replaced by Kubernetes.
fn report_nodes(input: &Input<'_>, decision: &mut Decision) {
    for server in input.servers {
        if let Some(node) = &server.node
            && !node.ready
        {
            decision.problems.push(Problem::NodeUnreachable {
                pod: server.pod.clone(),
                node: node.name.clone(),
            });
        }
    }
}

/// A failed upgrade step is the agent's to retry, the user's to fix.
fn report_upgrades(input: &Input<'_>, decision: &mut Decision) {
    for server in input.servers {
        if let Some(error) = &server.upgrade_error {
            decision.problems.push(Problem::UpgradeFailed {
                pod: server.pod.clone(),
                error: error.clone(),
            });
        }
    }
}

/// `server` answered and holds every transaction `other` executed.
fn holds(server: &ServerState, other: &ServerState) -> bool {
    server.answered()
        && match (holdings(server), &other.gtid) {
            (Some(mine), Some(theirs)) => mine.contains(theirs).unwrap_or(false),
            _ => false,
        }
}

/// What `pod` holds: executed GTIDs, plus what it received when it replicates.
fn holdings(server: &ServerState) -> Option<GtidSet> {
    let executed = server.gtid.clone()?;
    match server
        .replication
        .as_ref()
        .and_then(|r| r.received.as_ref())
    {
        Some(received) => executed.union(received).ok(),
        None => Some(executed),
    }
}

fn ordinal(pod: &str) -> u32 {
    ebisu_api::names::ordinal_of(pod).unwrap_or(u32::MAX)
}

fn elapsed_since(
    input: &Input<'_>,
    time: &k8s_openapi::apimachinery::pkg::apis::meta::v1::Time,
) -> SignedDuration {
    input.now.duration_since(time.0)
}

fn seconds(secs: u64) -> SignedDuration {
    SignedDuration::from_secs(i64::try_from(secs).unwrap_or(i64::MAX))
}
