//! Everything ebisu does to EBS volumes at EC2: one look at each cluster's
//! volumes (status, the tags that name cluster, namespace and instance,
//! IOPS and throughput applied with ModifyVolume), made in the background
//! so EC2 never delays a reconcile (`look`, `looks`, pure `decide`); and
//! the volumes given in `spec.storage.ebs.volumes`, checked and bound
//! before their instances' claims exist (`given`, pure `given_decide`).

pub mod decide;
pub mod given;
pub mod given_decide;
pub mod look;
pub mod looks;

pub use given::GivenVolumes;
pub use look::VolumeLook;
pub use looks::VolumeLooks;
