//! The vocabulary every ebisu component shares: the `MySQLCluster` resource
//! (group `ebisu.dev`, version `v1alpha1`), the names, labels and ports of what
//! the operator creates for a cluster, and the sidecar agent's HTTP API types.
//!
//! This crate holds types and naming rules only. It must not talk to the
//! Kubernetes API or to a database server, so that the operator, the sidecar
//! and the tests can all depend on it without pulling in each other's IO.

pub mod agent;
pub mod backup;
pub mod cluster;
pub mod names;

pub use backup::{
    ArchiveLocation, BackupPhase, BinlogPosition, MySQLBackup, MySQLBackupSpec, MySQLBackupStatus,
};
pub use cluster::{
    ArchiveStatus, BackupSchedule, BinlogArchive, BootstrapSpec, CloneMethod, CloneSpec,
    ClusteringMemory, DatabaseSpec, DonorPreference, EbsSpec, EbsVolumeType, FailoverMode, Flavor,
    FromBackup, InstanceRole, InstanceStatus, MySQLCluster, MySQLClusterSpec, MySQLClusterStatus,
    Operation, OperationKind, OperationStep, Phase, PodTemplateOverrides, PointInTime,
    ReplayStatus, ReplicationSpec, RestoreStatus, RestoreVerify, RoleChange, SeedMethod,
    SeedStatus, ServiceTemplate, ServiceTemplates, ServiceType, StorageSpec, UpdateStrategy,
    VerifiedRestore, VolumeInitializationStatus, VolumeModificationStatus, VolumeStatus,
};
