//! One reconcile of one MySQLCluster, top to bottom: the only code that
//! sequences the steps. [`apply_cluster`] reads as the list of them, in
//! order:
//!
//! 1. validate the spec (no client); an invalid one is a condition and one
//!    Event, and nothing else happens;
//! 2. read the durable record of whether the cluster holds data;
//! 3. a cluster that starts from a backup: check the backup, make its
//!    credentials and first volume (EC2); a refused restore is a condition
//!    and one Event, and nothing else happens;
//! 4. check and bind the volumes given in `spec.storage.ebs.volumes` (EC2);
//! 5. build the children (no client) and apply them;
//! 6. read the children and nodes back, and diagnose stuck claims and pods;
//! 7. take the latest look at the volumes at EC2 (the next runs in the
//!    background);
//! 8. the clustering pass: observe, decide and act on the servers (a
//!    restored first server forgets its old source first);
//! 9. take the cluster's pending backups, follow started snapshots;
//! 10. record that the cluster holds data, once it has a primary;
//! 11. fence lost nodes, unfence returned ones (EC2, nodes);
//! 12. announce problems once, as Events;
//! 13. point the fast probe at the primary and the node index at the nodes;
//! 14. write status;
//! 15. say when to look again.
//!
//! A step that cannot do its part reports it as a problem and the next
//! steps still run (report and continue): the servers are looked after even
//! when a child cannot be applied. Only failing to read what the later steps
//! stand on (the data record, the children) or to write status ends a
//! reconcile with an error, retried after a pause.

mod cleanup;
mod context;
pub mod pass;
pub mod requeue;
pub mod rollout_turn;
mod volume_look;

use std::sync::Arc;

use ebisu_api::{
    MySQLCluster, MySQLClusterStatus,
    names::{self, FINALIZER},
};
use k8s_openapi::{apimachinery::pkg::apis::meta::v1::Time, jiff::Timestamp};
use kube::{
    Api, ResourceExt,
    runtime::{
        controller::Action,
        finalizer::{self, Event as FinalizerEvent},
        reflector::ObjectRef,
    },
};
use tracing::{debug, info, instrument, warn};

pub use context::{Context, LeaderClock, LeaseClock, NodeIndex, ProbeTriggers};

use crate::{
    apply, backups, build,
    clustering::PassReport,
    dereference, diagnose, events, fencing,
    model::{Answer, ClusterObjects, Problem, objects},
    restore::{self, Restore},
    status::{self, StatusInputs},
    validate::{self, ValidatedCluster},
    verify, volumes,
};

/// Why a reconcile failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading the cluster's objects failed.
    #[error(transparent)]
    Dereference(dereference::Error),
    /// A call to the API server failed.
    #[error("failed to {action}: {source}")]
    Api {
        /// What was being done.
        action: &'static str,
        /// The client error.
        #[source]
        source: kube::Error,
    },
    /// A node the deleted cluster fenced could not be unfenced.
    #[error("failed to unfence a node of the deleted cluster: {0}")]
    Unfence(#[source] fencing::Error),
    /// A restore step failed.
    #[error(transparent)]
    Restore(restore::Error),
    /// The finalizer machinery failed.
    #[error("failed to run the finalizer: {0}")]
    Finalizer(#[source] Box<finalizer::Error<Error>>),
}

impl Error {
    /// What kind of failure it is, for logs.
    pub fn category(&self) -> &'static str {
        match self {
            Error::Dereference(_) => "dereference",
            Error::Api { .. } => "api",
            Error::Unfence(_) => "unfence",
            Error::Restore(_) => "restore",
            Error::Finalizer(_) => "finalizer",
        }
    }

    fn api(action: &'static str) -> impl FnOnce(kube::Error) -> Error {
        move |source| Error::Api { action, source }
    }

    /// A write refused because the object changed since it was read.
    pub fn is_conflict(&self) -> bool {
        match self {
            Error::Api {
                source: kube::Error::Api(status),
                ..
            } => status.code == 409,
            Error::Finalizer(e) => matches!(
                e.as_ref(),
                finalizer::Error::ApplyFailed(inner) if inner.is_conflict()
            ),
            _ => false,
        }
    }
}

/// Reconciles one cluster.
#[instrument(skip_all, fields(cluster = %cluster.name_any(), namespace = cluster.namespace().unwrap_or_default()))]
pub async fn reconcile(cluster: Arc<MySQLCluster>, ctx: Arc<Context>) -> Result<Action, Error> {
    let ns = cluster.namespace().unwrap_or_default();
    let api = Api::<MySQLCluster>::namespaced(ctx.client.clone(), &ns);
    finalizer::finalizer(&api, FINALIZER, cluster, |event| async {
        match event {
            FinalizerEvent::Apply(cluster) => apply_cluster(&cluster, &ctx).await,
            FinalizerEvent::Cleanup(cluster) => cleanup::cleanup(&cluster, &ctx).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)))
}

/// Logs and retries; at once when the cluster changed under a status
/// write (its next reconcile has something new to look at).
pub fn error_policy(cluster: Arc<MySQLCluster>, error: &Error, _ctx: Arc<Context>) -> Action {
    if error.is_conflict() {
        tracing::debug!(cluster = %cluster.name_any(), %error, "the cluster changed meanwhile; again");
        return Action::requeue(requeue::AFTER_CONFLICT);
    }
    warn!(cluster = %cluster.name_any(), kind = error.category(), %error, "reconcile failed; retrying");
    Action::requeue(requeue::AFTER_ERROR)
}

/// The steps of one reconcile of a cluster that is not being deleted.
async fn apply_cluster(cluster: &MySQLCluster, ctx: &Context) -> Result<Action, Error> {
    let now = Time(Timestamp::now());
    let key = ObjectRef::from_obj(cluster);
    let previous = cluster.status.as_ref();

    // 1. Validate (no client).
    let validated = match validate::validate(cluster, &ctx.settings) {
        Ok(validated) => validated,
        Err(error) => return refuse_spec(cluster, ctx, &error.to_string(), &now).await,
    };

    // 2. Whether the cluster holds data (client).
    let record = dereference::data_record(&ctx.client, &validated.namespace, &validated.name)
        .await
        .map_err(Error::Dereference)?;
    let holds_data = record.holds_data(previous.is_some_and(|s| s.current_primary.is_some()));

    // 3. A cluster that starts from a backup (client, EC2).
    let restore = restore::prepare(
        restore::Clients {
            client: &ctx.client,
            ec2: &ctx.ec2,
            s3: &ctx.s3,
        },
        &validated,
        previous.and_then(|s| s.restore.as_ref()),
        holds_data || record.has_claims(),
    )
    .await
    .map_err(Error::Restore)?;
    let (validated, restoring) = match restore {
        Restore::None => (validated, None),
        Restore::Ready(restoring) => (
            validated
                .with_restored_volume(&restoring.volume_id)
                .with_replay(replay_order(&validated, &restoring)),
            Some(*restoring),
        ),
        Restore::Refused(why) => return refuse_restore(cluster, ctx, &why, &now).await,
    };
    let restored_pod = restoring
        .as_ref()
        .filter(|r| !r.done)
        .map(|_| names::pod(&validated.name, 0));

    // 4. New replicas' seeds: a stream, or a volume made from a backup's
    //    snapshot (client, SQL, EC2); the StatefulSet waits for each.
    let seeding = seed_replicas(ctx, &validated, &record, previous, holds_data).await;
    for note in events::for_seeds(&seeding.notes) {
        events::publish(&ctx.recorder, cluster, "Seed", note).await;
    }
    let validated = validated.with_seeded_volumes(seeding.seeded.clone());

    // 5. Given and seeded volumes: checked at EC2, their PVs and claims
    //    made (client, EC2).
    let given = volumes::given::prepare(&ctx.client, &ctx.ec2, &validated, &record).await;

    // 6. Build (no client) and apply (client).
    let children = build::children(
        &validated
            .with_replicas_at_most(lowest(given.max_replicas, seeding.hold))
            .keeping_primary(previous.and_then(|s| s.clustering.primary.as_deref())),
        holds_data,
    );
    let applied = apply::all(&ctx.client, &validated, children, holds_data).await;
    announce_applied(ctx, cluster, &validated, &applied).await;
    let mut problems = applied_problems(&applied, holds_data);

    // 7. Read the children back (client) and diagnose them (no client).
    let objects = dereference::children(&ctx.client, &validated.namespace, &validated.name)
        .await
        .map_err(Error::Dereference)?;
    problems.extend(diagnose::claims::pending(
        &objects.claims,
        &objects.storage_classes,
        Timestamp::now(),
    ));
    problems.extend(diagnose::init_failures::failing(&objects.pods));
    problems.extend(given.problems);

    // 8. The latest look at the volumes at EC2 (the next one in the background).
    let volumes = volume_look::latest(ctx, cluster, &validated, &objects);
    problems.extend(volumes.problems.iter().cloned());

    // 9. The clustering pass (SQL, pods, status memory), with the accounts
    //    the later steps use too (client).
    let accounts = if applied.credentials_missing.is_empty() {
        dereference::accounts(&ctx.client, &validated.namespace, &validated.name)
            .await
            .map_err(Error::Dereference)?
    } else {
        None
    };
    let initializing = volumes.loading(&volumes::look::made_volumes(&validated, &objects));
    let mut pass = clustering_pass(
        ctx,
        cluster,
        &validated,
        &objects,
        accounts.as_ref(),
        holds_data,
        &initializing,
    )
    .await?;
    let clone_token = accounts.as_ref().and_then(|a| a.clone_token.as_deref());
    let restoring = restoring.map(|mut r| {
        let restored = restored_pod
            .as_deref()
            .and_then(|pod| pass.servers.iter().find(|s| s.state.pod == pod))
            .filter(|s| s.state.answered());
        // Its first answer comes before it takes any write (it starts
        // read-only): what the replay reached.
        if let (Some(replay), Some(server)) = (r.point_in_time.as_mut(), restored)
            && replay.reached.is_none()
        {
            replay.reached = server.state.gtid.as_ref().map(ToString::to_string);
        }
        r.done |= restored.is_some_and(|s| s.state.replication.is_none());
        r
    });

    // 10. Backups: the schedule kept, pending ones taken, started snapshots
    //     followed (SQL, EC2, client).
    let backups = take_backups(
        ctx,
        cluster,
        &validated,
        &pass,
        &volumes.volumes,
        accounts.as_ref(),
    )
    .await;
    for note in events::for_backups(&backups.notes) {
        events::publish(&ctx.recorder, cluster, "Backup", note).await;
    }

    // 10b. The binary log archive: its archiver assigned again, how far it
    //      got (agent).
    let archive = keep_archive(ctx, cluster, &validated, &pass, clone_token).await;
    if let Some(problem) = archive.as_ref().and_then(|a| a.problem.clone()) {
        problems.push(problem);
    }
    if let Some(why) = archive.as_ref().and_then(|a| a.status.prune_error.clone()) {
        problems.push(Problem::ArchiveRetentionFailed(why));
    }

    // 10b'. Restores verified on a schedule: the scratch cluster made,
    //       followed, checked and removed (agents, client, EC2).
    let verification = verify_restores(
        ctx,
        cluster,
        &validated,
        &objects,
        pass.primary.as_deref(),
        archive.as_ref(),
        clone_token,
    )
    .await;
    if verification.finished
        && let Some(verified) = verification.verified.as_ref()
    {
        events::publish(
            &ctx.recorder,
            cluster,
            "Verify",
            events::for_verified(verified),
        )
        .await;
    }

    // 10c. Binary logs every instance and the archive hold: purged once
    //      old enough (agents).
    expire_binlogs(
        ctx,
        &validated,
        &pass,
        clone_token,
        archive
            .as_ref()
            .map(|a| a.purge_holder.as_ref().map(ToString::to_string)),
    )
    .await;

    // 11. Record that the cluster holds data once it has a primary (client).
    if record.needs_marking(pass.primary.is_some())
        && let Err(error) = apply::mark_initialised(&ctx.client, &validated, &record).await
    {
        warn!(%error, "failed to record that the cluster holds data; retrying next time");
    }

    // 12. Fence lost nodes, unfence returned ones (EC2, nodes).
    let fencing = fence_nodes(ctx, cluster, &validated, &objects, &pass).await;
    problems.extend(fencing.problems);

    // 13. Problems: announced once each.
    pass.problems.extend(problems);
    let (notes, reported) = events::for_problems(&pass.memory.reported, &pass.problems);
    for note in notes {
        warn!(reason = note.reason, message = %note.message, "cluster problem");
        events::publish(&ctx.recorder, cluster, "Cluster", note).await;
    }
    pass.memory.reported = reported;

    // 14. The fast probe follows the primary and the servers that did not
    //     answer; node changes wake the cluster.
    let primary_ip = pass
        .primary
        .as_deref()
        .and_then(|p| objects.pod(p))
        .and_then(objects::pod_ip)
        .map(str::to_owned);
    let suspects = pass
        .servers
        .iter()
        .filter(|s| s.state.answer == Answer::Silent && Some(&s.state.pod) != pass.primary.as_ref())
        .filter_map(|s| s.ip.clone())
        .collect();
    ctx.prober.watch(key.clone(), primary_ip, suspects);

    ctx.node_index.set(
        key,
        objects
            .nodes
            .keys()
            .chain(&fencing.fenced)
            .cloned()
            .collect(),
    );

    // 15. Status (client), over the cluster as the pass last saw it.
    let cluster = pass.cluster.clone().unwrap_or_else(|| cluster.clone());
    let cluster = &cluster;
    let new_status = status::compute(StatusInputs {
        cluster,
        objects: &objects,
        pass: &pass,
        volumes: &volumes.volumes,
        fenced: &fencing.fenced,
        restore: restoring.as_ref(),
        seeds: &seeding.seeds,
        archive: archive.as_ref().map(|a| &a.status),
        verified: verification.verified.as_ref(),
        now: &now,
    });
    let settled = new_status.phase == Some(ebisu_api::Phase::Running) && !pass.acted;
    write_status(ctx, cluster, new_status).await?;

    // 16. When to look again.
    let again = requeue::after(pass.again, settled);
    let again = backups.again.map_or(again, |b| b.min(again));
    let again = verification.again.map_or(again, |v| v.min(again));
    Ok(Action::requeue(if seeding.waiting.is_some() {
        again.min(requeue::SEED_WAITING)
    } else {
        again
    }))
}

/// The lower of two limits, either of which may be absent.
fn lowest(a: Option<i32>, b: Option<i32>) -> Option<i32> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The seeding step: the primary is looked up only when an instance
/// without a claim still needs a decision. A failed step holds every
/// instance without a claim back (it would otherwise get an empty volume
/// and a stream while a snapshot may have been chosen), and says why.
async fn seed_replicas(
    ctx: &Context,
    validated: &ValidatedCluster,
    record: &crate::model::DataRecord,
    previous: Option<&ebisu_api::MySQLClusterStatus>,
    holds_data: bool,
) -> restore::seed::Seeding {
    let claims: std::collections::BTreeSet<String> = record.claims().cloned().collect();
    let previous_seeds = previous.map_or(&[][..], |s| s.seeds.as_slice());
    let used_zones: Vec<&str> = previous
        .map(|s| {
            s.instances
                .iter()
                .filter_map(|i| i.zone.as_deref())
                .collect()
        })
        .unwrap_or_default();
    let primary_pod = previous.and_then(|s| s.clustering.primary.as_deref());
    let (mut ip, mut accounts) = (None, None);
    if let Some(pod) = primary_pod
        && holds_data
        && restore::seed::undecided(validated, &claims, previous_seeds)
    {
        ip = dereference::pod_ip(&ctx.client, &validated.namespace, pod)
            .await
            .ok()
            .flatten();
        accounts = dereference::accounts(&ctx.client, &validated.namespace, &validated.name)
            .await
            .ok()
            .flatten();
    }
    let access = match (primary_pod, &ip, &accounts) {
        (Some(pod), Some(ip), Some(accounts)) => Some(restore::seed::PrimaryAccess {
            pod,
            ip,
            account: &accounts.operator,
        }),
        _ => None,
    };
    let observed = restore::seed::Observed {
        claims: &claims,
        previous: previous_seeds,
        primary: access.as_ref(),
        holds_data,
        used_zones: &used_zones,
    };
    match restore::seed::prepare(&ctx.client, &ctx.ec2, validated, &observed).await {
        Ok(seeding) => seeding,
        Err(error) => {
            warn!(%error, "failed to seed new replicas; they wait");
            restore::seed::Seeding {
                hold: restore::seed::first_pending(validated, &claims),
                seeds: previous_seeds.to_vec(),
                waiting: Some(error.to_string()),
                ..restore::seed::Seeding::default()
            }
        }
    }
}

/// A restore that may not go ahead: a condition and one Event say why,
/// nothing is made, and it is looked at again (the backup may complete).
async fn refuse_restore(
    cluster: &MySQLCluster,
    ctx: &Context,
    message: &str,
    now: &Time,
) -> Result<Action, Error> {
    if let Some(note) = events::for_restore_refused(cluster.status.as_ref(), message) {
        warn!(%message, "restore refused");
        events::publish(&ctx.recorder, cluster, "Restore", note).await;
    }
    write_status(ctx, cluster, status::restore_refused(cluster, message, now)).await?;
    Ok(Action::requeue(requeue::RESTORE_REFUSED))
}

/// Renews the archive's assignment at the instance that should archive
/// (ending the previous archiver's first, so two never upload at once) and
/// reports how far it got, and prunes it when due; `None` without
/// `spec.backup.archive`.
async fn keep_archive(
    ctx: &Context,
    cluster: &MySQLCluster,
    validated: &ValidatedCluster,
    pass: &PassReport,
    token: Option<&str>,
) -> Option<backups::archive::Report> {
    let target = validated.backup_schedule.as_ref()?.archive.as_ref()?;
    let states: Vec<_> = pass.servers.iter().map(|s| s.state.clone()).collect();
    let current = cluster
        .status
        .as_ref()
        .and_then(|s| s.archive.as_ref())
        .and_then(|a| a.archiver.as_deref());
    let held = ctx.verify_jobs.held(&validated.key());
    let chosen =
        backups::archive::archiver(&states, pass.primary.as_deref(), current, held.as_deref())
            .map(|s| s.pod.clone());
    let ip_of = |pod: &str| {
        pass.servers
            .iter()
            .find(|s| s.state.pod == pod)
            .and_then(|s| s.ip.clone())
    };
    if let (Some(previous), Some(token)) = (current, token)
        && chosen.as_deref().ok() != Some(previous)
        && let Some(ip) = ip_of(previous)
        && let Err(error) =
            backups::archive::assign(&ctx.agents, previous, &ip, token, target, 0).await
    {
        warn!(%error, "failed to end the previous archiver's assignment; it lapses by itself");
    }
    let progress = match &chosen {
        Ok(pod) => {
            let asked = match (ip_of(pod), token) {
                (Some(ip), Some(token)) => backups::archive::assign(
                    &ctx.agents,
                    pod,
                    &ip,
                    token,
                    target,
                    backups::archive::ASSIGNMENT_SECONDS,
                )
                .await
                .map_err(|e| e.to_string()),
                (None, _) => Err(format!("{pod} has no IP address yet")),
                (_, None) => Err("the credentials Secret has no clone token".to_owned()),
            };
            Some(
                asked.unwrap_or_else(|error| ebisu_api::agent::ArchiveProgress {
                    error: Some(error),
                    ..Default::default()
                }),
            )
        }
        Err(_) => None,
    };
    let flavor = crate::validate::ebisu_mysql_flavor(validated.flavor);
    let primary_gtid = pass
        .primary
        .as_deref()
        .and_then(|p| states.iter().find(|s| s.pod == p))
        .and_then(|s| s.gtid.as_ref());
    let listed =
        Api::<ebisu_api::MySQLBackup>::namespaced(ctx.client.clone(), &validated.namespace)
            .list(&kube::api::ListParams::default())
            .await
            .map(|list| list.items);
    if let Err(error) = &listed {
        warn!(%error, "failed to list MySQLBackups for the archive");
    }
    let backups = listed.as_deref().unwrap_or_default();
    let completed = backups::archive_retention::completed(flavor, &validated.name, backups);
    let mut report = backups::archive::report(
        target,
        chosen.as_deref().map_err(String::as_str),
        progress.as_ref(),
        primary_gtid,
        &completed,
        flavor,
        Timestamp::now(),
    );
    if let Some(previous) = cluster.status.as_ref().and_then(|s| s.archive.as_ref()) {
        report.status.pruned_at.clone_from(&previous.pruned_at);
        report.status.pruned_segments = previous.pruned_segments;
        report.status.prune_error.clone_from(&previous.prune_error);
    }
    // The agents that may be archiving: the one assigned, and the one
    // whose assignment ended now (in case it did not hear).
    let archiving: Vec<u32> = [chosen.as_deref().ok(), current]
        .into_iter()
        .flatten()
        .filter_map(|pod| {
            let ordinal = i64::from(names::ordinal_of(pod)?);
            u32::try_from(validated.server_id_base + ordinal).ok()
        })
        .collect();
    if listed.is_ok() {
        prune_archive(
            ctx,
            validated,
            target,
            backups,
            &archiving,
            &mut report.status,
        )
        .await;
    }
    Some(report)
}

/// Archive retention, when due: the archived files no kept backup needs
/// are removed, and `status.archive` says when and how many.
async fn prune_archive(
    ctx: &Context,
    validated: &ValidatedCluster,
    target: &crate::validate::ArchiveTarget,
    backups: &[ebisu_api::MySQLBackup],
    archiving: &[u32],
    status: &mut ebisu_api::ArchiveStatus,
) {
    use backups::archive_retention;
    let now = Timestamp::now();
    let newest = backups
        .iter()
        .filter(|b| b.spec.cluster == validated.name)
        .filter_map(|b| b.status.as_ref()?.completed.as_ref().map(|t| t.0))
        .max();
    if !archive_retention::due(status.pruned_at.as_ref().map(|t| t.0), newest, now) {
        return;
    }
    let flavor = crate::validate::ebisu_mysql_flavor(validated.flavor);
    let Some(kept) = archive_retention::kept(flavor, &validated.name, backups) else {
        return;
    };
    match archive_retention::prune(&ctx.s3, flavor, target, &kept, archiving).await {
        Ok(segments) => {
            if segments > 0 {
                info!(segments, "pruned archived binary logs no kept backup needs");
            }
            status.pruned_segments = Some(segments);
            status.prune_error = None;
        }
        Err(error) => {
            warn!(%error, "archive retention failed; it looks again after the next backup or within the hour");
            status.pruned_segments = None;
            status.prune_error = Some(error.to_string());
        }
    }
    status.pruned_at = Some(Time(now));
}

/// Tells each agent which of its server's binary logs may go
/// (`spec.binaryLogs`); nothing when an instance or the archive's progress
/// is unknown. A purge not done now is done on a later reconcile.
async fn expire_binlogs(
    ctx: &Context,
    validated: &ValidatedCluster,
    pass: &PassReport,
    token: Option<&str>,
    archive: Option<Option<String>>,
) {
    let states: Vec<_> = pass.servers.iter().map(|s| s.state.clone()).collect();
    let instances = usize::try_from(validated.replicas).unwrap_or(0);
    let archive = archive.as_ref().map(Option::as_deref);
    let held_by = match backups::binlogs::held_by(&states, instances, archive) {
        Ok(sets) => sets,
        Err(why) => {
            debug!(%why, "no binary log is purged now");
            return;
        }
    };
    let Some(token) = token else {
        return;
    };
    let order = ebisu_api::agent::BinlogPurge {
        held_by,
        expire_seconds: validated.binlog_expire_seconds,
    };
    let asked = pass.servers.iter().filter_map(|s| {
        let ip = s.ip.as_deref()?;
        Some(backups::binlogs::purge(
            &ctx.agents,
            &s.state.pod,
            ip,
            token,
            &order,
        ))
    });
    for answer in futures::future::join_all(asked).await {
        if let Err(error) = answer {
            debug!(%error, "binary logs not purged now");
        }
    }
}

/// The verification step, with what it verifies against: the archiving
/// replica (whose applier the reference sums hold), the archive's set
/// when the primary archives, or the backup alone without an archive.
async fn verify_restores(
    ctx: &Context,
    cluster: &MySQLCluster,
    validated: &ValidatedCluster,
    objects: &ClusterObjects,
    primary: Option<&str>,
    archive: Option<&backups::archive::Report>,
    clone_token: Option<&str>,
) -> verify::Report {
    let reference = verify::reference(
        archive.map(|a| &a.status),
        primary,
        |pod| {
            objects
                .pod(pod)
                .and_then(objects::pod_ip)
                .map(str::to_owned)
        },
        clone_token,
    );
    verify::step(
        verify::Clients {
            client: &ctx.client,
            ec2: &ctx.ec2,
            agents: &ctx.agents,
            jobs: &ctx.verify_jobs,
        },
        cluster,
        validated,
        cluster
            .status
            .as_ref()
            .and_then(|s| s.last_verified_restore.as_ref()),
        reference,
    )
    .await
}

/// The backups step: the schedule kept, then pending backups taken with
/// the servers as the pass last saw them.
async fn take_backups(
    ctx: &Context,
    cluster: &MySQLCluster,
    validated: &ValidatedCluster,
    pass: &PassReport,
    volumes: &std::collections::BTreeMap<String, ebisu_api::VolumeStatus>,
    accounts: Option<&crate::model::Accounts>,
) -> backups::BackupReport {
    let scope = backups::Scope {
        client: &ctx.client,
        ec2: &ctx.ec2,
        namespace: &validated.namespace,
        cluster: &validated.name,
    };
    let mut report = match &validated.backup_schedule {
        Some(wanted) => {
            let since = cluster
                .metadata
                .creation_timestamp
                .as_ref()
                .map_or_else(Timestamp::now, |t| t.0);
            backups::keep_schedule(&scope, wanted, since).await
        }
        None => backups::BackupReport::default(),
    };
    let unfinished = backups::unfinished(&ctx.client, &validated.namespace, &validated.name).await;
    if unfinished.is_empty() {
        return report;
    }
    let servers: Vec<backups::Observed<'_>> = pass
        .servers
        .iter()
        .map(|s| backups::Observed {
            state: &s.state,
            flavor: s.flavor,
            ip: s.ip.as_deref(),
            volume: volumes
                .get(&s.state.pod)
                .map(|v| (v.id.as_str(), v.zone.as_deref(), v.size_gib)),
        })
        .collect();
    let taken = backups::run(
        &backups::Inputs {
            scope,
            servers: &servers,
            primary: pass.primary.as_deref(),
            account: accounts.map(|a| &a.operator),
            archive: validated
                .backup_schedule
                .as_ref()
                .and_then(|b| b.archive.as_ref())
                .map(|a| ebisu_api::ArchiveLocation {
                    bucket: a.bucket.clone(),
                    prefix: a.prefix.clone(),
                }),
        },
        &unfinished,
    )
    .await;
    report.notes.extend(taken.notes);
    report.again = match (report.again, taken.again) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    report
}

/// The replay the restored cluster's first instance runs, while the
/// restore to a point is not done.
fn replay_order(
    validated: &ValidatedCluster,
    restoring: &ebisu_api::RestoreStatus,
) -> Option<ebisu_api::agent::ReplayOrder> {
    let target = validated.bootstrap.as_ref()?.point.as_ref()?;
    let replay = restoring.point_in_time.as_ref()?;
    (!restoring.done).then(|| {
        restore::point::order(
            &validated.name,
            restoring.gtid_set.as_deref().unwrap_or_default(),
            replay,
            target,
        )
    })
}

/// A spec that cannot be honoured: a condition and one Event say why, the
/// probe forgets the cluster, and nothing happens until the spec changes.
async fn refuse_spec(
    cluster: &MySQLCluster,
    ctx: &Context,
    message: &str,
    now: &Time,
) -> Result<Action, Error> {
    ctx.forget(&ObjectRef::from_obj(cluster));
    if let Some(note) = events::for_invalid_spec(cluster.status.as_ref(), message) {
        warn!(%message, "spec cannot be honoured");
        events::publish(&ctx.recorder, cluster, "Validate", note).await;
    }
    write_status(ctx, cluster, status::invalid(cluster, message, now)).await?;
    Ok(Action::await_change())
}

/// Events for what applying changed beyond the declared objects.
async fn announce_applied(
    ctx: &Context,
    cluster: &MySQLCluster,
    validated: &ValidatedCluster,
    applied: &apply::Applied,
) {
    if applied.credentials_generated {
        events::publish(
            &ctx.recorder,
            cluster,
            "Apply",
            events::credentials_generated(),
        )
        .await;
    }
    for claim in &applied.resized_claims {
        info!(claim, size = %validated.storage.size.0, "expanding volume claim");
        let note = events::volume_expanding(claim, &validated.storage.size.0);
        events::publish(&ctx.recorder, cluster, "Resize", note).await;
    }
}

/// What the operator cannot fix about the children: reported, and the
/// servers are still looked after.
fn applied_problems(applied: &apply::Applied, holds_data: bool) -> Vec<Problem> {
    let mut problems: Vec<Problem> = applied
        .failures
        .iter()
        .map(|e| {
            warn!(kind = e.category(), error = %e, "child not applied");
            Problem::ChildNotApplied {
                what: e.to_string(),
            }
        })
        .collect();
    let owned = |keys: &[&str]| keys.iter().map(|k| (*k).to_owned()).collect();
    if !applied.credentials_weak.is_empty() {
        problems.push(Problem::CredentialsWeak {
            keys: owned(&applied.credentials_weak),
            in_use: holds_data,
        });
    }
    if !applied.credentials_missing.is_empty() {
        problems.push(Problem::CredentialsMissing {
            keys: owned(&applied.credentials_missing),
        });
    }
    problems
}

/// The clustering pass, when the servers may be asked: never with
/// credentials that may not be theirs (the Secret lacks keys).
async fn clustering_pass(
    ctx: &Context,
    cluster: &MySQLCluster,
    validated: &ValidatedCluster,
    objects: &ClusterObjects,
    accounts: Option<&crate::model::Accounts>,
    holds_data: bool,
    initializing: &std::collections::BTreeMap<String, i64>,
) -> Result<PassReport, Error> {
    let memory = || {
        cluster
            .status
            .as_ref()
            .map(|s| s.clustering.clone())
            .unwrap_or_default()
    };
    // No accounts: the credentials Secret is missing or not ours yet.
    let Some(accounts) = accounts else {
        return Ok(PassReport::remembered(memory()));
    };
    // Decisions read the memory fresh from the API server, never from the
    // cache: a watch that lags would replay a finished change of primary.
    let fresh = Api::<MySQLCluster>::namespaced(ctx.client.clone(), &validated.namespace)
        .get(&validated.name)
        .await
        .map_err(Error::api("read the cluster"))?;
    let silent_since = ctx.prober.silent_since(&ObjectRef::from_obj(cluster));
    Ok(pass::run(
        ctx,
        &fresh,
        validated,
        objects,
        accounts,
        pass::Known {
            probe_silent_since: silent_since,
            holds_data,
            initializing,
        },
    )
    .await)
}

/// Fencing, with its Events.
async fn fence_nodes(
    ctx: &Context,
    cluster: &MySQLCluster,
    validated: &ValidatedCluster,
    objects: &ClusterObjects,
    pass: &PassReport,
) -> fencing::FencingReport {
    let servers: Vec<_> = pass.servers.iter().map(|s| s.state.clone()).collect();
    let cluster_key = validated.key();
    let report = fencing::run(
        &ctx.client,
        &ctx.ec2,
        fencing::Inputs {
            cluster_key: &cluster_key,
            cluster_namespace: &validated.namespace,
            cluster_name: &validated.name,
            operator_namespace: &ctx.settings.operator_namespace,
            enabled: validated.failover.fence_nodes,
            servers: &servers,
            primary: pass.primary.as_deref(),
            observed_nodes: &objects.nodes,
            fenced_before: cluster
                .status
                .as_ref()
                .map(|s| s.fenced_nodes.as_slice())
                .unwrap_or_default(),
        },
    )
    .await;
    for note in events::for_fencing(&report) {
        events::publish(&ctx.recorder, cluster, "Fence", note).await;
    }
    report
}

/// Writes status only when it changed, so that status writes do not trigger
/// reconciles of their own.
async fn write_status(
    ctx: &Context,
    cluster: &MySQLCluster,
    status: MySQLClusterStatus,
) -> Result<(), Error> {
    apply::write_status(&ctx.client, cluster, &status)
        .await
        .map(drop)
        .map_err(Error::api("write status"))
}
