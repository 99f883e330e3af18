//! Restores verified on a schedule (`spec.backup.verify`), the IO shell
//! around [`decide`]: the reference sums taken on the archiving replica
//! with its applier held, the scratch cluster `<name>-verify` restored from
//! the newest backup plus the archive up to that GTID set, its tables
//! checked by its agent, the outcome written on the scratch cluster, then
//! recorded in status, and only then the scratch cluster, its claim, PV,
//! volume and Secret deleted. Taking sums and checking tables can take
//! minutes, so both run as tasks beside the reconcile (one per cluster at a
//! time), which leave their result on the scratch cluster: a reconcile
//! never waits for them. A task that failed is not tried again for
//! [`BACKOFF`] (a cluster without a completed backup yet, say).

pub mod decide;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_ec2::error::ProvideErrorMetadata;
use ebisu_api::{
    ArchiveStatus, BootstrapSpec, FromBackup, MySQLBackup, MySQLCluster, PointInTime,
    ServiceTemplates, VerifiedRestore,
    agent::{PATH_TABLE_CHECK, TableCheck, TableCheckRequest},
    names::{self, LABEL_MANAGED_BY, MANAGED_BY},
};
use k8s_openapi::{
    api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod, Secret},
    apimachinery::pkg::apis::meta::v1::Time,
    jiff::Timestamp,
};
use kube::{
    Api, Client, ResourceExt,
    api::{DeleteParams, ListParams, ObjectMeta, Patch, PatchParams, PostParams},
};
use tracing::{info, warn};

use crate::{
    build::given_volume::volume_name,
    dereference, ec2,
    restore::TAG_RESTORE_FOR,
    validate::{ValidatedCluster, VerifySchedule, ebisu_mysql_flavor},
};
use decide::{ANNOTATION_EXPECTED, ANNOTATION_OUTCOME, Expected, Outcome, Step, expected, observe};

/// The label naming the cluster a scratch cluster verifies.
pub const LABEL_VERIFY_OF: &str = "ebisu.dev/verify-of";
/// How soon to look again while a verification runs.
pub const AGAIN: Duration = Duration::from_secs(10);
/// The longest an agent may take to sum or check the sample.
const AGENT_TIMEOUT: Duration = Duration::from_secs(1800);

/// The scratch cluster of `cluster`.
pub fn scratch_name(cluster: &str) -> String {
    format!("{cluster}-verify")
}

/// Why a verification step could not do its part (tried again at the next
/// reconcile).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An API call failed.
    #[error("failed to {action}: {source}")]
    Api {
        /// What was tried.
        action: &'static str,
        /// The API server's error.
        #[source]
        source: kube::Error,
    },
    /// An EC2 call failed.
    #[error(transparent)]
    Ec2(#[from] ec2::Error),
    /// A MySQLCluster of the scratch cluster's name is not the operator's.
    #[error(
        "failed to make the scratch cluster {name}: a MySQLCluster of that name exists that \
         does not verify {cluster} (label {LABEL_VERIFY_OF}); rename it"
    )]
    NotOurs {
        /// The scratch cluster's name.
        name: String,
        /// The cluster verified.
        cluster: String,
    },
    /// Something the step needs is not there yet.
    #[error("failed to {0}")]
    NotYet(String),
    /// An agent refused or did not answer.
    #[error("failed to {action} on {pod}: {why}")]
    Agent {
        /// What was asked.
        action: &'static str,
        /// The pod.
        pod: String,
        /// Its answer, or the transport's error.
        why: String,
    },
    /// The scratch cluster's credentials could not be read.
    #[error("failed to read the scratch cluster's credentials: {0}")]
    Credentials(#[source] dereference::Error),
    /// What goes on the scratch cluster could not be written down.
    #[error("failed to write down {what}: {source}")]
    Encode {
        /// What.
        what: &'static str,
        /// The encoder's error.
        #[source]
        source: serde_json::Error,
    },
}

fn api(action: &'static str) -> impl FnOnce(kube::Error) -> Error {
    move |source| Error::Api { action, source }
}

/// How long after a failed task the next one of its cluster waits.
pub const BACKOFF: Duration = Duration::from_secs(60);

/// The verifications' tasks, by cluster (`<namespace>/<name>`): those in
/// flight, and when each cluster's last one failed.
#[derive(Debug, Default)]
pub struct Jobs {
    running: Mutex<BTreeSet<String>>,
    failed: Mutex<BTreeMap<String, std::time::Instant>>,
    holding: Mutex<BTreeMap<String, String>>,
}

impl Jobs {
    /// The replica of the cluster `key` whose applier a task holds now.
    pub fn held(&self, key: &str) -> Option<String> {
        self.holding.lock().ok()?.get(key).cloned()
    }

    /// Marks `pod` held for the cluster `key` until the guard drops.
    fn hold(self: &Arc<Self>, key: &str, pod: &str) -> HoldGuard {
        if let Ok(mut holding) = self.holding.lock() {
            holding.insert(key.to_owned(), pod.to_owned());
        }
        HoldGuard(self.clone(), key.to_owned())
    }

    /// Runs `task` beside the reconcile unless a task of the cluster `key`
    /// runs already or failed within [`BACKOFF`]; false in the second case
    /// (nothing to look at soon). A failed one is logged.
    fn spawn(
        self: &Arc<Self>,
        key: String,
        doing: &'static str,
        task: impl std::future::Future<Output = Result<(), Error>> + Send + 'static,
    ) -> bool {
        let resting = self
            .failed
            .lock()
            .ok()
            .and_then(|failed| failed.get(&key).map(std::time::Instant::elapsed))
            .is_some_and(|since| since < BACKOFF);
        if resting {
            return false;
        }
        let Some(slot) = self.claim(key) else {
            return true;
        };
        tokio::spawn(async move {
            let result = task.await;
            if let Ok(mut failed) = slot.0.failed.lock() {
                match &result {
                    Ok(()) => failed.remove(&slot.1),
                    Err(_) => failed.insert(slot.1.clone(), std::time::Instant::now()),
                };
            }
            if let Err(error) = result {
                warn!(%error, cluster = %slot.1, "{doing}; trying again in {} s", BACKOFF.as_secs());
            }
            drop(slot);
        });
        true
    }

    /// Claims the cluster's slot; `None` while a task of it runs.
    fn claim(self: &Arc<Self>, key: String) -> Option<JobSlot> {
        let mut running = self.running.lock().ok()?;
        running
            .insert(key.clone())
            .then(|| JobSlot(self.clone(), key))
    }
}

/// A replica marked held, unmarked when dropped.
struct HoldGuard(Arc<Jobs>, String);

impl Drop for HoldGuard {
    fn drop(&mut self) {
        if let Ok(mut holding) = self.0.holding.lock() {
            holding.remove(&self.1);
        }
    }
}

/// A task's slot, given back when it ends (however it ends).
struct JobSlot(Arc<Jobs>, String);

impl Drop for JobSlot {
    fn drop(&mut self) {
        if let Ok(mut running) = self.0.running.lock() {
            running.remove(&self.1);
        }
    }
}

/// What a verification step needs.
#[allow(missing_debug_implementations)] // the AWS clients have no Debug
#[derive(Clone, Copy)]
pub struct Clients<'a> {
    /// The API server.
    pub client: &'a Client,
    /// EC2.
    pub ec2: &'a aws_sdk_ec2::Client,
    /// The agents.
    pub agents: &'a reqwest::Client,
    /// The tasks in flight.
    pub jobs: &'a Arc<Jobs>,
}

/// What a restore is verified against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reference {
    /// The archiving replica: its applier is held while it sums tables,
    /// and the restore must reach that set with the same sums.
    Held(Archiver),
    /// The archive's set, when the primary archives (one instance: it
    /// cannot be held): the restore must reach it, with clean tables.
    Archived(String),
    /// The archive's archiver or set is not known yet: no start.
    Unknown,
    /// No archive: the backup alone, with clean tables.
    Backup,
}

/// What the cluster's restores are verified against: the archiving
/// replica when there is one (`ip` gives a pod's IP), the archive's set
/// when the primary archives, the backup alone without an archive.
pub fn reference(
    archive: Option<&ArchiveStatus>,
    primary: Option<&str>,
    ip: impl Fn(&str) -> Option<String>,
    token: Option<&str>,
) -> Reference {
    let Some(archive) = archive else {
        return Reference::Backup;
    };
    if primary.is_none() {
        // A failover may be choosing among the replicas: none is held.
        return Reference::Unknown;
    }
    match (archive.archiver.as_deref(), archive.gtid_set.as_deref()) {
        // A primary cannot be held.
        (Some(pod), set) if Some(pod) == primary => set.map_or(Reference::Unknown, |set| {
            Reference::Archived(set.to_owned())
        }),
        (Some(pod), _) => ip(pod)
            .zip(token)
            .map_or(Reference::Unknown, |(ip, token)| {
                Reference::Held(Archiver {
                    pod: pod.to_owned(),
                    ip,
                    token: token.to_owned(),
                })
            }),
        (None, _) => Reference::Unknown,
    }
}

/// The agent whose server the reference sums are taken on: the archiver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Archiver {
    /// Its pod.
    pub pod: String,
    /// The pod's IP.
    pub ip: String,
    /// The clone token agents want.
    pub token: String,
}

/// What the step did.
#[derive(Debug, Default)]
pub struct Report {
    /// `status.lastVerifiedRestore` after the step.
    pub verified: Option<VerifiedRestore>,
    /// A verification ended in this step.
    pub finished: bool,
    /// Look again this soon.
    pub again: Option<Duration>,
}

/// One step of the cluster's verification; `previous` is
/// `status.lastVerifiedRestore`.
pub async fn step(
    clients: Clients<'_>,
    cluster: &MySQLCluster,
    validated: &ValidatedCluster,
    previous: Option<&VerifiedRestore>,
    reference: Reference,
) -> Report {
    let mut report = Report {
        verified: previous.cloned(),
        ..Report::default()
    };
    let Some(verify) = validated
        .backup_schedule
        .as_ref()
        .and_then(|b| b.verify.as_ref())
    else {
        return report;
    };
    let result = run(clients, cluster, validated, verify, &mut report, reference).await;
    if let Err(error) = result {
        warn!(%error, "restore verification; trying again");
        report.again = Some(AGAIN);
    }
    report
}

async fn run(
    clients: Clients<'_>,
    cluster: &MySQLCluster,
    validated: &ValidatedCluster,
    verify: &VerifySchedule,
    report: &mut Report,
    reference: Reference,
) -> Result<(), Error> {
    let now = Timestamp::now();
    let name = scratch_name(&validated.name);
    let clusters = Api::<MySQLCluster>::namespaced(clients.client.clone(), &validated.namespace);
    let found = clusters
        .get_opt(&name)
        .await
        .map_err(api("read the scratch cluster"))?;
    let found = match found {
        Some(s) if s.labels().get(LABEL_VERIFY_OF) != Some(&validated.name) => {
            // Not ours: never touched.
            return Err(Error::NotOurs {
                name,
                cluster: validated.name.clone(),
            });
        }
        other => other,
    };
    let scratch = found.as_ref().map(|s| observe(s, now));
    let since = cluster
        .metadata
        .creation_timestamp
        .as_ref()
        .map_or(now, |t| t.0);
    let last = report.verified.as_ref().map(|v| v.finished_at.0);
    let due = crate::cron::due(&verify.cron, last, since, now);
    let step = decide::next(decide::Input {
        scratch: scratch.as_ref(),
        volume_left: report
            .verified
            .as_ref()
            .is_some_and(|v| v.scratch_volume.is_some()),
        recorded: report.verified.as_ref().map(|v| v.finished_at.0),
        due,
        now,
        timeout_seconds: verify.timeout_seconds,
    });
    let key = validated.key();
    match (step, found) {
        (Step::Idle, _) => {}
        (Step::Wait, _) => report.again = Some(AGAIN),
        (Step::Start, _) => {
            let task = Start {
                client: clients.client.clone(),
                agents: clients.agents.clone(),
                cluster: cluster.clone(),
                validated: validated.clone(),
                sample: verify.sample_tables,
                reference,
                jobs: clients.jobs.clone(),
            };
            if clients
                .jobs
                .spawn(key, "starting a restore verification", task.run())
            {
                report.again = Some(AGAIN);
            }
        }
        (Step::Check, Some(scratch)) => {
            let task = Check {
                client: clients.client.clone(),
                agents: clients.agents.clone(),
                scratch,
                flavor: ebisu_mysql_flavor(validated.flavor),
                sample: verify.sample_tables,
            };
            if clients
                .jobs
                .spawn(key, "checking a restored scratch cluster", task.run())
            {
                report.again = Some(AGAIN);
            }
        }
        (Step::Finish(outcome), Some(found)) => {
            report.verified = Some(recorded(&found, outcome));
            report.finished = true;
            report.again = Some(AGAIN);
        }
        (Step::Remove, Some(found)) => {
            info!(scratch = %found.name_any(), "restore verification recorded; deleting its scratch cluster");
            match clusters
                .delete(&found.name_any(), &DeleteParams::background())
                .await
            {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => return Err(api("delete the scratch cluster")(e)),
            }
            report.again = Some(AGAIN);
        }
        (Step::Fail(why), Some(found)) => {
            write_outcome(
                &clusters,
                &found.name_any(),
                &Outcome {
                    passed: false,
                    message: why,
                    tables: 0,
                    finished_at: now,
                },
            )
            .await?;
            report.again = Some(AGAIN);
        }
        (Step::RemoveVolume, _) => {
            if let Some(verified) = report.verified.as_mut()
                && let Some(volume) = verified.scratch_volume.clone()
            {
                let gone = remove_volume(clients, validated, &name, &volume).await?;
                if gone {
                    verified.scratch_volume = None;
                } else {
                    report.again = Some(AGAIN);
                }
            }
        }
        (Step::Check | Step::Finish(_) | Step::Remove | Step::Fail(_), None) => {}
    }
    Ok(())
}

/// The record of a scratch cluster's outcome, for the cluster's status.
fn recorded(scratch: &MySQLCluster, outcome: Outcome) -> VerifiedRestore {
    let started = scratch
        .metadata
        .creation_timestamp
        .as_ref()
        .map_or(outcome.finished_at, |t| t.0);
    VerifiedRestore {
        backup: scratch
            .spec
            .bootstrap
            .as_ref()
            .and_then(|b| b.from_backup.name.clone())
            .unwrap_or_default(),
        gtid_set: expected(scratch).map(|e| e.gtid_set).unwrap_or_default(),
        passed: outcome.passed,
        message: outcome.message,
        tables: outcome.tables,
        seconds: u64::try_from(outcome.finished_at.duration_since(started).as_secs()).unwrap_or(0),
        finished_at: Time(outcome.finished_at),
        scratch_volume: scratch
            .status
            .as_ref()
            .and_then(|s| s.restore.as_ref())
            .map(|r| r.volume_id.clone())
            .filter(|v| !v.is_empty()),
    }
}

/// Writes the outcome on the scratch cluster, where the next look reads it.
async fn write_outcome(
    clusters: &Api<MySQLCluster>,
    scratch: &str,
    outcome: &Outcome,
) -> Result<(), Error> {
    let outcome = serde_json::to_string(outcome).map_err(|source| Error::Encode {
        what: "the outcome",
        source,
    })?;
    let patch = serde_json::json!({
        "metadata": { "annotations": { ANNOTATION_OUTCOME: outcome } }
    });
    clusters
        .patch_metadata(scratch, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(api("record the outcome on the scratch cluster"))?;
    Ok(())
}

/// Deletes the scratch cluster's claim, PV, Secret and volume; true once
/// the volume is gone. Only a volume the restore made for the scratch
/// cluster (its tag says so) is deleted.
async fn remove_volume(
    clients: Clients<'_>,
    validated: &ValidatedCluster,
    scratch: &str,
    volume: &str,
) -> Result<bool, Error> {
    let ns = &validated.namespace;
    let gone = |r: Result<_, kube::Error>, action| match r {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(api(action)(e)),
    };
    let claims = Api::<PersistentVolumeClaim>::namespaced(clients.client.clone(), ns);
    gone(
        claims
            .delete(&names::data_claim(scratch, 0), &DeleteParams::default())
            .await
            .map(|_| ()),
        "delete the scratch cluster's claim",
    )?;
    let volumes = Api::<PersistentVolume>::all(clients.client.clone());
    gone(
        volumes
            .delete(&volume_name(volume), &DeleteParams::default())
            .await
            .map(|_| ()),
        "delete the scratch cluster's PV",
    )?;
    let secrets = Api::<Secret>::namespaced(clients.client.clone(), ns);
    let secret = names::credentials_secret(scratch);
    let ours = secrets
        .get_opt(&secret)
        .await
        .map_err(api("read the scratch cluster's Secret"))?
        .is_some_and(|s| s.labels().get(LABEL_MANAGED_BY).map(String::as_str) == Some(MANAGED_BY));
    if ours {
        gone(
            secrets
                .delete(&secret, &DeleteParams::default())
                .await
                .map(|_| ()),
            "delete the scratch cluster's Secret",
        )?;
    }
    let described = clients
        .ec2
        .describe_volumes()
        .volume_ids(volume)
        .send()
        .await;
    let described = match described {
        Ok(d) => d,
        Err(e) if e.code() == Some("InvalidVolume.NotFound") => return Ok(true),
        Err(e) => return Err(ec2::call("look up the scratch volume")(e).into()),
    };
    let Some(found) = described.volumes().first() else {
        return Ok(true);
    };
    let tagged = format!("{ns}/{scratch}");
    let made_for_scratch = found
        .tags()
        .iter()
        .any(|t| t.key() == Some(TAG_RESTORE_FOR) && t.value() == Some(tagged.as_str()));
    if !made_for_scratch {
        warn!(
            volume,
            "the scratch volume is not tagged as the scratch cluster's; left alone"
        );
        return Ok(true);
    }
    match found.state().map(|s| s.as_str()) {
        Some("available") => {
            clients
                .ec2
                .delete_volume()
                .volume_id(volume)
                .send()
                .await
                .map_err(ec2::call("delete the scratch volume"))?;
            info!(
                volume,
                "deleting the scratch volume of a restore verification"
            );
        }
        Some("deleted") => return Ok(true),
        // Still attached while the scratch pod goes, or being deleted.
        _ => {}
    }
    // Gone only once EC2 no longer has it, so no restore finds it by its
    // tag meanwhile.
    Ok(false)
}

/// The start of a verification, as a task: the reference sums, then the
/// scratch cluster.
struct Start {
    client: Client,
    agents: reqwest::Client,
    cluster: MySQLCluster,
    validated: ValidatedCluster,
    sample: u32,
    reference: Reference,
    jobs: Arc<Jobs>,
}

impl Start {
    async fn run(self) -> Result<(), Error> {
        let validated = &self.validated;
        let backups = Api::<MySQLBackup>::namespaced(self.client.clone(), &validated.namespace)
            .list(&ListParams::default())
            .await
            .map_err(api("list the backups"))?;
        let Some(backup) = backups
            .items
            .into_iter()
            .filter(|b| b.spec.cluster == validated.name && b.is_completed())
            .max_by_key(|b| {
                b.status
                    .as_ref()
                    .and_then(|s| s.completed.as_ref())
                    .map(|t| t.0)
            })
        else {
            return Err(Error::NotYet(
                "find a completed backup to verify (none yet)".to_owned(),
            ));
        };
        let backup_set = backup
            .status
            .as_ref()
            .and_then(|s| s.gtid_set.clone())
            .unwrap_or_default();
        let (expected, to_point) = match &self.reference {
            Reference::Held(archiver) => {
                let request = TableCheckRequest {
                    hold: true,
                    tables: Vec::new(),
                    sample: self.sample,
                    check: false,
                };
                // The clustering pass leaves its stopped applier alone
                // meanwhile.
                let _marked = self.jobs.hold(&validated.key(), &archiver.pod);
                let held = crate::agent_client::post::<_, TableCheck>(
                    &self.agents,
                    &archiver.ip,
                    PATH_TABLE_CHECK,
                    &archiver.token,
                    &request,
                    AGENT_TIMEOUT,
                )
                .await
                .map_err(|why| Error::Agent {
                    action: "sum tables with the applier held",
                    pod: archiver.pod.clone(),
                    why,
                })?;
                (held, true)
            }
            Reference::Archived(set) => (
                TableCheck {
                    gtid_set: set.clone(),
                    tables: Vec::new(),
                },
                true,
            ),
            Reference::Unknown => {
                return Err(Error::NotYet(
                    "find the archiver and what the archive holds (not known yet)".to_owned(),
                ));
            }
            Reference::Backup => (
                TableCheck {
                    gtid_set: backup_set.clone(),
                    tables: Vec::new(),
                },
                false,
            ),
        };
        let flavor = ebisu_mysql_flavor(validated.flavor);
        let holds_backup = ebisu_mysql::GtidSet::parse(flavor, &expected.gtid_set)
            .ok()
            .zip(ebisu_mysql::GtidSet::parse(flavor, &backup_set).ok())
            .is_some_and(|(held, backup)| held.contains(&backup).unwrap_or(false));
        if !holds_backup {
            // A replica or archive still behind the backup: a restore to its
            // set would be refused for a reason that is not the backup's.
            return Err(Error::NotYet(format!(
                "find a reference set that holds backup {} (it was {})",
                backup.name_any(),
                expected.gtid_set
            )));
        }
        let scratch = scratch_cluster(
            &self.cluster,
            validated,
            &backup.name_any(),
            &expected,
            to_point,
        )?;
        Api::<MySQLCluster>::namespaced(self.client.clone(), &validated.namespace)
            .create(&PostParams::default(), &scratch)
            .await
            .map_err(api("create the scratch cluster"))?;
        info!(
            cluster = %validated.name,
            backup = %backup.name_any(),
            gtid_set = %expected.gtid_set,
            "restore verification started"
        );
        Ok(())
    }
}

/// The scratch cluster: the cluster's spec with one instance, no backups,
/// default Services and no given volumes, restored from `backup` (to the
/// held set when there is an archive); it belongs to the cluster.
fn scratch_cluster(
    cluster: &MySQLCluster,
    validated: &ValidatedCluster,
    backup: &str,
    expected: &TableCheck,
    to_point: bool,
) -> Result<MySQLCluster, Error> {
    let mut spec = cluster.spec.clone();
    spec.replicas = 1;
    spec.backup = None;
    spec.services = ServiceTemplates::default();
    if let Some(ebs) = spec.storage.ebs.as_mut() {
        ebs.volumes.clear();
    }
    spec.bootstrap = Some(BootstrapSpec {
        from_backup: FromBackup {
            name: Some(backup.to_owned()),
            cluster: None,
            point_in_time: to_point.then(|| PointInTime {
                time: None,
                gtid_set: Some(expected.gtid_set.clone()),
            }),
        },
    });
    let expected = serde_json::to_string(expected).map_err(|source| Error::Encode {
        what: "the reference sums",
        source,
    })?;
    Ok(MySQLCluster {
        metadata: ObjectMeta {
            name: Some(scratch_name(&validated.name)),
            namespace: Some(validated.namespace.clone()),
            labels: Some(BTreeMap::from([
                (LABEL_VERIFY_OF.to_owned(), validated.name.clone()),
                (LABEL_MANAGED_BY.to_owned(), MANAGED_BY.to_owned()),
            ])),
            annotations: Some(BTreeMap::from([(ANNOTATION_EXPECTED.to_owned(), expected)])),
            owner_references: Some(vec![validated.owner.clone()]),
            ..ObjectMeta::default()
        },
        spec,
        status: None,
    })
}

/// The checks of a restored scratch cluster, as a task: its agent checks
/// and sums the tables the replica summed (a sample of its own without an
/// archive), and the verdict goes on the scratch cluster.
struct Check {
    client: Client,
    agents: reqwest::Client,
    scratch: MySQLCluster,
    flavor: ebisu_mysql::Flavor,
    sample: u32,
}

impl Check {
    async fn run(self) -> Result<(), Error> {
        let name = self.scratch.name_any();
        let ns = self.scratch.namespace().unwrap_or_default();
        let pod = names::pod(&name, 0);
        let ip = Api::<Pod>::namespaced(self.client.clone(), &ns)
            .get_opt(&pod)
            .await
            .map_err(api("read the scratch pod"))?
            .and_then(|p| p.status?.pod_ip)
            .ok_or_else(|| Error::NotYet(format!("reach {pod} (no IP yet)")))?;
        let token = dereference::accounts(&self.client, &ns, &name)
            .await
            .map_err(Error::Credentials)?
            .and_then(|a| a.clone_token)
            .ok_or_else(|| Error::NotYet(format!("read {name}'s clone token (none yet)")))?;
        let expected = expected(&self.scratch).ok_or_else(|| {
            Error::NotYet(format!(
                "read what {name} must match (its annotation {ANNOTATION_EXPECTED})"
            ))
        })?;
        let request = TableCheckRequest {
            hold: false,
            tables: expected.tables.iter().map(|t| t.table.clone()).collect(),
            sample: self.sample,
            check: true,
        };
        // An agent that cannot answer is asked again at the next look,
        // until the verification's timeout.
        let found = crate::agent_client::post::<_, TableCheck>(
            &self.agents,
            &ip,
            PATH_TABLE_CHECK,
            &token,
            &request,
            AGENT_TIMEOUT,
        )
        .await
        .map_err(|why| Error::Agent {
            action: "check the tables",
            pod: pod.clone(),
            why,
        })?;
        let verdict = decide::verdict(
            self.flavor,
            &Expected {
                gtid_set: &expected.gtid_set,
                tables: &expected.tables,
            },
            &found,
        );
        let outcome = Outcome {
            passed: verdict.is_ok(),
            message: verdict.unwrap_or_else(|why| why),
            tables: u32::try_from(found.tables.len()).unwrap_or(u32::MAX),
            finished_at: Timestamp::now(),
        };
        write_outcome(
            &Api::<MySQLCluster>::namespaced(self.client.clone(), &ns),
            &name,
            &outcome,
        )
        .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replica_archiver_is_held_and_a_primary_one_is_not() {
        let archive = |archiver: Option<&str>, set: Option<&str>| ArchiveStatus {
            archiver: archiver.map(str::to_owned),
            gtid_set: set.map(str::to_owned),
            ..ArchiveStatus::default()
        };
        let ip = |pod: &str| (pod == "db-2").then(|| "10.0.0.2".to_owned());
        let primary = Some("db-0");
        assert_eq!(
            reference(
                Some(&archive(Some("db-2"), Some("0-1-5"))),
                None,
                ip,
                Some("t")
            ),
            Reference::Unknown,
            "no replica is held while there is no primary"
        );
        assert_eq!(reference(None, primary, ip, Some("t")), Reference::Backup);
        assert_eq!(
            reference(
                Some(&archive(Some("db-2"), Some("0-1-5"))),
                primary,
                ip,
                Some("t")
            ),
            Reference::Held(Archiver {
                pod: "db-2".to_owned(),
                ip: "10.0.0.2".to_owned(),
                token: "t".to_owned(),
            })
        );
        assert_eq!(
            reference(
                Some(&archive(Some("db-0"), Some("0-1-5"))),
                primary,
                ip,
                Some("t")
            ),
            Reference::Archived("0-1-5".to_owned())
        );
        for unknown in [
            reference(Some(&archive(Some("db-0"), None)), primary, ip, Some("t")),
            reference(
                Some(&archive(Some("db-1"), Some("0-1-5"))),
                primary,
                ip,
                Some("t"),
            ),
            reference(
                Some(&archive(Some("db-2"), Some("0-1-5"))),
                primary,
                ip,
                None,
            ),
            reference(Some(&archive(None, Some("0-1-5"))), primary, ip, Some("t")),
        ] {
            assert_eq!(unknown, Reference::Unknown);
        }
    }
}
