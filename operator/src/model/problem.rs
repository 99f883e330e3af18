//! Problems the operator will not (or not yet) repair by itself, whichever
//! feature finds them (the clustering decision, claims, init containers,
//! volumes at EC2, fencing, applying children): each has a stable reason
//! (condition reasons and Event reasons), the pod it is about, and a message
//! that says why and what to do.

/// Why a failover is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlockedWhy {
    /// The spec turned semi-sync off: nothing says a replica has every
    /// acknowledged write.
    SemiSyncOff,
    /// At the last look the primary was not waiting for acknowledgements.
    SemiSyncInactive,
    /// Too many replicas are silent: one of them may hold the only copy.
    TooFewReplicas {
        /// Replicas that do not answer.
        silent: Vec<String>,
        /// How many acknowledgements each commit waited for.
        wait_for_replicas: u32,
    },
    /// No answering replica holds what every other one received.
    NoCompleteCandidate,
}

/// Something the operator will not repair by itself; becomes a condition
/// and one Event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// The operator cannot reach the primary: failover is manual, or
    /// replicas still hear it (it is alive; only the operator is cut off).
    PrimaryUnreachable {
        /// The primary.
        pod: String,
        /// The replicas that still hear it (none: failover is manual).
        heard_by: Vec<String>,
    },
    /// The labelled primary is up but refuses the operator's account.
    PrimaryRefuses(String),
    /// No server can be shown to be the primary.
    NoPrimary(String),
    /// A server holds transactions the primary lacks; it is fenced and left out.
    ErrantTransactions {
        /// The server.
        pod: String,
        /// The transactions, in the server's notation.
        gtids: String,
    },
    /// The primary refuses to stream to a server whose copy diverged.
    Diverged {
        /// The server.
        pod: String,
    },
    /// A replica's applier stopped on an error.
    ReplicationBroken {
        /// The replica.
        pod: String,
        /// The error.
        error: String,
    },
    /// The primary is configured to replicate from someone.
    PrimaryReplicates(String),
    /// The primary is silent and may not be failed over.
    FailoverBlocked {
        /// The lost primary.
        pod: String,
        /// Why.
        why: BlockedWhy,
    },
    /// The primary fell back to asynchronous replication.
    SemiSyncFallback(String),
    /// The primary waits for more acknowledgements per commit than replicas
    /// receive from it now: its commits wait (semi-sync never falls back).
    WritesWaitForReplicas {
        /// The primary.
        pod: String,
        /// Acknowledgements each commit waits for.
        wait_for_replicas: u32,
        /// Replicas receiving from it now.
        receiving: Vec<String>,
    },
    /// A one-instance cluster's only server is being disrupted.
    SingleInstanceDisruption {
        /// The pod.
        pod: String,
        /// What disrupts it.
        cause: String,
    },
    /// The primary must move but no replica can take over.
    NoSwitchoverCandidate {
        /// The primary.
        pod: String,
        /// Why each replica is unsuitable.
        why: String,
    },
    /// A change of primary is waiting for its candidate.
    OperationStalled {
        /// The candidate.
        pod: String,
        /// What it waits for.
        why: String,
    },
    /// A pod's node stopped reporting: Kubernetes will not replace the pod.
    NodeUnreachable {
        /// The pod.
        pod: String,
        /// Its node.
        node: String,
    },
    /// The credentials Secret lacks keys of a cluster that holds data: they
    /// are not generated again (the servers' accounts use the old values).
    CredentialsMissing {
        /// The missing keys.
        keys: Vec<String>,
    },
    /// The credentials Secret holds passwords (or a token) too weak to use.
    CredentialsWeak {
        /// The weak keys.
        keys: Vec<String>,
        /// The cluster runs on them already (so it keeps running).
        in_use: bool,
    },
    /// A child object could not be applied.
    ChildNotApplied {
        /// What failed, as the apply error says it.
        what: String,
    },
    /// A rolling update would move servers to an older release series.
    DowngradeRefused(String),
    /// A pod's init container failed again and again (its copy or its
    /// initialisation) and has not succeeded since.
    InitFailing {
        /// The pod.
        pod: String,
        /// How often it failed.
        failures: i32,
        /// The error it ended with.
        why: String,
    },
    /// More than one PodDisruptionBudget selects a pod, so it cannot be
    /// evicted at all (neither by a rolling update nor by a drain).
    OverlappingBudgets(String),
    /// The flavor's upgrade step failed on a server started on a new release.
    UpgradeFailed {
        /// The server.
        pod: String,
        /// What the agent said.
        error: String,
    },
    /// A volume given in `spec.storage.ebs.volumes` cannot be used.
    StaticVolumeRefused {
        /// The instance it is for.
        pod: String,
        /// The volume.
        volume: String,
        /// Why.
        why: String,
    },
    /// A server must be set aside and seeded afresh, but its agent refused
    /// (too many copies kept, or no room for a fresh one).
    ReseedRefused {
        /// The server.
        pod: String,
        /// What its agent said to do.
        why: String,
    },
    /// A restarted MariaDB replica's relay log cannot be applied by its
    /// agent, so its replication stays stopped.
    RelayLogUnapplied {
        /// The server.
        pod: String,
        /// Why (error numbers only).
        error: String,
    },
    /// A lost node should be fenced but cannot be.
    FenceImpossible {
        /// The lost servers on it.
        pod: String,
        /// Why.
        why: String,
    },
    /// EC2 could not be asked about the volumes (no credentials, no
    /// permission, no network): volume status and changes are unavailable.
    Ec2Unavailable(String),
    /// The binary log archive is further behind the primary than
    /// `spec.backup.archive.maxBehindSeconds`, or cannot archive: why.
    ArchiveBehind(String),
    /// Archive retention failed: why (`status.archive.pruneError`).
    ArchiveRetentionFailed(String),
    /// A change of a volume's IOPS or throughput must wait.
    VolumeChangeDeferred {
        /// The instance.
        pod: String,
        /// What waits and why.
        why: String,
    },
    /// A data claim waits for a volume.
    ClaimPending {
        /// The claim.
        claim: String,
        /// Why, as far as can be told.
        why: String,
    },
}

impl Problem {
    /// The stable reason: the Event reason and the condition reason.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::PrimaryUnreachable { .. } => "PrimaryUnreachable",
            Self::PrimaryRefuses(_) => "PrimaryRefusesOperator",
            Self::NoPrimary(_) => "NoPrimary",
            Self::ErrantTransactions { .. } => "ErrantTransactions",
            Self::Diverged { .. } => "Diverged",
            Self::ReplicationBroken { .. } => "ReplicationBroken",
            Self::PrimaryReplicates(_) => "PrimaryReplicates",
            Self::FailoverBlocked { .. } => "FailoverBlocked",
            Self::SemiSyncFallback(_) => "SemiSyncFallback",
            Self::WritesWaitForReplicas { .. } => "WritesWaitForReplicas",
            Self::SingleInstanceDisruption { .. } => "SingleInstanceDisruption",
            Self::NoSwitchoverCandidate { .. } => "NoSwitchoverCandidate",
            Self::OperationStalled { .. } => "PrimaryChangeStalled",
            Self::NodeUnreachable { .. } => "NodeUnreachable",
            Self::CredentialsMissing { .. } => "CredentialsMissing",
            Self::CredentialsWeak { .. } => "CredentialsWeak",
            Self::ChildNotApplied { .. } => "ChildNotApplied",
            Self::ClaimPending { .. } => "ClaimPending",
            Self::DowngradeRefused(_) => "DowngradeRefused",
            Self::UpgradeFailed { .. } => "UpgradeFailed",
            Self::OverlappingBudgets(_) => "OverlappingBudgets",
            Self::InitFailing { .. } => "InitFailing",
            Self::Ec2Unavailable(_) => "EC2Unavailable",
            Self::ArchiveBehind(_) => "ArchiveBehind",
            Self::ArchiveRetentionFailed(_) => "ArchiveRetentionFailed",
            Self::FenceImpossible { .. } => "FenceImpossible",
            Self::StaticVolumeRefused { .. } => "StaticVolumeRefused",
            Self::ReseedRefused { .. } => "ReseedRefused",
            Self::RelayLogUnapplied { .. } => "RelayLogUnapplied",
            Self::VolumeChangeDeferred { .. } => "VolumeChangeDeferred",
        }
    }

    /// The pod the problem is about, when it is about one.
    pub fn pod(&self) -> Option<&str> {
        match self {
            Self::PrimaryUnreachable { pod, .. }
            | Self::PrimaryRefuses(pod)
            | Self::ErrantTransactions { pod, .. }
            | Self::Diverged { pod }
            | Self::ReplicationBroken { pod, .. }
            | Self::PrimaryReplicates(pod)
            | Self::FailoverBlocked { pod, .. }
            | Self::SemiSyncFallback(pod)
            | Self::WritesWaitForReplicas { pod, .. }
            | Self::SingleInstanceDisruption { pod, .. }
            | Self::NoSwitchoverCandidate { pod, .. }
            | Self::OperationStalled { pod, .. }
            | Self::NodeUnreachable { pod, .. }
            | Self::UpgradeFailed { pod, .. }
            | Self::OverlappingBudgets(pod)
            | Self::InitFailing { pod, .. }
            | Self::VolumeChangeDeferred { pod, .. }
            | Self::FenceImpossible { pod, .. }
            | Self::StaticVolumeRefused { pod, .. }
            | Self::ReseedRefused { pod, .. }
            | Self::RelayLogUnapplied { pod, .. } => Some(pod),
            Self::NoPrimary(_)
            | Self::CredentialsMissing { .. }
            | Self::CredentialsWeak { .. }
            | Self::ChildNotApplied { .. }
            | Self::ClaimPending { .. }
            | Self::DowngradeRefused(_)
            | Self::Ec2Unavailable(_)
            | Self::ArchiveBehind(_)
            | Self::ArchiveRetentionFailed(_) => None,
        }
    }

    /// `Reason/subject`: what makes two reports the same problem (the pod,
    /// or the claim or child it is about).
    pub fn key(&self) -> String {
        let subject = match self {
            Self::ClaimPending { claim, .. } => claim.clone(),
            Self::ChildNotApplied { what } => what.clone(),
            other => other.pod().unwrap_or_default().to_owned(),
        };
        format!("{}/{subject}", self.reason())
    }

    /// Whether it takes writes or data safety away (a Degraded cluster),
    /// rather than only needing attention.
    pub fn degrades(&self) -> bool {
        if let Self::PrimaryUnreachable { heard_by, .. } = self {
            return heard_by.is_empty();
        }
        if let Self::CredentialsWeak { in_use, .. } = self {
            return !in_use;
        }
        !matches!(
            self,
            Self::SingleInstanceDisruption { .. }
                | Self::DowngradeRefused(_)
                | Self::UpgradeFailed { .. }
                | Self::OverlappingBudgets(_)
                | Self::Ec2Unavailable(_)
                | Self::ArchiveBehind(_)
                | Self::ArchiveRetentionFailed(_)
                | Self::VolumeChangeDeferred { .. }
        )
    }

    /// What happened and what to do, for the condition and the Event.
    pub fn message(&self) -> String {
        match self {
            Self::PrimaryUnreachable { pod, heard_by } if heard_by.is_empty() => format!(
                "primary {pod} does not answer and spec.replication.failover is Manual: \
                 annotate the cluster with ebisu.dev/switchover=<replica> once you have \
                 checked that replica, or bring {pod} back"
            ),
            Self::PrimaryUnreachable { pod, heard_by } => format!(
                "the operator cannot reach primary {pod}, but {} still receive from it: it \
                 is alive and stays the primary, and nothing moves until the operator \
                 reaches it again (check the network between the operator and {pod})",
                heard_by.join(", ")
            ),
            Self::PrimaryRefuses(pod) => format!(
                "primary {pod} is up but refuses the operator's account: check the \
                 credentials Secret and the server's max_connections"
            ),
            Self::NoPrimary(why) => format!("no primary: {why}"),
            Self::ErrantTransactions { pod, gtids } => format!(
                "{pod} holds transactions the primary lacks ({gtids}); it is fenced, out \
                 of service, and re-seeded from the primary's side; its data is kept in \
                 .ebisu-kept on its volume"
            ),
            Self::Diverged { pod } => format!(
                "the primary refuses to stream to {pod}: its copy diverged from the \
                 primary's; it is fenced, out of service, and re-seeded; its data is kept \
                 in .ebisu-kept on its volume"
            ),
            Self::ReplicationBroken { pod, error } => format!(
                "replication on {pod} stopped: {error}; it serves no reads and is never \
                 promoted until the error is fixed"
            ),
            Self::PrimaryReplicates(pod) => {
                format!("primary {pod} is configured to replicate from another server")
            }
            Self::FailoverBlocked { pod, why } => {
                let why = match why {
                    BlockedWhy::SemiSyncOff => {
                        "spec.replication.semiSync is off, so no replica is known to hold \
                         every acknowledged write"
                            .to_owned()
                    }
                    BlockedWhy::SemiSyncInactive => {
                        "at the last look it was not waiting for semi-sync acknowledgements \
                         (it had fallen back to asynchronous replication, or none was \
                         confirmed yet), so writes it acknowledged may exist nowhere else"
                            .to_owned()
                    }
                    BlockedWhy::TooFewReplicas {
                        silent,
                        wait_for_replicas,
                    } => format!(
                        "{} do not answer; each commit waited for {wait_for_replicas} \
                         acknowledgement(s), so a silent replica may hold the only copy of \
                         an acknowledged write",
                        silent.join(", ")
                    ),
                    BlockedWhy::NoCompleteCandidate => {
                        "no answering replica that can apply its relay log holds every \
                         transaction the other replicas received"
                            .to_owned()
                    }
                };
                format!(
                    "primary {pod} does not answer and is not failed over: {why}. Bring \
                     {pod} back, or accept losing what only it had with \
                     `kubectl annotate mysqlcluster <name> ebisu.dev/force-failover={pod}`"
                )
            }
            Self::SemiSyncFallback(pod) => format!(
                "primary {pod} fell back to asynchronous replication (no replica \
                 acknowledged within spec.replication.timeoutSeconds): writes it \
                 acknowledges may exist only on it, so no automatic failover happens \
                 until a replica acknowledges again"
            ),
            Self::WritesWaitForReplicas {
                pod,
                wait_for_replicas,
                receiving,
            } => format!(
                "primary {pod}'s commits wait: each needs {wait_for_replicas} replica \
                 acknowledgement(s) and {} receive from it now{}. They go on as soon as \
                 enough replicas reconnect (a restarting replica does, once it runs). With \
                 spec.replicas = spec.replication.waitForReplicas + 1 there is no spare \
                 replica: add an instance, or set spec.replication.timeoutSeconds to keep \
                 writing without acknowledgements for a while (no automatic failover then)",
                receiving.len(),
                if receiving.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", receiving.join(", "))
                }
            ),
            Self::SingleInstanceDisruption { pod, cause } => format!(
                "{pod} is the only instance and {cause}: writes stop until it runs \
                 again; add replicas (spec.replicas >= 2) so the primary can move instead"
            ),
            Self::NoSwitchoverCandidate { pod, why } => format!(
                "primary {pod} must move but no replica can take over ({why}); it keeps \
                 taking writes, and its eviction is held while the cluster has two or \
                 more instances"
            ),
            Self::OperationStalled { pod, why } => {
                format!("the change of primary to {pod} waits: {why}")
            }
            Self::CredentialsMissing { keys } => format!(
                "the credentials Secret lacks {} while the cluster holds data made with them \
                 (or is given volumes in spec.storage.ebs.volumes, which may): ebisu does not \
                 generate them (the servers would refuse the new values) and changes no \
                 server; restore the Secret from your backup, or create the keys with the \
                 values the servers use (for volumes that hold no data yet, any strong values)",
                keys.join(", ")
            ),
            Self::CredentialsWeak { keys, in_use } => format!(
                "the credentials Secret holds {} shorter than 16 characters or one character \
                 repeated: {}",
                keys.join(", "),
                if *in_use {
                    "the servers use them already, so the cluster keeps running; change each \
                     on the servers (ALTER USER) and then in the Secret"
                } else {
                    "the cluster is not started until they are replaced with strong values \
                     (or removed, and ebisu generates them)"
                }
            ),
            Self::ChildNotApplied { what } => what.clone(),
            Self::ClaimPending { claim, why } => format!("{claim} has no volume: {why}"),
            Self::DowngradeRefused(why) => why.clone(),
            Self::Ec2Unavailable(why) => format!(
                "EC2 cannot be asked about the volumes ({why}): status.instances[].volume \
                 and IOPS/throughput changes are unavailable, everything else works. Give \
                 the operator AWS credentials (IRSA or EKS Pod Identity) with the IAM \
                 policy in deploy/iam/operator-policy.json"
            ),
            Self::VolumeChangeDeferred { pod, why } => format!("{pod}'s volume: {why}"),
            Self::ArchiveBehind(why) => format!(
                "the binary log archive {why}: a point-in-time restore cannot reach past \
                 what it holds (status.archive says how far it got)"
            ),
            Self::ArchiveRetentionFailed(why) => format!(
                "archive retention failed ({why}): archived binary logs no kept backup \
                 needs stay in S3 (they cost storage; nothing is lost), and it tries again \
                 after the next backup or within the hour. The operator's role needs \
                 s3:ListBucket, s3:GetObject and s3:DeleteObject on the archive's prefix"
            ),
            Self::RelayLogUnapplied { pod, error } => format!(
                "{pod}'s server restarted with received transactions in its relay log that \
                 its agent cannot apply ({error}), so its replication stays stopped rather \
                 than discard them (they may be acknowledged writes nobody else has). See \
                 `kubectl logs {pod} -c agent`; once the primary holds everything {pod} \
                 received, start replication there by hand (`START SLAVE`) and ebisu takes \
                 over again"
            ),
            Self::ReseedRefused { pod, why } => format!(
                "{pod} holds data that may not rejoin and must be set aside and seeded \
                 afresh, but its agent refused: {why}. Until then it is neither a failover \
                 candidate nor in the read Service"
            ),
            Self::StaticVolumeRefused { pod, volume, why } => format!(
                "{pod} cannot use {volume}: {why}; {pod} and the instances after it are not \
                 created until it is fixed, so it never gets a new, empty volume instead"
            ),
            Self::FenceImpossible { pod, why } => format!(
                "{pod} is lost with its node and spec.replication.fenceNodes is on, but the \
                 node cannot be fenced: {why}. Stop the machine, then taint the node with \
                 node.kubernetes.io/out-of-service=nodeshutdown:NoExecute"
            ),
            Self::InitFailing { pod, failures, why } => format!(
                "{pod} cannot start: its init container failed {failures} times, last with: \
                 {why}. It is retried with back-off; `kubectl logs {pod} -c init` has the \
                 whole log"
            ),
            Self::OverlappingBudgets(pod) => format!(
                "{pod} is selected by more than one PodDisruptionBudget, so the eviction \
                 API refuses to evict it: the rolling update cannot restart it and a drain \
                 of its node hangs. ebisu's own budgets already allow one instance at a \
                 time and hold the primary until it has moved: delete the other budget"
            ),
            Self::UpgradeFailed { pod, error } => format!(
                "{pod} runs a new release but its upgrade step failed: {error}; it serves \
                 and is retried every few seconds, and the rolling update waits: see \
                 `kubectl logs {pod} -c agent` and fix the cause"
            ),
            Self::NodeUnreachable { pod, node } => format!(
                "node {node} of {pod} stopped reporting; Kubernetes will not replace {pod} \
                 until the node returns. If the machine is gone for good, apply the taint \
                 node.kubernetes.io/out-of-service=nodeshutdown:NoExecute to {node} (or \
                 delete the Node) so {pod} can start elsewhere on its volume"
            ),
        }
    }
}
