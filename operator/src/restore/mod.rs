//! Volumes made from a backup's snapshot: a new cluster started from a
//! backup (`spec.bootstrap.fromBackup`, here, the IO shell around
//! [`decide`]) and new replicas seeded from one ([`seed`]). Before anything of the cluster is made, the
//! backup is checked (it exists and is complete, its flavor is the
//! cluster's, its snapshot is still at EC2, the name holds no data); the
//! credentials Secret is made from the copy the backup keeps (unless the
//! cluster has one), and the first instance's volume is created from the
//! snapshot, tagged so the given-volume path binds it and so a restarted
//! operator finds it instead of making another. A restore to a point
//! chooses its backup and plans its replay over the archive first
//! ([`point`]). A refused restore creates nothing.

pub mod decide;
pub mod point;
pub mod seed;
pub mod seed_decide;

use std::collections::BTreeSet;

use aws_sdk_ec2::error::ProvideErrorMetadata;
use aws_sdk_ec2::types::{Filter, ResourceType, Tag, TagSpecification, VolumeType};
use ebisu_api::{
    MySQLBackup, RestoreStatus,
    names::{self, LABEL_CLUSTER, LABEL_MANAGED_BY, MANAGED_BY, TAG_ADOPT_BY},
};
use k8s_openapi::api::core::v1::{Node, Secret};
use kube::{
    Api, Client, ResourceExt,
    api::{ListParams, ObjectMeta, PostParams},
};

use crate::{
    ec2,
    model::well_known::ZONE_LABEL,
    validate::{BackupChoice, StorageClassChoice, ValidatedCluster},
};

/// The tag that marks the volume made for a restored cluster
/// (`<namespace>/<name>`).
pub const TAG_RESTORE_FOR: &str = "ebisu.dev/restore-for";

/// The tag that marks a volume made for a new replica
/// (`<namespace>/<pod>`).
pub const TAG_SEED_FOR: &str = "ebisu.dev/seed-for";

/// What the restore step found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Restore {
    /// The cluster does not start from a backup.
    None,
    /// The first instance's volume exists: the cluster is built with it.
    Ready(Box<RestoreStatus>),
    /// The restore may not go ahead, for this reason; nothing was made.
    Refused(String),
}

/// Why a restore step failed (retried on the next reconcile).
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
    /// An EC2 call failed.
    #[error(transparent)]
    Ec2(#[from] ec2::Error),
}

fn api(action: &'static str) -> impl FnOnce(kube::Error) -> Error {
    move |source| Error::Api { action, source }
}

/// Checks the backup and makes what the restored cluster starts from;
/// `name_taken` when data of a cluster by this name may exist (its claims,
/// an initialised record).
pub async fn prepare(
    clients: Clients<'_>,
    validated: &ValidatedCluster,
    previous: Option<&RestoreStatus>,
    name_taken: bool,
) -> Result<Restore, Error> {
    let Clients { client, ec2, s3 } = clients;
    let Some(bootstrap) = validated.bootstrap.as_ref() else {
        return Ok(Restore::None);
    };
    if let Some(previous) = previous {
        return Ok(Restore::Ready(Box::new(previous.clone())));
    }
    let ns = &validated.namespace;
    let backups = Api::<MySQLBackup>::namespaced(client.clone(), ns);
    let flavor = crate::validate::ebisu_mysql_flavor(validated.flavor);
    let (backup, name) = match &bootstrap.backup {
        BackupChoice::Named(name) => (
            backups
                .get_opt(name)
                .await
                .map_err(api("read the backup"))?,
            name.clone(),
        ),
        BackupChoice::NewestOf(cluster) => {
            let all = backups
                .list(&ListParams::default())
                .await
                .map_err(api("list the backups"))?;
            let Some(target) = &bootstrap.point else {
                return Ok(Restore::Refused(
                    "fromBackup.cluster needs pointInTime".to_owned(),
                ));
            };
            match decide::newest_before(&all.items, cluster, validated.flavor, target) {
                Ok(chosen) => (Some(chosen.clone()), chosen.name_any()),
                Err(why) => return Ok(Restore::Refused(why)),
            }
        }
    };
    let name = name.as_str();
    if let Some(why) = decide::refusal(&decide::Found {
        backup: backup.as_ref(),
        name,
        namespace: ns,
        flavor: validated.flavor,
        holds_data: name_taken,
    }) {
        return Ok(Restore::Refused(why));
    }
    if let (Some(backup), Some(target)) = (&backup, &bootstrap.point)
        && let Some(why) = decide::too_late(backup, target)
    {
        return Ok(Restore::Refused(why));
    }
    let Some(status) = backup.and_then(|b| b.status) else {
        return Ok(Restore::Refused(format!(
            "MySQLBackup {name} has no status"
        )));
    };
    let (Some(snapshot), Some(kept)) = (
        status.snapshot_id.clone(),
        status.credentials_secret.clone(),
    ) else {
        return Ok(Restore::Refused(format!(
            "MySQLBackup {name} names no snapshot"
        )));
    };
    match ec2
        .describe_snapshots()
        .snapshot_ids(&snapshot)
        .send()
        .await
    {
        Ok(out) if !out.snapshots().is_empty() => {}
        Ok(_) => return Ok(Restore::Refused(gone(name, &snapshot))),
        Err(error) if error.code() == Some("InvalidSnapshot.NotFound") => {
            return Ok(Restore::Refused(gone(name, &snapshot)));
        }
        Err(error) => {
            let error = ec2::call(format!("describe snapshot {snapshot}"))(error);
            return Ok(Restore::Refused(format!(
                "{error}: give the operator ec2:DescribeSnapshots (deploy/iam/operator-policy.json has it)"
            )));
        }
    }
    let replay = match &bootstrap.point {
        Some(target) => match point::plan(s3, name, &status, flavor, target).await {
            Ok(replay) => Some(replay),
            Err(why) => return Ok(Restore::Refused(why)),
        },
        None => None,
    };
    if let Some(why) = credentials(client, validated, &kept).await? {
        return Ok(Restore::Refused(why));
    }
    let volume = match restored_volume(ec2, validated).await? {
        Some(volume) => volume,
        None => {
            let zones = node_zones(client).await?;
            let Some(zone) = decide::zone(status.zone.as_deref(), &zones) else {
                return Ok(Restore::Refused(
                    "no node has a zone label (topology.kubernetes.io/zone) to put the restored volume in".to_owned(),
                ));
            };
            create_volume(
                ec2,
                validated,
                &FromSnapshot {
                    snapshot: &snapshot,
                    zone: &zone,
                    size_gib: status.size_gib,
                    backup: name,
                    purpose: (TAG_RESTORE_FOR, validated.key()),
                    description: format!("{} restored from {name}", validated.key()),
                    initialization_rate: None,
                },
            )
            .await?
        }
    };
    Ok(Restore::Ready(Box::new(RestoreStatus {
        backup: name.to_owned(),
        snapshot_id: snapshot,
        volume_id: volume,
        gtid_set: status.gtid_set,
        done: false,
        point_in_time: replay,
    })))
}

/// The clients a restore calls.
#[allow(missing_debug_implementations)] // the AWS clients have no Debug
#[derive(Clone, Copy)]
pub struct Clients<'a> {
    /// The API server.
    pub client: &'a Client,
    /// EC2 (snapshots, volumes).
    pub ec2: &'a aws_sdk_ec2::Client,
    /// S3 (the archive a restore to a point replays).
    pub s3: &'a aws_sdk_s3::Client,
}

fn gone(name: &str, snapshot: &str) -> String {
    format!(
        "snapshot {snapshot} of MySQLBackup {name} no longer exists at EC2: restore another backup"
    )
}

/// Makes the cluster's credentials Secret from the backup's copy, unless
/// the cluster has one; why not, when the copy is gone.
async fn credentials(
    client: &Client,
    validated: &ValidatedCluster,
    kept: &str,
) -> Result<Option<String>, Error> {
    let secrets = Api::<Secret>::namespaced(client.clone(), &validated.namespace);
    let own = names::credentials_secret(&validated.name);
    if secrets
        .get_opt(&own)
        .await
        .map_err(api("read the credentials"))?
        .is_some()
    {
        return Ok(None);
    }
    let Some(kept) = secrets
        .get_opt(kept)
        .await
        .map_err(api("read the backup's credentials"))?
    else {
        return Ok(Some(format!(
            "the Secret {kept} with the credentials the backup was taken with is gone: create {own} with them"
        )));
    };
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some(own),
            namespace: Some(validated.namespace.clone()),
            labels: Some(
                [
                    (LABEL_MANAGED_BY.to_owned(), MANAGED_BY.to_owned()),
                    (LABEL_CLUSTER.to_owned(), validated.name.clone()),
                ]
                .into(),
            ),
            ..ObjectMeta::default()
        },
        data: kept.data,
        type_: Some("Opaque".to_owned()),
        ..Secret::default()
    };
    secrets
        .create(&PostParams::default(), &secret)
        .await
        .map_err(api("make the credentials from the backup's"))?;
    Ok(None)
}

/// The volume an earlier reconcile made for this restore, if any.
async fn restored_volume(
    ec2: &aws_sdk_ec2::Client,
    validated: &ValidatedCluster,
) -> Result<Option<String>, Error> {
    Ok(tagged_volume(ec2, TAG_RESTORE_FOR, &validated.key())
        .await?
        .and_then(|v| v.volume_id().map(str::to_owned)))
}

/// The volume tagged `key=value`, if any (one an earlier reconcile made).
async fn tagged_volume(
    ec2: &aws_sdk_ec2::Client,
    key: &str,
    value: &str,
) -> Result<Option<aws_sdk_ec2::types::Volume>, Error> {
    let out = ec2
        .describe_volumes()
        .filters(
            Filter::builder()
                .name(format!("tag:{key}"))
                .values(value)
                .build(),
        )
        .send()
        .await
        .map_err(ec2::call(format!(
            "look for the volume tagged {key}={value}"
        )))?;
    // A volume being deleted (a verified restore's last scratch volume,
    // say) is no one's any more.
    Ok(out
        .volumes()
        .iter()
        .find(|v| {
            !matches!(
                v.state(),
                Some(
                    aws_sdk_ec2::types::VolumeState::Deleting
                        | aws_sdk_ec2::types::VolumeState::Deleted
                )
            )
        })
        .cloned())
}

async fn node_zones(client: &Client) -> Result<BTreeSet<String>, Error> {
    let nodes = Api::<Node>::all(client.clone())
        .list(&ListParams::default())
        .await
        .map_err(api("list the nodes"))?;
    Ok(nodes
        .items
        .iter()
        .filter_map(|n| n.metadata.labels.as_ref()?.get(ZONE_LABEL).cloned())
        .collect())
}

/// A volume to make from a backup's snapshot.
struct FromSnapshot<'a> {
    snapshot: &'a str,
    zone: &'a str,
    /// The backup's volume size: the new one is at least as large.
    size_gib: Option<i32>,
    backup: &'a str,
    /// The tag that says what it is for, found again by it.
    purpose: (&'static str, String),
    /// Its `Name` tag.
    description: String,
    /// EBS's volume initialization rate, MiB/s.
    initialization_rate: Option<i32>,
}

async fn create_volume(
    ec2: &aws_sdk_ec2::Client,
    validated: &ValidatedCluster,
    volume: &FromSnapshot<'_>,
) -> Result<String, Error> {
    let spec_gib =
        i32::try_from(validated.storage.size_bytes.div_ceil(1 << 30)).unwrap_or(i32::MAX);
    let size = spec_gib.max(volume.size_gib.unwrap_or(0));
    let tags = TagSpecification::builder()
        .resource_type(ResourceType::Volume)
        .tags(
            Tag::builder()
                .key(TAG_ADOPT_BY)
                .value(validated.key())
                .build(),
        )
        .tags(
            Tag::builder()
                .key(volume.purpose.0)
                .value(&volume.purpose.1)
                .build(),
        )
        .tags(
            Tag::builder()
                .key(names::TAG_BACKUP)
                .value(volume.backup)
                .build(),
        )
        .tags(
            Tag::builder()
                .key("Name")
                .value(&volume.description)
                .build(),
        );
    // As the install's EBS driver tags its volumes: its IAM policy (and
    // the operator's) let only those be attached, tagged and modified.
    let driver_tag = validated
        .ebs_driver
        .volume_tag(validated.eks_cluster_name.as_deref());
    let tags = match driver_tag {
        Some((key, value)) => tags.tags(Tag::builder().key(key).value(value).build()),
        None => tags,
    }
    .build();
    let mut request = ec2
        .create_volume()
        .availability_zone(volume.zone)
        .snapshot_id(volume.snapshot)
        .size(size)
        .set_volume_initialization_rate(volume.initialization_rate)
        .tag_specifications(tags);
    if let StorageClassChoice::Managed { ebs, .. } = &validated.storage.class {
        request = request
            .volume_type(VolumeType::from(ebs.volume_type.as_str()))
            .encrypted(ebs.encrypted)
            .set_kms_key_id(ebs.kms_key_id.clone());
    }
    let out = request.send().await.map_err(ec2::call(format!(
        "create a volume from snapshot {}",
        volume.snapshot
    )))?;
    Ok(out.volume_id().unwrap_or_default().to_owned())
}
