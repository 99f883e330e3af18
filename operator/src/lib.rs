//! The ebisu operator: reconciles each `MySQLCluster` into the Kubernetes
//! objects that run it and keeps its database servers in shape (one
//! writable primary, replicas that follow it, the primary moved before a
//! drain and failed over when lost, nodes fenced, volumes looked after at
//! EC2).
//!
//! # Layers
//!
//! The modules are layered, and a module imports only from layers below
//! its own ([`LAYERS`]; `tests/layers.rs` checks every `crate::` path).
//! Within a layer an arrow may point only at a leaf, a module that imports
//! nothing else from its layer ([`SAME_LAYER`]).
//!
//! | layer | modules | what they are |
//! |---|---|---|
//! | L5 | `runtime` | the process: watches, controllers, leader election, health |
//! | L4 | `reconcile` | the spine: one reconcile, step by step, and what every reconcile shares |
//! | L3 | `status`, `events` | pure reports over what the layers below found (and publishing Events) |
//! | L2 | `clustering`, `fencing`, `volumes`, `backups`, `restore`, `verify`, `dereference`, `apply` | features, each a pure decision plus a thin IO shell; reads and writes of the cluster's own objects |
//! | L1 | `validate`, `build`, `diagnose`, `ec2`, `agent_client` | pure spec -> objects; pure diagnoses; the EC2 client; calls to the agents |
//! | L0 | `model`, `quantity`, `online_config`, `crd`, `cron`, `rbac` | shared vocabulary, one reader per fact; tables; cron schedules |
//!
//! # What writes to the outside world
//!
//! Only these modules ([`WRITERS`]; the same test checks that no other
//! module names a write):
//!
//! - `apply`: the cluster's children (server-side apply), the credentials
//!   Secret, claim growth, the initialised record, status, consumed
//!   annotations;
//! - `clustering::act`: SQL on the servers, pod labels, evictions, pod
//!   deletions and the agents' re-seed requests;
//! - `fencing`: EC2 StopInstances, node taints and annotations;
//! - `volumes`: EC2 CreateTags and ModifyVolume, and the PVs and claims of
//!   given volumes;
//! - `backups`: a source's applier paused and resumed (SQL), EC2
//!   CreateSnapshot, the backups' status and their credentials Secrets,
//!   the binary log archive's assignment at an agent, binary log purges
//!   asked of the agents, archived files retention removes from S3;
//! - `restore`: EC2 CreateVolume from a backup's snapshot (a restored
//!   cluster's first volume, a new replica's), the restored cluster's
//!   credentials Secret;
//! - `verify`: the scratch cluster of a restore verification (made,
//!   annotated with its outcome, deleted), its claim, PV, Secret and EC2
//!   volume deleted, and the agents' table checks (a replica's applier held
//!   while it sums);
//! - `events`: Events;
//! - `reconcile::cleanup`: the managed StorageClass of a deleted cluster;
//! - `runtime::leader`: the leader Lease.

pub mod agent_client;
pub mod apply;
pub mod backups;
pub mod build;
pub mod clustering;
pub mod crd;
pub mod cron;
pub mod dereference;
pub mod diagnose;
pub mod ec2;
pub mod events;
pub mod fencing;
pub mod model;
pub mod online_config;
pub mod quantity;
pub mod rbac;
pub mod reconcile;
pub mod restore;
pub mod runtime;
pub mod status;
pub mod validate;
pub mod verify;
pub mod volumes;

/// Every top-level module by layer, bottom first.
pub const LAYERS: &[&[&str]] = &[
    &["model", "quantity", "online_config", "crd", "cron", "rbac"],
    &["validate", "build", "diagnose", "ec2", "agent_client"],
    &[
        "clustering",
        "fencing",
        "volumes",
        "backups",
        "restore",
        "verify",
        "dereference",
        "apply",
    ],
    &["status", "events"],
    &["reconcile"],
    &["runtime"],
];

/// The arrows allowed within a layer: (from, to), `to` a leaf of the layer.
pub const SAME_LAYER: &[(&str, &str)] = &[
    ("build", "validate"),
    ("events", "status"),
    ("verify", "dereference"),
    ("verify", "restore"),
];

/// The modules that write to the outside world (API server, servers, EC2).
pub const WRITERS: &[&str] = &[
    "apply",
    "clustering::act",
    "fencing",
    "volumes",
    "backups",
    "restore",
    "verify",
    "events",
    "reconcile::cleanup",
    "runtime::leader",
];
