//! Backups as EBS snapshots (`MySQLBackup`): the IO shell around
//! [`decide`]. A pending backup of the cluster is taken from the instance
//! [`decide::source`] picks: its applier is stopped (a lone primary takes a
//! read lock instead), the exact GTID set and binary log position are read,
//! the snapshot is started at EC2, and the applier runs again, so the pause
//! lasts one API call. The credentials the data was made with are kept in
//! a Secret the backup owns. A started snapshot is looked at until EBS
//! completes it. With `spec.backup`, [`schedule`] says when the next
//! MySQLBackup is made and which scheduled ones retention deletes, with
//! their snapshots.

pub mod archive;
pub mod archive_retention;
pub mod binlogs;
pub mod decide;
pub mod schedule;

use std::time::Duration;

use std::collections::BTreeSet;

use aws_sdk_ec2::error::ProvideErrorMetadata;
use aws_sdk_ec2::types::{ResourceType, SnapshotState, Tag, TagSpecification};
use ebisu_api::{
    BackupPhase, BinlogPosition, MySQLBackup, MySQLBackupStatus,
    names::{self, LABEL_CLUSTER, LABEL_MANAGED_BY, LABEL_SCHEDULED, MANAGED_BY},
};
use ebisu_mysql::Flavor;
use k8s_openapi::{
    api::core::v1::Secret,
    apimachinery::pkg::apis::meta::v1::{Condition, OwnerReference, Time},
    jiff::Timestamp,
};
use kube::{
    Api, Client, Resource, ResourceExt,
    api::{ListParams, ObjectMeta, Patch, PatchParams, PostParams},
};
use mysql_async::{Conn, prelude::Queryable};
use serde_json::json;

use crate::{
    ec2,
    model::{OperatorAccount, ServerState},
};
use decide::{Pause, SnapshotTags};

/// How soon a backup that waits (for a source, or for EBS) is looked at again.
pub const LOOK_AGAIN: Duration = Duration::from_secs(5);
/// How long a source may take to stop its applier or take its read lock.
const PAUSE_TIMEOUT: Duration = Duration::from_secs(10);
/// The condition a backup that cannot be taken carries.
const FAILED: &str = "Failed";

/// Why a step of a backup failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An API call failed.
    #[error("failed to {action}: {source}")]
    Api {
        /// What was being done.
        action: &'static str,
        /// The client error.
        source: kube::Error,
    },
    /// The source server failed a statement.
    #[error("failed to {action} on {pod}: {source}")]
    Sql {
        /// What was being done.
        action: &'static str,
        /// The server.
        pod: String,
        /// The driver's error.
        source: mysql_async::Error,
    },
    /// The source did not answer in time.
    #[error("failed to {action} on {pod}: timed out")]
    TimedOut {
        /// What was being done.
        action: &'static str,
        /// The server.
        pod: String,
    },
    /// EC2 refused or failed.
    #[error(transparent)]
    Ec2(#[from] ec2::Error),
    /// What the backup needs is not there.
    #[error("failed to {0}")]
    Missing(String),
}

/// A server as the clustering pass last saw it.
#[derive(Debug)]
pub struct Observed<'a> {
    /// Its state.
    pub state: &'a ServerState,
    /// Its flavor, when it answered.
    pub flavor: Option<Flavor>,
    /// Its pod IP.
    pub ip: Option<&'a str>,
    /// Its volume: id, zone and size in GiB, from the latest look at EC2.
    pub volume: Option<(&'a str, Option<&'a str>, Option<i32>)>,
}

/// Where the schedule step works.
#[allow(missing_debug_implementations)] // the clients have no Debug
pub struct Scope<'a> {
    /// API client.
    pub client: &'a Client,
    /// EC2 client.
    pub ec2: &'a aws_sdk_ec2::Client,
    /// The cluster's namespace.
    pub namespace: &'a str,
    /// The cluster's name.
    pub cluster: &'a str,
}

/// What the backups step needs.
#[allow(missing_debug_implementations)] // the clients have no Debug
pub struct Inputs<'a> {
    /// Where.
    pub scope: Scope<'a>,
    /// The servers.
    pub servers: &'a [Observed<'a>],
    /// The primary, when the pass settled on one.
    pub primary: Option<&'a str>,
    /// The operator's account, when the credentials could be read.
    pub account: Option<&'a OperatorAccount>,
    /// The cluster's binary log archive, recorded in each backup taken.
    pub archive: Option<ebisu_api::ArchiveLocation>,
}

/// What a user is told about a backup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupNote {
    /// Needs attention.
    pub warning: bool,
    /// Stable reason.
    pub reason: &'static str,
    /// What happened.
    pub message: String,
}

/// What the step did.
#[derive(Debug, Default)]
pub struct BackupReport {
    /// Events to publish.
    pub notes: Vec<BackupNote>,
    /// A backup waits: look again this soon.
    pub again: Option<Duration>,
}

/// The cluster's backups that are not finished (pending or snapshotting).
pub async fn unfinished(client: &Client, namespace: &str, cluster: &str) -> Vec<MySQLBackup> {
    let api = Api::<MySQLBackup>::namespaced(client.clone(), namespace);
    match api.list(&ListParams::default()).await {
        Ok(list) => list
            .items
            .into_iter()
            .filter(|b| b.spec.cluster == cluster && b.metadata.deletion_timestamp.is_none())
            .filter(|b| {
                !matches!(
                    b.status.as_ref().and_then(|s| s.phase),
                    Some(BackupPhase::Completed | BackupPhase::Failed)
                )
            })
            .collect(),
        Err(error) => {
            tracing::warn!(%error, "failed to list MySQLBackups");
            Vec::new()
        }
    }
}

/// Takes the pending `backups` and follows the started snapshots.
pub async fn run(inputs: &Inputs<'_>, backups: &[MySQLBackup]) -> BackupReport {
    let mut report = BackupReport::default();
    let api = Api::<MySQLBackup>::namespaced(inputs.scope.client.clone(), inputs.scope.namespace);
    for backup in backups {
        let phase = backup.status.as_ref().and_then(|s| s.phase);
        let outcome = match phase {
            None | Some(BackupPhase::Pending) => take(inputs, &api, backup, &mut report).await,
            Some(BackupPhase::Snapshotting) => follow(inputs, &api, backup, &mut report).await,
            Some(BackupPhase::Completed | BackupPhase::Failed) => Ok(()),
        };
        if let Err(error) = outcome {
            tracing::warn!(backup = %backup.name_any(), %error, "backup");
            report.again = Some(LOOK_AGAIN);
        }
    }
    report
}

/// Makes the MySQLBackup the schedule asks for, and deletes the scheduled
/// backups retention lets go (their snapshots first, and only snapshots
/// tagged as this cluster's).
pub async fn keep_schedule(
    scope: &Scope<'_>,
    wanted: &crate::validate::BackupSchedule,
    since: Timestamp,
) -> BackupReport {
    let mut report = BackupReport::default();
    let api = Api::<MySQLBackup>::namespaced(scope.client.clone(), scope.namespace);
    let selector = format!("{LABEL_CLUSTER}={},{LABEL_SCHEDULED}=true", scope.cluster);
    let scheduled = match api.list(&ListParams::default().labels(&selector)).await {
        Ok(list) => list.items,
        Err(error) => {
            tracing::warn!(%error, "failed to list the scheduled MySQLBackups");
            report.again = Some(LOOK_AGAIN);
            return report;
        }
    };
    let created = |b: &MySQLBackup| b.metadata.creation_timestamp.as_ref().map(|t| t.0);
    let last = scheduled.iter().filter_map(created).max();
    let now = Timestamp::now();
    if crate::cron::due(&wanted.cron, last, since, now) {
        let name = schedule::backup_name(scope.cluster, now);
        let mut backup = MySQLBackup::new(
            &name,
            ebisu_api::MySQLBackupSpec {
                cluster: scope.cluster.to_owned(),
            },
        );
        backup.metadata.labels = Some(
            [
                (LABEL_CLUSTER.to_owned(), scope.cluster.to_owned()),
                (LABEL_SCHEDULED.to_owned(), "true".to_owned()),
                (LABEL_MANAGED_BY.to_owned(), MANAGED_BY.to_owned()),
            ]
            .into(),
        );
        match api.create(&PostParams::default(), &backup).await {
            Ok(_) => report.notes.push(BackupNote {
                warning: false,
                reason: "BackupScheduled",
                message: format!("made MySQLBackup {name} on schedule"),
            }),
            Err(error) => {
                tracing::warn!(backup = %name, %error, "failed to make a scheduled backup")
            }
        }
        report.again = Some(LOOK_AGAIN);
    } else if let Some(next) = crate::cron::next_after(&wanted.cron, last.unwrap_or(since)) {
        let wait = next.duration_since(now);
        report.again = Some(
            Duration::try_from(wait)
                .unwrap_or(LOOK_AGAIN)
                .max(LOOK_AGAIN),
        );
    }

    let Some(in_use) = restores_in_progress(scope).await else {
        report.again = Some(LOOK_AGAIN);
        return report;
    };
    let kept: Vec<schedule::Kept> = scheduled
        .iter()
        .map(|b| schedule::Kept {
            name: b.name_any(),
            created: created(b).unwrap_or(now),
            completed: b.is_completed(),
        })
        .collect();
    for name in schedule::expired(&kept, wanted.keep, &in_use) {
        let Some(backup) = scheduled.iter().find(|b| b.name_any() == name) else {
            continue;
        };
        match expire(scope, &api, backup).await {
            Ok(()) => report.notes.push(BackupNote {
                warning: false,
                reason: "BackupExpired",
                message: format!(
                    "deleted MySQLBackup {name} and its snapshot: spec.backup.keep is {}",
                    wanted.keep
                ),
            }),
            Err(error) => tracing::warn!(backup = %name, %error, "failed to expire a backup"),
        }
    }
    report
}

/// The backups a restore in progress starts from (a cluster in the
/// namespace that names one and has not finished its restore).
async fn restores_in_progress(scope: &Scope<'_>) -> Option<BTreeSet<String>> {
    let clusters =
        Api::<ebisu_api::MySQLCluster>::namespaced(scope.client.clone(), scope.namespace);
    match clusters.list(&ListParams::default()).await {
        Ok(list) => Some(
            list.items
                .iter()
                .filter(|c| {
                    !c.status
                        .as_ref()
                        .and_then(|s| s.restore.as_ref())
                        .is_some_and(|r| r.done)
                })
                .filter_map(|c| {
                    // The backup named, or the one chosen for the point.
                    let chosen = c.status.as_ref().and_then(|s| s.restore.as_ref());
                    chosen
                        .map(|r| r.backup.clone())
                        .or_else(|| c.spec.bootstrap.as_ref()?.from_backup.name.clone())
                })
                .collect(),
        ),
        Err(error) => {
            tracing::warn!(%error, "failed to list the clusters; no backup expires now");
            None
        }
    }
}

/// Deletes a scheduled backup's snapshot (only one tagged as this
/// cluster's) and then the MySQLBackup.
async fn expire(
    scope: &Scope<'_>,
    api: &Api<MySQLBackup>,
    backup: &MySQLBackup,
) -> Result<(), Error> {
    if let Some(snapshot) = backup
        .status
        .as_ref()
        .and_then(|s| s.snapshot_id.as_deref())
    {
        let ours = format!("{}/{}", scope.namespace, scope.cluster);
        let found = scope
            .ec2
            .describe_snapshots()
            .snapshot_ids(snapshot)
            .send()
            .await;
        match found {
            Ok(out) => {
                let tagged = out.snapshots().iter().any(|s| {
                    s.tags()
                        .iter()
                        .any(|t| t.key() == Some(decide::CLUSTER_TAG) && t.value() == Some(&ours))
                });
                if !out.snapshots().is_empty() && !tagged {
                    return Err(Error::Missing(format!(
                        "find the tag {}={ours} on snapshot {snapshot}: it is left alone",
                        decide::CLUSTER_TAG
                    )));
                }
                if tagged {
                    scope
                        .ec2
                        .delete_snapshot()
                        .snapshot_id(snapshot)
                        .send()
                        .await
                        .map_err(ec2::call(format!("delete snapshot {snapshot}")))?;
                }
            }
            Err(error) if error.code() == Some("InvalidSnapshot.NotFound") => {}
            Err(error) => {
                return Err(ec2::call(format!("describe snapshot {snapshot}"))(error).into());
            }
        }
    }
    api.delete(&backup.name_any(), &Default::default())
        .await
        .map(drop)
        .map_err(|source| Error::Api {
            action: "delete an expired backup",
            source,
        })
}

/// Takes a pending backup, or says why it waits.
async fn take(
    inputs: &Inputs<'_>,
    api: &Api<MySQLBackup>,
    backup: &MySQLBackup,
    report: &mut BackupReport,
) -> Result<(), Error> {
    let name = backup.name_any();
    let states: Vec<ServerState> = inputs.servers.iter().map(|s| s.state.clone()).collect();
    let chosen = decide::source(&states, inputs.primary);
    let (source, pause) = match (chosen, inputs.account) {
        (Ok(chosen), Some(_)) => chosen,
        (Err(why), _) => return wait(api, backup, &why, report).await,
        (_, None) => return wait(api, backup, "the credentials cannot be read", report).await,
    };
    let observed = inputs
        .servers
        .iter()
        .find(|s| s.state.pod == source.pod)
        .ok_or_else(|| Error::Missing(format!("find {}", source.pod)))?;
    let (Some(ip), Some(flavor), Some((volume, zone, size))) =
        (observed.ip, observed.flavor, observed.volume)
    else {
        let why = format!("{} has no address or no volume looked at yet", source.pod);
        return wait(api, backup, &why, report).await;
    };
    let account = inputs
        .account
        .ok_or_else(|| Error::Missing("read the credentials".into()))?;
    let credentials = keep_credentials(inputs, backup).await?;
    let version = source
        .version
        .map(|v| {
            format!(
                "{}.{}.{}{}",
                v.major,
                v.minor,
                v.patch,
                if v.mariadb { "-MariaDB" } else { "" }
            )
        })
        .unwrap_or_default();
    let tags = SnapshotTags {
        cluster: inputs.scope.cluster,
        namespace: inputs.scope.namespace,
        pod: &source.pod,
        flavor: if flavor.is_mariadb() {
            "mariadb"
        } else {
            "mysql"
        },
        version: &version,
        backup: &name,
    }
    .tags();

    let started = Time(Timestamp::now());
    let mut conn = connect(&source.pod, ip, account).await?;
    let paused = hold(&mut conn, &source.pod, flavor, pause).await;
    // Every transaction of the GTID set read under the pause committed
    // before now.
    let consistent_at = Time(Timestamp::now());
    let outcome = match paused {
        Ok(position) => snapshot(inputs.scope.ec2, volume, &name, &tags)
            .await
            .map(|snapshot| (position, snapshot)),
        Err(error) => Err(error),
    };
    // The applier runs again (or the lock goes) whatever happened.
    let released = release(&mut conn, &source.pod, flavor, pause).await;
    drop(conn);
    let ((gtid_set, binlog), snapshot) = match outcome {
        Ok(taken) => taken,
        Err(Error::Ec2(error)) => return fail(api, backup, &error.to_string(), report).await,
        Err(error) => return Err(error),
    };
    released?;
    let status = MySQLBackupStatus {
        phase: Some(BackupPhase::Snapshotting),
        snapshot_id: Some(snapshot.clone()),
        volume_id: Some(volume.to_owned()),
        zone: zone.map(str::to_owned),
        size_gib: size,
        source_pod: Some(source.pod.clone()),
        flavor: Some(if flavor.is_mariadb() {
            ebisu_api::Flavor::Mariadb
        } else {
            ebisu_api::Flavor::Mysql
        }),
        server_version: Some(version),
        gtid_set: Some(gtid_set.clone()),
        binlog,
        credentials_secret: Some(credentials),
        started: Some(started),
        consistent_at: Some(consistent_at),
        archive: inputs.archive.clone(),
        completed: None,
        conditions: Vec::new(),
    };
    write_status(api, &name, &status).await?;
    report.notes.push(BackupNote {
        warning: false,
        reason: "BackupStarted",
        message: format!(
            "backup {name}: snapshot {snapshot} of {} ({volume}) holds GTID set {gtid_set}",
            source.pod
        ),
    });
    report.again = Some(LOOK_AGAIN);
    Ok(())
}

/// Follows a started snapshot until EBS completes it.
async fn follow(
    inputs: &Inputs<'_>,
    api: &Api<MySQLBackup>,
    backup: &MySQLBackup,
    report: &mut BackupReport,
) -> Result<(), Error> {
    let Some(mut status) = backup.status.clone() else {
        return Ok(());
    };
    let Some(snapshot) = status.snapshot_id.clone() else {
        return Ok(());
    };
    let out = inputs
        .scope
        .ec2
        .describe_snapshots()
        .snapshot_ids(&snapshot)
        .send()
        .await
        .map_err(ec2::call(format!("describe snapshot {snapshot}")))?;
    let state = out.snapshots().first().and_then(|s| s.state().cloned());
    match state {
        Some(SnapshotState::Completed) => {
            status.phase = Some(BackupPhase::Completed);
            status.completed = Some(Time(Timestamp::now()));
            write_status(api, &backup.name_any(), &status).await?;
            report.notes.push(BackupNote {
                warning: false,
                reason: "BackupCompleted",
                message: format!(
                    "backup {}: snapshot {snapshot} completed",
                    backup.name_any()
                ),
            });
            Ok(())
        }
        Some(SnapshotState::Error) => {
            let why = format!("EBS failed snapshot {snapshot}: take another backup");
            fail(api, backup, &why, report).await
        }
        _ => {
            report.again = Some(LOOK_AGAIN);
            Ok(())
        }
    }
}

/// Stops the source's applier (or takes the read lock) and reads the exact
/// GTID set and binary log position it holds.
async fn hold(
    conn: &mut Conn,
    pod: &str,
    flavor: Flavor,
    pause: Pause,
) -> Result<(String, Option<BinlogPosition>), Error> {
    let statement = match pause {
        Pause::Applier => flavor.stop_applier(),
        Pause::Writes => "FLUSH TABLES WITH READ LOCK".to_owned(),
    };
    timed(pod, "pause the source", conn.query_drop(statement)).await?;
    let gtid: Option<String> = timed(
        pod,
        "read the GTID set",
        conn.query_first(flavor.gtid_executed_query()),
    )
    .await?;
    let row: Option<mysql_async::Row> = timed(
        pod,
        "read the binary log position",
        conn.query_first(flavor.binlog_position_query()),
    )
    .await?;
    let binlog = row.and_then(|row| {
        Some(BinlogPosition {
            file: row.get_opt::<String, _>(0)?.ok()?,
            position: row.get_opt::<u64, _>(1)?.ok()?,
        })
    });
    Ok((gtid.unwrap_or_default(), binlog))
}

async fn release(conn: &mut Conn, pod: &str, flavor: Flavor, pause: Pause) -> Result<(), Error> {
    let statement = match pause {
        Pause::Applier => flavor.start_applier(),
        Pause::Writes => "UNLOCK TABLES".to_owned(),
    };
    timed(pod, "resume the source", conn.query_drop(statement)).await
}

async fn timed<T>(
    pod: &str,
    action: &'static str,
    query: impl std::future::Future<Output = Result<T, mysql_async::Error>>,
) -> Result<T, Error> {
    match tokio::time::timeout(PAUSE_TIMEOUT, query).await {
        Err(_) => Err(Error::TimedOut {
            action,
            pod: pod.to_owned(),
        }),
        Ok(result) => result.map_err(|source| Error::Sql {
            action,
            pod: pod.to_owned(),
            source,
        }),
    }
}

async fn connect(pod: &str, ip: &str, account: &OperatorAccount) -> Result<Conn, Error> {
    timed(pod, "connect", Conn::new(account.opts(ip))).await
}

/// Starts the snapshot of `volume`, tagged; its id.
async fn snapshot(
    ec2: &aws_sdk_ec2::Client,
    volume: &str,
    backup: &str,
    tags: &std::collections::BTreeMap<String, String>,
) -> Result<String, Error> {
    let tags = TagSpecification::builder()
        .resource_type(ResourceType::Snapshot)
        .set_tags(Some(
            tags.iter()
                .map(|(k, v)| Tag::builder().key(k).value(v).build())
                .collect(),
        ))
        .build();
    // A call that times out may still have made the snapshot (EC2 has no
    // idempotency token for it), so this one waits longer than the others:
    // EC2 answers at once, and the local cluster answers once its copy of
    // the volume is made (seconds per GiB).
    let patient = aws_sdk_ec2::config::Builder::default().timeout_config(
        aws_config::timeout::TimeoutConfig::builder()
            .operation_timeout(SNAPSHOT_CALL_TIMEOUT)
            .build(),
    );
    let out = ec2
        .create_snapshot()
        .volume_id(volume)
        .description(format!("ebisu backup {backup}"))
        .tag_specifications(tags)
        .customize()
        .config_override(patient)
        .send()
        .await
        .map_err(ec2::call(format!("create a snapshot of {volume}")))?;
    out.snapshot_id()
        .map(str::to_owned)
        .ok_or_else(|| Error::Missing(format!("read the snapshot id of {volume}'s snapshot")))
}

/// How long a CreateSnapshot call may take.
const SNAPSHOT_CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// Copies the cluster's credentials into a Secret the backup owns, so a
/// restore finds them after the cluster and its Secret are gone.
async fn keep_credentials(inputs: &Inputs<'_>, backup: &MySQLBackup) -> Result<String, Error> {
    let secrets = Api::<Secret>::namespaced(inputs.scope.client.clone(), inputs.scope.namespace);
    let name = names::backup_credentials(&backup.name_any());
    if secrets
        .get_opt(&name)
        .await
        .map_err(|source| Error::Api {
            action: "read the backup's credentials",
            source,
        })?
        .is_some()
    {
        return Ok(name);
    }
    let cluster_secret = secrets
        .get(&names::credentials_secret(inputs.scope.cluster))
        .await
        .map_err(|source| Error::Api {
            action: "read the cluster's credentials",
            source,
        })?;
    let owner = OwnerReference {
        api_version: MySQLBackup::api_version(&()).into_owned(),
        kind: MySQLBackup::kind(&()).into_owned(),
        name: backup.name_any(),
        uid: backup.uid().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    };
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: Some(inputs.scope.namespace.to_owned()),
            labels: Some(
                [
                    (LABEL_MANAGED_BY.to_owned(), MANAGED_BY.to_owned()),
                    (LABEL_CLUSTER.to_owned(), inputs.scope.cluster.to_owned()),
                ]
                .into(),
            ),
            owner_references: Some(vec![owner]),
            ..ObjectMeta::default()
        },
        data: cluster_secret.data,
        type_: Some("Opaque".to_owned()),
        ..Secret::default()
    };
    secrets
        .create(&PostParams::default(), &secret)
        .await
        .map_err(|source| Error::Api {
            action: "keep the credentials with the backup",
            source,
        })?;
    Ok(name)
}

/// The backup waits for a source: Pending, with why.
async fn wait(
    api: &Api<MySQLBackup>,
    backup: &MySQLBackup,
    why: &str,
    report: &mut BackupReport,
) -> Result<(), Error> {
    report.again = Some(LOOK_AGAIN);
    let mut status = backup.status.clone().unwrap_or_default();
    let condition = condition(&status, false, "Waiting", why);
    if status.phase == Some(BackupPhase::Pending) && status.conditions == [condition.clone()] {
        return Ok(());
    }
    status.phase = Some(BackupPhase::Pending);
    status.conditions = vec![condition];
    write_status(api, &backup.name_any(), &status).await
}

/// The backup cannot be taken: Failed, with why, and one Event.
async fn fail(
    api: &Api<MySQLBackup>,
    backup: &MySQLBackup,
    why: &str,
    report: &mut BackupReport,
) -> Result<(), Error> {
    let mut status = backup.status.clone().unwrap_or_default();
    status.phase = Some(BackupPhase::Failed);
    status.conditions = vec![condition(&status, true, "BackupFailed", why)];
    write_status(api, &backup.name_any(), &status).await?;
    report.notes.push(BackupNote {
        warning: true,
        reason: "BackupFailed",
        message: format!("backup {} failed: {why}", backup.name_any()),
    });
    Ok(())
}

fn condition(status: &MySQLBackupStatus, failed: bool, reason: &str, message: &str) -> Condition {
    let value = if failed { "True" } else { "False" };
    let since = status
        .conditions
        .iter()
        .find(|c| c.type_ == FAILED && c.status == value)
        .map_or_else(
            || Time(Timestamp::now()),
            |c| c.last_transition_time.clone(),
        );
    Condition {
        type_: FAILED.to_owned(),
        status: value.to_owned(),
        reason: reason.to_owned(),
        message: message.to_owned(),
        last_transition_time: since,
        observed_generation: None,
    }
}

async fn write_status(
    api: &Api<MySQLBackup>,
    name: &str,
    status: &MySQLBackupStatus,
) -> Result<(), Error> {
    api.patch_status(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({ "status": status })),
    )
    .await
    .map(drop)
    .map_err(|source| Error::Api {
        action: "write the backup's status",
        source,
    })
}
