//! New replicas started from a backup's snapshot (`spec.clone.method`):
//! the IO shell around [`super::seed_decide`]. Before the StatefulSet may
//! make a new instance's claim (which the EBS CSI driver would fill with
//! an empty volume), the instance is held back until its seed is decided:
//! a stream (the claim is made as usual and the sidecar copies from a
//! peer) or a volume made from the newest backup the primary can serve,
//! which is bound to the claim as a given volume once it is available.
//! The replica then starts on the backup's data and catches up by GTID.

use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_ec2::types::VolumeState;
use ebisu_api::{BackupPhase, Flavor, MySQLBackup, SeedMethod, SeedStatus, names};
use k8s_openapi::jiff::Timestamp;
use kube::{Api, Client, api::ListParams};
use mysql_async::{Conn, prelude::Queryable};

use super::seed_decide::{self, Candidate, Choice};
use super::{Error, FromSnapshot, TAG_SEED_FOR, api, create_volume, node_zones, tagged_volume};
use crate::model::OperatorAccount;
use crate::validate::{SnapshotSeeds, StorageClassChoice, ValidatedCluster};

/// How long a question to the primary may take.
const SQL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// How the operator reaches the primary, to ask what it can serve.
#[derive(Debug)]
pub struct PrimaryAccess<'a> {
    /// Its pod.
    pub pod: &'a str,
    /// Its pod IP.
    pub ip: &'a str,
    /// The operator's account.
    pub account: &'a OperatorAccount,
}

/// A seed decision announced as an Event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeedNote {
    /// Stable reason.
    pub reason: &'static str,
    /// What was decided.
    pub message: String,
}

/// What the seeding step found and made.
#[derive(Debug, Default)]
pub struct Seeding {
    /// Volumes made from a snapshot that are ready to bind, by ordinal.
    pub seeded: BTreeMap<u32, String>,
    /// The StatefulSet may have at most this many instances now: the first
    /// instance whose seed is not decided or whose volume is being made.
    pub hold: Option<i32>,
    /// The seeds of the instances that have no claim yet (status).
    pub seeds: Vec<SeedStatus>,
    /// Decisions made in this step.
    pub notes: Vec<SeedNote>,
    /// Why a decision had to wait, when one did.
    pub waiting: Option<String>,
}

/// Whether an instance without a claim has no decision yet: then the
/// primary is asked (and the caller looks it up).
pub fn undecided(
    validated: &ValidatedCluster,
    claims: &BTreeSet<String>,
    previous: &[SeedStatus],
) -> bool {
    matches!(validated.snapshot_seeds, SnapshotSeeds::Allowed { .. })
        && pending(validated, claims).iter().any(|o| {
            !previous
                .iter()
                .any(|s| s.pod == names::pod(&validated.name, *o))
        })
}

/// Where the StatefulSet waits when the step failed: at the first
/// instance without a claim, when snapshots may be used.
pub fn first_pending(validated: &ValidatedCluster, claims: &BTreeSet<String>) -> Option<i32> {
    if !matches!(validated.snapshot_seeds, SnapshotSeeds::Allowed { .. }) {
        return None;
    }
    pending(validated, claims)
        .first()
        .and_then(|o| i32::try_from(*o).ok())
}

fn pending(validated: &ValidatedCluster, claims: &BTreeSet<String>) -> Vec<u32> {
    let given = match &validated.storage.class {
        StorageClassChoice::Managed { ebs, .. } => ebs.volumes.len(),
        _ => 0,
    };
    seed_decide::pending(&validated.name, validated.replicas, given, claims)
}

/// What the seeding step looks at.
#[derive(Debug)]
pub struct Observed<'a> {
    /// The cluster's data claims.
    pub claims: &'a BTreeSet<String>,
    /// The seeds decided before (status).
    pub previous: &'a [SeedStatus],
    /// The primary, when it could be looked up.
    pub primary: Option<&'a PrimaryAccess<'a>>,
    /// The cluster has a primary to catch up from (a new cluster's
    /// replicas always stream).
    pub holds_data: bool,
    /// The zone of each instance's volume (a new one goes where fewest
    /// are).
    pub used_zones: &'a [&'a str],
}

/// Decides the seeds of the instances without claims, makes the volumes
/// of those that start from a snapshot, and says which may be bound and
/// where the StatefulSet waits.
pub async fn prepare(
    client: &Client,
    ec2: &aws_sdk_ec2::Client,
    validated: &ValidatedCluster,
    observed: &Observed<'_>,
) -> Result<Seeding, Error> {
    let Observed {
        claims,
        previous,
        primary,
        holds_data,
        used_zones,
    } = *observed;
    let mut seeding = Seeding::default();
    let SnapshotSeeds::Allowed {
        method,
        initialization_rate,
    } = &validated.snapshot_seeds
    else {
        return Ok(seeding);
    };
    let mut candidates: Option<Vec<Candidate>> = None;
    let mut data_bytes: Option<Option<u64>> = None;
    for ordinal in pending(validated, claims) {
        let pod = names::pod(&validated.name, ordinal);
        let hold = i32::try_from(ordinal).ok();
        let before = previous.iter().find(|s| s.pod == pod);
        match before {
            Some(seed) if seed.method == SeedMethod::Stream => {
                seeding.seeds.push(seed.clone());
                continue;
            }
            Some(seed) => {
                let volume = tagged_volume(ec2, TAG_SEED_FOR, &seed_key(validated, &pod)).await?;
                match volume.as_ref().and_then(|v| v.state()) {
                    Some(VolumeState::Available) => {
                        if let Some(id) = volume.as_ref().and_then(|v| v.volume_id()) {
                            seeding.seeded.insert(ordinal, id.to_owned());
                        }
                        seeding.seeds.push(seed.clone());
                        continue;
                    }
                    Some(VolumeState::Creating) => {
                        seeding.seeds.push(seed.clone());
                        seeding.hold = hold;
                        seeding.waiting = Some(format!("the volume of {pod} is being made"));
                        break;
                    }
                    // Gone or broken: decided again below.
                    _ => {}
                }
            }
            None => {}
        }
        if !holds_data {
            let choice =
                Choice::Stream("the cluster has no primary yet to catch up from".to_owned());
            seeding.seeds.push(seed_decide::entry(&pod, &choice, None));
            continue;
        }
        let Some(primary) = primary else {
            seeding.hold = hold;
            seeding.waiting = Some(format!("the seed of {pod} waits for a primary to ask"));
            break;
        };
        if candidates.is_none() {
            match completed_backups(client, validated).await? {
                found if found.is_empty() => candidates = Some(Vec::new()),
                found => match ask(primary, validated.flavor, &found).await {
                    Ok((with_serves, bytes)) => {
                        candidates = Some(with_serves);
                        data_bytes = Some(bytes);
                    }
                    Err(why) => {
                        seeding.hold = hold;
                        seeding.waiting = Some(format!(
                            "the seed of {pod} waits: failed to ask the primary {} what it can serve: {why}",
                            primary.pod
                        ));
                        break;
                    }
                },
            }
        }
        let choice = seed_decide::choose(
            *method,
            candidates.as_deref().unwrap_or_default(),
            data_bytes.flatten(),
            Timestamp::now(),
        );
        let Choice::Snapshot(candidate) = &choice else {
            let entry = seed_decide::entry(&pod, &choice, None);
            seeding.notes.push(SeedNote {
                reason: "SeedByStream",
                message: format!("{pod} is copied from a peer: {}", entry.reason),
            });
            seeding.seeds.push(entry);
            continue;
        };
        let volume = match tagged_volume(ec2, TAG_SEED_FOR, &seed_key(validated, &pod)).await? {
            Some(existing) => existing.volume_id().unwrap_or_default().to_owned(),
            None => {
                let zones = node_zones(client).await?;
                let Some(zone) = seed_decide::zone(&zones, used_zones) else {
                    seeding.hold = hold;
                    seeding.waiting = Some(
                        "no node has a zone label (topology.kubernetes.io/zone) to put a seeded volume in"
                            .to_owned(),
                    );
                    break;
                };
                create_volume(
                    ec2,
                    validated,
                    &FromSnapshot {
                        snapshot: &candidate.snapshot_id,
                        zone: &zone,
                        size_gib: None,
                        backup: &candidate.name,
                        purpose: (TAG_SEED_FOR, seed_key(validated, &pod)),
                        description: format!(
                            "{}/{pod} seeded from {}",
                            validated.namespace, candidate.name
                        ),
                        initialization_rate: *initialization_rate,
                    },
                )
                .await?
            }
        };
        seeding.notes.push(SeedNote {
            reason: "SeedFromSnapshot",
            message: format!(
                "{pod} starts on {volume}, made from snapshot {} of MySQLBackup {} (GTID set {}), and catches up from the primary",
                candidate.snapshot_id, candidate.name, candidate.gtid_set
            ),
        });
        seeding
            .seeds
            .push(seed_decide::entry(&pod, &choice, Some(&volume)));
        seeding.hold = hold;
        seeding.waiting = Some(format!("the volume of {pod} is being made"));
        break;
    }
    Ok(seeding)
}

/// The `ebisu.dev/seed-for` value of a pod's volume.
fn seed_key(validated: &ValidatedCluster, pod: &str) -> String {
    format!("{}/{pod}", validated.namespace)
}

/// The completed backups of the cluster, of its flavor, with a snapshot
/// and a GTID set; `primary_serves` not yet known.
async fn completed_backups(
    client: &Client,
    validated: &ValidatedCluster,
) -> Result<Vec<Candidate>, Error> {
    let backups = Api::<MySQLBackup>::namespaced(client.clone(), &validated.namespace)
        .list(&ListParams::default())
        .await
        .map_err(api("list the backups"))?;
    Ok(backups
        .items
        .into_iter()
        .filter(|b| b.spec.cluster == validated.name && b.metadata.deletion_timestamp.is_none())
        .filter_map(|b| {
            let status = b.status?;
            if status.phase != Some(BackupPhase::Completed)
                || status.flavor.is_some_and(|f| f != validated.flavor)
            {
                return None;
            }
            Some(Candidate {
                name: b.metadata.name?,
                snapshot_id: status.snapshot_id?,
                gtid_set: status.gtid_set?,
                completed: status.completed.map(|t| t.0)?,
                primary_serves: false,
            })
        })
        .collect())
}

/// Asks the primary which candidates it can serve and how much data it
/// holds.
async fn ask(
    primary: &PrimaryAccess<'_>,
    flavor: Flavor,
    candidates: &[Candidate],
) -> Result<(Vec<Candidate>, Option<u64>), String> {
    let work = async {
        let mut conn = Conn::new(primary.account.opts(primary.ip)).await?;
        let bytes: Option<u64> = conn
            .query_first(
                "SELECT CAST(COALESCE(SUM(data_length + index_length), 0) AS UNSIGNED) FROM information_schema.tables",
            )
            .await?;
        let mut served = Vec::with_capacity(candidates.len());
        for candidate in candidates {
            let serves = match flavor {
                Flavor::Mysql => conn
                    .exec_first::<Option<i64>, _, _>(
                        "SELECT GTID_SUBSET(@@global.gtid_purged, ?) AND GTID_SUBSET(?, @@global.gtid_executed)",
                        (&candidate.gtid_set, &candidate.gtid_set),
                    )
                    .await?
                    .flatten()
                    == Some(1),
                Flavor::Mariadb => mariadb_serves(&mut conn, &candidate.gtid_set).await?,
            };
            served.push(Candidate {
                primary_serves: serves,
                ..candidate.clone()
            });
        }
        conn.disconnect().await?;
        Ok::<_, mysql_async::Error>((served, bytes))
    };
    match tokio::time::timeout(SQL_TIMEOUT, work).await {
        Err(_) => Err(format!("no answer within {SQL_TIMEOUT:?}")),
        Ok(Err(error)) => Err(error.to_string()),
        Ok(Ok(found)) => Ok(found),
    }
}

/// Whether a MariaDB primary's binary logs start at or before `position`
/// in every domain and reach it.
async fn mariadb_serves(conn: &mut Conn, position: &str) -> Result<bool, mysql_async::Error> {
    let first: Option<String> = conn
        .query_first("SHOW BINARY LOGS")
        .await?
        .and_then(|row: mysql_async::Row| row.get_opt::<String, _>(0)?.ok());
    let Some(first) = first.filter(|f| !f.is_empty()) else {
        return Ok(false);
    };
    // The oldest binary log opens with the GTID state before it, as a
    // Gtid_list event whose Info reads `[0-1-100,1-2-7]`.
    let events: Vec<mysql_async::Row> = conn
        .query(format!(
            "SHOW BINLOG EVENTS IN '{}' LIMIT 4",
            first.replace('\'', "")
        ))
        .await?;
    let start = events.into_iter().find_map(|row| {
        let kind: String = row.get_opt("Event_type")?.ok()?;
        let info: String = row.get_opt("Info")?.ok()?;
        (kind == "Gtid_list").then(|| info.trim_matches(['[', ']']).to_owned())
    });
    let current: Option<String> = conn.query_first("SELECT @@global.gtid_binlog_pos").await?;
    Ok(match (start, current) {
        (Some(start), Some(current)) => seed_decide::mariadb_serves(&start, &current, position),
        _ => false,
    })
}
