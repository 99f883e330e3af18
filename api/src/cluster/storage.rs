//! `spec.storage`: the size of each instance's volume and where it comes from
//! (a named StorageClass, the cluster default, or an operator-managed EBS class).

use std::ops::RangeInclusive;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::{
    KubeSchema,
    core::{Message, Rule},
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// gp3 IOPS bounds (AWS EBS gp3 limits).
pub const GP3_IOPS: RangeInclusive<i32> = 3_000..=80_000;
/// gp3 throughput bounds in MiB/s.
pub const GP3_THROUGHPUT_MIBPS: RangeInclusive<i32> = 125..=2_000;
/// io2 IOPS bounds (io2 Block Express).
pub const IO2_IOPS: RangeInclusive<i32> = 100..=256_000;
/// Most IOPS a gp3 volume may have per GiB of size.
pub const GP3_MAX_IOPS_PER_GIB: i64 = 500;
/// Most IOPS an io2 volume may have per GiB of size.
pub const IO2_MAX_IOPS_PER_GIB: i64 = 1_000;
/// gp3 throughput is at most 0.25 MiB/s per provisioned IOPS: one MiB/s
/// needs this many IOPS.
pub const GP3_IOPS_PER_MIBPS: i32 = 4;

/// The CEL rule bounding IOPS by size for one volume type (`free`: IOPS
/// every volume of the type gets whatever its size, gp3's baseline).
fn iops_per_gib_rule(volume_type: EbsVolumeType, per_gib: i64, free: i32) -> Rule {
    let name = volume_type.as_str();
    Rule::new(format!(
        "!has(self.ebs) || !has(self.ebs.iops) || self.ebs.type != '{name}' || !isQuantity(self.size) || self.ebs.iops <= {free} || self.ebs.iops <= {per_gib} * (quantity(self.size).asInteger() / 1073741824)"
    ))
    .message(Message::Message(format!(
        "spec.storage.ebs.iops may be at most {per_gib} per GiB of spec.storage.size for {name} (AWS's limit): raise size or lower iops"
    )))
}

/// Each instance's data volume.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("!(has(self.storageClassName) && has(self.ebs))")
        .message("spec.storage: set either storageClassName or ebs, not both: storageClassName uses an existing class, ebs makes ebisu manage one"),
    validation = Rule::new("has(self.storageClassName) == has(oldSelf.storageClassName) && (!has(self.storageClassName) || self.storageClassName == oldSelf.storageClassName)")
        .message("spec.storage.storageClassName is immutable: existing volumes keep their class; create a new cluster to move to another class"),
    validation = Rule::new("has(self.ebs) == has(oldSelf.ebs)")
        .message("spec.storage.ebs cannot be added or removed: existing volumes keep their class; create a new cluster to move between ebs and a StorageClass"),
    validation = Rule::new("!has(self.ebs) || (self.ebs.type == oldSelf.ebs.type && self.ebs.encrypted == oldSelf.ebs.encrypted && has(self.ebs.kmsKeyId) == has(oldSelf.ebs.kmsKeyId) && (!has(self.ebs.kmsKeyId) || self.ebs.kmsKeyId == oldSelf.ebs.kmsKeyId))")
        .message("spec.storage.ebs.type, encrypted and kmsKeyId are immutable: EBS cannot change them on existing volumes; create a new cluster to change them (iops and throughput may change)"),
    validation = Rule::new("!isQuantity(self.size) || !isQuantity(oldSelf.size) || !quantity(self.size).isLessThan(quantity(oldSelf.size))")
        .message("spec.storage.size may grow but never shrink: set it to at least its current value (volumes cannot be shrunk)"),
    validation = iops_per_gib_rule(EbsVolumeType::Gp3, GP3_MAX_IOPS_PER_GIB, *GP3_IOPS.start()),
    validation = iops_per_gib_rule(EbsVolumeType::Io2, IO2_MAX_IOPS_PER_GIB, 0),
)]
pub struct StorageSpec {
    /// Size of each instance's volume, such as `20Gi`. It may be increased
    /// later (volumes are expanded in place) but never decreased.
    #[x_kube(validation = Rule::new("isQuantity(self) && quantity(self).compareTo(quantity('1Gi')) >= 0")
        .message("spec.storage.size must be a quantity of at least 1Gi, such as 20Gi"))]
    pub size: Quantity,

    /// An existing StorageClass for the volumes. Leave both this and `ebs`
    /// unset to use the cluster's default class. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,

    /// Have ebisu create and own a StorageClass for the EBS CSI driver
    /// (`ebs.csi.aws.com`, or `ebs.csi.eks.amazonaws.com` on EKS Auto Mode,
    /// as the install found or chose; WaitForFirstConsumer, expansion
    /// allowed) with these
    /// parameters. Cannot be added or removed later; `type`, `encrypted` and
    /// `kmsKeyId` are immutable, `iops` and `throughput` may change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ebs: Option<EbsSpec>,
}

/// EBS volume parameters for the operator-managed StorageClass.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = gp3_iops_rule(),
    validation = io2_iops_rule(),
    validation = Rule::new("self.type != 'io2' || has(self.iops)")
        .message(Message::Message(format!("spec.storage.ebs.iops is required for type io2: set the provisioned IOPS ({} to {})", IO2_IOPS.start(), IO2_IOPS.end()))),
    validation = Rule::new("!has(self.throughput) || self.type == 'gp3'")
        .message("spec.storage.ebs.throughput applies only to type gp3: remove it (io2 throughput follows IOPS)"),
    validation = gp3_throughput_rule(),
    validation = Rule::new(format!("!has(self.throughput) || self.throughput * {GP3_IOPS_PER_MIBPS} <= (has(self.iops) ? self.iops : {})", GP3_IOPS.start()))
        .message(Message::Message(format!("spec.storage.ebs.throughput may be at most 0.25 MiB/s per provisioned IOPS (AWS's limit; {} MiB/s at the baseline {} IOPS): raise iops or lower throughput", GP3_IOPS.start() / GP3_IOPS_PER_MIBPS, GP3_IOPS.start()))),
    validation = Rule::new("!has(self.kmsKeyId) || self.encrypted")
        .message("spec.storage.ebs.kmsKeyId needs encrypted: true: set encrypted or remove kmsKeyId"),
)]
pub struct EbsSpec {
    /// Volume type: `gp3` (general purpose SSD) or `io2` (provisioned IOPS).
    #[serde(default, rename = "type")]
    pub volume_type: EbsVolumeType,

    /// Provisioned IOPS: 3000 to 80000 for gp3 (3000 when unset), 100 to
    /// 256000 for io2 (required). At most 500 (gp3) or 1000 (io2) per GiB.
    /// A change is applied to existing volumes with EC2's ModifyVolume,
    /// which allows one modification per volume every 6 hours.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iops: Option<i32>,

    /// Throughput in MiB/s, gp3 only: 125 to 2000 (125 when unset). Changes
    /// are applied like `iops`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub throughput: Option<i32>,

    /// Encrypt the volumes at rest. On by default.
    #[serde(default = "default_true")]
    pub encrypted: bool,

    /// KMS key (id, alias or ARN) for encryption; the account's default EBS
    /// key when unset. Needs `encrypted: true`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kms_key_id: Option<String>,

    /// Existing EBS volumes to use (static provisioning), in ordinal order:
    /// instance `i` gets `volumes[i]`; instances beyond the list get new
    /// volumes. Read when an instance's claim is first made: ebisu checks
    /// the volume through EC2 (it exists, its owner tagged it
    /// `ebisu.dev/adopt-by=<namespace>/<name>` of this cluster, it is
    /// attached nowhere, is in a zone with nodes, and holds at least
    /// `spec.storage.size`) and binds it to the instance's claim. A volume
    /// that fails the check is a `StaticVolumeRefused` condition naming it,
    /// and that instance and the ones after it are not created until it is
    /// fixed. Its data is used as it is: an empty volume is initialised, one
    /// holding a data directory is started on. Credentials are never
    /// generated for a cluster given volumes: bring the `<name>-credentials`
    /// Secret their data was made with (or your own for empty volumes).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(
        validation = Rule::new("self.all(v, v.matches('^vol-[0-9a-f]{8,17}$'))")
            .message("spec.storage.ebs.volumes must be EBS volume ids such as vol-0123456789abcdef0"),
        validation = Rule::new("self.all(v, self.exists_one(w, w == v))")
            .message("spec.storage.ebs.volumes names a volume twice: each instance needs its own"),
    )]
    #[schemars(length(max = 9), inner(length(max = 21)))]
    pub volumes: Vec<String>,
}

/// The EBS volume types ebisu supports.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum EbsVolumeType {
    /// General purpose SSD with independently provisioned IOPS and throughput.
    #[default]
    Gp3,
    /// Provisioned IOPS SSD for latency-sensitive databases.
    Io2,
}

impl EbsVolumeType {
    /// The value of the EBS CSI driver's `type` parameter.
    pub fn as_str(self) -> &'static str {
        match self {
            EbsVolumeType::Gp3 => "gp3",
            EbsVolumeType::Io2 => "io2",
        }
    }
}

fn range_rule(field: &str, volume_type: &str, range: &RangeInclusive<i32>, unit: &str) -> Rule {
    let (lo, hi) = (range.start(), range.end());
    Rule::new(format!(
        "!has(self.{field}) || self.type != '{volume_type}' || (self.{field} >= {lo} && self.{field} <= {hi})"
    ))
    .message(Message::Message(format!(
        "spec.storage.ebs.{field} must be between {lo} and {hi}{unit} for {volume_type}"
    )))
}

fn gp3_iops_rule() -> Rule {
    range_rule("iops", "gp3", &GP3_IOPS, "")
}

fn io2_iops_rule() -> Rule {
    range_rule("iops", "io2", &IO2_IOPS, "")
}

fn gp3_throughput_rule() -> Rule {
    range_rule("throughput", "gp3", &GP3_THROUGHPUT_MIBPS, " MiB/s")
}

fn default_true() -> bool {
    true
}
