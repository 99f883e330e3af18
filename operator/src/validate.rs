//! Validate: turn a `MySQLCluster` as stored into the `ValidatedCluster` that
//! builders accept. Re-checks what the schema's CEL rules check (the operator
//! must not trust that the installed CRD is current) and adds the cross-field
//! checks CEL cannot express. Pure: no client, no clock.

use std::collections::BTreeMap;

use ebisu_api::{
    EbsSpec, EbsVolumeType, Flavor, MySQLCluster, PodTemplateOverrides, ServiceTemplates,
    cluster::{
        GP3_IOPS, GP3_MAX_IOPS_PER_GIB, GP3_THROUGHPUT_MIBPS, IO2_IOPS, IO2_MAX_IOPS_PER_GIB,
        MAX_NAME_LEN, MAX_REPLICAS, MAX_SERVER_ID,
    },
    names,
};
use k8s_openapi::apimachinery::pkg::{api::resource::Quantity, apis::meta::v1::OwnerReference};
use kube::{Resource, ResourceExt};

use crate::{quantity, rbac::Features};

/// Why a cluster's spec cannot be honoured. Each message names the field and the fix.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    /// The object lacks metadata the API server always sets.
    #[error("failed to validate cluster: metadata.{0} is missing")]
    MissingMetadata(&'static str),
    /// A field is outside what ebisu supports.
    #[error("failed to validate {field}: {reason}")]
    InvalidField {
        /// The field, as `spec.x.y`.
        field: &'static str,
        /// What is wrong and how to fix it.
        reason: String,
    },
}

/// Settings the operator passes to every cluster it builds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OperatorSettings {
    /// Image with the `ebisu-sidecar` binary.
    pub sidecar_image: String,
    /// The namespace the operator runs in: its own pods there are no
    /// bystanders when a node is fenced.
    pub operator_namespace: String,
    /// The features this install's rights allow.
    pub features: Features,
    /// The EBS CSI driver of the volumes ebisu makes.
    pub ebs_driver: crate::model::EbsDriver,
    /// The EKS cluster's name, for the tag Auto Mode needs on a volume
    /// ebisu creates (`aws.eksClusterName`).
    pub eks_cluster_name: Option<String>,
}

impl OperatorSettings {
    /// Why a volume ebisu creates (from a snapshot) could not be attached,
    /// if it could not: EKS Auto Mode attaches only volumes tagged with the
    /// EKS cluster's name, which the install must give.
    pub fn unattachable_volumes(&self) -> Option<&'static str> {
        (self.ebs_driver == crate::model::EbsDriver::AutoMode && self.eks_cluster_name.is_none())
            .then_some("on EKS Auto Mode a volume ebisu makes must be tagged eks:eks-cluster-name, and this install does not know the cluster's name: install the chart with aws.eksClusterName=<your EKS cluster>")
    }
}

/// A MySQLCluster the operator can build: the only input builders accept.
#[derive(Clone, Debug, PartialEq)]
pub struct ValidatedCluster {
    /// Cluster name.
    pub name: String,
    /// Namespace.
    pub namespace: String,
    /// Owner reference every namespaced child carries.
    pub owner: OwnerReference,
    /// Instances.
    pub replicas: i32,
    /// Server family.
    pub flavor: Flavor,
    /// Server image.
    pub image: String,
    /// Sidecar image.
    pub sidecar_image: String,
    /// The EBS CSI driver of the volumes ebisu makes.
    pub ebs_driver: crate::model::EbsDriver,
    /// The EKS cluster's name (Auto Mode's volume tag).
    pub eks_cluster_name: Option<String>,
    /// The application's database and owner (`spec.database`).
    pub database: Option<ebisu_api::DatabaseSpec>,
    /// The operator's namespace: its pods may reach the agents.
    pub operator_namespace: String,
    /// First server id.
    pub server_id_base: i64,
    /// Volumes.
    pub storage: ValidatedStorage,
    /// The backup a new cluster starts from (`spec.bootstrap.fromBackup`).
    pub bootstrap: Option<Bootstrap>,
    /// The replay the first instance's init step runs (a restore to a
    /// point that is not done yet), for the ConfigMap.
    pub replay: Option<ebisu_api::agent::ReplayOrder>,
    /// Scheduled backups (`spec.backup`).
    pub backup_schedule: Option<BackupSchedule>,
    /// Semi-sync settings; `None` when semi-sync is off.
    pub semi_sync: Option<SemiSync>,
    /// The semi-sync settings the servers' configuration carries: as
    /// `semi_sync` whenever the user did not turn semi-sync off, whatever
    /// the number of instances, so that scaling to one and back changes no
    /// configuration (and restarts no server); the operator switches the
    /// source side on and off at runtime.
    pub semi_sync_config: Option<SemiSync>,
    /// Switchover and failover.
    pub failover: FailoverPolicy,
    /// Clone rate limit in bytes per second.
    pub clone_rate_limit: Option<u64>,
    /// Which peers may donate a copy.
    pub clone_donor: ebisu_api::DonorPreference,
    /// Whether new replicas may start from a backup's snapshot.
    pub snapshot_seeds: SnapshotSeeds,
    /// Volumes made from a backup's snapshot for new replicas, by ordinal:
    /// bound as given volumes are ([`ValidatedCluster::with_seeded_volumes`]).
    pub seeded: BTreeMap<u32, String>,
    /// Pod overrides.
    pub pod: PodTemplateOverrides,
    /// Extra my.cnf settings.
    pub mysql_config: BTreeMap<String, String>,
    /// Service settings.
    pub services: ServiceTemplates,
    /// How long a binary log file is kept after its last write, in seconds.
    pub binlog_expire_seconds: u64,
}

/// Whether new replicas may start from a backup's snapshot
/// (`spec.clone.method`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SnapshotSeeds {
    /// Never, for this reason (said in the seed's status).
    Never(String),
    /// As the method says.
    Allowed {
        /// `Snapshot` or `Auto`.
        method: ebisu_api::CloneMethod,
        /// EBS's volume initialization rate, MiB/s.
        initialization_rate: Option<i32>,
    },
}

/// Semi-synchronous replication as it will be configured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SemiSync {
    /// Acknowledgements the primary waits for.
    pub wait_for_replicas: u32,
    /// Milliseconds before falling back to asynchronous replication
    /// ([`NEVER_FALL_BACK_MS`] when the user set no timeout).
    pub timeout_ms: u64,
    /// The user set a timeout: the primary may fall back to asynchronous.
    pub may_fall_back: bool,
}

/// The semi-sync timeout that stands for "never fall back": the largest
/// both flavors accept (MySQL's limit; about 49 days).
pub const NEVER_FALL_BACK_MS: u64 = ebisu_mysql::sql::MYSQL_MAX_SEMI_SYNC_TIMEOUT_MS;

/// Who moves the primary, and when.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FailoverPolicy {
    /// Automatic switchover and failover, or only on request.
    pub mode: ebisu_api::FailoverMode,
    /// Seconds of silence before a lost primary is failed over.
    pub after_seconds: u64,
    /// How far behind a switchover candidate may be.
    pub max_lag_for_promotion_seconds: u64,
    /// How far behind a replica may be and still serve reads.
    pub max_lag_for_reads_seconds: u64,
    /// Fence lost nodes at EC2 so their instances come back elsewhere.
    pub fence_nodes: bool,
    /// The primary Lease's duration: the primary's agent fences its server
    /// when it could not renew the Lease for this long. A second less than
    /// the failover delay (the operator waits this and a second's margin
    /// since the last renewal it saw), and never under 2 s, so a renewal
    /// every second has room for one late call.
    pub primary_lease_seconds: u64,
}

/// Validated `spec.backup`.
#[derive(Clone, Debug, PartialEq)]
pub struct BackupSchedule {
    /// When.
    pub cron: croner::Cron,
    /// How many completed scheduled backups to keep.
    pub keep: u32,
    /// The binary log archive, when on.
    pub archive: Option<ArchiveTarget>,
    /// Restores verified on a schedule, when on.
    pub verify: Option<VerifySchedule>,
}

/// Validated `spec.backup.verify`.
#[derive(Clone, Debug, PartialEq)]
pub struct VerifySchedule {
    /// When.
    pub cron: croner::Cron,
    /// How many tables to check.
    pub sample_tables: u32,
    /// How long the scratch cluster may take to restore and be checked.
    pub timeout_seconds: u64,
}

/// Validated `spec.backup.archive`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArchiveTarget {
    /// The S3 bucket.
    pub bucket: String,
    /// The key prefix (`<namespace>/<cluster>` unless set).
    pub prefix: String,
    /// How far behind the archive may be before it is a problem.
    pub max_behind_seconds: u64,
    /// The Secret whose keys are the agents' AWS environment, if any.
    pub credentials_secret: Option<String>,
}

/// Validated storage.
#[derive(Clone, Debug, PartialEq)]
pub struct ValidatedStorage {
    /// Requested size of each volume.
    pub size: Quantity,
    /// The same size in bytes.
    pub size_bytes: u64,
    /// Which StorageClass the volumes use.
    pub class: StorageClassChoice,
}

impl ValidatedStorage {
    /// The spec names existing EBS volumes (`spec.storage.ebs.volumes`).
    pub fn given_volumes(&self) -> bool {
        matches!(&self.class, StorageClassChoice::Managed { ebs, .. } if !ebs.volumes.is_empty())
    }
}

/// Where volumes come from.
#[derive(Clone, Debug, PartialEq)]
pub enum StorageClassChoice {
    /// The cluster's default StorageClass.
    ClusterDefault,
    /// A StorageClass the user named.
    Named(String),
    /// A StorageClass the operator creates and owns.
    Managed {
        /// Its name.
        name: String,
        /// Its EBS parameters.
        ebs: EbsSpec,
    },
}

impl StorageClassChoice {
    /// The `storageClassName` of the volume claims, `None` for the cluster default.
    pub fn class_name(&self) -> Option<&str> {
        match self {
            StorageClassChoice::ClusterDefault => None,
            StorageClassChoice::Named(name) | StorageClassChoice::Managed { name, .. } => {
                Some(name)
            }
        }
    }
}

/// Validates `cluster` for building.
pub fn validate(
    cluster: &MySQLCluster,
    settings: &OperatorSettings,
) -> Result<ValidatedCluster, Error> {
    let name = cluster
        .metadata
        .name
        .clone()
        .ok_or(Error::MissingMetadata("name"))?;
    let namespace = cluster
        .namespace()
        .ok_or(Error::MissingMetadata("namespace"))?;
    let owner = cluster
        .controller_owner_ref(&())
        .ok_or(Error::MissingMetadata("uid"))?;
    let spec = &cluster.spec;

    if !(1..=MAX_REPLICAS).contains(&spec.replicas) {
        return Err(invalid(
            "spec.replicas",
            format!(
                "{} is outside 1..={MAX_REPLICAS}: set the number of instances you want",
                spec.replicas
            ),
        ));
    }
    if spec.server_id_base < 1 || spec.server_id_base + i64::from(MAX_REPLICAS) > MAX_SERVER_ID {
        return Err(invalid(
            "spec.serverIdBase",
            format!(
                "{} leaves no room for {MAX_REPLICAS} server ids below {MAX_SERVER_ID}: choose a base between 1 and {}",
                spec.server_id_base,
                MAX_SERVER_ID - i64::from(MAX_REPLICAS)
            ),
        ));
    }
    if let Some(image) = &spec.image
        && image.trim().is_empty()
    {
        return Err(invalid(
            "spec.image",
            "must not be empty: remove it to use the default image".into(),
        ));
    }
    if !is_dns_1035_label(&name) || name.len() > MAX_NAME_LEN {
        return Err(invalid(
            "metadata.name",
            format!(
                "{name:?} must be a DNS-1035 label of at most {MAX_NAME_LEN} characters (lowercase letters, digits and '-', starting with a letter): the Services and pods are named after it; re-create the cluster under such a name"
            ),
        ));
    }
    if let Some(key) = spec
        .mysql_config
        .keys()
        .find(|k| ebisu_api::cluster::config_keys::is_refused(k))
    {
        return Err(invalid(
            "spec.mysqlConfig",
            format!(
                "{key} is managed by ebisu or would remove authentication or management: remove it"
            ),
        ));
    }
    for (field, keys) in [
        ("spec.podTemplate.labels", spec.pod_template.labels.keys()),
        (
            "spec.podTemplate.annotations",
            spec.pod_template.annotations.keys(),
        ),
    ] {
        if let Some(key) = keys.into_iter().find(|k| k.starts_with("ebisu.dev/")) {
            return Err(invalid(
                field,
                format!("{key} is one of ebisu's own keys: use your own prefix"),
            ));
        }
    }
    if let Some((key, _)) = spec.mysql_config.iter().find(|(k, v)| {
        !is_config_token(k) || v.chars().any(char::is_control) || v.len() > MAX_CONFIG_VALUE_LEN
    }) {
        return Err(invalid(
            "spec.mysqlConfig",
            format!(
                "{key:?} is not a valid my.cnf setting: keys are letters, digits, '_', '-' and '.', values are one line without control characters, at most {MAX_CONFIG_VALUE_LEN} characters"
            ),
        ));
    }

    if spec.replication.fence_nodes && !settings.features.fence_nodes {
        return Err(invalid(
            "spec.replication.fenceNodes",
            "this install may not patch Nodes: install the chart with features.fenceNodes=true, or remove the field".into(),
        ));
    }
    let storage = validate_storage(spec, &name, &namespace)?;
    if storage.given_volumes() && !settings.features.given_volumes {
        return Err(invalid(
            "spec.storage.ebs.volumes",
            "this install may not create PersistentVolumes: install the chart with features.givenVolumes=true, or remove the field to have new volumes made".into(),
        ));
    }
    let bootstrap = spec
        .bootstrap
        .as_ref()
        .map(|b| bootstrap(&b.from_backup, spec.flavor))
        .transpose()?;
    if bootstrap.is_some() {
        if !matches!(&storage.class, StorageClassChoice::Managed { .. }) {
            return Err(invalid(
                "spec.bootstrap.fromBackup",
                "a restored volume is an EBS volume ebisu makes: set spec.storage.ebs (and no storageClassName)".into(),
            ));
        }
        if storage.given_volumes() {
            return Err(invalid(
                "spec.bootstrap.fromBackup",
                "the first volume comes from the backup: remove spec.storage.ebs.volumes".into(),
            ));
        }
        if !settings.features.given_volumes {
            return Err(invalid(
                "spec.bootstrap.fromBackup",
                "this install may not create PersistentVolumes, which a restored volume needs: install the chart with features.givenVolumes=true".into(),
            ));
        }
        if let Some(why) = settings.unattachable_volumes() {
            return Err(invalid("spec.bootstrap.fromBackup", why.into()));
        }
    }
    let snapshot_seeds = snapshot_seeds(&spec.clone, &storage, settings)?;
    let backup_schedule = spec
        .backup
        .as_ref()
        .map(|b| {
            crate::cron::parse(&b.schedule)
                .map(|cron| BackupSchedule {
                    cron,
                    keep: b.keep,
                    archive: b.archive.as_ref().map(|a| ArchiveTarget {
                        bucket: a.bucket.clone(),
                        prefix: a
                            .prefix
                            .clone()
                            .filter(|p| !p.trim_matches('/').is_empty())
                            .unwrap_or_else(|| format!("{namespace}/{name}")),
                        max_behind_seconds: u64::from(a.max_behind_seconds),
                        credentials_secret: a.credentials_secret.clone(),
                    }),
                    verify: None,
                })
                .map_err(|why| {
                    invalid(
                        "spec.backup.schedule",
                        format!(
                            "{:?} is not a cron schedule ({why}): use five fields such as \"0 3 * * *\" (03:00 UTC daily), or six with seconds first",
                            b.schedule
                        ),
                    )
                })
        })
        .transpose()?;
    let backup_schedule = match (
        backup_schedule,
        spec.backup.as_ref().and_then(|b| b.verify.as_ref()),
    ) {
        (Some(schedule), Some(verify)) => {
            let cron = crate::cron::parse(&verify.schedule).map_err(|why| {
                invalid(
                    "spec.backup.verify.schedule",
                    format!(
                        "{:?} is not a cron schedule ({why}): use five fields such as \"0 5 * * 0\" (05:00 UTC on Sundays), or six with seconds first",
                        verify.schedule
                    ),
                )
            })?;
            if let Some(why) = settings.unattachable_volumes() {
                return Err(invalid("spec.backup.verify", why.into()));
            }
            if !settings.features.given_volumes {
                return Err(invalid(
                    "spec.backup.verify",
                    "a verified restore restores into a new volume, which this install may not make: install the chart with features.givenVolumes=true, or remove spec.backup.verify".into(),
                ));
            }
            Some(BackupSchedule {
                verify: Some(VerifySchedule {
                    cron,
                    sample_tables: verify.sample_tables,
                    timeout_seconds: u64::from(verify.timeout_seconds),
                }),
                ..schedule
            })
        }
        (schedule, _) => schedule,
    };
    let semi_sync = validate_semi_sync(cluster)?;
    if spec.database.is_some() && storage.given_volumes() {
        return Err(invalid(
            "spec.database",
            "cannot be set with spec.storage.ebs.volumes: given volumes bring their own databases and accounts; remove spec.database".into(),
        ));
    }
    let clone_rate_limit = spec
        .clone
        .rate_limit
        .as_ref()
        .map(|q| {
            quantity::to_bytes(q).ok_or_else(|| {
                invalid(
                    "spec.clone.rateLimit",
                    format!(
                        "{:?} is not a quantity: use bytes per second such as 200Mi",
                        q.0
                    ),
                )
            })
        })
        .transpose()?;

    Ok(ValidatedCluster {
        name,
        namespace,
        owner,
        replicas: spec.replicas,
        flavor: spec.flavor,
        image: spec.effective_image().to_owned(),
        sidecar_image: settings.sidecar_image.clone(),
        ebs_driver: settings.ebs_driver,
        eks_cluster_name: settings.eks_cluster_name.clone(),
        database: spec.database.clone(),
        operator_namespace: settings.operator_namespace.clone(),
        server_id_base: spec.server_id_base,
        storage,
        bootstrap,
        replay: None,
        backup_schedule,
        binlog_expire_seconds: u64::from(spec.binary_logs.expire_seconds.min(31_536_000)),
        semi_sync_config: semi_sync.or_else(|| semi_sync_config(cluster)),
        semi_sync,
        failover: FailoverPolicy {
            mode: spec.replication.failover,
            after_seconds: u64::from(
                spec.replication
                    .failover_after_seconds
                    .clamp(1, 300)
                    .unsigned_abs(),
            ),
            max_lag_for_promotion_seconds: u64::from(
                spec.replication
                    .max_lag_for_promotion_seconds
                    .max(0)
                    .unsigned_abs(),
            ),
            max_lag_for_reads_seconds: u64::from(
                spec.replication
                    .max_lag_for_reads_seconds
                    .max(0)
                    .unsigned_abs(),
            ),
            fence_nodes: spec.replication.fence_nodes,
            primary_lease_seconds: u64::from(
                spec.replication
                    .failover_after_seconds
                    .clamp(1, 300)
                    .unsigned_abs(),
            )
            .saturating_sub(1)
            .max(2),
        },
        clone_rate_limit,
        clone_donor: spec.clone.donor,
        snapshot_seeds,
        seeded: BTreeMap::new(),
        pod: spec.pod_template.clone(),
        mysql_config: spec.mysql_config.clone(),
        services: spec.services.clone(),
    })
}

/// Whether `spec.clone.method` may use snapshots here: `Snapshot` is
/// refused (naming the field and the fix) where `Auto` falls back to
/// streaming.
fn snapshot_seeds(
    clone: &ebisu_api::CloneSpec,
    storage: &ValidatedStorage,
    settings: &OperatorSettings,
) -> Result<SnapshotSeeds, Error> {
    use ebisu_api::CloneMethod;
    let why_not = if clone.method == CloneMethod::Stream {
        Some("spec.clone.method is Stream")
    } else if !matches!(&storage.class, StorageClassChoice::Managed { .. }) {
        Some(
            "a volume made from a snapshot is an EBS volume ebisu makes: spec.storage.ebs is not set",
        )
    } else if !settings.features.given_volumes {
        Some("this install may not create PersistentVolumes (features.givenVolumes=false)")
    } else {
        settings.unattachable_volumes()
    };
    match why_not {
        Some(why) if clone.method == CloneMethod::Snapshot => Err(invalid(
            "spec.clone.method",
            format!(
                "Snapshot cannot be used: {why}; set spec.clone.method to Auto or Stream, or fix that"
            ),
        )),
        Some(why) => Ok(SnapshotSeeds::Never(why.to_owned())),
        None => Ok(SnapshotSeeds::Allowed {
            method: clone.method,
            initialization_rate: clone.snapshot_initialization_rate,
        }),
    }
}

fn validate_storage(
    spec: &ebisu_api::MySQLClusterSpec,
    name: &str,
    namespace: &str,
) -> Result<ValidatedStorage, Error> {
    let size = spec.storage.size.clone();
    let size_bytes = quantity::to_bytes(&size).ok_or_else(|| {
        invalid(
            "spec.storage.size",
            format!("{:?} is not a quantity: use a size such as 20Gi", size.0),
        )
    })?;
    if size_bytes < quantity::GIB {
        return Err(invalid("spec.storage.size", "must be at least 1Gi".into()));
    }
    let class = match (&spec.storage.storage_class_name, &spec.storage.ebs) {
        (Some(_), Some(_)) => {
            return Err(invalid(
                "spec.storage",
                "set either storageClassName or ebs, not both".into(),
            ));
        }
        (Some(class), None) => StorageClassChoice::Named(class.clone()),
        (None, Some(ebs)) => {
            validate_ebs(ebs, size_bytes)?;
            StorageClassChoice::Managed {
                name: names::storage_class(namespace, name),
                ebs: ebs.clone(),
            }
        }
        (None, None) => StorageClassChoice::ClusterDefault,
    };
    Ok(ValidatedStorage {
        size,
        size_bytes,
        class,
    })
}

fn validate_ebs(ebs: &EbsSpec, size_bytes: u64) -> Result<(), Error> {
    let size_gib = i64::try_from(size_bytes / quantity::GIB).unwrap_or(i64::MAX);
    let (iops_range, iops_per_gib) = match ebs.volume_type {
        EbsVolumeType::Gp3 => (GP3_IOPS, GP3_MAX_IOPS_PER_GIB),
        EbsVolumeType::Io2 => (IO2_IOPS, IO2_MAX_IOPS_PER_GIB),
    };
    let volume_type = ebs.volume_type.as_str();
    match (ebs.volume_type, ebs.iops) {
        (EbsVolumeType::Io2, None) => {
            return Err(invalid(
                "spec.storage.ebs.iops",
                "is required for io2".into(),
            ));
        }
        (_, Some(iops)) if !iops_range.contains(&iops) => {
            return Err(invalid(
                "spec.storage.ebs.iops",
                format!(
                    "{iops} is outside {}..={} for {volume_type}",
                    iops_range.start(),
                    iops_range.end()
                ),
            ));
        }
        // gp3's baseline of 3000 IOPS is free at any size; only provisioned IOPS above it
        // are bounded by the size.
        (EbsVolumeType::Gp3, Some(iops))
            if iops > *GP3_IOPS.start() && i64::from(iops) > size_gib * iops_per_gib =>
        {
            return Err(invalid(
                "spec.storage.ebs.iops",
                format!(
                    "{iops} exceeds {iops_per_gib} IOPS per GiB of a {size_gib}Gi volume: lower iops or raise spec.storage.size to at least {}Gi",
                    ceil_div(i64::from(iops), iops_per_gib)
                ),
            ));
        }
        (EbsVolumeType::Io2, Some(iops)) if i64::from(iops) > size_gib * iops_per_gib => {
            return Err(invalid(
                "spec.storage.ebs.iops",
                format!(
                    "{iops} exceeds {iops_per_gib} IOPS per GiB of a {size_gib}Gi volume: lower iops or raise spec.storage.size to at least {}Gi",
                    ceil_div(i64::from(iops), iops_per_gib)
                ),
            ));
        }
        _ => {}
    }
    if let Some(throughput) = ebs.throughput {
        if ebs.volume_type != EbsVolumeType::Gp3 {
            return Err(invalid(
                "spec.storage.ebs.throughput",
                "applies only to gp3: remove it".into(),
            ));
        }
        if !GP3_THROUGHPUT_MIBPS.contains(&throughput) {
            return Err(invalid(
                "spec.storage.ebs.throughput",
                format!(
                    "{throughput} is outside {}..={} MiB/s",
                    GP3_THROUGHPUT_MIBPS.start(),
                    GP3_THROUGHPUT_MIBPS.end()
                ),
            ));
        }
        // gp3 allows at most 0.25 MiB/s per provisioned IOPS.
        let iops = ebs.iops.unwrap_or(*GP3_IOPS.start());
        if throughput > *GP3_THROUGHPUT_MIBPS.start() && i64::from(throughput) * 4 > i64::from(iops)
        {
            return Err(invalid(
                "spec.storage.ebs.throughput",
                format!(
                    "{throughput} MiB/s needs at least {} IOPS on gp3 (0.25 MiB/s per IOPS): raise iops or lower throughput",
                    i64::from(throughput) * 4
                ),
            ));
        }
    }
    if ebs.kms_key_id.is_some() && !ebs.encrypted {
        return Err(invalid(
            "spec.storage.ebs.kmsKeyId",
            "needs encrypted: true".into(),
        ));
    }
    Ok(())
}

/// The semi-sync settings the configuration carries while semi-sync is
/// off for want of replicas (see [`ValidatedCluster::semi_sync_config`]).
fn semi_sync_config(cluster: &MySQLCluster) -> Option<SemiSync> {
    let replication = &cluster.spec.replication;
    if replication.semi_sync == Some(false) {
        return None;
    }
    let wait = if cluster.spec.flavor == Flavor::Mariadb {
        1
    } else {
        u32::try_from(replication.wait_for_replicas.max(1)).unwrap_or(1)
    };
    Some(SemiSync {
        wait_for_replicas: wait,
        timeout_ms: replication.timeout_seconds.map_or(NEVER_FALL_BACK_MS, |t| {
            u64::from(t.clamp(1, 3600).unsigned_abs()) * 1000
        }),
        may_fall_back: replication.timeout_seconds.is_some(),
    })
}

fn validate_semi_sync(cluster: &MySQLCluster) -> Result<Option<SemiSync>, Error> {
    let spec = &cluster.spec;
    if !spec.semi_sync_enabled() {
        return Ok(None);
    }
    let replication = &spec.replication;
    if spec.replicas < 2 {
        return Err(invalid(
            "spec.replication.semiSync",
            "needs spec.replicas >= 2: add replicas or leave semiSync unset".into(),
        ));
    }
    let wait = replication.wait_for_replicas;
    if wait < 1 || wait >= spec.replicas {
        return Err(invalid(
            "spec.replication.waitForReplicas",
            format!(
                "{wait} must be between 1 and spec.replicas - 1 ({})",
                spec.replicas - 1
            ),
        ));
    }
    if spec.flavor == Flavor::Mariadb && wait != 1 {
        return Err(invalid(
            "spec.replication.waitForReplicas",
            "must be 1 for flavor mariadb (MariaDB semi-sync waits for one replica)".into(),
        ));
    }
    let timeout_ms = match replication.timeout_seconds {
        None => NEVER_FALL_BACK_MS,
        Some(timeout) if (1..=3600).contains(&timeout) => u64::from(timeout.unsigned_abs()) * 1000,
        Some(timeout) => {
            return Err(invalid(
                "spec.replication.timeoutSeconds",
                format!(
                    "{timeout} is outside 1..=3600: set 1 to 3600, or unset it to never fall back"
                ),
            ));
        }
    };
    Ok(Some(SemiSync {
        wait_for_replicas: u32::try_from(wait).unwrap_or(1),
        timeout_ms,
        may_fall_back: replication.timeout_seconds.is_some(),
    }))
}

/// Lowercase letters, digits and `-`, starting with a letter and not ending with `-`.
fn is_dns_1035_label(s: &str) -> bool {
    let bytes = s.as_bytes();
    bytes.first().is_some_and(u8::is_ascii_lowercase)
        && bytes
            .last()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
}

/// The longest `spec.mysqlConfig` value (the schema says the same).
const MAX_CONFIG_VALUE_LEN: usize = 4096;

fn is_config_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
}

fn ceil_div(a: i64, b: i64) -> i64 {
    (a + b - 1) / b
}

/// Where a restored cluster's data comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bootstrap {
    /// The backup.
    pub backup: BackupChoice,
    /// The point to replay the archive to, if any.
    pub point: Option<ebisu_mysql::archive::replay::Target>,
}

/// Which backup a restore starts from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackupChoice {
    /// This MySQLBackup.
    Named(String),
    /// The newest backup of this cluster before the point.
    NewestOf(String),
}

impl Bootstrap {
    /// The named backup, if one is named.
    pub fn named(&self) -> Option<&str> {
        match &self.backup {
            BackupChoice::Named(name) => Some(name),
            BackupChoice::NewestOf(_) => None,
        }
    }
}

fn bootstrap(from: &ebisu_api::FromBackup, flavor: Flavor) -> Result<Bootstrap, Error> {
    let backup = match (&from.name, &from.cluster) {
        (Some(name), None) => BackupChoice::Named(name.clone()),
        (None, Some(cluster)) if from.point_in_time.is_some() => {
            BackupChoice::NewestOf(cluster.clone())
        }
        _ => {
            return Err(invalid(
                "spec.bootstrap.fromBackup",
                "set name (a MySQLBackup) or cluster with pointInTime (its newest backup before that point)".into(),
            ));
        }
    };
    let point = match &from.point_in_time {
        None => None,
        Some(point) => Some(match (&point.time, &point.gtid_set) {
            (Some(time), None) => {
                ebisu_mysql::archive::replay::Target::Time(time.0.as_microsecond())
            }
            (None, Some(text)) => {
                let set = ebisu_mysql::GtidSet::parse(ebisu_mysql_flavor(flavor), text).map_err(
                    |e| {
                        invalid(
                            "spec.bootstrap.fromBackup.pointInTime.gtidSet",
                            format!("{e}: write it as the server shows gtid_executed (MySQL) or gtid_current_pos (MariaDB)"),
                        )
                    },
                )?;
                ebisu_mysql::archive::replay::Target::Gtids(set)
            }
            _ => {
                return Err(invalid(
                    "spec.bootstrap.fromBackup.pointInTime",
                    "set time or gtidSet, one of the two".into(),
                ));
            }
        }),
    };
    Ok(Bootstrap { backup, point })
}

/// The server family as `ebisu_mysql` names it.
pub fn ebisu_mysql_flavor(flavor: Flavor) -> ebisu_mysql::Flavor {
    match flavor {
        Flavor::Mariadb => ebisu_mysql::Flavor::MariaDb,
        Flavor::Mysql => ebisu_mysql::Flavor::MySql84,
    }
}

fn invalid(field: &'static str, reason: String) -> Error {
    Error::InvalidField { field, reason }
}

/// Resource helpers builders share.
impl ValidatedCluster {
    /// Labels on every child object.
    pub fn labels(&self) -> BTreeMap<String, String> {
        names::common_labels(&self.name)
    }

    /// Labels selecting the instance pods.
    pub fn selector(&self) -> BTreeMap<String, String> {
        names::selector_labels(&self.name)
    }

    /// The cluster as it may be built now: at most `max_replicas`
    /// instances when something holds the rest back (a given volume that
    /// cannot be used yet), as the spec says otherwise.
    pub fn with_replicas_at_most(&self, max_replicas: Option<i32>) -> Self {
        Self {
            replicas: max_replicas.map_or(self.replicas, |max| self.replicas.min(max)),
            ..self.clone()
        }
    }

    /// The cluster as it may be built while `primary` (the primary ebisu
    /// remembers) has not moved below a smaller `spec.replicas`: its pod is
    /// kept until a switchover moves the primary, so scaling down never
    /// deletes a primary (a StatefulSet scale-down bypasses every budget).
    pub fn keeping_primary(&self, primary: Option<&str>) -> Self {
        let keep = primary
            .and_then(names::ordinal_of)
            .and_then(|ordinal| i32::try_from(ordinal).ok())
            .map_or(0, |ordinal| ordinal + 1);
        Self {
            replicas: self.replicas.max(keep),
            ..self.clone()
        }
    }

    /// The spec names existing EBS volumes (`spec.storage.ebs.volumes`):
    /// they may hold data made with credentials only their old Secret has.
    pub fn given_volumes(&self) -> bool {
        self.storage.given_volumes()
    }

    /// The cluster whose first instance replays the archive to a point.
    pub fn with_replay(&self, replay: Option<ebisu_api::agent::ReplayOrder>) -> Self {
        Self {
            replay,
            ..self.clone()
        }
    }

    /// The cluster with its first instance on `volume` (made from the
    /// backup it starts from), as if the spec gave it.
    pub fn with_restored_volume(&self, volume: &str) -> Self {
        let mut restored = self.clone();
        if let StorageClassChoice::Managed { ebs, .. } = &mut restored.storage.class
            && ebs.volumes.is_empty()
        {
            ebs.volumes = vec![volume.to_owned()];
        }
        restored
    }

    /// The cluster with new replicas' volumes made from a snapshot, bound
    /// as given volumes are.
    pub fn with_seeded_volumes(&self, seeded: BTreeMap<u32, String>) -> Self {
        Self {
            seeded,
            ..self.clone()
        }
    }

    /// `<namespace>/<name>`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::fixtures::{BASIC, MYSQL_PRODUCTION, SINGLE, settings, validated};

    fn cluster(spec: &str) -> MySQLCluster {
        let mut c: MySQLCluster = serde_yaml::from_str(&format!(
            "apiVersion: ebisu.dev/v1alpha1\nkind: MySQLCluster\nmetadata: {{name: orders, namespace: shop, uid: u-1}}\nspec:\n{spec}"
        ))
        .expect("cluster parses");
        c.metadata.uid = Some("u-1".to_owned());
        c
    }

    fn refusal(spec: &str) -> (&'static str, String) {
        match validate(&cluster(spec), &settings()) {
            Err(Error::InvalidField { field, reason }) => (field, reason),
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn the_archive_goes_under_the_namespace_and_cluster_unless_a_prefix_is_given() {
        let archive = |archive: &str| {
            validate(
                &cluster(&format!(
                    "  storage: {{size: 10Gi}}\n  backup: {{schedule: \"0 3 * * *\", archive: {archive}}}\n"
                )),
                &settings(),
            )
            .expect("valid")
            .backup_schedule
            .and_then(|b| b.archive)
            .map(|a| (a.bucket, a.prefix, a.max_behind_seconds))
        };
        let default_prefix = archive("{bucket: logs}").map(|(_, prefix, _)| prefix);
        assert!(
            default_prefix
                .as_deref()
                .is_some_and(|p| p.ends_with("/orders") && p.split('/').count() == 2),
            "{default_prefix:?}"
        );
        assert_eq!(
            archive("{bucket: logs, prefix: prod/orders, maxBehindSeconds: 5}"),
            Some(("logs".to_owned(), "prod/orders".to_owned(), 5))
        );
        assert_eq!(
            archive("{bucket: logs, prefix: /}").map(|(_, p, _)| p),
            default_prefix,
            "an empty prefix is the default"
        );
    }

    #[test]
    fn backup_schedules_are_cron_and_restores_need_ebisu_volumes() {
        for bad in ["every day", "61 * * * *", "* * * * * * *"] {
            let (field, reason) = refusal(&format!(
                "  storage: {{size: 10Gi}}\n  backup: {{schedule: \"{bad}\"}}\n"
            ));
            assert_eq!(field, "spec.backup.schedule");
            assert!(reason.contains("0 3 * * *"), "{reason}");
        }
        let ok = validate(
            &cluster(
                "  storage: {size: 10Gi}\n  backup: {schedule: \"*/20 * * * * *\", keep: 2}\n",
            ),
            &settings(),
        )
        .expect("six fields with seconds are a schedule");
        assert_eq!(ok.backup_schedule.map(|b| b.keep), Some(2));
        let (field, reason) = refusal(
            "  storage: {size: 10Gi, storageClassName: fast}\n  bootstrap: {fromBackup: {name: monday}}\n",
        );
        assert_eq!(field, "spec.bootstrap.fromBackup");
        assert!(reason.contains("spec.storage.ebs"), "{reason}");
        let restored = validate(
            &cluster("  storage: {size: 10Gi, ebs: {type: gp3}}\n  bootstrap: {fromBackup: {name: monday}}\n"),
            &settings(),
        )
        .expect("a restore into ebisu-made volumes");
        assert_eq!(
            restored.bootstrap.as_ref().and_then(Bootstrap::named),
            Some("monday")
        );
        assert!(
            restored
                .with_restored_volume("vol-0123456789abcdef0")
                .given_volumes()
        );
    }

    #[test]
    fn snapshot_seeds_need_ebisu_volumes_and_the_right_to_bind_them() {
        use ebisu_api::CloneMethod;
        let ebs = "  storage: {size: 10Gi, ebs: {type: gp3}}\n";
        let allowed = validate(
            &cluster(&format!(
                "{ebs}  clone: {{method: Snapshot, snapshotInitializationRate: 200}}\n"
            )),
            &settings(),
        )
        .expect("a snapshot seed with ebisu-made volumes");
        assert_eq!(
            allowed.snapshot_seeds,
            SnapshotSeeds::Allowed {
                method: CloneMethod::Snapshot,
                initialization_rate: Some(200)
            }
        );
        let auto = validate(&cluster(ebs), &settings()).expect("Auto is the default");
        assert!(matches!(
            auto.snapshot_seeds,
            SnapshotSeeds::Allowed {
                method: CloneMethod::Auto,
                ..
            }
        ));
        let (field, reason) = refusal(
            "  storage: {size: 10Gi, storageClassName: fast}\n  clone: {method: Snapshot}\n",
        );
        assert_eq!(field, "spec.clone.method");
        assert!(
            reason.contains("spec.storage.ebs") && reason.contains("Auto or Stream"),
            "{reason}"
        );
        let mut no_pvs = settings();
        no_pvs.features = Features::default();
        match validate(
            &cluster(&format!("{ebs}  clone: {{method: Snapshot}}\n")),
            &no_pvs,
        ) {
            Err(Error::InvalidField { field, reason }) => {
                assert_eq!(field, "spec.clone.method");
                assert!(reason.contains("features.givenVolumes"), "{reason}");
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
        let streams = validate(&cluster(ebs), &no_pvs).expect("Auto streams instead");
        assert!(
            matches!(&streams.snapshot_seeds, SnapshotSeeds::Never(why) if why.contains("features.givenVolumes"))
        );
        let stream = validate(
            &cluster(&format!("{ebs}  clone: {{method: Stream}}\n")),
            &settings(),
        )
        .expect("Stream");
        assert!(matches!(stream.snapshot_seeds, SnapshotSeeds::Never(_)));
    }

    #[test]
    fn a_hold_only_ever_lowers_the_instances_built() {
        let basic = validated(BASIC);
        assert_eq!(basic.with_replicas_at_most(None).replicas, 3);
        assert_eq!(basic.with_replicas_at_most(Some(1)).replicas, 1);
        assert_eq!(basic.with_replicas_at_most(Some(5)).replicas, 3);
        assert_eq!(basic.keeping_primary(Some("orders-4")).replicas, 5);
        assert_eq!(basic.keeping_primary(Some("orders-1")).replicas, 3);
        assert_eq!(basic.keeping_primary(None).replicas, 3);
        assert_eq!(basic.key(), "shop/orders");
    }

    #[test]
    fn fixtures_validate_with_their_defaults() {
        let basic = validated(BASIC);
        assert_eq!(
            (basic.replicas, basic.flavor, basic.image.as_str()),
            (3, Flavor::Mariadb, "mariadb:10.11")
        );
        assert_eq!(
            basic.semi_sync,
            Some(SemiSync {
                wait_for_replicas: 1,
                timeout_ms: NEVER_FALL_BACK_MS,
                may_fall_back: false,
            }),
            "lossless by default: no timeout, no fallback"
        );
        assert_eq!(basic.storage.size_bytes, 20 * quantity::GIB);
        assert_eq!(basic.owner.kind, "MySQLCluster");
        assert_eq!(basic.sidecar_image, "ghcr.io/ebisu/sidecar:test");
        let production = validated(MYSQL_PRODUCTION);
        assert_eq!(
            production.semi_sync,
            Some(SemiSync {
                wait_for_replicas: 2,
                timeout_ms: 30_000,
                may_fall_back: true,
            })
        );
        assert_eq!(
            production.storage.class,
            StorageClassChoice::Named("io2-fast".to_owned())
        );
        assert_eq!(production.clone_rate_limit, Some(200 << 20));
        let single = validated(SINGLE);
        assert_eq!(
            single.semi_sync, None,
            "one instance has nobody to wait for"
        );
        assert_eq!(single.storage.class, StorageClassChoice::ClusterDefault);
    }

    #[test]
    fn features_the_install_lacks_rights_for_are_refused_naming_the_chart_value() {
        let mut default_install = settings();
        default_install.features = Features::default();
        let given = cluster(
            "  storage: {size: 10Gi, ebs: {volumes: [vol-0123456789abcdef0, vol-0123456789abcdef1, vol-0123456789abcdef2]}}\n",
        );
        let fencing = cluster("  storage: {size: 10Gi}\n  replication: {fenceNodes: true}\n");
        for (c, field, value) in [
            (
                &given,
                "spec.storage.ebs.volumes",
                "features.givenVolumes=true",
            ),
            (
                &fencing,
                "spec.replication.fenceNodes",
                "features.fenceNodes=true",
            ),
        ] {
            match validate(c, &default_install) {
                Err(Error::InvalidField { field: f, reason }) => {
                    assert_eq!(f, field);
                    assert!(reason.contains(value), "{reason}");
                }
                other => panic!("expected {field} refused, got {other:?}"),
            }
            assert!(validate(c, &settings()).is_ok(), "{field} allowed when on");
        }
    }

    #[test]
    fn on_auto_mode_volumes_ebisu_makes_need_the_eks_cluster_s_name() {
        let mut auto_mode = settings();
        auto_mode.ebs_driver = crate::model::EbsDriver::AutoMode;
        let ebs = "  storage: {size: 10Gi, ebs: {type: gp3}}\n";
        let restore = cluster(&format!(
            "{ebs}  bootstrap: {{fromBackup: {{name: monday}}}}\n"
        ));
        let seeds = cluster(&format!("{ebs}  clone: {{method: Snapshot}}\n"));
        let verify = cluster(&format!(
            "{ebs}  backup: {{schedule: \"0 3 * * *\", verify: {{schedule: \"0 4 * * *\"}}}}\n"
        ));
        for (c, field) in [
            (&restore, "spec.bootstrap.fromBackup"),
            (&seeds, "spec.clone.method"),
            (&verify, "spec.backup.verify"),
        ] {
            match validate(c, &auto_mode) {
                Err(Error::InvalidField { field: f, reason }) => {
                    assert_eq!(f, field);
                    assert!(reason.contains("aws.eksClusterName"), "{reason}");
                }
                other => panic!("expected {field} refused, got {other:?}"),
            }
            let mut named = auto_mode.clone();
            named.eks_cluster_name = Some("prod".to_owned());
            assert!(validate(c, &named).is_ok(), "{field} allowed with the name");
        }
        assert!(
            validate(&cluster(ebs), &auto_mode).is_ok(),
            "a cluster that needs no made volume runs on Auto Mode as it is"
        );
    }

    #[test]
    fn missing_uid_is_reported_not_panicked_on() {
        let mut c = cluster("  storage: {size: 10Gi}\n");
        c.metadata.uid = None;
        assert_eq!(
            validate(&c, &settings()),
            Err(Error::MissingMetadata("uid"))
        );
    }

    #[test]
    fn out_of_range_replicas_are_refused_even_if_the_schema_let_them_through() {
        let (field, _) = refusal("  replicas: 12\n  storage: {size: 10Gi}\n");
        assert_eq!(field, "spec.replicas");
    }

    #[test]
    fn gp3_iops_above_500_per_gib_are_refused_with_the_size_needed() {
        let (field, reason) = refusal("  storage: {size: 10Gi, ebs: {type: gp3, iops: 16000}}\n");
        assert_eq!(field, "spec.storage.ebs.iops");
        assert!(reason.contains("at least 32Gi"), "{reason}");
        // The free 3000 IOPS baseline is fine on any size.
        assert!(
            validate(
                &cluster("  storage: {size: 1Gi, ebs: {type: gp3, iops: 3000}}\n"),
                &settings()
            )
            .is_ok()
        );
    }

    #[test]
    fn io2_iops_above_1000_per_gib_are_refused() {
        let (field, reason) = refusal("  storage: {size: 10Gi, ebs: {type: io2, iops: 20000}}\n");
        assert_eq!(field, "spec.storage.ebs.iops");
        assert!(reason.contains("at least 20Gi"), "{reason}");
    }

    #[test]
    fn gp3_throughput_needs_four_iops_per_mibps() {
        let (field, reason) =
            refusal("  storage: {size: 100Gi, ebs: {type: gp3, iops: 3000, throughput: 1000}}\n");
        assert_eq!(field, "spec.storage.ebs.throughput");
        assert!(reason.contains("at least 4000 IOPS"), "{reason}");
        assert!(
            validate(
                &cluster(
                    "  storage: {size: 100Gi, ebs: {type: gp3, iops: 4000, throughput: 1000}}\n"
                ),
                &settings()
            )
            .is_ok()
        );
    }

    #[test]
    fn both_storage_sources_are_refused() {
        let (field, _) =
            refusal("  storage: {size: 10Gi, storageClassName: gp3, ebs: {type: gp3}}\n");
        assert_eq!(field, "spec.storage");
    }

    #[test]
    fn names_that_cannot_name_the_children_are_refused() {
        for name in ["my.db", "Orders", "1st", &"a".repeat(53)] {
            let mut c = cluster("  storage: {size: 10Gi}\n");
            c.metadata.name = Some(name.to_owned());
            assert!(
                matches!(
                    validate(&c, &settings()),
                    Err(Error::InvalidField {
                        field: "metadata.name",
                        ..
                    })
                ),
                "{name}"
            );
        }
    }

    #[test]
    fn managed_keys_in_any_spelling_and_ebisu_pod_labels_are_refused() {
        for key in ["loose-read-only", "super_read-only", "skip-grant-tables"] {
            assert_eq!(
                refusal(&format!(
                    "  storage: {{size: 10Gi}}\n  mysqlConfig: {{{key}: 'ON'}}\n"
                ))
                .0,
                "spec.mysqlConfig",
                "{key}"
            );
        }
        assert_eq!(
            refusal(
                "  storage: {size: 10Gi}\n  podTemplate: {labels: {ebisu.dev/role: primary}}\n"
            )
            .0,
            "spec.podTemplate.labels"
        );
    }

    #[test]
    fn reserved_and_malformed_config_keys_are_refused() {
        assert_eq!(
            refusal("  storage: {size: 10Gi}\n  mysqlConfig: {log_bin: 'off'}\n").0,
            "spec.mysqlConfig"
        );
        // ebisu purges binary logs itself (spec.binaryLogs).
        assert_eq!(
            refusal("  storage: {size: 10Gi}\n  mysqlConfig: {Expire-Logs-Days: '1'}\n").0,
            "spec.mysqlConfig"
        );
        assert_eq!(
            refusal("  storage: {size: 10Gi}\n  mysqlConfig: {binlog_expire_logs_seconds: '1'}\n")
                .0,
            "spec.mysqlConfig"
        );
        assert_eq!(
            refusal("  storage: {size: 10Gi}\n  mysqlConfig: {\"a b\": '1'}\n").0,
            "spec.mysqlConfig"
        );
        assert_eq!(
            refusal("  storage: {size: 10Gi}\n  mysqlConfig: {x: \"1\\nserver_id = 5\"}\n").0,
            "spec.mysqlConfig"
        );
    }

    #[test]
    fn semi_sync_wait_count_must_fit_the_replicas_and_flavor() {
        assert_eq!(
            refusal("  replicas: 1\n  storage: {size: 10Gi}\n  replication: {semiSync: true}\n").0,
            "spec.replication.semiSync"
        );
        assert_eq!(refusal("  replicas: 3\n  flavor: mysql\n  storage: {size: 10Gi}\n  replication: {waitForReplicas: 3}\n").0, "spec.replication.waitForReplicas");
        assert_eq!(
            refusal(
                "  replicas: 3\n  storage: {size: 10Gi}\n  replication: {waitForReplicas: 2}\n"
            )
            .0,
            "spec.replication.waitForReplicas"
        );
        let off = validate(
            &cluster("  replicas: 3\n  storage: {size: 10Gi}\n  replication: {semiSync: false}\n"),
            &settings(),
        );
        assert_eq!(off.map(|v| v.semi_sync), Ok(None));
    }

    #[test]
    fn too_small_or_unparseable_sizes_are_refused() {
        assert_eq!(refusal("  storage: {size: 100Mi}\n").0, "spec.storage.size");
        assert_eq!(refusal("  storage: {size: 10m}\n").0, "spec.storage.size");
    }
}
