//! A local Kubernetes cluster for ebisu's tests and demo: the real control
//! plane (etcd, kube-apiserver, kube-controller-manager, kube-scheduler, built
//! by `tests/build-controlplane.sh`), our own node side, and EBS-like volumes.
//!
//! - Six nodes in three zones (`node-a1`, `node-a2`, `node-b1`, ... in
//!   `us-east-1a/b/c`), kept Ready by Lease renewals ([`nodes`]).
//! - An agent ([`agent`]) that runs each pod's containers as host processes
//!   in the pod's own network namespace (an address on the bridge
//!   `ebisu0`, 10.244.0.0/16), UTS namespace and a mount namespace per
//!   container with the volumes bind-mounted. OCI images are pulled from
//!   the cluster's registry ([`registry`], a mirror of ghcr.io) and run in
//!   their own root; the database images map to Debian's programs by the
//!   table in [`agent::images`]; other images fail with `ErrImagePull`.
//! - A local EC2 API ([`ec2`]: moto on the bridge address) in which each
//!   node is an instance (`spec.providerID aws:///ZONE/i-...`), and the EBS
//!   CSI driver's part ([`provisioner`]) for `ebs.csi.aws.com` classes:
//!   volumes created, resized and deleted there, zone-pinned PVs, attached
//!   to one instance at a time in their own zone. EC2 calls reach moto
//!   through a proxy ([`snapshots`]) that gives snapshots real content. An instance stopped at
//!   EC2 powers its node off; started again, the node boots afresh.
//! - A minimal kubelet API on each node's address ([`kubelet_api`]) so that
//!   `kubectl logs [-f] [--tail]` works through the apiserver; there is no
//!   `kubectl exec`, attach or port-forward.
//! - Nothing leaves the machine: pods have no default route, the Service range
//!   is blackholed (no kube-proxy; names resolve through the cluster hosts
//!   file), and the apiserver listens on the bridge address 10.244.0.1.
//!
//! It must not be used for anything but tests: it runs as root, with one
//! cluster per machine (fixed bridge, subnet and ports).
//!
//! The `testcluster` binary drives it: `up`, `down`, `status`,
//! `logs POD [-c CONTAINER]`, `node stop NAME`, `node start NAME`.

pub mod agent;
pub mod archive_retention_drill;
pub mod backup_drill;
pub mod binlog_expiry_drill;
pub mod certs;
pub mod cleanup;
pub mod cluster;
pub mod command;
pub mod controlplane;
pub mod drill;
pub mod drills;
pub mod ebisu;
pub mod ec2;
pub mod faults;
pub mod kubectl;
pub mod kubelet_api;
pub mod layout;
pub mod misuse;
pub mod network;
pub mod nodes;
pub mod point_in_time_drill;
pub mod provisioner;
pub mod registry;
pub mod scenario;
pub mod snapshots;
pub mod stores;
pub mod supervisor;
pub mod verify_drill;

pub use cluster::{ClusterError, TestCluster};
pub use kubectl::{Kubectl, KubectlError};
pub use layout::{DEFAULT_STATE_DIR, Layout};
pub use scenario::Scenario;
